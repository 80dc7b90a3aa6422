//! Who is calling, and may they: API keys (bearer tokens), roles, the tenant a request acts in,
//! brute-force limits, and the audit trail.
//!
//! Every request passes [`authenticate`] (a middleware): the route's [`Need`] comes from one
//! table ([`need`]), the key from the `Authorization` header, and the caller's [`Caller`] goes
//! into the request for handlers, which take a [`Scope`] (or [`ListScope`]) to know the tenant
//! they act in. Handlers never read a tenant from anywhere else, so every store call is scoped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use qci_spec::Role;
use qci_store::{AuditEntry, KeyCheck};
use serde::Deserialize;

use crate::{ApiError, AppState};

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No key: the OpenAPI document and the health check.
    Public,
    /// Any valid key (the version).
    AnyKey,
    /// Reads in the caller's tenant.
    Read,
    /// Changes in the caller's tenant (exec included).
    Write,
    /// Tenants, keys, the audit trail and the machine's image store.
    Admin,
    /// Prometheus' `/metrics`.
    Metrics,
}

/// The one table of who may call what, by method and route (the matched route's template, or
/// the path when no route matched).
pub fn need(method: &Method, route: &str) -> Need {
    let read = method == Method::GET || method == Method::HEAD;
    let under = |prefix: &str| route == prefix || route.starts_with(&format!("{prefix}/"));
    match route {
        "/v1/openapi.json" | "/healthz" => Need::Public,
        // Signing in is how a browser gets a session; the handler checks the key it is given
        // (with the same limit on failures).
        "/v1/sessions" if method == Method::POST => Need::Public,
        "/v1/sessions/current" => Need::AnyKey,
        // The console's pages and assets: public files; everything they show comes from /v1.
        _ if !under("/v1") && route != "/metrics" && read => Need::Public,
        "/metrics" => Need::Metrics,
        "/v1/version" | "/v1/whoami" => Need::AnyKey,
        // Anyone may read their own tenant (its quota and use); the handler scopes it.
        _ if under("/v1/tenants") && read => Need::Read,
        _ if under("/v1/tenants") || under("/v1/keys") || under("/v1/audit") => Need::Admin,
        // One store for the whole machine: what other tenants pulled is not for tenants.
        _ if under("/v1/images") => Need::Admin,
        // The machines themselves: the operator's.
        _ if under("/v1/nodes") => Need::Admin,
        // A GET that runs a command, or types into one.
        _ if route.ends_with("/exec") || route.ends_with("/attach") => Need::Write,
        _ if read => Need::Read,
        _ => Need::Write,
    }
}

/// Whether `role` may do what `need` asks.
pub fn allows(role: Role, need: Need) -> bool {
    matches!(
        (role, need),
        (_, Need::Public | Need::AnyKey)
            | (Role::Admin, _)
            | (Role::Member, Need::Read | Need::Write)
            | (Role::Viewer, Need::Read)
            | (Role::Metrics, Need::Metrics)
    )
}

/// Why a role may not: for the 403's message.
fn refusal(role: Role, need: Need) -> String {
    match need {
        Need::Admin => format!("this needs an admin key (the key's role is {role})"),
        Need::Metrics => {
            format!("/metrics needs an admin or metrics key (the key's role is {role})")
        }
        Need::Write => format!("a {role} key cannot change anything or exec"),
        _ => format!("a {role} key cannot read this"),
    }
}

/// The key behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    /// The key's own tenant.
    pub tenant: String,
    pub role: Role,
    /// The console session the request came through, if it did (its public id).
    pub session: Option<String>,
}

