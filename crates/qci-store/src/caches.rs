//! Image caches: images pulled ahead of time, per owner.

use chrono::Utc;
use qci_spec::{ImageCache, ImageCacheSpec, ImageCacheStatus};
use rusqlite::{OptionalExtension, params};

use crate::{Result, Sealer, Store, StoreError, parse_time, unique};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
