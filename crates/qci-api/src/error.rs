//! API errors and the one place that maps them to status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use qci_spec::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code: InvalidSpec, InvalidRequest, BadRequest, Unauthorized,
    /// Forbidden, QuotaExceeded, NotFound, AlreadyExists, Conflict, UnsupportedMediaType,
    /// TooManyRequests, Internal.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// For InvalidSpec: each field that is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] qci_spec::SpecError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", .0.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Fields(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] qci_store::StoreError),
    /// No key, or one that is not (or no longer) valid.
    #[error("{message}")]
    Unauthorized {
        message: String,
        /// A key was given but is not valid (RFC 6750's `invalid_token`).
        invalid_token: bool,
    },
    /// A valid key whose role or tenant does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{0}")]
    Internal(String),
    /// The image store's: an archive refused, an image not there.
    #[error(transparent)]
    Image(#[from] qci_image::ImageError),
    /// The cluster's (etcd): a node not there, etcd unreachable.
    #[error(transparent)]
    Cluster(#[from] qci_cluster::ClusterError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use qci_store::StoreError;
        let (status, code, fields) = match &self {
            ApiError::InvalidSpec(e) => (StatusCode::BAD_REQUEST, "InvalidSpec", e.fields()),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest", vec![]),
            ApiError::Fields(f) => (StatusCode::BAD_REQUEST, "InvalidRequest", f.clone()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound", vec![]),
            ApiError::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "Unauthorized", vec![]),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden", vec![]),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                vec![],
            ),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", vec![])
            }
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", vec![])
            }
            ApiError::Store(StoreError::QuotaExceeded(_)) => {
                (StatusCode::FORBIDDEN, "QuotaExceeded", vec![])
            }
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict", vec![]),
            ApiError::Store(StoreError::NodeFull { .. }) => {
                (StatusCode::CONFLICT, "InsufficientCapacity", vec![])
            }
            ApiError::Store(
                StoreError::NotFound(_)
                | StoreError::CacheNotFound(_)
                | StoreError::DiskNotFound(_),
            ) => (StatusCode::NOT_FOUND, "NotFound", vec![]),
            ApiError::Store(
                StoreError::NameTaken(_)
                | StoreError::CacheNameTaken(_)
                | StoreError::DiskNameTaken(_),
            ) => (StatusCode::CONFLICT, "AlreadyExists", vec![]),
            ApiError::Store(StoreError::DiskInUse { .. } | StoreError::InUse(_)) => {
                (StatusCode::CONFLICT, "Conflict", vec![])
            }
            ApiError::Store(StoreError::Missing(..)) => (StatusCode::NOT_FOUND, "NotFound", vec![]),
            ApiError::Store(StoreError::Taken(..)) => {
                (StatusCode::CONFLICT, "AlreadyExists", vec![])
            }
            ApiError::Store(StoreError::Network { field, message }) => (
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                vec![FieldError::new(field.clone(), message.clone())],
            ),
            ApiError::Store(StoreError::VolumeDisk { volume, message }) => (
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                vec![FieldError::new(
                    format!("volumes[{volume}].disk.id"),
                    message.clone(),
                )],
            ),
            ApiError::Image(qci_image::ImageError::NotPresent(_)) => {
                (StatusCode::NOT_FOUND, "NotFound", vec![])
            }
            // What a caller sent: an archive, a name, a layer or config inside it.
            ApiError::Image(
                qci_image::ImageError::Archive(_)
                | qci_image::ImageError::BadReference { .. }
                | qci_image::ImageError::Config { .. }
                | qci_image::ImageError::Layer { .. },
            ) => (StatusCode::BAD_REQUEST, "BadRequest", vec![]),
            ApiError::Cluster(qci_cluster::ClusterError::NoNode(_)) => {
                (StatusCode::NOT_FOUND, "NotFound", vec![])
            }
            ApiError::Cluster(qci_cluster::ClusterError::Contended(_)) => {
                (StatusCode::CONFLICT, "Conflict", vec![])
            }
            // The cluster's store cannot be reached: this node cannot answer for it now.
            ApiError::Cluster(qci_cluster::ClusterError::Etcd { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", vec![])
            }
            ApiError::Store(_)
            | ApiError::Internal(_)
            | ApiError::Image(_)
            | ApiError::Cluster(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Internal", vec![]),
        };
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        let body = ErrorBody {
            code: code.to_string(),
            message: self.to_string(),
            fields,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        match self {
            ApiError::Unauthorized { invalid_token, .. } => {
                resp.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    crate::auth::www_authenticate(invalid_token),
                );
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, retry_after.into());
            }
            _ => {}
        }
        resp
    }
}