/// How often a request that lasts checks that its credential still works.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Why this caller's key (or session) stopped working, if it did: a revoked key, an
    /// expired one, a signed-out session. A store error counts as still working (the next
    /// check will tell).
    pub fn ended(&self, store: &qci_store::Store) -> Option<String> {
        store
            .credential_ended(&self.key_id, self.session.as_deref())
            .unwrap_or(None)
    }

    /// Resolves, with the reason, once this caller's credential stops working (checked every
    /// [`RECHECK`]): what a terminal or a watch races against, so revoking a key or signing
    /// out closes what it had open.
    pub async fn until_ended(&self, store: &qci_store::Store) -> String {
        loop {
            tokio::time::sleep(RECHECK).await;
            if let Some(why) = self.ended(store) {
                return why;
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        caller_of(parts)
    }
}

#[derive(Deserialize)]
struct ScopeQuery {
    tenant: Option<String>,
    #[serde(default)]
    all_tenants: bool,
}

/// The tenant a request acts in: the key's own, or, for an admin key, the one named by
/// `?tenant=` (which must exist).
pub struct Scope {
    pub caller: Caller,
    tenant: String,
}

impl Scope {
    pub fn owner(&self) -> &str {
        &self.tenant
    }
}

/// [`Scope`] for lists, where an admin may also ask for every tenant (`?all_tenants=true`).
pub struct ListScope {
    pub caller: Caller,
    tenant: Option<String>,
    /// Whether the request named its tenant (or all of them).
    explicit: bool,
}

impl ListScope {
    /// The tenant listed, or `None` for all.
    pub fn filter(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether the request named a tenant or asked for all.
    pub fn explicit(&self) -> bool {
        self.explicit
    }
}

fn caller_of(parts: &Parts) -> Result<Caller, ApiError> {
    parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
        ApiError::Internal("a handler that needs a caller is on a public route".into())
    })
}

fn scope_query(parts: &Parts) -> Result<ScopeQuery, ApiError> {
    axum::extract::Query::<ScopeQuery>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("tenant, all_tenants: {e}")))
}

/// The tenant named by `?tenant=` for this caller, checked.
fn chosen_tenant(s: &AppState, caller: &Caller, asked: Option<String>) -> Result<String, ApiError> {
    match asked {
        None => Ok(caller.tenant.clone()),
        Some(t) if t == caller.tenant => Ok(t),
        Some(_) if !caller.is_admin() => Err(ApiError::Forbidden(
            "only an admin key may act in another tenant (tenant=)".into(),
        )),
        Some(t) => {
            if s.store.tenant_exists(&t)? {
                Ok(t)
            } else {
                Err(qci_store::StoreError::Missing("tenant", t).into())
            }
        }
    }
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let caller = caller_of(parts)?;
        let q = scope_query(parts)?;
        if q.all_tenants {
            return Err(ApiError::BadRequest(
                "all_tenants applies to lists only; name one tenant with tenant=".into(),
            ));
        }
        let tenant = chosen_tenant(s, &caller, q.tenant)?;
        Ok(Scope { caller, tenant })
    }
}

impl FromRequestParts<AppState> for ListScope {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let caller = caller_of(parts)?;
        let q = scope_query(parts)?;
        if q.all_tenants {
            if !caller.is_admin() {
                return Err(ApiError::Forbidden(
                    "only an admin key may list every tenant's (all_tenants=)".into(),
                ));
            }
            if q.tenant.is_some() {
                return Err(ApiError::BadRequest(
                    "give tenant= or all_tenants=true, not both".into(),
                ));
            }
            return Ok(ListScope {
                caller,
                tenant: None,
                explicit: true,
            });
        }
        let explicit = q.tenant.is_some();
        let tenant = Some(chosen_tenant(s, &caller, q.tenant)?);
        Ok(ListScope {
            caller,
            tenant,
            explicit,
        })
    }
}

/// Failed authentications per source address: past [`MAX_FAILURES`] in a window, the address
/// gets 429 until the window ends.
#[derive(Default)]
pub struct FailureLimiter {
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const MAX_FAILURES: u32 = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (old windows are dropped first), so a flood of sources cannot
/// grow the table without bound.
const MAX_TRACKED: usize = 10_000;

impl FailureLimiter {
    /// Seconds to wait, when `ip` is over its budget.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (start, n) = seen.get(&ip)?;
        let left = FAILURE_WINDOW.checked_sub(start.elapsed())?;
        (*n >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    pub(crate) fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, (start, _)| start.elapsed() < FAILURE_WINDOW);
            if seen.len() >= MAX_TRACKED {
                seen.clear();
            }
        }
        let e = seen.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= FAILURE_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

/// Exec sessions open now, per tenant (for the `exec_sessions` quota).
#[derive(Default)]
pub struct ExecSessions {
    open: Mutex<HashMap<String, u64>>,
}

/// One open session; dropping it closes it.
pub struct ExecSlot {
    sessions: std::sync::Arc<ExecSessions>,
    tenant: String,
}

impl Drop for ExecSlot {
    fn drop(&mut self) {
        let mut open = self.sessions.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

impl ExecSessions {
    pub fn open_for(&self, tenant: &str) -> u64 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(tenant).copied().unwrap_or(0)
    }

    /// A slot for one more session of `tenant`, or the quota it would exceed.
    pub fn take(
        self: &std::sync::Arc<Self>,
        tenant: &str,
        limit: Option<u64>,
    ) -> Result<ExecSlot, qci_spec::QuotaExceeded> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(tenant.to_string()).or_insert(0);
        if let Some(limit) = limit
            && *n + 1 > limit
        {
            return Err(qci_spec::QuotaExceeded {
                quota: qci_spec::QuotaKey::ExecSessions,
                limit: limit as f64,
                used: *n as f64,
                requested: 1.0,
            });
        }
        *n += 1;
        Ok(ExecSlot {
            sessions: self.clone(),
            tenant: tenant.to_string(),
        })
    }
}

/// The bearer token of a request: `None` without an Authorization header; an error for a
/// header that is not one `Bearer KEY`.
fn bearer(req: &Request) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(
            "Authorization: send one header, `Bearer KEY`".into(),
        ));
    }
    let v = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("Authorization: not text; send `Bearer KEY`".into()))?;
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    let token = rest.trim();
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized {
            message: format!("Authorization: scheme {scheme:?} is not accepted; send `Bearer KEY`"),
            invalid_token: false,
        });
    }
    if token.is_empty() || token.contains([' ', ',']) {
        return Err(ApiError::BadRequest(
            "Authorization: give one key after `Bearer ` (one scheme, one key)".into(),
        ));
    }
    Ok(Some(token.to_string()))
}

