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

/// A Kubernetes manifest as people write it — Pod, ConfigMap, Secret and claim in one file —
/// runs as in Kubernetes: env from the ConfigMap, the Secret and the Pod's name, files from
/// the ConfigMap, a disk made for the claim and mounted through a subPath, a readiness probe
/// on a named port. What qci cannot do is named; `get -o k8s` gives a manifest that makes
/// the same group again.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_manifests_run_and_round_trip() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let manifest = format!(
        r#"apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {{name: site}}
    data:
      index.html: "<h1>from a ConfigMap</h1>\n"
      GREETING: hello
  - apiVersion: v1
    kind: Secret
    metadata: {{name: creds}}
    type: Opaque
    data: {{password: czNjcjN0}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: kdata}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: kweb
  labels: {{app: kweb}}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  initContainers:
    - name: seed
      image: '{image}'
      command: [sh, -c, 'echo seeded > /data/seed']
      volumeMounts: [{{name: data, mountPath: /data, subPath: web}}]
  containers:
    - name: web
      image: '{image}'
      command: [httpd, -f, -p, '8080', -h, /www]
      ports: [{{name: http, containerPort: 8080}}]
      env:
        - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: site, key: GREETING}}}}}}
        - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
        - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
      resources: {{limits: {{cpu: 500m, memory: 128Mi}}}}
      readinessProbe: {{httpGet: {{path: /index.html, port: http}}, periodSeconds: 1}}
      volumeMounts:
        - {{name: site, mountPath: /www}}
        - {{name: data, mountPath: /data, subPath: web}}
  volumes:
    - {{name: site, configMap: {{name: site, items: [{{key: index.html, path: index.html}}]}}}}
    - {{name: data, persistentVolumeClaim: {{claimName: kdata}}}}
"#
    );
    let (ok, out, err) = s.create("kweb", &manifest, &["--wait"]);
    assert!(ok, "{err}");
    assert!(err.contains("warning: metadata.labels"), "{err}");
    assert!(err.contains("disk kdata made"), "{err}");
    let id = out.lines().next().unwrap().trim().to_string();
    let g = s
        .wait_group(&id, "healthy", |g| {
            g.status.health == qci_spec::Health::Healthy
        })
        .await;
    let exec = |cmd: &str| s.cli(&["exec", "kweb", "-c", "web", "--", "sh", "-c", cmd]);
    let (ok, out, err) = exec("echo $GREETING $PASSWORD $POD; cat /www/index.html /data/seed");
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "hello s3cr3t kweb\n<h1>from a ConfigMap</h1>\nseeded\n"
    );
    let ip = g.status.ip.clone().expect("the group has an address");
    let (ok, out, err) = exec("echo $IP; ip -o -4 addr show eth0");
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("{ip}\n")) && out.contains(&format!("inet {ip}/")),
        "{ip}: {out}"
    );
    let disk = s.client.get_disk("kdata").await.unwrap();
    assert_eq!(disk.size, 64 << 20);

    // What qci cannot do: named, nothing made; --lenient leaves it out, with a warning.
    let bad = manifest.replace(
        "      ports: [{name: http, containerPort: 8080}]",
        "      ports: [{name: http, containerPort: 8080}]\n      lifecycle: {preStop: {exec: {command: [x]}}}",
    );
    let bad = bad.replace("name: kweb\n", "name: kweb2\n");
    let (ok, _, err) = s.create("kweb2", &bad, &[]);
    assert!(!ok);
    assert!(err.contains("spec.containers[0].lifecycle"), "{err}");
    assert!(s.client.get_group("kweb2").await.is_err());

    // Out and back in: the same group.
    let (ok, yaml, err) = s.cli(&["get", "kweb", "-o", "k8s"]);
    assert!(ok, "{err}");
    assert!(
        yaml.contains("kind: Pod") && yaml.contains("kind: PersistentVolumeClaim"),
        "{yaml}"
    );
    let (ok, _, err) = s.cli(&["delete", "kweb", "--wait"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.create("again", &yaml, &["--wait"]);
    assert!(ok, "{err}\n{yaml}");
    assert!(!err.contains("warning"), "{err}");
    let again = s.client.get_group("kweb").await.unwrap();
    assert_eq!(again.spec, g.spec, "{yaml}");

    // `update -f` takes the manifest too: a changed ConfigMap value reaches the container.
    let changed = s.data_dir.join("changed.yaml");
    std::fs::write(
        &changed,
        manifest.replace("GREETING: hello", "GREETING: bonjour"),
    )
    .unwrap();
    let (ok, _, err) = s.cli(&["update", "kweb", "-f", changed.to_str().unwrap()]);
    assert!(ok, "{err}");
    let mut said = String::new();
    for _ in 0..100 {
        let (_, out, _) = exec("echo $GREETING");
        said = out;
        if said == "bonjour\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(said, "bonjour\n");
    let (ok, _, err) = s.cli(&["delete", "kweb", "--wait"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.create(
        "kweb3",
        &bad.replace("name: kweb2\n", "name: kweb3\n"),
        &["--lenient"],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("spec.containers[0].lifecycle") && err.contains("left out"),
        "{err}"
    );
}
