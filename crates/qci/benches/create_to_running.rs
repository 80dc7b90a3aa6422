//! Benchmark: create→Running of a one-container group whose image is already present, beside
//! a bare `runc run -d` of an equivalent bundle (same image layer, same command), in the same
//! run; a two-container group beside the one-container group; and, where podman is installed,
//! `podman run -d` and a podman pod with one and two containers. Prints each, and the ratios.
//!
//! Run as root: `cargo bench -p qci --bench create_to_running` (QCI_BENCH_RUNS sets the count).

use std::path::Path;
use std::time::{Duration, Instant};

use qci_spec::GroupPhase;
use qci_testkit::bench::{BareRuntime, Podman, delete, runs, stats, unpacked_layer, until_running};
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
    let layer = unpacked_layer(&s);
    delete(&s, &g.id).await;

    // The same group with a second container beside the first, alternating with it.
    let spec2 = |i: usize| {
        format!(
            "name: bench2-{i}\ntermination_grace_period_seconds: 1\ncontainers: [{{name: a, image: '{image}', command: [sleep, '3600']}}, {{name: b, image: '{image}', command: [sleep, '3600']}}]\n"
        )
    };
    // Interleaved with the floor, round by round, so a noisy moment hits both alike.
    let bare = BareRuntime::new(&layer, "runc", &[]);
    let (mut qci, mut two, mut runc, mut runc2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 1..=runs {
        qci.push(to_running(&s, &spec(i)).await);
        two.push(to_running(&s, &spec2(i)).await);
        runc.push(bare.run(i, 1));
        runc2.push(bare.run(i, 2));
    }
    drop(bare);

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

    let podman = Podman::find().map(|p| podman_runs(&p, &image, runs));
    println!();
    let a = stats("qci create -> Running (API)", qci);
    let d = stats("qci, two containers (API)", two);
    let c = stats("qci create --wait (CLI)", cli);
    let b = stats("runc run -d (bare bundle)", runc);
    let b2 = stats("two runc run -d at once", runc2);
    println!("ratio qci / runc: {:.2}", a / b);
    println!(
        "ratio two containers / one: qci {:.2}, bare runc {:.2}",
        d / a,
        b2 / b
    );
    println!("CLI - API (medians): {:.1} ms", c - a);
    if let Some((run, pod1, pod2)) = podman {
        let r = stats("podman run -d", run);
        let p1 = stats("podman pod create + run -d (1)", pod1);
        let p2 = stats("podman pod create + run -d (2)", pod2);
        println!(
            "ratio podman / qci: run -d {:.2}, pod of one {:.2}, pod of two {:.2}",
            r / a,
            p1 / a,
            p2 / d
        );
    }
}

/// Time from `POST` until the server says the group runs (a server-side wait, no polling);
/// the group is then deleted, untimed.
async fn to_running(s: &Server, spec: &str) -> Duration {
    let (took, id) = until_running(s, spec).await;
    delete(s, &id).await;
    took
}

/// The peer, same image pulled first: `podman run -d`, and a pod (`podman pod create` then
/// `podman run -d --pod`) of one and of two containers, each timed until podman returns
/// (the containers running), removed untimed.
fn podman_runs(
    p: &Podman,
    image: &str,
    runs: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    p.pull(image);
    let (mut run, mut pod1, mut pod2) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (t, id) = p.run(&["run", "-d", image, "sleep", "3600"]);
        run.push(t);
        p.run(&["rm", "-f", "-t", "0", &id]);
        for (n, out) in [(1, &mut pod1), (2, &mut pod2)] {
            let name = format!("bench-{n}-{i}");
            let (mut t, _) = p.run(&["pod", "create", "--name", &name]);
            for _ in 0..n {
                t += p
                    .run(&["run", "-d", "--pod", &name, image, "sleep", "3600"])
                    .0;
            }
            out.push(t);
            p.run(&["pod", "rm", "-f", "-t", "0", &name]);
        }
    }
    (run, pod1, pod2)
}
