//! Seccomp profiles in the containers' JSON format (Docker's, podman's and CRI-O's), resolved
//! into the OCI runtime spec's `linux.seccomp` for one container.
//!
//! A profile's rules can depend on the container: `includes`/`excludes` name capabilities,
//! architectures and a minimum kernel. [`Profile::resolve`] is the pure step that keeps the
//! rules that apply to a container with these capabilities on this machine, as Docker does
//! when it writes a container's config. The profile qci ships (`seccomp/default.json`) is
//! described in docs/security.md; `qci serve --seccomp-profile FILE` replaces it.

use std::collections::BTreeSet;
use std::path::Path;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

/// The profile qci ships, used unless the operator names another.
pub const DEFAULT_PROFILE: &str = include_str!("../seccomp/default.json");

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("reading seccomp profile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("seccomp profile {path} is not a profile in the containers' JSON format: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("building the seccomp section: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// The format's older single name.
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What a rule's `includes`/`excludes` are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The container's capabilities, as `CAP_NET_ADMIN`.
    pub caps: BTreeSet<String>,
    /// Go's name for the architecture (`amd64`, `arm64`), as profiles write it.
    pub arch: String,
    /// The kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target {
    /// This machine, and a container with these capabilities (`NET_ADMIN` or `CAP_NET_ADMIN`).
    pub fn host(caps: impl IntoIterator<Item = String>) -> Target {
        Target {
            caps: caps
                .into_iter()
                .map(|c| {
                    if c.starts_with("CAP_") {
                        c
                    } else {
                        format!("CAP_{c}")
                    }
                })
                .collect(),
            arch: go_arch(std::env::consts::ARCH).to_string(),
            kernel: nix::sys::utsname::uname()
                .ok()
                .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
                .unwrap_or((0, 0)),
        }
    }
}

fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

fn native_arch(go: &str) -> Option<Arch> {
    Some(match go {
        "amd64" => Arch::ScmpArchX86_64,
        "386" => Arch::ScmpArchX86,
        "arm64" => Arch::ScmpArchAarch64,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390x" => Arch::ScmpArchS390x,
        _ => return None,
    })
}

/// `6.1.0-18-amd64` → (6, 1).
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

impl Filter {
    fn arch_matches(&self, t: &Target) -> bool {
        self.arches.iter().any(|a| a == &t.arch)
    }
    fn kernel_at_least(&self, t: &Target) -> Option<bool> {
        let min = parse_kernel(self.min_kernel.as_deref()?)?;
        Some(t.kernel >= min)
    }
}

impl Rule {
    fn applies(&self, t: &Target) -> bool {
        let inc = &self.includes;
        if !inc.arches.is_empty() && !inc.arch_matches(t) {
            return false;
        }
        if !inc.caps.iter().all(|c| t.caps.contains(c)) {
            return false;
        }
        if inc.kernel_at_least(t) == Some(false) {
            return false;
        }
        let exc = &self.excludes;
        if exc.arch_matches(t) || exc.caps.iter().any(|c| t.caps.contains(c)) {
            return false;
        }
        exc.kernel_at_least(t) != Some(true)
    }
}

impl Profile {
    pub fn parse(path: &str, text: &str) -> Result<Profile, SeccompError> {
        serde_json::from_str(text).map_err(|source| SeccompError::Parse {
            path: path.to_string(),
            source,
        })
    }

