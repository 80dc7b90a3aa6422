//! The audit trail: who changed what, when, with what result; and every exec session.

use chrono::{DateTime, Utc};
use qci_spec::AuditRecord;
use rusqlite::params;

use crate::tenants::{fmt_time, now};
use crate::{Result, Store, parse_time};

/// One record to write (the store adds the id and the time).
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub tenant: &'a str,
    pub key_id: &'a str,
    pub key_tenant: &'a str,
    pub action: &'a str,
    pub status: u16,
    pub detail: Option<&'a str>,
}

impl Store {
    pub fn add_audit(&self, e: &AuditEntry<'_>) -> Result<()> {
        self.conn().execute(
            "INSERT INTO audit (time, tenant, key_id, key_tenant, action, status, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                now(),
                e.tenant,
                e.key_id,
                e.key_tenant,
                e.action,
                e.status,
                e.detail
            ],
        )?;
        Ok(())
    }

    /// Records since `since`, oldest first, of one tenant or of all; at most `limit` (the
    /// newest when there are more).
    pub fn audit(
        &self,
        tenant: Option<&str>,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, time, tenant, key_id, key_tenant, action, status, detail FROM audit
             WHERE (?1 IS NULL OR tenant = ?1) AND time >= ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![tenant, fmt_time(since), limit], |r| {
            Ok(AuditRecord {
                id: r.get(0)?,
                time: parse_time(&r.get::<_, String>(1)?),
                tenant: r.get(2)?,
                key_id: r.get(3)?,
                key_tenant: r.get(4)?,
                action: r.get(5)?,
                status: r.get(6)?,
                detail: r.get(7)?,
            })
        })?;
        let mut v = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        v.reverse();
        Ok(v)
    }

    /// Forgets records older than `before`; answers how many.
    pub fn prune_audit(&self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM audit WHERE time < ?1",
            params![fmt_time(before)],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_tenant_and_age() {
        let s = Store::open_in_memory().unwrap();
        for (tenant, action) in [("a", "POST /v1/disks"), ("b", "DELETE /v1/vpcs/v")] {
            s.add_audit(&AuditEntry {
                tenant,
                key_id: "k-1",
                key_tenant: tenant,
                action,
                status: 201,
                detail: None,
            })
            .unwrap();
        }
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        assert_eq!(s.audit(None, hour_ago, 100).unwrap().len(), 2);
        let a = s.audit(Some("a"), hour_ago, 100).unwrap();
        assert_eq!((a.len(), a[0].action.as_str()), (1, "POST /v1/disks"));
        assert!(
            s.audit(None, Utc::now() + chrono::Duration::seconds(1), 100)
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.prune_audit(hour_ago).unwrap(), 0);
        assert_eq!(
            s.prune_audit(Utc::now() + chrono::Duration::seconds(1))
                .unwrap(),
            2
        );
    }
}
