//! API errors and the one place that maps them to status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use qci_spec::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code: InvalidSpec, NotFound, AlreadyExists, BadRequest, Internal.
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
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use qci_store::StoreError;
        let (status, code, fields) = match &self {
            ApiError::InvalidSpec(e) => (StatusCode::BAD_REQUEST, "InvalidSpec", e.fields()),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest", vec![]),
            ApiError::Fields(f) => (StatusCode::BAD_REQUEST, "InvalidRequest", f.clone()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound", vec![]),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict", vec![]),
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
            ApiError::Store(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal", vec![])
            }
        };
        if status.is_server_error() {
            tracing::error!("{self}");
        }
        let body = ErrorBody {
            code: code.to_string(),
            message: self.to_string(),
            fields,
        };
        (status, axum::Json(body)).into_response()
    }
}
