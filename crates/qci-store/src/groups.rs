//! Container groups: create (with their disks and addresses, in one transaction), find, list,
//! status, update, restart, deletion and the record deleted groups leave for their events.

use chrono::{DateTime, Utc};
use qci_spec::{
    AUTO_EIP, ContainerGroup, GroupPhase, GroupResources, GroupSpec, GroupStatus, QuotaUse,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Result, Sealer, Store, StoreError, disks, networks, parse_time, tenants, unique};

impl Store {
    /// Stores a new group in phase Pending. The spec must already be valid.
    /// Registry passwords are sealed before they are written; the returned group (like every
    /// group the store returns) holds them sealed.
    pub fn create_group(&self, owner: &str, spec: &GroupSpec) -> Result<ContainerGroup> {
        self.create_sized_group(owner, spec, &GroupResources::default())
    }

    /// [`Store::create_group`] with the group's size fixed.
    pub fn create_sized_group(
        &self,
        owner: &str,
        spec: &GroupSpec,
        resources: &GroupResources,
    ) -> Result<ContainerGroup> {
        self.insert_group(owner, spec, resources, true)
    }

    /// Everything [`Store::create_sized_group`] checks (the name, disks, addresses, quotas),
    /// in the same transaction, rolled back: the group as it would be, nothing stored.
    pub fn try_create_group(
        &self,
        owner: &str,
        spec: &GroupSpec,
        resources: &GroupResources,
    ) -> Result<ContainerGroup> {
        self.insert_group(owner, spec, resources, false)
    }

    fn insert_group(
        &self,
        owner: &str,
        spec: &GroupSpec,
        resources: &GroupResources,
        commit: bool,
    ) -> Result<ContainerGroup> {
        let mut spec = spec.clone();
        for c in &mut spec.registry_credentials {
            if !Sealer::is_sealed(&c.password) {
                c.password = self.sealer.seal(&c.password)?;
            }
        }
        let spec = &spec;
        let id = new_group_id();
        let now = Utc::now();
        let status = GroupStatus {
            phase: GroupPhase::Pending,
            ..Default::default()
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let r = tx.execute(
            "INSERT INTO container_groups (id, owner, name, spec, status, created_at, resources)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                owner,
                spec.name,
                serde_json::to_string(spec)?,
                serde_json::to_string(&status)?,
                now.to_rfc3339(),
                serde_json::to_string(resources)?
            ],
        );
        unique(r, || StoreError::NameTaken(spec.name.clone()))?;
        disks::attach(&tx, owner, &id, spec)?;
        networks::attach(&tx, &self.net_config(), owner, &id, spec)?;
        let auto_eip = spec.network.as_ref().and_then(|n| n.eip.as_deref()) == Some(AUTO_EIP);
        let asked = QuotaUse {
            groups: 1,
            cores: resources.cpu,
            memory: resources.memory_bytes,
            eips: u64::from(auto_eip),
            ..Default::default()
        };
        tenants::enforce_after(&tx, owner, &asked)?;
        crate::nodes::enforce_after(
            &tx,
            self.node_capacity(),
            qci_spec::NodeResources {
                cpu: resources.cpu,
                memory_bytes: resources.memory_bytes,
            },
        )?;
        if commit {
            tx.commit()?;
        }
        Ok(ContainerGroup {
            id,
            name: spec.name.clone(),
            owner: owner.to_string(),
            created_at: now,
            deletion_requested_at: None,
            restart_generation: 0,
            resources: resources.clone(),
            spec: spec.clone(),
            status,
            node: self.node_name(),
        })
    }

