//! Benchmark: what confinement costs, and what a hostile body costs others.
//!
//! 1. create→Running of a one-container group with the default seccomp profile and the
//!    group's cgroup limits, beside the same group with `seccomp_profile: Unconfined`
//!    (alternating, same server, same run); and the group limits' own cost, timed directly
//!    (the cgroup writes qci adds per group), since they cannot be turned off.
//! 2. A 200 KB body of nested flow brackets: time to the 400, alone and four at once, and
//!    `GET /v1/container-groups` (what `qci ls` asks) while those four are in flight.
//!
//! Run as root: `cargo bench -p qci --bench confinement` (QCI_BENCH_RUNS sets the count).

use std::path::Path;
use std::time::{Duration, Instant};

use qci_testkit::bench::{runs, stats, time_to_running};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = runs(20);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bench/busybox", "1.0").await;
    let s = Server::start_with(
        Path::new(QCI),
        &["--basic-network-linger", "30", "--allow-unconfined-seccomp"],
    )
    .await;
    let spec = |i: usize, extra: &str| {
        format!(
            "name: bench-{i}\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']{extra}}}]\n"
        )
    };
    // Warm-up: pulls the image once.
    time_to_running(&s, &spec(0, "")).await;
    let (mut confined, mut unconfined) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        confined.push(time_to_running(&s, &spec(i, "")).await);
        unconfined.push(
            time_to_running(
                &s,
                &spec(i, ", security_context: {seccomp_profile: Unconfined}"),
            )
            .await,
        );
    }
    let limits = time_group_limits(&s, runs * 10);

    let body = format!("name: x\ncontainers: {}", "[".repeat(200_000));
    let http = reqwest::Client::new();
    let key = s.admin_key().unwrap();
    let post = |body: String| {
        let (http, key, url) = (http.clone(), key.clone(), s.url.clone());
        async move {
            let t = Instant::now();
            let r = http
                .post(format!("{url}/v1/container-groups"))
                .bearer_auth(key)
                .header("content-type", "application/yaml")
                .body(body)
                .send()
                .await
                .expect("post");
            assert_eq!(r.status(), 400);
            t.elapsed()
        }
    };
    let mut alone = Vec::new();
    for _ in 0..runs {
        alone.push(post(body.clone()).await);
    }
    let (mut crowded, mut listed) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let hostile: Vec<_> = (0..4).map(|_| tokio::spawn(post(body.clone()))).collect();
        let t = Instant::now();
        s.client.list_groups().await.expect("list");
        listed.push(t.elapsed());
        for h in hostile {
            crowded.push(h.await.unwrap());
        }
    }

    println!();
    let a = stats("create -> Running, RuntimeDefault", confined);
    let b = stats("create -> Running, Unconfined", unconfined);
    println!("seccomp adds {:.2} ms (median)", a - b);
    stats("group limits (cgroup writes)", limits);
    stats("200 KB nested body -> 400", alone);
    stats("the same, four at once", crowded);
    stats("list groups meanwhile", listed);
}

/// The cgroup writes qci adds per group, on a cgroup of its own under the server's parent.
fn time_group_limits(s: &Server, n: usize) -> Vec<Duration> {
    let rel = format!("/{}/bench-limits", s.layout.cgroup_parent);
    let mut times = Vec::new();
    for i in 0..n {
        let l = qci_runtime::GroupLimits {
            cpu_millis: 250 + (i as u64 % 4) * 250,
            memory_bytes: (512 << 20) * (1 + i as u64 % 4),
        };
        let t = Instant::now();
        qci_runtime::cgroup::set_group_limits(&rel, l).expect("limits");
        times.push(t.elapsed());
    }
    qci_runtime::cgroup::remove(&rel).expect("removing the bench cgroup");
    times
}
