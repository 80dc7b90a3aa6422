//! `/v1/images`: the machine's image store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::Response;
use qci_image::{Credentials, PulledImage};
use qci_spec::{
    ImageInfo, ImageList, PullEvent, PullRequest, normalize_registry, validate_credentials,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, AppState};

fn info(i: &PulledImage) -> ImageInfo {
    {
        ImageInfo {
            reference: i.reference.clone(),
            digest: i.digest.clone(),
            size: i.size,
            layers: i.layers.len(),
            last_used: i.last_used,
            private: i.private,
        }
    }
}

/// The images in the store.
#[utoipa::path(get, path = "/v1/images", tag = "images", responses((status = 200, body = ImageList)))]
pub async fn list_images(State(s): State<AppState>) -> Json<ImageList> {
    Json(ImageList {
        items: s.images.list().iter().map(info).collect(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageRef {
    /// The image reference, as pulled.
    reference: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Removed {
    pub removed: String,
}

/// Forgets an image. Its layers are freed by garbage collection once no container or image
/// cache uses them.
#[utoipa::path(delete, path = "/v1/images", tag = "images", params(ImageRef),
    responses((status = 200, body = Removed), (status = 404, body = crate::ErrorBody)))]
pub async fn remove_image(
    State(s): State<AppState>,
    Query(q): Query<ImageRef>,
) -> Result<Json<Removed>, ApiError> {
    match s.images.remove(&q.reference) {
        Ok(true) => {
            (s.on_change)();
            Ok(Json(Removed {
                removed: q.reference,
            }))
        }
        Ok(false) => Err(ApiError::NotFound(format!(
            "image {:?} is not in the store",
            q.reference
        ))),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// Pulls an image into the store. The answer streams newline-delimited JSON: `progress`
/// lines while blobs download, then one `image` or `error` line.
#[utoipa::path(post, path = "/v1/images/pull", tag = "images", request_body = PullRequest,
    responses((status = 200, content_type = "application/x-ndjson", body = PullEvent),
        (status = 400, body = crate::ErrorBody)))]
pub async fn pull_image(State(s): State<AppState>, body: String) -> Result<Response, ApiError> {
    let de = &mut serde_json::Deserializer::from_str(&body);
    let req: PullRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        ApiError::Fields(vec![qci_spec::FieldError {
            field: e.path().to_string(),
            message: e.inner().to_string(),
        }])
    })?;
    if let Err(m) = qci_spec::check_image_reference(&req.image) {
        return Err(ApiError::Fields(vec![qci_spec::FieldError {
            field: "image".into(),
            message: m,
        }]));
    }
    let errs = validate_credentials(&req.registry_credentials);
    if !errs.is_empty() {
        return Err(ApiError::Fields(errs));
    }
    let registry = qci_spec::image_registry(&req.image);
    let creds = req
        .registry_credentials
        .iter()
        .find(|c| normalize_registry(&c.server) == registry)
        .map(|c| Credentials {
            username: c.username.clone(),
            password: c.password.clone(),
        });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<PullEvent>();
    tokio::spawn(async move {
        // Report a blob when it has grown by a percent or is done, not at every write.
        let last: Arc<Mutex<HashMap<String, u64>>> = Default::default();
        let ptx = tx.clone();
        let progress = move |digest: &str, done: u64, total: u64| {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            let prev = last.entry(digest.to_string()).or_insert(u64::MAX);
            if *prev == u64::MAX
                || done == total
                || done.saturating_sub(*prev) * 100 >= total.max(1)
            {
                *prev = done;
                let _ = ptx.send(PullEvent::Progress {
                    digest: digest.to_string(),
                    done,
                    total,
                });
            }
        };
        let ev = match s
            .images
            .pull(&req.image, creds.as_ref(), Some(&progress))
            .await
        {
            Ok(img) => PullEvent::Image(info(&img)),
            Err(e) => PullEvent::Error(e.to_string()),
        };
        let _ = tx.send(ev);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(line), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A body that does not have the expected shape, as a field error.
pub(crate) fn field_error(path: String, e: &dyn std::fmt::Display) -> ApiError {
    let field = if path == "." {
        "body".to_string()
    } else {
        path
    };
    ApiError::Fields(vec![qci_spec::FieldError {
        field,
        message: e.to_string(),
    }])
}

/// Removes now the image blobs and layers that no image, image cache or container uses (and,
/// over the store's size budget, the least recently used images nothing uses). Answers what
/// was removed.
#[utoipa::path(post, path = "/v1/images/prune", tag = "images",
    responses((status = 200, description = "removed_images, removed_blobs, removed_layers, freed_bytes, total_bytes")))]
pub async fn prune_images(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    (s.prune)().await.map(Json).map_err(ApiError::Internal)
}
