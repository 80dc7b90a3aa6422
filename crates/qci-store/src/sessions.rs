//! Console sessions: a browser signs in once with an API key and then carries a session token
//! in an HttpOnly cookie, so the key itself never stays in the page.
//!
//! A session reads `qcs_<id>_<secret>` (made like a key, stored only as its SHA-256) and stands
//! for the key it was opened with: it ends at its own expiry ([`SESSION_LIFETIME`], never past
//! the key's), when it is closed (sign-out), and at once when its key is revoked, expires or
//! is deleted, because every check reads the key's row too.

use chrono::{DateTime, Utc};
use qci_spec::ApiKey;
use rusqlite::{OptionalExtension, params};

use crate::keys::{KEY_COLUMNS, digest, new_token, parse_token, read_key, row_id, same};
use crate::tenants::fmt_time;
use crate::{Result, Store, parse_time};

const SESSION_PREFIX: &str = "qcs_";

/// How long a console session lasts (a working day), at most.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(12);

/// What a presented session token turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCheck {
    /// Its key, when the session ends, and the session's public id.
    Valid(ApiKey, DateTime<Utc>, String),
    /// Not a session of this server (malformed, unknown, wrong secret, or signed out).
    Invalid,
    /// The session's time is up.
    Expired,
    /// The key it was opened with was revoked.
    KeyRevoked(ApiKey),
    /// The key it was opened with expired.
    KeyExpired(ApiKey),
}

