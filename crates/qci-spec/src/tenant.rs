//! Tenants, API keys and quotas: who may do what, and how much of the machine each tenant may
//! hold. Every resource belongs to one tenant (its `owner`); a key acts within its tenant, an
//! admin key in any.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::quantity::{Quantity, parse_cpu_millis, parse_memory_bytes};
use crate::validate::{FieldError, check_dns_label};

/// The tenant qci creates on its first start; the local admin key belongs to it.
pub const DEFAULT_TENANT: &str = "default";

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, in every tenant: tenants, keys, audit, the image store, `/metrics`.
    Admin,
    /// Everything within its tenant.
    Member,
    /// Reads within its tenant: no create, update, delete or exec.
    Viewer,
    /// `/metrics` only (a Prometheus scraper's key).
    Metrics,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Member, Role::Viewer, Role::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::Metrics => "metrics",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: one of admin, member, viewer, metrics"))
    }
}

/// The things a quota can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaKey {
    Groups,
    Cores,
    Memory,
    Disk,
    Eips,
    Vpcs,
    ExecSessions,
}

impl QuotaKey {
    pub const ALL: [QuotaKey; 7] = [
        QuotaKey::Groups,
        QuotaKey::Cores,
        QuotaKey::Memory,
        QuotaKey::Disk,
        QuotaKey::Eips,
        QuotaKey::Vpcs,
        QuotaKey::ExecSessions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKey::Groups => "groups",
            QuotaKey::Cores => "cores",
            QuotaKey::Memory => "memory",
            QuotaKey::Disk => "disk",
            QuotaKey::Eips => "eips",
            QuotaKey::Vpcs => "vpcs",
            QuotaKey::ExecSessions => "exec_sessions",
        }
    }

    /// Memory and disk are bytes; the rest are counts, and cores a number of cores.
    fn is_bytes(self) -> bool {
        matches!(self, QuotaKey::Memory | QuotaKey::Disk)
    }

    /// A value of this key for people: bytes with a binary suffix, cores as a decimal.
    pub fn show(self, v: f64) -> String {
        if self.is_bytes() {
            show_bytes(v as u64)
        } else {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

impl std::fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for QuotaKey {
    type Err = String;
    fn from_str(s: &str) -> Result<QuotaKey, String> {
        QuotaKey::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown quota {s:?}: one of {}",
                    QuotaKey::ALL.map(|k| k.as_str()).join(", ")
                )
            })
    }
}

/// `16Gi` for 16 GiB, `1.5Gi`, `512Mi`, or plain bytes when no suffix fits.
fn show_bytes(b: u64) -> String {
    for (suffix, unit) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if b >= unit {
            let v = b as f64 / unit as f64;
            let s = format!("{v:.2}");
            return format!("{}{suffix}", s.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    b.to_string()
}

/// A tenant's limits; an absent one is unlimited. Memory and disk in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Quota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<u64>,
    /// Normalised cores of all the tenant's groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<f64>,
    /// Normalised memory of all the tenant's groups, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// The sizes of all the tenant's disks, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eips: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpcs: Option<u64>,
    /// Exec sessions (terminals included) open at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_sessions: Option<u64>,
}

impl Quota {
    /// The limit for `key`, as a number (cores as cores, bytes as bytes).
    pub fn limit(&self, key: QuotaKey) -> Option<f64> {
        match key {
            QuotaKey::Groups => self.groups.map(|v| v as f64),
            QuotaKey::Cores => self.cores,
            QuotaKey::Memory => self.memory.map(|v| v as f64),
            QuotaKey::Disk => self.disk.map(|v| v as f64),
            QuotaKey::Eips => self.eips.map(|v| v as f64),
            QuotaKey::Vpcs => self.vpcs.map(|v| v as f64),
            QuotaKey::ExecSessions => self.exec_sessions.map(|v| v as f64),
        }
    }

    /// Refuses a request that adds `requested` to a tenant already using `used` when it would
    /// go past a limit. Only what the request adds is checked: a tenant above a limit an admin
    /// lowered can still make things that need none of it.
    pub fn check(&self, used: &QuotaUse, requested: &QuotaUse) -> Result<(), QuotaExceeded> {
        for key in QuotaKey::ALL {
            let (u, r) = (used.get(key), requested.get(key));
            if let Some(limit) = self.limit(key)
                && r > 0.0
                && u + r > limit + 1e-9
            {
                return Err(QuotaExceeded {
                    quota: key,
                    limit,
                    used: u,
                    requested: r,
                });
            }
        }
        Ok(())
    }
}

/// A tenant's use (or a request's share of it), in the units of [`Quota`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUse {
    pub groups: u64,
    pub cores: f64,
    pub memory: u64,
    pub disk: u64,
    pub eips: u64,
    pub vpcs: u64,
    pub exec_sessions: u64,
}

