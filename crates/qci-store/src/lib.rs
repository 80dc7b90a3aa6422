//! The store: container groups and their events in SQLite (WAL), under the data dir.
//!
//! Architecture invariant: only this crate knows SQL. Every row carries an `owner` (tenant).
//! Writes are synchronous and durable (`synchronous=FULL`) before they return, so once the API
//! has answered a create, the group survives a crash of the process or the machine.
//!
//! Calls are blocking but short (one small row each); callers on the async runtime call them
//! directly, which costs less than a hop to a blocking thread for work of this size.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use qci_spec::{
    ContainerGroup, Event, EventType, GroupPhase, GroupResources, GroupSpec, GroupStatus,
    ImageCache, ImageCacheSpec, ImageCacheStatus, Usage,
};
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

mod disks;
mod networks;
mod secrets;
pub use networks::{BASIC_NETWORK, GroupNetwork, NetConfig, NetworkRecord};
pub use secrets::{Sealer, SecretError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a container group named {0:?} already exists")]
    NameTaken(String),
    #[error("container group {0:?} not found")]
    NotFound(String),
    #[error("an image cache named {0:?} already exists")]
    CacheNameTaken(String),
    #[error("image cache {0:?} not found")]
    CacheNotFound(String),
    #[error("a disk named {0:?} already exists")]
    DiskNameTaken(String),
    #[error("disk {0:?} not found")]
    DiskNotFound(String),
    #[error("disk {disk:?} is in use by group {group:?}; delete the group first")]
    DiskInUse { disk: String, group: String },
    /// A group's disk volume that cannot be attached (`volume` is its index in `volumes`).
    #[error("volumes[{volume}].disk.id: {message}")]
    VolumeDisk { volume: usize, message: String },
    /// A group's network that cannot be set up as asked (`field` is its path in the spec).
    #[error("{field}: {message}")]
    Network { field: String, message: String },
    #[error("a {0} named {1:?} already exists")]
    Taken(&'static str, String),
    #[error("{0} {1:?} not found")]
    Missing(&'static str, String),
    #[error("{0}")]
    InUse(String),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The schema, one entry per version. Append only: never edit a released migration.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            "CREATE TABLE container_groups (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            deletion_requested_at TEXT,
            UNIQUE (owner, name)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            group_id TEXT NOT NULL,
            container TEXT,
            type TEXT NOT NULL,
            reason TEXT NOT NULL,
            message TEXT NOT NULL,
            time TEXT NOT NULL
        );
        CREATE INDEX events_by_group ON events (group_id, id);",
        ),
        M::up(
            "CREATE TABLE image_caches (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (owner, name)
        );",
        ),
        M::up(
            "CREATE TABLE deleted_groups (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            deleted_at TEXT NOT NULL
        );",
        ),
        M::up(
            "ALTER TABLE container_groups ADD COLUMN restart_generation INTEGER NOT NULL DEFAULT 0;",
        ),
        M::up(
            "ALTER TABLE container_groups ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
        CREATE TABLE usage (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL,
            group_id TEXT NOT NULL,
            name TEXT NOT NULL,
            start TEXT NOT NULL,
            end TEXT NOT NULL,
            cpu REAL NOT NULL,
            memory_bytes INTEGER NOT NULL,
            price_per_hour REAL
        );
        CREATE INDEX usage_by_group ON usage (group_id, id);",
        ),
        M::up(
            "ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE events ADD COLUMN first_time TEXT;
        ALTER TABLE events ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
        UPDATE events SET seq = id, first_time = time;
        CREATE INDEX events_by_seq ON events (owner, seq);",
        ),
        M::up(
            "CREATE TABLE metrics (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            group_id TEXT NOT NULL,
            container TEXT NOT NULL,
            time TEXT NOT NULL,
            cpu_ns INTEGER NOT NULL,
            memory_bytes INTEGER NOT NULL,
            pids INTEGER NOT NULL,
            rx_bytes INTEGER NOT NULL,
            tx_bytes INTEGER NOT NULL
        );
        CREATE INDEX metrics_by_group ON metrics (group_id, time);",
        ),
        M::up(
            "CREATE TABLE disks (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            type TEXT NOT NULL,
            created_at TEXT NOT NULL,
            group_id TEXT,
            UNIQUE (owner, name)
        );
        CREATE INDEX disks_by_group ON disks (group_id);",
        ),
        M::up(
            "CREATE TABLE firewalls (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            rules TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (owner, name)
        );
        CREATE TABLE eips (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            address TEXT NOT NULL UNIQUE,
            auto INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (owner, name)
        );
        CREATE TABLE vpcs (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            cidr TEXT NOT NULL,
            firewall TEXT,
            eip TEXT UNIQUE,
            slot INTEGER NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            UNIQUE (owner, name)
        );
        CREATE TABLE group_networks (
            group_id TEXT PRIMARY KEY,
            network TEXT NOT NULL,
            ip TEXT NOT NULL,
            eip TEXT UNIQUE,
            firewall TEXT,
            UNIQUE (network, ip)
        );",
        ),
    ])
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    sealer: Arc<Sealer>,
    net: networks::SharedNetConfig,
}

