//! End-to-end: a real registry, a real image, `qci serve`, runc, the CLI.

use std::time::{Duration, Instant};

use qci_spec::{ContainerState, GroupPhase};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

fn example_spec(image: &str) -> String {
    format!(
        r#"name: web
restart_policy: Always
termination_grace_period_seconds: 3
init_containers:
  - name: setup
    image: {image}
    command: ["sh", "-c", "echo init done"]
containers:
  - name: server
    image: {image}
    command: ["httpd", "-f", "-p", "8080"]
    working_dir: /
    env: [{{name: ROLE, value: server}}]
    ports: [{{port: 8080, protocol: TCP}}]
    cpu: 0.5
    memory: 256Mi
  - name: client
    image: {image}
    command: ["sh", "-c", "until wget -qO- http://127.0.0.1:8080/; do sleep 0.2; done; echo $GREETING; sleep 3600"]
    env: [{{name: GREETING, value: hello}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn example_group_runs_survives_a_crash_and_is_deleted_without_leftovers() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "busybox", "latest").await;
    let mut s = Server::start(std::path::Path::new(QCI)).await;
    // Create through the CLI, as a user would.
    let (ok, out, err) = s.create("web", &example_spec(&image), &["--wait"]);
    assert!(ok, "qci create failed: {err}\n{}", s.log());
    let id = out.trim().to_string();
    assert!(
        id.starts_with("cg-") && !id.contains('\n'),
        "create printed {out:?}"
    );

    let g = s
        .wait_group(&id, "client logs", |g| {
            g.status.phase == GroupPhase::Running
        })
        .await;
    assert_eq!(
        g.status.init_containers[0].state,
        ContainerState::Terminated
    );
    assert_eq!(g.status.init_containers[0].exit_code, Some(0));
    assert_eq!(
        g.status.init_containers[0].reason.as_deref(),
        Some("Completed")
    );
    let start = Instant::now();
    let client_log = loop {
        let l = s.logs(&id, "client").await;
        if l.contains("hello") || start.elapsed() > Duration::from_secs(20) {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        client_log.contains(qci_testkit::image::INDEX_HTML.trim()),
        "client log: {client_log:?}"
    );
    assert!(client_log.contains("hello"), "client log: {client_log:?}");
    assert_eq!(s.logs(&id, "setup").await, "init done\n");

    // The CLI's views.
    let (ok, out, _) = s.cli(&["logs", "web", "-c", "client", "--tail", "1"]);
    assert!(ok && out == "hello\n", "qci logs --tail 1 printed {out:?}");
    let (ok, out, _) = s.cli(&["get", "web"]);
    assert!(
        ok && out.contains("Running") && out.contains("server"),
        "qci get printed {out}"
    );
    let (ok, out, _) = s.cli(&["get", &id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("get -o json is JSON");
    assert!(
        ok && v["status"]["phase"] == "Running" && v["spec"]["name"] == "web",
        "{out}"
    );
    let (ok, out, _) = s.cli(&["ls"]);
    assert!(
        ok && out.contains(&id) && out.contains("2/2") && out.contains("172.30.0."),
        "qci ls printed {out}"
    );
    let (ok, out, _) = s.cli(&["events", "web"]);
    for reason in ["Pulling", "Pulled", "Started", "Exited"] {
        assert!(ok && out.contains(reason), "events lack {reason}:\n{out}");
    }

    // The containers share the network namespace, have their own PID namespaces, the group's
    // hostname, and the cgroup limits of the spec.
    let pids: Vec<u32> = g
        .status
        .containers
        .iter()
        .map(|c| c.pid.expect("running container has a pid"))
        .collect();
    let ns = |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    assert_eq!(ns(pids[0], "net"), ns(pids[1], "net"));
    assert_eq!(ns(pids[0], "ipc"), ns(pids[1], "ipc"));
    assert_ne!(ns(pids[0], "pid"), ns(pids[1], "pid"));
    assert_ne!(
        ns(pids[0], "net"),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
    let environ = |pid: u32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
            .replace('\0', "\n")
    };
    assert!(
        environ(pids[0]).lines().any(|l| l == "ROLE=server"),
        "server env: {}",
        environ(pids[0])
    );
    assert!(
        !environ(pids[1]).contains("ROLE="),
        "env leaked between containers"
    );
    assert!(environ(pids[1]).lines().any(|l| l == "HOSTNAME=web"));
    let hostname = std::process::Command::new("nsenter")
        .args(["-t", &pids[0].to_string(), "-u", "hostname"])
        .output()
        .expect("nsenter");
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "web");
    let cgroups = s.group_cgroups(&id);
    assert!(!cgroups.is_empty(), "no cgroup for the group");
    let mem_limit = cgroups
        .iter()
        .find_map(|c| {
            std::fs::read_to_string(c.join("server/memory.limit_in_bytes"))
                .or_else(|_| std::fs::read_to_string(c.join("server/memory.max")))
                .ok()
        })
        .expect("memory limit file");
    assert_eq!(mem_limit.trim(), (256u64 << 20).to_string());

    // SIGKILL qci serve and start it again: same containers, same PIDs, adopted.
    s.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for pid in &pids {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "container pid {pid} died with qci serve"
        );
    }
    s.restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let g2 = s
        .wait_group(&id, "Running after restart", |g| {
            g.status.phase == GroupPhase::Running
        })
        .await;
    let pids2: Vec<u32> = g2
        .status
        .containers
        .iter()
        .map(|c| c.pid.unwrap_or(0))
        .collect();
    assert_eq!(pids, pids2, "containers were restarted instead of adopted");
    assert!(g2.status.containers.iter().all(|c| c.restart_count == 0));

    // Delete: nothing of the group is left.
    let runc_before = s.runc_ids();
    assert_eq!(runc_before.len(), 3, "runc containers: {runc_before:?}");
    let (ok, _, err) = s.cli(&["delete", "web", "--wait"]);
    assert!(ok, "qci delete failed: {err}\n{}", s.log());
    assert!(s.client.get_group(&id).await.unwrap_err().is_not_found());
    assert!(
        s.runc_ids().is_empty(),
        "runc still knows {:?}",
        s.runc_ids()
    );
    assert!(s.mounts().is_empty(), "mounts left: {:?}", s.mounts());
    assert!(
        s.group_cgroups(&id).is_empty(),
        "cgroups left: {:?}",
        s.group_cgroups(&id)
    );
    assert!(!s.layout.sandbox_dir(&id).exists(), "namespace dir left");
    for pid in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} left"
        );
    }
    let containers_dir = s.data_dir.join("containers");
    assert_eq!(
        std::fs::read_dir(&containers_dir).unwrap().count(),
        0,
        "bundles left in {}",
        containers_dir.display()
    );
    let (ok, _, err) = s.cli(&["delete", "web"]);
    assert!(
        !ok && err.contains("not found"),
        "deleting an unknown group: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_cut_short_by_a_crash_is_finished_after_restart() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "busybox", "2").await;
    let mut s = Server::start(std::path::Path::new(QCI)).await;
    // `sleep` as PID 1 ignores SIGTERM, so the delete waits out the grace period.
    let spec = format!(
        "name: stubborn\ntermination_grace_period_seconds: 3\ncontainers:\n  - {{name: a, image: '{image}', command: [sleep, '3600']}}\n  - {{name: b, image: '{image}', command: [sleep, '3600']}}\n"
    );
    let (ok, out, err) = s.create("stubborn", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let g = s.client.delete_group(&id).await.unwrap();
    assert_eq!(g.status.phase, GroupPhase::Deleting);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.kill9();
    // Still there, still marked for deletion, containers still running.
    assert_eq!(s.runc_ids().len(), 2);
    s.restart().await;
    let g = s.client.get_group(&id).await.unwrap();
    assert_eq!(g.status.phase, GroupPhase::Deleting);
    let start = Instant::now();
    while s.client.get_group(&id).await.is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "delete not finished after restart:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(s.runc_ids().is_empty(), "{:?}", s.runc_ids());
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert!(s.group_cgroups(&id).is_empty());
    assert!(!s.layout.sandbox_dir(&id).exists());
    assert!(!s.layout.group_log_dir(&id).exists());
}

/// `qci run` as Docker users type it: the output, the exit code, `--rm`, `-d`, and the
/// codes of a container that never ran.
#[tokio::test(flavor = "multi_thread")]
async fn qci_run_behaves_like_docker_run() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(std::path::Path::new(QCI)).await;
    let run = |args: &[&str]| {
        let out = s.command().arg("run").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Foreground with --rm: the output, the container's exit code, and no group left.
    let (code, out, err) = run(&[
        "--rm",
        "-e",
        "WHO=qci",
        &image,
        "sh",
        "-c",
        "echo hello $WHO; echo oops >&2; exit 3",
    ]);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!((out.as_str(), err.as_str()), ("hello qci\n", "oops\n"));
    assert!(s.client.list_groups().await.unwrap().is_empty());

    // Without --rm the group stays, terminated, under the name given.
    let (code, out, err) = run(&["--name", "once", &image, "echo", "done"]);
    assert_eq!((code, out.as_str()), (Some(0), "done\n"), "{err}");
    let g = s.client.get_group("once").await.unwrap();
    assert_eq!(g.status.containers[0].state, ContainerState::Terminated);
    // (It reads the log a stream at a time; another stream is refused with the field's name.)
    let bad = qci_client::LogOptions {
        stream: Some("stdin".into()),
        ..Default::default()
    };
    let e = s.client.logs("once", &bad).await.unwrap_err().to_string();
    assert!(
        e.contains("stream") && e.contains("stdout or stderr"),
        "{e}"
    );
    assert_eq!(g.status.containers[0].exit_code, Some(0));

    // Detached: the id at once, the group running with what the flags said.
    let (code, out, err) = run(&[
        "-d", "--name", "bg", "--cpu", "0.5", "-m", "128Mi", "-p", "8080", &image, "sleep", "600",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let id = out.trim().to_string();
    assert!(id.starts_with("cg-"), "{out}");
    let g = s
        .wait_group(&id, "Running", |g| g.status.phase == GroupPhase::Running)
        .await;
    let c = &g.spec.containers[0];
    assert_eq!(
        c.args.as_deref(),
        Some(&["sleep".to_string(), "600".to_string()][..])
    );
    assert_eq!(c.ports[0].port, 8080);
    assert!(c.cpu.is_some() && c.memory.is_some());
    assert_eq!(g.spec.restart_policy, qci_spec::RestartPolicy::Never);

    // A command that is not there, an image that is not there, a bad flag.
    let (code, _, err) = run(&["--rm", &image, "nosuchcmd"]);
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("nosuchcmd"), "{err}");
    let (code, _, err) = run(&["--rm", &format!("{}/nothing:here", reg.host())]);
    assert_eq!(code, Some(125), "{err}");
    let (code, _, err) = run(&["-p", "8080:80", &image]);
    assert_eq!(code, Some(1));
    assert!(err.contains("-p 8080:80"), "{err}");
    let names: Vec<String> = s
        .client
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(
        names,
        ["once", "bg"],
        "--rm left a group, or a refused run made one"
    );

    // Lists for scripts and for wider screens; a watch that shows what changes.
    let (ok, out, _) = s.cli(&["ls", "-o", "name"]);
    assert!(ok);
    assert_eq!(out, "once\nbg\n");
    let (ok, out, _) = s.cli(&["ls", "-o", "wide"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("NETWORK") && lines[0].contains("IMAGES"),
        "{out}"
    );
    assert!(
        lines[2].contains("basic") && lines[2].contains(&image),
        "{out}"
    );
    let (ok, out, _) = s.cli(&["image", "ls", "-o", "name"]);
    assert!(ok && out.lines().any(|l| l == image), "{out}");
    let mut watch = s
        .command()
        .args(["ls", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("the watch showed no {what}"))
    };
    assert!(next("header").starts_with("ID"));
    next("row");
    next("row");
    let (ok, _, err) = s.cli(&["delete", "once", "--wait"]);
    assert!(ok, "{err}");
    let mut said = String::new();
    while !(said.contains("once") && said.contains("Deleted")) {
        said = next("line for the deleted group");
    }
    let _ = watch.kill();
    let _ = watch.wait();
}
