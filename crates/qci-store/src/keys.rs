//! API keys: random bearer tokens stored only as their SHA-256.
//!
//! A key reads `qci_<id>_<secret>`: 12 hex characters of public id (the row's lookup key, shown
//! as `k-<id>`) and 64 of secret (256 bits from the system's randomness). A plain hash is enough
//! for secrets that random (a password hash like argon2 is for secrets people choose, and would
//! cost milliseconds on every request); the hash is compared in constant time.

use chrono::{DateTime, Utc};
use qci_spec::{ApiKey, CreatedKey, DEFAULT_TENANT, Role};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{OptionalExtension, params};

use crate::tenants::{fmt_time, now};
use crate::{Result, SecretError, Store, StoreError, parse_time, unique};

/// The name of the key `qci serve` keeps in `<data>/admin.key`.
pub const LOCAL_ADMIN_KEY: &str = "local-admin";

const TOKEN_PREFIX: &str = "qci_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 64;

/// How long a key found valid is believed without reading its row again. A key revoked
/// through this process is forgotten at once; one revoked elsewhere (another node sharing the
/// store) stops working within this.
const TRUST_FOR: std::time::Duration = std::time::Duration::from_millis(500);
/// Keys remembered at most (the cache is emptied past it).
const CACHE_MAX: usize = 10_000;

/// Keys recently found valid, by the digest of their token: most requests then read no row
/// and take no database lock (see `docs/benchmarks.md`, API authentication).
#[derive(Default)]
pub(crate) struct KeyCache {
    valid: std::sync::Mutex<std::collections::HashMap<[u8; 32], (ApiKey, std::time::Instant)>>,
}

impl KeyCache {
    fn get(&self, d: &[u8; 32]) -> Option<ApiKey> {
        let m = self.valid.lock().unwrap_or_else(|p| p.into_inner());
        let (k, at) = m.get(d)?;
        (at.elapsed() < TRUST_FOR && k.expires_at.is_none_or(|e| e > Utc::now())).then(|| k.clone())
    }

    fn put(&self, d: [u8; 32], k: ApiKey) {
        let mut m = self.valid.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CACHE_MAX {
            m.clear();
        }
        m.insert(d, (k, std::time::Instant::now()));
    }

    pub(crate) fn forget_all(&self) {
        self.valid.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// What a presented token turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyCheck {
    Valid(ApiKey),
    /// Not a key of this server (malformed, unknown id or wrong secret).
    Invalid,
    Expired(ApiKey),
    Revoked(ApiKey),
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal without an early exit, so the time taken tells nothing of where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The public id of a well-formed key.
fn token_id(token: &str) -> Option<&str> {
    parse_token(TOKEN_PREFIX, token)
}

/// The public id of a well-formed `<prefix><id>_<secret>` token (a key's or a session's).
pub(crate) fn parse_token<'a>(prefix: &str, token: &'a str) -> Option<&'a str> {
    let rest = token.strip_prefix(prefix)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_LEN) && hex(secret, SECRET_LEN)).then_some(id)
}

/// A new `<prefix><id>_<secret>` token: (id, token).
pub(crate) fn new_token(prefix: &str) -> Result<(String, String)> {
    let mut raw = [0u8; ID_LEN / 2 + SECRET_LEN / 2];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| SecretError::Random)?;
    let id = hex::encode(&raw[..ID_LEN / 2]);
    let token = format!("{prefix}{id}_{}", hex::encode(&raw[ID_LEN / 2..]));
    Ok((id, token))
}

pub(crate) const KEY_COLUMNS: &str =
    "id, name, tenant, role, created_at, expires_at, revoked_at, last_used_at, hash";

pub(crate) fn read_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ApiKey, String)> {
    let role: String = r.get(3)?;
    let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(r.get::<_, Option<String>>(i)?.as_deref().map(parse_time))
    };
    Ok((
        ApiKey {
            id: format!("k-{}", r.get::<_, String>(0)?),
            name: r.get(1)?,
            tenant: r.get(2)?,
            role: role.parse().unwrap_or(Role::Viewer),
            created_at: parse_time(&r.get::<_, String>(4)?),
            expires_at: time(5)?,
            revoked_at: time(6)?,
            last_used_at: time(7)?,
        },
        r.get(8)?,
    ))
}