impl Store {
    /// Opens (creating if needed) `qci.db` in `dir` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store> {
        let mut conn = Connection::open(dir.join("qci.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations().to_latest(&mut conn)?;
        let sealer = Sealer::load_or_create(&dir.join("secret.key"))?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            sealer: Arc::new(sealer),
            net: Default::default(),
        })
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        migrations().to_latest(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            sealer: Arc::new(Sealer::ephemeral()?),
            net: Default::default(),
        })
    }

    /// The plaintext of a secret the store sealed (registry passwords).
    pub fn reveal(&self, sealed: &str) -> Result<String> {
        Ok(self.sealer.open(sealed)?)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is one statement
        // or one transaction), so a poisoned lock is safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

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
        tx.commit()?;
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
        })
    }

    /// Finds a group of `owner` by id, or else by name.
    pub fn find_group(&self, owner: &str, id_or_name: &str) -> Result<ContainerGroup> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {GROUP_COLUMNS} FROM container_groups WHERE owner = ?1 AND (id = ?2 OR name = ?2) ORDER BY id = ?2 DESC LIMIT 1"),
                params![owner, id_or_name],
                read_group_row,
            )
            .optional()?;
        match row {
            Some(r) => r,
            None => Err(StoreError::NotFound(id_or_name.to_string())),
        }
    }

    /// Any owner's group, by id (for the controller).
    pub fn get_group(&self, id: &str) -> Result<Option<ContainerGroup>> {
        group_by_id(&self.conn(), id)
    }

    /// The owner's groups, oldest first.
    pub fn list_groups(&self, owner: &str) -> Result<Vec<ContainerGroup>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {GROUP_COLUMNS} FROM container_groups WHERE owner = ?1 ORDER BY created_at, id"
        ))?;
        let rows = st.query_map(params![owner], read_group_row)?;
        rows.map(|r| r?).collect()
    }

    /// Every group of every owner (for the controller).
    pub fn all_groups(&self) -> Result<Vec<ContainerGroup>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {GROUP_COLUMNS} FROM container_groups ORDER BY created_at, id"
        ))?;
        let rows = st.query_map([], read_group_row)?;
        rows.map(|r| r?).collect()
    }

    /// Replaces a group's observed status. Returns false if the group is gone. Once deletion
    /// was requested the phase stays Deleting, whatever a pass that began earlier reports.
    pub fn set_status(&self, id: &str, status: &GroupStatus) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE container_groups SET status = CASE WHEN deletion_requested_at IS NULL THEN ?2
                 ELSE json_set(?2, '$.phase', 'Deleting') END WHERE id = ?1",
            params![id, serde_json::to_string(status)?],
        )?;
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
        updated(&conn, n, id)
    }

    /// Replaces a group's spec (and size); passwords are sealed, and a credential given as the
    /// mask keeps the password stored for its server. The name cannot change.
    pub fn update_group(
        &self,
        id: &str,
        spec: &GroupSpec,
        resources: &GroupResources,
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
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE container_groups SET spec = ?2, resources = ?3 WHERE id = ?1 AND deletion_requested_at IS NULL",
            params![id, serde_json::to_string(&spec)?, serde_json::to_string(resources)?],
        )?;
        updated(&conn, n, id)
    }

    /// Asks for the group's containers to be restarted (init containers first); returns it.
    pub fn request_restart(&self, id: &str) -> Result<ContainerGroup> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE container_groups SET restart_generation = restart_generation + 1
             WHERE id = ?1 AND deletion_requested_at IS NULL",
            params![id],
        )?;
        updated(&conn, n, id)
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

    /// Records an event for a group (the owner is the group's).
    /// Records an event for a group (the owner is the group's). A repeat of an event already
    /// recorded for the group (same container, type, reason and message) is folded into it: its
    /// count goes up and its time moves on.
    pub fn add_event(
        &self,
        group_id: &str,
        container: Option<&str>,
        ty: EventType,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        let now = Utc::now().to_rfc3339();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let folded = tx.execute(
            "UPDATE events SET count = count + 1, time = ?6, seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
             WHERE id = (SELECT id FROM events WHERE group_id = ?1 AND container IS ?2 AND type = ?3
                         AND reason = ?4 AND message = ?5 ORDER BY id DESC LIMIT 1)",
            params![group_id, container, ty.as_str(), reason, message, now],
        )?;
        if folded == 0 {
            tx.execute(
                "INSERT INTO events (owner, group_id, container, type, reason, message, time, first_time, count, seq)
                 SELECT owner, id, ?2, ?3, ?4, ?5, ?6, ?6, 1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
                 FROM container_groups WHERE id = ?1",
                params![group_id, container, ty.as_str(), reason, message, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A group's events, by the time they last happened.
    pub fn events(&self, group_id: &str) -> Result<Vec<Event>> {
        self.query_events("WHERE group_id = ?1 ORDER BY time, id", params![group_id])
    }

    /// An owner's events across groups changed after `after_seq`, oldest change first, at most
    /// `limit` (the newest ones when there are more).
    pub fn events_since(
        &self,
        owner: &str,
        group_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let mut v = self.query_events(
            "WHERE owner = ?1 AND (?2 IS NULL OR group_id = ?2) AND seq > ?3 ORDER BY seq DESC LIMIT ?4",
            params![owner, group_id, after_seq, limit],
        )?;
        v.reverse();
        Ok(v)
    }

    fn query_events(&self, tail: &str, p: impl rusqlite::Params) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT id, group_id, container, type, reason, message, time, first_time, count, seq FROM events {tail}"
        ))?;
        let rows = st.query_map(p, |r| {
            let ty: String = r.get(3)?;
            let time = parse_time(&r.get::<_, String>(6)?);
            Ok(Event {
                id: r.get(0)?,
                group_id: r.get(1)?,
                container: r.get(2)?,
                event_type: if ty == "Warning" {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: r.get(4)?,
                message: r.get(5)?,
                time,
                first_time: r
                    .get::<_, Option<String>>(7)?
                    .map(|t| parse_time(&t))
                    .unwrap_or(time),
                count: r.get::<_, i64>(8)?.max(1) as u64,
                seq: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

impl Store {
    /// Stores a new image cache in phase Creating, its passwords sealed.
    pub fn create_image_cache(&self, owner: &str, spec: &ImageCacheSpec) -> Result<ImageCache> {
        let mut spec = spec.clone();
        for c in &mut spec.registry_credentials {
            if !Sealer::is_sealed(&c.password) {
                c.password = self.sealer.seal(&c.password)?;
            }
        }
        let id = format!("ic-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let now = Utc::now();
        let status = ImageCacheStatus::default();
        let r = self.conn().execute(
            "INSERT INTO image_caches (id, owner, name, spec, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, owner, spec.name, serde_json::to_string(&spec)?, serde_json::to_string(&status)?, now.to_rfc3339()],
        );
        unique(r, || StoreError::CacheNameTaken(spec.name.clone()))?;
        Ok(ImageCache {
            id,
            name: spec.name.clone(),
            owner: owner.to_string(),
            created_at: now,
            spec,
            status,
        })
    }

    /// An owner's cache by id, or else by name.
    pub fn find_image_cache(&self, owner: &str, id_or_name: &str) -> Result<ImageCache> {
        let conn = self.conn();
        conn.query_row(
            &format!(
                "SELECT {CACHE_COLUMNS} FROM image_caches WHERE owner = ?1 AND (id = ?2 OR name = ?2) ORDER BY id = ?2 DESC LIMIT 1"
            ),
            params![owner, id_or_name],
            read_cache_row,
        )
        .optional()?
        .unwrap_or_else(|| Err(StoreError::CacheNotFound(id_or_name.to_string())))
    }

    /// An owner's caches (every owner's with `None`), newest first.
    pub fn list_image_caches(&self, owner: Option<&str>) -> Result<Vec<ImageCache>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {CACHE_COLUMNS} FROM image_caches WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at DESC, id"
        ))?;
        let rows = st.query_map(params![owner], read_cache_row)?;
        rows.map(|r| r?).collect()
    }

    pub fn set_image_cache_status(&self, id: &str, status: &ImageCacheStatus) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE image_caches SET status = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(status)?],
        )?;
        Ok(n == 1)
    }

    pub fn remove_image_cache(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM image_caches WHERE id = ?1", params![id])?;
        Ok(())
    }
}

/// A raw reading, as the sampler takes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawSample {
    pub container: String,
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    pub pids: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl Store {
    /// Stores one reading per container of a group, all at `time`.
    pub fn add_samples(
        &self,
        group_id: &str,
        time: DateTime<Utc>,
        samples: &[RawSample],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for s in samples {
            tx.execute(
                "INSERT INTO metrics (group_id, container, time, cpu_ns, memory_bytes, pids, rx_bytes, tx_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    group_id,
                    s.container,
                    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    s.cpu_ns as i64,
                    s.memory_bytes as i64,
                    s.pids as i64,
                    s.rx_bytes as i64,
                    s.tx_bytes as i64
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A group's readings since `since`, oldest first, with CPU as a rate between readings.
    pub fn samples(
        &self,
        group_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<qci_spec::MetricSample>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT container, time, cpu_ns, memory_bytes, pids, rx_bytes, tx_bytes FROM metrics
             WHERE group_id = ?1 AND time >= ?2 ORDER BY time, id",
        )?;
        let rows = st.query_map(
            params![
                group_id,
                since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    parse_time(&r.get::<_, String>(1)?),
                    r.get::<_, i64>(2)?.max(0) as u64,
                    r.get::<_, i64>(3)?.max(0) as u64,
                    r.get::<_, i64>(4)?.max(0) as u64,
                    r.get::<_, i64>(5)?.max(0) as u64,
                    r.get::<_, i64>(6)?.max(0) as u64,
                ))
            },
        )?;
        let mut last: std::collections::HashMap<String, (DateTime<Utc>, u64)> = Default::default();
        let mut out = Vec::new();
        for row in rows {
            let (container, time, cpu_ns, memory_bytes, pids, rx_bytes, tx_bytes) = row?;
            let cpu_cores = last.get(&container).and_then(|(t, ns)| {
                let secs = (time - *t).num_milliseconds() as f64 / 1000.0;
                (secs > 0.0 && cpu_ns >= *ns).then(|| (cpu_ns - ns) as f64 / 1e9 / secs)
            });
            last.insert(container.clone(), (time, cpu_ns));
            out.push(qci_spec::MetricSample {
                time,
                container,
                cpu_cores,
                cpu_seconds_total: cpu_ns as f64 / 1e9,
                memory_bytes,
                pids,
                rx_bytes,
                tx_bytes,
            });
        }
        Ok(out)
    }

    /// Keeps 24 hours of readings, one a minute per container past the first hour.
    pub fn prune_samples(&self, now: DateTime<Utc>) -> Result<()> {
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let conn = self.conn();
        conn.execute(
            "DELETE FROM metrics WHERE time < ?1",
            params![fmt(now - chrono::Duration::hours(24))],
        )?;
        conn.execute(
            "DELETE FROM metrics WHERE time < ?1 AND id NOT IN
             (SELECT MIN(id) FROM metrics WHERE time < ?1 GROUP BY group_id, container, substr(time, 1, 16))",
            params![fmt(now - chrono::Duration::hours(1))],
        )?;
        Ok(())
    }
}

/// Two samples further apart than this start a new interval (the meter was not running).
const METER_GAP_SECONDS: i64 = 5;

impl Store {
    /// Records that the group is billable now: extends its open interval, or opens one.
    pub fn meter(&self, g: &ContainerGroup, now: DateTime<Utc>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let open: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, end FROM usage WHERE group_id = ?1 ORDER BY id DESC LIMIT 1",
                params![g.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match open {
            Some((id, end)) if (now - parse_time(&end)).num_seconds() <= METER_GAP_SECONDS => {
                tx.execute(
                    "UPDATE usage SET end = ?2 WHERE id = ?1",
                    params![id, now.to_rfc3339()],
                )?;
            }
            _ => {
                tx.execute(
                    "INSERT INTO usage (owner, group_id, name, start, end, cpu, memory_bytes, price_per_hour)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
                    params![
                        g.owner,
                        g.id,
                        g.name,
                        now.to_rfc3339(),
                        g.resources.cpu,
                        g.resources.memory_bytes as i64,
                        g.resources.price_per_hour
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Each group's use between `from` and `to` (intervals clipped to the window).
    pub fn usage(&self, owner: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Usage>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT group_id, name, start, end, cpu, memory_bytes, price_per_hour FROM usage
             WHERE owner = ?1 ORDER BY group_id, id",
        )?;
        let rows = st.query_map(params![owner], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<f64>>(6)?,
            ))
        })?;
        let mut out: Vec<Usage> = Vec::new();
        for row in rows {
            let (gid, name, start, end, cpu, mem, price) = row?;
            let (a, b) = (parse_time(&start).max(from), parse_time(&end).min(to));
            if b <= a {
                continue;
            }
            let secs = (b - a).num_milliseconds() as f64 / 1000.0;
            let gib = mem as f64 / f64::from(1u32 << 30);
            if out.last().is_none_or(|u| u.group_id != gid) {
                out.push(Usage {
                    group_id: gid.clone(),
                    name,
                    core_seconds: 0.0,
                    gib_seconds: 0.0,
                    cost: None,
                });
            }
            let u = out.last_mut().expect("just pushed");
            u.core_seconds += cpu * secs;
            u.gib_seconds += gib * secs;
            if let Some(p) = price {
                *u.cost.get_or_insert(0.0) += p * secs / 3600.0;
            }
        }
        Ok(out)
    }
}

const CACHE_COLUMNS: &str = "id, owner, name, spec, status, created_at";

fn read_cache_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ImageCache>> {
    let (id, owner, name): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (spec, status, created): (String, String, String) = (r.get(3)?, r.get(4)?, r.get(5)?);
    Ok((|| {
        Ok(ImageCache {
            id,
            owner,
            name,
            created_at: parse_time(&created),
            spec: serde_json::from_str(&spec)?,
            status: serde_json::from_str(&status)?,
        })
    })())
}

fn group_by_id(conn: &Connection, id: &str) -> Result<Option<ContainerGroup>> {
    conn.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM container_groups WHERE id = ?1"),
        params![id],
        read_group_row,
    )
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

/// An insert's result, with a uniqueness violation (a name taken) turned into `taken()`.
fn unique(r: rusqlite::Result<usize>, taken: impl FnOnce() -> StoreError) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(taken())
        }
        Err(e) => Err(e.into()),
    }
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
        })
    })())
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// `cg-` and 16 hex digits: short enough to type, random enough never to collide.
fn new_group_id() -> String {
    format!("cg-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> GroupSpec {
        qci_spec::parse_spec(&format!(
            "name: {name}\ncontainers:\n  - {{name: a, image: bb}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
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
            s.events_since("default", None, ev[0].seq, 100)
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

    #[test]
    fn metering() {
        let s = Store::open_in_memory().unwrap();
        let res = GroupResources {
            requested_cpu: 0.3,
            requested_memory_bytes: 1,
            cpu: 0.5,
            memory_bytes: 1 << 30,
            price_per_hour: Some(3.6),
        };
        let g = s.create_sized_group("default", &spec("m"), &res).unwrap();
        assert_eq!(
            s.find_group("default", "m").unwrap().resources,
            res,
            "the size is stored"
        );
        let t0 = Utc::now();
        for i in 0..=10 {
            s.meter(&g, t0 + chrono::Duration::seconds(i)).unwrap();
        }
        // A gap: a second interval of 2 s.
        s.meter(&g, t0 + chrono::Duration::seconds(100)).unwrap();
        s.meter(&g, t0 + chrono::Duration::seconds(102)).unwrap();
        let u = s
            .usage("default", t0, t0 + chrono::Duration::seconds(1000))
            .unwrap();
        assert_eq!(u.len(), 1);
        assert!((u[0].core_seconds - 6.0).abs() < 1e-6, "{u:?}");
        assert!((u[0].gib_seconds - 12.0).abs() < 1e-6, "{u:?}");
        assert!((u[0].cost.unwrap() - 0.012).abs() < 1e-9, "{u:?}");
        // Clipped to the window.
        let u = s
            .usage(
                "default",
                t0 + chrono::Duration::seconds(5),
                t0 + chrono::Duration::seconds(101),
            )
            .unwrap();
        assert!((u[0].core_seconds - 3.0).abs() < 1e-6, "{u:?}");
    }

    #[test]
    fn samples_and_rates() {
        let s = Store::open_in_memory().unwrap();
        // Two readings within one minute (5 s and 15 s past it).
        let t0 = {
            use chrono::Timelike;
            (Utc::now() - chrono::Duration::hours(2))
                .with_second(5)
                .unwrap()
                .with_nanosecond(0)
                .unwrap()
        };
        let raw = |ns| {
            vec![RawSample {
                container: "c".into(),
                cpu_ns: ns,
                memory_bytes: 5,
                ..Default::default()
            }]
        };
        s.add_samples("g", t0, &raw(0)).unwrap();
        s.add_samples("g", t0 + chrono::Duration::seconds(10), &raw(5_000_000_000))
            .unwrap();
        let v = s.samples("g", t0).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].cpu_cores, None);
        assert!((v[1].cpu_cores.unwrap() - 0.5).abs() < 1e-9);
        // Past the first hour, one reading a minute is kept.
        s.prune_samples(Utc::now()).unwrap();
        assert_eq!(s.samples("g", t0).unwrap().len(), 1);
    }

    #[test]
    fn image_caches() {
        let s = Store::open_in_memory().unwrap();
        let spec = qci_spec::ImageCacheSpec {
            name: "base".into(),
            images: vec!["r:5000/bb:1".into()],
            registry_credentials: vec![],
        };
        let c = s.create_image_cache("default", &spec).unwrap();
        assert!(c.id.starts_with("ic-"));
        assert!(matches!(
            s.create_image_cache("default", &spec),
            Err(StoreError::CacheNameTaken(_))
        ));
        assert_eq!(s.find_image_cache("default", "base").unwrap().id, c.id);
        let mut st = c.status.clone();
        st.phase = qci_spec::CachePhase::Ready;
        assert!(s.set_image_cache_status(&c.id, &st).unwrap());
        assert_eq!(
            s.list_image_caches(None).unwrap()[0].status.phase,
            qci_spec::CachePhase::Ready
        );
        s.remove_image_cache(&c.id).unwrap();
        assert!(matches!(
            s.find_image_cache("default", "base"),
            Err(StoreError::CacheNotFound(_))
        ));
    }

    #[test]
    fn survives_reopen() {
        let dir = std::env::temp_dir().join(format!("qci-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = Store::open(&dir)
            .unwrap()
            .create_group("default", &spec("keep"))
            .unwrap()
            .id;
        assert_eq!(
            Store::open(&dir)
                .unwrap()
                .find_group("default", "keep")
                .unwrap()
                .id,
            id
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
