//! `/v1/disks`: disks created beforehand, attached to one group at a time, whose data outlives
//! the groups that use them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use qci_spec::{
    DEFAULT_INSTANCE_TYPE, Disk, DiskPhase, DiskResize, DiskSpec, FieldError, GroupSpec,
    disk_bytes, validate_disk,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ListScope, Scope};
use crate::{ApiError, AppState, ErrorBody};

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DiskList {
    pub items: Vec<Disk>,
}

/// A JSON or YAML body, with the wrong field named.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    if body.trim_start().starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(body);
        serde_path_to_error::deserialize(de)
            .map_err(|e| crate::images::field_error(e.path().to_string(), e.inner()))
    } else {
        let de = serde_yaml::Deserializer::from_str(body);
        serde_path_to_error::deserialize(de)
            .map_err(|e| crate::images::field_error(e.path().to_string(), e.inner()))
    }
}

/// Creates a disk: a sparse file of the size asked, formatted ext4, Available at once.
#[utoipa::path(post, path = "/v1/disks", tag = "disks", request_body = DiskSpec,
    responses((status = 201, body = Disk), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_disk(
    State(s): State<AppState>,
    scope: Scope,
    body: String,
) -> Result<(StatusCode, Json<Disk>), ApiError> {
    let spec: DiskSpec = parse_body(&body)?;
    let size = validate_disk(&spec, &s.disk_compat).map_err(ApiError::Fields)?;
    match s.store.find_disk(scope.owner(), &spec.name) {
        Ok(d) if d.name == spec.name => {
            return Err(qci_store::StoreError::DiskNameTaken(spec.name).into());
        }
        _ => {}
    }
    // Before the file is made: a disk past the quota costs the machine nothing.
    let asked = qci_spec::QuotaUse {
        disk: size,
        ..Default::default()
    };
    s.store.check_quota(scope.owner(), &asked)?;
    let id = format!("d-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    // The row first (Creating); the controller makes the image and marks it Available.
    s.store.create_disk(&id, scope.owner(), &spec, size)?;
    (s.on_change)();
    let d = settled(&s, scope.owner(), &id, |d| d.phase != DiskPhase::Creating).await?;
    tracing::info!(disk = %d.id, name = %d.name, size, "disk created");
    Ok((StatusCode::CREATED, Json(d)))
}

/// The disks, oldest first, with the group each is attached to.
#[utoipa::path(get, path = "/v1/disks", tag = "disks", responses((status = 200, body = DiskList)))]
pub async fn list_disks(
    State(s): State<AppState>,
    scope: ListScope,
) -> Result<Json<DiskList>, ApiError> {
    Ok(Json(DiskList {
        items: s
            .store
            .list_disks(scope.filter())?
            .into_iter()
            .map(|d| noted(&s, d))
            .collect(),
    }))
}

/// One disk, by id or name.
#[utoipa::path(get, path = "/v1/disks/{id}", tag = "disks",
    params(("id" = String, Path, description = "Disk id or name")),
    responses((status = 200, body = Disk), (status = 404, body = ErrorBody)))]
