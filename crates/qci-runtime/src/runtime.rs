//! The runtime as the controller sees it: start, observe, stop and remove containers, and
//! create and remove a group's sandbox.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::bundle::{BundleError, ContainerConfig, SandboxPaths, build_spec};
use crate::layout::Layout;
use crate::monitor::{ExitRecord, MonitorArgs, StartRecord, parse_handshake, read_json};
use crate::runc::{Runc, RuncError};
use crate::{cgroup, mounts, sandbox};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("{0}")]
    Runc(#[from] RuncError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("starting the container: {0}")]
    Start(String),
    #[error("{0}")]
    Disk(String),
}

impl RuntimeError {
    /// The container's own configuration is at fault (its user, its security_context).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            RuntimeError::Bundle(BundleError::User(_) | BundleError::RunsAsRoot)
        )
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

/// What one container looks like on this machine right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Nothing of it exists.
    Absent,
    /// Its monitor is creating and starting it.
    Starting,
    Running(StartRecord),
    Exited(ExitRecord),
    /// Left half-made (its monitor is gone before it started): remove and start again.
    Broken,
}

/// A container to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub group_id: String,
    pub name: String,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    pub config: ContainerConfig,
    /// What the container was made from (recorded; a different one later means it is out of date).
    pub fingerprint: String,
    /// The group's volumes it mounts (resolved and bound safely at start).
    pub volume_mounts: Vec<VolumeMountRequest>,
    /// The container joins its group's gVisor sandbox (which
    /// [`Runtime::ensure_gvisor_sandbox`] made) instead of running on runc.
    pub gvisor: bool,
}

/// A volume of the group mounted into a container.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeMountRequest {
    pub volume: String,
    pub sub_path: Option<String>,
    /// Create a missing sub_path (disks and empty dirs).
    pub create: bool,
    pub dest: String,
    pub read_only: bool,
}

/// The file in a container's bundle dir that says it runs in a gVisor sandbox.
const GVISOR_MARK: &str = "gvisor";

#[derive(Clone)]
pub struct Runtime {
    pub layout: Layout,
    pub runc: Runc,
    /// gVisor's runsc, for groups on `runtime: gvisor`.
    pub runsc: Runc,
    /// The `qci` binary, started as `qci monitor` (and as `qci pause` in gVisor sandboxes).
    exe: PathBuf,
}

impl Runtime {
    pub fn new(layout: Layout, exe: PathBuf) -> Result<Runtime, RuntimeError> {
        for d in [
            &layout.run_dir,
            &layout.runc_root,
            &layout.data_dir.join("containers"),
            &layout.data_dir.join("logs"),
        ] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let runc = Runc::new(&layout.runc_root);
        let runsc = Runc::gvisor(&layout.runsc_root);
        Ok(Runtime {
            layout,
            runc,
            runsc,
            exe,
        })
    }

    /// runsc for a container made in a gVisor sandbox (its bundle says so), else runc.
    pub(crate) fn engine(&self, container_dir: &Path) -> &Runc {
        if container_dir.join(GVISOR_MARK).exists() {
            &self.runsc
        } else {
            &self.runc
        }
    }