/// `k-0123456789ab` or `0123456789ab` → the row id.
pub(crate) fn row_id(id: &str) -> &str {
    id.strip_prefix("k-").unwrap_or(id)
}

impl Store {
    /// Makes a key for `tenant` (which must exist). The secret is in the answer and nowhere
    /// else: only its hash is stored.
    pub fn create_key(
        &self,
        tenant: &str,
        role: Role,
        name: Option<&str>,
        lifetime: Option<chrono::Duration>,
    ) -> Result<CreatedKey> {
        let (id, secret) = new_token(TOKEN_PREFIX)?;
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| format!("k-{id}"));
        let created = Utc::now();
        let expires = lifetime.map(|l| created + l);
        {
            let conn = self.conn();
            if !crate::tenants::exists(&conn, tenant)? {
                return Err(StoreError::Missing("tenant", tenant.to_string()));
            }
            let r = conn.execute(
                "INSERT INTO api_keys (id, name, tenant, role, hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    name,
                    tenant,
                    role.as_str(),
                    hex::encode(digest(&secret)),
                    fmt_time(created),
                    expires.map(fmt_time)
                ],
            );
            unique(r, || StoreError::Taken("key", name.clone()))?;
        }
        let key = self.find_key(Some(tenant), &id)?;
        Ok(CreatedKey { secret, key })
    }

    /// A key by id (`k-…`) or name, within `tenant` (any tenant's with `None`, by id only).
    pub fn find_key(&self, tenant: Option<&str>, id_or_name: &str) -> Result<ApiKey> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE
                     (?1 IS NULL AND id = ?2) OR (tenant = ?1 AND (id = ?2 OR name = ?3))
                     ORDER BY id = ?2 DESC LIMIT 1"
                ),
                params![tenant, row_id(id_or_name), id_or_name],
                read_key,
            )
            .optional()?;
        row.map(|(k, _)| k)
            .ok_or_else(|| StoreError::Missing("key", id_or_name.to_string()))
    }

    /// Keys, oldest first (revoked ones too, marked), of one tenant or of all.
    pub fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY created_at, id"
        ))?;
        let rows = st.query_map(params![tenant], read_key)?;
        Ok(rows
            .map(|r| r.map(|(k, _)| k))
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes a key: it stops working at once here (the cache of valid keys is emptied), and
    /// within [`TRUST_FOR`] wherever else the store is shared.
    pub fn revoke_key(&self, id: &str) -> Result<ApiKey> {
        self.conn().execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![row_id(id), now()],
        )?;
        // After the update: a check that read the row before it cached it under the same lock.
        self.keys.forget_all();
        self.find_key(None, id)
    }

    /// What `token` is. A valid key's last use is recorded to the minute (one write a minute
    /// per key at most, not one per request).
    pub fn check_key(&self, token: &str) -> Result<KeyCheck> {
        let Some(id) = token_id(token) else {
            return Ok(KeyCheck::Invalid);
        };
        let presented = digest(token);
        if let Some(k) = self.keys.get(&presented) {
            return Ok(KeyCheck::Valid(k));
        }
        let conn = self.conn();
        let row = conn
            .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
            .query_row(params![id], read_key)
            .optional()?;
        let Some((key, hash)) = row else {
            return Ok(KeyCheck::Invalid);
        };
        let stored = hex::decode(hash).unwrap_or_default();
        if !same(&stored, &presented) {
            return Ok(KeyCheck::Invalid);
        }
        let now = Utc::now();
        if key.revoked_at.is_some() {
            return Ok(KeyCheck::Revoked(key));
        }
        if key.expires_at.is_some_and(|e| e <= now) {
            return Ok(KeyCheck::Expired(key));
        }
        if key
            .last_used_at
            .is_none_or(|t| now - t > chrono::Duration::seconds(60))
        {
            conn.execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                params![id, fmt_time(now)],
            )?;
        }
        self.keys.put(presented, key.clone());
        Ok(KeyCheck::Valid(key))
    }

    /// Makes sure the local admin key works: `current` (what `<data>/admin.key` holds) if it is
    /// a valid admin key, else a new one (answered, to be written there) that replaces the
    /// previous local admin key.
    pub fn ensure_local_admin_key(&self, current: Option<&str>) -> Result<Option<String>> {
        if let Some(t) = current
            && let KeyCheck::Valid(k) = self.check_key(t.trim())?
            && k.role == Role::Admin
        {
            return Ok(None);
        }
        self.conn().execute(
            "DELETE FROM api_keys WHERE tenant = ?1 AND name = ?2",
            params![DEFAULT_TENANT, LOCAL_ADMIN_KEY],
        )?;
        self.keys.forget_all();
        let k = self.create_key(DEFAULT_TENANT, Role::Admin, Some(LOCAL_ADMIN_KEY), None)?;
        Ok(Some(k.secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_work_until_revoked_or_expired() {
        let s = Store::open_in_memory().unwrap();
        let k = s
            .create_key(DEFAULT_TENANT, Role::Member, Some("ci"), None)
            .unwrap();
        assert!(k.secret.starts_with("qci_") && k.secret.len() == 4 + 12 + 1 + 64);
        assert_eq!(k.key.id, format!("k-{}", &k.secret[4..16]));
        assert!(matches!(s.check_key(&k.secret).unwrap(), KeyCheck::Valid(v) if v.name == "ci"));
        assert!(s.check_key(&k.secret).unwrap() != KeyCheck::Invalid);
        // One character off, a prefix, garbage, another scheme: invalid.
        let mut wrong = k.secret.clone();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        for t in [wrong.as_str(), &k.secret[..20], "", "qci_", "Basic abc"] {
            assert_eq!(s.check_key(t).unwrap(), KeyCheck::Invalid, "{t}");
        }
        // Names are unique per tenant; an unknown tenant is refused.
        assert!(matches!(
            s.create_key(DEFAULT_TENANT, Role::Viewer, Some("ci"), None),
            Err(StoreError::Taken("key", _))
        ));
        assert!(matches!(
            s.create_key("nope", Role::Viewer, None, None),
            Err(StoreError::Missing("tenant", _))
        ));
        // The stored row holds no secret.
        let conn = s.conn();
        let hash: String = conn
            .query_row("SELECT hash FROM api_keys", [], |r| r.get(0))
            .unwrap();
        assert!(!hash.contains(&k.secret[17..]));
        drop(conn);
        assert_eq!(s.find_key(Some(DEFAULT_TENANT), "ci").unwrap().id, k.key.id);
        assert!(s.find_key(Some("other"), &k.key.id).is_err());
        s.revoke_key(&k.key.id).unwrap();
        assert!(matches!(
            s.check_key(&k.secret).unwrap(),
            KeyCheck::Revoked(_)
        ));
        let short = s
            .create_key(
                DEFAULT_TENANT,
                Role::Viewer,
                None,
                Some(chrono::Duration::milliseconds(1)),
            )
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(matches!(
            s.check_key(&short.secret).unwrap(),
            KeyCheck::Expired(_)
        ));
        assert_eq!(s.list_keys(Some(DEFAULT_TENANT)).unwrap().len(), 2);
    }

    #[test]
    fn the_local_admin_key_is_kept_working() {
        let s = Store::open_in_memory().unwrap();
        let first = s.ensure_local_admin_key(None).unwrap().unwrap();
        assert_eq!(s.ensure_local_admin_key(Some(&first)).unwrap(), None);
        // Revoked (or lost): a new one replaces it.
        s.revoke_key(&format!("k-{}", &first[4..16])).unwrap();
        let second = s.ensure_local_admin_key(Some(&first)).unwrap().unwrap();
        assert_ne!(first, second);
        assert!(
            matches!(s.check_key(&second).unwrap(), KeyCheck::Valid(k) if k.role == Role::Admin)
        );
        assert_eq!(s.list_keys(None).unwrap().len(), 1);
    }
}
