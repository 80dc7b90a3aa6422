//! The group's shared namespaces (network with loopback up, IPC, UTS with the group's hostname),
//! kept alive as bind mounts of nsfs files, so no process has to hold them.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::mounts::unmount_if_mounted;

pub const NAMESPACES: [&str; 3] = ["net", "ipc", "uts"];

pub fn ns_path(dir: &Path, ns: &str) -> PathBuf {
    dir.join(ns)
}

/// The group's shared /dev/shm, when it asked for one.
pub fn shm_path(dir: &Path) -> PathBuf {
    dir.join("shm")
}

/// True when every namespace file of the sandbox (and the shared shm, if wanted) is in place.
/// (Runs at every pass of every group, so by statfs and stat, never by the mount table.)
pub fn is_ready(dir: &Path, shm_bytes: Option<u64>) -> bool {
    NAMESPACES
        .iter()
        .all(|ns| crate::mounts::is_nsfs(&ns_path(dir, ns)))
        && shm_bytes.is_none_or(|_| crate::mounts::is_own_mount(&shm_path(dir)))
}

/// Creates the sandbox in `dir` unless it is complete already. Also writes `hosts` and
/// `hostname` for the containers to mount.
pub fn ensure(dir: &Path, hostname: &str, shm_bytes: Option<u64>) -> std::io::Result<()> {
    if is_ready(dir, shm_bytes) {
        // (Sandboxes made by an older qci have no resolv.conf.)
        if !dir.join("resolv.conf").exists() {
            std::fs::write(dir.join("resolv.conf"), resolv_conf())?;
        }
        return Ok(());
    }
    // A partial sandbox is left by a crash during creation, before any container used it.
    remove(dir)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    std::fs::write(dir.join("resolv.conf"), resolv_conf())?;
    std::fs::write(dir.join("hosts"), hosts(hostname, None))?;
    let dir2 = dir.to_path_buf();
    let name = hostname.to_string();
    // Namespaces belong to threads: a short-lived thread enters fresh ones, sets them up and
    // pins them with bind mounts, then ends, leaving the rest of the process untouched.
    let res = std::thread::spawn(move || -> std::io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(|e| std::io::Error::other(format!("creating namespaces: {e}")))?;
        nix::unistd::sethostname(&name)
            .map_err(|e| std::io::Error::other(format!("setting hostname: {e}")))?;
        loopback::up()?;
        for ns in NAMESPACES {
            let file = ns_path(&dir2, ns);
            std::fs::File::create(&file)?;
            let src = format!("/proc/thread-self/ns/{ns}");
            mount(
                Some(src.as_str()),
                &file,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                std::io::Error::other(format!(
                    "pinning the {ns} namespace at {}: {e}",
                    file.display()
                ))
            })?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| std::io::Error::other("namespace thread panicked"))?;
    if let Err(e) = res {
        let _ = remove(dir);
        return Err(e);
    }
    if let Some(bytes) = shm_bytes {
        // One tmpfs for the whole group, as IPC is shared: POSIX shared memory works across
        // its containers, within the size asked for.
        let shm = shm_path(dir);
        std::fs::create_dir_all(&shm)?;
        let opts = format!("size={bytes},mode=1777");
        if let Err(e) = mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(opts.as_str()),
        ) {
            let _ = remove(dir);
            return Err(std::io::Error::other(format!(
                "mounting the group's /dev/shm: {e}"
            )));
        }
    }
    Ok(())
}

/// The group's /etc/hosts: loopback, and its hostname at its address (127.0.0.1 without one),
/// as Docker and Kubernetes write it.
pub fn hosts(hostname: &str, ip: Option<&str>) -> String {
    let own = match ip {
        Some(ip) => format!("127.0.0.1\tlocalhost\n{ip}\t{hostname}\n"),
        None => format!("127.0.0.1\tlocalhost {hostname}\n"),
    };
    format!("{own}::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// Rewrites the sandbox's hosts file in place (containers bind-mount the file itself, so it
/// must stay the same inode) unless it already says this.
pub fn set_hosts(dir: &Path, hostname: &str, ip: Option<&str>) -> std::io::Result<()> {
    let want = hosts(hostname, ip);
    let path = dir.join("hosts");
    if std::fs::read_to_string(&path).is_ok_and(|h| h == want) {
        return Ok(());
    }
    std::fs::write(path, want)
}

/// The containers' /etc/resolv.conf: the host's, without loopback name servers (a resolver
/// on the host's 127.0.0.x is not reachable from a group's network; as Docker does, systemd-
/// resolved's upstream list is used instead when the host points at its stub).
pub fn resolv_conf() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (out, servers) = reachable_resolvers(&read("/etc/resolv.conf"));
    if servers > 0 {
        return out;
    }
    let (resolved, n) = reachable_resolvers(&read("/run/systemd/resolve/resolv.conf"));
    if n > 0 {
        return resolved;
    }
    format!("# the host has no name server a group can reach\n{out}")
}

/// A resolv.conf without loopback name servers, and how many servers it keeps.
fn reachable_resolvers(text: &str) -> (String, usize) {
    let mut out = String::new();
    let mut servers = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("nameserver"), Some(ip)) => {
                let loopback = ip
                    .parse::<std::net::IpAddr>()
                    .map(|a| a.is_loopback())
                    .unwrap_or(true);
                if !loopback {
                    out.push_str(line);
                    out.push('\n');
                    servers += 1;
                }
            }
            (Some("search" | "domain" | "options"), _) => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    (out, servers)
}

#[cfg(test)]
mod resolv_tests {
    #[test]
    fn loopback_name_servers_are_dropped() {
        let (out, n) = super::reachable_resolvers(
            "# comment\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\nsearch example.org\noptions edns0\n",
        );
        assert_eq!(n, 1);
        assert_eq!(
            out,
            "nameserver 10.0.0.2\nsearch example.org\noptions edns0\n"
        );
    }
}

/// Unpins the namespaces and removes the sandbox directory.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    for ns in NAMESPACES {
        unmount_if_mounted(&ns_path(dir, ns))?;
    }
    unmount_if_mounted(&shm_path(dir))?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[allow(unsafe_code)]
mod loopback {
    //! Bringing `lo` up takes one ioctl; a netlink library would be a large dependency for it.

    pub fn up() -> std::io::Result<()> {
        // SAFETY: plain socket(2) call; the fd is closed below on every path.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        // SAFETY: fd is a valid socket and req a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS.
        let r = unsafe {
            if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
                -1
            } else {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                libc::ioctl(fd, libc::SIOCSIFFLAGS, &req)
            }
        };
        let err = std::io::Error::last_os_error();
        // SAFETY: fd came from socket(2) above and is closed once.
        unsafe { libc::close(fd) };
        if r < 0 {
            return Err(std::io::Error::other(format!(
                "bringing loopback up: {err}"
            )));
        }
        Ok(())
    }
}
