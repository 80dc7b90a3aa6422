//! Benchmark: many idle one-container groups on one server (issue 15, goal 5). Creates
//! QCI_DENSITY_GROUPS groups (default 200) through the API from 16 clients, waits until all are
//! Running, then measures over 10 s: the CPU `qci serve` uses while nothing changes, and the
//! latency of `GET /v1/container-groups/{id}` meanwhile; then kills `qci serve` and 10 of the
//! containers, and times the restart until those run again (every group adopted); then deletes
//! them all.
//!
//! Run as root: `cargo bench -p qci --bench density` (QCI_DENSITY_GROUPS=1000 for the goal).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qci_spec::GroupPhase;
use qci_testkit::bench::stats;
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .expect("stat shape")
        .1
        .split(' ')
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Creates `n` groups (`spec(i)` for i in 0..n) from 16 clients at once; their ids.
async fn create_all(
    s: &Arc<Server>,
    n: usize,
    spec: impl Fn(usize) -> String + Clone + Send + 'static,
) -> Vec<String> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (s, next, spec) = (s.clone(), next.clone(), spec.clone());
        clients.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return ids;
                }
                ids.push(s.client.create_group(&spec(i)).await.expect("create").id);
            }
        }));
    }
    let mut ids = Vec::new();
    for c in clients {
        ids.extend(c.await.unwrap());
    }
    ids
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("QCI_DENSITY_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bench/busybox", "1.0").await;
    let s = Arc::new(Server::start_with(Path::new(QCI), &["--basic-network-linger", "30"]).await);
    let pid = s.pid().expect("serve runs");
    let spec = move |i: usize| {
        format!(
            "name: d-{i}\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '36000']}}]\n"
        )
    };

    let t = Instant::now();
    let mut ids = create_all(&s, n, spec).await;
    let accepted = t.elapsed();
    loop {
        let groups = s.client.list_groups().await.expect("list");
        let running = groups
            .iter()
            .filter(|g| g.status.phase == GroupPhase::Running)
            .count();
        if running == n {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "only {running} of {n} Running after 900 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_running = t.elapsed();

    // What each container's monitor holds (goal 4): private pages (what each further
    // container adds), PSS (shared pages split between the monitors) and RSS, averaged.
    let mut monitors = 0u64;
    let (mut private, mut pss, mut rss) = (0u64, 0u64, 0u64);
    for e in std::fs::read_dir(s.data_dir.join("containers"))
        .expect("containers dir")
        .flatten()
    {
        let Some(pid) = std::fs::read_to_string(e.path().join("monitor.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let Some((p, ps, r)) = qci_testkit::memory_kib(pid) else {
            continue;
        };
        monitors += 1;
        private += p;
        pss += ps;
        rss += r;
    }
    let per = |v: u64| v / monitors.max(1);

    // Idle: what the controller costs with nothing to do, and what a GET waits
    // (QCI_DENSITY_IDLE_SECS long, 10 by default: longer to profile `qci serve` meanwhile).
    let idle = std::env::var("QCI_DENSITY_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("idle for {idle} s; qci serve is pid {pid}");
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    let mut gets = Vec::new();
    while t0.elapsed() < Duration::from_secs(idle) {
        let id = &ids[gets.len() % ids.len()];
        let g = Instant::now();
        s.client.get_group(id).await.expect("get");
        gets.push(g.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();

    // The API alone: 200 more creates by the 16 clients, of groups whose image cannot be
    // pulled (nothing starts, so no runc competes for the cores), with the n groups running.
    let t = Instant::now();
    ids.extend(
        create_all(&s, 200, |i| {
            format!("name: x-{i}\ncontainers: [{{name: c, image: '127.0.0.1:1/none:1'}}]\n")
        })
        .await,
    );
    let api_alone = t.elapsed();

    // Restart: `qci serve` is killed, and while it is down the containers of 10 groups spread
    // over the list are killed too; the time from the new `qci serve` starting until those 10
    // run again is the time to adopt every group (one sweep passes them all) and repair them.
    let mut s = Arc::into_inner(s).expect("the clients are done");
    let victims: Vec<(String, u32)> = {
        let mut groups = s.client.list_groups().await.expect("list");
        groups.retain(|g| g.name.starts_with("d-"));
        (0..10)
            .map(|k| &groups[k * groups.len() / 10 + groups.len() / 20])
            .map(|g| (g.id.clone(), g.status.containers[0].pid.expect("a pid")))
            .collect()
    };
    s.kill9();
    for (_, p) in &victims {
        let _ = std::process::Command::new("kill")
            .args(["-9", &p.to_string()])
            .status();
    }
    let t = Instant::now();
    s.restart().await;
    let answering = t.elapsed();
    for (id, old) in &victims {
        loop {
            let g = s.client.get_group(id).await.expect("get");
            let c = &g.status.containers[0];
            if c.state == qci_spec::ContainerState::Running && c.pid.is_some_and(|p| p != *old) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "{id} not running again 300 s after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let adopted = t.elapsed();

    let t = Instant::now();
    for id in &ids {
        s.client.delete_group(id).await.expect("delete");
    }
    while !s.client.list_groups().await.expect("list").is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "deletes take over 900 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deleted = t.elapsed();

    println!();
    println!(
        "{n} groups: accepted in {:.1} s ({:.0}/s), all Running after {:.1} s, deleted in {:.1} s",
        accepted.as_secs_f64(),
        n as f64 / accepted.as_secs_f64(),
        all_running.as_secs_f64(),
        deleted.as_secs_f64()
    );
    println!("qci serve while idle: {:.0}% of one core", busy * 100.0);
    println!(
        "per monitor ({monitors}): private {} KiB, PSS {} KiB, RSS {} KiB",
        per(private),
        per(pss),
        per(rss)
    );
    println!(
        "200 more creates, nothing starting: {:.1} s ({:.0}/s)",
        api_alone.as_secs_f64(),
        200.0 / api_alone.as_secs_f64()
    );
    println!(
        "restart: answering after {:.2} s; every group adopted and 10 killed containers running again after {:.2} s",
        answering.as_secs_f64(),
        adopted.as_secs_f64()
    );
    let mut sorted = gets.clone();
    sorted.sort();
    stats("GET a group while idle", gets);
    println!(
        "GET p99: {:.1} ms",
        sorted[sorted.len() * 99 / 100].as_secs_f64() * 1000.0
    );
}
