//! Tenants and their quotas. A tenant's use is counted from the rows it owns, inside the
//! transaction that adds to it, so two requests can never both take the last of a quota.

use chrono::Utc;
use qci_spec::{Holdings, Quota, QuotaExceeded, QuotaUse, Tenant};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Result, Store, StoreError, parse_time, unique};

/// What `owner` holds now, in the quota's units (exec sessions are the API's to count).
pub(crate) fn tenant_use(conn: &Connection, owner: &str) -> Result<QuotaUse> {
    Ok(conn.query_row(
        "SELECT
           (SELECT COUNT(*) FROM container_groups WHERE owner = ?1),
           (SELECT COALESCE(SUM(json_extract(resources, '$.cpu')), 0.0) FROM container_groups WHERE owner = ?1),
           (SELECT COALESCE(SUM(json_extract(resources, '$.memory_bytes')), 0) FROM container_groups WHERE owner = ?1),
           (SELECT COALESCE(SUM(size), 0) FROM disks WHERE owner = ?1),
           (SELECT COUNT(*) FROM eips WHERE owner = ?1),
           (SELECT COUNT(*) FROM vpcs WHERE owner = ?1)",
        params![owner],
        |r| {
            Ok(QuotaUse {
                groups: r.get::<_, i64>(0)?.max(0) as u64,
                cores: r.get::<_, f64>(1)?.max(0.0),
                memory: r.get::<_, i64>(2)?.max(0) as u64,
                disk: r.get::<_, i64>(3)?.max(0) as u64,
                eips: r.get::<_, i64>(4)?.max(0) as u64,
                vpcs: r.get::<_, i64>(5)?.max(0) as u64,
                exec_sessions: 0,
            })
        },
    )?)
}

pub(crate) fn exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE name = ?1)",
        params![name],
        |r| r.get(0),
    )?)
}

fn quota_of(conn: &Connection, tenant: &str) -> Result<Option<Quota>> {
    let q: Option<String> = conn
        .query_row(
            "SELECT quota FROM tenants WHERE name = ?1",
            params![tenant],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match q {
        Some(q) => Some(serde_json::from_str(&q)?),
        None => None,
    })
}

/// Inside the transaction that has just added `requested` to `owner`'s rows: refuses (and so
/// rolls back) when that took the tenant past a quota.
pub(crate) fn enforce_after(conn: &Connection, owner: &str, requested: &QuotaUse) -> Result<()> {
    let Some(quota) = quota_of(conn, owner)? else {
        return Ok(());
    };
    let total = tenant_use(conn, owner)?;
    quota.check(&total.minus(requested), requested)?;
    Ok(())
}

impl Store {
    /// Refuses `requested` if it would take `owner` past a quota (for work that must be
    /// checked before it is done, such as making a disk's file; the insert checks again).
    pub fn check_quota(&self, owner: &str, requested: &QuotaUse) -> Result<()> {
        let conn = self.conn();
        let Some(quota) = quota_of(&conn, owner)? else {
            return Ok(());
        };
        quota.check(&tenant_use(&conn, owner)?, requested)?;
        Ok(())
    }

    /// A tenant's quota (`None`: no such tenant).
    pub fn tenant_quota(&self, tenant: &str) -> Result<Option<Quota>> {
        quota_of(&self.conn(), tenant)
    }

    pub fn create_tenant(&self, name: &str, quota: &Quota) -> Result<Tenant> {
        let r = self.conn().execute(
            "INSERT INTO tenants (name, quota, created_at) VALUES (?1, ?2, ?3)",
            params![name, serde_json::to_string(quota)?, now()],
        );
        unique(r, || StoreError::Taken("tenant", name.to_string()))?;
        self.find_tenant(name)
    }

    /// A tenant with its use.
    pub fn find_tenant(&self, name: &str) -> Result<Tenant> {
        let conn = self.conn();
        let row: Option<(String, String, String)> = conn
            .query_row(
                "SELECT name, quota, created_at FROM tenants WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (name, quota, created) =
            row.ok_or_else(|| StoreError::Missing("tenant", name.to_string()))?;
        Ok(Tenant {
            used: tenant_use(&conn, &name)?,
            quota: serde_json::from_str(&quota)?,
            created_at: parse_time(&created),
            name,
        })
    }

    pub fn tenant_exists(&self, name: &str) -> Result<bool> {
        exists(&self.conn(), name)
    }

    /// Every tenant, by name, with its use.
    pub fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let names: Vec<String> = {
            let conn = self.conn();
            let mut st = conn.prepare("SELECT name FROM tenants ORDER BY name")?;
            st.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        names.iter().map(|n| self.find_tenant(n)).collect()
    }

    /// Replaces a tenant's quota. A limit below the current use is allowed: it refuses more.
    pub fn set_tenant_quota(&self, name: &str, quota: &Quota) -> Result<Tenant> {
        let n = self.conn().execute(
            "UPDATE tenants SET quota = ?2 WHERE name = ?1",
            params![name, serde_json::to_string(quota)?],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("tenant", name.to_string()));
        }
        self.find_tenant(name)
    }

