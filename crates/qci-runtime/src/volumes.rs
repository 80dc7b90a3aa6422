//! A group's volumes on this machine: `<data>/volumes/<group>/<name>/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};
use qci_spec::Volume;
use sha2::{Digest, Sha256};

use crate::mounts::{is_mounted, mounts_under, unmount_if_mounted};
use crate::runtime::{Runtime, RuntimeError};

const MARK: &str = ".qci-volume";

impl Runtime {
    fn volume_dir(&self, group_id: &str, name: &str) -> PathBuf {
        self.layout
            .data_dir
            .join("volumes")
            .join(group_id)
            .join(name)
    }

    /// Makes every volume of the group exist as its spec says (idempotent; a config-file
    /// volume whose content changed is rebuilt, and swapped in whole).
    pub fn ensure_volumes(&self, group_id: &str, volumes: &[Volume]) -> Result<(), RuntimeError> {
        let err =
            |context: String| move |source: std::io::Error| RuntimeError::Io { context, source };
        for v in volumes {
            let dir = self.volume_dir(group_id, &v.name);
            let want = hex::encode(Sha256::digest(serde_json::to_vec(v).unwrap_or_default()));
            if std::fs::read_to_string(dir.join(MARK)).is_ok_and(|m| m == want)
                && v.empty_dir
                    .as_ref()
                    .is_none_or(|e| e.medium != "Memory" || is_mounted(&dir))
            {
                continue;
            }
            let what = format!("volume {:?}", v.name);
            if let Some(c) = &v.config_file {
                let new = dir.with_extension("new");
                let _ = std::fs::remove_dir_all(&new);
                std::fs::create_dir_all(&new).map_err(err(what.clone()))?;
                for f in &c.files {
                    let path = new.join(&f.path);
                    if let Some(p) = path.parent() {
                        std::fs::create_dir_all(p).map_err(err(what.clone()))?;
                    }
                    std::fs::write(&path, &f.content).map_err(err(what.clone()))?;
                    let mode = qci_spec::parse_mode(f.mode.as_deref()).unwrap_or(0o644);
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                        .map_err(err(what.clone()))?;
                }
                std::fs::write(new.join(MARK), &want).map_err(err(what.clone()))?;
                // Swap in whole: containers made later see all the new files or none.
                let old = dir.with_extension("old");
                let _ = std::fs::remove_dir_all(&old);
                if dir.exists() {
                    std::fs::rename(&dir, &old).map_err(err(what.clone()))?;
                }
                std::fs::rename(&new, &dir).map_err(err(what.clone()))?;
                let _ = std::fs::remove_dir_all(&old);
            } else if let Some(e) = &v.empty_dir {
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
        let mut cur = root.clone();
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

    /// Unmounts and removes the group's volumes.
    pub(crate) fn remove_volumes(&self, group_id: &str) -> std::io::Result<()> {
        let dir = self.layout.data_dir.join("volumes").join(group_id);
        for m in mounts_under(&dir).into_iter().rev() {
            unmount_if_mounted(&m)?;
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
