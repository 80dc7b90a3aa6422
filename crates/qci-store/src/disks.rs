//! Disks and their attachment to groups. A disk row's `group_id` is the attachment: set in the
//! same transaction that creates the group (so two groups can never both get a disk) and
//! cleared in the one that removes it, after the controller has unmounted the disk.

use chrono::{DateTime, Utc};
use qci_spec::{Disk, DiskPhase, DiskSpec, GroupSpec, QuotaUse};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Result, Store, StoreError, unique};

const DISK_COLUMNS: &str =
    "d.id, d.owner, d.name, d.size, d.type, d.created_at, d.group_id, g.name, d.state, d.message";

/// What the controller is to do with a disk's image file: a row is made `Creating` (no file
/// yet), becomes `Ready` once the file is made, and `Deleting` until the file is removed,
/// when the row goes too. So a crash at any point leaves a row the next pass finishes, and
/// never a file without a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    Creating,
    Ready,
    Deleting,
    Failed,
}

impl DiskState {
    fn parse(s: &str) -> DiskState {
        match s {
            "Creating" => DiskState::Creating,
            "Deleting" => DiskState::Deleting,
            "Failed" => DiskState::Failed,
            _ => DiskState::Ready,
        }
    }
}

/// A disk whose image file is not yet what its row wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskWork {
    pub id: String,
    pub state: DiskState,
    /// Bytes wanted.
    pub size: u64,
    /// Bytes the image file has (0 before it is made).
    pub made_size: u64,
}

fn read_disk_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Disk> {
    let created: String = r.get(5)?;
    let group_id: Option<String> = r.get(6)?;
    let state = DiskState::parse(&r.get::<_, String>(8)?);
    Ok(Disk {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        size: r.get::<_, i64>(3)?.max(0) as u64,
        disk_type: r.get(4)?,
        created_at: DateTime::parse_from_rfc3339(&created)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
        phase: match state {
            DiskState::Creating => DiskPhase::Creating,
            DiskState::Deleting => DiskPhase::Deleting,
            DiskState::Failed => DiskPhase::Failed,
            DiskState::Ready if group_id.is_some() => DiskPhase::InUse,
            DiskState::Ready => DiskPhase::Available,
        },
        group_id,
        group_name: r.get(7)?,
        message: r.get(9)?,
    })
}

fn find(conn: &Connection, owner: &str, id_or_name: &str) -> Result<Disk> {
    conn.query_row(
        &format!(
            "SELECT {DISK_COLUMNS} FROM disks d LEFT JOIN container_groups g ON g.id = d.group_id
             WHERE d.owner = ?1 AND (d.id = ?2 OR d.name = ?2) ORDER BY d.id = ?2 DESC LIMIT 1"
        ),
        params![owner, id_or_name],
        read_disk_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::DiskNotFound(id_or_name.to_string()))
}

/// Attaches the spec's disks to group `group_id`, inside the caller's transaction. A disk
/// already attached to another group, or named twice, refuses the whole create.
pub(crate) fn attach(
    conn: &Connection,
    owner: &str,
    group_id: &str,
    spec: &GroupSpec,
) -> Result<()> {
    let mut taken: Vec<(String, usize)> = Vec::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let Some(d) = &v.disk else { continue };
        let disk = find(conn, owner, &d.id).map_err(|e| match e {
            StoreError::DiskNotFound(_) => StoreError::VolumeDisk {
                volume: i,
                message: format!("no disk {:?}", d.id),
            },
            e => e,
        })?;
        if let Some((_, first)) = taken.iter().find(|(id, _)| *id == disk.id) {
            return Err(StoreError::VolumeDisk {
                volume: i,
                message: format!("disk {:?} is already volumes[{first}]", d.id),
            });
        }
        match disk.phase {
            DiskPhase::Deleting | DiskPhase::Failed => {
                return Err(StoreError::VolumeDisk {
                    volume: i,
                    message: format!(
                        "disk {:?} is {}{}",
                        disk.name,
                        disk.phase,
                        disk.message.map(|m| format!(": {m}")).unwrap_or_default()
                    ),
                });
            }
            _ => {}
        }
        match &disk.group_id {
            Some(g) if g != group_id => {
                return Err(StoreError::VolumeDisk {
                    volume: i,
                    message: format!(
                        "disk {:?} ({}) is in use by group {:?}; a disk is attached to one group at a time",
                        disk.name,
                        disk.id,
                        disk.group_name.as_deref().unwrap_or(g)
                    ),
                });
            }
            _ => {}
        }
        conn.execute(
            "UPDATE disks SET group_id = ?2 WHERE id = ?1",
            params![disk.id, group_id],
        )?;
        taken.push((disk.id, i));
    }
    Ok(())
}

/// Why a disk could not be taken as free: gone, or attached to a group.
fn not_free(conn: &Connection, id: &str) -> Result<StoreError> {
    let d: Option<Option<String>> = conn
        .query_row(
            "SELECT g.name FROM disks d LEFT JOIN container_groups g ON g.id = d.group_id WHERE d.id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match d {
        None => StoreError::DiskNotFound(id.to_string()),
        Some(g) => StoreError::DiskInUse {
            disk: id.to_string(),
            group: g.unwrap_or_default(),
        },
    })
}

