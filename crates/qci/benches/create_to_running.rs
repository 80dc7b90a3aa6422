//! Benchmark: create→Running of a one-container group whose image is already present, beside
//! a bare `runc run -d` of an equivalent bundle (same image layer, same command), in the same
//! run. Prints both, and their ratio.
//!
//! Run as root: `cargo bench -p qci --bench create_to_running` (QCI_BENCH_RUNS sets the count).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qci_spec::{GroupPhase, WaitFor};
use qci_testkit::bench::{delete, runs, stats};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = runs(20);
    let reg = Registry::start();
    // A pinned tag: with the image present, qci does not contact the registry.
    let image = push_busybox(&reg.host(), "bench/busybox", "1.0").await;
    let s = Server::start_with(Path::new(QCI), &["--basic-network-linger", "30"]).await;
    // `sleep` as PID 1 ignores SIGTERM; a short grace period keeps the (untimed) deletes short.
    let spec = |i: usize| {
        format!(
            "name: bench-{i}\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]\n"
        )
    };

    // Warm-up: pulls the image once.
    let g = s.client.create_group(&spec(0)).await.expect("create");
    s.wait_group(&g.id, "warm-up Running", |g| {
        g.status.phase == GroupPhase::Running
    })
    .await;
    let layer = std::fs::read_dir(s.data_dir.join("images/layers/sha256"))
        .expect("layers dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.extension().is_none())
        .expect("an unpacked layer");
    delete(&s, &g.id).await;

    let mut qci = Vec::new();
    for i in 1..=runs {
        let t = Instant::now();
        let g = s.client.create_group(&spec(i)).await.expect("create");
        // The server answers as soon as the group runs (no polling).
        let g = s
            .client
            .wait_group(&g.id, WaitFor::Running, Duration::from_secs(60))
            .await
            .expect("wait");
        assert_eq!(g.status.phase, GroupPhase::Running, "{:?}", g.status);
        qci.push(t.elapsed());
        delete(&s, &g.id).await;
    }

    // The CLI, as a user runs it: `qci create -f FILE --wait`, from its start to its exit.
    let mut cli = Vec::new();
    for i in 1..=runs {
        let file = s.data_dir.join(format!("bench-cli-{i}.yaml"));
        std::fs::write(&file, spec(runs + i)).expect("spec file");
        let t = Instant::now();
        let out = s
            .command()
            .args(["create", "--wait", "-f"])
            .arg(&file)
            .output()
            .expect("qci create");
        cli.push(t.elapsed());
        assert!(
            out.status.success(),
            "qci create --wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        delete(&s, String::from_utf8_lossy(&out.stdout).trim()).await;
    }

    let runc = bare_runc(&layer, runs);
    println!();
    let a = stats("qci create -> Running (API)", qci);
    let c = stats("qci create --wait (CLI)", cli);
    let b = stats("runc run -d (bare bundle)", runc);
    println!("ratio qci / runc: {:.2}", a / b);
    println!("CLI - API (medians): {:.1} ms", c - a);
    if Command::new("podman").arg("--version").output().is_err() {
        println!("(podman is not installed: no peer in this run)");
    }
}

/// `runc run -d` of a bundle made by `runc spec`, rootfs an overlay of the same layer.
fn bare_runc(layer: &Path, runs: usize) -> Vec<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("qci-bench-runc-")
        .tempdir_in(qci_testkit::test_root())
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
    let rootfs = bundle.join("rootfs");
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .expect("overlay mount");
    let mut times = Vec::new();
    for i in 0..runs {
        let id = format!("qci-bench-{}-{i}", std::process::id());
        let t = Instant::now();
        let out = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "--pid-file"])
            .arg(dir.path().join("pid"))
            .arg("--bundle")
            .arg(&bundle)
            .arg(&id)
            // The container inherits runc's stdio: no pipes, or waiting for EOF would hang.
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("runc run");
        times.push(t.elapsed());
        assert!(out.success(), "runc run -d failed for {id}");
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &id])
            .output();
    }
    let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    times
}
