//! `/v1/tenants`, `/v1/keys`, `/v1/audit`: who may use this server, and what they did.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use qci_spec::{
    ApiKey, AuditRecord, CreatedKey, DEFAULT_TENANT, FieldError, KeySpec, Tenant, TenantSpec,
    TenantUpdate, WhoAmI, validate_key, validate_tenant,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, ListScope, Scope};
use crate::disks::parse_body;
use crate::{ApiError, AppState, ErrorBody};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub items: Vec<Tenant>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<ApiKey>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditRecord>,
}

/// The tenant with the exec sessions it has open now.
fn with_sessions(s: &AppState, mut t: Tenant) -> Tenant {
    t.used.exec_sessions = s.exec_sessions.open_for(&t.name);
    t
}

/// The key this request was made with: its id, tenant and role (any key).
#[utoipa::path(get, path = "/v1/whoami", tag = "tenants", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        key_id: caller.key_id,
        tenant: caller.tenant,
        role: caller.role,
    })
}

/// Creates a tenant, with its quota (admin).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = TenantSpec,
    responses((status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_tenant(
    State(s): State<AppState>,
    body: String,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let spec: TenantSpec = parse_body(&body)?;
    let quota = validate_tenant(&spec).map_err(ApiError::Fields)?;
    let t = s.store.create_tenant(&spec.name, &quota)?;
    tracing::info!(tenant = %t.name, "tenant created");
    Ok((StatusCode::CREATED, Json(with_sessions(&s, t))))
}

/// The tenants, by name, each with its use against its quota: all of them for an admin key
/// (unless `tenant=` names one), the key's own for any other.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", responses((status = 200, body = TenantList)))]
pub async fn list_tenants(
    State(s): State<AppState>,
    scope: ListScope,
) -> Result<Json<TenantList>, ApiError> {
    let all = scope.caller.is_admin() && !scope.explicit();
    let items = match scope.filter() {
        Some(t) if !all => vec![s.store.find_tenant(t)?],
        _ => s.store.list_tenants()?,
    };
    Ok(Json(TenantList {
        items: items.into_iter().map(|t| with_sessions(&s, t)).collect(),
    }))
}

/// One tenant with its use against its quota. A key that is not an admin's may read its own
/// tenant only; any other answers 404.
#[utoipa::path(get, path = "/v1/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
pub async fn get_tenant(
    State(s): State<AppState>,
    scope: Scope,
    Path(name): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    if !scope.caller.is_admin() && name != scope.caller.tenant {
        return Err(qci_store::StoreError::Missing("tenant", name).into());
    }
    Ok(Json(with_sessions(&s, s.store.find_tenant(&name)?)))
}

/// Replaces a tenant's quota (admin). A limit below what the tenant holds refuses more but
/// removes nothing.
#[utoipa::path(put, path = "/v1/tenants/{name}", tag = "tenants", request_body = TenantUpdate,
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_tenant(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: String,
) -> Result<Json<Tenant>, ApiError> {
    let req: TenantUpdate = parse_body(&body)?;
    let quota = req.quota.resolve().map_err(ApiError::Fields)?;
    let t = s.store.set_tenant_quota(&name, &quota)?;
    tracing::info!(tenant = %t.name, "tenant quota changed");
    Ok(Json(with_sessions(&s, t)))
}

/// Removes a tenant that owns nothing, and its keys (admin). `default` stays.
#[utoipa::path(delete, path = "/v1/tenants/{name}", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_tenant(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let t = s.store.find_tenant(&name)?;
    if name == DEFAULT_TENANT {
        return Err(ApiError::Conflict(format!(
            "tenant {DEFAULT_TENANT:?} holds the local admin key and cannot be removed"
        )));
    }
    s.store.remove_tenant(&name)?;
    tracing::info!(tenant = %name, "tenant removed");
    Ok(Json(t))
}

/// Makes an API key (admin). The answer holds the key itself: it is shown this once and
/// stored only as a hash.
#[utoipa::path(post, path = "/v1/keys", tag = "tenants", request_body = KeySpec,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_key(
    State(s): State<AppState>,
    body: String,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let spec: KeySpec = parse_body(&body)?;
    let life = validate_key(&spec).map_err(ApiError::Fields)?;
    if !s.store.tenant_exists(&spec.tenant)? {
        return Err(ApiError::Fields(vec![FieldError::new(
            "tenant",
            format!("no tenant {:?} (qci tenant create)", spec.tenant),
        )]));
    }
    let k = s
        .store
        .create_key(&spec.tenant, spec.role, spec.name.as_deref(), life)?;
    tracing::info!(key = %k.key.id, tenant = %k.key.tenant, role = %k.key.role, "key created");
    Ok((StatusCode::CREATED, Json(k)))
}

/// Keys of a tenant (`tenant=`, the caller's by default, or `all_tenants=true`), revoked ones
/// marked (admin). Never their secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "tenants", responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    State(s): State<AppState>,
    scope: ListScope,
) -> Result<Json<KeyList>, ApiError> {
    Ok(Json(KeyList {
        items: s.store.list_keys(scope.filter())?,
    }))
}

/// Revokes a key, by id (any tenant's) or by name (in `tenant=`): it stops working at once
/// (admin).
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Key id (k-…) or name")),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    let k = match s.store.find_key(Some(scope.owner()), &id) {
        Err(qci_store::StoreError::Missing(..)) => s.store.find_key(None, &id)?,
        r => r?,
    };
    let k = s.store.revoke_key(&k.id)?;
    tracing::info!(key = %k.id, tenant = %k.tenant, "key revoked");
    Ok(Json(k))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records from this time on: RFC 3339, or an age such as `1h` (default: the last day).
    since: Option<String>,
    /// At most this many, the newest (1000 by default).
    limit: Option<i64>,
}

/// The audit trail: every call that changed something and every exec session, with the key,
/// the tenant, the result and (for exec) the command line, oldest first (admin).
#[utoipa::path(get, path = "/v1/audit", tag = "tenants", params(AuditQuery),
    responses((status = 200, body = AuditList)))]
pub async fn audit(
    State(s): State<AppState>,
    scope: ListScope,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let since = match q.since.as_deref() {
        Some(v) => crate::logs::parse_since(v)?,
        None => chrono::Utc::now() - chrono::Duration::days(1),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    Ok(Json(AuditList {
        items: s.store.audit(scope.filter(), since, limit)?,
    }))
}
