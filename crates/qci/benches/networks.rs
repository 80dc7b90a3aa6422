//! Benchmark: create→Running of a one-container group in a VPC with an EIP (its own ports
//! published), in the basic network, and with no network (loopback only), interleaved in one
//! run. The server's "host network" is a namespace the test kit makes.
//!
//! Run as root: `cargo bench -p qci --bench networks` (QCI_BENCH_RUNS sets the count).

use std::path::Path;

use qci_spec::VpcSpec;
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
        &[
            "--eip-pool",
            "192.0.2.100-192.0.2.200",
            "--eip-interface",
            "lo",
            "--basic-network-linger",
            "30",
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
    time_to_running(&s, &spec("warm".into(), "{mode: none}")).await;
    let (mut none, mut basic, mut vpc) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        none.push(time_to_running(&s, &spec(format!("none-{i}"), "{mode: none}")).await);
        basic.push(time_to_running(&s, &spec(format!("basic-{i}"), "{}")).await);
        vpc.push(time_to_running(&s, &spec(format!("vpc-{i}"), "{vpc: bench, eip: auto}")).await);
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
