//! The content-addressed image store and the registry client in front of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::layer::{LayerError, LowerLink, resolve_lower_links, unpack_layer};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("pulling {reference}: {message}")]
    Registry { reference: String, message: String },
    /// The registry could not be reached at all (connection or TLS failure).
    #[error("pulling {reference}: {message}")]
    Unreachable { reference: String, message: String },
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
    /// An archive that cannot be loaded, and why.
    #[error("{0}")]
    Archive(#[from] crate::archive::ArchiveError),
    #[error("image {0} is not in the store")]
    NotPresent(String),
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
    /// The config blob's digest.
    #[serde(default)]
    pub config_digest: Option<String>,
    /// Compressed size of config and layers, as the manifest gives them.
    #[serde(default)]
    pub size: u64,
    /// Bytes downloaded by the pull that produced this (0 when everything was present).
    #[serde(default)]
    pub downloaded_bytes: u64,
    /// When a container last started from it (or it was pulled).
    #[serde(default)]
    pub last_used: Option<DateTime<Utc>>,
    /// Pulled only with credentials so far: reused only by holders of a login that pulled it.
    #[serde(default)]
    pub private: bool,
    /// Salted hashes of the logins that pulled it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<String>,
}

/// A registry login for one pull.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ******)", self.username)
    }
}

/// How registries are reached.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// `host:port` registries that may be reached over plain HTTP (loopback ones always may).
    pub insecure: Vec<String>,
    /// PEM CA certificates trusted beside the system roots.
    pub ca_pems: Vec<Vec<u8>>,
}

/// Called while blobs download: (blob digest, bytes done, bytes in all).
pub type ProgressFn = dyn Fn(&str, u64, u64) + Send + Sync;

/// (registry, plain HTTP, login): what a registry client is made for.
type ClientKey = (String, bool, String);

