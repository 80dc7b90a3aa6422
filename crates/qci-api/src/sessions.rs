//! `/v1/sessions`: signing in to the console. A browser posts an API key once and gets a
//! session cookie (HttpOnly, so no script reads it; SameSite=Strict, so no other site's page
//! sends it; Secure when the API is served over TLS); the key itself is not kept in the page.
//! The session then stands for that key (its tenant and role) until it ends, the key is
//! revoked, or the person signs out. Any HTTP client may use it; the CLI sends keys instead.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use qci_spec::Role;
use qci_store::{AuditEntry, KeyCheck};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{SESSION_COOKIE, client_ip, key_refusal, session_cookie};
use crate::{ApiError, AppState, ErrorBody};

/// What signing in takes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An API key (`qci_…`).
    pub key: String,
}

/// A session opened: whose it is, and until when.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub key_id: String,
    pub key_name: String,
    pub tenant: String,
    pub role: Role,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

fn cookie(s: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if s.origins.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("qci_session=; Path=/; Max-Age=0"))
}

/// The `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie(s: &AppState) -> HeaderValue {
    cookie(s, "", 0)
}

/// Signs in with an API key: answers the session and sets its cookie. Failures count toward
/// the same per-address limit as any other failed authentication.
#[utoipa::path(post, path = "/v1/sessions", tag = "tenants", request_body = SignIn,
    security(()),
    responses(
        (status = 201, description = "Signed in; the session cookie is set", body = SessionInfo),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sign_in(
    State(s): State<AppState>,
    ext: axum::http::Extensions,
    body: String,
) -> Result<Response, ApiError> {
    let ip = client_ip(&ext);
    if let Some(wait) = s.failures.blocked(ip) {
        return Err(ApiError::TooManyRequests {
            message: format!("too many failed authentications from {ip}; try again in {wait} s"),
            retry_after: wait,
        });
    }
    let asked: SignIn = crate::disks::parse_body(&body)?;
    let key = match s.store.check_key(asked.key.trim())? {
        KeyCheck::Valid(k) => k,
        other => {
            s.failures.failed(ip);
            return Err(ApiError::Unauthorized {
                message: key_refusal(&other, ip),
                invalid_token: true,
            });
        }
    };
    let (token, expires_at) = s.store.create_session(&key.id)?;
    let entry = AuditEntry {
        tenant: &key.tenant,
        key_id: &key.id,
        key_tenant: &key.tenant,
        action: "POST /v1/sessions",
        status: 201,
        detail: None,
    };
    if let Err(e) = s.store.add_audit(&entry) {
        tracing::error!("audit record lost: {e}");
    }
    tracing::info!(key = %key.id, tenant = %key.tenant, "console session opened");
    let max_age = (expires_at - chrono::Utc::now()).num_seconds().max(0);
    let info = SessionInfo {
        key_id: key.id,
        key_name: key.name,
        tenant: key.tenant,
        role: key.role,
        expires_at,
    };
    let mut resp = (StatusCode::CREATED, Json(info)).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&s, &token, max_age));
    Ok(resp)
}

/// Signs out: the session of the request's cookie ends here and now, and the cookie is
/// cleared. (A request made with a key has no session; it gets the cookie cleared all the same.)
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "tenants",
    responses((status = 204, description = "Signed out")))]
pub async fn sign_out(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_cookie(&headers) {
        s.store.end_session(&token)?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&s));
    Ok(resp)
}
