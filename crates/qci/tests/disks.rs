//! End-to-end: disks (real sparse files, ext4, loop devices), their attachment to one group at a
//! time, size enforcement, online growth, crash recovery, and in-place config-file updates.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qci_spec::{DiskPhase, GroupPhase};
use qci_testkit::{Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

/// Loop devices bound to `image`, from sysfs.
fn loops_of(image: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
    {
        let b = std::fs::read_to_string(e.path().join("loop/backing_file")).unwrap_or_default();
        if Path::new(b.trim_end()) == image {
            out.push(Path::new("/dev").join(e.file_name()));
        }
    }
    out
}

/// Mounts of the whole filesystem of one of `devs` (binds of a sub_path inside it are not
/// mounts of the disk, only views of it).
fn mounts_of(devs: &[PathBuf]) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter(|l| l.split(' ').nth(3) == Some("/"))
        .filter(|l| {
            l.split_once(" - ")
                .and_then(|(_, post)| post.split(' ').nth(1))
                .is_some_and(|src| devs.iter().any(|d| Path::new(src) == d))
        })
        .map(|l| l.split(' ').nth(4).unwrap().to_string())
        .collect()
}

/// Waits until no loop device is bound to `image` (autoclear runs as the mount goes).
async fn wait_unbound(image: &Path) {
    let start = Instant::now();
    while !loops_of(image).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} is still bound to {:?}",
            image.display(),
            loops_of(image)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn need_loop_devices() {
    assert!(
        Path::new("/dev/loop-control").exists(),
        "these tests need loop devices (/dev/loop-control is missing)"
    );
    for tool in ["mkfs.ext4", "resize2fs", "e2fsck"] {
        assert!(
            std::process::Command::new(tool).arg("-V").output().is_ok(),
            "these tests need {tool} (Debian package e2fsprogs)"
        );
    }
}