pub async fn get_disk(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Disk>, ApiError> {
    Ok(Json(noted(&s, s.store.find_disk(scope.owner(), &id)?)))
}

/// The disk with what the machine has to say about it.
fn noted(s: &AppState, mut d: Disk) -> Disk {
    if let Some(note) = s.runtime.disk_note(&d.id) {
        d.message = Some(note);
    }
    d
}

/// The disk once `done` holds or the controller has had 30 s (it is then shown as it is, with
/// any problem in its message); a disk that is gone is DiskNotFound.
async fn settled(
    s: &AppState,
    owner: &str,
    id: &str,
    done: impl Fn(&Disk) -> bool,
) -> Result<Disk, ApiError> {
    let start = std::time::Instant::now();
    loop {
        let d = noted(s, s.store.find_disk(owner, id)?);
        if done(&d) || d.message.is_some() || start.elapsed() > std::time::Duration::from_secs(30) {
            return Ok(d);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Deletes a disk and its data. A disk attached to a group is refused (409).
#[utoipa::path(delete, path = "/v1/disks/{id}", tag = "disks",
    params(("id" = String, Path, description = "Disk id or name")),
    responses((status = 200, body = Disk), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_disk(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<Json<Disk>, ApiError> {
    let d = s.store.find_disk(scope.owner(), &id)?;
    if d.phase == DiskPhase::InUse {
        return Err(qci_store::StoreError::DiskInUse {
            disk: d.name,
            group: d.group_name.unwrap_or_default(),
        }
        .into());
    }
    // The controller removes the image (refused while a group's delete has not yet let go
    // of it), then the row.
    s.store.request_disk_deletion(&d.id)?;
    (s.on_change)();
    let d = match settled(&s, scope.owner(), &d.id, |_| false).await {
        Err(ApiError::Store(qci_store::StoreError::DiskNotFound(_))) => Disk {
            phase: DiskPhase::Deleting,
            ..d
        },
        Err(e) => return Err(e),
        Ok(still) => still,
    };
    tracing::info!(disk = %d.id, "disk deleted");
    Ok(Json(d))
}

/// Grows a disk (never shrinks it). A disk in use grows online: the group's containers see
/// the new size at once, without a restart.
#[utoipa::path(post, path = "/v1/disks/{id}/resize", tag = "disks", request_body = DiskResize,
    params(("id" = String, Path, description = "Disk id or name")),
    responses((status = 200, body = Disk), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn resize_disk(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    body: String,
) -> Result<Json<Disk>, ApiError> {
    let d = s.store.find_disk(scope.owner(), &id)?;
    let req: DiskResize = parse_body(&body)?;
    let size =
        disk_bytes(&req.size).map_err(|m| ApiError::Fields(vec![FieldError::new("size", m)]))?;
    if size <= d.size {
        return Err(ApiError::Fields(vec![FieldError::new(
            "size",
            format!(
                "disks only grow: {} ({size} bytes) is not more than the current {} bytes",
                req.size.0, d.size
            ),
        )]));
    }
    // Within the quota, checked in the transaction that records it; the controller grows
    // the file (online when the disk is mounted).
    s.store.set_disk_size(scope.owner(), &d.id, size)?;
    (s.on_change)();
    let grown = |d: &Disk| d.size >= size && !s.store.disk_pending(&d.id).unwrap_or(true);
    settled(&s, scope.owner(), &d.id, grown).await?;
    tracing::info!(disk = %d.id, size, "disk grown");
    Ok(Json(noted(&s, s.store.find_disk(scope.owner(), &d.id)?)))
}

/// Checks a group's disk volumes before it is stored: each disk exists, and its type fits the
/// group's instance type. (Whether a disk is free is decided when the group is stored, in the
/// same transaction that attaches it.)
pub(crate) fn check_group_disks(
    s: &AppState,
    owner: &str,
    spec: &GroupSpec,
) -> Result<(), ApiError> {
    let instance = spec
        .instance_type
        .as_deref()
        .unwrap_or(DEFAULT_INSTANCE_TYPE);
    let mut errs = Vec::new();
    if !s.disk_compat.0.contains_key(instance) {
        errs.push(FieldError::new(
            "instance_type",
            format!(
                "unknown instance type {instance:?}; this server offers {}",
                s.disk_compat.instance_types().join(", ")
            ),
        ));
        return Err(ApiError::Fields(errs));
    }
    for (i, v) in spec.volumes.iter().enumerate() {
        let Some(dv) = &v.disk else { continue };
        let field = format!("volumes[{i}].disk.id");
        match s.store.find_disk(owner, &dv.id) {
            Ok(d) => {
                if let Err(m) = s.disk_compat.check(instance, &d.disk_type) {
                    errs.push(FieldError::new(field, format!("disk {:?}: {m}", d.name)));
                }
            }
            Err(qci_store::StoreError::DiskNotFound(_)) => {
                errs.push(FieldError::new(field, format!("no disk {:?}", dv.id)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Fields(errs))
    }
}

/// An update keeps the group's disks as they are: attaching and detaching happen with the
/// group's create and delete.
pub(crate) fn check_disks_unchanged(old: &GroupSpec, new: &GroupSpec) -> Result<(), ApiError> {
    let disks = |s: &GroupSpec| -> Vec<(String, String)> {
        s.volumes
            .iter()
            .filter_map(|v| Some((v.name.clone(), v.disk.as_ref()?.id.clone())))
            .collect()
    };
    if disks(old) != disks(new) {
        return Err(ApiError::Fields(vec![FieldError::new(
            "volumes",
            "an update cannot add, remove or change disk volumes (a disk is attached when its group is created and detached when it is deleted); create a new group instead",
        )]));
    }
    Ok(())
}
