//! The image store as the API shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::RegistryCredential;

/// An image in the store.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageInfo {
    pub reference: String,
    /// The platform manifest's digest.
    pub digest: String,
    /// Compressed size of its config and layers.
    pub size: u64,
    pub layers: usize,
    pub last_used: Option<DateTime<Utc>>,
    /// Pulled with credentials only: reused only by the logins that pulled it.
    pub private: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    pub items: Vec<ImageInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    pub image: String,
    #[serde(default)]
    pub registry_credentials: Vec<RegistryCredential>,
}

/// One line of a pull's answer (newline-delimited JSON): progress, then the image or an error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullEvent {
    /// Bytes of one blob downloaded so far.
    Progress {
        digest: String,
        done: u64,
        total: u64,
    },
    Image(ImageInfo),
    Error(String),
}
