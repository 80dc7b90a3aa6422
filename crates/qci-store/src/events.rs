//! Events: a group's history, repeats folded into one row with a count.

use chrono::Utc;
use qci_spec::{Event, EventType};
use rusqlite::params;

use crate::{Result, Store, parse_time};

impl Store {
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
        drop(conn);
        self.changed();
        Ok(())
    }

    /// A group's events, by the time they last happened.
    pub fn events(&self, group_id: &str) -> Result<Vec<Event>> {
        self.query_events("WHERE group_id = ?1 ORDER BY time, id", params![group_id])
    }

    /// An owner's (every owner's with `None`) events across groups changed after `after_seq`, oldest change first, at most
    /// `limit` (the newest ones when there are more).
    pub fn events_since(
        &self,
        owner: Option<&str>,
        group_id: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let mut v = self.query_events(
            "WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR group_id = ?2) AND seq > ?3 ORDER BY seq DESC LIMIT ?4",
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
