//! What the benchmarks share: the run count, timing a group to Running, and the summary line.

use std::time::{Duration, Instant};

use qci_spec::GroupPhase;

use crate::Server;

/// `QCI_BENCH_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("QCI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Prints `name` with the count, median, p90, min and max of `v` in ms; returns the median.
pub fn stats(name: &str, mut v: Vec<Duration>) -> f64 {
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

/// Time from `POST` of `spec` to phase Running (polling every 2 ms); the group is then
/// deleted, untimed, and waited for.
pub async fn time_to_running(s: &Server, spec: &str) -> Duration {
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
    delete(s, &g.id).await;
    took
}

/// Deletes a group and waits until it is gone (at most a minute).
pub async fn delete(s: &Server, id: &str) {
    s.client.delete_group(id).await.expect("delete");
    let t = Instant::now();
    while s.client.get_group(id).await.is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "delete took over a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
