//! A group's volumes on this machine: `<data>/volumes/<group>/<name>/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};
use qci_spec::Volume;
use sha2::{Digest, Sha256};

use crate::mounts::{is_mounted, mounts_under, unmount_strict};
use crate::runtime::{Runtime, RuntimeError};

const MARK: &str = ".qci-volume";
/// The link to a config-file volume's current version.
const DATA_LINK: &str = "..data";

/// `..<hex>`: a version directory of a config-file volume.
fn is_version_name(p: &Path) -> bool {
    p.to_str()
        .and_then(|s| s.strip_prefix(".."))
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Writes a config-file volume's files as a new version and swaps it in (see
/// [`Runtime::ensure_volumes`]). Nothing is written when the current version is the wanted one.
fn write_config_volume(dir: &Path, c: &qci_spec::ConfigFileVolume) -> std::io::Result<()> {
    let hash = hex::encode(&Sha256::digest(serde_json::to_vec(c).unwrap_or_default())[..8]);
    let version = format!("..{hash}");
    let current = std::fs::read_link(dir.join(DATA_LINK)).ok();
    if current.as_deref() == Some(Path::new(&version)) {
        return Ok(());
    }
    if current.is_none() && dir.exists() {
        // Not in this layout (left by an older qci or a crash before the first swap): start over.
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let new = dir.join(&version);
    let _ = std::fs::remove_dir_all(&new);
    std::fs::create_dir(&new)?;
    let mut top = std::collections::BTreeSet::new();
    for f in &c.files {
        let path = new.join(&f.path);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&path, &f.content)?;
        let mode = qci_spec::parse_mode(f.mode.as_deref()).unwrap_or(0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        if let Some(first) = f.path.split('/').next() {
            top.insert(first.to_string());
        }
    }
    // Durable before it becomes visible.
    nix::unistd::sync();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA_LINK))?;
    // Top-level names link through ..data; new names appear, removed ones go.
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            let tmp = dir.join(format!("..{name}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &tmp)?;
            std::fs::rename(&tmp, &link)?;
        }
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with("..") {
            if n != DATA_LINK && n != version.as_str() {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        } else if !top.contains(n.as_ref()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

impl Runtime {
    fn volume_dir(&self, group_id: &str, name: &str) -> PathBuf {
        self.layout
            .data_dir
            .join("volumes")
            .join(group_id)
            .join(name)
    }

    /// Makes every volume of the group exist as its spec says (idempotent). `disks` maps a
    /// disk volume's name to the disk's id. A config-file volume whose content changed is
    /// updated in place and atomically, as Kubernetes does for ConfigMaps: the files live in
    /// a hidden `..<hash>` directory, `..data` links to it, and each top-level entry links
    /// through `..data`; a new version is written beside the old one and `..data` is swapped
    /// with one rename, so a running container sees all old files or all new ones.
    pub fn ensure_volumes(
        &self,
        group_id: &str,
        volumes: &[Volume],
        disks: &std::collections::HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let err =
            |context: String| move |source: std::io::Error| RuntimeError::Io { context, source };
        for v in volumes {
            let dir = self.volume_dir(group_id, &v.name);
            let what = format!("volume {:?}", v.name);
            if let Some(c) = &v.config_file {
                write_config_volume(&dir, c).map_err(err(what))?;
            } else if v.disk.is_some() {
                let id = disks.get(&v.name).ok_or_else(|| {
                    RuntimeError::Disk(format!("volume {:?}: its disk is not attached", v.name))
                })?;
                self.mount_disk(id, &dir)?;
            } else if let Some(e) = &v.empty_dir {
                let want = hex::encode(Sha256::digest(serde_json::to_vec(v).unwrap_or_default()));
                if std::fs::read_to_string(dir.join(MARK)).is_ok_and(|m| m == want)
                    && (e.medium != "Memory" || is_mounted(&dir))
                {
                    continue;
                }
                std::fs::create_dir_all(&dir).map_err(err(what.clone()))?;
                if e.medium == "Memory" && !is_mounted(&dir) {
                    let bytes = e
                        .size_limit
                        .as_ref()
                        .and_then(|q| qci_spec::parse_memory_bytes(&q.0).ok())
                        .unwrap_or(64 << 20);
                    let opts = format!("size={bytes},mode=1777");
                    mount(
                        Some("tmpfs"),
                        &dir,
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        Some(opts.as_str()),
                    )
                    .map_err(|e| RuntimeError::Io {
                        context: what.clone(),
                        source: e.into(),
                    })?;
                }
                std::fs::write(dir.join(MARK), &want).map_err(err(what.clone()))?;
            }
        }
        Ok(())
    }

    /// The host path a mount binds: the volume, or `sub_path` inside it. No part of the path may
    /// be a symlink (a container could have made one that leads out of the volume); a missing
    /// sub_path of an empty dir is created.
    pub fn volume_source(
        &self,
        group_id: &str,
        name: &str,
        sub_path: Option<&str>,
        create: bool,
    ) -> Result<PathBuf, String> {
        let root = self.volume_dir(group_id, name);
        let Some(sub) = sub_path else { return Ok(root) };
        // A config-file volume's files are in the version `..data` names: a sub_path binds
        // that version's file (it does not follow later updates, as in Kubernetes).
        let base = match std::fs::read_link(root.join(DATA_LINK)) {
            Ok(t) if is_version_name(&t) => root.join(t),
            _ => root.clone(),
        };
        let mut cur = base;
        for c in Path::new(sub).components() {
            let Component::Normal(part) = c else {
                return Err(format!("sub_path {sub:?} must be relative, without '..'"));
            };
            cur.push(part);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "sub_path {sub:?} goes through a symlink ({}), which could lead out of the volume",
                        cur.display()
                    ));
                }
                Ok(_) => {}
                Err(_) if create => std::fs::create_dir(&cur)
                    .map_err(|e| format!("creating sub_path {sub:?}: {e}"))?,
                Err(_) => return Err(format!("sub_path {sub:?} is not in volume {name:?}")),
            }
        }
        Ok(cur)
    }

    /// Unmounts and removes the group's volumes. Disks are unmounted for real (not lazily), so
    /// once this returns their loop devices are let go and another group may mount them; the
    /// directory is only removed once nothing is mounted below it, so a disk's files are never
    /// deleted through a mount.
    pub(crate) fn remove_volumes(&self, group_id: &str) -> std::io::Result<()> {
        let dir = self.layout.data_dir.join("volumes").join(group_id);
        for m in mounts_under(&dir).into_iter().rev() {
            unmount_strict(&m)?;
        }
        if let Some(m) = mounts_under(&dir).first() {
            return Err(std::io::Error::other(format!(
                "{} is still mounted",
                m.display()
            )));
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
