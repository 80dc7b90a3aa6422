//! The content-addressed image store and the registry client in front of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::layer::{LayerError, unpack_layer};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("pulling {reference}: {message}")]
    Registry { reference: String, message: String },
    #[error("image {reference}: layer {digest}: {source}")]
    Layer {
        reference: String,
        digest: String,
        source: LayerError,
    },
    #[error("image {reference}: unusable config: {message}")]
    Config { reference: String, message: String },
    #[error("image store: {0}")]
    Io(#[from] std::io::Error),
}

/// What a container needs from its image's config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An image present in the store, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PulledImage {
    pub reference: String,
    /// The manifest digest (of the platform manifest, not the index).
    pub digest: String,
    pub config: ImageConfig,
    /// Layer blob digests, bottom first.
    pub layers: Vec<String>,
    /// Bytes downloaded by the pull that produced this (0 when everything was present).
    #[serde(default)]
    pub downloaded_bytes: u64,
}

/// The store plus registry clients. Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    insecure: Arc<Vec<String>>,
    clients: Arc<Mutex<HashMap<String, Client>>>,
    /// One download or unpack of a given digest at a time, whoever asks.
    blob_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl ImageStore {
    /// `insecure` lists `host:port` registries that may be reached over plain HTTP;
    /// registries on loopback addresses always may.
    pub fn open(root: &Path, insecure: Vec<String>) -> Result<ImageStore, ImageError> {
        for d in ["blobs/sha256", "layers/sha256", "refs", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            insecure: Arc::new(insecure),
            clients: Default::default(),
            blob_locks: Default::default(),
        })
    }

    /// The unpacked directory of a layer blob.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root.join("layers/sha256").join(hex_of(digest))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        let escaped: String = reference
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash = hex::encode(Sha256::digest(reference.as_bytes()));
        self.root
            .join("refs")
            .join(format!("{escaped}-{}.json", &hash[..12]))
    }

    /// The image a reference resolved to at its last pull, if all its layers are still here.
    pub fn local(&self, reference: &str) -> Option<PulledImage> {
        let text = std::fs::read_to_string(self.ref_path(reference)).ok()?;
        let mut img: PulledImage = serde_json::from_str(&text).ok()?;
        img.downloaded_bytes = 0;
        img.layers
            .iter()
            .all(|l| self.layer_dir(l).is_dir())
            .then_some(img)
    }

    fn client_for(&self, registry: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(registry.to_string())
            .or_insert_with(|| {
                let plain = is_loopback(registry) || self.insecure.iter().any(|h| h == registry);
                let protocol = if plain {
                    ClientProtocol::HttpsExcept(vec![registry.to_string()])
                } else {
                    ClientProtocol::Https
                };
                Client::new(ClientConfig {
                    protocol,
                    connect_timeout: Some(std::time::Duration::from_secs(10)),
                    read_timeout: Some(std::time::Duration::from_secs(60)),
                    ..Default::default()
                })
            })
            .clone()
    }

    /// Resolves `reference` at its registry and makes sure every blob of the image is present,
    /// verified and unpacked. Blobs already present are not downloaded again.
    pub async fn pull(&self, reference: &str) -> Result<PulledImage, ImageError> {
        let r: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| ImageError::BadReference {
                    reference: reference.into(),
                    reason: e.to_string(),
                })?;
        let client = self.client_for(r.resolve_registry());
        let auth = RegistryAuth::Anonymous;
        let reg_err = |e: oci_client::errors::OciDistributionError| ImageError::Registry {
            reference: reference.to_string(),
            message: describe(&e),
        };
        let (manifest, digest) = client
            .pull_image_manifest(&r, &auth)
            .await
            .map_err(reg_err)?;
        let mut downloaded = 0;
        downloaded += self
            .fetch_blob(&client, &r, &manifest.config)
            .await
            .map_err(reg_err)?;
        let config_bytes = tokio::fs::read(self.blob_path(&manifest.config.digest)).await?;
        let config = parse_config(&config_bytes).map_err(|message| ImageError::Config {
            reference: reference.into(),
            message,
        })?;
        let mut layers = Vec::new();
        for layer in &manifest.layers {
            downloaded += self
                .ensure_layer(&client, &r, layer)
                .await
                .map_err(|e| match e {
                    LayerFetchError::Registry(e) => reg_err(e),
                    LayerFetchError::Layer(source) => ImageError::Layer {
                        reference: reference.to_string(),
                        digest: layer.digest.clone(),
                        source,
                    },
                    LayerFetchError::Io(e) => ImageError::Io(e),
                })?;
            layers.push(layer.digest.clone());
        }
        let img = PulledImage {
            reference: reference.to_string(),
            digest,
            config,
            layers,
            downloaded_bytes: downloaded,
        };
        let json = serde_json::to_vec_pretty(&img).map_err(std::io::Error::other)?;
        write_atomic(&self.ref_path(reference), &json, &self.root.join("tmp")).await?;
        Ok(img)
    }

    fn lock_for(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.blob_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(digest.to_string()).or_default().clone()
    }

    /// Downloads a blob unless present; returns the bytes downloaded.
    async fn fetch_blob(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
    ) -> Result<u64, oci_client::errors::OciDistributionError> {
        let path = self.blob_path(&desc.digest);
        let lock = self.lock_for(&desc.digest);
        let _guard = lock.lock().await;
        if path.exists() {
            return Ok(0);
        }
        let tmp =
            self.root
                .join("tmp")
                .join(format!("{}.{}", hex_of(&desc.digest), std::process::id()));
        let mut file = tokio::fs::File::create(&tmp).await?;
        // pull_blob verifies the digest while streaming to the file.
        let res = client.pull_blob(r, desc, &mut file).await;
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        file.flush().await?;
        file.sync_all().await?;
        let size = file.metadata().await?.len();
        drop(file);
        tokio::fs::rename(&tmp, &path).await?;
        Ok(size)
    }

    async fn ensure_layer(
        &self,
        client: &Client,
        r: &Reference,
        desc: &OciDescriptor,
    ) -> Result<u64, LayerFetchError> {
        let dir = self.layer_dir(&desc.digest);
        if dir.is_dir() {
            return Ok(0);
        }
        let n = self
            .fetch_blob(client, r, desc)
            .await
            .map_err(LayerFetchError::Registry)?;
        let lock = self.lock_for(&format!("unpack:{}", desc.digest));
        let _guard = lock.lock().await;
        if dir.is_dir() {
            return Ok(n);
        }
        let blob = self.blob_path(&desc.digest);
        tokio::task::spawn_blocking(move || unpack_layer(&blob, &dir))
            .await
            .map_err(|e| LayerFetchError::Io(std::io::Error::other(e)))?
            .map_err(LayerFetchError::Layer)?;
        Ok(n)
    }
}

