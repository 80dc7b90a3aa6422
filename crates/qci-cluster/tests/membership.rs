//! Membership on a real three-member etcd (Debian's etcd-server): joining, a name clash
//! refused, a restart taking its own name back, allocation reports and cordons never undoing
//! each other, a node that stops renewing turning NotReady, and one etcd member lost.

use std::time::{Duration, Instant};

use qci_cluster::{Cluster, ClusterError, LEASE_TTL, NodeConfig};
use qci_spec::NodeResources;
use qci_testkit::EtcdCluster;

fn config(name: &str, id: &str, cores: f64) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        id: id.into(),
        address: format!("127.0.0.1:{}", 7000 + name.len()),
        capacity: NodeResources {
            cpu: cores,
            memory_bytes: 8 << 30,
        },
        version: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_report_cordon_and_expire() {
    let mut etcd = EtcdCluster::start(3);
    let cluster = Cluster::connect(&etcd.endpoints).await.expect("connect");
    let a = cluster
        .join(config("alpha", "id-a", 4.0))
        .await
        .expect("alpha joins");
    let b = cluster
        .join(config("beta", "id-b", 2.0))
        .await
        .expect("beta joins");
    let nodes = cluster.nodes().await.unwrap();
    let names: Vec<(&str, bool, f64)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.ready, n.capacity.cpu))
        .collect();
    assert_eq!(names, [("alpha", true, 4.0), ("beta", true, 2.0)]);

    // Another machine under a name in use is refused, naming where the name lives.
    match cluster.join(config("alpha", "id-other", 1.0)).await {
        Err(ClusterError::NameTaken { name, address }) => {
            assert_eq!(
                (name.as_str(), address.as_str()),
                ("alpha", "127.0.0.1:7005")
            );
        }
        Ok(_) => panic!("a second alpha joined"),
        Err(e) => panic!("{e}"),
    }
    // The same node restarting (same id) takes its name back at once.
    let a2 = cluster
        .join(config("alpha", "id-a", 4.0))
        .await
        .expect("alpha again");
    drop(a);

    // Allocation reports and a cordon through another node: neither undoes the other.
    let (b_cordoned, _) = tokio::join!(cluster.set_cordoned("beta", true), async {
        b.report(
            NodeResources {
                cpu: 0.5,
                memory_bytes: 1 << 30,
            },
            2,
        )
    });
    b_cordoned.expect("cordon");
    let beta = qci_testkit::eventually("beta's allocation", 10, async || {
        let n = cluster.node("beta").await.unwrap();
        (n.groups == 2).then_some(n)
    })
    .await;
    assert!(beta.cordoned, "{beta:?}");
    assert_eq!(beta.allocated.cpu, 0.5);
    assert!(matches!(
        cluster.set_cordoned("gamma", true).await,
        Err(ClusterError::NoNode(_))
    ));

    // One etcd member down: the cluster answers, alpha stays Ready past two renewals.
    etcd.kill(1);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        cluster
            .node("alpha")
            .await
            .expect("with a member down")
            .ready
    );

    // beta stops renewing (its process gone): NotReady within the lease's life, still listed.
    drop(b);
    let t = Instant::now();
    qci_testkit::eventually("beta NotReady", LEASE_TTL as u64 + 5, async || {
        (!cluster.node("beta").await.unwrap().ready).then_some(())
    })
    .await;
    assert!(
        t.elapsed() >= Duration::from_secs(5),
        "NotReady before its lease ran out"
    );
    let nodes = cluster.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes[0].ready && !nodes[1].ready, "{nodes:?}");
    // beta back: Ready, still cordoned (a cordon survives a restart).
    let b2 = cluster
        .join(config("beta", "id-b", 2.0))
        .await
        .expect("beta back");
    let beta = cluster.node("beta").await.unwrap();
    assert!(beta.ready && beta.cordoned, "{beta:?}");
    assert!(a2.running() && b2.running());
}