async fn wait_logs(s: &Server, id: &str, c: &str, want: &str) -> String {
    let start = Instant::now();
    loop {
        let l = s.logs(id, c).await;
        if l.contains(want) {
            return l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{c} never printed {want:?}: {l}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_keeps_its_data_enforces_its_size_and_serves_one_group_at_a_time() {
    need_loop_devices();
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;

    // Bad disks are refused, each field named, and nothing is made.
    let (ok, _, err) = s.cli(&[
        "disk", "create", "--name", "Bad_Name", "--size", "1Ki", "--type", "ssd",
    ]);
    assert!(!ok);
    for f in ["name", "size", "type"] {
        assert!(err.contains(&format!("{f}:")), "{f} not named: {err}");
    }
    let (ok, out, err) = s.cli(&["disk", "create", "--name", "data", "--size", "24Mi"]);
    assert!(ok, "{err}");
    let disk_id = out.trim().to_string();
    let img = s
        .data_dir
        .join("disks")
        .join(format!("{disk_id}.img"))
        .canonicalize()
        .unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 24 << 20);
    assert!(
        std::fs::metadata(&img).unwrap().blocks() * 512 < 8 << 20,
        "a new disk is sparse"
    );
    let (ok, _, err) = s.cli(&["disk", "create", "--name", "data", "--size", "24Mi"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let d = s.client.get_disk("data").await.unwrap();
    assert_eq!(d.phase, DiskPhase::Available);

    // A group writes to it (through a sub_path, created on the disk) and fills it.
    let writer = format!(
        r#"name: writer
termination_grace_period_seconds: 1
volumes: [{{name: data, disk: {{id: data}}}}]
containers:
  - name: db
    image: '{image}'
    command: [sh, -c, 'echo persisted > /var/lib/db/f; dd if=/dev/zero of=/var/lib/db/big bs=1M count=64 2>&1 | head -1; echo filled; sleep 600']
    volume_mounts: [{{name: data, mount_path: /var/lib/db, sub_path: mysql}}]
"#
    );
    let (ok, out, err) = s.create("writer", &writer, &["--wait"]);
    assert!(ok, "{err}");
    let writer_id = out.trim().to_string();
    let log = wait_logs(&s, &writer_id, "db", "filled").await;
    assert!(log.contains("No space left on device"), "{log}");
    let used = std::fs::metadata(&img).unwrap().blocks() * 512;
    assert!(
        used <= 25 << 20,
        "the host holds {used} bytes for a 24 MiB disk"
    );
    let d = s.client.get_disk("data").await.unwrap();
    assert_eq!(d.phase, DiskPhase::InUse);
    assert_eq!(d.group_name.as_deref(), Some("writer"));
    let devs = loops_of(&img);
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!(mounts_of(&devs).len(), 1, "{:?}", mounts_of(&devs));

    // A second group asking for it is refused, naming the disk and its group; nothing is made.
    let reader = format!(
        r#"name: reader
termination_grace_period_seconds: 1
volumes: [{{name: d, disk: {{id: {disk_id}}}}}]
containers:
  - name: r
    image: '{image}'
    command: [sh, -c, 'cat /d/mysql/f; df -k /d | tail -1; sleep 600']
    volume_mounts: [{{name: d, mount_path: /d}}]
"#
    );
    let (ok, _, err) = s.create("reader", &reader, &[]);
    assert!(!ok);
    assert!(
        err.contains("volumes[0].disk.id") && err.contains("in use by group \"writer\""),
        "{err}"
    );
    assert!(s.client.get_group("reader").await.is_err());
    let (ok, _, err) = s.cli(&["disk", "rm", "data"]);
    assert!(!ok && err.contains("in use by group \"writer\""), "{err}");

    // Deleting the group detaches the disk: unmounted, loop device gone, data kept.
    let (ok, _, err) = s.cli(&["delete", "writer", "--wait"]);
    assert!(ok, "{err}");
    assert_eq!(
        s.client.get_disk("data").await.unwrap().phase,
        DiskPhase::Available
    );
    wait_unbound(&img).await;
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());

    // The next group reads what the first wrote, and sees the disk grow online.
    let (ok, out, err) = s.create("reader", &reader, &["--wait"]);
    assert!(ok, "{err}");
    let reader_id = out.trim().to_string();
    let log = wait_logs(&s, &reader_id, "r", "persisted").await;
    let kib = |l: &str| -> u64 { l.split_whitespace().nth(1).unwrap().parse().unwrap() };
    let before = kib(log.lines().nth(1).unwrap());
    assert!((18_000..25_000).contains(&before), "df: {log}");
    let (ok, out, err) = s.cli(&["disk", "resize", "data", "--size", "48Mi"]);
    assert!(ok, "{err}");
    assert!(out.contains("48"), "{out}");
    let (ok, _, err) = s.cli(&["disk", "resize", "data", "--size", "32Mi"]);
    assert!(!ok && err.contains("only grow"), "{err}");
    let df = |group: &str| {
        let (ok, out, err) = s.cli(&["exec", group, "--", "df", "-k", "/d"]);
        assert!(ok, "{err}");
        kib(out.lines().nth(1).unwrap())
    };
    match s.client.get_disk("data").await.unwrap().message {
        // Grown online: the running container sees it at once.
        None => assert!(df("reader") > before + 20_000, "not grown online"),
        // Online growth needs CAP_SYS_RESOURCE; without it the growth waits for the next attach.
        Some(m) => {
            assert!(m.contains("next attached"), "{m}");
            let (ok, _, err) = s.cli(&["delete", "reader", "--wait"]);
            assert!(ok, "{err}");
            wait_unbound(&img).await;
            let (ok, _, err) = s.create("reader", &reader, &["--wait"]);
            assert!(ok, "{err}");
            assert!(
                df("reader") > before + 20_000,
                "not grown at the next attach"
            );
            assert!(s.client.get_disk("data").await.unwrap().message.is_none());
        }
    }
    let (ok, out, _) = s.cli(&["exec", "reader", "--", "cat", "/d/mysql/f"]);
    assert!(ok && out == "persisted\n", "{out}");

    // Deleting the group, then the disk, leaves no mount, loop device or file.
    let (ok, _, err) = s.cli(&["delete", "reader", "--wait"]);
    assert!(ok, "{err}");
    wait_unbound(&img).await;
    let (ok, _, err) = s.cli(&["disk", "rm", "data"]);
    assert!(ok, "{err}");
    assert!(!img.exists());
    assert!(s.client.list_disks().await.unwrap().is_empty());
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

#[tokio::test(flavor = "multi_thread")]
async fn disks_survive_a_crash_of_serve_mounted_once_and_refuse_a_planted_symlink() {
    need_loop_devices();
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let mut s = Server::start(Path::new(QCI)).await;
    let (ok, out, err) = s.cli(&["disk", "create", "--name", "d1", "--size", "16Mi"]);
    assert!(ok, "{err}");
    let img = s
        .data_dir
        .join("disks")
        .join(format!("{}.img", out.trim()))
        .canonicalize()
        .unwrap();
    let (ok, _, err) = s.cli(&[
        "disk",
        "create",
        "--name",
        "fast",
        "--size",
        "16Mi",
        "--type",
        "performance",
    ]);
    assert!(ok, "{err}");

    // A performance disk does not fit a standard instance; the message says what does.
    let fast = |it: &str| {
        format!(
            "name: fast\n{it}termination_grace_period_seconds: 1\nvolumes: [{{name: f, disk: {{id: fast}}}}]\ncontainers: [{{name: c, image: '{image}', command: [sleep, '600'], volume_mounts: [{{name: f, mount_path: /f}}]}}]\n"
        )
    };
    let (ok, _, err) = s.create("fast", &fast(""), &[]);
    assert!(!ok);
    assert!(
        err.contains("volumes[0].disk.id")
            && err.contains("instance types that take performance disks: performance"),
        "{err}"
    );
    let (ok, _, err) = s.create("fast", &fast("instance_type: gpu\n"), &[]);
    assert!(
        !ok && err.contains("instance_type") && err.contains("unknown instance type"),
        "{err}"
    );
    let (ok, _, err) = s.create("fast", &fast("instance_type: performance\n"), &["--wait"]);
    assert!(ok, "{err}");

    // A group plants a symlink to / on the disk, then runs on.
    let spec = format!(
        r#"name: planter
termination_grace_period_seconds: 1
volumes: [{{name: d, disk: {{id: d1}}}}]
containers:
  - name: c
    image: '{image}'
    command: [sh, -c, 'ln -s / /d/evil; echo planted; sleep 600']
    volume_mounts: [{{name: d, mount_path: /d}}]
"#
    );
    let (ok, out, err) = s.create("planter", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    wait_logs(&s, &id, "c", "planted").await;
    let pid_before = s.client.get_group(&id).await.unwrap().status.containers[0].pid;

    // SIGKILL of serve: after the restart the disk is mounted exactly once, in the same group.
    s.kill9();
    s.restart().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let g = s.client.get_group(&id).await.unwrap();
    assert_eq!(g.status.phase, GroupPhase::Running);
    assert_eq!(
        g.status.containers[0].pid, pid_before,
        "the container was adopted"
    );
    let devs = loops_of(&img);
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!(mounts_of(&devs).len(), 1, "{:?}", mounts_of(&devs));
    assert_eq!(
        s.client.get_disk("d1").await.unwrap().group_name.as_deref(),
        Some("planter")
    );

    let (ok, _, err) = s.cli(&["delete", "planter", "--wait"]);
    assert!(ok, "{err}");
    wait_unbound(&img).await;

    // A later group's sub_path through the planted link is refused; nothing outside is reached.
    let spec = format!(
        "name: victim\nrestart_policy: Never\nvolumes: [{{name: d, disk: {{id: d1}}}}]\ncontainers: [{{name: c, image: '{image}', command: [ls, /host/etc], volume_mounts: [{{name: d, mount_path: /host, sub_path: evil}}]}}]\n"
    );
    let (ok, _, err) = s.create("victim", &spec, &["--wait"]);
    assert!(!ok, "a sub_path through a planted symlink was mounted");
    assert!(err.contains("symlink"), "{err}");
    let (ok, _, err) = s.cli(&["delete", "victim", "--wait"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.cli(&["delete", "fast", "--wait"]);
    assert!(ok, "{err}");
    wait_unbound(&img).await;
    for d in ["d1", "fast"] {
        let (ok, _, err) = s.cli(&["disk", "rm", d]);
        assert!(ok, "{err}");
    }
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

#[tokio::test(flavor = "multi_thread")]
async fn config_files_are_updated_in_running_containers_atomically() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    // Big enough that a file written in place would be seen half-written.
    let v1 = "1".repeat(200_000);
    let v2 = "2".repeat(300_000);
    let spec = |content: &str| {
        format!(
            r#"name: cfg
termination_grace_period_seconds: 1
volumes:
  - name: conf
    config_file:
      files:
        - {{path: app.conf, content: "{content}"}}
containers:
  - name: watcher
    image: '{image}'
    command: [sh, -c, 'while true; do wc -c < /etc/app/app.conf; sleep 0.01; done']
    volume_mounts: [{{name: conf, mount_path: /etc/app}}]
  - name: pinned
    image: '{image}'
    command: [sh, -c, 'wc -c < /etc/app.conf; sleep 600']
    volume_mounts: [{{name: conf, mount_path: /etc/app.conf, sub_path: app.conf}}]
"#
        )
    };
    let (ok, out, err) = s.create("cfg", &spec(&v1), &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    wait_logs(&s, &id, "watcher", "200000").await;
    let g = s.client.get_group(&id).await.unwrap();
    let pid = |g: &qci_spec::ContainerGroup, c: &str| {
        g.status
            .containers
            .iter()
            .find(|s| s.name == c)
            .unwrap()
            .pid
    };
    let watcher_pid = pid(&g, "watcher");
    let pinned_pid = pid(&g, "pinned");

    let file = s.data_dir.join("cfg-v2.spec");
    std::fs::write(&file, spec(&v2)).unwrap();
    let (ok, _, err) = s.cli(&["update", "cfg", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let log = wait_logs(&s, &id, "watcher", "300000").await;
    for line in log.lines() {
        assert!(
            line == "200000" || line == "300000",
            "the watcher saw a half-written file ({line} bytes)"
        );
    }
    // The whole-volume mount changed in place; the sub_path mount's container was made again.
    let start = Instant::now();
    loop {
        let g = s.client.get_group(&id).await.unwrap();
        if g.status.phase == GroupPhase::Running && pid(&g, "pinned") != pinned_pid {
            assert_eq!(pid(&g, "watcher"), watcher_pid, "the watcher was restarted");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{:?}", g.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_logs(&s, &id, "pinned", "300000").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_work_left_by_a_crash_is_finished_by_the_next_start() {
    let mut s = Server::start(Path::new(QCI)).await;
    let (ok, gone_id, err) = s.cli(&["disk", "create", "--name", "gone", "--size", "32Mi"]);
    assert!(ok, "{err}");
    let gone_id = gone_id.trim().to_string();
    let disks_dir = s.data_dir.join("disks");
    let image = |id: &str| disks_dir.join(format!("{id}.img"));
    assert!(image(&gone_id).exists());
    s.kill9();
    // What a crash can leave: a disk recorded but not yet made, and one whose deletion was
    // asked for but whose image is still there.
    {
        let store = qci_store::Store::open(&s.data_dir).unwrap();
        let spec = qci_spec::DiskSpec {
            name: "fresh".into(),
            size: qci_spec::Quantity("32Mi".into()),
            disk_type: "standard".into(),
        };
        store
            .create_disk("d-crashfresh", "default", &spec, 32 << 20)
            .unwrap();
        store.request_disk_deletion(&gone_id).unwrap();
    }
    s.restart().await;
    let start = Instant::now();
    loop {
        let disks = s.client.list_disks().await.unwrap();
        let fresh = disks.iter().find(|d| d.name == "fresh");
        if disks.len() == 1 && fresh.is_some_and(|d| d.phase == DiskPhase::Available) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{disks:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        image("d-crashfresh").exists(),
        "the recorded disk was not made"
    );
    assert!(
        !image(&gone_id).exists(),
        "the deleted disk's image is left"
    );
    let (ok, _, err) = s.cli(&["disk", "rm", "fresh"]);
    assert!(ok, "{err}");
    assert!(!image("d-crashfresh").exists());
    assert!(s.client.list_disks().await.unwrap().is_empty());
}

/// Volumes in a gVisor group (`runtime: gvisor`): a disk through a sub_path and a config file
/// reach the container through runsc's gofer; what it writes is on the disk (read back by a
/// runc group after it goes), the disk's size holds, and the disk is detached at delete.
#[tokio::test(flavor = "multi_thread")]
async fn a_gvisor_group_writes_to_its_disk_through_a_sub_path() {
    need_loop_devices();
    qci_testkit::require(&[("runsc", "runsc")]);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let (ok, _, err) = s.cli(&["disk", "create", "--name", "gvd", "--size", "24Mi"]);
    assert!(ok, "{err}");
    let writer = format!(
        r#"name: gvwriter
runtime: gvisor
termination_grace_period_seconds: 1
volumes:
  - {{name: data, disk: {{id: gvd}}}}
  - name: conf
    config_file: {{files: [{{path: app.conf, content: "mode=sandboxed"}}]}}
containers:
  - name: db
    image: '{image}'
    command: [sh, -c, 'cat /etc/app.conf; echo; echo persisted-from-gvisor > /var/lib/db/f; dd if=/dev/zero of=/var/lib/db/big bs=1M count=64 2>&1 | head -1; rm /var/lib/db/big; echo filled; sleep 600']
    volume_mounts:
      - {{name: data, mount_path: /var/lib/db, sub_path: app}}
      - {{name: conf, mount_path: /etc/app.conf, sub_path: app.conf}}
"#
    );
    let (ok, out, err) = s.create("gvwriter", &writer, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let log = wait_logs(&s, &id, "db", "filled").await;
    assert!(log.contains("mode=sandboxed"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    let (ok, _, err) = s.cli(&["delete", "gvwriter", "--wait"]);
    assert!(ok, "{err}");
    assert!(s.runsc_ids().is_empty(), "{:?}", s.runsc_ids());
    assert_eq!(
        s.client.get_disk("gvd").await.unwrap().phase,
        DiskPhase::Available
    );
    // Read back on runc: the file is on the disk, in the sub_path's directory.
    let reader = format!(
        "name: gvreader\nrestart_policy: Never\nvolumes: [{{name: d, disk: {{id: gvd}}}}]\ncontainers: [{{name: r, image: '{image}', command: [cat, /d/app/f], volume_mounts: [{{name: d, mount_path: /d}}]}}]\n"
    );
    let (ok, out, err) = s.create("gvreader", &reader, &[]);
    assert!(ok, "{err}");
    let log = wait_logs(&s, out.trim(), "r", "persisted-from-gvisor").await;
    assert_eq!(log.trim(), "persisted-from-gvisor");
}
