//! Benchmark, in one run:
//! - log throughput: a container writing 200 MB to stdout through qci's monitor (pipe, CRI
//!   records, rotation) beside the same container writing it to /dev/null, in a group of two
//!   cores so that its CPU quota is not what both measure;
//! - exec round trip: `qci exec GROUP -- true` (CLI, WebSocket, runc exec), the same through
//!   the API alone (the client's WebSocket, no CLI process), beside `runc exec` of the same
//!   container; and `podman exec` of a podman container where podman is installed.
//!
//! Run as root: `cargo bench -p qci --bench logs_and_exec` (QCI_BENCH_RUNS, default 10).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qci_spec::GroupPhase;
use qci_testkit::bench::Podman;
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");
const BYTES: u64 = 200_000_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = qci_testkit::bench::runs(10);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &["--basic-network-linger", "30"]).await;

    // Log throughput: time from start to exit, as the monitor records it.
    let run = |name: String, sink: &str| {
        format!(
            "name: {name}\nrestart_policy: Never\ncpu: 2\nmemory: 4Gi\ncontainers: [{{name: c, image: '{image}', max_log_size: 50Mi, command: [sh, -c, 'yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c {BYTES}{sink}']}}]\n"
        )
    };
    let mut through = Vec::new();
    let mut devnull = Vec::new();
    for i in 0..3 {
        for (sink, out) in [("", &mut through), (" > /dev/null", &mut devnull)] {
            let g = s
                .client
                .create_group(&run(format!("log{i}{}", sink.len()), sink))
                .await
                .expect("create");
            let g = s
                .wait_group(&g.id, "end", |g| g.status.phase.is_final())
                .await;
            assert_eq!(g.status.phase, GroupPhase::Succeeded, "{:?}", g.status);
            let c = &g.status.containers[0];
            out.push(
                (c.finished_at.unwrap() - c.started_at.unwrap())
                    .to_std()
                    .unwrap(),
            );
            s.client.delete_group(&g.id).await.unwrap();
        }
    }

    // Exec round trip.
    let spec = format!(
        "name: ex\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]\n"
    );
    let g = s.client.create_group(&spec).await.expect("create");
    s.wait_group(&g.id, "Running", |g| g.status.phase == GroupPhase::Running)
        .await;
    let runc_id = qci_runtime::Layout::runc_id(&g.id, "c");
    let mut qci = Vec::new();
    let mut api = Vec::new();
    let mut runc = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let code = s
            .client
            .exec(
                &g.id,
                "c",
                &["true".to_string()],
                qci_client::ExecIo::default(),
                |_, _| {},
            )
            .await
            .expect("exec");
        api.push(t.elapsed());
        assert_eq!(code, 0);
        let t = Instant::now();
        let ok = s
            .command()
            .args(["exec", "ex", "--", "true"])
            .status()
            .unwrap();
        qci.push(t.elapsed());
        assert!(ok.success());
        let t = Instant::now();
        let ok = Command::new("runc")
            .arg("--root")
            .arg(&s.layout.runc_root)
            .args(["exec", &runc_id, "true"])
            .status()
            .unwrap();
        runc.push(t.elapsed());
        assert!(ok.success());
    }

    let podman = Podman::find().map(|p| {
        p.pull(&image);
        let (_, id) = p.run(&["run", "-d", &image, "sleep", "3600"]);
        let times: Vec<Duration> = (0..runs).map(|_| p.run(&["exec", &id, "true"]).0).collect();
        p.run(&["rm", "-f", "-t", "0", &id]);
        times
    });

    let mb = BYTES as f64 / 1e6;
    let (a, b) = (median(through).as_secs_f64(), median(devnull).as_secs_f64());
    println!("\nwriting {mb:.0} MB, n=3 each:");
    println!(
        "  through qci's monitor to the log  median {:7.0} ms  ({:6.0} MB/s)",
        a * 1000.0,
        mb / a
    );
    println!(
        "  to /dev/null in the container     median {:7.0} ms  ({:6.0} MB/s)",
        b * 1000.0,
        mb / b
    );
    println!("  throughput, log / /dev/null: {:.2}", b / a);
    let ms = |v| median(v).as_secs_f64() * 1000.0;
    let (c, e, d) = (ms(qci), ms(api), ms(runc));
    println!("exec of `true`, n={runs} each:");
    println!("  qci exec (CLI, WebSocket, runc exec)  median {c:6.1} ms");
    println!("  the API alone (WebSocket, runc exec)  median {e:6.1} ms");
    println!("  runc exec                             median {d:6.1} ms");
    println!("  ratio CLI / runc: {:.2}, API / runc: {:.2}", c / d, e / d);
    if let Some(p) = podman {
        let p = ms(p);
        println!("  podman exec                           median {p:6.1} ms");
        println!("  ratio podman / qci CLI: {:.2}", p / c);
    }
}
