//! Benchmark: what disks cost. Creating a disk (sparse file + mkfs.ext4) of 1 GiB and 10 GiB,
//! and create→Running of a one-container group that mounts a disk (loop device, ext4 mount,
//! sub_path bind), beside the same group with no volume, interleaved in one run.
//!
//! Run as root: `cargo bench -p qci --bench disks` (QCI_BENCH_RUNS sets the count).

use std::path::Path;
use std::time::Instant;

use qci_spec::{DiskSpec, Quantity};
use qci_testkit::bench::{runs, stats, time_to_running};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = runs(10);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bench/busybox", "1.0").await;
    let s = Server::start_with(Path::new(QCI), &["--basic-network-linger", "30"]).await;

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
    time_to_running(&s, &plain(0)).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        a.push(time_to_running(&s, &plain(i)).await);
        b.push(time_to_running(&s, &with_disk(i)).await);
    }
    println!();
    stats("qci disk create 1Gi (API)", create[0].clone());
    stats("qci disk create 10Gi (API)", create[1].clone());
    let x = stats("create -> Running, no volume", a);
    let y = stats("create -> Running, 1Gi disk + sub_path", b);
    println!("a disk adds {:.1} ms to a start", y - x);
}