    /// Finds a group of `owner` by id, or else by name.
    pub fn find_group(&self, owner: &str, id_or_name: &str) -> Result<ContainerGroup> {
        let conn = self.conn();
        // An id first (it wins over a name that happens to equal it), then a name: two
        // lookups on the two unique keys, each statement parsed once per connection (parsing
        // was most of a GET's time).
        for key in ["id = ?2 AND owner = ?1", "owner = ?1 AND name = ?2"] {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {GROUP_COLUMNS} FROM container_groups WHERE {key}"
                ))?
                .query_row(params![owner, id_or_name], read_group_row)
                .optional()?;
            if let Some(r) = row {
                return r.map(|g| self.placed(g));
            }
        }
        Err(StoreError::NotFound(id_or_name.to_string()))
    }

    /// Any owner's group, by id (for the controller).
    pub fn get_group(&self, id: &str) -> Result<Option<ContainerGroup>> {
        Ok(group_by_id(&self.conn(), id)?.map(|g| self.placed(g)))
    }

    /// The owner's groups (every owner's with `None`), oldest first.
    pub fn list_groups(&self, owner: Option<&str>) -> Result<Vec<ContainerGroup>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {GROUP_COLUMNS} FROM container_groups WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id"
        ))?;
        let rows = st.query_map(params![owner], read_group_row)?;
        rows.map(|r| r?.map(|g| self.placed(g))).collect()
    }

    /// Every group of every owner (for the controller).
    pub fn all_groups(&self) -> Result<Vec<ContainerGroup>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {GROUP_COLUMNS} FROM container_groups ORDER BY created_at, id"
        ))?;
        let rows = st.query_map([], read_group_row)?;
        rows.map(|r| r?.map(|g| self.placed(g))).collect()
    }

    /// Replaces a group's observed status. Returns false if the group is gone. Once deletion
    /// was requested the phase stays Deleting, whatever a pass that began earlier reports.
    pub fn set_status(&self, id: &str, status: &GroupStatus) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE container_groups SET status = CASE WHEN deletion_requested_at IS NULL THEN ?2
                 ELSE json_set(?2, '$.phase', 'Deleting') END WHERE id = ?1",
            params![id, serde_json::to_string(status)?],
        )?;
        if n == 1 {
            self.changed();
        }
        Ok(n == 1)
    }

    /// Marks a group for deletion (idempotent); the controller removes it once cleaned up.
    pub fn request_deletion(&self, id: &str) -> Result<ContainerGroup> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE container_groups SET deletion_requested_at = COALESCE(deletion_requested_at, ?2),
                 status = json_set(status, '$.phase', 'Deleting') WHERE id = ?1",
            params![id, Utc::now().to_rfc3339()],
        )?;
        let g = updated(&conn, n, id).map(|g| self.placed(g));
        drop(conn);
        self.changed();
        g
    }

    /// Replaces a group's spec (and size); passwords are sealed, and a credential given as the
    /// mask keeps the password stored for its server. The name cannot change.
    pub fn update_group(
        &self,
        id: &str,
        spec: &GroupSpec,
        resources: &GroupResources,
    ) -> Result<ContainerGroup> {
        self.replace_spec(id, spec, resources, true)
    }

    /// Everything [`Store::update_group`] checks, rolled back: the group as it would be.
    pub fn try_update_group(
        &self,
        id: &str,
        spec: &GroupSpec,
        resources: &GroupResources,
    ) -> Result<ContainerGroup> {
        self.replace_spec(id, spec, resources, false)
    }

    fn replace_spec(
        &self,
        id: &str,
        spec: &GroupSpec,
        resources: &GroupResources,
        commit: bool,
    ) -> Result<ContainerGroup> {
        let old = self
            .get_group(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let mut spec = spec.clone();
        for c in &mut spec.registry_credentials {
            if c.password == qci_spec::PASSWORD_MASK
                && let Some(prev) = old
                    .spec
                    .registry_credentials
                    .iter()
                    .find(|o| o.registry() == c.registry())
            {
                c.password = prev.password.clone();
            } else if !Sealer::is_sealed(&c.password) {
                c.password = self.sealer.seal(&c.password)?;
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE container_groups SET spec = ?2, resources = ?3 WHERE id = ?1 AND deletion_requested_at IS NULL",
            params![id, serde_json::to_string(&spec)?, serde_json::to_string(resources)?],
        )?;
        // Only growth is checked: a group may always shrink, even over a lowered quota.
        let growth = QuotaUse {
            cores: (resources.cpu - old.resources.cpu).max(0.0),
            memory: resources
                .memory_bytes
                .saturating_sub(old.resources.memory_bytes),
            ..Default::default()
        };
        tenants::enforce_after(&tx, &old.owner, &growth)?;
        // (A finished group holds nothing: its update is not checked against the node.)
        crate::nodes::enforce_after(
            &tx,
            self.node_capacity(),
            qci_spec::NodeResources {
                cpu: growth.cores,
                memory_bytes: growth.memory,
            },
        )?;
        if !commit {
            return updated(&tx, n, id).map(|g| self.placed(g));
        }
        tx.commit()?;
        let g = updated(&conn, n, id).map(|g| self.placed(g));
        drop(conn);
        self.changed();
        g
    }

    /// Asks for the group's containers to be restarted (init containers first); returns it.
    pub fn request_restart(&self, id: &str) -> Result<ContainerGroup> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE container_groups SET restart_generation = restart_generation + 1
             WHERE id = ?1 AND deletion_requested_at IS NULL",
            params![id],
        )?;
        let g = updated(&conn, n, id).map(|g| self.placed(g));
        drop(conn);
        self.changed();
        g
    }

    /// Removes a group. Its events stay readable (by id or name) until
    /// [`Store::forget_deleted_groups`] drops them.
    pub fn remove_group(&self, id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO deleted_groups (id, owner, name, deleted_at)
             SELECT id, owner, name, ?2 FROM container_groups WHERE id = ?1",
            params![id, Utc::now().to_rfc3339()],
        )?;
        tx.execute("DELETE FROM container_groups WHERE id = ?1", params![id])?;
        tx.execute(
            "UPDATE disks SET group_id = NULL WHERE group_id = ?1",
            params![id],
        )?;
        networks::detach(&tx, id)?;
        tx.commit()?;
        drop(conn);
        self.changed();
        Ok(())
    }

    /// The id of a deleted group whose events are still kept, by id or name (the latest).
    pub fn find_deleted_group(&self, owner: &str, id_or_name: &str) -> Result<String> {
        self.conn()
            .query_row(
                "SELECT id FROM deleted_groups WHERE owner = ?1 AND (id = ?2 OR name = ?2)
                 ORDER BY id = ?2 DESC, deleted_at DESC LIMIT 1",
                params![owner, id_or_name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id_or_name.to_string()))
    }

    /// Drops the events of groups deleted before `before`.
    pub fn forget_deleted_groups(&self, before: DateTime<Utc>) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let cutoff = before.to_rfc3339();
        tx.execute(
            "DELETE FROM events WHERE group_id IN (SELECT id FROM deleted_groups WHERE deleted_at < ?1)",
            params![cutoff],
        )?;
        let n = tx.execute(
            "DELETE FROM deleted_groups WHERE deleted_at < ?1",
            params![cutoff],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

fn group_by_id(conn: &Connection, id: &str) -> Result<Option<ContainerGroup>> {
    conn.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM container_groups WHERE id = ?1"
    ))?
    .query_row(params![id], read_group_row)
    .optional()?
    .transpose()
}

