//! This node's capacity: what the groups in this store may hold together (`qci serve
//! --node-cpu/--node-memory`, default the machine's). Checked inside the transaction that
//! adds a group or grows one, as quotas are, so two creates at once cannot both take the last
//! of it.

use std::sync::{Arc, RwLock};

use qci_spec::NodeResources;
use rusqlite::Connection;

use crate::{Result, Store, StoreError};

pub(crate) type SharedCapacity = Arc<RwLock<Option<NodeResources>>>;
pub(crate) type SharedName = Arc<RwLock<Option<String>>>;

/// What the groups hold: the normalised sizes of those not finished (a Succeeded or Failed
/// group runs nothing), and how many. A group being deleted holds its size until it is gone.
pub(crate) fn node_use(conn: &Connection) -> Result<(NodeResources, u32)> {
    Ok(conn.query_row(
        "SELECT COUNT(*),
                COALESCE(SUM(json_extract(resources, '$.cpu')), 0.0),
                COALESCE(SUM(json_extract(resources, '$.memory_bytes')), 0)
           FROM container_groups
          WHERE json_extract(status, '$.phase') NOT IN ('Succeeded', 'Failed')",
        [],
        |r| {
            Ok((
                NodeResources {
                    cpu: r.get::<_, f64>(1)?.max(0.0),
                    memory_bytes: r.get::<_, i64>(2)?.max(0) as u64,
                },
                r.get::<_, i64>(0)?.max(0) as u32,
            ))
        },
    )?)
}

/// Refuses the transaction's change (already written in `conn`) if the groups now hold more
/// than `capacity`; `asked` is what the change added, for the message.
pub(crate) fn enforce_after(
    conn: &Connection,
    capacity: Option<NodeResources>,
    asked: NodeResources,
) -> Result<()> {
    let Some(cap) = capacity else {
        return Ok(());
    };
    if asked.cpu <= 0.0 && asked.memory_bytes == 0 {
        return Ok(());
    }
    let (held, _) = node_use(conn)?;
    // (A thousandth of a core of slack: sizes are sums of floats.)
    if held.cpu > cap.cpu + 1e-6 || held.memory_bytes > cap.memory_bytes {
        let before = NodeResources {
            cpu: (held.cpu - asked.cpu).max(0.0),
            memory_bytes: held.memory_bytes.saturating_sub(asked.memory_bytes),
        };
        return Err(StoreError::NodeFull {
            asked,
            free: NodeResources {
                cpu: (cap.cpu - before.cpu).max(0.0),
                memory_bytes: cap.memory_bytes.saturating_sub(before.memory_bytes),
            },
            capacity: cap,
        });
    }
    Ok(())
}

impl Store {
    /// Sets what this node offers groups (None: no limit).
    pub fn set_node_capacity(&self, capacity: Option<NodeResources>) {
        *self.capacity.write().unwrap_or_else(|p| p.into_inner()) = capacity;
    }

    pub(crate) fn node_capacity(&self) -> Option<NodeResources> {
        *self.capacity.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Names the node this store's groups run on (shown on every group).
    pub fn set_node_name(&self, name: &str) {
        *self.node_name.write().unwrap_or_else(|p| p.into_inner()) = Some(name.to_string());
    }

    pub(crate) fn node_name(&self) -> Option<String> {
        self.node_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What this node's groups hold, and how many they are.
    pub fn node_use(&self) -> Result<(NodeResources, u32)> {
        node_use(&self.conn())
    }
}

#[cfg(test)]
mod tests {
    use qci_spec::{GroupPhase, GroupResources, GroupStatus, NodeResources};

    use crate::tests::spec;
    use crate::{Store, StoreError};

    const GIB: u64 = 1 << 30;

    fn size(cpu: f64, gib: u64) -> GroupResources {
        GroupResources {
            requested_cpu: cpu,
            requested_memory_bytes: gib * GIB,
            cpu,
            memory_bytes: gib * GIB,
            price_per_hour: None,
        }
    }

    #[test]
    fn groups_hold_the_node_to_its_capacity() {
        let s = Store::open_in_memory().unwrap();
        // No capacity set: anything goes.
        s.create_sized_group("t", &spec("free"), &size(64.0, 256))
            .unwrap();
        s.remove_group(&s.find_group("t", "free").unwrap().id)
            .unwrap();
        s.set_node_capacity(Some(NodeResources {
            cpu: 1.0,
            memory_bytes: 2 * GIB,
        }));
        let a = s
            .create_sized_group("t", &spec("a"), &size(0.5, 1))
            .unwrap();
        s.create_sized_group("u", &spec("b"), &size(0.5, 1))
            .unwrap();
        assert_eq!(
            s.node_use().unwrap(),
            (
                NodeResources {
                    cpu: 1.0,
                    memory_bytes: 2 * GIB
                },
                2
            )
        );
        // Full: refused with what it needs and what is free; nothing stored.
        match s.create_sized_group("t", &spec("c"), &size(0.25, 1)) {
            Err(StoreError::NodeFull { asked, free, .. }) => {
                assert_eq!((asked.cpu, free.cpu, free.memory_bytes), (0.25, 0.0, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(s.find_group("t", "c").is_err());
        // A dry run says the same.
        assert!(matches!(
            s.try_create_group("t", &spec("c"), &size(0.25, 1)),
            Err(StoreError::NodeFull { .. })
        ));
        // Growing a group past the node is refused; shrinking is not.
        assert!(matches!(
            s.update_group(&a.id, &spec("a"), &size(1.0, 2)),
            Err(StoreError::NodeFull { .. })
        ));
        s.update_group(&a.id, &spec("a"), &size(0.25, 1)).unwrap();
        // A finished group holds nothing.
        let status = GroupStatus {
            phase: GroupPhase::Failed,
            ..Default::default()
        };
        s.set_status(&a.id, &status).unwrap();
        s.create_sized_group("t", &spec("c"), &size(0.5, 1))
            .unwrap();
    }
}
