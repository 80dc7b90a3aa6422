//! Disks on this machine: `<data>/disks/<id>.img`, a sparse file formatted ext4, bound to a loop
//! device and mounted at the group's volume directory while a group uses it. The block device
//! enforces the size (a full disk gives ENOSPC inside the container and never fills the host);
//! the sparse file takes host space only as data is written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::mount::{MsFlags, mount};

use crate::loopdev;
use crate::mounts::{is_mounted, mount_sources};
use crate::runtime::{Runtime, RuntimeError};

/// Mounting, growing and removing one disk never overlap (the controller's pass and an API
/// call may race); disks are few and these calls short, so one lock serves all.
static DISK_LOCK: Mutex<()> = Mutex::new(());

fn disk_err(context: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |source| RuntimeError::Io { context, source }
}

fn run(cmd: &mut Command) -> std::io::Result<()> {
    let out = cmd.output().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "running {:?}: {e} (is e2fsprogs installed?)",
                cmd.get_program()
            ),
        )
    })?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Bytes the filesystem holding `dir` has free for unprivileged writers.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

impl Runtime {
    fn disks_dir(&self) -> PathBuf {
        self.layout.data_dir.join("disks")
    }

    pub fn disk_image(&self, id: &str) -> PathBuf {
        self.disks_dir().join(format!("{id}.img"))
    }

