//! Where a new group should run: a pure decision over the nodes as etcd has them (the
//! placement itself is written in the transaction that books the node, a later stage).
//!
//! A node can take the group when it is Ready, not cordoned and has room for the group's
//! normalised size; a group with a disk can only go to the disk's node. Among the nodes that
//! can, the choice prefers the node holding more of the group's images (no pull), then the one
//! with fewer of the tenant's groups (spread: a node's loss takes less of one tenant), then the
//! one with more room left (balance), then the name (the same answer every time). When none
//! can, the answer says why for every node, as `kubectl describe` does for a Pending pod.

use qci_spec::{Node, NodeResources};

/// What the group needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub size: NodeResources,
    /// The node its disk lives on, if it has one.
    pub disk_node: Option<String>,
}

/// A node as the scheduler weighs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: Node,
    /// How many of the group's images the node already holds.
    pub images_held: usize,
    /// How many groups of the same tenant it runs.
    pub tenant_groups: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Node(String),
    /// Nothing can run it now; why, node by node.
    Unschedulable(String),
}

/// Why `c` cannot take the group, or None if it can.
fn unfit(c: &Candidate, req: &Request) -> Option<String> {
    let n = &c.node;
    if !n.ready {
        return Some(format!("{}: NotReady", n.name));
    }
    if n.cordoned {
        return Some(format!("{}: cordoned", n.name));
    }
    let free_cpu = n.capacity.cpu - n.allocated.cpu;
    let free_mem = n
        .capacity
        .memory_bytes
        .saturating_sub(n.allocated.memory_bytes);
    let mut short = Vec::new();
    if req.size.cpu > free_cpu + 1e-6 {
        short.push(format!(
            "{} cores free of {}",
            round(free_cpu.max(0.0)),
            round(n.capacity.cpu)
        ));
    }
    if req.size.memory_bytes > free_mem {
        short.push(format!(
            "{} MiB free of {}",
            free_mem >> 20,
            n.capacity.memory_bytes >> 20
        ));
    }
    (!short.is_empty()).then(|| format!("{}: {}", n.name, short.join(", ")))
}

fn round(c: f64) -> f64 {
    (c * 1000.0).round() / 1000.0
}

