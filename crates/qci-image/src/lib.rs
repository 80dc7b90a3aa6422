//! Images: pulls from OCI distribution registries into a content-addressed store, and layers
//! unpacked once each for use as overlayfs lower directories.
//!
//! Layout under the image root:
//! - `blobs/sha256/<hex>`: manifests, configs and layer blobs, each visible only once its digest
//!   was verified (downloaded to a temp file, verified, renamed);
//! - `layers/sha256/<hex>/`: the unpacked layer of blob `<hex>`, in overlayfs form (whiteouts as
//!   0:0 character devices, opaque directories as `trusted.overlay.opaque=y`);
//! - `refs/<escaped reference>.json`: what a reference resolved to at its last pull (or load).
//!
//! Images also come in from archives and go out as archives (`archive.rs`).

mod archive;
mod gc;
mod layer;
mod store;

pub use archive::ArchiveError;
pub use gc::GcReport;
pub use layer::{LayerError, unpack_layer};
pub use store::{
    Credentials, ImageConfig, ImageError, ImageStore, ProgressFn, PulledImage, RegistryConfig,
};

/// Installs the process-wide TLS crypto provider (ring). Call once, early in `main`.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Refuses a name that is not an image reference (`[registry/]path[:tag][@digest]`).
pub fn validate_reference(name: &str) -> Result<(), ImageError> {
    name.parse::<oci_client::Reference>()
        .map(|_| ())
        .map_err(|e| ImageError::BadReference {
            reference: name.to_string(),
            reason: e.to_string(),
        })
}
