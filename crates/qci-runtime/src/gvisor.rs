//! gVisor sandboxes: a group on `runtime: gvisor` runs all its containers in one runsc
//! sandbox, as a pod does. runsc makes the sandbox with its root container — here a pause
//! process of qci's own (`qci pause`), since qci has no pause image — and every container of
//! the group then joins it, told apart by the CRI annotations runsc reads.
//!
//! The pause container's root filesystem is an empty directory with the `qci` binary and the
//! host's library directories bound read-only into it (the binary is dynamically linked);
//! nothing of a tenant's runs there. The sandbox lives in the group's network namespace and
//! in a cgroup under the group's, so the group's network and size apply to everything in it
//! (and runsc, which removes the cgroup it was given, never removes qci's).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, UserBuilder,
};

use crate::BundleError;

/// The annotation runsc reads to tell a sandbox's root container from those joining it.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The annotation naming the sandbox a container joins.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The runsc id of a group's sandbox (its root container). `_` cannot occur in a container
/// name (a DNS label), so it never collides with [`crate::Layout::runc_id`].
pub fn sandbox_id(group_id: &str) -> String {
    format!("{group_id}_sandbox")
}

/// The cgroup a group's sandbox runs in: a child of the group's (`group_cgroup`), so the
/// group's limits apply, which runsc may make and remove as it likes (the group's own is
/// qci's). The host's OOM kills of the sandbox are counted here.
pub fn sandbox_cgroup(group_cgroup: &str) -> String {
    format!("{group_cgroup}/sandbox")
}

/// The annotations of a container of the sandbox `sandbox` (`root`: the sandbox's own).
pub fn annotations(sandbox: &str, root: bool) -> HashMap<String, String> {
    HashMap::from([
        (
            CONTAINER_TYPE.to_string(),
            if root { "sandbox" } else { "container" }.to_string(),
        ),
        (SANDBOX_ID.to_string(), sandbox.to_string()),
    ])
}

/// Host directories the pause binary's libraries may be in; each is bound read-only where it
/// is a directory, and recreated as the same link where it is a link (merged /usr).
const LIBRARY_DIRS: [&str; 4] = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"];

/// Makes the pause container's root filesystem in `rootfs`: mount points for the binary,
/// /proc and the library directories that exist here. Answers the library binds to make.
pub fn prepare_rootfs(rootfs: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(rootfs.join("proc"))?;
    std::fs::create_dir_all(rootfs.join("usr"))?;
    if !rootfs.join("qci").exists() {
        std::fs::write(rootfs.join("qci"), b"")?;
    }
    let mut binds = Vec::new();
    for dir in LIBRARY_DIRS {
        let host = Path::new(dir);
        let inside = rootfs.join(dir.trim_start_matches('/'));
        match std::fs::symlink_metadata(host) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(host)?;
                if std::fs::symlink_metadata(&inside).is_err() {
                    std::os::unix::fs::symlink(target, &inside)?;
                }
            }
            Ok(m) if m.is_dir() => {
                std::fs::create_dir_all(&inside)?;
                binds.push(host.to_path_buf());
            }
            _ => {}
        }
    }
    Ok(binds)
}

/// The pause container's spec: `exe pause` as the only process, in the group's network
/// namespace (`netns`) and cgroup, with `libraries` bound read-only.
pub fn pause_spec(
    exe: &Path,
    rootfs: &Path,
    libraries: &[PathBuf],
    netns: &Path,
    cgroup: &str,
    sandbox: &str,
) -> Result<Spec, BundleError> {
    let process = ProcessBuilder::default()
        .args(vec!["/qci".to_string(), "pause".to_string()])
        .env(vec!["PATH=/".to_string()])
        .cwd("/")
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .no_new_privileges(true)
        .build()?;
    let bind = |source: &Path, dest: &Path| {
        MountBuilder::default()
            .destination(dest)
            .typ("bind")
            .source(source)
            .options(vec!["rbind".to_string(), "ro".to_string()])
            .build()
    };
    let mut mounts = vec![
        MountBuilder::default()
            .destination("/proc")
            .typ("proc")
            .source("proc")
            .build()?,
        bind(exe, Path::new("/qci"))?,
    ];
    for dir in libraries {
        mounts.push(bind(dir, dir)?);
    }
    let ns = |typ| LinuxNamespaceBuilder::default().typ(typ).build();
    let linux = LinuxBuilder::default()
        .namespaces(vec![
            ns(LinuxNamespaceType::Pid)?,
            ns(LinuxNamespaceType::Mount)?,
            ns(LinuxNamespaceType::Ipc)?,
            ns(LinuxNamespaceType::Uts)?,
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(netns)
                .build()?,
        ])
        .cgroups_path(PathBuf::from(cgroup))
        .build()?;
    let mut spec = Spec::default();
    spec.set_hostname(None);
    spec.set_root(Some(
        RootBuilder::default().path(rootfs).readonly(true).build()?,
    ));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(annotations(sandbox, true)));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_container_is_the_sandbox_root() {
        let d = tempfile::tempdir().unwrap();
        let rootfs = d.path().join("rootfs");
        let libs = prepare_rootfs(&rootfs).unwrap();
        // Every library dir of this machine is there, bound or as the same link.
        for dir in LIBRARY_DIRS {
            let host = Path::new(dir);
            let inside = rootfs.join(dir.trim_start_matches('/'));
            if host.is_symlink() {
                assert_eq!(
                    std::fs::read_link(&inside).unwrap(),
                    std::fs::read_link(host).unwrap()
                );
            } else if host.is_dir() {
                assert!(
                    inside.is_dir() && libs.contains(&host.to_path_buf()),
                    "{dir}"
                );
            }
        }
        let spec = pause_spec(
            Path::new("/usr/bin/qci"),
            &rootfs,
            &libs,
            Path::new("/run/x/net"),
            "/qci-1/cg-1",
            "cg-1_sandbox",
        )
        .unwrap();
        let a = spec.annotations().as_ref().unwrap();
        assert_eq!(a[CONTAINER_TYPE], "sandbox");
        assert_eq!(a[SANDBOX_ID], "cg-1_sandbox");
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["/qci", "pause"]
        );
        assert!(spec.root().as_ref().unwrap().readonly().unwrap());
        let linux = spec.linux().as_ref().unwrap();
        let net = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(net.path().as_deref(), Some(Path::new("/run/x/net")));
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/qci-1/cg-1"))
        );
        // Every bind is read-only.
        for m in spec.mounts().as_ref().unwrap() {
            if m.typ().as_deref() == Some("bind") {
                assert!(
                    m.options().as_ref().unwrap().contains(&"ro".to_string()),
                    "{m:?}"
                );
            }
        }
        // The sandbox's id never collides with a container's.
        assert_ne!(
            sandbox_id("cg-1"),
            crate::Layout::runc_id("cg-1", "sandbox")
        );
        assert_eq!(annotations("s", false)[CONTAINER_TYPE], "container");
    }
}
