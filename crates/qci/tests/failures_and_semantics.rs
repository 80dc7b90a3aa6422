//! End-to-end: bad input, failing containers, restart policies, and Docker's image semantics.

use std::path::Path;

use qci_spec::{ContainerState, GroupPhase};
use qci_testkit::{Format, ImageSpec, Registry, Server, push_busybox, push_image, push_index};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_spec_is_refused_with_the_field_path_and_changes_nothing() {
    let s = Server::start(Path::new(QCI)).await;
    let spec = "name: web\ncontainers:\n  - {name: a, image: 127.0.0.1:1/bb}\n  - name: b\n    image: 127.0.0.1:1/bb\n    ports: [{port: 70000}]\n";
    let (ok, out, err) = s.create("bad", spec, &[]);
    assert!(!ok, "a bad spec was accepted: {out}");
    assert!(
        err.contains("containers[1].ports[0].port: must be between 1 and 65535"),
        "stderr: {err}"
    );
    assert!(out.is_empty(), "stdout should be empty, got {out:?}");

    // The API answers 400 with a JSON body naming the field.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/container-groups", s.url))
        .bearer_auth(s.admin_key().unwrap())
        .header("content-type", "application/json")
        .body(r#"{"name": "x", "containers": [{"name": "a", "image": "bb", "memroy": "1Gi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "InvalidSpec");
    assert_eq!(body["fields"][0]["field"], "containers[0].memroy");

    for bad in [
        "name: UPPER\ncontainers: [{name: a, image: bb}]\n",
        "containers: [{name: a, image: bb}]\n",
        "",
        "::",
    ] {
        let (ok, _, err) = s.create("bad2", bad, &[]);
        assert!(
            !ok && err.contains("error"),
            "{bad:?} was accepted or gave no error: {err}"
        );
    }
    assert!(
        s.client.list_groups().await.unwrap().is_empty(),
        "a bad spec created a group"
    );
    assert!(s.runc_ids().is_empty());
    assert_eq!(
        std::fs::read_dir(s.data_dir.join("containers"))
            .unwrap()
            .count(),
        0
    );

    // Duplicate names and unknown groups are clear errors too.
    let good =
        "name: dup\nrestart_policy: Never\ncontainers: [{name: a, image: 127.0.0.1:1/none}]\n";
    assert!(s.create("dup", good, &[]).0);
    let (ok, _, err) = s.create("dup", good, &[]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = s.cli(&["get", "nosuch"]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = s.cli(&["logs", "dup", "-c", "nosuch"]);
    assert!(!ok && err.contains("no container \"nosuch\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_images_and_commands_fail_with_their_reason() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1.0").await;
    let s = Server::start(Path::new(QCI)).await;

    // An image the registry does not have: ErrImagePull, with what the registry said.
    let spec = format!(
        "name: noimage\ncontainers: [{{name: a, image: '{}/does/not-exist:1'}}]\n",
        reg.host()
    );
    let (ok, out, err) = s.create("noimage", &spec, &["--wait"]);
    assert!(!ok, "create --wait succeeded for a missing image");
    assert!(
        out.starts_with("cg-"),
        "the id is printed even when the wait fails: {out:?}"
    );
    assert!(
        err.contains("ImagePull")
            && err.contains("does/not-exist")
            && err.contains("manifest unknown"),
        "stderr: {err}"
    );
    let (_, events, _) = s.cli(&["events", "noimage"]);
    assert!(
        events.contains("Warning") && events.contains("failed to pull"),
        "{events}"
    );

    // A command that is not in the image: StartError, and under Never the group fails.
    let spec = format!(
        "name: nocmd\nrestart_policy: Never\ncontainers: [{{name: a, image: '{image}', command: [/no/such/binary]}}]\n"
    );
    let (ok, out, err) = s.create("nocmd", &spec, &["--wait"]);
    assert!(!ok, "create --wait succeeded for a missing command");
    assert!(err.contains("/no/such/binary"), "stderr: {err}");
    let id = out.trim();
    let g = s
        .wait_group(id, "Failed", |g| g.status.phase == GroupPhase::Failed)
        .await;
    assert_eq!(g.status.containers[0].exit_code, Some(128));
    assert_eq!(
        g.status.containers[0].reason.as_deref(),
        Some("ContainerCannotRun")
    );

    // A failing init container under Never fails the group; work containers never start.
    let spec = format!(
        "name: badinit\nrestart_policy: Never\ninit_containers: [{{name: i, image: '{image}', command: [sh, -c, 'echo broken >&2; exit 3']}}]\ncontainers: [{{name: w, image: '{image}', command: [sleep, '60']}}]\n"
    );
    let (ok, out, err) = s.create("badinit", &spec, &["--wait"]);
    assert!(!ok, "create --wait succeeded with a failing init container");
    assert!(
        err.contains("init container \"i\" failed: exit code 3"),
        "stderr: {err}"
    );
    let g = s.client.get_group(out.trim()).await.unwrap();
    assert_eq!(g.status.phase, GroupPhase::Failed);
    assert_eq!(g.status.containers[0].state, ContainerState::Waiting);
    assert_eq!(s.logs(out.trim(), "i").await, "broken\n");

    // Deleting failed groups cleans up too.
    for name in ["noimage", "nocmd", "badinit"] {
        let (ok, _, err) = s.cli(&["delete", name, "--wait"]);
        assert!(ok, "delete {name}: {err}");
    }
    assert!(s.runc_ids().is_empty(), "{:?}", s.runc_ids());
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_policies_exit_codes_and_oom() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1.0").await;
    let s = Server::start(Path::new(QCI)).await;

    // Never + success: Succeeded, exit code 0, reason Completed. `logs -f`, started before the
    // container, follows it to its end and then returns.
    let spec = format!(
        "name: done\nrestart_policy: Never\ncontainers: [{{name: a, image: '{image}', command: [sh, -c, 'echo ok; sleep 1; echo bye']}}, {{name: b, image: '{image}', command: ['true']}}]\n"
    );
    let id = s.create("done", &spec, &[]).1.trim().to_string();
    let mut cmd = s.command();
    let follow = std::thread::spawn(move || {
        cmd.args(["logs", "done", "-c", "a", "-f"])
            .output()
            .unwrap()
    });
    let g = s
        .wait_group(&id, "Succeeded", |g| g.status.phase.is_final())
        .await;
    assert_eq!(g.status.phase, GroupPhase::Succeeded, "{:?}", g.status);
    assert!(
        g.status
            .containers
            .iter()
            .all(|c| { c.exit_code == Some(0) && c.reason.as_deref() == Some("Completed") })
    );
    assert_eq!(s.logs(&id, "a").await, "ok\nbye\n");
    let followed = follow.join().unwrap();
    assert!(followed.status.success());
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "ok\nbye\n");
    let (ok, out, _) = s.cli(&["logs", "done"]);
    assert!(
        ok && out.contains("[a] ok\n") && out.contains("[a] bye\n"),
        "all containers' logs: {out:?}"
    );

    // OnFailure: a failing container is restarted (the first restart is immediate); exit codes are kept.
    let spec = format!(
        "name: flaky\nrestart_policy: OnFailure\ncontainers: [{{name: a, image: '{image}', command: [sh, -c, 'echo run; exit 7']}}]\n"
    );
    let id = s.create("flaky", &spec, &[]).1.trim().to_string();
    let g = s
        .wait_group(&id, "a restart", |g| {
            g.status
                .containers
                .first()
                .is_some_and(|c| c.restart_count >= 1)
        })
        .await;
    assert!(
        matches!(g.status.phase, GroupPhase::Running | GroupPhase::Restarting),
        "{:?}",
        g.status.phase
    );
    let g = s
        .wait_group(&id, "back-off after the restart", |g| {
            g.status
                .containers
                .first()
                .and_then(|c| c.reason.as_deref())
                == Some("CrashLoopBackOff")
        })
        .await;
    assert_eq!(g.status.phase, GroupPhase::Restarting);
    assert_eq!(g.status.containers[0].exit_code, Some(7));
    let last = g.status.containers[0]
        .last_state
        .clone()
        .expect("last_state after a restart");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (Some(7), Some("Error"))
    );
    // The current instance's output, and the previous one's with --previous.
    assert_eq!(s.logs(&id, "a").await.matches("run").count(), 1);
    let (ok, out, _) = s.cli(&["logs", "flaky", "-c", "a", "--previous"]);
    assert!(ok && out == "run\n", "previous: {out:?}");

    // A container over its memory limit is OOMKilled (exit 137).
    let spec = format!(
        "name: oom\nrestart_policy: Never\ncontainers: [{{name: a, image: '{image}', memory: 16Mi, command: [tail, /dev/zero]}}]\n"
    );
    let id = s.create("oom", &spec, &[]).1.trim().to_string();
    let g = s
        .wait_group(&id, "OOM kill", |g| g.status.phase.is_final())
        .await;
    assert_eq!(g.status.phase, GroupPhase::Failed);
    assert_eq!(
        g.status.containers[0].reason.as_deref(),
        Some("OOMKilled"),
        "{:?}",
        g.status.containers[0]
    );
    assert_eq!(g.status.containers[0].exit_code, Some(137));
}

#[tokio::test(flavor = "multi_thread")]
async fn image_entrypoint_cmd_env_workdir_and_user_apply_as_in_docker() {
    let reg = Registry::start();
    let script = b"#!/bin/sh\necho \"entry: $* | cwd=$(pwd) | id=$(id -u):$(id -g) | MODE=$MODE | PATH=$PATH\"\n".to_vec();
    let spec = ImageSpec {
        entrypoint: Some(vec!["/bin/entry.sh".into()]),
        cmd: Some(vec!["default-arg".into()]),
        env: vec!["MODE=image".into()],
        working_dir: Some("/tmp".into()),
        user: Some("nobody".into()),
        files: vec![("bin/entry.sh".into(), script, 0o755)],
        ..Default::default()
    };
    let image = push_image(&reg.host(), "app", "v1", &spec).await;
    let s = Server::start(Path::new(QCI)).await;
    let group = format!(
        "name: sem\nrestart_policy: Never\ncontainers:\n  - {{name: plain, image: '{image}'}}\n  - {{name: args, image: '{image}', args: [given], env: [{{name: MODE, value: spec}}]}}\n  - {{name: cmd, image: '{image}', command: [sh, -c, 'echo cmd $0 $(pwd)'], working_dir: /etc}}\n"
    );
    let id = s.create("sem", &group, &[]).1.trim().to_string();
    s.wait_group(&id, "all exited", |g| g.status.phase.is_final())
        .await;
    // The image sets no PATH... it does (MODE only replaces the default env), so Docker's default applies.
    assert_eq!(
        s.logs(&id, "plain").await,
        "entry: default-arg | cwd=/tmp | id=65534:65534 | MODE=image | PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    assert!(
        s.logs(&id, "args")
            .await
            .starts_with("entry: given | cwd=/tmp | id=65534:65534 | MODE=spec")
    );
    assert_eq!(s.logs(&id, "cmd").await, "cmd sh /etc\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_describes_itself() {
    let s = Server::start(Path::new(QCI)).await;
    let doc = s.client.openapi().await.unwrap();
    for path in [
        "/v1/container-groups",
        "/v1/container-groups/{id}",
        "/v1/container-groups/{id}/logs",
        "/v1/container-groups/{id}/events",
    ] {
        assert!(doc["paths"][path].is_object(), "openapi.json lacks {path}");
    }
    assert!(doc["components"]["schemas"]["GroupSpec"].is_object());
    let (ok, out, _) = s.cli(&["version"]);
    assert!(ok && out.contains("server: qci"), "{out}");
}

/// Shell completions that a shell loads and that complete, and a manual page per command.
#[test]
fn the_cli_describes_itself() {
    let qci_dir = Path::new(QCI).parent().unwrap().display().to_string();
    // bash: the script loads, and `qci ex<TAB>` / `qci image p<TAB>` complete (bash calls
    // the function with the command, the word being completed and the word before it).
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; export PATH={qci_dir}:$PATH; source <(qci completion bash); \
             COMP_WORDS=(qci ex); COMP_CWORD=1; _qci qci ex qci; echo \"${{COMPREPLY[@]}}\"; \
             COMP_WORDS=(qci image p); COMP_CWORD=2; _qci qci p image; echo \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .expect("bash");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines, ["exec", "pull prune"], "{said}");
    for (shell, marker) in [("zsh", "#compdef qci"), ("fish", "complete -c qci")] {
        let out = std::process::Command::new(QCI)
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(marker),
            "{shell}"
        );
    }
    let out = std::process::Command::new(QCI)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));

    // Manual pages: qci.1 and one per subcommand, roff with the command's own words.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(QCI)
        .arg("man")
        .arg(dir.path().join("man1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = |name: &str| {
        std::fs::read_to_string(dir.path().join("man1").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert!(page("qci.1").starts_with(".ie \\n(.g .ds Aq"), "not roff");
    assert!(page("qci.1").contains("container groups"));
    assert!(page("qci-exec.1").contains("Run a command in a running container"));
    assert!(page("qci-image-cache-create.1").contains(".TH qci-image-cache-create 1"));
    assert!(!dir.path().join("man1/qci-monitor.1").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_manifests_and_multi_arch_indexes_are_pulled() {
    let reg = Registry::start();
    let marker = |text: &str| {
        vec![(
            "etc/arch".to_string(),
            format!("{text}\n").into_bytes(),
            0o644,
        )]
    };
    let cat = Some(vec!["cat".to_string(), "/etc/arch".to_string()]);
    let docker = ImageSpec {
        format: Format::Docker,
        cmd: cat.clone(),
        files: marker("docker"),
        ..Default::default()
    };
    let docker = push_image(&reg.host(), "dock", "v1", &docker).await;
    for arch in ["arm64", "amd64"] {
        let spec = ImageSpec {
            architecture: arch.to_string(),
            cmd: cat.clone(),
            files: marker(arch),
            ..Default::default()
        };
        push_image(&reg.host(), "multi", arch, &spec).await;
    }
    // The arm64 entry comes first: qci must choose by platform, not by position.
    let multi = push_index(
        &reg.host(),
        "multi",
        "v1",
        &[("arm64", "arm64"), ("amd64", "amd64")],
    )
    .await;
    let s = Server::start(Path::new(QCI)).await;
    let spec = format!(
        "name: formats\nrestart_policy: Never\ncontainers:\n  - {{name: docker, image: '{docker}'}}\n  - {{name: multi, image: '{multi}'}}\n"
    );
    let id = s.create("formats", &spec, &[]).1.trim().to_string();
    let g = s
        .wait_group(&id, "both done", |g| g.status.phase.is_final())
        .await;
    assert_eq!(g.status.phase, GroupPhase::Succeeded, "{:?}", g.status);
    assert_eq!(s.logs(&id, "docker").await, "docker\n");
    assert_eq!(s.logs(&id, "multi").await, "amd64\n");
}

/// `GET …?wait_for=Running` answers once waiting is over — reached, stuck, or timed out —
/// and refuses a condition it does not know.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_waits_for_running_and_says_when_it_never_will() {
    use qci_spec::{WaitFor, WaitOutcome};
    use std::time::Duration;
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1.0").await;
    let s = Server::start(Path::new(QCI)).await;
    let c = &s.client;

    // Reached: one answer, Running, with the container's pid.
    let g = c
        .create_group(&format!(
            "name: w\ncontainers: [{{name: a, image: '{image}', command: [sleep, '600']}}]\n"
        ))
        .await
        .unwrap();
    let w = c
        .wait_group(&g.id, WaitFor::Running, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(w.status.phase, GroupPhase::Running, "{:?}", w.status);
    assert!(w.status.containers[0].pid.is_some());
    assert_eq!(w.wait_outcome(WaitFor::Running), Some(WaitOutcome::Reached));

    // Timed out: an init container holds the group in Pending; the answer comes at the
    // timeout, still Pending.
    let g = c
        .create_group(&format!(
            "name: slow\ninit_containers: [{{name: i, image: '{image}', command: [sleep, '600']}}]\ncontainers: [{{name: a, image: '{image}', command: [sleep, '600']}}]\n"
        ))
        .await
        .unwrap();
    let w = c
        .wait_group(&g.id, WaitFor::Running, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(w.status.phase, GroupPhase::Pending);
    assert_eq!(w.wait_outcome(WaitFor::Running), None);

    // Stuck: a missing image ends the wait with the reason, though qci keeps retrying.
    let g = c
        .create_group(&format!(
            "name: noimg\ncontainers: [{{name: a, image: '{}/no/such:1'}}]\n",
            reg.host()
        ))
        .await
        .unwrap();
    let w = c
        .wait_group(&g.id, WaitFor::Running, Duration::from_secs(60))
        .await
        .unwrap();
    match w.wait_outcome(WaitFor::Running) {
        Some(WaitOutcome::Stuck(why)) => assert!(why.contains("ImagePull"), "{why}"),
        other => panic!("expected stuck, got {other:?}: {:?}", w.status),
    }

    // A wait on a group being deleted ends with it (woken by the deletion, not the timeout).
    let waiter = {
        let c = s.client_with(s.admin_key().as_deref());
        tokio::spawn(async move {
            c.wait_group("slow", WaitFor::Running, Duration::from_secs(3600))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.delete_group("slow").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(120), waiter)
        .await
        .expect("the wait did not end with the deletion")
        .unwrap();
    match ended {
        Ok(g) => assert_eq!(
            g.wait_outcome(WaitFor::Running),
            Some(WaitOutcome::Stuck("is being deleted".into()))
        ),
        Err(e) => assert!(e.is_not_found(), "{e}"),
    }

    // A timeout too large to add to the clock is no timeout, not a crash: the running group
    // answers at once.
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v1/container-groups/w?wait_for=Running&timeout={}",
            s.url,
            u64::MAX
        ))
        .bearer_auth(s.admin_key().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // An unknown condition is a 400 naming it.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/container-groups/w?wait_for=Sleeping", s.url))
        .bearer_auth(s.admin_key().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("wait_for"), "{text}");
}

/// Stopping sends SIGTERM to the container's first process, as Docker and Kubernetes do, and
/// gives it the grace period to finish; one that ignores SIGTERM is killed once it is over.
#[tokio::test(flavor = "multi_thread")]
async fn stopping_sends_sigterm_then_sigkill_after_the_grace_period() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1.0").await;
    let s = Server::start(Path::new(QCI)).await;
    let spec = format!(
        "name: polite\ntermination_grace_period_seconds: 2\ncontainers:\n\
         - {{name: handles, image: '{image}', command: [sh, -c, 'trap \"echo got TERM; exit 3\" TERM; echo ready; while true; do sleep 0.1; done']}}\n\
         - {{name: ignores, image: '{image}', command: [sleep, '600']}}\n"
    );
    let (ok, out, err) = s.create("polite", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let pid_of = |g: &qci_spec::ContainerGroup, name: &str| {
        g.status
            .containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.pid)
    };
    let before = s.client.get_group(&id).await.unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if s.logs(&id, "handles").await.contains("ready") {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the trap was never set");
    let (ok, _, err) = s.cli(&["restart", "polite"]);
    assert!(ok, "{err}");
    let g = s
        .wait_group(&id, "restarted", |g| {
            g.status.observed_restart_generation == 1
                && g.status.phase == GroupPhase::Running
                && pid_of(g, "ignores").is_some_and(|p| Some(p) != pid_of(&before, "ignores"))
        })
        .await;
    // SIGTERM reached the first process and its handler ran ...
    let (_, previous, _) = s.cli(&["logs", "polite", "-c", "handles", "--previous"]);
    assert!(previous.contains("got TERM"), "{previous:?}");
    // ... and `sleep`, which as PID 1 ignores SIGTERM, was killed after the grace period: it
    // runs again under a new pid.
    assert!(pid_of(&g, "ignores") != pid_of(&before, "ignores"));
    let (_, events, _) = s.cli(&["events", "polite"]);
    assert!(events.contains("stopping container"), "{events}");
}

/// The Debian package holds the binary, the unit, completions and manual pages, depends on
/// what qci runs with, and the qci it installs serves and runs a group.
#[tokio::test(flavor = "multi_thread")]
async fn the_debian_package_installs_and_runs() {
    qci_testkit::require(&[("dpkg-deb", "dpkg")]);
    let dir = tempfile::tempdir_in(qci_testkit::test_root()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/package.sh");
    let out = std::process::Command::new(&script)
        .args(["--fast", "--binary", QCI, "--out"])
        .arg(dir.path())
        .output()
        .expect("scripts/package.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dpkg = |args: &[&str]| {
        let o = std::process::Command::new("dpkg-deb")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "dpkg-deb {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let depends = dpkg(&["--field", &deb, "Depends"]);
    for p in ["runc", "nftables", "iproute2", "e2fsprogs"] {
        assert!(depends.contains(p), "{depends}");
        // Each is a package this machine has (the test script installed them).
        let st = std::process::Command::new("dpkg-query")
            .args(["-W", p])
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{p} is not an installable Debian package here"
        );
    }
    let files = dpkg(&["--contents", &deb]);
    for f in [
        "./usr/bin/qci",
        "./lib/systemd/system/qci.service",
        "./usr/share/bash-completion/completions/qci",
        "./usr/share/zsh/vendor-completions/_qci",
        "./usr/share/fish/vendor_completions.d/qci.fish",
        "./usr/share/man/man1/qci.1.gz",
        "./usr/share/man/man1/qci-serve.1.gz",
    ] {
        assert!(files.contains(f), "{f} is not in the package:\n{files}");
    }
    // Unpacked where installing puts it: the unit runs what it says, and the binary serves.
    let root = dir.path().join("root");
    dpkg(&["-x", &deb, root.to_str().unwrap()]);
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/qci.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/qci serve") && unit.contains("KillMode=process"),
        "{unit}"
    );
    assert!(unit.contains("Restart=on-failure"), "{unit}");
    let installed = root.join("usr/bin/qci");
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(&installed).await;
    let (ok, _, err) = s.create(
        "pkg",
        &format!("name: pkg\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '600']}}]\n"),
        &["--wait"],
    );
    assert!(ok, "{err}");
}

/// A gVisor group past its memory: the host's OOM kill ends its whole sandbox, the container
/// says OOMKilled (137), and under `Always` it runs again in a sandbox made anew.
#[tokio::test(flavor = "multi_thread")]
async fn a_gvisor_group_past_its_memory_is_oom_killed_and_comes_back() {
    qci_testkit::require(&[("runsc", "runsc")]);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(
        Path::new(QCI),
        &[
            "--restart-backoff-base",
            "0.4",
            "--restart-backoff-max",
            "1.6",
        ],
    )
    .await;
    // 0.5 GiB, the smallest size; the hog (a string doubled for ever) asks for more than that
    // once (a file of its own says it has run before, so the next run only sleeps).
    let spec = format!(
        r#"name: gvoom
runtime: gvisor
cpu: 0.25
memory: 512Mi
termination_grace_period_seconds: 1
volumes: [{{name: mark, empty_dir: {{}}}}]
containers:
  - name: hog
    image: '{image}'
    command: [sh, -c, 'if [ -e /mark/ran ]; then echo second-run; sleep 600; fi; touch /mark/ran; awk "BEGIN {{ s = \"x\"; while (1) s = s s }}"; echo survived']
    volume_mounts: [{{name: mark, mount_path: /mark}}]
"#
    );
    let (ok, out, err) = s.create("gvoom", &spec, &[]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let g = s
        .wait_group(&id, "an OOM kill and a restart", |g| {
            g.status
                .containers
                .first()
                .is_some_and(|c| c.restart_count >= 1 && c.state == ContainerState::Running)
        })
        .await;
    let last = g.status.containers[0]
        .last_state
        .clone()
        .expect("the OOM-killed run");
    assert_eq!(
        (last.reason.as_deref(), last.exit_code),
        (Some("OOMKilled"), Some(137)),
        "{last:?}"
    );
    for _ in 0..100 {
        if s.logs(&id, "hog").await.contains("second-run") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(s.logs(&id, "hog").await.contains("second-run"));
    assert_eq!(g.status.phase, GroupPhase::Running);

    // A container's own limit holds in a sandbox too (its containers' limits added up, plus
    // gVisor's own): 64Mi, with 128 MiB wanted in a group of 512 MiB, is OOMKilled.
    let spec = format!(
        r#"name: gvsmall
runtime: gvisor
restart_policy: Never
containers:
  - name: a
    image: '{image}'
    cpu: 0.1
    memory: 64Mi
    command: [awk, 'BEGIN {{ s = "x"; for (i = 0; i < 27; i++) s = s s; print "survived" }}']
"#
    );
    let (ok, out, err) = s.create("gvsmall", &spec, &[]);
    assert!(ok, "{err}");
    let small = out.trim().to_string();
    let g = s
        .wait_group(&small, "the small one's end", |g| g.status.phase.is_final())
        .await;
    assert_eq!(
        (
            g.status.containers[0].reason.as_deref(),
            g.status.containers[0].exit_code
        ),
        (Some("OOMKilled"), Some(137)),
        "{:?}",
        g.status.containers[0]
    );
    assert!(!s.logs(&small, "a").await.contains("survived"));
    // A finished group's sandbox is gone at once (its memory back), its container's record kept.
    let sandbox_of = |ids: &[String]| {
        ids.iter()
            .any(|i| i.starts_with(&small) && i.ends_with("_sandbox"))
    };
    for _ in 0..50 {
        if !sandbox_of(&s.runsc_ids()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ids = s.runsc_ids();
    assert!(
        !ids.iter()
            .any(|i| i.starts_with(&small) && i.ends_with("_sandbox")),
        "{ids:?}"
    );
    let (ok, _, err) = s.cli(&["delete", "gvsmall", "--wait"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.cli(&["delete", "gvoom", "--wait"]);
    assert!(ok, "{err}");
    assert!(s.runsc_ids().is_empty(), "{:?}", s.runsc_ids());
    assert!(s.runsc_processes().is_empty(), "{:?}", s.runsc_processes());
    assert!(s.group_cgroups(&id).is_empty());
}