impl QuotaUse {
    pub fn get(&self, key: QuotaKey) -> f64 {
        match key {
            QuotaKey::Groups => self.groups as f64,
            QuotaKey::Cores => self.cores,
            QuotaKey::Memory => self.memory as f64,
            QuotaKey::Disk => self.disk as f64,
            QuotaKey::Eips => self.eips as f64,
            QuotaKey::Vpcs => self.vpcs as f64,
            QuotaKey::ExecSessions => self.exec_sessions as f64,
        }
    }

    /// Each amount less `other`'s (never below 0).
    pub fn minus(&self, other: &QuotaUse) -> QuotaUse {
        QuotaUse {
            groups: self.groups.saturating_sub(other.groups),
            cores: (self.cores - other.cores).max(0.0),
            memory: self.memory.saturating_sub(other.memory),
            disk: self.disk.saturating_sub(other.disk),
            eips: self.eips.saturating_sub(other.eips),
            vpcs: self.vpcs.saturating_sub(other.vpcs),
            exec_sessions: self.exec_sessions.saturating_sub(other.exec_sessions),
        }
    }
}

/// A request refused because it would take its tenant past a quota (Kubernetes' wording).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "exceeded quota: {quota}, requested: {}, used: {}, limited: {}",
    quota.show(*requested), quota.show(*used), quota.show(*limit)
)]
pub struct QuotaExceeded {
    pub quota: QuotaKey,
    pub limit: f64,
    pub used: f64,
    pub requested: f64,
}

/// A quota as a user writes it: numbers, or quantities such as `16Gi` for memory and disk and
/// `500m` for cores. `null` (or absent) is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub groups: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cores: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub memory: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub disk: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub eips: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub vpcs: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub exec_sessions: Option<Quantity>,
}

impl QuotaSpec {
    fn slot(&mut self, key: QuotaKey) -> &mut Option<Quantity> {
        match key {
            QuotaKey::Groups => &mut self.groups,
            QuotaKey::Cores => &mut self.cores,
            QuotaKey::Memory => &mut self.memory,
            QuotaKey::Disk => &mut self.disk,
            QuotaKey::Eips => &mut self.eips,
            QuotaKey::Vpcs => &mut self.vpcs,
            QuotaKey::ExecSessions => &mut self.exec_sessions,
        }
    }

    /// A stored quota in the written form (to change some of its limits and send it back).
    pub fn from_quota(q: &Quota) -> QuotaSpec {
        let mut s = QuotaSpec::default();
        for key in QuotaKey::ALL {
            if let Some(v) = q.limit(key) {
                *s.slot(key) = Some(Quantity(if key == QuotaKey::Cores {
                    v.to_string()
                } else {
                    (v as u64).to_string()
                }));
            }
        }
        s
    }

    /// Applies `KEY=VALUE[,KEY=VALUE...]` (the CLI's `--quota`); `unlimited` clears a limit.
    pub fn apply_pairs(&mut self, text: &str) -> Result<(), String> {
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: write KEY=VALUE, e.g. cores=8"))?;
            let key: QuotaKey = k.trim().parse()?;
            let v = v.trim();
            *self.slot(key) = match v {
                "unlimited" | "none" | "" => None,
                v => Some(Quantity(v.to_string())),
            };
        }
        Ok(())
    }

    /// The quota in numbers; errors name `quota.KEY`.
    pub fn resolve(&self) -> Result<Quota, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut q = Quota::default();
        let mut me = self.clone();
        for key in QuotaKey::ALL {
            let Some(raw) = me.slot(key).clone() else {
                continue;
            };
            let field = format!("quota.{key}");
            let text = raw.0.trim();
            if text.starts_with('-') {
                errs.push(FieldError::new(
                    field,
                    "must be 0 or more (leave it out for no limit)",
                ));
                continue;
            }
            match key {
                QuotaKey::Cores => match parse_cpu_millis(text) {
                    Ok(m) => q.cores = Some(m as f64 / 1000.0),
                    Err(e) => errs.push(FieldError::new(field, e)),
                },
                QuotaKey::Memory | QuotaKey::Disk => match parse_memory_bytes(text) {
                    Ok(b) if key == QuotaKey::Memory => q.memory = Some(b),
                    Ok(b) => q.disk = Some(b),
                    Err(e) => errs.push(FieldError::new(field, e)),
                },
                _ => match text.parse::<u64>() {
                    Ok(n) if n <= 1_000_000_000 => match key {
                        QuotaKey::Groups => q.groups = Some(n),
                        QuotaKey::Eips => q.eips = Some(n),
                        QuotaKey::Vpcs => q.vpcs = Some(n),
                        _ => q.exec_sessions = Some(n),
                    },
                    _ => errs.push(FieldError::new(
                        field,
                        format!("{text:?} is not a whole number from 0 to 1000000000"),
                    )),
                },
            }
        }
        if errs.is_empty() { Ok(q) } else { Err(errs) }
    }
}

