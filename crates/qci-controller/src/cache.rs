//! Image caches: pull every image of a cache, pin them, and serve groups from them.

use qci_image::{Credentials, PulledImage};
use qci_spec::{
    CachePhase, CachedImage, ContainerGroup, ImageCache, ImageCacheStatus, image_registry,
};

use crate::Controller;

/// Why a group cannot use the image cache it names.
pub(crate) struct CacheProblem {
    pub reason: &'static str,
    pub message: String,
}

impl Controller {
    /// Pulls and pins a cache's images, then marks it Ready (or Failed, with the reason).
    pub(crate) async fn create_cache(&self, c: &ImageCache) {
        // Until the pin is written, the pulled layers must not be collected.
        let _no_gc = self.images.hold_for_start().await;
        let mut pulled: Vec<PulledImage> = Vec::new();
        let mut failure = None;
        for image in &c.spec.images {
            let registry = image_registry(image);
            let creds = match c
                .spec
                .registry_credentials
                .iter()
                .find(|r| r.registry() == registry)
            {
                Some(r) => match self.store.reveal(&r.password) {
                    Ok(password) => Some(Credentials {
                        username: r.username.clone(),
                        password,
                    }),
                    Err(e) => {
                        failure =
                            Some(format!("the credential for {registry} cannot be read: {e}"));
                        break;
                    }
                },
                None => None,
            };
            match self.images.pull(image, creds.as_ref(), None).await {
                Ok(img) => pulled.push(img),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        // Deleted meanwhile: pin nothing.
        if self.store.find_image_cache(&c.owner, &c.id).is_err() {
            return;
        }
        let status = match failure {
            Some(message) => {
                tracing::warn!("image cache {} failed: {message}", c.name);
                ImageCacheStatus {
                    phase: CachePhase::Failed,
                    message: Some(message),
                    ..Default::default()
                }
            }
            None => {
                if let Err(e) = self.images.pin(&c.id, &pulled).await {
                    ImageCacheStatus {
                        phase: CachePhase::Failed,
                        message: Some(e.to_string()),
                        ..Default::default()
                    }
                } else {
                    let images: Vec<CachedImage> = pulled
                        .iter()
                        .map(|i| CachedImage {
                            reference: i.reference.clone(),
                            digest: i.digest.clone(),
                            size: i.size,
                        })
                        .collect();
                    let total_size = images.iter().map(|i| i.size).sum();
                    tracing::info!(
                        "image cache {} is ready: {} images, {total_size} bytes",
                        c.name,
                        images.len()
                    );
                    ImageCacheStatus {
                        phase: CachePhase::Ready,
                        message: None,
                        images,
                        total_size,
                    }
                }
            }
        };
        if let Err(e) = self.store.set_image_cache_status(&c.id, &status) {
            tracing::error!("recording image cache status: {e}");
        }
    }

    /// The cache a group's images come from: the one it names, or with `auto` (the default) a
    /// Ready cache of its owner that holds all its images; `None` for `none` or no match.
    pub(crate) fn cache_for(&self, g: &ContainerGroup) -> Result<Option<ImageCache>, CacheProblem> {
        let mode = g.spec.image_cache.as_deref().unwrap_or("auto");
        if mode == "none" {
            return Ok(None);
        }
        if mode == "auto" {
            let caches = self
                .store
                .list_image_caches(Some(&g.owner))
                .unwrap_or_default();
            return Ok(caches
                .into_iter()
                .find(|c| c.holds_all(g.spec.all_containers().map(|c| c.image.as_str()))));
        }
        let problem = |reason, message| CacheProblem { reason, message };
        let c = self
            .store
            .find_image_cache(&g.owner, mode)
            .map_err(|e| problem("ErrImageCache", e.to_string()))?;
        match c.status.phase {
            CachePhase::Creating => Err(problem(
                "ImageCacheNotReady",
                format!("image cache {:?} is still being created", c.name),
            )),
            CachePhase::Failed => Err(problem(
                "ErrImageCache",
                format!(
                    "image cache {:?} failed: {}",
                    c.name,
                    c.status.message.clone().unwrap_or_default()
                ),
            )),
            CachePhase::Ready => Ok(Some(c)),
        }
    }

    /// The image as the cache pinned it, if the cache holds it.
    pub(crate) fn cached_image(&self, cache: &ImageCache, image: &str) -> Option<PulledImage> {
        self.images
            .pinned(&cache.id)?
            .into_iter()
            .find(|i| i.reference == image)
    }
}
