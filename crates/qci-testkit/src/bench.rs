//! What the benchmarks share: the run count, timing a group to Running, and the summary line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use qci_spec::GroupPhase;

use crate::Server;

/// `QCI_BENCH_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("QCI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Prints `name` with the count, median, p90, min and max of `v` in ms; returns the median.
pub fn stats(name: &str, mut v: Vec<Duration>) -> f64 {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(v[v.len() / 2]);
    println!(
        "{name:<40} n={:<3} median {median:7.1} ms   p90 {:7.1} ms   min {:7.1} ms   max {:7.1} ms",
        v.len(),
        ms(v[v.len() * 9 / 10]),
        ms(v[0]),
        ms(v[v.len() - 1])
    );
    median
}

/// Time from `POST` of `spec` to phase Running (polling every 2 ms); the group is then
/// deleted, untimed, and waited for.
pub async fn time_to_running(s: &Server, spec: &str) -> Duration {
    let t = Instant::now();
    let g = s.client.create_group(spec).await.expect("create");
    loop {
        let g = s.client.get_group(&g.id).await.expect("get");
        match g.status.phase {
            GroupPhase::Running => break,
            GroupPhase::Pending => tokio::time::sleep(Duration::from_millis(2)).await,
            other => panic!("group ended {other}: {:?}", g.status),
        }
    }
    let took = t.elapsed();
    delete(s, &g.id).await;
    took
}

/// Time from `POST` of `spec` until the server says the group runs (its server-side wait, no
/// polling), and the group's id; the group is left running.
pub async fn until_running(s: &Server, spec: &str) -> (Duration, String) {
    let t = Instant::now();
    let g = s.client.create_group(spec).await.expect("create");
    let g = s
        .client
        .wait_group(&g.id, qci_spec::WaitFor::Running, Duration::from_secs(60))
        .await
        .expect("wait");
    assert_eq!(g.status.phase, GroupPhase::Running, "{:?}", g.status);
    (t.elapsed(), g.id)
}

/// An unpacked layer of the server's image store (after a group's image was pulled): the
/// floor's root filesystem is an overlay of it.
pub fn unpacked_layer(s: &Server) -> PathBuf {
    std::fs::read_dir(s.data_dir.join("images/layers/sha256"))
        .expect("layers dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.extension().is_none())
        .expect("an unpacked layer")
}

/// Deletes a group and waits until it is gone (at most a minute).
pub async fn delete(s: &Server, id: &str) {
    s.client.delete_group(id).await.expect("delete");
    let t = Instant::now();
    while s.client.get_group(id).await.is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "delete took over a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The peer: podman, when it is installed. Every call runs `podman` with its own storage
/// under a temporary directory (so a bench never touches the machine's podman images) and
/// panics with podman's words if it fails.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    /// `None`, with a printed note, when podman is absent: the peer is skipped, never failed on.
    pub fn find() -> Option<Podman> {
        if std::process::Command::new("podman")
            .arg("--version")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            println!("(podman is not installed: no peer in this run)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("qci-bench-podman-")
            .tempdir_in(crate::test_root())
            .expect("podman dir");
        // Podman gives a root container 1048576 open files and an infra container its own
        // process limit; where this process may not raise its hard limits (a sandboxed root),
        // runc then fails to set them. Limits below any hard limit keep the peer running.
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n",
        )
        .expect("containers.conf");
        Some(Podman { dir })
    }

    fn command(&self) -> std::process::Command {
        let d = self.dir.path();
        let mut c = std::process::Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
            ]);
        c
    }

    /// `podman ARGS`, timed from start to exit; stdout is returned.
    pub fn run(&self, args: &[&str]) -> (Duration, String) {
        let t = Instant::now();
        let out = self
            .command()
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("podman");
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            took,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    /// Pulls `image` from a plain-HTTP registry on loopback.
    pub fn pull(&self, image: &str) -> Duration {
        self.run(&["pull", "-q", "--tls-verify=false", image]).0
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.command().args(["system", "reset", "--force"]).output();
        let _ = std::process::Command::new("umount")
            .arg("-R")
            .arg(self.dir.path())
            .output();
    }
}

/// The OCI runtime's floor: `runc run -d` (or runsc's) of a bundle made by `runc spec`, its
/// rootfs an overlay of an image's layer, running `sleep 3600`.
pub struct BareRuntime {
    dir: tempfile::TempDir,
    root: PathBuf,
    bundle: PathBuf,
    /// The runtime's binary and its global flags (e.g. runsc's `--network=none`).
    binary: String,
    global: Vec<String>,
}

impl BareRuntime {
    pub fn new(layer: &Path, binary: &str, global: &[&str]) -> BareRuntime {
        let dir = tempfile::Builder::new()
            .prefix("qci-bench-runc-")
            .tempdir_in(crate::test_root())
            .expect("tmp");
        let root = dir.path().join("state");
        let bundle = dir.path().join("bundle");
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(bundle.join(d)).unwrap();
        }
        let ok = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .status()
            .expect("runc spec");
        assert!(ok.success());
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = false.into();
        cfg["process"]["args"] = serde_json::json!(["sleep", "3600"]);
        cfg["root"]["readonly"] = false.into();
        cfg["process"]["rlimits"] = serde_json::json!([]);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            layer.display(),
            bundle.join("upper").display(),
            bundle.join("work").display()
        );
        nix::mount::mount(
            Some("overlay"),
            &bundle.join("rootfs"),
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .expect("overlay mount");
        BareRuntime {
            dir,
            root,
            bundle,
            binary: binary.to_string(),
            global: global.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// `n` containers of the bundle started at once (`runc run -d` each), timed until the
    /// last returns; then deleted, untimed.
    pub fn run(&self, round: usize, n: usize) -> Duration {
        let (took, ids) = self.start(round, n);
        for id in &ids {
            self.delete(id);
        }
        took
    }

    /// `n` containers started at once, timed; they are left running (see [`Self::delete`]).
    pub fn start(&self, round: usize, n: usize) -> (Duration, Vec<String>) {
        let ids: Vec<String> = (0..n)
            .map(|k| format!("qci-bench-{}-{round}-{n}-{k}", std::process::id()))
            .collect();
        let t = Instant::now();
        let children: Vec<_> = ids
            .iter()
            .map(|id| {
                self.command()
                    .args(["run", "--detach", "--pid-file"])
                    .arg(self.dir.path().join(format!("{id}.pid")))
                    .arg("--bundle")
                    .arg(&self.bundle)
                    .arg(id)
                    // The container inherits runc's stdio: no pipes, or waiting for EOF would hang.
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("run -d")
            })
            .collect();
        for (mut c, id) in children.into_iter().zip(&ids) {
            assert!(
                c.wait().expect("runc").success(),
                "{} run -d failed for {id}",
                self.binary
            );
        }
        (t.elapsed(), ids)
    }

    /// `exec ID true`, timed until it returns.
    pub fn exec(&self, id: &str) -> Duration {
        let t = Instant::now();
        let out = self
            .command()
            .args(["exec", id, "true"])
            .output()
            .expect("exec");
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "{} exec: {}",
            self.binary,
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }

    /// Kills and removes a container, untimed.
    pub fn delete(&self, id: &str) {
        let _ = self.command().args(["kill", id, "KILL"]).output();
        let _ = self.command().args(["delete", "--force", id]).output();
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root).args(&self.global);
        c
    }
}

impl Drop for BareRuntime {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(
            &self.bundle.join("rootfs"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}