    /// Removes a tenant that holds nothing, with its keys. One that still owns resources is
    /// refused, naming them.
    pub fn remove_tenant(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut holdings = Holdings::new();
        for (noun, table) in [
            ("groups", "container_groups"),
            ("disks", "disks"),
            ("VPCs", "vpcs"),
            ("EIPs", "eips"),
            ("firewalls", "firewalls"),
            ("image caches", "image_caches"),
        ] {
            let n: i64 = tx.query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE owner = ?1"),
                params![name],
                |r| r.get(0),
            )?;
            if n > 0 {
                holdings.insert(noun, n as u64);
            }
        }
        if !holdings.is_empty() {
            let what: Vec<String> = holdings.iter().map(|(k, v)| format!("{v} {k}")).collect();
            return Err(StoreError::InUse(format!(
                "tenant {name:?} still has {}; delete them first",
                what.join(", ")
            )));
        }
        let n = tx.execute("DELETE FROM tenants WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(StoreError::Missing("tenant", name.to_string()));
        }
        tx.execute("DELETE FROM api_keys WHERE tenant = ?1", params![name])?;
        tx.commit()?;
        self.keys.forget_all();
        Ok(())
    }
}

/// Times in the tables added with tenants: fixed width, so text order is time order.
pub(crate) fn now() -> String {
    fmt_time(Utc::now())
}

pub(crate) fn fmt_time(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl From<QuotaExceeded> for StoreError {
    fn from(e: QuotaExceeded) -> StoreError {
        StoreError::QuotaExceeded(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::spec;
    use qci_spec::{GroupResources, QuotaKey};

    fn size(cpu: f64) -> GroupResources {
        GroupResources {
            cpu,
            memory_bytes: 1 << 30,
            ..Default::default()
        }
    }

    #[test]
    fn quotas_count_what_a_tenant_owns() {
        let s = Store::open_in_memory().unwrap();
        let quota = Quota {
            cores: Some(2.0),
            groups: Some(5),
            ..Default::default()
        };
        s.create_tenant("a", &quota).unwrap();
        assert!(matches!(
            s.create_tenant("a", &quota),
            Err(StoreError::Taken("tenant", _))
        ));
        let g1 = s.create_sized_group("a", &spec("one"), &size(1.0)).unwrap();
        s.create_sized_group("a", &spec("two"), &size(1.0)).unwrap();
        let e = s
            .create_sized_group("a", &spec("three"), &size(0.5))
            .unwrap_err();
        match e {
            StoreError::QuotaExceeded(q) => {
                assert_eq!(q.quota, QuotaKey::Cores);
                assert_eq!((q.used, q.limit, q.requested), (2.0, 2.0, 0.5));
            }
            e => panic!("{e}"),
        }
        // Nothing of the refused group was kept.
        assert!(s.find_group("a", "three").is_err());
        let t = s.find_tenant("a").unwrap();
        assert_eq!((t.used.groups, t.used.cores), (2, 2.0));
        assert_eq!(t.used.memory, 2 << 30);
        // Another tenant is not counted against it.
        s.create_sized_group("b", &spec("three"), &size(4.0))
            .unwrap();
        // Deleting one frees its share.
        s.remove_group(&g1.id).unwrap();
        s.create_sized_group("a", &spec("three"), &size(0.5))
            .unwrap();
        // A tenant that owns things cannot be removed; an empty one can.
        let e = s.remove_tenant("a").unwrap_err();
        assert!(e.to_string().contains("2 groups"), "{e}");
        s.create_tenant("empty", &Quota::default()).unwrap();
        s.remove_tenant("empty").unwrap();
        assert!(matches!(
            s.find_tenant("empty"),
            Err(StoreError::Missing("tenant", _))
        ));
        // A lowered quota refuses more but keeps what is there.
        s.set_tenant_quota(
            "a",
            &Quota {
                cores: Some(0.5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.find_tenant("a").unwrap().used.groups, 2);
        assert!(
            s.check_quota(
                "a",
                &QuotaUse {
                    disk: 1,
                    ..Default::default()
                }
            )
            .is_ok()
        );
        assert!(
            s.check_quota(
                "a",
                &QuotaUse {
                    cores: 0.1,
                    ..Default::default()
                }
            )
            .is_err()
        );
    }
}
