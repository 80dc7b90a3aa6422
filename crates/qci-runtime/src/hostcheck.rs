//! What `qci serve` checks about the machine before it says it is ready: a missing piece is
//! named with how to fix it, instead of every container failing later with a runtime's error
//! (no cgroup mount under `ip netns exec`, say).
//!
//! [`HostFacts::gather`] reads the machine; [`check`] is the pure decision, table-tested.

use std::path::Path;

use crate::runc::Runc;

/// Controllers qci limits groups and containers with (v1 or v2).
const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// Controllers a v1 (or hybrid) machine needs as well: runc's device rules, CPU accounting.
const V1_ONLY: [&str; 2] = ["devices", "cpuacct"];
/// The oldest runc whose config features qci writes (seccomp's defaultErrnoRet).
const MIN_RUNC: (u32, u32) = (1, 1);

/// What the machine has, as read from it.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub root: bool,
    /// `runc --version`'s output, or why it did not run.
    pub runc: Result<String, String>,
    /// /proc/self/mountinfo.
    pub mountinfo: String,
    /// The v2 tree's cgroup.controllers, if a v2 tree is mounted.
    pub v2_controllers: Option<String>,
    /// /proc/filesystems.
    pub filesystems: String,
    /// An overlay module is installed for the running kernel (it loads on first mount).
    pub overlay_module: bool,
    /// `nft` is on PATH.
    pub nft: bool,
    /// /dev/loop-control exists.
    pub loop_control: bool,
}

/// One thing missing, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fix: {})", self.what, self.fix)
    }
}

impl HostFacts {
    pub fn gather(runc: &Runc) -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let mountinfo = read("/proc/self/mountinfo");
        let v2_controllers = v2_root(&mountinfo).and_then(|root| {
            std::fs::read_to_string(Path::new(&root).join("cgroup.controllers")).ok()
        });
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let modules = Path::new("/lib/modules").join(&release);
        let overlay_module = ["kernel/fs/overlayfs", "kernel/fs/overlay"]
            .iter()
            .any(|d| modules.join(d).is_dir());
        let on_path = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        };
        HostFacts {
            root: nix::unistd::Uid::effective().is_root(),
            runc: runc.version(),
            mountinfo,
            v2_controllers,
            filesystems: read("/proc/filesystems"),
            overlay_module,
            nft: on_path("nft"),
            loop_control: Path::new("/dev/loop-control").exists(),
        }
    }
}

fn v2_root(mountinfo: &str) -> Option<String> {
    crate::cgroup::cgroup_mounts(mountinfo)
        .into_iter()
        .find(|(t, _, _)| *t == "cgroup2")
        .map(|(_, p, _)| p.to_string())
}

/// `runc version 1.1.5+ds1` → (1, 1).
fn runc_version(out: &str) -> Option<(u32, u32)> {
    let v = out
        .lines()
        .find_map(|l| l.strip_prefix("runc version "))?
        .trim();
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Everything missing for qci to run containers here. `disks`: the store holds disks, so loop
/// devices are needed.
pub fn check(f: &HostFacts, disks: bool) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut add = |what: String, fix: &str| {
        p.push(Problem {
            what,
            fix: fix.to_string(),
        })
    };
    if !f.root {
        add(
            "qci serve is not running as root; it creates namespaces, mounts and cgroups".into(),
            "run it as root (sudo qci serve)",
        );
    }
    match &f.runc {
        Err(e) => add(
            format!("runc does not run: {e}"),
            "apt-get install runc (or set QCI_RUNC to its path)",
        ),
        Ok(out) => match runc_version(out) {
            None => add(
                format!("runc --version says {:?}, not a version", out.trim()),
                "apt-get install runc",
            ),
            Some(v) if v < MIN_RUNC => add(
                format!(
                    "runc {}.{} is too old; qci needs {}.{} or later",
                    v.0, v.1, MIN_RUNC.0, MIN_RUNC.1
                ),
                "install a newer runc (Debian 12's is 1.1.5)",
            ),
            Some(_) if !out.contains("libseccomp") => add(
                "runc was built without seccomp, so containers cannot be confined".into(),
                "install a runc built with libseccomp (Debian's is)",
            ),
            Some(_) => {}
        },
    }
    let mounts = crate::cgroup::cgroup_mounts(&f.mountinfo);
    if mounts.is_empty() {
        add(
            "no cgroup file system is mounted where qci runs (as under `ip netns exec`, which remounts /sys)".into(),
            "run qci serve in the host's mount namespace, or mount cgroups at /sys/fs/cgroup",
        );
    } else {
        // Each controller from a v1 hierarchy, else from the v2 tree (hybrid set-ups mount
        // both, with the controllers in v1). On v1, runc also needs devices and cpuacct.
        let v1 = |c: &str| {
            mounts
                .iter()
                .any(|(t, _, o)| *t == "cgroup" && o.split(',').any(|x| x == c))
        };
        let v2 = |c: &str| {
            f.v2_controllers
                .as_deref()
                .is_some_and(|have| have.split_whitespace().any(|h| h == c))
        };
        let any_v1 = mounts.iter().any(|(t, _, _)| *t == "cgroup");
        let mut missing: Vec<&str> = V2_CONTROLLERS
            .into_iter()
            .filter(|c| !v1(c) && !v2(c))
            .collect();
        if any_v1 {
            missing.extend(V1_ONLY.into_iter().filter(|c| !v1(c)));
        }
        if !missing.is_empty() {
            add(
                format!(
                    "no cgroup hierarchy has the {} controller(s)",
                    missing.join(", ")
                ),
                "mount them under /sys/fs/cgroup (systemd does at boot), or enable them in the v2 root's cgroup.subtree_control",
            );
        }
    }
    let overlay = f
        .filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    if !overlay && !f.overlay_module {
        add(
            "the kernel has no overlay file system; containers' root file systems are overlays"
                .into(),
            "modprobe overlay (or use a kernel built with CONFIG_OVERLAY_FS)",
        );
    }
    if !f.nft {
        add(
            "nft is not installed; group networks and firewalls are nftables rules".into(),
            "apt-get install nftables",
        );
    }
    if disks && !f.loop_control {
        add(
            "/dev/loop-control is missing, and disks are attached through loop devices".into(),
            "modprobe loop",
        );
    }
    p
}

