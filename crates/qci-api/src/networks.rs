//! `/v1/vpcs`, `/v1/eips`, `/v1/firewalls`: private networks, published addresses and the
//! rules that guard groups.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use qci_spec::{
    Eip, EipBind, EipSpec, FieldError, Firewall, FirewallSpec, GroupSpec, Vpc, VpcSpec, VpcUpdate,
    validate_firewall, validate_vpc,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ListScope, Scope};
use crate::disks::parse_body;
use crate::{ApiError, AppState, ErrorBody};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct VpcList {
    pub items: Vec<Vpc>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EipList {
    pub items: Vec<Eip>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct FirewallList {
    pub items: Vec<Firewall>,
}

/// Creates a VPC. Its block may overlap other VPCs' (they never reach each other), but not a
/// route of the host, qci's transit block or an EIP.
#[utoipa::path(post, path = "/v1/vpcs", tag = "networks", request_body = VpcSpec,
    responses((status = 201, body = Vpc), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_vpc(
    State(s): State<AppState>,
    scope: Scope,
    body: String,
) -> Result<(StatusCode, Json<Vpc>), ApiError> {
    let spec: VpcSpec = parse_body(&body)?;
    let net = validate_vpc(&spec).map_err(ApiError::Fields)?;
    let cfg = s.network.clone();
    tokio::task::spawn_blocking(move || qci_network::check_block(&cfg, net))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            qci_network::BlockError::Routes(_) => ApiError::Internal(e.to_string()),
            e => ApiError::Fields(vec![FieldError::new("cidr", e.to_string())]),
        })?;
    let v = s.store.create_vpc(scope.owner(), &spec)?;
    tracing::info!(vpc = %v.id, name = %v.name, cidr = %v.cidr, "VPC created");
    (s.on_change)();
    Ok((StatusCode::CREATED, Json(v)))
}

#[utoipa::path(get, path = "/v1/vpcs", tag = "networks", responses((status = 200, body = VpcList)))]
pub async fn list_vpcs(
    State(s): State<AppState>,
    scope: ListScope,
) -> Result<Json<VpcList>, ApiError> {
    Ok(Json(VpcList {
        items: s.store.list_vpcs(scope.filter())?,
    }))
}

#[utoipa::path(get, path = "/v1/vpcs/{id}", tag = "networks",
    params(("id" = String, Path, description = "VPC id or name")),
    responses((status = 200, body = Vpc), (status = 404, body = ErrorBody)))]