enum LayerFetchError {
    Registry(oci_client::errors::OciDistributionError),
    Layer(LayerError),
    Io(std::io::Error),
}

fn parse_config(bytes: &[u8]) -> Result<ImageConfig, String> {
    let c: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let cfg = c.config().clone().unwrap_or_default();
    Ok(ImageConfig {
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
        user: cfg.user().clone().filter(|u| !u.is_empty()),
    })
}

/// Registry errors in words a user can act on, with what the registry said.
fn describe(e: &oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(m) => format!("manifest not found: {m}"),
        E::AuthenticationFailure(m) => format!("authentication failed: {m}"),
        E::UnauthorizedError { url } => format!("not authorized by the registry ({url})"),
        E::RegistryError { envelope, url } => {
            let said: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect();
            format!("the registry answered {} ({url})", said.join("; "))
        }
        E::RequestError(re) => {
            let mut msg = format!("cannot reach the registry: {re}");
            let mut src = std::error::Error::source(re);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        }
        other => other.to_string(),
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

async fn write_atomic(path: &Path, data: &[u8], tmp_dir: &Path) -> std::io::Result<()> {
    let tmp = tmp_dir.join(format!(
        "ref.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let tmp = tmp.with_extension(format!("{}", uuid_like()));
    let mut f = tokio::fs::File::create(&tmp).await?;
    f.write_all(data).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(&tmp, path).await
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn config_fields() {
        let c = parse_config(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],"Env":["A=1"],"WorkingDir":"/w","User":"1000"}}"#)
        .unwrap();
        assert_eq!(c.entrypoint, vec!["/bin/sh"]);
        assert_eq!(c.cmd, vec!["-c", "x"]);
        assert_eq!(c.working_dir.as_deref(), Some("/w"));
        assert_eq!(c.user.as_deref(), Some("1000"));
    }
}