    /// Makes sure the group's gVisor sandbox runs: its pause container, in the group's
    /// network namespace (which [`Runtime::ensure_sandbox`] made) and cgroup. A sandbox found
    /// stopped is removed and made again.
    pub async fn ensure_gvisor_sandbox(&self, group_id: &str) -> Result<(), RuntimeError> {
        let id = crate::gvisor::sandbox_id(group_id);
        let dir = self.layout.gvisor_dir(group_id);
        // No bundle, no sandbox (the bundle is written before `runsc run` and removed after
        // `runsc delete`): a first start asks runsc nothing more.
        if dir.exists() {
            if let Ok(Some(st)) = self.runsc.state(&id).await
                && st.status == crate::RuncStatus::Running
            {
                return Ok(());
            }
            self.runsc.delete(&id).await?;
        }
        std::fs::create_dir_all(&self.layout.runsc_root)
            .map_err(io("creating runsc's state dir"))?;
        let rootfs = dir.join("rootfs");
        let libraries =
            crate::gvisor::prepare_rootfs(&rootfs).map_err(io("making the sandbox's root"))?;
        let spec = crate::gvisor::pause_spec(
            &self.exe,
            &rootfs,
            &libraries,
            &self.layout.sandbox_dir(group_id).join("net"),
            &crate::gvisor::sandbox_cgroup(&self.layout.group_cgroup(group_id)),
            &id,
        )?;
        spec.save(dir.join("config.json"))
            .map_err(BundleError::from)?;
        let dir_s = dir.display().to_string();
        let pid = dir.join("pid").display().to_string();
        let mut cmd = tokio::process::Command::from(self.runsc.command(&[
            "run",
            "--detach",
            "--bundle",
            &dir_s,
            "--pid-file",
            &pid,
            &id,
        ]));
        // runsc's words go to a file, not a pipe: the sandbox it leaves running inherits its
        // stderr, and a pipe would then never close.
        let errors = dir.join("runsc.err");
        let err_file = std::fs::File::create(&errors).map_err(io("runsc's error file"))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err_file));
        let status = cmd.status().await.map_err(|source| {
            RuntimeError::Runc(RuncError::Spawn {
                path: self.runsc.binary.display().to_string(),
                package: self.runsc.package(),
                source,
            })
        })?;
        if !status.success() {
            return Err(RuntimeError::Runc(RuncError::Failed {
                args: format!("run {id}"),
                stderr: std::fs::read_to_string(&errors)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            }));
        }
        Ok(())
    }

    /// Stops and removes the group's gVisor sandbox (everything still in it goes with it) and
    /// its bundle. A group without one is left as it is, without asking runsc: the bundle
    /// goes last, so a removal cut short is finished by the next call.
    pub async fn remove_gvisor_sandbox(&self, group_id: &str) -> Result<(), RuntimeError> {
        let id = crate::gvisor::sandbox_id(group_id);
        let dir = self.layout.gvisor_dir(group_id);
        if !dir.exists() {
            return Ok(());
        }
        self.runsc.kill(&id, "KILL").await?;
        self.runsc.delete(&id).await?;
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("removing the sandbox's bundle")(e))
            }
            _ => Ok(()),
        }
    }

    /// Makes sure the group's namespaces exist (network with loopback up, IPC, UTS).
    /// Puts the group's address in its /etc/hosts, beside its hostname.
    pub fn set_group_address(
        &self,
        group_id: &str,
        hostname: &str,
        ip: Option<&str>,
    ) -> Result<(), RuntimeError> {
        sandbox::set_hosts(&self.layout.sandbox_dir(group_id), hostname, ip)
            .map_err(io("writing the group's /etc/hosts"))
    }

    pub async fn ensure_sandbox(
        &self,
        group_id: &str,
        hostname: &str,
        shm_bytes: Option<u64>,
    ) -> Result<(), RuntimeError> {
        let dir = self.layout.sandbox_dir(group_id);
        let name = hostname.to_string();
        tokio::task::spawn_blocking(move || sandbox::ensure(&dir, &name, shm_bytes))
            .await
            .map_err(|e| RuntimeError::Start(e.to_string()))?
            .map_err(io("creating the group's namespaces"))
    }

    fn container_cgroup(&self, group_id: &str, name: &str) -> String {
        format!("{}/{name}", self.layout.group_cgroup(group_id))
    }

    /// Writes the bundle, mounts the root filesystem and has a monitor create and start the
    /// container. Anything left of an earlier attempt is removed first.
    pub async fn start(&self, req: &StartRequest) -> Result<StartRecord, RuntimeError> {
        let id = Layout::runc_id(&req.group_id, &req.name);
        self.remove_container(&req.group_id, &req.name).await?;
        let dir = self.layout.container_dir(&id);
        let res = self.start_in(&id, &dir, req).await;
        if let Err(e) = &res {
            self.record_start_failure(&req.group_id, &req.name, &e.to_string(), e.is_config())
                .await?;
        }
        res
    }

    /// Records that a container could not start, as an exit record (exit code 128, as
    /// Kubernetes reports it), so the failure is observed like any exit.
    pub async fn record_start_failure(
        &self,
        group_id: &str,
        name: &str,
        message: &str,
        config_error: bool,
    ) -> Result<(), RuntimeError> {
        self.remove_container(group_id, name).await?;
        let dir = self.layout.container_dir(&Layout::runc_id(group_id, name));
        let rec = ExitRecord {
            exit_code: 128,
            signal: None,
            oom_killed: false,
            started_at: None,
            finished_at: chrono::Utc::now(),
            start_error: Some(message.to_string()),
            config_error,
            lost: false,
        };
        std::fs::create_dir_all(&dir).map_err(io("recording a start failure"))?;
        crate::monitor::write_json_atomic(&dir.join("exit.json"), &rec)
            .map_err(io("recording a start failure"))
    }

    async fn start_in(
        &self,
        id: &str,
        dir: &Path,
        req: &StartRequest,
    ) -> Result<StartRecord, RuntimeError> {
        // The bundle is made with blocking calls (mount, files): off the async workers, which
        // the API needs meanwhile. A mount waits on a kernel lock that every runc making a
        // container takes, for longer the more mounts the machine has. A blocking task of its
        // own (not `block_in_place`), so the containers of one group are prepared together.
        let (rt, id_, dir_, req_) = (self.clone(), id.to_string(), dir.to_path_buf(), req.clone());
        let args = tokio::task::spawn_blocking(move || rt.prepare(&id_, &dir_, &req_))
            .await
            .map_err(|e| RuntimeError::Start(e.to_string()))??;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("monitor").args(args.to_args());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(runc) = std::env::var_os("QCI_RUNC") {
            cmd.env("QCI_RUNC", runc);
        }
        let out = cmd
            .output()
            .await
            .map_err(io(format!("starting the monitor ({})", self.exe.display())))?;
        parse_handshake(&out.stdout).map_err(|e| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            RuntimeError::Start(if stderr.trim().is_empty() {
                e
            } else {
                format!("{e}: {}", stderr.trim())
            })
        })
    }

    /// Writes the container's bundle in `dir` and mounts its root filesystem: what the monitor
    /// needs to start it.
    fn prepare(
        &self,
        id: &str,
        dir: &Path,
        req: &StartRequest,
    ) -> Result<MonitorArgs, RuntimeError> {
        let rootfs = dir.join("rootfs");
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(io(format!("creating {}", dir.join(d).display())))?;
        }
        let mut layers = req.layers.clone();
        if layers.is_empty() {
            let empty = dir.join("empty");
            std::fs::create_dir_all(&empty).map_err(io("creating an empty layer"))?;
            layers.push(empty);
        }
        std::fs::write(dir.join("fingerprint"), &req.fingerprint)
            .map_err(io("recording the fingerprint"))?;
        // Recorded before the mount, so image garbage collection sees these layers in use.
        let names: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        crate::monitor::write_json_atomic(&dir.join("layers.json"), &names)
            .map_err(io("recording layers"))?;
        mounts::mount_overlay(&layers, &dir.join("upper"), &dir.join("work"), &rootfs)
            .map_err(io("root filesystem"))?;
        let mut config = req.config.clone();
        for (i, m) in req.volume_mounts.iter().enumerate() {
            let stage = dir.join("volumes").join(i.to_string());
            let source = self
                .stage_volume_mount(&req.group_id, m, &stage)
                .map_err(RuntimeError::Start)?;
            config.mounts.push((source, m.dest.clone(), m.read_only));
        }
        let sandbox_dir = self.layout.sandbox_dir(&req.group_id);
        let cgroup = self.container_cgroup(&req.group_id, &req.name);
        let mut spec = build_spec(
            &config,
            &rootfs,
            SandboxPaths { dir: &sandbox_dir },
            &cgroup,
        )?;
        if req.gvisor {
            let sandbox = crate::gvisor::sandbox_id(&req.group_id);
            spec.set_annotations(Some(crate::gvisor::annotations(&sandbox, false)));
            // What stops and removes it later asks runsc, not runc.
            std::fs::write(dir.join(GVISOR_MARK), b"").map_err(io("marking the container"))?;
        }
        spec.save(dir.join("config.json"))
            .map_err(BundleError::from)?;
        let log = self.layout.log_path(&req.group_id, &req.name);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating the log dir"))?;
        }
        // The previous instance's output stays readable (`logs --previous`); this one starts afresh.
        if std::fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
            let previous = self.layout.previous_log_path(&req.group_id, &req.name);
            std::fs::rename(&log, &previous).map_err(io("keeping the previous log"))?;
            let (mut rotated, mut prev_rotated) =
                (log.clone().into_os_string(), previous.into_os_string());
            rotated.push(".1");
            prev_rotated.push(".1");
            let _ = std::fs::remove_file(&prev_rotated);
            let _ = std::fs::rename(&rotated, &prev_rotated);
        }
        Ok(MonitorArgs {
            runc_root: self.engine(dir).root.clone(),
            id: id.to_string(),
            bundle: dir.to_path_buf(),
            log,
            cgroup,
            notify: self.layout.notify_socket(),
            max_log_size: req.config.max_log_size,
            tty: req.config.tty,
            stdin: req.config.stdin,
            gvisor: req.gvisor,
        })
    }

    /// Looks at the container's files (and, only when its monitor is gone, at runc).
    pub async fn observe(&self, group_id: &str, name: &str) -> Observed {
        let id = Layout::runc_id(group_id, name);
        let dir = self.layout.container_dir(&id);
        if let Some(exit) = read_json::<ExitRecord>(&dir.join("exit.json")) {
            return Observed::Exited(exit);
        }
        if !dir.exists() {
            return Observed::Absent;
        }
        let started = read_json::<StartRecord>(&dir.join("started.json"));
        if monitor_alive(&dir, &id) {
            return match started {
                Some(s) => Observed::Running(s),
                None => Observed::Starting,
            };
        }
        // Re-read: the monitor may have written its exit record and gone in between.
        if let Some(exit) = read_json::<ExitRecord>(&dir.join("exit.json")) {
            return Observed::Exited(exit);
        }
        match started {
            // The monitor died (killed by hand?) but the container may still run, unwatched.
            Some(s) if matches!(self.engine(&dir).state(&id).await, Ok(Some(st)) if st.status == crate::RuncStatus::Running) => {
                Observed::Running(s)
            }
            Some(s) => Observed::Exited(ExitRecord {
                exit_code: 255,
                signal: None,
                oom_killed: false,
                started_at: Some(s.started_at),
                finished_at: chrono::Utc::now(),
                start_error: None,
                config_error: false,
                lost: true,
            }),
            None => Observed::Broken,
        }
    }

    /// SIGTERM to the container's first process (as Docker and Kubernetes send it), then
    /// SIGKILL once `grace` has passed; returns when the container has exited.
    pub async fn stop(
        &self,
        group_id: &str,
        name: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let id = Layout::runc_id(group_id, name);
        let pid = match self.observe(group_id, name).await {
            Observed::Running(s) => Some(s.pid),
            Observed::Starting => None,
            _ => return Ok(()),
        };
        let dir = self.layout.container_dir(&id);
        let engine = self.engine(&dir);
        // (In a gVisor sandbox the recorded pid is the sandbox's: only runsc may signal.)
        let pid = pid.filter(|_| !engine.gvisor);
        if !pid.is_some_and(|p| signal_first_process(&dir, p, rustix::process::Signal::TERM)) {
            engine.kill(&id, "TERM").await?;
        }
        if self.wait_exit(group_id, name, grace).await {
            return Ok(());
        }
        // The first process is its PID namespace's init: when it dies the kernel kills the rest.
        if !pid.is_some_and(|p| signal_first_process(&dir, p, rustix::process::Signal::KILL)) {
            engine.kill(&id, "KILL").await?;
        }
        self.wait_exit(group_id, name, Duration::from_secs(10))
            .await;
        Ok(())
    }

    async fn wait_exit(&self, group_id: &str, name: &str, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if !matches!(
                self.observe(group_id, name).await,
                Observed::Running(_) | Observed::Starting
            ) {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes the container from runc, unmounts its root filesystem and deletes its bundle.
    /// Its log stays (it belongs to the group).
    pub async fn remove_container(&self, group_id: &str, name: &str) -> Result<(), RuntimeError> {
        let id = Layout::runc_id(group_id, name);
        let dir = self.layout.container_dir(&id);
        self.engine(&dir).delete(&id).await?;
        // (Unmounting blocks: off the async workers, as in `start_in`.)
        tokio::task::block_in_place(|| Self::remove_bundle(&dir))
    }

    /// Unmounts a container's root filesystem and deletes its bundle directory, never through
    /// a mount.
    fn remove_bundle(dir: &Path) -> Result<(), RuntimeError> {
        let dir = dir.to_path_buf();
        if dir.exists() {
            // Its root filesystem is the one mount qci makes there; anything else mounted
            // below goes too (found by the mount table, only then).
            let rootfs = dir.join("rootfs");
            mounts::unmount_if_mounted(&rootfs).map_err(io("unmounting"))?;
            if mounts::first_mount_below(&dir).is_some() {
                for m in mounts::mounts_under(&dir).into_iter().rev() {
                    mounts::unmount_if_mounted(&m).map_err(io("unmounting"))?;
                }
            }
            // Never delete through a mount (a volume's files, a disk's data).
            if let Some(m) = mounts::first_mount_below(&dir) {
                return Err(RuntimeError::Io {
                    context: format!("removing {}", dir.display()),
                    source: std::io::Error::other(format!("{} is still mounted", m.display())),
                });
            }
            std::fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
        }
        Ok(())
    }

    /// What the container was made from, as [`StartRequest::fingerprint`] recorded it.
    pub fn fingerprint(&self, group_id: &str, name: &str) -> Option<String> {
        std::fs::read_to_string(
            self.layout
                .container_dir(&Layout::runc_id(group_id, name))
                .join("fingerprint"),
        )
        .ok()
    }

    /// Every container this machine has a bundle for, by group id (one directory read, for a
    /// pass over every group).
    pub fn all_containers(&self) -> std::collections::HashMap<String, Vec<String>> {
        let mut by_group: std::collections::HashMap<String, Vec<String>> = Default::default();
        if let Ok(d) = std::fs::read_dir(self.layout.data_dir.join("containers")) {
            for e in d.flatten() {
                let name = e.file_name();
                // `cg-<hex>-<container>`: group ids hold one '-', container names may hold more.
                let Some((hex, container)) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("cg-"))
                    .and_then(|n| n.split_once('-'))
                else {
                    continue;
                };
                by_group
                    .entry(format!("cg-{hex}"))
                    .or_default()
                    .push(container.to_string());
            }
        }
        by_group
    }

    /// The layer directories every container on this machine uses: those its bundle records,
    /// and, to be safe with bundles from before that record existed, every lower directory of
    /// a mounted overlay.
    pub fn layers_in_use(&self) -> std::collections::HashSet<PathBuf> {
        // Only this instance's layers: other instances may mount layers of the same digest.
        let mut out: std::collections::HashSet<PathBuf> = mounts::overlay_lower_dirs()
            .into_iter()
            .filter(|p| p.starts_with(&self.layout.data_dir))
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.layout.data_dir.join("containers")) {
            for e in entries.flatten() {
                if let Some(layers) = read_json::<Vec<String>>(&e.path().join("layers.json")) {
                    out.extend(layers.into_iter().map(PathBuf::from));
                }
            }
        }
        out
    }

    /// Removes this instance's parent cgroup in each hierarchy where no group's cgroup is
    /// left under it (rmdir refuses a cgroup with children, so running groups keep theirs).
    pub fn release_cgroup_parent(&self) {
        for dir in cgroup::cgroup_dirs(&self.layout.cgroup_parent) {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::debug!(cgroup = %dir.display(), "kept: {e}");
            }
        }
    }

    /// Removes everything of this instance on the machine (`qci system reset`): every
    /// container killed and removed, every group's namespaces, volumes and cgroup, whatever
    /// is still mounted under the data dir, and the parent cgroups. The data dir's files
    /// stay: the caller removes them once nothing is mounted there.
    pub async fn remove_everything(&self) -> Result<(), RuntimeError> {
        let mut groups: std::collections::BTreeSet<String> = Default::default();
        for (group, names) in self.all_containers() {
            for name in names {
                self.stop(&group, &name, Duration::ZERO).await?;
                self.remove_container(&group, &name).await?;
            }
            groups.insert(group);
        }
        if let Ok(d) = std::fs::read_dir(self.layout.run_dir.join("sandboxes")) {
            groups.extend(
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        for g in groups {
            self.remove_group(&g).await?;
        }
        let mut left = mounts::mounts_under(&self.layout.data_dir);
        left.sort();
        for m in left.into_iter().rev() {
            mounts::unmount_if_mounted(&m).map_err(io(format!("unmounting {}", m.display())))?;
        }
        cgroup::remove(&self.layout.cgroup_parent).map_err(io("removing the parent cgroups"))?;
        Ok(())
    }

    /// Removes what the group had beside its containers: namespaces, cgroup, logs.
    pub async fn remove_group(&self, group_id: &str) -> Result<(), RuntimeError> {
        self.remove_volumes(group_id)
            .map_err(io("removing the group's volumes"))?;
        sandbox::remove(&self.layout.sandbox_dir(group_id))
            .map_err(io("removing the group's namespaces"))?;
        cgroup::remove(&self.layout.group_cgroup(group_id))
            .map_err(io("removing the group's cgroup"))?;
        let logs = self.layout.group_log_dir(group_id);
        match std::fs::remove_dir_all(&logs) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing logs")(e)),
            _ => Ok(()),
        }
    }
}

/// True if the monitor recorded in the container dir still runs (and is a qci monitor for it).
/// Signals the container's first process directly, without a runc invocation (each reads the
/// machine's mount table, which grows with every container: deleting many groups was mostly
/// runc reading it). The pid is pinned with a pidfd, then checked to be the monitor's child
/// (the monitor is the subreaper that adopted the container's first process), so a pid reused
/// by another process is never signalled. False when that cannot be made sure: the caller
/// then asks runc.
fn signal_first_process(dir: &Path, pid: u32, sig: rustix::process::Signal) -> bool {
    use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};
    let Some(monitor) = std::fs::read_to_string(dir.join("monitor.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let Some(fd) = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok())
    else {
        return false;
    };
    let parent = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        });
    parent == Some(monitor) && pidfd_send_signal(&fd, sig).is_ok()
}

fn monitor_alive(dir: &Path, id: &str) -> bool {
    let Some(pid) = std::fs::read_to_string(dir.join("monitor.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        // The launcher writes the pid file right after fork: give a starting monitor the benefit.
        return std::fs::metadata(dir.join("config.json"))
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(5))
            .unwrap_or(false);
    };
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("monitor") && cmd.contains(id)
        }
        Err(_) => false,
    }
}
