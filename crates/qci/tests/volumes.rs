//! End-to-end: config-file and empty-dir volumes, sub_path, and the sub_path escape.

use std::path::Path;
use std::time::Duration;

use qci_spec::GroupPhase;
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

#[tokio::test(flavor = "multi_thread")]
async fn config_files_and_empty_dirs_are_mounted_and_shared() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let spec = format!(
        r#"name: vols
termination_grace_period_seconds: 1
volumes:
  - name: conf
    config_file:
      files:
        - {{path: app.conf, content: "key = value\n"}}
        - {{path: secret/key, content: "s3", mode: "0600"}}
  - {{name: shared, empty_dir: {{}}}}
  - {{name: scratch, empty_dir: {{medium: Memory, size_limit: 16Mi}}}}
containers:
  - name: a
    image: '{image}'
    command: [sh, -c, 'cat /etc/app/app.conf; stat -c %a /etc/app/secret/key; touch /etc/app/x 2>/dev/null || echo read-only; echo hi > /data/sub/from-a; df -k /scratch | tail -1; sleep 600']
    volume_mounts:
      - {{name: conf, mount_path: /etc/app}}
      - {{name: shared, mount_path: /data}}
      - {{name: scratch, mount_path: /scratch}}
  - name: b
    image: '{image}'
    command: [sh, -c, 'cat /etc/one.conf; until cat /shared/from-a; do sleep 0.1; done; sleep 600']
    volume_mounts:
      - {{name: conf, mount_path: /etc/one.conf, sub_path: app.conf}}
      - {{name: shared, mount_path: /shared, sub_path: sub}}
"#
    );
    let (ok, out, err) = s.create("vols", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let start = std::time::Instant::now();
    let (a, b) = loop {
        let (a, b) = (s.logs(&id, "a").await, s.logs(&id, "b").await);
        if (a.contains("/scratch") && b.contains("hi")) || start.elapsed() > Duration::from_secs(20)
        {
            break (a, b);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(&lines[..3], &["key = value", "600", "read-only"], "{a}");
    assert!(
        lines[3].split_whitespace().nth(1) == Some("16384"),
        "scratch size: {a}"
    );
    // (stdout and stderr are separate pipes: a "can't open" from the wait loop may come first.)
    assert!(
        b.lines().any(|l| l == "key = value") && b.lines().any(|l| l == "hi"),
        "{b}"
    );

    // Deleting the group removes its volumes (and unmounts the tmpfs).
    let (ok, _, err) = s.cli(&["delete", "vols", "--wait"]);
    assert!(ok, "{err}");
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert!(!s.data_dir.join("volumes").join(&id).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_path_through_a_symlink_is_refused_and_bad_mounts_are_named() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let spec = format!(
        "name: escape\nrestart_policy: Never\nvolumes: [{{name: v, empty_dir: {{}}}}]\ninit_containers: [{{name: i, image: '{image}', command: [ln, -s, /, /v/evil], volume_mounts: [{{name: v, mount_path: /v}}]}}]\ncontainers: [{{name: c, image: '{image}', command: [ls, /host], volume_mounts: [{{name: v, mount_path: /host, sub_path: evil}}]}}]\n"
    );
    let (ok, _, err) = s.create("escape", &spec, &["--wait"]);
    assert!(!ok, "a sub_path through a symlink was mounted");
    assert!(
        err.contains("ContainerCannotRun") && err.contains("symlink"),
        "{err}"
    );
    let g = s
        .wait_group(
            &s.client.get_group("escape").await.unwrap().id,
            "Failed",
            |g| g.status.phase.is_final(),
        )
        .await;
    assert_eq!(g.status.phase, GroupPhase::Failed);

    let bad = format!(
        "name: bad\nvolumes: [{{name: v, config_file: {{files: [{{path: ../x, content: y}}]}}}}]\ncontainers: [{{name: c, image: '{image}', volume_mounts: [{{name: nope, mount_path: rel}}, {{name: v, mount_path: /a, sub_path: ../b}}]}}]\n"
    );
    let (ok, _, err) = s.create("bad", &bad, &[]);
    assert!(!ok);
    for field in [
        "volumes[0].config_file.files[0].path",
        "containers[0].volume_mounts[0].name",
        "containers[0].volume_mounts[0].mount_path",
        "containers[0].volume_mounts[1].sub_path",
    ] {
        assert!(err.contains(field), "{field} not named: {err}");
    }
}
