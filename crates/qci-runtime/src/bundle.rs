//! Writing a container's OCI bundle (config.json) with the oci-spec crate.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    UserBuilder,
};

use crate::user;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    User(String),
    #[error("building the OCI config: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// What a container runs and with which limits, already merged from image and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The image's `User`, resolved against the container's own /etc/passwd.
    pub user: Option<String>,
    pub hostname: String,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// Most processes (threads included) the container may have.
    pub pids_limit: Option<i64>,
    /// Mount the group's shared /dev/shm instead of a private one.
    pub shared_shm: bool,
    /// The container's log is rotated past this size (one previous file is kept).
    pub max_log_size: u64,
    /// Volumes: (host path, path in the container, read-only).
    pub mounts: Vec<(PathBuf, String, bool)>,
}

/// Where the group's shared pieces are.
pub struct SandboxPaths<'a> {
    pub dir: &'a Path,
}

/// CFS period used for CPU limits (the kernel's default, as Docker uses).
const CPU_PERIOD: u64 = 100_000;

/// Docker's default capability set, so images behave as they do under Docker.
const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Builds the runtime spec for a container whose root filesystem is mounted at `rootfs`.
pub fn build_spec(
    cfg: &ContainerConfig,
    rootfs: &Path,
    sandbox: SandboxPaths<'_>,
    cgroup_path: &str,
) -> Result<Spec, BundleError> {
    let u = user::resolve(rootfs, cfg.user.as_deref()).map_err(BundleError::User)?;
    let mut user = UserBuilder::default().uid(u.uid).gid(u.gid);
    if !u.additional_gids.is_empty() {
        user = user.additional_gids(u.additional_gids);
    }
    let caps: HashSet<Capability> = CAPABILITIES.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()?;
    // No CAP_SYS_RESOURCE here: runc must not try to raise the hard limit above ours.
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard.min(1 << 20))
        .unwrap_or(1024);
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user.build()?)
        .args(cfg.args.clone())
        .env(cfg.env.clone())
        .cwd(PathBuf::from(&cfg.cwd))
        .no_new_privileges(false)
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(nofile)
                .hard(nofile)
                .build()?,
        ])
        .build()?;

    let mut mounts = oci_spec::runtime::get_default_mounts();
    if cfg.shared_shm {
        mounts.retain(|m| m.destination() != Path::new("/dev/shm"));
        mounts.push(
            MountBuilder::default()
                .destination("/dev/shm")
                .typ("bind")
                .source(sandbox.dir.join("shm"))
                .options(vec![
                    "rbind".to_string(),
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                ])
                .build()?,
        );
    }
    for file in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(
            MountBuilder::default()
                .destination(format!("/etc/{file}"))
                .typ("bind")
                .source(sandbox.dir.join(file))
                .options(vec!["rbind".to_string(), "rprivate".to_string()])
                .build()?,
        );
    }

    for (source, dest, read_only) in &cfg.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if *read_only {
            options.push("ro".to_string());
        }
        mounts.push(
            MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(source)
                .options(options)
                .build()?,
        );
    }

    let ns = |typ, path: Option<PathBuf>| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p).build(),
            None => b.build(),
        }
    };
    let namespaces = vec![
        ns(LinuxNamespaceType::Pid, None)?,
        ns(LinuxNamespaceType::Mount, None)?,
        ns(LinuxNamespaceType::Cgroup, None)?,
        ns(LinuxNamespaceType::Network, Some(sandbox.dir.join("net")))?,
        ns(LinuxNamespaceType::Ipc, Some(sandbox.dir.join("ipc")))?,
        ns(LinuxNamespaceType::Uts, Some(sandbox.dir.join("uts")))?,
    ];
    let mut resources = LinuxResourcesBuilder::default().devices(vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ]);
    if let Some(bytes) = cfg.memory_bytes {
        let b = i64::try_from(bytes).unwrap_or(i64::MAX);
        // Swap limit equal to the memory limit: no swap beyond it, as a container service expects.
        resources = resources.memory(LinuxMemoryBuilder::default().limit(b).swap(b).build()?);
    }
    if let Some(n) = cfg.pids_limit {
        resources = resources.pids(
            oci_spec::runtime::LinuxPidsBuilder::default()
                .limit(n)
                .build()?,
        );
    }
    if let Some(millis) = cfg.cpu_millis {
        let quota = i64::try_from(millis * CPU_PERIOD / 1000)
            .unwrap_or(i64::MAX)
            .max(1000);
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD)
                .build()?,
        );
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(cgroup_path))
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .build()?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(cfg.hostname.clone()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(false)
            .build()?,
    ));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_has_limits_and_shared_namespaces() {
        let d = tempfile::tempdir().unwrap();
        let cfg = ContainerConfig {
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            cwd: "/".into(),
            user: None,
            hostname: "web".into(),
            cpu_millis: Some(500),
            memory_bytes: Some(256 << 20),
            pids_limit: Some(100),
            shared_shm: true,
            max_log_size: 1 << 20,
            mounts: vec![(PathBuf::from("/v/conf"), "/etc/app".into(), true)],
        };
        let spec = build_spec(
            &cfg,
            d.path(),
            SandboxPaths {
                dir: Path::new("/sb"),
            },
            "/qci-x/cg-1/a",
        )
        .unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 256 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["cgroupsPath"], "/qci-x/cg-1/a");
        let nss = v["linux"]["namespaces"].as_array().unwrap();
        assert!(
            nss.iter()
                .any(|n| n["type"] == "network" && n["path"] == "/sb/net")
        );
        assert!(
            nss.iter()
                .any(|n| n["type"] == "pid" && n.get("path").is_none())
        );
        assert_eq!(v["root"]["readonly"], false);
        assert_eq!(v["hostname"], "web");
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 100);
        let shm: Vec<_> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0]["source"], "/sb/shm");
    }
}