/// The store plus registry clients. Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    registries: Arc<RegistryConfig>,
    /// One client per (registry, scheme, login): oci-client keeps tokens per client.
    clients: Arc<Mutex<HashMap<ClientKey, Client>>>,
    /// Registries that answered over plain HTTP (true) or HTTPS (false).
    plain: Arc<Mutex<HashMap<String, bool>>>,
    /// One download or unpack of a given digest at a time, whoever asks.
    blob_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Salt for the login hashes kept with private images.
    salt: Arc<Vec<u8>>,
    /// Pulls hold it shared, garbage collection exclusively.
    gc_lock: Arc<tokio::sync::RwLock<()>>,
    /// Held shared from choosing an image to its container's start, so garbage collection
    /// (which takes it exclusively, before `gc_lock`) never removes layers about to be used.
    start_lock: Arc<tokio::sync::RwLock<()>>,
    /// Pulls under way, for `/metrics`.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl ImageStore {
    pub fn open(root: &Path, registries: RegistryConfig) -> Result<ImageStore, ImageError> {
        for d in ["blobs/sha256", "layers/sha256", "refs", "pins", "tmp"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        // Partial downloads of a process that died; finished blobs are kept.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let salt_path = root.join("login.salt");
        let salt = match std::fs::read(&salt_path) {
            Ok(s) if s.len() >= 16 => s,
            _ => {
                let s: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
                    .iter()
                    .flat_map(|u| u.as_bytes().to_vec())
                    .collect();
                std::fs::write(&salt_path, &s)?;
                s
            }
        };
        Ok(ImageStore {
            gc_lock: Default::default(),
            start_lock: Default::default(),
            in_flight: Default::default(),
            salt: Arc::new(salt),
            root: root.to_path_buf(),
            registries: Arc::new(registries),
            clients: Default::default(),
            plain: Default::default(),
            blob_locks: Default::default(),
        })
    }

    /// Pulls under way.
    pub fn pulls_in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn gc_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.gc_lock
    }

    pub(crate) fn start_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.start_lock
    }

    /// Keeps garbage collection away while images are chosen and containers started from
    /// them; hold it until the containers are running (their layers are then in use).
    pub async fn hold_for_start(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.start_lock.clone().read_owned().await
    }

    /// The unpacked directory of a layer blob.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root.join("layers/sha256").join(hex_of(digest))
    }

    /// Hard links of a layer to files below it, left to resolve (see [`LowerLink`]).
    pub(crate) fn links_file(&self, digest: &str) -> PathBuf {
        self.root
            .join("layers/links")
            .join(format!("{}.json", hex_of(digest)))
    }

    /// Copies into each layer the files its hard links name in the layers below it.
    /// An error names the layer.
    fn resolve_links(&self, layers: &[String]) -> Result<(), (String, LayerError)> {
        for (i, digest) in layers.iter().enumerate() {
            let file = self.links_file(digest);
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let at = |e: LayerError| (digest.clone(), e);
            let links: Vec<LowerLink> =
                serde_json::from_slice(&bytes).map_err(|e| at(std::io::Error::other(e).into()))?;
            let lowers: Vec<PathBuf> = layers[..i].iter().map(|l| self.layer_dir(l)).collect();
            resolve_lower_links(&self.layer_dir(digest), &links, &lowers).map_err(at)?;
            std::fs::remove_file(&file).map_err(|e| at(e.into()))?;
        }
        Ok(())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(digest))
    }

    /// Where a verified blob lives.
    pub(crate) fn blob_file(&self, digest: &str) -> PathBuf {
        self.blob_path(digest)
    }

    /// Scratch space on the store's file system (emptied at open): where an archive being
    /// received is kept, so loading it moves no data across file systems.
    pub fn scratch_dir(&self) -> PathBuf {
        self.tmp_dir()
    }

    /// Scratch space on the store's file system (emptied at open).
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn resolve_links_of(&self, layers: &[String]) -> Result<(), (String, LayerError)> {
        self.resolve_links(layers)
    }

    /// [`Self::save_ref`] for blocking code.
    pub(crate) fn save_ref_blocking(&self, img: &PulledImage) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(img).map_err(std::io::Error::other)?;
        let path = self.ref_path(&img.reference);
        let tmp = self.tmp_dir().join(format!("ref.{}", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, &json)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
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

    /// The image if present and this login may use it: a private image (one only ever pulled
    /// with credentials) is reused only with a login that pulled it, so a group without the
    /// right password cannot run what another group's password fetched.
    pub fn local_for(&self, reference: &str, creds: Option<&Credentials>) -> Option<PulledImage> {
        let img = self.local(reference)?;
        if !img.private {
            return Some(img);
        }
        let id = self.login_id(reference, creds?);
        img.logins.contains(&id).then_some(img)
    }

    fn login_id(&self, reference: &str, creds: &Credentials) -> String {
        let registry = reference.split('/').next().unwrap_or("");
        let mut h = Sha256::new();
        h.update(&self.salt[..]);
        for part in [registry, &creds.username, &creds.password] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        hex::encode(h.finalize())
    }

    /// Pins images for an image cache: they stay, layers and all, until unpinned, whatever
    /// their tags later point to.
    pub async fn pin(&self, cache_id: &str, images: &[PulledImage]) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(images).map_err(std::io::Error::other)?;
        write_atomic(&self.pin_path(cache_id), &json, &self.root.join("tmp")).await?;
        Ok(())
    }

    /// A cache's pinned images, whatever is present.
    pub(crate) fn pinned_any(&self, cache_id: &str) -> Option<Vec<PulledImage>> {
        serde_json::from_slice(&std::fs::read(self.pin_path(cache_id)).ok()?).ok()
    }

    /// A cache's pinned images, if all their layers are present.
    pub fn pinned(&self, cache_id: &str) -> Option<Vec<PulledImage>> {
        let images = self.pinned_any(cache_id)?;
        images
            .iter()
            .all(|i| i.layers.iter().all(|l| self.layer_dir(l).is_dir()))
            .then_some(images)
    }

    pub fn unpin(&self, cache_id: &str) -> Result<(), ImageError> {
        match std::fs::remove_file(self.pin_path(cache_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The ids of every cache with pinned images.
    pub fn pins(&self) -> Vec<String> {
        std::fs::read_dir(self.root.join("pins"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".json")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pin_path(&self, cache_id: &str) -> PathBuf {
        let safe: String = cache_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.root.join("pins").join(format!("{safe}.json"))
    }

    /// Every image the store holds a reference for.
    pub fn list(&self) -> Vec<PulledImage> {
        let mut out: Vec<PulledImage> = std::fs::read_dir(self.root.join("refs"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .filter_map(|b| serde_json::from_slice(&b).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a: &PulledImage, b| a.reference.cmp(&b.reference));
        out
    }

    /// Forgets a reference (its blobs and layers go at the next garbage collection unless
    /// something else uses them). Returns false if the store did not have it.
    pub fn remove(&self, reference: &str) -> Result<bool, ImageError> {
        match std::fs::remove_file(self.ref_path(reference)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Records that the image was just used (for least-recently-used collection).
    pub async fn touch(&self, img: &PulledImage) -> Result<(), ImageError> {
        let mut img = img.clone();
        img.last_used = Some(Utc::now());
        img.downloaded_bytes = 0;
        self.save_ref(&img).await
    }

    pub(crate) async fn save_ref(&self, img: &PulledImage) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(img).map_err(std::io::Error::other)?;
        write_atomic(
            &self.ref_path(&img.reference),
            &json,
            &self.root.join("tmp"),
        )
        .await?;
        Ok(())
    }

    fn client_for(&self, registry: &str, plain: bool, creds: Option<&Credentials>) -> Client {
        let login = creds
            .map(|c| {
                format!(
                    "{}:{}",
                    c.username,
                    hex::encode(Sha256::digest(c.password.as_bytes()))
                )
            })
            .unwrap_or_default();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry((registry.to_string(), plain, login))
            .or_insert_with(|| {
                let protocol = if plain {
                    ClientProtocol::HttpsExcept(vec![registry.to_string()])
                } else {
                    ClientProtocol::Https
                };
                let extra_root_certificates = self
                    .registries
                    .ca_pems
                    .iter()
                    .map(|pem| Certificate {
                        encoding: CertificateEncoding::Pem,
                        data: pem.clone(),
                    })
                    .collect();
                Client::new(ClientConfig {
                    protocol,
                    extra_root_certificates,
                    connect_timeout: Some(std::time::Duration::from_secs(10)),
                    read_timeout: Some(std::time::Duration::from_secs(60)),
                    ..Default::default()
                })
            })
            .clone()
    }

    /// Resolves `reference` at its registry and makes sure every blob of the image is present,
    /// verified and unpacked. Blobs already present are not downloaded again. Registries that
    /// may be plain HTTP are tried over HTTPS first, as Docker does.
    pub async fn pull(
        &self,
        reference: &str,
        creds: Option<&Credentials>,
        progress: Option<&ProgressFn>,
    ) -> Result<PulledImage, ImageError> {
        let r: Reference =
            reference
                .parse()
                .map_err(|e: oci_client::ParseError| ImageError::BadReference {
                    reference: reference.into(),
                    reason: e.to_string(),
                })?;
        let registry = r.resolve_registry().to_string();
        let may_be_plain = is_loopback(&registry) || self.registries.insecure.contains(&registry);
        let known = self
            .plain
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&registry)
            .copied();
        let res = match known {
            Some(plain) => self.pull_with(&r, reference, plain, creds, progress).await,
            None if may_be_plain => {
                match self.pull_with(&r, reference, false, creds, progress).await {
                    Err(ImageError::Unreachable { .. }) => {
                        let res = self.pull_with(&r, reference, true, creds, progress).await;
                        if !matches!(res, Err(ImageError::Unreachable { .. })) {
                            self.plain
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(registry.clone(), true);
                        }
                        res
                    }
                    other => other,
                }
            }
            None => self.pull_with(&r, reference, false, creds, progress).await,
        };
        if known.is_none() && !matches!(res, Err(ImageError::Unreachable { .. })) {
            self.plain
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(registry)
                .or_insert(false);
        }
        res
    }

    async fn pull_with(
        &self,
        r: &Reference,
        reference: &str,
        plain: bool,
        creds: Option<&Credentials>,
        progress: Option<&ProgressFn>,
    ) -> Result<PulledImage, ImageError> {
        let _shared = self.gc_lock.read().await;
        struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _counted = Counted(&self.in_flight);
        let client = self.client_for(r.resolve_registry(), plain, creds);
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let reg_err = |e: oci_client::errors::OciDistributionError| registry_error(reference, &e);
        let (manifest, digest) = client
            .pull_image_manifest(r, &auth)
            .await
            .map_err(reg_err)?;
        let mut downloaded = 0;
        downloaded += self
            .fetch_blob(&client, r, &manifest.config, progress)
            .await
            .map_err(reg_err)?;
        let config_bytes = tokio::fs::read(self.blob_path(&manifest.config.digest)).await?;
        let config = parse_config(&config_bytes).map_err(|message| ImageError::Config {
            reference: reference.into(),
            message,
        })?;
        let size = manifest.config.size.max(0) as u64
            + manifest
                .layers
                .iter()
                .map(|l| l.size.max(0) as u64)
                .sum::<u64>();
        // Layers download (and unpack) in parallel; oci-client bounds the connections.
        let fetched = futures_util::future::join_all(
            manifest
                .layers
                .iter()
                .map(|layer| self.ensure_layer(&client, r, layer, progress)),
        )
        .await;
        let mut layers = Vec::new();
        for (layer, res) in manifest.layers.iter().zip(fetched) {
            downloaded += res.map_err(|e| match e {
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
        let me = self.clone();
        let ordered = layers.clone();
        tokio::task::spawn_blocking(move || me.resolve_links(&ordered))
            .await
            .map_err(|e| ImageError::Io(std::io::Error::other(e)))?
            .map_err(|(digest, source)| ImageError::Layer {
                reference: reference.to_string(),
                digest,
                source,
            })?;
        // Who may reuse it: anyone once an anonymous pull worked, else the logins that pulled it.
        let before = self.local(reference).filter(|b| b.digest == digest);
        let private = creds.is_some() && before.as_ref().is_none_or(|b| b.private);
        let mut logins = before.map(|b| b.logins).unwrap_or_default();
        if let Some(c) = creds {
            let id = self.login_id(reference, c);
            if !logins.contains(&id) {
                logins.push(id);
            }
        }
        let img = PulledImage {
            reference: reference.to_string(),
            digest,
            config,
            config_digest: Some(manifest.config.digest.clone()),
            layers,
            size,
            downloaded_bytes: downloaded,
            last_used: Some(Utc::now()),
            private,
            logins: if private { logins } else { Vec::new() },
        };
        self.save_ref(&img).await?;
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
        progress: Option<&ProgressFn>,
    ) -> Result<u64, oci_client::errors::OciDistributionError> {
        let path = self.blob_path(&desc.digest);
        let lock = self.lock_for(&desc.digest);
        let _guard = lock.lock().await;
        let total = desc.size.max(0) as u64;
        if path.exists() {
            if let Some(p) = progress {
                p(&desc.digest, total, total);
            }
            return Ok(0);
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.{}", hex_of(&desc.digest), uuid_like()));
        let file = tokio::fs::File::create(&tmp).await?;
        let mut out = Counting {
            inner: file,
            done: 0,
            digest: &desc.digest,
            total,
            progress,
        };
        // pull_blob verifies the digest while streaming to the file.
        let res = client.pull_blob(r, desc, &mut out).await;
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let mut file = out.inner;
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
        progress: Option<&ProgressFn>,
    ) -> Result<u64, LayerFetchError> {
        let dir = self.layer_dir(&desc.digest);
        if dir.is_dir() {
            if let Some(p) = progress {
                let total = desc.size.max(0) as u64;
                p(&desc.digest, total, total);
            }
            return Ok(0);
        }
        let n = self
            .fetch_blob(client, r, desc, progress)
            .await
            .map_err(LayerFetchError::Registry)?;
        let lock = self.lock_for(&format!("unpack:{}", desc.digest));
        let _guard = lock.lock().await;
        if dir.is_dir() {
            return Ok(n);
        }
        let blob = self.blob_path(&desc.digest);
        let links = self.links_file(&desc.digest);
        tokio::task::spawn_blocking(move || unpack_layer(&blob, &dir, &links))
            .await
            .map_err(|e| LayerFetchError::Io(std::io::Error::other(e)))?
            .map_err(LayerFetchError::Layer)?;
        Ok(n)
    }
}

/// A file writer that reports how much has been written.
struct Counting<'a> {
    inner: tokio::fs::File,
    done: u64,
    digest: &'a str,
    total: u64,
    progress: Option<&'a ProgressFn>,
}

impl tokio::io::AsyncWrite for Counting<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let res = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &res {
            self.done += *n as u64;
            if let Some(p) = self.progress {
                p(self.digest, self.done, self.total);
            }
        }
        res
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

enum LayerFetchError {
    Registry(oci_client::errors::OciDistributionError),
    Layer(LayerError),
    Io(std::io::Error),
}

pub(crate) fn parse_config(bytes: &[u8]) -> Result<ImageConfig, String> {
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

fn registry_error(reference: &str, e: &oci_client::errors::OciDistributionError) -> ImageError {
    let message = describe(e);
    if matches!(e, oci_client::errors::OciDistributionError::RequestError(_)) {
        ImageError::Unreachable {
            reference: reference.to_string(),
            message,
        }
    } else {
        ImageError::Registry {
            reference: reference.to_string(),
            message,
        }
    }
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
            // The innermost cause says what is wrong: refused, timed out, bad certificate.
            let mut cause: &dyn std::error::Error = re;
            while let Some(next) = cause.source() {
                cause = next;
            }
            match re.url() {
                Some(url) => format!("cannot reach the registry ({url}): {cause}"),
                None => format!("cannot reach the registry: {cause}"),
            }
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

pub(crate) fn hex_of(digest: &str) -> &str {
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
