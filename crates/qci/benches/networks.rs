//! Benchmark: create→Running of a one-container group in a VPC with an EIP (its own ports
//! published), in the basic network, and with no network (loopback only), interleaved in one
//! run. The server's "host network" is a namespace the test kit makes.
//!
//! Run as root: `cargo bench -p qci --bench networks` (QCI_BENCH_RUNS sets the count).

use std::path::Path;
use std::time::{Duration, Instant};

use qci_spec::{GroupPhase, VpcSpec};
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
        .unwrap_or(20);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bench/busybox", "1.0").await;
    let s = Server::start_with(
        Path::new(QCI),
        &[
            "--eip-pool",
            "192.0.2.100-192.0.2.200",
            "--eip-interface",
            "lo",
        ],
    )
    .await;
    s.client
        .create_vpc(&VpcSpec {
            name: "bench".into(),
            cidr: "10.100.0.0/24".into(),
            firewall: None,
        })
        .await
        .expect("vpc");
    let spec = |name: String, network: &str| {
        format!(
            "name: {name}\ntermination_grace_period_seconds: 1\nnetwork: {network}\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600'], ports: [{{port: 8080}}]}}]\n"
        )
    };
    run_to_running(&s, &spec("warm".into(), "{mode: none}")).await;
    let (mut none, mut basic, mut vpc) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        none.push(run_to_running(&s, &spec(format!("none-{i}"), "{mode: none}")).await);
        basic.push(run_to_running(&s, &spec(format!("basic-{i}"), "{}")).await);
        vpc.push(run_to_running(&s, &spec(format!("vpc-{i}"), "{vpc: bench, eip: auto}")).await);
    }
    println!();
    let a = stats("create -> Running, no network", none);
    let b = stats("create -> Running, basic network", basic);
    let c = stats("create -> Running, VPC + EIP (published)", vpc);
    println!(
        "the basic network adds {:.1} ms; a VPC with an EIP adds {:.1} ms",
        b - a,
        c - a
    );
    if let Ok(path) = std::env::var("QCI_BENCH_SERVE_LOG") {
        std::fs::write(&path, s.log()).expect("writing the serve log");
        println!("serve log: {path}");
    }
}
