//! Benchmark: `runtime: gvisor` beside `runtime: runc`, in one run. For each runtime:
//! create→Running of a one- and a two-container group (API, answered by the server when the
//! group runs), and an exec of `true` in a running container (API WebSocket, until its exit
//! code comes back); the floors, a bare `runc run -d` and `runsc run -d` of the same bundle and
//! their `exec … true`; and, where podman is installed, `podman run -d` and `podman exec` on
//! runc and on runsc, and a podman pod of two containers on runsc. Also what an idle gVisor group's sandbox holds in memory. Rounds are
//! interleaved so a noisy moment hits every row alike.
//!
//! Run as root: `cargo bench -p qci --bench gvisor` (QCI_BENCH_RUNS sets the count).

use std::path::Path;
use std::time::{Duration, Instant};

use qci_testkit::bench::{BareRuntime, Podman, delete, runs, stats, unpacked_layer, until_running};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    qci_testkit::require(&[("runc", "runc"), ("runsc", "runsc")]);
    let runs = runs(15);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bench/busybox", "1.0").await;
    let s = Server::start_with(Path::new(QCI), &["--basic-network-linger", "30"]).await;
    let spec = |runtime: &str, i: usize, n: usize| {
        let containers: Vec<String> = (0..n)
            .map(|k| format!("{{name: c{k}, image: '{image}', command: [sleep, '3600']}}"))
            .collect();
        format!(
            "name: bench-{runtime}-{n}-{i}\nruntime: {runtime}\ntermination_grace_period_seconds: 1\ncontainers: [{}]\n",
            containers.join(", ")
        )
    };
    // Warm-up on each runtime (the image pulled once); its layer for the floors.
    for runtime in ["runc", "gvisor"] {
        let (took, id) = until_running(&s, &spec(runtime, 0, 1)).await;
        println!("warm-up {runtime}: {:.1} ms", took.as_secs_f64() * 1000.0);
        delete(&s, &id).await;
    }
    let layer = unpacked_layer(&s);

    // One long-lived group on each runtime, for the execs.
    let mut exec_groups = Vec::new();
    for runtime in ["runc", "gvisor"] {
        let (_, id) = until_running(&s, &spec(runtime, 999, 1)).await;
        exec_groups.push(id);
    }
    let bare_runc = BareRuntime::new(&layer, "runc", &[]);
    let bare_runsc = BareRuntime::new(&layer, "runsc", &["--network=none"]);
    let (_, runc_ids) = bare_runc.start(0, 1);
    let (_, runsc_ids) = bare_runsc.start(0, 1);

    let mut rows: Vec<(&str, Vec<Duration>)> = [
        "qci runc: create -> Running (1)",
        "qci gvisor: create -> Running (1)",
        "qci runc: create -> Running (2)",
        "qci gvisor: create -> Running (2)",
        "bare runc run -d",
        "bare runsc run -d",
        "qci runc: exec true (API)",
        "qci gvisor: exec true (API)",
        "bare runc exec true",
        "bare runsc exec true",
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    for i in 1..=runs {
        let mut k = 0;
        for n in [1, 2] {
            for runtime in ["runc", "gvisor"] {
                let (took, id) = until_running(&s, &spec(runtime, i, n)).await;
                delete(&s, &id).await;
                rows[k].1.push(took);
                k += 1;
            }
        }
        rows[4].1.push(bare_runc.run(i, 1));
        rows[5].1.push(bare_runsc.run(i, 1));
        for (j, id) in exec_groups.iter().enumerate() {
            rows[6 + j].1.push(exec_true(&s, id).await);
        }
        rows[8].1.push(bare_runc.exec(&runc_ids[0]));
        rows[9].1.push(bare_runsc.exec(&runsc_ids[0]));
    }
    bare_runc.delete(&runc_ids[0]);
    bare_runsc.delete(&runsc_ids[0]);
    drop((bare_runc, bare_runsc));

    // What an idle gVisor sandbox (pause + one sleeping container) holds, as its cgroup counts.
    let gv = &exec_groups[1];
    let sandbox_memory = s
        .group_cgroups(gv)
        .into_iter()
        .map(|c| c.join("sandbox/memory.usage_in_bytes"))
        .find(|f| f.exists())
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    for id in &exec_groups {
        delete(&s, id).await;
    }

    let podman = Podman::find().map(|p| podman_runs(&p, &image, runs));
    println!();
    let medians: Vec<f64> = rows.into_iter().map(|(n, v)| stats(n, v)).collect();
    println!(
        "ratio gvisor / runc (qci): create one {:.2}, create two {:.2}, exec {:.2}",
        medians[1] / medians[0],
        medians[3] / medians[2],
        medians[7] / medians[6]
    );
    println!(
        "ratio qci / bare: runc {:.2}, gvisor {:.2}; exec runc {:.2}, gvisor {:.2}",
        medians[0] / medians[4],
        medians[1] / medians[5],
        medians[6] / medians[8],
        medians[7] / medians[9]
    );
    if let Some(m) = sandbox_memory {
        println!(
            "an idle gVisor group's sandbox (pause + one sleep): {:.1} MiB",
            m as f64 / (1 << 20) as f64
        );
    }
    if let Some(rows) = podman {
        let p: Vec<f64> = rows.into_iter().map(|(n, v)| stats(n, v)).collect();
        println!(
            "ratio podman / qci: run -d runc {:.2}, runsc {:.2}; exec runc {:.2}, runsc {:.2}; \
             two containers on runsc {:.2}",
            p[0] / medians[0],
            p[1] / medians[1],
            p[2] / medians[6],
            p[3] / medians[7],
            p[4] / medians[3]
        );
    }
}

