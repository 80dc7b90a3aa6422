//! Writing a container's OCI bundle (config.json) with the oci-spec crate.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
    LinuxSeccomp, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder,
    Spec, UserBuilder,
};

use crate::user;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    User(String),
    #[error(
        "the container has run_as_non_root and would run as root (uid 0): set run_as_user, or use an image whose USER is not root"
    )]
    RunsAsRoot,
    #[error("building the OCI config: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// What a container runs and with which limits, already merged from image and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    /// A terminal for the container's process (its output is the terminal's).
    pub tty: bool,
    /// Its standard input kept open for attach.
    pub stdin: bool,
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
    pub security: Security,
}

/// Who the container runs as and what it may do, resolved from its security_context.
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// Refuse to start as uid 0.
    pub run_as_non_root: bool,
    pub supplemental_groups: Vec<u32>,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    /// The bounding set (`NET_BIND_SERVICE`, ...); root's effective set, nothing for other users.
    pub capabilities: BTreeSet<String>,
    /// None: unconfined.
    pub seccomp: Option<LinuxSeccomp>,
    /// Namespaced sysctls, written into the group's namespaces.
    pub sysctls: Vec<(String, String)>,
}

impl Default for Security {
    /// Docker's defaults: its 14 capabilities, no seccomp filter here (the caller resolves one).
    fn default() -> Self {
        Security {
            run_as_user: None,
            run_as_group: None,
            run_as_non_root: false,
            supplemental_groups: vec![],
            read_only_root: false,
            no_new_privileges: false,
            capabilities: qci_spec::DEFAULT_CAPABILITIES
                .iter()
                .map(|c| qci_spec::capability_name(*c))
                .collect(),
            seccomp: None,
            sysctls: vec![],
        }
    }
}

/// The image's `User` with run_as_user / run_as_group put in place of its parts.
fn user_string(image_user: Option<&str>, s: &Security) -> Option<String> {
    let (u, g) = match image_user {
        Some(spec) => match spec.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (spec.to_string(), None),
        },
        None => (String::new(), None),
    };
    let u = s.run_as_user.map(|n| n.to_string()).unwrap_or(u);
    let g = s.run_as_group.map(|n| n.to_string()).or(g);
    match (u.as_str(), g) {
        ("", None) => None,
        (_, None) => Some(u),
        (_, Some(g)) => Some(format!("{}:{g}", if u.is_empty() { "0" } else { &u })),
    }
}

/// Where the group's shared pieces are.
pub struct SandboxPaths<'a> {
    pub dir: &'a Path,
}

/// CFS period used for CPU limits (the kernel's default, as Docker uses).
const CPU_PERIOD: u64 = 100_000;

