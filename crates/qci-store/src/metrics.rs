//! Resource readings: raw counters per container, CPU turned into a rate when read.

use chrono::{DateTime, Utc};
use rusqlite::params;

use crate::{Result, Store, parse_time};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
