//! Benchmark: what authentication adds to an API request, in one run.
//!
//! Two trivial GETs through the same server, the same middleware stack (request timing, the
//! Host/Origin/Content-Type guard) and one keep-alive connection, interleaved in rounds:
//! - `GET /healthz`, a public route: no key is read;
//! - `GET /v1/version` with `Authorization: Bearer KEY`: the key's row is read from SQLite, its
//!   SHA-256 compared, the role checked against the route.
//!
//! The difference of their means is the cost of authentication. Then both again from 8
//! connections at once, for throughput. Then, with wrk as the load generator (C, epoll: it
//! costs the shared cores far less than a Rust HTTP client would), `GET` of one running
//! container group with a key — what `qci get` and a console ask most — for throughput and
//! latency percentiles.
//!
//! Run as root: `cargo bench -p qci --bench api_auth` (QCI_BENCH_RUNS rounds, default 10, of
//! 2000 requests each; needs `apt-get install wrk`).

use std::path::Path;
use std::time::{Duration, Instant};

use qci_spec::GroupPhase;
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");
const PER_ROUND: usize = 2000;

async fn round(http: &reqwest::Client, url: &str, key: Option<&str>, n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let mut r = http.get(url);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.expect("request");
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp.bytes().await.expect("body");
    }
    t.elapsed()
}

/// Requests per second from `conns` connections at once, `n` requests each.
async fn throughput(url: &str, key: Option<&str>, conns: usize, n: usize) -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (url, key) = (url.to_string(), key.map(str::to_string));
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                round(&http, &url, key.as_deref(), n).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (conns * n) as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = qci_testkit::bench::runs(10);
    let s = Server::start(Path::new(QCI)).await;
    let key = s.admin_key().expect("admin key");
    let http = reqwest::Client::new();
    let (public, authed) = (
        format!("{}/healthz", s.url),
        format!("{}/v1/version", s.url),
    );
    // Warm up the connection, the allocator and SQLite's page cache.
    round(&http, &public, None, 500).await;
    round(&http, &authed, Some(&key), 500).await;

    let (mut open, mut with_key) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        open.push(round(&http, &public, None, PER_ROUND).await);
        with_key.push(round(&http, &authed, Some(&key), PER_ROUND).await);
    }
    let per = |v: &[Duration]| {
        let mut us: Vec<f64> = v
            .iter()
            .map(|d| d.as_secs_f64() * 1e6 / PER_ROUND as f64)
            .collect();
        us.sort_by(f64::total_cmp);
        (us[us.len() / 2], us[0])
    };
    let (open_med, open_min) = per(&open);
    let (key_med, key_min) = per(&with_key);
    println!(
        "sequential, one keep-alive connection, {runs} rounds of {PER_ROUND} (median / best round):"
    );
    println!("  GET /healthz (no key)          {open_med:7.1} µs / {open_min:7.1} µs per request");
    println!("  GET /v1/version (Bearer key)   {key_med:7.1} µs / {key_min:7.1} µs per request");
    println!(
        "  authentication adds            {:7.1} µs (median), {:7.1} µs (best)",
        key_med - open_med,
        key_min - open_min
    );
    let conns = 8;
    let n = PER_ROUND / 2;
    let rps_open = throughput(&public, None, conns, n).await;
    let rps_key = throughput(&authed, Some(&key), conns, n).await;
    println!("throughput, {conns} connections × {n} requests:");
    println!("  GET /healthz (no key)          {rps_open:8.0} req/s");
    println!("  GET /v1/version (Bearer key)   {rps_key:8.0} req/s");

    // One running group, read as fast as wrk can ask.
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let g = s
        .client
        .create_group(&format!(
            "name: read-me\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]\n"
        ))
        .await
        .expect("create");
    s.wait_group(&g.id, "Running", |g| g.status.phase == GroupPhase::Running)
        .await;
    let group_url = format!("{}/v1/container-groups/{}", s.url, g.id);
    println!("wrk, 10 s each (threads × connections):");
    for (threads, conns) in [(1, 16), (2, 64)] {
        let w = wrk(&group_url, &key, threads, conns);
        println!(
            "  GET /v1/container-groups/{{id}} (key) {threads}×{conns:<3} {:8.0} req/s   p50 {:5.2} ms   p99 {:5.2} ms",
            w.rps, w.p50_ms, w.p99_ms
        );
    }
    let w = wrk(&public, "", 1, 16);
    println!(
        "  GET /healthz (no key)               1×16  {:8.0} req/s   p50 {:5.2} ms   p99 {:5.2} ms",
        w.rps, w.p50_ms, w.p99_ms
    );
}

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `wrk --latency` for 10 s against `url` (with the key as a bearer token, if any).
fn wrk(url: &str, key: &str, threads: usize, conns: usize) -> Wrk {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["--latency", "-d", "10s"])
        .arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"));
    if !key.is_empty() {
        cmd.args(["-H", &format!("Authorization: Bearer {key}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("running wrk ({e}): install it with `apt-get install wrk`"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "some requests were refused:\n{text}"
    );
    let ms = |v: &str| -> f64 {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            _ => f64::NAN,
        }
    };
    let field = |prefix: &str| -> &str {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
    };
    Wrk {
        rps: field("Requests/sec:").parse().expect("Requests/sec"),
        p50_ms: ms(field("50%")),
        p99_ms: ms(field("99%")),
    }
}