    pub fn load(path: &Path) -> Result<Profile, SeccompError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SeccompError::Read {
            path: p.clone(),
            source,
        })?;
        Profile::parse(&p, &text)
    }

    /// The profile qci ships.
    pub fn default_profile() -> Profile {
        Profile::parse("(built in)", DEFAULT_PROFILE).expect("the built-in profile parses")
    }

    /// The `linux.seccomp` section for a container: only the rules that apply to its
    /// capabilities, this architecture and this kernel.
    pub fn resolve(&self, t: &Target) -> Result<LinuxSeccomp, SeccompError> {
        let mut arches = self.architectures.clone();
        if let Some(native) = native_arch(&t.arch)
            && let Some(m) = self.arch_map.iter().find(|m| m.architecture == native)
        {
            arches = std::iter::once(m.architecture)
                .chain(m.sub_architectures.clone().unwrap_or_default())
                .collect();
        }
        let mut syscalls = Vec::new();
        for r in self.syscalls.iter().filter(|r| r.applies(t)) {
            let names: Vec<String> = r.names.iter().chain(r.name.iter()).cloned().collect();
            if names.is_empty() {
                continue;
            }
            let mut b = LinuxSyscallBuilder::default().names(names).action(r.action);
            if let Some(n) = r.errno_ret {
                b = b.errno_ret(n);
            }
            if let Some(a) = &r.args
                && !a.is_empty()
            {
                b = b.args(a.clone());
            }
            syscalls.push(b.build()?);
        }
        let mut s = LinuxSeccompBuilder::default()
            .default_action(self.default_action)
            .syscalls(syscalls);
        if let Some(n) = self.default_errno_ret {
            s = s.default_errno_ret(n);
        }
        if !arches.is_empty() {
            s = s.architectures(arches);
        }
        Ok(s.build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target {
            caps: caps.iter().map(|c| format!("CAP_{c}")).collect(),
            arch: "amd64".into(),
            kernel: (6, 1),
        }
    }

    /// How the resolved profile answers a call with no argument rules: allowed, or refused
    /// with which errno.
    fn verdict(s: &LinuxSeccomp, name: &str) -> Result<(), u32> {
        let rules: Vec<_> = s
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.names().iter().any(|n| n == name))
            .collect();
        match rules.first() {
            None => Err(s.default_errno_ret().unwrap_or(1)),
            Some(r) if r.action() == LinuxSeccompAction::ScmpActAllow => Ok(()),
            Some(r) => Err(r.errno_ret().unwrap_or(1)),
        }
    }

    const DOCKER_DEFAULTS: [&str; 14] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FSETID",
        "FOWNER",
        "MKNOD",
        "NET_RAW",
        "SETGID",
        "SETUID",
        "SETFCAP",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "KILL",
        "AUDIT_WRITE",
    ];

    #[test]
    fn the_default_profile_refuses_what_docker_refuses() {
        let s = Profile::default_profile()
            .resolve(&target(&DOCKER_DEFAULTS))
            .unwrap();
        // The native architecture only (a filter a third the size: see the profile's comment).
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64][..])
        );
        for refused in [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "settimeofday",
            "clock_settime",
            "open_by_handle_at",
            "userfaultfd",
            "io_uring_setup",
            "iopl",
            "acct",
            "syslog",
            "sethostname",
            "fsopen",
            "move_mount",
            "kcmp",
            "vhangup",
            "mbind",
        ] {
            assert_eq!(verdict(&s, refused), Err(1), "{refused} must be refused");
        }
        assert_eq!(
            verdict(&s, "clone3"),
            Err(38),
            "clone3 gets ENOSYS, so libc falls back"
        );
        for allowed in [
            "read",
            "write",
            "openat",
            "execve",
            "mmap",
            "futex",
            "epoll_pwait",
            "accept4",
            "setuid",
            "chroot",
            "ptrace",
            "arch_prctl",
            "getrandom",
            "statx",
            "rseq",
            "memfd_create",
            "socketpair",
        ] {
            assert_eq!(verdict(&s, allowed), Ok(()), "{allowed} must be allowed");
        }
        let rules = s.syscalls().as_ref().unwrap();
        let clone = rules
            .iter()
            .find(|r| r.names() == &["clone"])
            .expect("a clone rule");
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!((arg.index(), arg.value()), (0, 0x7E02_0000));
        let socket: Vec<_> = rules.iter().filter(|r| r.names() == &["socket"]).collect();
        assert_eq!(socket.len(), 1);
        assert_eq!(socket[0].args().as_ref().unwrap()[0].value(), 40);
        assert!(
            !rules
                .iter()
                .any(|r| r.names().iter().any(|n| n == "s390_runtime_instr"))
        );
    }

    #[test]
    fn capabilities_open_their_calls() {
        let p = Profile::default_profile();
        let admin = p.resolve(&target(&["SYS_ADMIN"])).unwrap();
        assert_eq!(verdict(&admin, "unshare"), Ok(()));
        assert_eq!(verdict(&admin, "mount"), Ok(()));
        assert_eq!(verdict(&admin, "clone3"), Ok(()));
        // No CHROOT: chroot is refused.
        assert_eq!(verdict(&admin, "chroot"), Err(1));
        let time = p.resolve(&target(&["SYS_TIME"])).unwrap();
        assert_eq!(verdict(&time, "clock_settime"), Ok(()));
        let old = p
            .resolve(&Target {
                kernel: (4, 4),
                ..target(&[])
            })
            .unwrap();
        assert_eq!(
            verdict(&old, "ptrace"),
            Err(1),
            "ptrace needs 4.8 without SYS_PTRACE"
        );
    }

    #[test]
    fn other_files_in_the_format() {
        // The shape of containers-common's and Docker's files: `architectures`, an old `name`,
        // and fields qci does not use.
        let p = Profile::parse(
            "x.json",
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":13,"comment":"no"}]}"#,
        )
        .unwrap();
        let s = p.resolve(&target(&[])).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(verdict(&s, "mkdir"), Err(13));
        let e = Profile::parse("bad.json", r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("seccomp profile bad.json is not a profile"),
            "{e}"
        );
        assert_eq!(parse_kernel("6.18.44-fc-v1147"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
    }
}