    /// Makes a disk's image: a sparse file of `size` bytes formatted ext4, written under a
    /// temporary name and renamed into place, so a crash leaves no half-made disk.
    pub fn create_disk_image(&self, id: &str, size: u64) -> Result<(), RuntimeError> {
        let what = format!("creating disk {id}");
        let dir = self.disks_dir();
        std::fs::create_dir_all(&dir).map_err(disk_err(what.clone()))?;
        let free = free_bytes(&dir).map_err(disk_err(what.clone()))?;
        if size > free {
            return Err(RuntimeError::Disk(format!(
                "a disk of {size} bytes is larger than the {free} bytes free on this machine's data filesystem"
            )));
        }
        let tmp = dir.join(format!("{id}.img.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let made = (|| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.set_len(size)?;
            drop(f);
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-L", &id[..id.len().min(16)]])
                .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
                .arg(&tmp))?;
            std::fs::rename(&tmp, self.disk_image(id))
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        made.map_err(disk_err(what))
    }

    /// Removes images half-made by a create that crashed, and those of disks the store no
    /// longer has (a remove that crashed between the store and the file).
    pub fn prune_disk_images(&self, known: &[String]) {
        let Ok(entries) = std::fs::read_dir(self.disks_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = match name
                .strip_suffix(".img")
                .or_else(|| name.strip_suffix(".grow"))
            {
                Some(id) => !known.iter().any(|k| k == id),
                None => name.ends_with(".img.tmp"),
            };
            if stale && loopdev::devices_of(&e.path()).is_empty() {
                tracing::info!(file = %name, "removing a disk image no disk owns");
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Removes a disk's image; refused while it is bound to a loop device (mounted).
    pub fn remove_disk_image(&self, id: &str) -> Result<(), RuntimeError> {
        let _lock = DISK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let image = self.disk_image(id);
        if let Some(dev) = loopdev::devices_of(&image).first() {
            return Err(RuntimeError::Disk(format!(
                "disk {id} is still bound to {}",
                dev.display()
            )));
        }
        let _ = std::fs::remove_file(self.pending_grow(id));
        match std::fs::remove_file(&image) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(disk_err(format!("removing disk {id}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Grows a disk to `size` bytes: online if it is mounted (the loop device is told of the
    /// new size and ext4 grows in place), else offline after a check. When the online growth
    /// is not possible (it needs CAP_SYS_RESOURCE, which a sandboxed qci may lack), the file is
    /// grown, the filesystem's growth is recorded as pending and done offline before the disk
    /// is next mounted; the returned text says so.
    pub fn grow_disk(&self, id: &str, size: u64) -> Result<Option<String>, RuntimeError> {
        let _lock = DISK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let what = format!("growing disk {id}");
        let image = self.disk_image(id);
        let len = std::fs::metadata(&image)
            .map_err(disk_err(what.clone()))?
            .len();
        if size > len {
            let free = free_bytes(&self.disks_dir()).map_err(disk_err(what.clone()))?;
            if size - len > free {
                return Err(RuntimeError::Disk(format!(
                    "growing by {} bytes needs more than the {free} bytes free on this machine's data filesystem",
                    size - len
                )));
            }
            std::fs::OpenOptions::new()
                .write(true)
                .open(&image)
                .and_then(|f| f.set_len(size))
                .map_err(disk_err(what.clone()))?;
        }
        match loopdev::devices_of(&image).first() {
            Some(dev) => {
                let online = loopdev::refresh_capacity(dev)
                    .and_then(|()| run(Command::new("resize2fs").arg(dev)));
                match online {
                    Ok(()) => Ok(None),
                    Err(e) => {
                        let msg = format!(
                            "the filesystem grows to {size} bytes when the disk is next attached (growing it online failed: {e})"
                        );
                        std::fs::write(self.pending_grow(id), &msg).map_err(disk_err(what))?;
                        tracing::warn!(disk = id, "{msg}");
                        Ok(Some(msg))
                    }
                }
            }
            None => self.grow_offline(id).map(|()| None),
        }
    }

    fn pending_grow(&self, id: &str) -> PathBuf {
        self.disks_dir().join(format!("{id}.grow"))
    }

    /// Why a disk's filesystem is smaller than the disk, if it is (a growth not yet done).
    pub fn disk_note(&self, id: &str) -> Option<String> {
        std::fs::read_to_string(self.pending_grow(id)).ok()
    }

    /// Checks an unmounted disk's filesystem and grows it to fill its file.
    fn grow_offline(&self, id: &str) -> Result<(), RuntimeError> {
        let what = format!("growing disk {id}");
        let image = self.disk_image(id);
        // e2fsck exits 1 when it fixed something, which is fine here.
        let st = Command::new("e2fsck")
            .args(["-f", "-p"])
            .arg(&image)
            .output()
            .map_err(disk_err(what.clone()))?;
        if st.status.code().is_none_or(|c| c > 1) {
            return Err(RuntimeError::Disk(format!(
                "the filesystem check of disk {id} failed ({}): {}",
                st.status,
                String::from_utf8_lossy(&st.stdout).trim()
            )));
        }
        run(Command::new("resize2fs").arg(&image)).map_err(disk_err(what.clone()))?;
        match std::fs::remove_file(self.pending_grow(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(disk_err(what)(e)),
            _ => Ok(()),
        }
    }

    /// Mounts disk `id` at `target` unless it is there already. A disk is mounted at most
    /// once on the machine: one still bound to a loop device elsewhere (a mount not yet gone)
    /// is refused rather than mounted twice, which would corrupt it.
    pub(crate) fn mount_disk(&self, id: &str, target: &Path) -> Result<(), RuntimeError> {
        let _lock = DISK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        if is_mounted(target) {
            return Ok(());
        }
        let what = format!("mounting disk {id}");
        let image = self.disk_image(id);
        if !image.exists() {
            return Err(RuntimeError::Disk(format!(
                "disk {id} has no image at {}",
                image.display()
            )));
        }
        let devs = loopdev::devices_of(&image);
        if !devs.is_empty() {
            let at: Vec<String> = mount_sources()
                .into_iter()
                .filter(|(_, src)| devs.iter().any(|d| d == src))
                .map(|(p, _)| p.display().to_string())
                .collect();
            return Err(RuntimeError::Disk(format!(
                "disk {id} is still bound to {} (mounted at {}); it is mounted once at most",
                devs[0].display(),
                if at.is_empty() {
                    "nothing yet".into()
                } else {
                    at.join(", ")
                }
            )));
        }
        if self.pending_grow(id).exists() {
            self.grow_offline(id)?;
        }
        std::fs::create_dir_all(target).map_err(disk_err(what.clone()))?;
        let dev = loopdev::attach(&image).map_err(disk_err(what.clone()))?;
        mount(
            Some(&dev.path),
            target,
            Some("ext4"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| disk_err(what)(e.into()))?;
        tracing::info!(disk = id, dev = %dev.path.display(), at = %target.display(), "disk mounted");
        Ok(())
    }
}