/// The cookie that carries a console session (see `sessions.rs`).
pub const SESSION_COOKIE: &str = "qci_session";

/// The value of the session cookie, if the request has one. (Parsed here rather than with a
/// cookie crate: one name, looked up in `name=value; name=value` pairs, is all the API reads.)
pub(crate) fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The source address of a request (unspecified when the server was not told it).
pub(crate) fn client_ip(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Why a key that was presented does not work, for the 401 (and the log).
pub(crate) fn key_refusal(check: &KeyCheck, ip: IpAddr) -> String {
    match check {
        KeyCheck::Expired(k) => {
            tracing::warn!(source = %ip, key = %k.id, "authentication failed: the key expired");
            format!(
                "the key {} expired at {}",
                k.id,
                k.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            )
        }
        KeyCheck::Revoked(k) => {
            tracing::warn!(source = %ip, key = %k.id, "authentication failed: the key was revoked");
            format!("the key {} was revoked", k.id)
        }
        _ => {
            tracing::warn!(source = %ip, "authentication failed: not a key of this server");
            "the key is not valid for this server".to_string()
        }
    }
}

/// A 401 for a console session that does not work: it also clears the cookie, so the browser
/// stops sending it.
fn session_refused(s: &AppState, message: String) -> Response {
    let mut resp = ApiError::Unauthorized {
        message,
        invalid_token: true,
    }
    .into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, crate::sessions::clear_cookie(s));
    resp
}

/// The key behind a console session, or the answer refusing it. A session authenticates
/// only requests a page of this server made: a write or a WebSocket must carry an `Origin`
/// (the browser guard has already checked that it is this server's own).
fn session_key(
    s: &AppState,
    req: &Request,
    token: &str,
    ip: IpAddr,
) -> Result<(qci_spec::ApiKey, String), Box<Response>> {
    use qci_store::SessionCheck;
    let check = s
        .store
        .check_session(token)
        .map_err(|e| Box::new(ApiError::from(e).into_response()))?;
    let refused = |message: String| Err(Box::new(session_refused(s, message)));
    let key = match check {
        SessionCheck::Valid(k, _, id) => (k, id),
        SessionCheck::Invalid => {
            s.failures.failed(ip);
            tracing::warn!(source = %ip, "authentication failed: not a session of this server");
            return refused("the console session is not valid (signed out, or made by another server); sign in again".into());
        }
        SessionCheck::Expired => {
            return refused("the console session has ended; sign in again".into());
        }
        SessionCheck::KeyRevoked(k) => {
            return refused(format!(
                "the key {} this session was opened with was revoked",
                k.id
            ));
        }
        SessionCheck::KeyExpired(k) => {
            return refused(format!(
                "the key {} this session was opened with expired",
                k.id
            ));
        }
    };
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || req.headers().contains_key(header::UPGRADE);
    if writes && !req.headers().contains_key(header::ORIGIN) {
        return Err(ApiError::Forbidden(
            "a console session may change things only from the console's own pages (the request has no Origin); send the key as `Authorization: Bearer KEY` instead".into(),
        )
        .into_response()
        .into());
    }
    Ok(key)
}