impl Store {
    /// Opens a session for the key `key_id` (`k-…`), which the caller has just checked;
    /// answers its token and end. Sessions already over are dropped on the way.
    pub fn create_session(&self, key_id: &str) -> Result<(String, DateTime<Utc>)> {
        let key = self.find_key(None, key_id)?;
        let (id, token) = new_token(SESSION_PREFIX)?;
        let now = Utc::now();
        let mut expires = now + SESSION_LIFETIME;
        if let Some(k) = key.expires_at {
            expires = expires.min(k);
        }
        let conn = self.conn();
        conn.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            params![fmt_time(now)],
        )?;
        conn.execute(
            "INSERT INTO sessions (id, key_id, hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                row_id(&key.id),
                hex::encode(digest(&token)),
                fmt_time(now),
                fmt_time(expires)
            ],
        )?;
        Ok((token, expires))
    }

    /// What `token` is: see [`SessionCheck`].
    pub fn check_session(&self, token: &str) -> Result<SessionCheck> {
        let Some(id) = parse_token(SESSION_PREFIX, token) else {
            return Ok(SessionCheck::Invalid);
        };
        let conn = self.conn();
        let row: Option<(String, String, String)> = conn
            .prepare_cached("SELECT key_id, hash, expires_at FROM sessions WHERE id = ?1")?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((key_id, hash, expires)) = row else {
            return Ok(SessionCheck::Invalid);
        };
        if !same(&hex::decode(hash).unwrap_or_default(), &digest(token)) {
            return Ok(SessionCheck::Invalid);
        }
        let now = Utc::now();
        let expires = parse_time(&expires);
        if expires <= now {
            return Ok(SessionCheck::Expired);
        }
        let key = conn
            .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
            .query_row(params![key_id], read_key)
            .optional()?;
        let Some((key, _)) = key else {
            // The key was deleted (with its tenant).
            return Ok(SessionCheck::Invalid);
        };
        if key.revoked_at.is_some() {
            return Ok(SessionCheck::KeyRevoked(key));
        }
        if key.expires_at.is_some_and(|e| e <= now) {
            return Ok(SessionCheck::KeyExpired(key));
        }
        Ok(SessionCheck::Valid(key, expires, id.to_string()))
    }

    /// Why the credential `key_id` (with the session `session_id`, if it came through one) no
    /// longer works, or `None` while it does. For requests that last (watches, log follows,
    /// terminals): they end when this answers.
    pub fn credential_ended(
        &self,
        key_id: &str,
        session_id: Option<&str>,
    ) -> Result<Option<String>> {
        let conn = self.conn();
        let key = conn
            .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))?
            .query_row(params![row_id(key_id)], read_key)
            .optional()?;
        let now = Utc::now();
        let Some((key, _)) = key else {
            return Ok(Some(format!("the key {key_id} was deleted")));
        };
        if key.revoked_at.is_some() {
            return Ok(Some(format!("the key {key_id} was revoked")));
        }
        if key.expires_at.is_some_and(|e| e <= now) {
            return Ok(Some(format!("the key {key_id} expired")));
        }
        if let Some(id) = session_id {
            let expires: Option<String> = conn
                .prepare_cached("SELECT expires_at FROM sessions WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            match expires {
                None => return Ok(Some("the console session was signed out".into())),
                Some(e) if parse_time(&e) <= now => {
                    return Ok(Some("the console session has ended".into()));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// Closes the session `token` (sign-out); a token that is no session is ignored.
    pub fn end_session(&self, token: &str) -> Result<()> {
        if let SessionCheck::Invalid = self.check_session(token)? {
            return Ok(());
        }
        if let Some(id) = parse_token(SESSION_PREFIX, token) {
            self.conn()
                .execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qci_spec::{DEFAULT_TENANT, Role};

    #[test]
    fn a_session_lasts_while_its_key_does() {
        let s = Store::open_in_memory().unwrap();
        let k = s
            .create_key(DEFAULT_TENANT, Role::Viewer, Some("web"), None)
            .unwrap();
        let (token, until) = s.create_session(&k.key.id).unwrap();
        assert!(token.starts_with("qcs_") && token != k.secret);
        let left = until - Utc::now();
        assert!(
            left > SESSION_LIFETIME - chrono::Duration::minutes(1),
            "{left}"
        );
        assert!(
            matches!(s.check_session(&token).unwrap(), SessionCheck::Valid(v, _, _) if v.id == k.key.id)
        );
        // A key is no session, nor a session one character off; the row holds no token.
        let mut wrong = token.clone();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        for t in [k.secret.as_str(), wrong.as_str(), "", "qcs_"] {
            assert_eq!(s.check_session(t).unwrap(), SessionCheck::Invalid, "{t}");
        }
        let stored: String = s
            .conn()
            .query_row("SELECT hash FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert!(!stored.contains(&token[17..]));
        // Signing out ends it; a second session of the same key is unaffected until revoked.
        let (other, _) = s.create_session(&k.key.id).unwrap();
        s.end_session(&token).unwrap();
        assert_eq!(s.check_session(&token).unwrap(), SessionCheck::Invalid);
        s.end_session("garbage").unwrap();
        let id = |t: &str| t[4..16].to_string();
        assert_eq!(
            s.credential_ended(&k.key.id, Some(&id(&other))).unwrap(),
            None
        );
        assert!(
            s.credential_ended(&k.key.id, Some(&id(&token)))
                .unwrap()
                .unwrap()
                .contains("signed out")
        );
        s.revoke_key(&k.key.id).unwrap();
        assert!(
            s.credential_ended(&k.key.id, None)
                .unwrap()
                .unwrap()
                .contains("revoked")
        );
        assert!(matches!(
            s.check_session(&other).unwrap(),
            SessionCheck::KeyRevoked(_)
        ));
    }

    #[test]
    fn a_session_never_outlives_its_key() {
        let s = Store::open_in_memory().unwrap();
        let k = s
            .create_key(
                DEFAULT_TENANT,
                Role::Member,
                None,
                Some(chrono::Duration::milliseconds(30)),
            )
            .unwrap();
        let (token, until) = s.create_session(&k.key.id).unwrap();
        assert!(until <= k.key.expires_at.unwrap());
        std::thread::sleep(std::time::Duration::from_millis(40));
        // The session ends with the key (its own expiry is the key's).
        assert_eq!(s.check_session(&token).unwrap(), SessionCheck::Expired);
    }
}