pub async fn get_vpc(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Vpc>, ApiError> {
    Ok(Json(s.store.find_vpc(scope.owner(), &id)?))
}

/// Changes a VPC's firewall (`{"firewall": null}` removes it); its running groups follow
/// within a second, without a restart.
#[utoipa::path(put, path = "/v1/vpcs/{id}", tag = "networks", request_body = VpcUpdate,
    params(("id" = String, Path, description = "VPC id or name")),
    responses((status = 200, body = Vpc), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_vpc(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Vpc>, ApiError> {
    let req: VpcUpdate = parse_body(&body)?;
    let v = s
        .store
        .set_vpc_firewall(scope.owner(), &id, req.firewall.as_deref())?;
    tracing::info!(vpc = %v.id, firewall = ?v.firewall, "VPC updated");
    (s.on_change)();
    Ok(Json(v))
}

/// Deletes a VPC no group uses (409 otherwise); its EIP, if any, is unbound.
#[utoipa::path(delete, path = "/v1/vpcs/{id}", tag = "networks",
    params(("id" = String, Path, description = "VPC id or name")),
    responses((status = 200, body = Vpc), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_vpc(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Vpc>, ApiError> {
    let v = s.store.find_vpc(scope.owner(), &id)?;
    s.store.remove_vpc(&v.id)?;
    tracing::info!(vpc = %v.id, "VPC deleted");
    (s.on_change)();
    Ok(Json(v))
}

/// Takes an address from the pool as an EIP (a given one, or the first free).
#[utoipa::path(post, path = "/v1/eips", tag = "networks", request_body = EipSpec,
    responses((status = 201, body = Eip), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_eip(
    State(s): State<AppState>,
    scope: Scope,
    body: String,
) -> Result<(StatusCode, Json<Eip>), ApiError> {
    let spec: EipSpec = if body.trim().is_empty() {
        EipSpec::default()
    } else {
        parse_body(&body)?
    };
    let mut errs = Vec::new();
    if let Some(n) = &spec.name
        && let Err(m) = qci_spec::check_dns_label(n)
    {
        errs.push(FieldError::new("name", m));
    }
    let address = match &spec.address {
        None => None,
        Some(a) => match a.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(FieldError::new(
                    "address",
                    format!("{a:?} is not an IPv4 address"),
                ));
                None
            }
        },
    };
    if !errs.is_empty() {
        return Err(ApiError::Fields(errs));
    }
    let e = s
        .store
        .create_eip(scope.owner(), spec.name.as_deref(), address)?;
    tracing::info!(eip = %e.id, address = %e.address, "EIP created");
    Ok((StatusCode::CREATED, Json(e)))
}

#[utoipa::path(get, path = "/v1/eips", tag = "networks", responses((status = 200, body = EipList)))]
pub async fn list_eips(
    State(s): State<AppState>,
    scope: ListScope,
) -> Result<Json<EipList>, ApiError> {
    Ok(Json(EipList {
        items: s.store.list_eips(scope.filter())?,
    }))
}

#[utoipa::path(get, path = "/v1/eips/{id}", tag = "networks",
    params(("id" = String, Path, description = "EIP id, name or address")),
    responses((status = 200, body = Eip), (status = 404, body = ErrorBody)))]
pub async fn get_eip(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Eip>, ApiError> {
    Ok(Json(s.store.find_eip(scope.owner(), &id)?))
}

/// Releases an EIP that is bound to nothing (409 otherwise).
#[utoipa::path(delete, path = "/v1/eips/{id}", tag = "networks",
    params(("id" = String, Path, description = "EIP id, name or address")),
    responses((status = 200, body = Eip), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_eip(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Eip>, ApiError> {
    let e = s.store.find_eip(scope.owner(), &id)?;
    s.store.remove_eip(scope.owner(), &e.id)?;
    tracing::info!(eip = %e.id, "EIP released");
    (s.on_change)();
    Ok(Json(e))
}

/// Binds an EIP to a VPC: its groups reach the outside through it (source NAT).
#[utoipa::path(post, path = "/v1/eips/{id}/bind", tag = "networks", request_body = EipBind,
    params(("id" = String, Path, description = "EIP id, name or address")),
    responses((status = 200, body = Eip), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn bind_eip(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Eip>, ApiError> {
    let req: EipBind = parse_body(&body)?;
    let e = s.store.bind_eip_to_vpc(scope.owner(), &id, &req.vpc)?;
    tracing::info!(eip = %e.id, vpc = %req.vpc, "EIP bound");
    (s.on_change)();
    Ok(Json(e))
}

/// Unbinds an EIP from its VPC.
#[utoipa::path(post, path = "/v1/eips/{id}/unbind", tag = "networks",
    params(("id" = String, Path, description = "EIP id, name or address")),
    responses((status = 200, body = Eip), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn unbind_eip(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Eip>, ApiError> {
    let e = s.store.unbind_eip(scope.owner(), &id)?;
    (s.on_change)();
    Ok(Json(e))
}

/// Creates a firewall.
#[utoipa::path(post, path = "/v1/firewalls", tag = "networks", request_body = FirewallSpec,
    responses((status = 201, body = Firewall), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_firewall(
    State(s): State<AppState>,
    scope: Scope,
    body: String,
) -> Result<(StatusCode, Json<Firewall>), ApiError> {
    let spec: FirewallSpec = parse_body(&body)?;
    validate_firewall(&spec).map_err(ApiError::Fields)?;
    let f = s.store.create_firewall(scope.owner(), &spec)?;
    tracing::info!(firewall = %f.id, name = %f.name, "firewall created");
    Ok((StatusCode::CREATED, Json(f)))
}

#[utoipa::path(get, path = "/v1/firewalls", tag = "networks", responses((status = 200, body = FirewallList)))]
pub async fn list_firewalls(
    State(s): State<AppState>,
    scope: ListScope,
) -> Result<Json<FirewallList>, ApiError> {
    Ok(Json(FirewallList {
        items: s.store.list_firewalls(scope.filter())?,
    }))
}

#[utoipa::path(get, path = "/v1/firewalls/{id}", tag = "networks",
    params(("id" = String, Path, description = "Firewall id or name")),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody)))]
pub async fn get_firewall(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Firewall>, ApiError> {
    Ok(Json(s.store.find_firewall(scope.owner(), &id)?))
}

/// Replaces a firewall's rules; running groups have the new rules within a second or so,
/// without a restart. The name cannot change.
#[utoipa::path(put, path = "/v1/firewalls/{id}", tag = "networks", request_body = FirewallSpec,
    params(("id" = String, Path, description = "Firewall id or name")),
    responses((status = 200, body = Firewall), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_firewall(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Firewall>, ApiError> {
    let f = s.store.find_firewall(scope.owner(), &id)?;
    let spec: FirewallSpec = parse_body(&body)?;
    validate_firewall(&spec).map_err(ApiError::Fields)?;
    if spec.name != f.name {
        return Err(ApiError::Fields(vec![FieldError::new(
            "name",
            format!("cannot change (it is {:?})", f.name),
        )]));
    }
    s.store.set_firewall_rules(&f.id, &spec.rules)?;
    tracing::info!(firewall = %f.id, rules = spec.rules.len(), "firewall updated");
    (s.on_change)();
    Ok(Json(s.store.find_firewall(scope.owner(), &f.id)?))
}

/// Deletes a firewall nothing uses (409 otherwise).
#[utoipa::path(delete, path = "/v1/firewalls/{id}", tag = "networks",
    params(("id" = String, Path, description = "Firewall id or name")),
    responses((status = 200, body = Firewall), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_firewall(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Firewall>, ApiError> {
    let f = s.store.find_firewall(scope.owner(), &id)?;
    s.store.remove_firewall(&f.id)?;
    Ok(Json(f))
}

/// An update keeps the group's place (network, address, EIP); only its firewall may change.
pub(crate) fn check_network_update(
    s: &AppState,
    owner: &str,
    group_id: &str,
    old: &GroupSpec,
    new: &GroupSpec,
) -> Result<(), ApiError> {
    let place = |g: &GroupSpec| {
        let n = g.network.clone().unwrap_or_default();
        (n.mode(), n.vpc, n.eip)
    };
    if place(old) != place(new) {
        return Err(ApiError::Fields(vec![FieldError::new(
            "network",
            "an update cannot change the group's network, VPC or EIP (only its firewall); create a new group instead",
        )]));
    }
    let fw = |g: &GroupSpec| g.network.as_ref().and_then(|n| n.firewall.clone());
    if fw(old) != fw(new) {
        s.store
            .set_group_firewall(owner, group_id, fw(new).as_deref())?;
    }
    Ok(())
}