/// `true` in the group's first container over the exec WebSocket, until its exit code.
async fn exec_true(s: &Server, id: &str) -> Duration {
    let t = Instant::now();
    let code = s
        .client
        .exec(
            id,
            "c0",
            &["true".to_string()],
            Default::default(),
            |_, _| {},
        )
        .await
        .expect("exec");
    assert_eq!(code, 0);
    t.elapsed()
}

/// The peer on each runtime: `podman run -d` (until podman returns, the container running)
/// and `podman exec … true`; containers removed untimed.
fn podman_runs(p: &Podman, image: &str, runs: usize) -> Vec<(&'static str, Vec<Duration>)> {
    p.pull(image);
    // This runsc's own network stack does not start on current kernels (ARCHITECTURE.md):
    // under podman too it uses the container's namespace directly.
    let gvisor = ["--runtime", "runsc", "--runtime-flag", "network=host"];
    let mut rows: Vec<(&'static str, Vec<Duration>)> = vec![
        ("podman run -d (runc)", Vec::new()),
        ("podman run -d (runsc)", Vec::new()),
        ("podman exec true (runc)", Vec::new()),
        ("podman exec true (runsc)", Vec::new()),
        ("podman pod of two (runsc)", Vec::new()),
    ];
    for _ in 0..runs {
        for (k, flags) in [&[][..], &gvisor[..]].into_iter().enumerate() {
            let args: Vec<&str> = flags
                .iter()
                .copied()
                .chain(["run", "-d", image, "sleep", "3600"])
                .collect();
            let (t, id) = p.run(&args);
            rows[k].1.push(t);
            let args: Vec<&str> = flags
                .iter()
                .copied()
                .chain(["exec", id.as_str(), "true"])
                .collect();
            rows[2 + k].1.push(p.run(&args).0);
            let args: Vec<&str> = flags
                .iter()
                .copied()
                .chain(["rm", "-f", "-t", "0", id.as_str()])
                .collect();
            p.run(&args);
        }
        // A pod of two, as qci's two-container group: podman makes a sandbox per container
        // (it does not pass runsc's sandbox annotations), plus its infra container's.
        let name = format!("bench-gv-{}", rows[4].1.len());
        let pod_args = |rest: &[&str]| -> Vec<String> {
            gvisor.iter().chain(rest).map(|a| a.to_string()).collect()
        };
        let run = |args: Vec<String>| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            p.run(&args).0
        };
        let mut t = run(pod_args(&["pod", "create", "--name", &name]));
        for _ in 0..2 {
            t += run(pod_args(&[
                "run", "-d", "--pod", &name, image, "sleep", "3600",
            ]));
        }
        rows[4].1.push(t);
        run(pod_args(&["pod", "rm", "-f", "-t", "0", &name]));
    }
    rows
}
