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
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

mod audit;
mod caches;
mod disks;
mod events;
mod groups;
mod keys;
mod metrics;
mod networks;
mod nodes;
mod secrets;
mod sessions;
mod tenants;
mod usage;
pub use audit::AuditEntry;
pub use disks::{DiskState, DiskWork};
pub use keys::{KeyCheck, LOCAL_ADMIN_KEY};
pub use metrics::RawSample;
pub use networks::{BASIC_NETWORK, GroupNetwork, NetConfig, NetworkRecord};
pub use secrets::{Sealer, SecretError};
pub use sessions::{SESSION_LIFETIME, SessionCheck};

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
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// A request that would take its tenant past a quota.
    #[error(transparent)]
    QuotaExceeded(qci_spec::QuotaExceeded),
    /// A group that this node cannot hold beside the ones it has.
    #[error("{}", node_full(asked, free, capacity))]
    NodeFull {
        asked: qci_spec::NodeResources,
        free: qci_spec::NodeResources,
        capacity: qci_spec::NodeResources,
    },
}

/// Why a node cannot hold a group, naming only the limits it has (`--node-cpu`,
/// `--node-memory`).
fn node_full(
    asked: &qci_spec::NodeResources,
    free: &qci_spec::NodeResources,
    capacity: &qci_spec::NodeResources,
) -> String {
    let round = |c: f64| (c * 1000.0).round() / 1000.0;
    let mut short = Vec::new();
    if capacity.cpu.is_finite() && asked.cpu > free.cpu + 1e-6 {
        short.push(format!(
            "{} cores asked, {} free of the node's {}",
            round(asked.cpu),
            round(free.cpu),
            round(capacity.cpu)
        ));
    }
    if capacity.memory_bytes != u64::MAX && asked.memory_bytes > free.memory_bytes {
        short.push(format!(
            "{} MiB of memory asked, {} MiB free of the node's {} MiB",
            asked.memory_bytes >> 20,
            free.memory_bytes >> 20,
            capacity.memory_bytes >> 20
        ));
    }
    format!(
        "this node cannot hold the group beside its others: {}",
        short.join("; ")
    )
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
        M::up(
            "CREATE TABLE tenants (
            name TEXT PRIMARY KEY,
            quota TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        INSERT INTO tenants (name, quota, created_at)
            VALUES ('default', '{}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            tenant TEXT NOT NULL,
            role TEXT NOT NULL,
            hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            revoked_at TEXT,
            last_used_at TEXT,
            UNIQUE (tenant, name)
        );
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time TEXT NOT NULL,
            tenant TEXT NOT NULL,
            key_id TEXT NOT NULL,
            key_tenant TEXT NOT NULL,
            action TEXT NOT NULL,
            status INTEGER NOT NULL,
            detail TEXT
        );
        CREATE INDEX audit_by_time ON audit (time);
        CREATE INDEX usage_by_owner ON usage (owner, id);",
        ),
        // Disks made and removed by the controller: `state` says what is wanted of the image
        // file, `made_size` how large the file is (below `size` while a growth is due).
        M::up(
            "ALTER TABLE disks ADD COLUMN state TEXT NOT NULL DEFAULT 'Ready';
        ALTER TABLE disks ADD COLUMN made_size INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE disks ADD COLUMN message TEXT;
        UPDATE disks SET made_size = size;",
        ),
        // Console sign-ins: a session stands for the key it was opened with, until it ends,
        // the key stops working, or it is closed.
        M::up(
            "CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX sessions_by_key ON sessions (key_id);",
        ),
    ])
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    sealer: Arc<Sealer>,
    net: networks::SharedNetConfig,
    capacity: nodes::SharedCapacity,
    node_name: nodes::SharedName,
    keys: Arc<keys::KeyCache>,
    /// Counts changes to groups and their events, so waiters (a long-polling GET, a watch of
    /// events) wake when something changed instead of polling.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Store {
    /// Wakes whoever watches changes (after a write to a group or its events).
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that is marked changed after each write to a group or its events.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Opens (creating if needed) `qci.db` in `dir` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store> {
        let db = dir.join("qci.db");
        private_files(&db)?;
        let mut conn = Connection::open(&db)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Room for every statement the hot paths keep prepared (`prepare_cached`).
        conn.set_prepared_statement_cache_capacity(64);
        migrations().to_latest(&mut conn)?;
        let sealer = Sealer::load_or_create(&dir.join("secret.key"))?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            sealer: Arc::new(sealer),
            net: Default::default(),
            capacity: Default::default(),
            node_name: Default::default(),
            keys: Default::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
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
            capacity: Default::default(),
            node_name: Default::default(),
            keys: Default::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
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
}

/// The database (made 0600 if new) and its WAL and shared-memory files readable by root only:
/// they hold every tenant's specs. SQLite gives the files it makes the database's mode.
fn private_files(db: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |path: &Path, source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)
        .map_err(|e| err(db, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(&p, e)),
            _ => {}
        }
    }
    Ok(())
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

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use qci_spec::GroupSpec;

    /// A one-container group named `name`, for the store's tests.
    pub(crate) fn spec(name: &str) -> GroupSpec {
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