/// The group an UPDATE of `n` rows changed, or NotFound when it changed none.
fn updated(conn: &Connection, n: usize, id: &str) -> Result<ContainerGroup> {
    if n == 0 {
        return Err(StoreError::NotFound(id.to_string()));
    }
    group_by_id(conn, id)?.ok_or_else(|| StoreError::NotFound(id.to_string()))
}

const GROUP_COLUMNS: &str = "id, owner, name, spec, status, created_at, deletion_requested_at, restart_generation, resources";

fn read_group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ContainerGroup>> {
    let spec: String = r.get(3)?;
    let status: String = r.get(4)?;
    let created: String = r.get(5)?;
    let deleting: Option<String> = r.get(6)?;
    let restart_generation = r.get::<_, i64>(7)?.max(0) as u64;
    let resources: String = r.get(8)?;
    let (id, owner, name): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    Ok((|| {
        Ok(ContainerGroup {
            id,
            owner,
            name,
            created_at: parse_time(&created),
            deletion_requested_at: deleting.as_deref().map(parse_time),
            restart_generation,
            resources: serde_json::from_str(&resources).unwrap_or_default(),
            spec: serde_json::from_str(&spec)?,
            status: serde_json::from_str(&status)?,
            node: None,
        })
    })())
}

impl Store {
    /// Says which node the group is on: this store's (each node keeps its own groups today).
    fn placed(&self, mut g: ContainerGroup) -> ContainerGroup {
        g.node = self.node_name();
        g
    }
}