/// Whether gVisor runs here: `runsc --version`, then a real sandbox (`runsc do /bin/true`, about
/// 0.2 s, its state under `scratch`, removed after), so a kernel or platform this runsc cannot
/// use is found when `qci serve` starts, not at a tenant's first group. Ok(runsc's version
/// line) or Err(why, in runsc's words).
pub fn gvisor_check(scratch: &Path) -> Result<String, String> {
    let runsc = Runc::gvisor(scratch);
    let version = match runsc.version() {
        Ok(v) => v.lines().next().unwrap_or("runsc").trim().to_string(),
        Err(_) => {
            return Err(format!(
                "{} is not installed (apt-get install runsc)",
                runsc.binary.display()
            ));
        }
    };
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let errors = scratch.join("do.err");
    let child = std::fs::File::create(&errors).and_then(|err| {
        std::process::Command::new(&runsc.binary)
            .arg("--root")
            .arg(scratch)
            .args(["--network=none", "do", "/bin/true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
    });
    let outcome = match child {
        Err(e) => Err(format!("{version} did not start: {e}")),
        Ok(mut child) => {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(st)) if st.success() => break Ok(version.clone()),
                    Ok(Some(st)) => {
                        let said = std::fs::read_to_string(&errors).unwrap_or_default();
                        let said = said.lines().rev().find(|l| !l.trim().is_empty());
                        break Err(format!(
                            "{version} cannot run a sandbox here ({st}): {}",
                            said.unwrap_or("it said nothing")
                        ));
                    }
                    Ok(None) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    Ok(None) | Err(_) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(format!("{version} did not run a sandbox within 20 s"));
                    }
                }
            }
        }
    };
    let _ = std::fs::remove_dir_all(scratch);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
        31 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
        32 25 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
        33 25 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
        34 25 0:30 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n\
        35 25 0:31 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n";
    const V2: &str = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";

    fn good() -> HostFacts {
        HostFacts {
            root: true,
            runc: Ok(
                "runc version 1.1.5+ds1\ncommit: x\nspec: 1.0.2-dev\nlibseccomp: 2.5.4\n".into(),
            ),
            mountinfo: V1.into(),
            v2_controllers: None,
            filesystems: "nodev\tproc\nnodev\toverlay\n".into(),
            overlay_module: false,
            nft: true,
            loop_control: true,
        }
    }

    fn problems(f: HostFacts, disks: bool) -> Vec<String> {
        check(&f, disks).iter().map(|p| p.what.clone()).collect()
    }

    #[test]
    fn what_is_missing_is_named() {
        assert!(problems(good(), true).is_empty());
        let v2 = HostFacts {
            mountinfo: V2.into(),
            v2_controllers: Some("cpuset cpu io memory pids".into()),
            ..good()
        };
        assert!(problems(v2.clone(), false).is_empty());
        // Hybrid: v1 controllers beside an empty v2 tree.
        let hybrid = HostFacts {
            mountinfo: format!("{V1}41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"),
            v2_controllers: Some("hugetlb\n".into()),
            ..good()
        };
        assert!(problems(hybrid, false).is_empty());
        let cases: Vec<(HostFacts, bool, &str)> = vec![
            (
                HostFacts {
                    root: false,
                    ..good()
                },
                false,
                "not running as root",
            ),
            (
                HostFacts {
                    runc: Err("No such file or directory".into()),
                    ..good()
                },
                false,
                "runc does not run",
            ),
            (
                HostFacts {
                    runc: Ok("runc version 1.0.2\nlibseccomp: 2.5\n".into()),
                    ..good()
                },
                false,
                "runc 1.0 is too old",
            ),
            (
                HostFacts {
                    runc: Ok("runc version 1.1.12\n".into()),
                    ..good()
                },
                false,
                "without seccomp",
            ),
            (
                HostFacts {
                    mountinfo: String::new(),
                    ..good()
                },
                false,
                "no cgroup file system is mounted",
            ),
            (
                HostFacts {
                    mountinfo: V1.lines().take(2).collect::<Vec<_>>().join("\n"),
                    ..good()
                },
                false,
                "has the pids, devices, cpuacct controller(s)",
            ),
            (
                HostFacts {
                    v2_controllers: Some("cpu io".into()),
                    ..v2
                },
                false,
                "has the memory, pids controller(s)",
            ),
            (
                HostFacts {
                    filesystems: "nodev\tproc\n".into(),
                    ..good()
                },
                false,
                "no overlay file system",
            ),
            (
                HostFacts {
                    nft: false,
                    ..good()
                },
                false,
                "nft is not installed",
            ),
            (
                HostFacts {
                    loop_control: false,
                    ..good()
                },
                true,
                "/dev/loop-control is missing",
            ),
        ];
        for (f, disks, want) in cases {
            let got = problems(f, disks);
            assert!(got.len() == 1 && got[0].contains(want), "{want}: {got:?}");
        }
        // An overlay module that loads on first use is enough.
        let module = HostFacts {
            filesystems: String::new(),
            overlay_module: true,
            ..good()
        };
        assert!(problems(module, false).is_empty());
        assert!(
            problems(
                HostFacts {
                    loop_control: false,
                    ..good()
                },
                false
            )
            .is_empty()
        );
    }
}