/// Picks the node for a group needing `req` among `candidates`.
pub fn place(req: &Request, candidates: &[Candidate]) -> Placement {
    let mut why = Vec::new();
    let mut fit: Vec<&Candidate> = Vec::new();
    for c in candidates {
        if let Some(d) = &req.disk_node
            && *d != c.node.name
        {
            continue;
        }
        match unfit(c, req) {
            Some(reason) => why.push(reason),
            None => fit.push(c),
        }
    }
    let room = |c: &Candidate| {
        let n = &c.node;
        let cpu = if n.capacity.cpu > 0.0 {
            (n.capacity.cpu - n.allocated.cpu - req.size.cpu) / n.capacity.cpu
        } else {
            0.0
        };
        let mem = if n.capacity.memory_bytes > 0 {
            n.capacity
                .memory_bytes
                .saturating_sub(n.allocated.memory_bytes + req.size.memory_bytes) as f64
                / n.capacity.memory_bytes as f64
        } else {
            0.0
        };
        cpu.min(mem)
    };
    fit.sort_by(|a, b| {
        b.images_held
            .cmp(&a.images_held)
            .then(a.tenant_groups.cmp(&b.tenant_groups))
            .then(room(b).total_cmp(&room(a)))
            .then(a.node.name.cmp(&b.node.name))
    });
    match fit.first() {
        Some(c) => Placement::Node(c.node.name.clone()),
        None => {
            let asked = format!(
                "it needs {} cores and {} MiB",
                round(req.size.cpu),
                req.size.memory_bytes >> 20
            );
            Placement::Unschedulable(match &req.disk_node {
                Some(d) if why.is_empty() => {
                    format!("its disk is on node {d:?}, which is not in the cluster")
                }
                Some(d) => format!("its disk is on node {d:?} ({asked}): {}", why.join("; ")),
                None if why.is_empty() => "the cluster has no nodes".to_string(),
                None => format!("no node can run it ({asked}): {}", why.join("; ")),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn node(name: &str, ready: bool, cordoned: bool, cap: (f64, u64), used: (f64, u64)) -> Node {
        Node {
            name: name.into(),
            address: format!("{name}:8080"),
            ready,
            cordoned,
            capacity: NodeResources {
                cpu: cap.0,
                memory_bytes: cap.1 * GIB,
            },
            allocated: NodeResources {
                cpu: used.0,
                memory_bytes: used.1 * GIB,
            },
            groups: 0,
            version: "test".into(),
            joined_at: Default::default(),
            updated_at: Default::default(),
        }
    }

    fn cand(n: Node, images_held: usize, tenant_groups: u32) -> Candidate {
        Candidate {
            node: n,
            images_held,
            tenant_groups,
        }
    }

    fn req(cpu: f64, gib: u64, disk: Option<&str>) -> Request {
        Request {
            size: NodeResources {
                cpu,
                memory_bytes: gib * GIB,
            },
            disk_node: disk.map(str::to_string),
        }
    }

    #[test]
    fn places_by_fit_disk_images_spread_and_room() {
        let ok = |name| node(name, true, false, (4.0, 8), (0.0, 0));
        let node = |n: Placement| match n {
            Placement::Node(n) => n,
            Placement::Unschedulable(why) => panic!("unschedulable: {why}"),
        };
        // Fit: a node without room is passed over.
        let c = [
            cand(self::node("a", true, false, (4.0, 8), (3.5, 2)), 0, 0),
            cand(ok("b"), 0, 0),
        ];
        assert_eq!(node(place(&req(1.0, 2, None), &c)), "b");
        // NotReady and cordoned nodes are passed over.
        let c = [
            cand(self::node("a", false, false, (4.0, 8), (0.0, 0)), 1, 0),
            cand(self::node("b", true, true, (4.0, 8), (0.0, 0)), 1, 0),
            cand(ok("c"), 0, 3),
        ];
        assert_eq!(node(place(&req(1.0, 2, None), &c)), "c");
        // Images held first, then the tenant's spread, then room, then the name.
        let c = [cand(ok("a"), 0, 0), cand(ok("b"), 1, 5)];
        assert_eq!(node(place(&req(1.0, 2, None), &c)), "b");
        let c = [cand(ok("a"), 1, 2), cand(ok("b"), 1, 1)];
        assert_eq!(node(place(&req(1.0, 2, None), &c)), "b");
        let c = [
            cand(self::node("a", true, false, (4.0, 8), (2.0, 4)), 0, 0),
            cand(self::node("b", true, false, (4.0, 8), (1.0, 1)), 0, 0),
        ];
        assert_eq!(node(place(&req(1.0, 2, None), &c)), "b");
        let c = [cand(ok("b"), 0, 0), cand(ok("a"), 0, 0)];
        assert_eq!(node(place(&req(1.0, 2, None), &c)), "a");
        // A disk pins the group to its node, even against images and room elsewhere.
        let c = [
            cand(ok("a"), 3, 0),
            cand(self::node("b", true, false, (4.0, 8), (2.0, 4)), 0, 9),
        ];
        assert_eq!(node(place(&req(1.0, 2, Some("b")), &c)), "b");
    }

    #[test]
    fn says_why_nothing_can_run_it() {
        let c = [
            cand(node("a", false, false, (4.0, 8), (0.0, 0)), 0, 0),
            cand(node("b", true, true, (4.0, 8), (0.0, 0)), 0, 0),
            cand(node("c", true, false, (2.0, 4), (1.5, 3)), 0, 0),
        ];
        let unschedulable = |r: &Request, c: &[Candidate]| match place(r, c) {
            Placement::Unschedulable(why) => why,
            Placement::Node(n) => panic!("placed on {n}"),
        };
        assert_eq!(
            unschedulable(&req(1.0, 2, None), &c),
            "no node can run it (it needs 1 cores and 2048 MiB): a: NotReady; b: cordoned; \
             c: 0.5 cores free of 2, 1024 MiB free of 4096"
        );
        assert_eq!(
            unschedulable(&req(1.0, 2, Some("a")), &c),
            "its disk is on node \"a\" (it needs 1 cores and 2048 MiB): a: NotReady"
        );
        assert_eq!(
            unschedulable(&req(1.0, 2, Some("z")), &c),
            "its disk is on node \"z\", which is not in the cluster"
        );
        assert_eq!(
            unschedulable(&req(1.0, 2, None), &[]),
            "the cluster has no nodes"
        );
    }
}
