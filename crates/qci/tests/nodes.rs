//! End-to-end: several qci nodes on a real three-member etcd (Debian's etcd-server). Each node
//! is its own `qci serve` with its own data dir and network namespace. They see each other
//! (Ready, what each offers and holds), a cordon through one node keeps new groups off
//! another, a name in use is refused, a node that dies turns NotReady within its lease, and
//! the cluster keeps answering with one etcd member down. A lone `qci serve` is one node.

use std::path::Path;
use std::time::{Duration, Instant};

use qci_testkit::{EtcdCluster, Registry, Server, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

fn node_flags<'a>(etcd: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "--etcd",
        etcd,
        "--node-name",
        name,
        "--node-cpu",
        "4",
        "--node-memory",
        "8Gi",
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_see_each_other_cordon_and_go_not_ready() {
    let mut etcd = EtcdCluster::start(3);
    let urls = etcd.urls();
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let a = Server::start_with(Path::new(QCI), &node_flags(&urls, "node-a")).await;
    let mut b = Server::start_with(Path::new(QCI), &node_flags(&urls, "node-b")).await;

    // Both Ready, as either sees them.
    let (ok, out, err) = a.cli(&["node", "ls"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (line, name) in lines[1..].iter().zip(["node-a", "node-b"]) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cols[..2], [name, "Ready"], "{out}");
        assert_eq!(cols[3], "4", "{out}");
        assert!(line.contains("8.00 GiB"), "{out}");
    }
    let nodes = b.client.list_nodes().await.expect("nodes through b");
    assert_eq!(nodes.len(), 2);

    // A group on b: its allocation shows on b's record, as a sees it.
    let spec = format!(
        "name: held\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '600'], cpu: 0.5, memory: 512Mi}}]\n"
    );
    let (ok, _, err) = b.create("held", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let (ok, out, _) = b.cli(&["get", "held"]);
    assert!(ok && out.contains("Node:      node-b"), "{out}");
    let node_b = qci_testkit::eventually("b's allocation, seen from a", 15, async || {
        let n = a.client.get_node("node-b").await.unwrap();
        (n.groups == 1).then_some(n)
    })
    .await;
    assert_eq!(node_b.allocated.cpu, 0.5);
    assert_eq!(node_b.allocated.memory_bytes, 1 << 30);

    // A cordon through a keeps new groups off b; uncordoned, b takes them again.
    let (ok, out, err) = a.cli(&["node", "cordon", "node-b"]);
    assert!(ok && out.contains("cordoned"), "{out}{err}");
    let (ok, out, _) = a.cli(&["node", "ls"]);
    assert!(ok && out.contains("Ready,SchedulingDisabled"), "{out}");
    let other = spec.replace("name: held", "name: refused");
    let (ok, _, err) = b.create("refused", &other, &[]);
    assert!(!ok && err.contains("node \"node-b\" is cordoned"), "{err}");
    assert!(b.client.get_group("refused").await.is_err());
    let (ok, _, err) = a.cli(&["node", "uncordon", "node-b"]);
    assert!(ok, "{err}");
    let (ok, _, err) = b.create("refused", &other, &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = a.cli(&["node", "cordon", "node-z"]);
    assert!(!ok && err.contains("no node named \"node-z\""), "{err}");

    // A second machine under a name in use does not start.
    let dir = tempfile::Builder::new()
        .prefix("qci-clash-")
        .tempdir_in(qci_testkit::test_root())
        .unwrap();
    let out = std::process::Command::new(QCI)
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", qci_testkit::free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--network-host-ns",
            "/proc/self/ns/net",
            "--basic-subnet",
            "none",
        ])
        .args(node_flags(&urls, "node-a"))
        .output()
        .expect("qci serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("\"node-a\" is in use by another qci node"),
        "{err}"
    );

    // One etcd member down: the cluster answers through the others.
    etcd.kill(0);
    let nodes = a
        .client
        .list_nodes()
        .await
        .expect("nodes with a member down");
    assert!(nodes.iter().all(|n| n.ready), "{nodes:?}");

    // b dies: NotReady once its lease runs out (10 s), still listed.
    b.kill9();
    let t = Instant::now();
    qci_testkit::eventually("b NotReady", 20, async || {
        let n = a.client.get_node("node-b").await.unwrap();
        (!n.ready).then_some(())
    })
    .await;
    assert!(t.elapsed() >= Duration::from_secs(3), "NotReady at once");
    let (ok, out, _) = a.cli(&["node", "ls"]);
    assert!(ok && out.contains("NotReady"), "{out}");
    assert!(a.client.get_node("node-a").await.unwrap().ready);
}

/// Without --etcd, this machine is the one node; there is nothing to cordon it from. What
/// --node-cpu and --node-memory say it offers holds its groups together.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_server_is_one_node() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &["--node-cpu", "2", "--node-memory", "4Gi"]).await;
    let nodes = s.client.list_nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert!(n.ready && !n.cordoned, "{n:?}");
    assert_eq!((n.capacity.cpu, n.capacity.memory_bytes), (2.0, 4 << 30));
    let (ok, out, _) = s.cli(&["node", "get", &n.name]);
    assert!(ok && out.contains("Capacity:  2 cores, 4.00 GiB"), "{out}");
    let (ok, _, err) = s.cli(&["node", "cordon", &n.name]);
    assert!(!ok && err.contains("runs alone"), "{err}");

    // 1.5 cores and 3 GiB held; a group of 1 core does not fit beside them (nothing made),
    // one of half a core does; once the first is gone, the large one fits.
    let spec = |name: &str, cpu: &str, mem: &str| {
        format!(
            "name: {name}\ntermination_grace_period_seconds: 1\ncpu: {cpu}\nmemory: {mem}\ncontainers: [{{name: c, image: '{image}', command: [sleep, '600']}}]\n"
        )
    };
    let (ok, _, err) = s.create("first", &spec("first", "1", "2Gi"), &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.create("second", &spec("second", "0.5", "1Gi"), &[]);
    assert!(ok, "{err}");
    for extra in [&["--dry-run"][..], &[]] {
        let (ok, _, err) = s.create("third", &spec("third", "1", "2Gi"), extra);
        assert!(
            !ok && err.contains("this node cannot hold the group beside its others: 1 cores asked, 0.5 free of the node's 2"),
            "{extra:?}: {err}"
        );
    }
    assert!(s.client.get_group("third").await.is_err());
    let n = s.client.get_node(&n.name).await.unwrap();
    assert_eq!((n.allocated.cpu, n.groups), (1.5, 2), "{n:?}");
    let (ok, _, err) = s.cli(&["delete", "first", "--wait"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.create("third", &spec("third", "1", "2Gi"), &[]);
    assert!(ok, "{err}");
    // Flags that only mean something in a cluster need --etcd.
    let out = std::process::Command::new(QCI)
        .args(["serve", "--node-name", "x"])
        .output()
        .expect("qci serve");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--etcd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