/// A tenant as a user asks for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// DNS label, unique.
    pub name: String,
    #[serde(default)]
    pub quota: QuotaSpec,
}

/// An update: the whole quota is replaced (absent limits become unlimited).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(default)]
    pub quota: QuotaSpec,
}

/// A tenant, with its use against its quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub quota: Quota,
    /// What the tenant holds now, in the quota's units.
    #[serde(default)]
    pub used: QuotaUse,
}

/// Checks a tenant spec; errors name each wrong field.
pub fn validate_tenant(spec: &TenantSpec) -> Result<Quota, Vec<FieldError>> {
    let mut errs = Vec::new();
    if let Err(m) = check_dns_label(&spec.name) {
        errs.push(FieldError::new("name", m));
    }
    match spec.quota.resolve() {
        Ok(q) if errs.is_empty() => Ok(q),
        Ok(_) => Err(errs),
        Err(e) => {
            errs.extend(e);
            Err(errs)
        }
    }
}

/// An API key as a user asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The tenant the key acts in.
    pub tenant: String,
    pub role: Role,
    /// DNS label, unique among the tenant's keys; default: the key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key stops working this long after it is made: `30d`, `12h`, `90m`; never if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// The longest a key may be made for.
pub const MAX_KEY_LIFETIME_DAYS: i64 = 3650;

/// Checks a key spec; answers its lifetime. Errors name each wrong field.
pub fn validate_key(spec: &KeySpec) -> Result<Option<chrono::Duration>, Vec<FieldError>> {
    let mut errs = Vec::new();
    if let Err(m) = check_dns_label(&spec.tenant) {
        errs.push(FieldError::new("tenant", m));
    }
    if let Some(n) = &spec.name
        && let Err(m) = check_dns_label(n)
    {
        errs.push(FieldError::new("name", m));
    }
    let life = match spec.expires_in.as_deref().map(parse_age) {
        None => None,
        Some(Ok(d)) if d > chrono::Duration::zero() => {
            if d > chrono::Duration::days(MAX_KEY_LIFETIME_DAYS) {
                errs.push(FieldError::new(
                    "expires_in",
                    format!("at most {MAX_KEY_LIFETIME_DAYS}d"),
                ));
            }
            Some(d)
        }
        Some(Ok(_)) => {
            errs.push(FieldError::new("expires_in", "must be more than 0"));
            None
        }
        Some(Err(m)) => {
            errs.push(FieldError::new("expires_in", m));
            None
        }
    };
    if errs.is_empty() { Ok(life) } else { Err(errs) }
}

/// `30s`, `10m`, `2h`, `30d`: a span of time.
pub fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let bad = || format!("{s:?} is not an age such as 30s, 10m, 2h or 30d");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86400),
        _ => return Err(bad()),
    }
    .filter(|s| *s <= 100 * 365 * 86400)
    .ok_or_else(bad)?;
    Ok(chrono::Duration::seconds(secs))
}

/// An API key as qci shows it: never the secret, which is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// `k-` and the public part of the key (the 12 characters after `qci_`).
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when the key was revoked; it works no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// About when the key was last used (to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A new key: the key itself, shown this once, and its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The bearer token: `qci_` + 12 characters of id + `_` + 43 of secret (256 random bits).
    pub secret: String,
    pub key: ApiKey,
}

/// One audited action: a call that changes something, or an exec session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub time: DateTime<Utc>,
    /// The tenant the call acted in.
    pub tenant: String,
    /// The key that made it (its id), and that key's own tenant.
    pub key_id: String,
    pub key_tenant: String,
    /// e.g. `POST /v1/container-groups`, `DELETE /v1/disks/data`.
    pub action: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// For exec: the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The key a request was made with (`GET /v1/whoami`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub key_id: String,
    pub tenant: String,
    pub role: Role,
}

