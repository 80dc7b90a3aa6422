//! A group's volumes on this machine: `<data>/volumes/<group>/<name>/`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use qci_spec::Volume;
use sha2::{Digest, Sha256};

use crate::mounts::{first_mount_below, is_mounted, mounts_under, unmount_strict};
use crate::runtime::{Runtime, RuntimeError, VolumeMountRequest};

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

    /// The host path a container's volume mount binds. Without `sub_path`, the volume itself
    /// (a directory qci made). With one, the path is opened one component at a time relative
    /// to the last, refusing any symlink (a container may have planted one to lead out of the
    /// volume) and creating missing directories when `create`; the opened file is then bound
    /// from its descriptor onto `stage`, a path only qci writes, so nothing a container does
    /// after the check can change what is mounted (the subPath race, CVE-2017-1002101).
    pub(crate) fn stage_volume_mount(
        &self,
        group_id: &str,
        m: &VolumeMountRequest,
        stage: &Path,
    ) -> Result<PathBuf, String> {
        let root = self.volume_dir(group_id, &m.volume);
        let Some(sub) = &m.sub_path else {
            return match std::fs::symlink_metadata(&root) {
                Ok(md) if md.is_dir() => Ok(root),
                _ => Err(format!("volume {:?} is not ready", m.volume)),
            };
        };
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut cur = openat(AT_FDCWD, &root, flags | OFlag::O_DIRECTORY, Mode::empty())
            .map_err(|e| format!("volume {:?}: {e}", m.volume))?;
        // A config-file volume's files are in the version `..data` names: a sub_path binds that
        // version's file (it does not follow later updates, as in Kubernetes).
        if let Ok(t) = std::fs::read_link(root.join(DATA_LINK))
            && is_version_name(&t)
        {
            cur = openat(&cur, &t, flags | OFlag::O_DIRECTORY, Mode::empty())
                .map_err(|e| format!("volume {:?}: {e}", m.volume))?;
        }
        let parts: Vec<_> = Path::new(sub).components().collect();
        for (i, c) in parts.iter().enumerate() {
            let Component::Normal(part) = c else {
                return Err(format!("sub_path {sub:?} must be relative, without '..'"));
            };
            let next = match openat(&cur, *part, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if m.create => {
                    match mkdirat(&cur, *part, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(format!("creating sub_path {sub:?}: {e}")),
                    }
                    openat(&cur, *part, flags, Mode::empty())
                        .map_err(|e| format!("sub_path {sub:?}: {e}"))?
                }
                Err(Errno::ENOENT) => {
                    return Err(format!("sub_path {sub:?} is not in volume {:?}", m.volume));
                }
                Err(e) => return Err(format!("sub_path {sub:?}: {e}")),
            };
            let st = fstat(&next).map_err(|e| format!("sub_path {sub:?}: {e}"))?;
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFLNK {
                return Err(format!(
                    "sub_path {sub:?} goes through a symlink ({}), which could lead out of the volume",
                    Path::new(sub)
                        .iter()
                        .take(i + 1)
                        .collect::<PathBuf>()
                        .display()
                ));
            }
            if i + 1 < parts.len() && kind != SFlag::S_IFDIR {
                return Err(format!("sub_path {sub:?}: {part:?} is not a directory"));
            }
            cur = next;
        }
        // The stage takes the shape of what it binds.
        let is_dir = fstat(&cur).is_ok_and(|st| {
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        });
        let made = if is_dir {
            std::fs::create_dir_all(stage)
        } else {
            stage
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(stage).map(drop))
        };
        made.map_err(|e| format!("preparing {}: {e}", stage.display()))?;
        let from = PathBuf::from(format!("/proc/self/fd/{}", cur.as_raw_fd()));
        mount(
            Some(&from),
            stage,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("binding sub_path {sub:?}: {e}"))?;
        Ok(stage.to_path_buf())
    }

    /// Unmounts and removes the group's volumes. Disks are unmounted for real (not lazily), so
    /// once this returns their loop devices are let go and another group may mount them; the
    /// directory is only removed once nothing is mounted below it, so a disk's files are never
    /// deleted through a mount.
    pub(crate) fn remove_volumes(&self, group_id: &str) -> std::io::Result<()> {
        let dir = self.layout.data_dir.join("volumes").join(group_id);
        // (statx first: the mount table is read only when something is mounted there.)
        if first_mount_below(&dir).is_some() {
            for m in mounts_under(&dir).into_iter().rev() {
                unmount_strict(&m)?;
            }
        }
        if let Some(m) = first_mount_below(&dir) {
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