/// `cg-` and 16 hex digits: short enough to type, random enough never to collide.
fn new_group_id() -> String {
    format!("cg-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::spec;
    use qci_spec::EventType;

    #[test]
    fn an_id_wins_over_an_equal_name() {
        let s = Store::open_in_memory().unwrap();
        let g = s.create_group("default", &spec("web")).unwrap();
        let twin = s.create_group("default", &spec(&g.id)).unwrap();
        assert_eq!(s.find_group("default", &g.id).unwrap().id, g.id);
        assert_eq!(s.find_group("default", &twin.id).unwrap().name, g.id);
        s.remove_group(&g.id).unwrap();
        assert_eq!(s.find_group("default", &g.id).unwrap().id, twin.id);
    }

    #[test]
    fn create_find_delete() {
        let s = Store::open_in_memory().unwrap();
        let g = s.create_group("default", &spec("web")).unwrap();
        assert!(g.id.starts_with("cg-"));
        assert!(matches!(
            s.create_group("default", &spec("web")),
            Err(StoreError::NameTaken(_))
        ));
        assert_eq!(s.find_group("default", "web").unwrap().id, g.id);
        assert_eq!(s.find_group("default", &g.id).unwrap().name, "web");
        assert!(matches!(
            s.find_group("other", "web"),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.find_group("other", &g.id),
            Err(StoreError::NotFound(_))
        ));
        s.create_group("other", &spec("web")).unwrap();
        s.add_event(
            &g.id,
            Some("a"),
            EventType::Normal,
            "Pulling",
            "pulling image",
        )
        .unwrap();
        assert_eq!(s.events(&g.id).unwrap()[0].reason, "Pulling");
        // Repeats fold into one event with a count.
        for _ in 0..2 {
            s.add_event(&g.id, Some("a"), EventType::Warning, "BackOff", "again")
                .unwrap();
        }
        let ev = s.events(&g.id).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[1].reason.as_str(), ev[1].count), ("BackOff", 2));
        assert!(ev[1].first_time <= ev[1].time);
        assert_eq!(
            s.events_since(Some("default"), None, ev[0].seq, 100)
                .unwrap()
                .len(),
            1
        );
        let d = s.request_deletion(&g.id).unwrap();
        assert_eq!(d.status.phase, GroupPhase::Deleting);
        let running = GroupStatus {
            phase: GroupPhase::Running,
            ..Default::default()
        };
        assert!(s.set_status(&g.id, &running).unwrap());
        assert_eq!(
            s.get_group(&g.id).unwrap().unwrap().status.phase,
            GroupPhase::Deleting
        );
        assert!(d.deletion_requested_at.is_some());
        s.remove_group(&g.id).unwrap();
        assert!(s.get_group(&g.id).unwrap().is_none());
        // Events outlive the group until forgotten.
        assert_eq!(s.find_deleted_group("default", "web").unwrap(), g.id);
        assert_eq!(s.events(&g.id).unwrap().len(), 2);
        assert_eq!(
            s.forget_deleted_groups(Utc::now() - chrono::Duration::hours(1))
                .unwrap(),
            0
        );
        assert_eq!(
            s.forget_deleted_groups(Utc::now() + chrono::Duration::seconds(1))
                .unwrap(),
            1
        );
        assert!(s.events(&g.id).unwrap().is_empty());
        assert_eq!(s.all_groups().unwrap().len(), 1);
    }

    #[test]
    fn passwords_are_sealed_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut sp = spec("private");
        sp.registry_credentials.push(qci_spec::RegistryCredential {
            server: "r.example".into(),
            username: "alice".into(),
            password: "s3cret-pw".into(),
        });
        let g = s.create_group("default", &sp).unwrap();
        let sealed = &g.spec.registry_credentials[0].password;
        assert!(Sealer::is_sealed(sealed));
        assert_eq!(s.reveal(sealed).unwrap(), "s3cret-pw");
        drop(s);
        let raw = std::fs::read(dir.path().join("qci.db")).unwrap();
        let wal = std::fs::read(dir.path().join("qci.db-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(
                !bytes.windows(9).any(|w| w == b"s3cret-pw"),
                "plaintext password on disk"
            );
        }
        let s = Store::open(dir.path()).unwrap();
        let g = s.find_group("default", "private").unwrap();
        assert_eq!(
            s.reveal(&g.spec.registry_credentials[0].password).unwrap(),
            "s3cret-pw"
        );
    }
}
