//! Garbage collection: blobs and unpacked layers that no image reference, image cache or
//! container uses are removed; over the size budget, the least recently used references that
//! nothing runs from are dropped too. Layers in use are never removed.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::store::{ImageError, ImageStore, PulledImage};

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    /// References dropped to get under the budget, least recently used first.
    pub removed_images: Vec<String>,
    pub removed_blobs: usize,
    pub removed_layers: usize,
    pub freed_bytes: u64,
    /// Blobs plus unpacked layers, after collection.
    pub total_bytes: u64,
}

impl ImageStore {
    /// Collects garbage. `in_use` holds the layer digests containers on this machine use;
    /// `caches` the ids of image caches that exist (pins of others are dropped); `budget` the
    /// most bytes the store may take.
    pub async fn gc(
        &self,
        in_use: &HashSet<String>,
        caches: &HashSet<String>,
        budget: Option<u64>,
    ) -> Result<GcReport, ImageError> {
        // No start may be under way (its layers are not recorded as in use yet), and no pull
        // (a blob being fetched is referenced by nothing yet). Always in this order.
        let _starts = self.start_lock().write().await;
        let _pulls = self.gc_lock().write().await;
        for pin in self.pins() {
            if !caches.contains(&pin) {
                self.unpin(&pin)?;
            }
        }
        let pinned: Vec<PulledImage> = self
            .pins()
            .iter()
            .filter_map(|p| self.pinned_any(p))
            .flatten()
            .collect();
        let mut report = GcReport::default();
        let mut refs = self.list();
        loop {
            let mut keep: HashSet<String> = in_use.clone();
            for img in refs.iter().chain(&pinned) {
                keep.extend(img.layers.iter().cloned());
                if let Some(c) = &img.config_digest {
                    keep.insert(c.clone());
                }
            }
            self.sweep(&keep, &mut report)?;
            report.total_bytes = self.disk_usage();
            let Some(budget) = budget else { break };
            if report.total_bytes <= budget {
                break;
            }
            // The least recently used reference that nothing runs from and no cache pins.
            let pinned_layers: HashSet<&String> = pinned.iter().flat_map(|p| &p.layers).collect();
            refs.sort_by_key(|r| r.last_used);
            // (One whose every layer a container or a cache uses is in use; layers it shares
            // with such images stay whatever happens to it.)
            let victim = refs.iter().position(|r| {
                !r.layers
                    .iter()
                    .all(|l| in_use.contains(l) || pinned_layers.contains(l))
            });
            let Some(i) = victim else { break };
            let r = refs.remove(i);
            self.remove(&r.reference)?;
            report.removed_images.push(r.reference);
        }
        Ok(report)
    }

    /// Removes blobs and layer directories whose digest is not in `keep`.
    fn sweep(&self, keep: &HashSet<String>, report: &mut GcReport) -> Result<(), ImageError> {
        for (dir, is_layer) in [
            (self.root().join("blobs/sha256"), false),
            (self.root().join("layers/sha256"), true),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                // Half-unpacked layers of a crashed process go too.
                let hex = name.strip_suffix(".partial").unwrap_or(&name);
                if keep.contains(&format!("sha256:{hex}")) && !name.ends_with(".partial") {
                    continue;
                }
                let path = e.path();
                let size = usage(&path);
                if is_layer {
                    std::fs::remove_dir_all(&path)?;
                    let _ = std::fs::remove_file(self.links_file(&format!("sha256:{hex}")));
                    report.removed_layers += 1;
                } else {
                    std::fs::remove_file(&path)?;
                    report.removed_blobs += 1;
                }
                report.freed_bytes += size;
            }
        }
        Ok(())
    }

    /// Bytes the blobs and unpacked layers take.
    pub fn disk_usage(&self) -> u64 {
        usage(&self.root().join("blobs")) + usage(&self.root().join("layers"))
    }
}

/// Bytes under `path` (files only, each counted once, symlinks not followed).
fn usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| usage(&e.path())).sum())
        .unwrap_or(0)
}