/// Counts by noun, for the message of a tenant that cannot be removed.
pub type Holdings = BTreeMap<&'static str, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quota {
        let mut s = QuotaSpec::default();
        s.apply_pairs(text).unwrap();
        s.resolve().unwrap()
    }

    #[test]
    fn quota_forms() {
        let quota = q("groups=10,cores=8,memory=16Gi,disk=100Gi,eips=2,vpcs=2,exec_sessions=10");
        assert_eq!(quota.groups, Some(10));
        assert_eq!(quota.cores, Some(8.0));
        assert_eq!(quota.memory, Some(16 << 30));
        assert_eq!(quota.disk, Some(100 << 30));
        assert_eq!(quota.exec_sessions, Some(10));
        assert_eq!(q("cores=500m").cores, Some(0.5));
        // unlimited clears; the round trip keeps the rest.
        let mut s = QuotaSpec::from_quota(&quota);
        s.apply_pairs("cores=unlimited, memory=1Gi").unwrap();
        let back = s.resolve().unwrap();
        assert_eq!(back.cores, None);
        assert_eq!(back.memory, Some(1 << 30));
        assert_eq!(back.disk, quota.disk);
    }

    #[test]
    fn bad_quotas_name_the_field() {
        let table = [
            ("cores=-1", "quota.cores", "0 or more"),
            ("groups=-1", "quota.groups", "0 or more"),
            ("groups=1.5", "quota.groups", "whole number"),
            ("memory=lots", "quota.memory", "invalid memory"),
            ("eips=99999999999", "quota.eips", "whole number"),
        ];
        for (text, field, msg) in table {
            let mut s = QuotaSpec::default();
            s.apply_pairs(text).unwrap();
            let e = s.resolve().unwrap_err();
            assert_eq!(e[0].field, field, "{text}");
            assert!(e[0].message.contains(msg), "{text}: {}", e[0].message);
        }
        let mut s = QuotaSpec::default();
        assert!(
            s.apply_pairs("gpus=1")
                .unwrap_err()
                .contains("unknown quota")
        );
        assert!(s.apply_pairs("cores").unwrap_err().contains("KEY=VALUE"));
    }

    #[test]
    fn quota_checks() {
        let quota = q("groups=2,cores=2,memory=4Gi");
        let used = |groups, cores| QuotaUse {
            groups,
            cores,
            memory: 1 << 30,
            ..Default::default()
        };
        let one = |cores| QuotaUse {
            groups: 1,
            cores,
            memory: 1 << 30,
            ..Default::default()
        };
        // (used groups, used cores, requested cores, refused quota)
        let table: [(u64, f64, f64, Option<QuotaKey>); 6] = [
            (0, 0.0, 1.0, None),
            (1, 1.0, 1.0, None),
            (1, 1.5, 1.0, Some(QuotaKey::Cores)),
            (2, 0.5, 0.5, Some(QuotaKey::Groups)),
            (0, 0.0, 2.0, None),
            (0, 0.0, 2.5, Some(QuotaKey::Cores)),
        ];
        for (g, c, r, want) in table {
            let got = quota.check(&used(g, c), &one(r)).err().map(|e| e.quota);
            assert_eq!(got, want, "used {g} groups, {c} cores; asks {r}");
        }
        // Over a limit already (lowered by an admin), a request that adds none of it passes.
        let over = QuotaUse {
            groups: 5,
            ..Default::default()
        };
        let disk_only = QuotaUse {
            disk: 1,
            ..Default::default()
        };
        assert!(quota.check(&over, &disk_only).is_ok());
        let e = quota.check(&used(1, 1.5), &one(1.0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "exceeded quota: cores, requested: 1, used: 1.5, limited: 2"
        );
        let e = q("memory=4Gi")
            .check(
                &QuotaUse::default(),
                &QuotaUse {
                    memory: 8 << 30,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "exceeded quota: memory, requested: 8Gi, used: 0, limited: 4Gi"
        );
    }

    #[test]
    fn keys_and_ages() {
        let spec = |tenant: &str, name: Option<&str>, exp: Option<&str>| KeySpec {
            tenant: tenant.into(),
            role: Role::Member,
            name: name.map(Into::into),
            expires_in: exp.map(Into::into),
        };
        assert_eq!(
            validate_key(&spec("t", None, Some("30d"))).unwrap(),
            Some(chrono::Duration::days(30))
        );
        assert_eq!(validate_key(&spec("t", Some("ci"), None)).unwrap(), None);
        for (s, field) in [
            (spec("T!", None, None), "tenant"),
            (spec("t", Some("a b"), None), "name"),
            (spec("t", None, Some("0s")), "expires_in"),
            (spec("t", None, Some("-1d")), "expires_in"),
            (spec("t", None, Some("soon")), "expires_in"),
            (spec("t", None, Some("99999d")), "expires_in"),
        ] {
            assert_eq!(validate_key(&s).unwrap_err()[0].field, field, "{s:?}");
        }
        // Ages too large for the clock are refused, not overflowed.
        for huge in ["99999999999999999d", "99999999999999999999s", "5000000h"] {
            assert!(parse_age(huge).is_err(), "{huge}");
        }
        assert_eq!(parse_age("90m").unwrap(), chrono::Duration::minutes(90));
        assert_eq!("viewer".parse::<Role>().unwrap(), Role::Viewer);
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("admin, member")
        );
        assert_eq!(QuotaKey::Memory.show(1.5 * (1u64 << 30) as f64), "1.5Gi");
    }
}
