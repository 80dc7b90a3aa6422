//! Where an instance keeps things, all derived from its data dir.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The directories and names of one qci instance.
#[derive(Debug, Clone)]
pub struct Layout {
    pub data_dir: PathBuf,
    /// Namespace files and runc state: `<data>/run`.
    pub run_dir: PathBuf,
    /// runc's `--root`.
    pub runc_root: PathBuf,
    /// runsc's `--root` (gVisor sandboxes).
    pub runsc_root: PathBuf,
    /// The cgroup every container of this instance lives under: `qci-<hash of the data dir>`.
    pub cgroup_parent: String,
}

impl Layout {
    /// `data_dir` must exist; it is canonicalised so that the same directory always gives the
    /// same cgroup parent.
    pub fn new(data_dir: &Path) -> std::io::Result<Layout> {
        let data_dir = data_dir.canonicalize()?;
        let s = data_dir.to_string_lossy();
        if s.contains([',', ':', '\n']) {
            return Err(std::io::Error::other(format!(
                "data dir {s:?} must not contain ',' or ':' (they separate overlayfs mount options)"
            )));
        }
        let hash = hex::encode(Sha256::digest(s.as_bytes()));
        let run_dir = data_dir.join("run");
        Ok(Layout {
            runc_root: run_dir.join("runc"),
            runsc_root: run_dir.join("runsc"),
            run_dir,
            cgroup_parent: format!("qci-{}", &hash[..12]),
            data_dir,
        })
    }

    /// The socket monitors poke when a container exits.
    pub fn notify_socket(&self) -> PathBuf {
        self.run_dir.join("notify.sock")
    }

    /// The bundle and monitor files of one container.
    pub fn container_dir(&self, runc_id: &str) -> PathBuf {
        self.data_dir.join("containers").join(runc_id)
    }

    /// A group's log directory; logs outlive container restarts and go with the group.
    pub fn group_log_dir(&self, group_id: &str) -> PathBuf {
        self.data_dir.join("logs").join(group_id)
    }

    pub fn log_path(&self, group_id: &str, container: &str) -> PathBuf {
        self.group_log_dir(group_id)
            .join(format!("{container}.log"))
    }

    /// The log of the container's instance before its last restart.
    pub fn previous_log_path(&self, group_id: &str, container: &str) -> PathBuf {
        self.group_log_dir(group_id)
            .join(format!("{container}.previous.log"))
    }

    /// The group's namespace files, /etc/hosts and /etc/hostname.
    pub fn sandbox_dir(&self, group_id: &str) -> PathBuf {
        self.run_dir.join("sandboxes").join(group_id)
    }

    /// The bundle of a group's gVisor sandbox (its pause container).
    pub fn gvisor_dir(&self, group_id: &str) -> PathBuf {
        self.run_dir.join("gvisor").join(group_id)
    }

    /// The group's cgroup, relative to each hierarchy's root.
    pub fn group_cgroup(&self, group_id: &str) -> String {
        format!("/{}/{}", self.cgroup_parent, group_id)
    }

    /// runc's name for a container of a group.
    pub fn runc_id(group_id: &str, container: &str) -> String {
        format!("{group_id}-{container}")
    }
}