/// Builds the runtime spec for a container whose root filesystem is mounted at `rootfs`.
pub fn build_spec(
    cfg: &ContainerConfig,
    rootfs: &Path,
    sandbox: SandboxPaths<'_>,
    cgroup_path: &str,
) -> Result<Spec, BundleError> {
    let sec = &cfg.security;
    let u = user::resolve(rootfs, user_string(cfg.user.as_deref(), sec).as_deref())
        .map_err(BundleError::User)?;
    if sec.run_as_non_root && u.uid == 0 {
        return Err(BundleError::RunsAsRoot);
    }
    let mut gids = u.additional_gids;
    for g in &sec.supplemental_groups {
        if !gids.contains(g) {
            gids.push(*g);
        }
    }
    let mut user = UserBuilder::default().uid(u.uid).gid(u.gid);
    if !gids.is_empty() {
        user = user.additional_gids(gids);
    }
    let caps: HashSet<Capability> = sec
        .capabilities
        .iter()
        .filter_map(|c| qci_spec::parse_capability(c).ok())
        .collect();
    // Bounding, effective and permitted only: with empty inheritable and ambient sets a
    // process that is not root loses every capability at execve, as under Docker.
    // (oci-spec's defaults would put three in all five sets.)
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    // No CAP_SYS_RESOURCE here: runc must not try to raise the hard limit above ours.
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard.min(1 << 20))
        .unwrap_or(1024);
    let process = ProcessBuilder::default()
        .terminal(cfg.tty)
        .user(user.build()?)
        .args(cfg.args.clone())
        .env(cfg.env.clone())
        .cwd(PathBuf::from(&cfg.cwd))
        .no_new_privileges(sec.no_new_privileges)
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
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(cgroup_path))
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
    if let Some(seccomp) = &sec.seccomp {
        linux = linux.seccomp(seccomp.clone());
    }
    if !sec.sysctls.is_empty() {
        linux = linux.sysctl(sec.sysctls.iter().cloned().collect::<HashMap<_, _>>());
    }
    let linux = linux.build()?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(cfg.hostname.clone()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs)
            .readonly(sec.read_only_root)
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
            tty: false,
            stdin: false,
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
            security: Security::default(),
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

    fn config(security: Security) -> ContainerConfig {
        ContainerConfig {
            tty: false,
            stdin: false,
            args: vec!["sh".into()],
            env: vec![],
            cwd: "/".into(),
            user: None,
            hostname: "web".into(),
            cpu_millis: None,
            memory_bytes: None,
            pids_limit: None,
            shared_shm: false,
            max_log_size: 1 << 20,
            mounts: vec![],
            security,
        }
    }

    fn spec_json(cfg: &ContainerConfig, rootfs: &Path) -> Result<serde_json::Value, BundleError> {
        let spec = build_spec(
            cfg,
            rootfs,
            SandboxPaths {
                dir: Path::new("/sb"),
            },
            "/q/g/a",
        )?;
        Ok(serde_json::to_value(&spec).unwrap())
    }

    #[test]
    fn capabilities_only_in_the_bounding_effective_and_permitted_sets() {
        let d = tempfile::tempdir().unwrap();
        let v = spec_json(&config(Security::default()), d.path()).unwrap();
        let caps = &v["process"]["capabilities"];
        assert_eq!(caps["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(caps["effective"].as_array().unwrap().len(), 14);
        for empty in ["inheritable", "ambient"] {
            assert!(
                caps.get(empty)
                    .is_none_or(|s| s.as_array().unwrap().is_empty()),
                "{empty}: {caps}"
            );
        }
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert!(v["linux"].get("seccomp").is_none());
    }

    #[test]
    fn security_context_reaches_the_config() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        let seccomp = crate::seccomp::Profile::default_profile()
            .resolve(&crate::seccomp::Target::host(["KILL".to_string()]))
            .unwrap();
        let sec = Security {
            run_as_user: Some(1000),
            supplemental_groups: vec![5, 6],
            read_only_root: true,
            no_new_privileges: true,
            capabilities: ["NET_BIND_SERVICE".to_string()].into(),
            seccomp: Some(seccomp),
            sysctls: vec![("net.ipv4.tcp_syncookies".into(), "0".into())],
            ..Security::default()
        };
        let v = spec_json(&config(sec), d.path()).unwrap();
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert_eq!(v["process"]["user"]["gid"], 1000);
        assert_eq!(
            v["process"]["user"]["additionalGids"],
            serde_json::json!([5, 6])
        );
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["linux"]["sysctl"]["net.ipv4.tcp_syncookies"], "0");
    }

    #[test]
    fn run_as_non_root_refuses_root() {
        let d = tempfile::tempdir().unwrap();
        let sec = Security {
            run_as_non_root: true,
            ..Security::default()
        };
        let e = spec_json(&config(sec.clone()), d.path()).unwrap_err();
        assert!(matches!(e, BundleError::RunsAsRoot), "{e}");
        let ok = Security {
            run_as_user: Some(65534),
            ..sec
        };
        assert_eq!(
            spec_json(&config(ok), d.path()).unwrap()["process"]["user"]["uid"],
            65534
        );
    }

    #[test]
    fn user_overrides() {
        let s = |u: Option<u32>, g: Option<u32>| Security {
            run_as_user: u,
            run_as_group: g,
            ..Security::default()
        };
        let cases: &[(Option<&str>, Security, Option<&str>)] = &[
            (None, s(None, None), None),
            (Some("app"), s(None, None), Some("app")),
            (Some("app:staff"), s(Some(7), None), Some("7:staff")),
            (Some("app"), s(None, Some(9)), Some("app:9")),
            (None, s(None, Some(9)), Some("0:9")),
            (None, s(Some(5), Some(6)), Some("5:6")),
        ];
        for (image, sec, want) in cases {
            assert_eq!(user_string(*image, sec).as_deref(), *want, "{image:?}");
        }
    }
}
