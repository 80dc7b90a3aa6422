//! Benchmark: the image path with a ~200 MB multi-layer image in a local registry.
//! - qci's pull + unpack (`POST /v1/images/pull`) beside `skopeo copy` + `umoci unpack` of the
//!   same image (what podman-style tooling does) and beside `podman pull` itself, when podman is
//!   installed (its own storage in a temporary directory, emptied before every pull);
//! - group create→Running when the image comes from the registry (store emptied first) and
//!   when it comes from an image cache; a cold start should cost no more than a pull plus a
//!   warm start (the bench prints the ratio).
//!
//! Run as root: `cargo bench -p qci --bench image_pull` (needs `apt-get install skopeo umoci`;
//! QCI_BENCH_RUNS sets the count, default 3).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use qci_spec::PullRequest;
use qci_testkit::{Compression, Entry, ImageSpec, Layer, Registry, Server, push_image, tar_of};

const QCI: &str = env!("CARGO_BIN_EXE_qci");
const LAYERS: usize = 4;
const LAYER_BYTES: usize = 50 << 20;

fn noise(seed: u64, n: usize) -> Vec<u8> {
    // xorshift64*: incompressible enough that gzip cannot shrink it, fast to make.
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn report(name: &str, v: &[Duration], bytes: u64) -> f64 {
    let m = median_ms(v.to_vec());
    let rate = bytes as f64 / (1 << 20) as f64 / (m / 1000.0);
    println!(
        "{name:<46} n={}  median {m:8.0} ms  ({rate:6.0} MiB/s)",
        v.len()
    );
    m
}

fn have(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is missing: apt-get install skopeo umoci");
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    have("skopeo");
    have("umoci");
    let runs = qci_testkit::bench::runs(3);
    let reg = Registry::start();
    let layers: Vec<Layer> = (0..LAYERS)
        .map(|i| {
            let data = noise(i as u64 + 1, LAYER_BYTES);
            Layer {
                tar: tar_of(&[Entry::File(&format!("blob{i}"), &data)]),
                compression: Compression::Gzip,
            }
        })
        .collect();
    let image = push_image(
        &reg.host(),
        "big",
        "1",
        &ImageSpec {
            extra_layers: layers,
            ..Default::default()
        },
    )
    .await;
    let s = Server::start_with(Path::new(QCI), &["--basic-network-linger", "30"]).await;
    let bytes = {
        let i = s
            .client
            .pull_image(
                &PullRequest {
                    image: image.clone(),
                    registry_credentials: vec![],
                },
                |_, _, _| {},
            )
            .await
            .unwrap();
        i.size
    };
    let empty_store = || async {
        s.client.remove_image(&image).await.ok();
        s.client.prune_images().await.expect("prune");
    };
    println!(
        "image: {image}, {} layers, {:.0} MiB compressed",
        LAYERS + 1,
        bytes as f64 / (1 << 20) as f64
    );

    // qci pull + unpack, from an empty store each time.
    let mut qci = Vec::new();
    for _ in 0..runs {
        empty_store().await;
        let t = Instant::now();
        s.client
            .pull_image(
                &PullRequest {
                    image: image.clone(),
                    registry_credentials: vec![],
                },
                |_, _, _| {},
            )
            .await
            .unwrap();
        qci.push(t.elapsed());
    }

    // skopeo copy + umoci unpack of the same image.
    let work = tempfile::Builder::new()
        .prefix("qci-bench-skopeo-")
        .tempdir_in(qci_testkit::test_root())
        .unwrap();
    let mut peer = Vec::new();
    for i in 0..runs {
        let layout = work.path().join(format!("oci{i}"));
        let bundle = work.path().join(format!("bundle{i}"));
        let t = Instant::now();
        let st = Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("oci:{}:big", layout.display()))
            .status()
            .unwrap();
        assert!(st.success(), "skopeo copy failed");
        let st = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:big", layout.display()))
            .arg(&bundle)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "umoci unpack failed");
        peer.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&layout);
        let _ = std::fs::remove_dir_all(&bundle);
    }

    // podman pull of the same image, from an empty podman store each time.
    let podman = qci_testkit::bench::Podman::find();
    let mut podman_pulls = Vec::new();
    if let Some(p) = &podman {
        for _ in 0..runs {
            p.run(&["rmi", "--all", "--force"]);
            podman_pulls.push(p.pull(&image));
        }
    }

    // create→Running, image from the registry (empty store) vs from an image cache.
    let group = |name: &str, cache: &str| {
        format!(
            "name: {name}\ntermination_grace_period_seconds: 1\nimage_cache: {cache}\ncontainers: [{{name: c, image: '{image}', command: [sleep, '600']}}]\n"
        )
    };
    let mut from_registry = Vec::new();
    for i in 0..runs {
        empty_store().await;
        from_registry.push(
            qci_testkit::bench::time_to_running(&s, &group(&format!("reg{i}"), "none")).await,
        );
    }
    let cache = s
        .client
        .create_image_cache(&qci_spec::ImageCacheSpec {
            name: "bench".into(),
            images: vec![image.clone()],
            registry_credentials: vec![],
        })
        .await
        .unwrap();
    while s
        .client
        .get_image_cache(&cache.id)
        .await
        .unwrap()
        .status
        .phase
        != qci_spec::CachePhase::Ready
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut from_cache = Vec::new();
    for i in 0..runs {
        from_cache.push(
            qci_testkit::bench::time_to_running(&s, &group(&format!("cache{i}"), "bench")).await,
        );
    }

    println!();
    let a = report("qci pull + unpack", &qci, bytes);
    let b = report("skopeo copy + umoci unpack", &peer, bytes);
    println!("ratio qci / skopeo+umoci: {:.2}", a / b);
    if !podman_pulls.is_empty() {
        let p = report("podman pull", &podman_pulls, bytes);
        println!("ratio podman pull / qci: {:.2}", p / a);
    }
    let c = median_ms(from_registry.clone());
    let d = median_ms(from_cache.clone());
    println!(
        "{:<46} n={}  median {c:8.0} ms",
        "create -> Running, image from the registry",
        from_registry.len()
    );
    println!(
        "{:<46} n={}  median {d:8.1} ms",
        "create -> Running, image from an image cache",
        from_cache.len()
    );
    println!("ratio registry / cache: {:.0}", c / d);
    println!("cold start / (pull + warm start): {:.2}", c / (a + d));
}
