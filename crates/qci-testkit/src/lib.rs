//! The test harness: real parts only.
//!
//! - [`Registry`]: Debian's `docker-registry` on a free 127.0.0.1 port, storage in a temp dir;
//! - [`push_busybox`]: an image built here from Debian's `busybox-static` (one gzip layer with
//!   the applet links, /etc/passwd and an /index.html), pushed with oci-client;
//! - [`Server`]: `qci serve` on a temp data dir and a free port, killed and cleaned up on drop
//!   (every runc container, mount and cgroup of that instance).
//!
//! - [`Browser`]: Debian's chromium under chromedriver, for the console.
//! - [`EtcdCluster`]: Debian's etcd, three members on loopback, for several nodes.
//!
//! A missing prerequisite panics with what to install; nothing is skipped.

pub mod bench;
mod browser;
mod etcd;
pub mod image;
mod registry;
mod server;
mod token;

pub use browser::{Browser, LIST_PAGE, get_gzip};
pub use etcd::EtcdCluster;
pub use image::{
    Compression, Entry, Format, ImageSpec, Layer, Target, push_busybox, push_image, push_image_to,
    push_index, tar_of,
};
pub use registry::{Registry, make_certs};
pub use server::Server;
pub use token::TokenServer;

/// Polls `f` until it gives Some (panics naming `what` after `secs`).
pub async fn eventually<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `sh` in a terminal of 24×80 in a running container, over the exec WebSocket: `first` is
/// typed, the terminal resized to 40×120, then `last` typed (which should end the shell).
/// Returns the exit code and everything the terminal showed.
pub async fn terminal_session(
    client: &qci_client::Client,
    group: &str,
    container: &str,
    first: &str,
    last: &str,
) -> (Result<i32, qci_client::ClientError>, String) {
    use std::time::Duration;
    let (in_tx, in_rx) = tokio::sync::mpsc::channel(8);
    let (size_tx, size_rx) = tokio::sync::mpsc::channel(8);
    let io = qci_client::ExecIo {
        stdin: Some(in_rx),
        tty: Some((24, 80)),
        resize: Some(size_rx),
    };
    let (client, group, container) = (client.clone(), group.to_string(), container.to_string());
    let session = tokio::spawn(async move {
        let mut seen = Vec::new();
        let code = client
            .exec(&group, &container, &["sh".to_string()], io, |_, d| {
                seen.extend_from_slice(d)
            })
            .await;
        (code, String::from_utf8_lossy(&seen).into_owned())
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    in_tx.send(first.as_bytes().to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    size_tx.send((40, 120)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    in_tx.send(last.as_bytes().to_vec()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), session)
        .await
        .expect("the terminal session did not end")
        .expect("the terminal session")
}

/// A free TCP port on 127.0.0.1 (the OS picks it; the listener is closed before use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Where test data dirs go: `QCI_TEST_DIR`, or /var/tmp/qci-tests (overlayfs needs a real
/// filesystem, and stores belong under /var).
pub fn test_root() -> std::path::PathBuf {
    let p = std::env::var_os("QCI_TEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/var/tmp/qci-tests"));
    std::fs::create_dir_all(&p)
        .unwrap_or_else(|e| panic!("creating test dir {}: {e}", p.display()));
    p
}

/// Fails the test with a clear message unless we run as root with the given programs.
pub fn require(programs: &[(&str, &str)]) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests run real containers and must run as root"
    );
    for (prog, package) in programs {
        let found = std::process::Command::new(prog)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        assert!(
            found,
            "{prog} is missing: install it with `apt-get install {package}` (or run ./scripts/test.sh)"
        );
    }
}

/// Makes network namespace `name` (`ip netns add`, at /run/netns/NAME) with loopback up.
pub fn netns_add(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", name])
        .stderr(std::process::Stdio::null())
        .status();
    for args in [
        vec!["netns", "add", name],
        vec!["-n", name, "link", "set", "lo", "up"],
    ] {
        let st = std::process::Command::new("ip")
            .args(&args)
            .status()
            .expect("running ip");
        assert!(st.success(), "ip {} failed", args.join(" "));
    }
}

/// Removes network namespace `name`.
pub fn netns_del(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", name])
        .status();
}

/// Runs `openssl ARGS` in `dir` (making test CAs, certificates and keys).
pub(crate) fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is missing: install it with `apt-get install openssl` (or run ./scripts/test.sh)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process's memory in KiB, from /proc/PID/smaps_rollup: (private, PSS, RSS). Private pages
/// (clean and dirty) are what one more such process adds; PSS splits shared pages between
/// their users. None when the process is gone.
pub fn memory_kib(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((
        field("Private_Clean:")? + field("Private_Dirty:")?,
        field("Pss:")?,
        field("Rss:")?,
    ))
}
