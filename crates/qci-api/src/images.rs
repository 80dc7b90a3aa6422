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
    check_reference("image", &req.image)?;
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

/// An image reference given in `field`, checked.
fn check_reference(field: &str, reference: &str) -> Result<(), ApiError> {
    qci_spec::check_image_reference(reference).map_err(|message| {
        ApiError::Fields(vec![qci_spec::FieldError {
            field: field.into(),
            message,
        }])
    })
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

/// The largest image archive taken (the store's own budget, when set, is checked after).
pub const MAX_ARCHIVE_BYTES: u64 = 64 << 30;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoadQuery {
    /// The name to store the image under (the archive must hold one image); without it, the
    /// names the archive gives (OCI `org.opencontainers.image.ref.name`, docker `RepoTags`).
    tag: Option<String>,
}

/// Loads the images of an archive sent as the body (`application/x-tar`): an OCI image
/// layout or a docker-archive (what `docker save` and `podman save` write). Every blob is
/// checked against its digest; a malformed archive is refused with the reason (400).
#[utoipa::path(post, path = "/v1/images/load", tag = "images", params(LoadQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 200, body = ImageList), (status = 400, body = crate::ErrorBody)))]
pub async fn load_image(
    State(s): State<AppState>,
    Query(q): Query<LoadQuery>,
    body: Body,
) -> Result<Json<ImageList>, ApiError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    if let Some(t) = &q.tag {
        check_reference("tag", t)?;
    }
    let file = tempfile::NamedTempFile::new_in(s.images.scratch_dir())
        .map_err(|e| ApiError::Internal(format!("a file for the archive: {e}")))?;
    let mut out = tokio::fs::File::from_std(
        file.reopen()
            .map_err(|e| ApiError::Internal(format!("a file for the archive: {e}")))?,
    );
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the archive: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_ARCHIVE_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "an image archive may be at most {MAX_ARCHIVE_BYTES} bytes"
            )));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("writing the archive: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| ApiError::Internal(format!("writing the archive: {e}")))?;
    drop(out);
    let loaded = s.images.load_archive(file.path(), q.tag.as_deref()).await?;
    (s.on_change)();
    Ok(Json(ImageList {
        items: loaded.iter().map(info).collect(),
    }))
}

/// An image of the store as an OCI image layout in a tar (`application/x-tar`), which
/// `qci image load`, `podman load`, `docker load` and `skopeo` take.
#[utoipa::path(get, path = "/v1/images/save", tag = "images", params(ImageRef),
    responses((status = 200, content_type = "application/x-tar", body = Vec<u8>), (status = 404, body = crate::ErrorBody)))]
pub async fn save_image(
    State(s): State<AppState>,
    Query(q): Query<ImageRef>,
) -> Result<Response, ApiError> {
    let file = tempfile::NamedTempFile::new_in(s.images.scratch_dir())
        .map_err(|e| ApiError::Internal(format!("a file for the archive: {e}")))?;
    s.images.save_archive(&q.reference, file.path()).await?;
    // Open, then let the name go: the file lives while the answer reads it.
    let f = tokio::fs::File::open(file.path())
        .await
        .map_err(|e| ApiError::Internal(format!("reading the archive: {e}")))?;
    drop(file);
    let stream = futures_util::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// An image in the store.
    pub source: String,
    /// Its second name.
    pub target: String,
}

/// Gives an image of the store a second name.
#[utoipa::path(post, path = "/v1/images/tag", tag = "images", request_body = TagRequest,
    responses((status = 200, body = ImageInfo), (status = 404, body = crate::ErrorBody)))]
pub async fn tag_image(
    State(s): State<AppState>,
    body: String,
) -> Result<Json<ImageInfo>, ApiError> {
    let req: TagRequest = crate::disks::parse_body(&body)?;
    check_reference("target", &req.target)?;
    let img = s.images.tag(&req.source, &req.target).await?;
    (s.on_change)();
    Ok(Json(info(&img)))
}
