//! Metering: billable intervals at a group's normalised size, and use over a window.

use chrono::{DateTime, Utc};
use qci_spec::{ContainerGroup, Usage};
use rusqlite::{OptionalExtension, params};

use crate::{Result, Store, parse_time};

/// Two samples further apart than this start a new interval (the meter was not running).
const METER_GAP_SECONDS: i64 = 5;

impl Store {
    /// Records that the group is billable now: extends its open interval, or opens one.
    pub fn meter(&self, g: &ContainerGroup, now: DateTime<Utc>) -> Result<()> {
        self.meter_all(std::slice::from_ref(g), now)
    }

    /// [`Store::meter`] for many groups in one transaction (one disk sync for all of them).
    pub fn meter_all(&self, groups: &[ContainerGroup], now: DateTime<Utc>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for g in groups {
            meter_in(&tx, g, now)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn meter_in(tx: &rusqlite::Transaction<'_>, g: &ContainerGroup, now: DateTime<Utc>) -> Result<()> {
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
    Ok(())
}

impl Store {
    /// Each group's use, of one tenant (every tenant's with `None`), between `from` and `to`
    /// (intervals clipped to the window).
    pub fn usage(
        &self,
        owner: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Usage>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT group_id, name, start, end, cpu, memory_bytes, price_per_hour, owner FROM usage
             WHERE ?1 IS NULL OR owner = ?1 ORDER BY owner, group_id, id",
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
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out: Vec<Usage> = Vec::new();
        for row in rows {
            let (gid, name, start, end, cpu, mem, price, tenant) = row?;
            let (a, b) = (parse_time(&start).max(from), parse_time(&end).min(to));
            if b <= a {
                continue;
            }
            let secs = (b - a).num_milliseconds() as f64 / 1000.0;
            let gib = mem as f64 / f64::from(1u32 << 30);
            if out.last().is_none_or(|u| u.group_id != gid) {
                out.push(Usage {
                    tenant,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::spec;
    use qci_spec::GroupResources;

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
            .usage(Some("default"), t0, t0 + chrono::Duration::seconds(1000))
            .unwrap();
        assert_eq!(u.len(), 1);
        assert!((u[0].core_seconds - 6.0).abs() < 1e-6, "{u:?}");
        assert!((u[0].gib_seconds - 12.0).abs() < 1e-6, "{u:?}");
        assert!((u[0].cost.unwrap() - 0.012).abs() < 1e-9, "{u:?}");
        // Clipped to the window.
        let u = s
            .usage(
                Some("default"),
                t0 + chrono::Duration::seconds(5),
                t0 + chrono::Duration::seconds(101),
            )
            .unwrap();
        assert!((u[0].core_seconds - 3.0).abs() < 1e-6, "{u:?}");
    }
}