impl Store {
    /// Records a new disk, `Creating`: the controller makes its image.
    pub fn create_disk(&self, id: &str, owner: &str, spec: &DiskSpec, size: u64) -> Result<Disk> {
        let now = Utc::now();
        {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let r = tx.execute(
                "INSERT INTO disks (id, owner, name, size, type, created_at, state, made_size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Creating', 0)",
                params![
                    id,
                    owner,
                    spec.name,
                    size as i64,
                    spec.disk_type,
                    now.to_rfc3339()
                ],
            );
            unique(r, || StoreError::DiskNameTaken(spec.name.clone()))?;
            let asked = QuotaUse {
                disk: size,
                ..Default::default()
            };
            crate::tenants::enforce_after(&tx, owner, &asked)?;
            tx.commit()?;
        }
        self.find_disk(owner, id)
    }

    /// An owner's disk by id, or else by name.
    pub fn find_disk(&self, owner: &str, id_or_name: &str) -> Result<Disk> {
        find(&self.conn(), owner, id_or_name)
    }

    /// An owner's disks (every owner's with `None`), oldest first.
    pub fn list_disks(&self, owner: Option<&str>) -> Result<Vec<Disk>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {DISK_COLUMNS} FROM disks d LEFT JOIN container_groups g ON g.id = d.group_id
             WHERE ?1 IS NULL OR d.owner = ?1 ORDER BY d.created_at, d.id"
        ))?;
        let rows = st.query_map(params![owner], read_disk_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The disks attached to a group.
    pub fn disks_of_group(&self, group_id: &str) -> Result<Vec<Disk>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {DISK_COLUMNS} FROM disks d LEFT JOIN container_groups g ON g.id = d.group_id
             WHERE d.group_id = ?1 ORDER BY d.id"
        ))?;
        let rows = st.query_map(params![group_id], read_disk_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Asks for a disk to grow to `size` (never shrink), within its owner's quota, checked in
    /// the same transaction; the controller grows the file.
    pub fn set_disk_size(&self, owner: &str, id: &str, size: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let old: Option<i64> = tx
            .query_row(
                "SELECT size FROM disks WHERE id = ?1 AND owner = ?2",
                params![id, owner],
                |r| r.get(0),
            )
            .optional()?;
        let old = old
            .ok_or_else(|| StoreError::DiskNotFound(id.to_string()))?
            .max(0) as u64;
        if size <= old {
            return Ok(());
        }
        tx.execute(
            "UPDATE disks SET size = ?2 WHERE id = ?1",
            params![id, size as i64],
        )?;
        let asked = QuotaUse {
            disk: size - old,
            ..Default::default()
        };
        crate::tenants::enforce_after(&tx, owner, &asked)?;
        tx.commit()?;
        Ok(())
    }

    /// Disks whose image file is not yet what their row wants (Failed ones wait for a delete).
    pub fn disk_work(&self) -> Result<Vec<DiskWork>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, state, size, made_size FROM disks
             WHERE state IN ('Creating', 'Deleting') OR (state = 'Ready' AND made_size < size)
             ORDER BY created_at, id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DiskWork {
                id: r.get(0)?,
                state: DiskState::parse(&r.get::<_, String>(1)?),
                size: r.get::<_, i64>(2)?.max(0) as u64,
                made_size: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// True while a disk's row wants more of its image than the file has.
    pub fn disk_pending(&self, id: &str) -> Result<bool> {
        Ok(self.disk_work()?.iter().any(|w| w.id == id))
    }

    /// The image file has `size` bytes: a Creating disk becomes Ready.
    pub fn disk_made(&self, id: &str, size: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE disks SET made_size = ?2, message = NULL,
                 state = CASE WHEN state = 'Creating' THEN 'Ready' ELSE state END
             WHERE id = ?1",
            params![id, size as i64],
        )?;
        Ok(())
    }

    /// Why the controller could not do what a disk's row wants: a Creating disk fails (it
    /// can then only be deleted); otherwise the message is shown and the work retried.
    pub fn disk_problem(&self, id: &str, message: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE disks SET message = ?2,
                 state = CASE WHEN state = 'Creating' THEN 'Failed' ELSE state END
             WHERE id = ?1",
            params![id, message],
        )?;
        Ok(())
    }

    /// Marks a disk for deletion; the controller removes its image, then its row. A disk
    /// attached to a group is refused.
    pub fn request_disk_deletion(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE disks SET state = 'Deleting' WHERE id = ?1 AND group_id IS NULL",
            params![id],
        )?;
        if n == 1 {
            return Ok(());
        }
        Err(not_free(&conn, id)?)
    }

    /// Removes a Deleting disk's row (its image is gone); a disk in use is refused.
    pub fn remove_disk(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "DELETE FROM disks WHERE id = ?1 AND group_id IS NULL AND state = 'Deleting'",
            params![id],
        )?;
        if n == 0 {
            return Err(not_free(&conn, id)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_disk(name: &str, disk: &str) -> GroupSpec {
        qci_spec::parse_spec(&format!(
            "name: {name}\nvolumes: [{{name: d, disk: {{id: {disk}}}}}]\ncontainers:\n  - {{name: a, image: bb}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_disk_is_attached_to_one_group_at_a_time() {
        let s = Store::open_in_memory().unwrap();
        let spec = DiskSpec {
            name: "data".into(),
            size: qci_spec::Quantity("1Gi".into()),
            disk_type: "standard".into(),
        };
        let d = s.create_disk("d-1", "o", &spec, 1 << 30).unwrap();
        assert_eq!(d.phase, DiskPhase::Creating);
        s.disk_made("d-1", 1 << 30).unwrap();
        assert_eq!(s.find_disk("o", "d-1").unwrap().phase, DiskPhase::Available);
        assert!(matches!(
            s.create_disk("d-2", "o", &spec, 1 << 30),
            Err(StoreError::DiskNameTaken(_))
        ));
        let g1 = s.create_group("o", &with_disk("g1", "data")).unwrap();
        let d = s.find_disk("o", "d-1").unwrap();
        assert_eq!(d.phase, DiskPhase::InUse);
        assert_eq!(d.group_name.as_deref(), Some("g1"));
        // A second group is refused, and nothing of it is stored.
        let e = s.create_group("o", &with_disk("g2", "d-1")).unwrap_err();
        assert!(e.to_string().contains("in use by group \"g1\""), "{e}");
        assert!(matches!(
            s.find_group("o", "g2"),
            Err(StoreError::NotFound(_))
        ));
        // Another owner cannot see it at all.
        let e = s.create_group("p", &with_disk("g3", "data")).unwrap_err();
        assert!(e.to_string().contains("no disk"), "{e}");
        assert!(matches!(
            s.request_disk_deletion("d-1"),
            Err(StoreError::DiskInUse { .. })
        ));
        s.remove_group(&g1.id).unwrap();
        assert_eq!(
            s.find_disk("o", "data").unwrap().phase,
            DiskPhase::Available
        );
        s.create_group("o", &with_disk("g2", "d-1")).unwrap();
        assert_eq!(
            s.disks_of_group(&s.find_group("o", "g2").unwrap().id)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_controller_is_told_what_each_disk_needs() {
        let s = Store::open_in_memory().unwrap();
        let spec = |n: &str| DiskSpec {
            name: n.into(),
            size: qci_spec::Quantity("1Gi".into()),
            disk_type: "standard".into(),
        };
        s.create_disk("d-1", "o", &spec("a"), 1 << 30).unwrap();
        s.create_disk("d-2", "o", &spec("b"), 1 << 30).unwrap();
        let work = s.disk_work().unwrap();
        assert_eq!(work.len(), 2);
        assert_eq!((work[0].state, work[0].made_size), (DiskState::Creating, 0));
        s.disk_made("d-1", 1 << 30).unwrap();
        s.disk_problem("d-2", "no space").unwrap();
        assert!(
            s.disk_work().unwrap().is_empty(),
            "Ready and Failed disks need nothing"
        );
        let failed = s.find_disk("o", "b").unwrap();
        assert_eq!(
            (failed.phase, failed.message.as_deref()),
            (DiskPhase::Failed, Some("no space"))
        );
        // A Failed disk cannot be attached; it can be deleted.
        let e = s.create_group("o", &with_disk("g", "b")).unwrap_err();
        assert!(e.to_string().contains("is Failed: no space"), "{e}");
        // A growth is wanted until the file has the size.
        s.set_disk_size("o", "d-1", 2 << 30).unwrap();
        let work = s.disk_work().unwrap();
        assert_eq!(
            (work[0].id.as_str(), work[0].size, work[0].made_size),
            ("d-1", 2 << 30, 1 << 30)
        );
        s.disk_made("d-1", 2 << 30).unwrap();
        // Deleting: the row stays until the controller removes the image, then goes.
        s.request_disk_deletion("d-2").unwrap();
        assert_eq!(s.disk_work().unwrap()[0].state, DiskState::Deleting);
        assert_eq!(s.find_disk("o", "b").unwrap().phase, DiskPhase::Deleting);
        assert!(matches!(
            s.remove_disk("d-1"),
            Err(StoreError::DiskInUse { .. }) | Err(StoreError::DiskNotFound(_))
        ));
        s.remove_disk("d-2").unwrap();
        assert!(s.disk_work().unwrap().is_empty());
    }

    #[test]
    fn a_growth_never_shrinks_and_stays_in_its_tenant() {
        let s = Store::open_in_memory().unwrap();
        let spec = DiskSpec {
            name: "a".into(),
            size: qci_spec::Quantity("1Gi".into()),
            disk_type: "standard".into(),
        };
        s.create_disk("d-1", "o", &spec, 1 << 30).unwrap();
        s.set_disk_size("o", "d-1", 1 << 29).unwrap();
        assert_eq!(
            s.find_disk("o", "d-1").unwrap().size,
            1 << 30,
            "never shrinks"
        );
        assert!(matches!(
            s.set_disk_size("p", "d-1", 2 << 30),
            Err(StoreError::DiskNotFound(_))
        ));
    }
}