/// The middleware: authenticates, applies the route's [`Need`], and audits what changes things.
pub async fn authenticate(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let need = need(req.method(), &route);
    if need == Need::Public {
        return next.run(req).await;
    }
    let ip = client_ip(req.extensions());
    if let Some(wait) = s.failures.blocked(ip) {
        return ApiError::TooManyRequests {
            message: format!("too many failed authentications from {ip}; try again in {wait} s"),
            retry_after: wait,
        }
        .into_response();
    }
    let (key, session) = match bearer(&req) {
        Ok(Some(token)) => {
            let check = match s.store.check_key(&token) {
                Ok(c) => c,
                Err(e) => return ApiError::from(e).into_response(),
            };
            match check {
                KeyCheck::Valid(k) => (k, None),
                other => {
                    s.failures.failed(ip);
                    return ApiError::Unauthorized {
                        message: key_refusal(&other, ip),
                        invalid_token: true,
                    }
                    .into_response();
                }
            }
        }
        Ok(None) => match session_cookie(req.headers()) {
            Some(token) => match session_key(&s, &req, &token, ip) {
                Ok((k, id)) => (k, Some(id)),
                Err(resp) => return *resp,
            },
            None => {
                return ApiError::Unauthorized {
                    message: "this API needs a key: send `Authorization: Bearer KEY` (qci login, or QCI_TOKEN), or sign in to the console".into(),
                    invalid_token: false,
                }
                .into_response();
            }
        },
        Err(e) => {
            s.failures.failed(ip);
            return e.into_response();
        }
    };
    let caller = Caller {
        key_id: key.id,
        tenant: key.tenant,
        role: key.role,
        session,
    };
    let audited = !(req.method() == Method::GET || req.method() == Method::HEAD)
        || route.ends_with("/exec")
        || route.ends_with("/attach");
    let audit = audited.then(|| audit_facts(&req, &caller));
    // A write the key's role does not allow is refused, and recorded like any other.
    let resp = if allows(caller.role, need) {
        req.extensions_mut().insert(caller.clone());
        next.run(req).await
    } else {
        ApiError::Forbidden(refusal(caller.role, need)).into_response()
    };
    if let Some((tenant, action, detail)) = audit {
        let entry = AuditEntry {
            tenant: &tenant,
            key_id: &caller.key_id,
            key_tenant: &caller.tenant,
            action: &action,
            status: resp.status().as_u16(),
            detail: detail.as_deref(),
        };
        if let Err(e) = s.store.add_audit(&entry) {
            tracing::error!("audit record lost: {e}");
        }
    }
    resp
}

/// (tenant acted in, `METHOD path`, the exec command line) for the audit trail. The query is
/// left out (it may carry anything), but for the tenant and exec's command.
fn audit_facts(req: &Request, caller: &Caller) -> (String, String, Option<String>) {
    #[derive(Deserialize)]
    struct Q {
        tenant: Option<String>,
        command: Option<String>,
    }
    let q = axum::extract::Query::<Q>::try_from_uri(req.uri())
        .map(|q| q.0)
        .unwrap_or(Q {
            tenant: None,
            command: None,
        });
    let detail = q.command.map(|c| {
        serde_json::from_str::<Vec<String>>(&c)
            .map(|argv| argv.join(" "))
            .unwrap_or(c)
    });
    (
        q.tenant.unwrap_or_else(|| caller.tenant.clone()),
        format!("{} {}", req.method(), req.uri().path()),
        detail,
    )
}

