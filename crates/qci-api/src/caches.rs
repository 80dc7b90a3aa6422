//! `/v1/image-caches`: images pulled ahead of time so groups start without downloading.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use qci_spec::{ImageCache, ImageCacheSpec, validate_image_cache};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ListScope, Scope};
use crate::{ApiError, AppState, ErrorBody};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImageCacheList {
    pub items: Vec<ImageCache>,
}

/// Creates an image cache: its images are pulled, unpacked and pinned; it is Ready once all
/// are in, Failed (with the reason) if one cannot be pulled.
#[utoipa::path(post, path = "/v1/image-caches", tag = "image-caches", request_body = ImageCacheSpec,
    responses((status = 201, body = ImageCache), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_cache(
    State(s): State<AppState>,
    scope: Scope,
    body: String,
) -> Result<(StatusCode, Json<ImageCache>), ApiError> {
    let spec: ImageCacheSpec = crate::disks::parse_body(&body)?;
    validate_image_cache(&spec).map_err(ApiError::Fields)?;
    let c = s.store.create_image_cache(scope.owner(), &spec)?;
    tracing::info!(cache = %c.id, name = %c.name, "image cache created");
    (s.on_change)();
    Ok((StatusCode::CREATED, Json(c.masked())))
}

/// The image caches, newest first.
#[utoipa::path(get, path = "/v1/image-caches", tag = "image-caches", responses((status = 200, body = ImageCacheList)))]
pub async fn list_caches(
    State(s): State<AppState>,
    scope: ListScope,
) -> Result<Json<ImageCacheList>, ApiError> {
    let items = s
        .store
        .list_image_caches(scope.filter())?
        .into_iter()
        .map(ImageCache::masked)
        .collect();
    Ok(Json(ImageCacheList { items }))
}

/// One image cache, by id or name: its images with digests and sizes.
#[utoipa::path(get, path = "/v1/image-caches/{id}", tag = "image-caches",
    params(("id" = String, Path, description = "Cache id or name")),
    responses((status = 200, body = ImageCache), (status = 404, body = ErrorBody)))]
pub async fn get_cache(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<ImageCache>, ApiError> {
    Ok(Json(s.store.find_image_cache(scope.owner(), &id)?.masked()))
}

/// Deletes an image cache. Its images stay in the store (as images) until garbage collection
/// frees what nothing uses.
#[utoipa::path(delete, path = "/v1/image-caches/{id}", tag = "image-caches",
    params(("id" = String, Path, description = "Cache id or name")),
    responses((status = 200, body = ImageCache), (status = 404, body = ErrorBody)))]
pub async fn delete_cache(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<ImageCache>, ApiError> {
    let c = s.store.find_image_cache(scope.owner(), &id)?;
    s.store.remove_image_cache(&c.id)?;
    s.images
        .unpin(&c.id)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(cache = %c.id, "image cache deleted");
    (s.on_change)();
    Ok(Json(c.masked()))
}
