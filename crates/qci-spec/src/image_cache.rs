//! Image caches: images pulled and unpacked ahead of time and pinned, so groups start without
//! downloading (the seed product's 镜像缓存).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::{FieldError, check_dns_label, check_image_reference, validate_credentials};
use crate::{PASSWORD_MASK, RegistryCredential};

/// At most this many images in one cache.
pub const MAX_CACHE_IMAGES: usize = 50;

/// What a user asks to cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageCacheSpec {
    /// DNS label, unique among the owner's caches.
    pub name: String,
    /// Image references, as groups will name them.
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registry_credentials: Vec<RegistryCredential>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum CachePhase {
    #[default]
    Creating,
    Ready,
    Failed,
}

impl std::fmt::Display for CachePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One image a cache holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CachedImage {
    pub reference: String,
    pub digest: String,
    /// Compressed size of its config and layers.
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageCacheStatus {
    pub phase: CachePhase,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub images: Vec<CachedImage>,
    /// Sum of the images' sizes.
    #[serde(default)]
    pub total_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageCache {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub spec: ImageCacheSpec,
    pub status: ImageCacheStatus,
}

impl ImageCache {
    /// As the API shows it: passwords masked.
    pub fn masked(mut self) -> ImageCache {
        for c in &mut self.spec.registry_credentials {
            c.password = PASSWORD_MASK.to_string();
        }
        self
    }

    /// True when the cache is Ready and holds every one of `images`.
    pub fn holds_all<'a>(&self, mut images: impl Iterator<Item = &'a str>) -> bool {
        self.status.phase == CachePhase::Ready
            && images.all(|i| self.spec.images.iter().any(|c| c == i))
    }
}

/// The rules an image cache spec follows.
pub fn validate_image_cache(spec: &ImageCacheSpec) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut add = |field: String, message: String| errs.push(FieldError { field, message });
    if let Err(m) = check_dns_label(&spec.name) {
        add("name".into(), m);
    }
    if spec.images.is_empty() {
        add("images".into(), "at least one image is required".into());
    }
    if spec.images.len() > MAX_CACHE_IMAGES {
        add(
            "images".into(),
            format!("at most {MAX_CACHE_IMAGES} images in one cache"),
        );
    }
    for (i, image) in spec.images.iter().enumerate() {
        if let Err(m) = check_image_reference(image) {
            add(format!("images[{i}]"), m);
        } else if spec.images[..i].contains(image) {
            add(format!("images[{i}]"), format!("{image:?} is listed twice"));
        }
    }
    errs.extend(validate_credentials(&spec.registry_credentials));
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}
