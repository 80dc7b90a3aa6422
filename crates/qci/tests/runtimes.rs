//! End-to-end: the runtime a group runs on. Groups name `runtime: runc | gvisor` or get the
//! server's `--default-runtime`; the operator's `--allowed-runtime` and what this qci and
//! machine can run are enforced, each refusal naming `runtime` with the reason; a group keeps
//! its runtime for life; `qci get` shows it.

use std::path::Path;

use qci_testkit::Server;

const QCI: &str = env!("CARGO_BIN_EXE_qci");

/// Whatever a failed runtime-level test left: processes naming its data dir (runsc's sandbox
/// and gofers, monitors) killed, mounts under it detached, its cgroups removed. A passing test
/// has removed all of it itself (and asserts so); this keeps a failing one from leaving
/// sandboxes running for the tests after it.
struct Leftovers(qci_runtime::Layout);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let dir = self.0.data_dir.to_string_lossy().into_owned();
        for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read(p.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir))
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if m.starts_with(&dir) {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for root in qci_runtime::cgroup::cgroup_dirs(&self.0.cgroup_parent) {
            let mut dirs: Vec<_> = walk(&root);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// A runtime on a data dir of its own, for gVisor tests (which need runsc), with the guard
/// that cleans up after a failure (dropped before the data dir: declared after it).
fn gvisor_runtime() -> (
    tempfile::TempDir,
    qci_runtime::Layout,
    Leftovers,
    qci_runtime::Runtime,
) {
    qci_testkit::require(&[("runc", "runc"), ("runsc", "runsc")]);
    let data = tempfile::Builder::new()
        .prefix("qci-gvisor-")
        .tempdir_in(qci_testkit::test_root())
        .expect("a data dir");
    let layout = qci_runtime::Layout::new(data.path()).expect("layout");
    let leftovers = Leftovers(layout.clone());
    let rt =
        qci_runtime::Runtime::new(layout.clone(), Path::new(QCI).to_path_buf()).expect("runtime");
    (data, layout, leftovers, rt)
}

/// One layer for gVisor tests: busybox and its applets.
fn busybox_layer(dir: &Path) -> std::path::PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", layer.join("bin/busybox"))
        .expect("/bin/busybox (apt-get install busybox-static)");
    for applet in [
        "sh", "echo", "cat", "sleep", "nc", "dmesg", "true", "ps", "head", "tail",
    ] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    for d in ["etc", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    layer
}

/// A container of `group`'s gVisor sandbox running `sh -c script` on `layer`.
fn start_request(group: &str, name: &str, layer: &Path, script: &str) -> qci_runtime::StartRequest {
    qci_runtime::StartRequest {
        group_id: group.into(),
        name: name.into(),
        layers: vec![layer.to_path_buf()],
        config: qci_runtime::ContainerConfig {
            tty: false,
            stdin: false,
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: None,
            hostname: "gv".into(),
            cpu_millis: None,
            memory_bytes: None,
            pids_limit: None,
            shared_shm: false,
            max_log_size: 10 << 20,
            mounts: vec![],
            security: Default::default(),
        },
        fingerprint: "test".into(),
        volume_mounts: vec![],
        gvisor: true,
    }
}

/// The container's exit, once its monitor recorded it (30 s at most).
async fn exited(rt: &qci_runtime::Runtime, group: &str, name: &str) -> qci_runtime::ExitRecord {
    let t = std::time::Instant::now();
    loop {
        if let qci_runtime::Observed::Exited(e) = rt.observe(group, name).await {
            return e;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{name} did not end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

fn spec(name: &str, runtime: Option<&str>) -> String {
    let runtime = runtime
        .map(|r| format!("runtime: {r}\n"))
        .unwrap_or_default();
    format!(
        "name: {name}\nrestart_policy: Never\n{runtime}containers: [{{name: c, image: '127.0.0.1:9/none:1', image_pull_policy: Never}}]\n"
    )
}

fn field_error(e: qci_client::ClientError) -> String {
    match e {
        qci_client::ClientError::Api {
            status: 400,
            fields,
            ..
        } => {
            assert_eq!(fields.len(), 1, "{fields:?}");
            assert_eq!(fields[0].field, "runtime");
            fields[0].message.clone()
        }
        other => panic!("expected a 400 naming runtime, got {other}"),
    }
}

#[tokio::test]
async fn the_runtime_is_chosen_checked_and_kept() {
    let s = Server::start_with(Path::new(QCI), &["--allowed-runtime", "runc"]).await;
    // No runtime named: the server's default, written into the group.
    let g = s
        .client
        .create_group(&spec("plain", None))
        .await
        .expect("create");
    assert_eq!(g.spec.runtime, Some(qci_spec::ContainerRuntime::Runc));
    let (ok, out, err) = s.cli(&["get", "plain"]);
    assert!(ok, "{err}");
    assert!(out.contains("Runtime:   runc"), "{out}");
    // A runtime the operator does not allow is refused with the reason, nothing made.
    let e = s
        .client
        .create_group(&spec("sandboxed", Some("gvisor")))
        .await
        .expect_err("gvisor accepted");
    let why = field_error(e);
    assert!(
        why == "gvisor is not allowed on this server (it allows runc)",
        "{why}"
    );
    assert!(s.client.get_group("sandboxed").await.is_err());
    // An unknown runtime is the spec's error.
    let e = s
        .client
        .create_group(&spec("odd", Some("kata")))
        .await
        .expect_err("kata accepted");
    assert!(e.to_string().contains("runtime"), "{e}");
    // A group keeps its runtime: naming another is refused; naming none keeps it.
    let e = s
        .client
        .update_group("plain", &spec("plain", Some("gvisor")))
        .await
        .expect_err("runtime changed");
    assert_eq!(
        field_error(e),
        "cannot change (it is runc); create a new group instead"
    );
    let g = s
        .client
        .update_group("plain", &spec("plain", None))
        .await
        .expect("update without a runtime");
    assert_eq!(g.spec.runtime, Some(qci_spec::ContainerRuntime::Runc));
}

/// The operator's choice: a default the server cannot honour stops it at start, with why.
#[test]
fn a_default_runtime_that_cannot_be_used_stops_the_server() {
    qci_testkit::require(&[("runc", "runc")]);
    let dir = tempfile::Builder::new()
        .prefix("qci-runtimes-")
        .tempdir_in(qci_testkit::test_root())
        .expect("a data dir");
    let port = qci_testkit::free_port().to_string();
    for (flags, want) in [
        (
            &["--allowed-runtime", "gvisor"][..],
            "--default-runtime runc: runc is not allowed on this server (it allows gvisor)",
        ),
        (
            &["--default-runtime", "gvisor"][..],
            "--default-runtime gvisor: gvisor is not available on this server: \
             /nonexistent/runsc is not installed (apt-get install runsc)",
        ),
        (
            &["--default-runtime", "kata"][..],
            "\"kata\" is not a runtime: runc or gvisor",
        ),
    ] {
        let out = std::process::Command::new(QCI)
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(flags)
            // (As on a machine without gVisor.)
            .env("QCI_RUNSC", "/nonexistent/runsc")
            .output()
            .expect("running qci serve");
        assert!(!out.status.success(), "{flags:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{flags:?}: {err}");
    }
}

/// A group's gVisor sandbox, made and removed through the runtime: the pause process runs in
/// the group's network namespace and cgroup, a second `ensure` leaves it as it is, and
/// removing it leaves no process, runsc state or bundle.
#[tokio::test]
async fn a_gvisor_sandbox_is_made_in_the_group_and_removed() {
    let (_data, layout, _leftovers, rt) = gvisor_runtime();
    let group: &str = &format!("cg-gvtest{}", std::process::id());
    rt.ensure_sandbox(group, "gv", None)
        .await
        .expect("the group's namespaces");
    rt.ensure_gvisor_sandbox(group).await.expect("the sandbox");
    let pid_of = || {
        std::fs::read_to_string(layout.gvisor_dir(group).join("pid"))
            .expect("the sandbox's pid file")
            .trim()
            .parse::<u32>()
            .expect("a pid")
    };
    let pid = pid_of();
    let ino = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).expect("a namespace file").ino()
    };
    assert_eq!(
        ino(Path::new(&format!("/proc/{pid}/ns/net"))),
        ino(&layout.sandbox_dir(group).join("net")),
        "the sandbox is not in the group's network namespace"
    );
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups.contains(&layout.group_cgroup(group)),
        "the sandbox is not in the group's cgroup: {cgroups}"
    );
    rt.ensure_gvisor_sandbox(group)
        .await
        .expect("the sandbox again");
    assert_eq!(pid_of(), pid, "a running sandbox was made again");
    rt.remove_gvisor_sandbox(group)
        .await
        .expect("removing the sandbox");
    let start = std::time::Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the sandbox outlived its removal"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!layout.gvisor_dir(group).exists());
    let left: Vec<_> = std::fs::read_dir(&layout.runsc_root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runsc state left: {left:?}");
    rt.remove_group(group)
        .await
        .expect("removing the group's namespaces and cgroup");
    let cgroups = qci_runtime::cgroup::cgroup_dirs(&layout.group_cgroup(group));
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    rt.remove_everything().await.expect("removing the rest");
    assert!(qci_runtime::cgroup::cgroup_dirs(&layout.cgroup_parent).is_empty());
}

/// Containers joining a group's gVisor sandbox through their monitors: two share localhost,
/// run on gVisor's kernel, write their logs, end with their own exit codes; one is stopped
/// with SIGTERM; everything goes when the sandbox is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_join_a_gvisor_sandbox_through_their_monitors() {
    let (data, layout, _leftovers, rt) = gvisor_runtime();
    let layer = busybox_layer(data.path());
    // (A name of this run's: runsc names a sandbox's control socket after its id.)
    let group: &'static str =
        Box::leak(format!("cg-gvjoin{}", std::process::id()).into_boxed_str());
    rt.ensure_sandbox(group, "gv", None)
        .await
        .expect("the group's namespaces");
    rt.ensure_gvisor_sandbox(group).await.expect("the sandbox");
    let start = |name: &str, script: &str| start_request(group, name, &layer, script);
    let wait_exit = |name: &'static str| exited(&rt, group, name);
    // A server on localhost, and a client in the other container that reaches it.
    rt.start(&start(
        "server",
        "echo hello-over-localhost | nc -l -p 7000; sleep 300",
    ))
    .await
    .expect("the server starts");
    rt.start(&start(
        "client",
        "sleep 1; nc 127.0.0.1 7000 </dev/null; dmesg | head -1; exit 3",
    ))
    .await
    .expect("the client starts");
    let client = wait_exit("client").await;
    assert_eq!(client.exit_code, 3, "{client:?}");
    let log = std::fs::read_to_string(layout.log_path(group, "client")).expect("the client's log");
    assert!(log.contains("hello-over-localhost"), "{log}");
    assert!(log.contains("gVisor"), "dmesg is not gVisor's: {log}");
    // Commands in a running container of the sandbox: output and exit code; a command
    // killed (its client gone) does not stay in the sandbox.
    let exec = |argv: &[&str]| {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        rt.exec(group, "server", &argv, None).expect("exec")
    };
    let run = |argv: &'static [&'static str]| {
        let mut p = exec(argv);
        async move {
            use tokio::io::AsyncReadExt;
            let mut out = String::new();
            if let Some(qci_runtime::ExecIo::Pipes { mut stdout, .. }) = p.io.take() {
                stdout.read_to_string(&mut out).await.expect("the output");
            }
            (p.wait().await, out)
        }
    };
    let (exit, out) = run(&["sh", "-c", "echo hi-from-exec; exit 4"]).await;
    assert_eq!((exit.code, out.trim()), (4, "hi-from-exec"), "{exit:?}");
    let sleeper = exec(&["sleep", "301"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, ps) = run(&["ps", "-o", "args"]).await;
    assert!(ps.contains("sleep 301"), "{ps}");
    sleeper.kill().await;
    let (_, ps) = run(&["ps", "-o", "args"]).await;
    assert!(
        !ps.contains("sleep 301"),
        "a killed command runs on in the sandbox: {ps}"
    );
    // A terminal: the command sees one of the size asked for, and its exit code comes back.
    let mut term = rt
        .exec(
            group,
            "server",
            &[
                "sh".into(),
                "-c".into(),
                "[ -t 0 ] && stty size; exit 5".into(),
            ],
            Some((24, 80)),
        )
        .expect("a terminal in gVisor");
    let Some(qci_runtime::ExecIo::Tty { mut reader, .. }) = term.io.take() else {
        panic!("no terminal")
    };
    let mut seen = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        // (The master reads EIO once the command and runsc have closed the slave.)
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(std::time::Duration::from_secs(10), reader.read(&mut buf)).await
        {
            seen.extend_from_slice(&buf[..n]);
        }
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("24 80"), "no terminal of 24x80: {seen:?}");
    assert_eq!(term.wait().await.code, 5);

    // Its use, as runsc counts it in the sandbox (and the group's network counters).
    let sandbox_pid = std::fs::read_to_string(layout.gvisor_dir(group).join("pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let stats = rt
        .stats(group, "server", sandbox_pid)
        .expect("the server's use");
    assert!(
        stats.memory_bytes > 0 && stats.pids >= 1 && stats.cpu_ns > 0,
        "{stats:?}"
    );

    // SIGTERM through runsc; the shell ends with 128 + 15.
    rt.stop(group, "server", std::time::Duration::from_secs(5))
        .await
        .expect("stopping the server");
    let server = wait_exit("server").await;
    assert!(
        server.exit_code == 143 || server.exit_code == 137,
        "{server:?}"
    );
    for name in ["server", "client"] {
        rt.remove_container(group, name)
            .await
            .expect("removing a container");
    }
    rt.remove_gvisor_sandbox(group)
        .await
        .expect("removing the sandbox");
    rt.remove_group(group).await.expect("removing the group");
    let left: Vec<_> = std::fs::read_dir(&layout.runsc_root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runsc state left: {left:?}");
    rt.remove_everything().await.expect("removing the rest");
    let runsc_left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|d| {
            std::fs::read(d.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(group))
        })
        .count();
    assert_eq!(runsc_left, 0, "processes of the group left");
}

/// Past its group's memory, a gVisor sandbox is killed whole by the host's OOM killer: its
/// container's exit says OOMKilled (137), read from the group's cgroup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_past_its_memory_is_oom_killed() {
    let (data, layout, _leftovers, rt) = gvisor_runtime();
    let layer = busybox_layer(data.path());
    let group: &str = &format!("cg-gvoom{}", std::process::id());
    rt.ensure_sandbox(group, "gv", None)
        .await
        .expect("the group's namespaces");
    qci_runtime::cgroup::set_group_limits(
        &layout.group_cgroup(group),
        qci_runtime::GroupLimits {
            cpu_millis: 1000,
            memory_bytes: 96 << 20,
        },
    )
    .expect("the group's size");
    rt.ensure_gvisor_sandbox(group).await.expect("the sandbox");
    rt.start(&start_request(
        group,
        "hog",
        &layer,
        "head -c 400000000 /dev/zero | tail; echo survived",
    ))
    .await
    .expect("the hog starts");
    let exit = exited(&rt, group, "hog").await;
    assert!(exit.oom_killed && exit.exit_code == 137, "{exit:?}");
    rt.remove_container(group, "hog")
        .await
        .expect("removing the hog");
    rt.remove_gvisor_sandbox(group)
        .await
        .expect("removing the sandbox");
    let left: Vec<_> = std::fs::read_dir(&layout.runsc_root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runsc state left: {left:?}");
    rt.remove_group(group).await.expect("removing the group");
    rt.remove_everything().await.expect("removing the rest");
    assert!(qci_runtime::cgroup::cgroup_dirs(&layout.cgroup_parent).is_empty());
}
