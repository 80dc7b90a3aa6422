//! Benchmark: what disks cost. Creating a disk (sparse file + mkfs.ext4) of 1 GiB and 10 GiB,
//! and create→Running of a one-container group that mounts a disk (loop device, ext4 mount,
//! sub_path bind), beside the same group with no volume, interleaved in one run.
//!
//! Run as root: `cargo bench -p qci --bench disks` (QCI_BENCH_RUNS sets the count).

use std::path::Path;
use std::time::{Duration, Instant};

use qci_spec::{DiskSpec, GroupPhase, Quantity};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

fn stats(name: &str, mut v: Vec<Duration>) -> f64 {
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

async fn run_to_running(s: &Server, spec: &str) -> Duration {
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
    s.client.delete_group(&g.id).await.expect("delete");
    while s.client.get_group(&g.id).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("QCI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bench/busybox", "1.0").await;
    let s = Server::start(Path::new(QCI)).await;

    let mut create = [Vec::new(), Vec::new()];
    for i in 0..runs.min(5) {
        for (k, size) in ["1Gi", "10Gi"].iter().enumerate() {
            let t = Instant::now();
            let d = s
                .client
                .create_disk(&DiskSpec {
                    name: format!("b{k}-{i}"),
                    size: Quantity(size.to_string()),
                    disk_type: "standard".into(),
                })
                .await
                .expect("disk create");
            create[k].push(t.elapsed());
            s.client.delete_disk(&d.id).await.expect("disk rm");
        }
    }
    s.client
        .create_disk(&DiskSpec {
            name: "data".into(),
            size: Quantity("1Gi".into()),
            disk_type: "standard".into(),
        })
        .await
        .expect("disk create");

    let plain = |i: usize| {
        format!(
            "name: plain-{i}\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]\n"
        )
    };
    let with_disk = |i: usize| {
        format!(
            "name: disk-{i}\ntermination_grace_period_seconds: 1\nvolumes: [{{name: d, disk: {{id: data}}}}]\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600'], volume_mounts: [{{name: d, mount_path: /data, sub_path: db}}]}}]\n"
        )
    };
    // Warm-up: pulls the image once.
    run_to_running(&s, &plain(0)).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        a.push(run_to_running(&s, &plain(i)).await);
        b.push(run_to_running(&s, &with_disk(i)).await);
    }
    println!();
    stats("qci disk create 1Gi (API)", create[0].clone());
    stats("qci disk create 10Gi (API)", create[1].clone());
    let x = stats("create -> Running, no volume", a);
    let y = stats("create -> Running, 1Gi disk + sub_path", b);
    println!("a disk adds {:.1} ms to a start", y - x);
}
