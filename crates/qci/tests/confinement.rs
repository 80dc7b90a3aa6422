//! End-to-end: containers are held like Docker's defaults (seccomp, capabilities, users,
//! read-only roots) and groups to the size they are billed for (cgroup limits).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qci_spec::{ContainerGroup, ContainerState, GroupPhase};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

/// What a container prints about itself, then it sleeps.
const SELF_REPORT: &str = "grep -E '^(Seccomp|CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs):' /proc/self/status; \
     unshare -U true 2>/dev/null && echo unshare=yes || echo unshare=no; \
     id -u; touch /probe 2>/dev/null && echo rootfs=rw || echo rootfs=ro; \
     touch /dev/shm/probe && echo shm=rw; sleep 600";

async fn running(s: &Server, id: &str) -> ContainerGroup {
    s.wait_group(id, "Running", |g| g.status.phase == GroupPhase::Running)
        .await
}

/// Waits until the container's log holds `marker`, and returns the log.
async fn log_with(s: &Server, id: &str, c: &str, marker: &str) -> String {
    let start = Instant::now();
    loop {
        let log = s.logs(id, c).await;
        if log.contains(marker) {
            return log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{c} never printed {marker:?}: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn field<'a>(log: &'a str, name: &str) -> &'a str {
    log.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim_start_matches([':', '=']).trim())
        .unwrap_or_else(|| panic!("no {name} in {log:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_are_confined_like_dockers_defaults() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let spec = format!(
        "name: held\ntermination_grace_period_seconds: 1\ncontainers:\n\
         - {{name: root, image: '{image}', command: [sh, -c, \"{SELF_REPORT}\"]}}\n\
         - {{name: user, image: '{image}', command: [sh, -c, \"{SELF_REPORT}\"], security_context: {{run_as_user: 1000, run_as_group: 1000}}}}\n\
         - {{name: locked, image: '{image}', command: [sh, -c, \"{SELF_REPORT}\"], security_context: {{read_only_root_filesystem: true, allow_privilege_escalation: false, capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}}}}}\n"
    );
    let (ok, out, err) = s.create("held", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim();
    running(&s, id).await;

    let root = log_with(&s, id, "root", "shm=").await;
    assert_eq!(field(&root, "Seccomp"), "2", "a seccomp filter: {root}");
    assert_eq!(
        field(&root, "unshare"),
        "no",
        "user namespaces refused: {root}"
    );
    assert_eq!(
        field(&root, "CapBnd"),
        "00000000a80425fb",
        "Docker's 14: {root}"
    );
    assert_eq!(field(&root, "CapEff"), "00000000a80425fb", "{root}");
    assert_eq!(field(&root, "CapInh"), "0000000000000000", "{root}");
    assert_eq!(field(&root, "CapAmb"), "0000000000000000", "{root}");
    assert_eq!(field(&root, "rootfs"), "rw");

    let user = log_with(&s, id, "user", "shm=").await;
    assert!(user.contains("\n1000\n"), "runs as 1000: {user}");
    assert_eq!(
        field(&user, "CapEff"),
        "0000000000000000",
        "not root, no capability: {user}"
    );
    assert_eq!(field(&user, "Seccomp"), "2");

    let locked = log_with(&s, id, "locked", "shm=").await;
    assert_eq!(field(&locked, "rootfs"), "ro", "read-only root: {locked}");
    assert_eq!(
        field(&locked, "shm"),
        "rw",
        "/dev/shm stays writable: {locked}"
    );
    assert_eq!(field(&locked, "NoNewPrivs"), "1");
    assert_eq!(
        field(&locked, "CapBnd"),
        "0000000000000400",
        "only NET_BIND_SERVICE: {locked}"
    );

    // A command run with `qci exec` is held the same way as the container it runs in.
    let (ok, out, err) = s.cli(&[
        "exec", "held", "-c", "user", "--", "sh", "-c",
        "grep -E '^(Seccomp|CapEff):' /proc/self/status; id -u; unshare -U true 2>/dev/null && echo unshare=yes || echo unshare=no",
    ]);
    assert!(ok, "{err}");
    assert_eq!(field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(field(&out, "unshare"), "no", "{out}");
    assert!(out.contains("\n1000\n"), "{out}");

    // What the server does not allow is refused before anything is stored, naming the field.
    let unconfined = format!(
        "name: loose\ncontainers: [{{name: a, image: '{image}', security_context: {{seccomp_profile: Unconfined, capabilities: {{add: [SYS_ADMIN]}}}}}}]\n"
    );
    let (ok, _, err) = s.create("loose", &unconfined, &[]);
    assert!(!ok);
    assert!(
        err.contains("containers[0].security_context.seccomp_profile: Unconfined is not allowed")
            && err.contains(
                "containers[0].security_context.capabilities.add[0]: SYS_ADMIN is not allowed"
            ),
        "{err}"
    );
    let (ok, _, err) = s.create(
        "priv",
        &format!("name: priv\ncontainers: [{{name: a, image: '{image}', security_context: {{privileged: true}}}}]\n"),
        &[],
    );
    assert!(
        !ok && err.contains("containers[0].security_context.privileged"),
        "{err}"
    );
    assert_eq!(s.client.list_groups().await.unwrap().len(), 1);

    // run_as_non_root with an image whose user is root: CreateContainerConfigError, and
    // create --wait says so at once.
    let started = Instant::now();
    let (ok, _, err) = s.create(
        "nonroot",
        &format!("name: nonroot\ncontainers: [{{name: a, image: '{image}', command: [sleep, '600'], security_context: {{run_as_non_root: true}}}}]\n"),
        &["--wait"],
    );
    assert!(!ok, "a root image started with run_as_non_root");
    assert!(
        err.contains("CreateContainerConfigError") && err.contains("run_as_non_root"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "--wait sat on it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_can_allow_unconfined_and_more_capabilities() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(
        Path::new(QCI),
        &[
            "--allow-unconfined-seccomp",
            "--allowed-capability",
            "NET_ADMIN",
        ],
    )
    .await;
    let spec = format!(
        "name: loose\ntermination_grace_period_seconds: 1\ncontainers:\n\
         - {{name: a, image: '{image}', command: [sh, -c, \"{SELF_REPORT}\"], security_context: {{seccomp_profile: Unconfined, capabilities: {{add: [NET_ADMIN]}}}}}}\n"
    );
    let (ok, out, err) = s.create("loose", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let log = log_with(&s, out.trim(), "a", "shm=").await;
    assert_eq!(field(&log, "Seccomp"), "0", "{log}");
    assert_eq!(field(&log, "unshare"), "yes", "{log}");
    assert_eq!(
        field(&log, "CapBnd"),
        "00000000a80435fb",
        "the 14 and NET_ADMIN: {log}"
    );
}

/// CPU time (ns) the group's cgroup has used.
fn cpu_used_ns(s: &Server, id: &str) -> u64 {
    for dir in s.group_cgroups(id) {
        if let Ok(t) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
            return t.trim().parse().unwrap();
        }
        if let Ok(t) = std::fs::read_to_string(dir.join("cpu.stat"))
            && let Some(us) = t.lines().find_map(|l| l.strip_prefix("usage_usec "))
        {
            return us.trim().parse::<u64>().unwrap() * 1000;
        }
    }
    panic!("no CPU accounting for {id}: {:?}", s.group_cgroups(id));
}

fn group_file(s: &Server, id: &str, names: &[&str]) -> (PathBuf, String) {
    for dir in s.group_cgroups(id) {
        for n in names {
            if let Ok(t) = std::fs::read_to_string(dir.join(n)) {
                return (dir.join(n), t.trim().to_string());
            }
        }
    }
    panic!("none of {names:?} for {id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_is_held_to_the_size_it_is_billed_for() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;

    // shm is memory: at least half the group's is refused, naming the field.
    let (ok, _, err) = s.create(
        "bigshm",
        &format!("name: bigshm\ncpu: 0.25\nmemory: 1Gi\nshm_size: 2Gi\ncontainers: [{{name: a, image: '{image}'}}]\n"),
        &[],
    );
    assert!(
        !ok && err.contains("shm_size: must be less than half the group's memory"),
        "{err}"
    );
    let (ok, _, err) = s.create(
        "huge",
        &format!("name: huge\nmemory: 1000Ti\ncontainers: [{{name: a, image: '{image}'}}]\n"),
        &[],
    );
    assert!(!ok && err.contains("memory: the group asks for"), "{err}");

    // Half a core, 1 GiB; its containers set no limits of their own. Two busy loops get
    // half a core between them.
    let spec = format!(
        "name: sized\ncpu: 0.5\nmemory: 1Gi\nshm_size: 400Mi\ntermination_grace_period_seconds: 1\ncontainers:\n\
         - {{name: spin, image: '{image}', command: [sh, -c, 'while :; do :; done & while :; do :; done']}}\n\
         - {{name: hog, image: '{image}', command: [sh, -c, 'sleep 600']}}\n"
    );
    let (ok, out, err) = s.create("sized", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let g = running(&s, &id).await;
    let limits = g.status.limits.expect("the enforced size is shown");
    assert_eq!((limits.cpu, limits.memory_bytes), (0.5, 1 << 30));
    let (_, shown, _) = s.cli(&["get", "sized"]);
    assert!(shown.contains("Held to:   0.5 cores, 1.00 GiB"), "{shown}");
    let (_, mem) = group_file(&s, &id, &["memory.limit_in_bytes", "memory.max"]);
    assert_eq!(mem, (1u64 << 30).to_string());
    // The room the containers' starts had (one core each while nothing ran) is taken back.
    let (_, quota) = group_file(&s, &id, &["cpu.cfs_quota_us", "cpu.max"]);
    assert!(quota == "50000" || quota == "50000 100000", "{quota}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, u0) = (Instant::now(), cpu_used_ns(&s, &id));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cores = (cpu_used_ns(&s, &id) - u0) as f64 / t0.elapsed().as_nanos() as f64;
    assert!(
        (0.3..=0.55).contains(&cores),
        "two busy loops used {cores:.2} cores of a group held to 0.5"
    );

    // 400 MiB in /dev/shm plus a 700 MiB buffer pass 1 GiB: the kernel kills the process.
    // 300 MiB beside the same shm fits.
    let exec = |cmd: &str| s.cli(&["exec", "sized", "-c", "hog", "--", "sh", "-c", cmd]);
    let (ok, _, err) = exec(
        "head -c 419430400 /dev/zero > /dev/shm/ballast && dd if=/dev/zero of=/dev/null bs=300M count=1",
    );
    assert!(ok, "300 MiB beside 400 MiB of shm must fit in 1 GiB: {err}");
    let (ok, out, err) = exec("dd if=/dev/zero of=/dev/null bs=700M count=1; echo status=$?");
    assert!(
        ok && out.contains("status=137"),
        "700 MiB beside 400 MiB of shm must pass the group's 1 GiB: {out} {err}"
    );
    assert!(
        oom_kills(&s, &id) >= 1,
        "no OOM kill recorded in the group's cgroup"
    );

    // An update that changes the size applies it live: the same containers, the new limits.
    let pid = g.status.containers[0].pid;
    let bigger = spec
        .replace("memory: 1Gi", "memory: 2Gi")
        .replace("cpu: 0.5", "cpu: 1");
    let path = s.data_dir.join("bigger.spec");
    std::fs::write(&path, &bigger).unwrap();
    let (ok, _, err) = s.cli(&["update", "sized", "-f", path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let g = s
        .wait_group(&id, "the new size", |g| {
            g.status.limits.is_some_and(|l| l.memory_bytes == 2 << 30)
        })
        .await;
    assert_eq!(
        g.status.containers[0].pid, pid,
        "the update restarted a container"
    );
    assert_eq!(g.status.containers[0].state, ContainerState::Running);
    let (_, mem) = group_file(&s, &id, &["memory.limit_in_bytes", "memory.max"]);
    assert_eq!(mem, (2u64 << 30).to_string());
    let (_, quota) = group_file(&s, &id, &["cpu.cfs_quota_us", "cpu.max"]);
    assert!(quota.starts_with("100000"), "{quota}");

    let (ok, _, err) = s.cli(&["delete", "sized", "--wait"]);
    assert!(ok, "{err}");
    assert!(
        s.group_cgroups(&id).is_empty(),
        "{:?}",
        s.group_cgroups(&id)
    );
}

/// OOM kills in the group's cgroup and its containers' (v1 counts them where the victim was).
fn oom_kills(s: &Server, id: &str) -> u64 {
    let mut n = 0;
    for dir in s.group_cgroups(id) {
        let mut dirs = vec![dir.clone()];
        if let Ok(rd) = std::fs::read_dir(&dir) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for d in dirs {
            for f in ["memory.oom_control", "memory.events"] {
                if let Ok(t) = std::fs::read_to_string(d.join(f)) {
                    n += t
                        .lines()
                        .find_map(|l| l.strip_prefix("oom_kill "))
                        .map(|v| v.trim().parse::<u64>().unwrap())
                        .unwrap_or(0);
                }
            }
        }
    }
    n
}

#[test]
fn serve_refuses_a_machine_without_cgroups_naming_the_fix() {
    qci_testkit::require(&[("unshare", "util-linux")]);
    let data = tempfile::Builder::new()
        .prefix("qci-nocg-")
        .tempdir_in(qci_testkit::test_root())
        .unwrap();
    let port = qci_testkit::free_port().to_string();
    // A private mount namespace where /sys/fs/cgroup is gone, as under `ip netns exec`.
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "umount -l /sys/fs/cgroup && exec {QCI} serve --data-dir {} --listen 127.0.0.1:{port}",
            data.path().display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started without cgroups: {err}"
    );
    assert!(
        err.contains("no cgroup file system is mounted") && err.contains("fix:"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_profiles_sysctls_and_groups_take_effect() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    // A profile of the operator's (containers' format): everything but mkdir, which fails
    // with EACCES (13).
    let dir = tempfile::Builder::new()
        .prefix("qci-seccomp-")
        .tempdir_in(qci_testkit::test_root())
        .unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let s = Server::start_with(
        Path::new(QCI),
        &["--seccomp-profile", profile.to_str().unwrap()],
    )
    .await;
    // The same file as a Localhost profile, named by one container.
    std::fs::create_dir_all(s.data_dir.join("seccomp")).unwrap();
    std::fs::copy(&profile, s.data_dir.join("seccomp/no-mkdir.json")).unwrap();
    let report = "mkdir /tmp/x 2>/tmp/err && echo mkdir=yes || echo mkdir=$(grep -o denied /tmp/err); \
        echo port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); echo groups=$(id -G); sleep 600";
    let spec = format!(
        "name: ops\ntermination_grace_period_seconds: 1\n\
         security_context: {{sysctls: [{{name: net.ipv4.ip_unprivileged_port_start, value: '80'}}], supplemental_groups: [4242]}}\n\
         containers:\n\
         - {{name: default, image: '{image}', command: [sh, -c, '{report}']}}\n\
         - {{name: local, image: '{image}', command: [sh, -c, '{report}'], security_context: {{seccomp_profile: {{type: Localhost, localhost_profile: no-mkdir.json}}}}}}\n\
         - {{name: missing, image: '{image}', command: [sh, -c, '{report}'], security_context: {{seccomp_profile: {{type: Localhost, localhost_profile: nope.json}}}}}}\n"
    );
    let (ok, out, _) = s.create("ops", &spec, &[]);
    assert!(ok);
    let id = out.trim().to_string();
    for c in ["default", "local"] {
        let log = log_with(&s, &id, c, "groups=").await;
        assert_eq!(
            field(&log, "mkdir"),
            "denied",
            "{c}: the operator's profile (EACCES): {log}"
        );
        assert_eq!(field(&log, "port"), "80", "{c}: the group's sysctl: {log}");
        assert!(
            field(&log, "groups").split(' ').any(|g| g == "4242"),
            "{c}: {log}"
        );
    }
    // A Localhost profile that is not there: the container's configuration is at fault.
    let g = s
        .wait_group(&id, "missing profile", |g| {
            g.status.containers[2]
                .last_state
                .as_ref()
                .and_then(|l| l.reason.as_deref())
                == Some("CreateContainerConfigError")
                || g.status.containers[2].reason.as_deref() == Some("CreateContainerConfigError")
        })
        .await;
    let c = &g.status.containers[2];
    let msg = c
        .message
        .clone()
        .or_else(|| c.last_state.as_ref().and_then(|l| l.message.clone()))
        .unwrap_or_default();
    assert!(msg.contains("nope.json"), "{msg}");
}

/// A gVisor group (`runtime: gvisor`) is held as a runc one is where its sandbox can hold it
/// (users, a read-only root, capabilities, shared shm of its size), and what the sandbox
/// cannot hold (an operator's seccomp profile, pids_limit, sysctls) is refused, each field
/// named, nothing made.
#[tokio::test(flavor = "multi_thread")]
async fn a_gvisor_group_is_held_or_refused() {
    qci_testkit::require(&[("runsc", "runsc")]);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let refused = format!(
        "name: loose\nruntime: gvisor\n\
         security_context: {{sysctls: [{{name: net.ipv4.ip_unprivileged_port_start, value: '80'}}]}}\n\
         containers:\n\
         - {{name: a, image: '{image}', pids_limit: 100, security_context: {{seccomp_profile: {{type: Localhost, localhost_profile: p.json}}}}}}\n"
    );
    let (ok, _, err) = s.create("loose", &refused, &[]);
    assert!(!ok);
    for f in [
        "security_context.sysctls: gVisor's kernel does not take sysctls",
        "containers[0].pids_limit: not held in a gVisor sandbox",
        "containers[0].security_context.seccomp_profile: a Localhost profile is not loaded",
    ] {
        assert!(err.contains(f), "{f:?} not in {err}");
    }
    assert!(s.client.get_group("loose").await.is_err());
    assert!(s.runsc_ids().is_empty());

    let report = "id -u; touch /probe 2>/dev/null && echo rootfs=rw || echo rootfs=ro; \
        grep CapEff /proc/self/status; df -k /dev/shm | tail -1; \
        head -c 50000000 /dev/zero > /dev/shm/fill 2>/dev/null || echo shm=full; echo END; sleep 600";
    let spec = format!(
        "name: held\nruntime: gvisor\nshm_size: 32Mi\ntermination_grace_period_seconds: 1\n\
         containers:\n\
         - {{name: user, image: '{image}', command: [sh, -c, '{report}'], security_context: {{run_as_user: 1000, run_as_group: 1000}}}}\n\
         - {{name: locked, image: '{image}', command: [sh, -c, 'sleep 2; ls /dev/shm; {report}'], security_context: {{read_only_root_filesystem: true, capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}}}}}\n"
    );
    let (ok, out, err) = s.create("held", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let user = log_with(&s, &id, "user", "END").await;
    assert_eq!(user.lines().next(), Some("1000"), "{user}");
    assert_eq!(field(&user, "CapEff"), "0000000000000000", "{user}");
    assert!(
        user.contains("shm=full") && user.contains("32768"),
        "{user}"
    );
    let locked = log_with(&s, &id, "locked", "END").await;
    assert_eq!(field(&locked, "rootfs"), "ro", "{locked}");
    // NET_BIND_SERVICE (bit 10) alone.
    assert_eq!(field(&locked, "CapEff"), "0000000000000400", "{locked}");
    // The group's shm is one, shared: the other container's file is there.
    assert!(locked.lines().any(|l| l == "fill"), "{locked}");
}