/// `WWW-Authenticate` for a 401 (RFC 6750).
pub(crate) fn www_authenticate(invalid_token: bool) -> HeaderValue {
    HeaderValue::from_static(if invalid_token {
        "Bearer realm=\"qci\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"qci\""
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_call_what() {
        use Need::*;
        let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
        let table = [
            (&get, "/v1/openapi.json", Public),
            (&get, "/healthz", Public),
            (&get, "/metrics", Metrics),
            (&get, "/v1/version", AnyKey),
            (&get, "/v1/whoami", AnyKey),
            (&get, "/v1/container-groups", Read),
            (&post, "/v1/container-groups", Write),
            (&get, "/v1/container-groups/{id}/logs", Read),
            (
                &get,
                "/v1/container-groups/{id}/containers/{name}/exec",
                Write,
            ),
            (&put, "/v1/vpcs/{id}", Write),
            (&delete, "/v1/disks/{id}", Write),
            (&get, "/v1/tenants", Read),
            (&get, "/v1/tenants/{name}", Read),
            (&post, "/v1/tenants", Admin),
            (&put, "/v1/tenants/{name}", Admin),
            (&get, "/v1/keys", Admin),
            (&post, "/v1/keys", Admin),
            (&get, "/v1/audit", Admin),
            (&get, "/v1/images", Admin),
            (&post, "/v1/images/pull", Admin),
            (&get, "/v1/imagesx", Read),
            (&get, "/v1/nodes", Admin),
            (&post, "/v1/nodes/n1/cordon", Admin),
            (&get, "/v1/nowhere", Read),
            (&post, "/v1/sessions", Public),
            (&delete, "/v1/sessions/current", AnyKey),
            (&get, "/v1/sessions", Read),
            // The console's pages and assets are public; writes outside /v1 are not.
            (&get, "/", Public),
            (&get, "/groups/web", Public),
            (&get, "/console/app.js", Public),
            (&post, "/nowhere", Write),
        ];
        for (m, route, want) in table {
            assert_eq!(need(m, route), want, "{m} {route}");
        }
        let roles = [
            (Role::Admin, [true, true, true, true, true, true]),
            (Role::Member, [true, true, true, true, false, false]),
            (Role::Viewer, [true, true, true, false, false, false]),
            (Role::Metrics, [true, true, false, false, false, true]),
        ];
        for (role, want) in roles {
            let got = [Public, AnyKey, Read, Write, Admin, Metrics].map(|n| allows(role, n));
            assert_eq!(got, want, "{role}");
        }
    }

    #[test]
    fn the_session_cookie() {
        let headers = |values: &[&str]| {
            let mut h = axum::http::HeaderMap::new();
            for v in values {
                h.append(header::COOKIE, v.parse().unwrap());
            }
            h
        };
        let table: [(&[&str], Option<&str>); 7] = [
            (&[], None),
            (&["qci_session=qcs_a"], Some("qcs_a")),
            (&["theme=dark; qci_session=qcs_b; x=y"], Some("qcs_b")),
            (&["theme=dark", "qci_session=\"qcs_c\""], Some("qcs_c")),
            (&["qci_session="], None),
            (&["not_qci_session=qcs_d"], None),
            (&["qci_session_other=qcs_e"], None),
        ];
        for (values, want) in table {
            assert_eq!(
                session_cookie(&headers(values)).as_deref(),
                want,
                "{values:?}"
            );
        }
    }

    #[test]
    fn the_authorization_header() {
        let req = |values: &[&str]| {
            let mut b = axum::http::Request::builder().uri("/v1/version");
            for v in values {
                b = b.header(header::AUTHORIZATION, *v);
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        assert_eq!(bearer(&req(&[])).unwrap(), None);
        assert_eq!(
            bearer(&req(&["Bearer abc"])).unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(
            bearer(&req(&["bearer  abc "])).unwrap().as_deref(),
            Some("abc")
        );
        for (values, want) in [
            (&["Bearer a", "Bearer b"][..], "one header"),
            (&["Bearer a, Basic b"][..], "one scheme"),
            (&["Bearer a b"][..], "one scheme"),
            (&["Bearer"][..], "one key"),
        ] {
            let e = bearer(&req(values)).unwrap_err();
            assert!(e.to_string().contains(want), "{values:?}: {e}");
        }
        let e = bearer(&req(&["Basic YTpi"])).unwrap_err();
        assert!(matches!(e, ApiError::Unauthorized { .. }), "{e}");
    }

    #[test]
    fn failures_are_limited_per_address() {
        let l = FailureLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..MAX_FAILURES {
            assert_eq!(l.blocked(a), None);
            l.failed(a);
        }
        let wait = l.blocked(a).unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(l.blocked(b), None);
    }

    #[test]
    fn exec_sessions_are_counted_per_tenant() {
        let s = std::sync::Arc::new(ExecSessions::default());
        let one = s.take("a", Some(2)).unwrap();
        let _two = s.take("a", Some(2)).unwrap();
        let e = s.take("a", Some(2)).err().unwrap();
        assert_eq!((e.used, e.limit), (2.0, 2.0));
        assert!(s.take("b", Some(2)).is_ok());
        drop(one);
        assert_eq!(s.open_for("a"), 1);
        assert!(s.take("a", Some(2)).is_ok());
    }
}
