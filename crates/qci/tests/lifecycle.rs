//! End-to-end: restart policies with back-off, last state, and groups brought back after a
//! host restart.

use std::path::Path;
use std::time::Duration;

use qci_spec::{ContainerGroup, GroupPhase};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");
/// Short back-off so tests run fast: 0.4 s, 0.8 s, 1.6 s, capped at 1.6 s.
const FAST: [&str; 4] = [
    "--restart-backoff-base",
    "0.4",
    "--restart-backoff-max",
    "1.6",
];

fn first(g: &ContainerGroup) -> &qci_spec::ContainerStatus {
    &g.status.containers[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn on_failure_restarts_with_growing_gaps_and_always_restarts_even_after_exit_0() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &FAST).await;
    let spec = |name: &str, policy: &str, code: u8| {
        format!(
            "name: {name}\nrestart_policy: {policy}\ncontainers: [{{name: c, image: '{image}', command: [sh, -c, 'echo run; exit {code}']}}]\n"
        )
    };
    let flaky = s
        .create("flaky", &spec("flaky", "OnFailure", 1), &[])
        .1
        .trim()
        .to_string();
    let always = s
        .create("loop", &spec("loop", "Always", 0), &[])
        .1
        .trim()
        .to_string();

    // Record when each run started: the gaps between runs grow with the back-off.
    let mut starts = Vec::new();
    let t = std::time::Instant::now();
    while starts.len() < 5 && t.elapsed() < Duration::from_secs(30) {
        let g = s.client.get_group(&flaky).await.unwrap();
        if let Some(c) = g.status.containers.first()
            && let Some(last) = &c.last_state
            && let Some(at) = last.started_at
            && !starts.contains(&at)
        {
            starts.push(at);
            assert_eq!(last.exit_code, Some(1));
            assert_eq!(last.reason.as_deref(), Some("Error"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(starts.len() >= 5, "only {} restarts in 30s", starts.len());
    let gaps: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    // 0 s, 0.4 s, 0.8 s, 1.6 s (+ run time): each gap at least the back-off before it.
    assert!(
        gaps[1] >= 350 && gaps[2] >= 750 && gaps[3] >= 1500,
        "gaps {gaps:?}"
    );
    assert!(gaps[3] > gaps[1], "gaps do not grow: {gaps:?}");
    let g = s
        .wait_group(&flaky, "Restarting", |g| {
            g.status.phase == GroupPhase::Restarting
        })
        .await;
    assert_eq!(first(&g).reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(first(&g).restart_count >= 4);
    let (_, events, _) = s.cli(&["events", "flaky"]);
    assert!(
        events.contains("Restarting") && events.contains("exit code 1"),
        "{events}"
    );

    // Always restarts a container that exited 0 too; Never leaves a failure alone.
    let g = s
        .wait_group(&always, "restarts", |g| first(g).restart_count >= 2)
        .await;
    assert_eq!(
        first(&g).last_state.as_ref().unwrap().reason.as_deref(),
        Some("Completed")
    );
    let never = s
        .create("never", &spec("never", "Never", 1), &[])
        .1
        .trim()
        .to_string();
    let g = s
        .wait_group(&never, "Failed", |g| g.status.phase.is_final())
        .await;
    assert_eq!(g.status.phase, GroupPhase::Failed);
    assert_eq!(first(&g).restart_count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_come_back_after_a_host_restart() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let mut s = Server::start_with(Path::new(QCI), &FAST).await;
    let spec = |name: &str, policy: &str| {
        format!(
            "name: {name}\nrestart_policy: {policy}\ncontainers: [{{name: c, image: '{image}', command: [sleep, '600']}}]\n"
        )
    };
    let always = s
        .create("always", &spec("always", "Always"), &["--wait"])
        .1
        .trim()
        .to_string();
    let never = s
        .create("never", &spec("never", "Never"), &["--wait"])
        .1
        .trim()
        .to_string();
    let old_pid = first(&s.client.get_group(&always).await.unwrap())
        .pid
        .unwrap();

    // A reboot, as far as qci can tell: every process and mount of the instance is gone.
    s.kill9();
    s.simulate_reboot();
    assert!(s.runc_ids().is_empty() && s.mounts().is_empty());
    s.restart().await;

    let g = s
        .wait_group(&always, "Running again", |g| {
            g.status.phase == GroupPhase::Running
                && first(g).restart_count == 1
                && first(g).pid.is_some()
        })
        .await;
    assert_ne!(first(&g).pid, Some(old_pid));
    assert_eq!(first(&g).restart_count, 1);
    let last = first(&g).last_state.clone().unwrap();
    assert!(
        last.message.unwrap_or_default().contains("host"),
        "last state says why"
    );
    let g = s
        .wait_group(&never, "Failed", |g| g.status.phase.is_final())
        .await;
    assert_eq!(g.status.phase, GroupPhase::Failed);
    // The network namespace was rebuilt: the container runs with loopback.
    let (ok, _, err) = s.cli(&["delete", "always", "--wait"]);
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_shm_and_the_pids_limit() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &FAST).await;
    let spec = format!(
        r#"name: shm
termination_grace_period_seconds: 1
shm_size: 32Mi
containers:
  - {{name: a, image: '{image}', memory: 128Mi, command: [sh, -c, 'echo from-a > /dev/shm/note; sleep 600']}}
  - {{name: b, image: '{image}', memory: 128Mi, command: [sh, -c, 'until cat /dev/shm/note; do sleep 0.1; done; df -k /dev/shm | tail -1; sleep 600']}}
  - {{name: bomb, image: '{image}', pids_limit: 32, command: [sh, -c, 'i=0; while [ $i -lt 100 ]; do sleep 600 & i=$((i+1)); done; echo spawned; sleep 600']}}
"#
    );
    let (ok, out, err) = s.create("shm", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let start = std::time::Instant::now();
    let b = loop {
        let l = s.logs(&id, "b").await;
        if l.contains("/dev/shm\n") || start.elapsed() > Duration::from_secs(20) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        b.lines().any(|l| l == "from-a"),
        "b did not see a's /dev/shm: {b:?}"
    );
    let df = b.lines().find(|l| l.ends_with("/dev/shm")).unwrap_or("");
    let size: Vec<&str> = df.split_whitespace().collect();
    assert_eq!(size.get(1), Some(&"32768"), "shm size: {b:?}");

    // The fork loop hits the limit inside its container; the host is untouched.
    let bomb = loop {
        let l = s.logs(&id, "bomb").await;
        if l.contains("can't fork") || start.elapsed() > Duration::from_secs(20) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(bomb.contains("can't fork"), "no fork failure: {bomb:?}");
    // (Nothing else limits a container to 32 processes: the fork fails on the pids cgroup.)
    let (ok, _, err) = s.cli(&["delete", "shm", "--wait"]);
    assert!(ok, "{err}");
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_groups_expire_keeping_their_events_and_restart_reruns_init_containers() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &["--failed-group-ttl", "1"]).await;

    // A failed group goes after the TTL; why it failed stays readable.
    let spec = format!(
        "name: doomed\nrestart_policy: Never\ncontainers: [{{name: c, image: '{image}', command: [sh, -c, 'exit 3']}}]\n"
    );
    let id = s.create("doomed", &spec, &[]).1.trim().to_string();
    s.wait_group(&id, "Failed", |g| g.status.phase == GroupPhase::Failed)
        .await;
    let start = std::time::Instant::now();
    while s.client.get_group(&id).await.is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the failed group outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, events, err) = s.cli(&["events", "doomed"]);
    assert!(ok, "{err}");
    assert!(
        events.contains("exit code 3") && events.contains("Expired"),
        "{events}"
    );
    assert!(s.runc_ids().is_empty() && s.mounts().is_empty());

    // qci restart: every container stops, the init container runs again, then the work one.
    let spec = format!(
        "name: again\ntermination_grace_period_seconds: 1\ninit_containers: [{{name: i, image: '{image}', command: [echo, init]}}]\ncontainers: [{{name: w, image: '{image}', command: [sleep, '600']}}]\n"
    );
    let (ok, out, err) = s.create("again", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let pid = first(&s.client.get_group(&id).await.unwrap()).pid;
    let (ok, _, err) = s.cli(&["restart", "again"]);
    assert!(ok, "{err}");
    let g = s
        .wait_group(&id, "Running again", |g| {
            g.status.observed_restart_generation == 1
                && g.status.phase == GroupPhase::Running
                && first(g).pid.is_some_and(|p| Some(p) != pid)
        })
        .await;
    assert_eq!(g.status.init_containers[0].exit_code, Some(0));
    // It ran again: its output now, and its first run's with --previous.
    assert_eq!(s.logs(&id, "i").await, "init\n");
    let (_, previous, _) = s.cli(&["logs", "again", "-c", "i", "--previous"]);
    assert_eq!(previous, "init\n");
    let (_, events, _) = s.cli(&["events", "again"]);
    assert!(events.contains("restart requested"), "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_restart_the_dead_and_mark_the_unready() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &FAST).await;
    let spec = format!(
        r#"name: probed
termination_grace_period_seconds: 1
containers:
  - name: web
    image: '{image}'
    command: [httpd, -f, -p, '8080', -h, /]
    readiness_probe: {{http_get: {{path: /index.html, port: 8080}}, period_seconds: 1}}
    liveness_probe: {{tcp_socket: {{port: 8080}}, period_seconds: 1}}
  - name: mortal
    image: '{image}'
    command: [sh, -c, 'touch /tmp/alive; sleep 3; rm /tmp/alive; sleep 600']
    liveness_probe: {{exec: {{command: [test, -e, /tmp/alive]}}, period_seconds: 1, failure_threshold: 2}}
"#
    );
    let (ok, out, err) = s.create("probed", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    // The web container becomes ready; the mortal one fails its liveness probe and is restarted.
    let g = s
        .wait_group(&id, "a liveness restart", |g| {
            g.status.containers[1].restart_count >= 1
        })
        .await;
    assert_eq!(
        g.status.containers[0].restart_count, 0,
        "the healthy container was restarted"
    );
    let g = s
        .wait_group(&id, "web ready", |g| {
            g.status.containers[0].ready == Some(true)
        })
        .await;
    assert_eq!(g.status.containers[0].ready, Some(true));
    let (_, events, _) = s.cli(&["events", "probed"]);
    assert!(
        events.contains("Unhealthy") && events.contains("Liveness probe failed"),
        "{events}"
    );
    assert!(
        events.contains("Killing") && events.contains("liveness probe"),
        "{events}"
    );

    // A readiness probe that fails makes the group unhealthy without a restart.
    let spec = format!(
        "name: unready\ncontainers:\n  - name: c\n    image: '{image}'\n    command: [sleep, '600']\n    readiness_probe: {{tcp_socket: {{port: 9999}}, period_seconds: 1, failure_threshold: 1}}\n"
    );
    let id = s.create("unready", &spec, &[]).1.trim().to_string();
    let g = s
        .wait_group(&id, "unhealthy", |g| {
            g.status.health == qci_spec::Health::Unhealthy
        })
        .await;
    assert_eq!(g.status.phase, GroupPhase::Running);
    assert_eq!(g.status.containers[0].ready, Some(false));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g = s.client.get_group(&id).await.unwrap();
    assert_eq!(g.status.containers[0].restart_count, 0);
    let (_, out, _) = s.cli(&["get", "unready"]);
    assert!(out.contains("Health:    unhealthy"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_are_sized_to_a_supported_spec_and_metered_while_they_run() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let table = qci_testkit::test_root().join(format!("specs-{}.yaml", std::process::id()));
    std::fs::write(
        &table,
        "specs:\n  - {cpu: 0.25, memory_gib: [0.5, 1]}\n  - {cpu: 0.5, memory_gib: [1, 2]}\n  - {cpu: 1, memory_gib: [2, 4]}\nprices: {core_hour: 3.6, gib_hour: 0.36}\n",
    )
    .unwrap();
    let s = Server::start_with(Path::new(QCI), &["--spec-table", table.to_str().unwrap()]).await;
    let spec = format!(
        "name: sized\ntermination_grace_period_seconds: 1\ncontainers:\n  - {{name: a, image: '{image}', cpu: 0.2, memory: 500Mi, command: [sleep, '600']}}\n  - {{name: b, image: '{image}', cpu: 100m, memory: 200Mi, command: [sleep, '600']}}\n"
    );
    let (ok, out, err) = s.create("sized", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let g = s.client.get_group(&id).await.unwrap();
    let r = &g.resources;
    assert!(
        (r.requested_cpu - 0.3).abs() < 1e-9 && r.requested_memory_bytes == 700 << 20,
        "{r:?}"
    );
    assert_eq!((r.cpu, r.memory_bytes), (0.5, 1 << 30), "{r:?}");
    assert!((r.price_per_hour.unwrap() - 2.16).abs() < 1e-9, "{r:?}");
    let (_, out, _) = s.cli(&["get", "sized"]);
    assert!(
        out.contains("Size:      0.5 cores, 1.00 GiB (asked 0.3 cores, 0.68 GiB)"),
        "{out}"
    );

    // Above the largest spec: refused, naming it.
    let big = format!("name: big\ncontainers: [{{name: a, image: '{image}', cpu: 2}}]\n");
    let (ok, _, err) = s.create("big", &big, &[]);
    assert!(
        !ok && err.contains("largest supported spec (1 cores, 4 GiB)"),
        "{err}"
    );

    // A group that ends quickly stops being metered; the running one goes on.
    let done = format!(
        "name: done\nrestart_policy: Never\ncontainers: [{{name: a, image: '{image}', command: ['true']}}]\n"
    );
    let done_id = s.create("done", &done, &[]).1.trim().to_string();
    s.wait_group(&done_id, "Succeeded", |g| {
        g.status.phase == GroupPhase::Succeeded
    })
    .await;
    let usage = |items: &[qci_spec::Usage], id: &str| {
        items
            .iter()
            .find(|u| u.group_id == id)
            .map(|u| u.core_seconds)
            .unwrap_or(0.0)
    };
    let first = s.client.usage(None, None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = s.client.usage(None, None).await.unwrap();
    let grew = usage(&second, &id) - usage(&first, &id);
    assert!(
        grew >= 0.5 * 2.0,
        "the running group's core-seconds grew by {grew}"
    );
    assert_eq!(
        usage(&second, &done_id),
        usage(&first, &done_id),
        "a Succeeded group is still metered"
    );
    let cost = second
        .iter()
        .find(|u| u.group_id == id)
        .and_then(|u| u.cost)
        .unwrap();
    assert!(cost > 0.0);
    let (ok, out, _) = s.cli(&["usage"]);
    assert!(ok && out.contains("sized") && out.contains(&id), "{out}");
    std::fs::remove_file(&table).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn online_update_recreates_only_what_changed_and_never_breaks_what_runs() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &FAST).await;
    let spec = |env: &str, image_b: &str| {
        format!(
            "name: upd\ntermination_grace_period_seconds: 1\ncontainers:\n  - {{name: a, image: '{image}', command: [sh, -c, 'echo A=$A; sleep 600'], env: [{{name: A, value: '{env}'}}]}}\n  - {{name: b, image: '{image_b}', command: [sleep, '600']}}\n"
        )
    };
    let (ok, out, err) = s.create("upd", &spec("one", &image), &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let g = s.client.get_group(&id).await.unwrap();
    let (pid_a, pid_b) = (
        g.status.containers[0].pid.unwrap(),
        g.status.containers[1].pid.unwrap(),
    );

    // Change a's env: a is recreated, b keeps its PID.
    let file = s.data_dir.join("upd.yaml");
    std::fs::write(&file, spec("two", &image)).unwrap();
    let (ok, _, err) = s.cli(&["update", "upd", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let g = s
        .wait_group(&id, "a recreated", |g| {
            g.status.phase == GroupPhase::Running
                && g.status.containers[0].pid.is_some_and(|p| p != pid_a)
        })
        .await;
    assert_eq!(
        g.status.containers[1].pid,
        Some(pid_b),
        "the unchanged container was touched"
    );
    let start = std::time::Instant::now();
    while !s.logs(&id, "a").await.contains("A=two") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a does not run the new spec"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, events, _) = s.cli(&["events", "upd"]);
    assert!(
        events.contains("recreating it with its new spec"),
        "{events}"
    );

    // An update whose image cannot be pulled leaves the old container running, and says why.
    let pid_a = g.status.containers[0].pid.unwrap();
    std::fs::write(&file, spec("two", &format!("{}/no/such:1", reg.host()))).unwrap();
    let (ok, _, err) = s.cli(&["update", "upd", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let g = s
        .wait_group(&id, "a blocked update", |g| {
            g.status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("the update waits"))
        })
        .await;
    assert_eq!(g.status.phase, GroupPhase::Updating);
    assert!(
        g.status
            .message
            .as_deref()
            .unwrap()
            .contains("manifest unknown"),
        "{:?}",
        g.status.message
    );
    assert_eq!(
        g.status.containers[1].pid,
        Some(pid_b),
        "b was stopped before its new image was here"
    );
    assert_eq!(g.status.containers[0].pid, Some(pid_a));
    let (_, events, _) = s.cli(&["events", "upd"]);
    assert!(
        events.contains("UpdateFailed") && events.contains("old container keeps running"),
        "{events}"
    );

    // The name cannot change.
    std::fs::write(
        &file,
        spec("two", &image).replace("name: upd", "name: other"),
    )
    .unwrap();
    let (ok, _, err) = s.cli(&["update", "upd", "-f", file.to_str().unwrap()]);
    assert!(!ok && err.contains("name: cannot change"), "{err}");
}

/// A group on `runtime: gvisor`, through the API: its init container runs first; its two
/// containers share localhost (and an empty dir) in one sandbox on gVisor's kernel; an exec
/// liveness probe (run through runsc) restarts the one that dies; a terminal in it works;
/// deleting it leaves no runsc process or state, mount or cgroup.
#[tokio::test(flavor = "multi_thread")]
async fn a_gvisor_group_runs_restarts_and_goes() {
    qci_testkit::require(&[("runsc", "runsc")]);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &FAST).await;
    let spec = format!(
        r#"name: sandboxed
runtime: gvisor
termination_grace_period_seconds: 1
volumes: [{{name: work, empty_dir: {{}}}}]
init_containers:
  - name: setup
    image: '{image}'
    command: [sh, -c, 'echo made-by-init > /work/note']
    volume_mounts: [{{name: work, mount_path: /work}}]
containers:
  - name: server
    image: '{image}'
    command: [sh, -c, 'cat /work/note; while true; do echo hello-over-localhost | nc -l -p 7000; done']
    volume_mounts: [{{name: work, mount_path: /work}}]
    readiness_probe: {{tcp_socket: {{port: 7000}}, period_seconds: 1}}
  - name: client
    image: '{image}'
    command: [sh, -c, 'touch /tmp/alive; dmesg | head -1; while true; do nc 127.0.0.1 7000 </dev/null; sleep 1; done']
    liveness_probe: {{exec: {{command: [test, -e, /tmp/alive]}}, period_seconds: 1, failure_threshold: 2}}
"#
    );
    let (ok, out, err) = s.create("sandboxed", &spec, &["--wait"]);
    assert!(ok, "{err}\n{}", s.log());
    let id = out.trim().to_string();
    let (ok, out, _) = s.cli(&["get", "sandboxed"]);
    assert!(ok && out.contains("Runtime:   gvisor"), "{out}");
    // Everything runs in runsc's sandbox (pause + containers), nothing on runc.
    assert!(s.runsc_ids().len() >= 3, "{:?}", s.runsc_ids());
    assert!(s.runc_ids().is_empty(), "{:?}", s.runc_ids());
    assert!(!s.runsc_processes().is_empty(), "no sandbox process seen");
    let ready = s
        .wait_group(&id, "server ready", |g| {
            g.status.containers[0].ready == Some(true)
        })
        .await;
    assert_eq!(ready.status.phase, GroupPhase::Running);
    assert!(s.logs(&id, "server").await.contains("made-by-init"));
    let client = s.logs(&id, "client").await;
    assert!(
        client.contains("Starting gVisor"),
        "not gVisor's kernel: {client}"
    );
    for _ in 0..50 {
        if s.logs(&id, "client").await.contains("hello-over-localhost") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        s.logs(&id, "client").await.contains("hello-over-localhost"),
        "the client never reached the server on localhost"
    );

    // A terminal in the client: its size, resized, and the exit code.
    let (code, text) = qci_testkit::terminal_session(
        &s.client,
        &id,
        "client",
        "stty size\n",
        "stty size; exit 7\n",
    )
    .await;
    assert_eq!(code.unwrap(), 7, "{text}");
    assert!(text.contains("24 80"), "first size: {text:?}");
    assert!(text.contains("40 120"), "resize not passed on: {text:?}");

    // The client dies (its liveness file goes): restarted, the server untouched.
    let (ok, _, err) = s.cli(&[
        "exec",
        "sandboxed",
        "-c",
        "client",
        "--",
        "rm",
        "/tmp/alive",
    ]);
    assert!(ok, "{err}");
    let g = s
        .wait_group(&id, "a liveness restart", |g| {
            g.status.containers[1].restart_count >= 1
                && g.status.containers[1].state == qci_spec::ContainerState::Running
        })
        .await;
    assert_eq!(g.status.containers[0].restart_count, 0);
    let (_, events, _) = s.cli(&["events", "sandboxed"]);
    assert!(events.contains("Liveness probe failed"), "{events}");

    // An online update of the client alone: made again in the same sandbox, the server runs on.
    let server_started = g.status.containers[0].started_at;
    let updated = spec.replace(
        "touch /tmp/alive;",
        "touch /tmp/alive; echo updated-client;",
    );
    let file = s.data_dir.join("sandboxed-v2.spec");
    std::fs::write(&file, &updated).unwrap();
    let (ok, _, err) = s.cli(&["update", "sandboxed", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    for _ in 0..100 {
        if s.logs(&id, "client").await.contains("updated-client") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s.logs(&id, "client").await.contains("updated-client"));
    let g = s.client.get_group(&id).await.unwrap();
    assert_eq!(g.status.containers[0].started_at, server_started);
    // A restart runs the init container again, then both, in the sandbox.
    let (ok, _, err) = s.cli(&["restart", "sandboxed"]);
    assert!(ok, "{err}");
    let g = s
        .wait_group(&id, "a restarted group", |g| {
            g.status.phase == GroupPhase::Running
                && g.status.containers[0].started_at > server_started
                && g.status.containers[0].ready == Some(true)
        })
        .await;
    assert_eq!(g.status.init_containers[0].exit_code, Some(0));
    assert!(s.logs(&id, "server").await.contains("made-by-init"));

    let (ok, _, err) = s.cli(&["delete", "sandboxed", "--wait"]);
    assert!(ok, "{err}");
    assert!(s.runsc_ids().is_empty(), "{:?}", s.runsc_ids());
    assert!(s.runsc_processes().is_empty(), "{:?}", s.runsc_processes());
    assert!(s.mounts().is_empty(), "mounts left: {:?}", s.mounts());
    assert!(
        s.group_cgroups(&id).is_empty(),
        "{:?}",
        s.group_cgroups(&id)
    );
}

/// A gVisor group after a host restart: its sandbox and containers died with the host, runsc's
/// state of them is still on disk; the group runs again in a new sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn a_gvisor_group_comes_back_after_a_host_restart() {
    qci_testkit::require(&[("runsc", "runsc")]);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let mut s = Server::start_with(Path::new(QCI), &FAST).await;
    let spec = format!(
        "name: gvback\nruntime: gvisor\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sh, -c, 'echo up; sleep 600']}}, {{name: d, image: '{image}', command: [sleep, '600']}}]\n"
    );
    let id = s.create("gvback", &spec, &["--wait"]).1.trim().to_string();
    assert!(!s.runsc_ids().is_empty());
    s.kill9();
    s.simulate_reboot();
    assert!(s.runsc_processes().is_empty(), "{:?}", s.runsc_processes());
    s.restart().await;
    let g = s
        .wait_group(&id, "Running again", |g| {
            g.status.phase == GroupPhase::Running
                && g.status.containers.iter().all(|c| c.restart_count == 1)
        })
        .await;
    assert!(g.status.containers.iter().all(|c| c.pid.is_some()), "{g:?}");
    let (ok, out, err) = s.cli(&["exec", "gvback", "-c", "d", "--", "dmesg"]);
    assert!(ok && out.contains("gVisor"), "{out}{err}");
    let (ok, _, err) = s.cli(&["delete", "gvback", "--wait"]);
    assert!(ok, "{err}");
    assert!(s.runsc_ids().is_empty(), "{:?}", s.runsc_ids());
    assert!(s.runsc_processes().is_empty(), "{:?}", s.runsc_processes());
}
