//! `/v1/container-groups`: create, list, get, delete, events.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures_util::StreamExt;
use qci_spec::{ContainerGroup, DryRun, Event, GroupSpec, parse_spec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, ListScope, Scope};
use crate::{ApiError, AppState, ErrorBody};

/// The largest group spec accepted: config files hold up to 1 MiB, which JSON escaping can
/// make several times longer.
pub const MAX_SPEC_BYTES: usize = 4 << 20;

/// A spec from a request body: its size, its encoding, then [`parse_spec`] off the async
/// runtime (the scan inside it bounds the parser's work, and a blocking thread keeps even that
/// away from other requests).
async fn spec_from(body: Result<bytes::Bytes, BytesRejection>) -> Result<GroupSpec, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "a group spec may be at most {} MiB",
                MAX_SPEC_BYTES >> 20
            ))
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(e) => {
            let good = &body[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() + 1;
            let col = good.len() - good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
            return Err(ApiError::InvalidSpec(qci_spec::SpecError::Malformed(
                qci_spec::FieldError::new(
                    "spec",
                    format!("line {line} column {col}: not UTF-8 (a spec is UTF-8 text)"),
                ),
            )));
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "the request body must be a container group spec (JSON or YAML)".into(),
        ));
    }
    let text = text.to_string();
    tokio::task::spawn_blocking(move || parse_spec(&text))
        .await
        .map_err(|e| ApiError::Internal(format!("parsing the spec: {e}")))?
        .map_err(ApiError::from)
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub items: Vec<ContainerGroup>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub items: Vec<Event>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Keep the response open as server-sent events: first a `snapshot` (data: the list, as
    /// without `watch`), then an `upsert` (data: the group) for each group that changes or
    /// appears and a `delete` (data: `{"id": ...}`) for each that is gone.
    #[serde(default)]
    watch: bool,
}

/// Lists the container groups, oldest first; with `watch=true`, as a live stream.
#[utoipa::path(get, path = "/v1/container-groups", tag = "container-groups", params(ListQuery),
    responses((status = 200, body = GroupList)))]
pub async fn list_groups(
    State(s): State<AppState>,
    scope: ListScope,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let filter = scope.filter().map(str::to_string);
    if !q.watch {
        return Ok(Json(GroupList {
            items: s
                .store
                .list_groups(filter.as_deref())?
                .into_iter()
                .map(ContainerGroup::masked)
                .collect(),
        })
        .into_response());
    }
    Ok(
        axum::response::sse::Sse::new(watch_groups(s, filter, scope.caller))
            .keep_alive(axum::response::sse::KeepAlive::default())
            .into_response(),
    )
}

type SseItem = Result<axum::response::sse::Event, std::convert::Infallible>;

/// What changed between two listings (id → the group's JSON), as (event, data): upserts in
/// list order, then deletions.
fn list_diff(
    before: &std::collections::HashMap<String, String>,
    now: &[(String, String)],
) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = now
        .iter()
        .filter(|(id, json)| before.get(id) != Some(json))
        .map(|(_, json)| ("upsert", json.clone()))
        .collect();
    let mut gone: Vec<&String> = before
        .keys()
        .filter(|id| !now.iter().any(|(n, _)| n == *id))
        .collect();
    gone.sort();
    out.extend(
        gone.into_iter()
            .map(|id| ("delete", serde_json::json!({ "id": id }).to_string())),
    );
    out
}

/// The stream behind `?watch=true`: woken by the store's changes (coalesced over 200 ms, and
/// every 5 s all the same), each wake-up sends only what differs from what was sent. It ends
/// when the caller's key or session stops working (see [`Caller::ended`]).
fn watch_groups(
    s: AppState,
    filter: Option<String>,
    caller: Caller,
) -> impl futures_util::Stream<Item = SseItem> {
    let changes = s.store.watch_changes();
    let sent = std::collections::HashMap::<String, String>::new();
    futures_util::stream::unfold(
        (s, filter, sent, changes, true, caller),
        |(s, filter, mut sent, mut changes, first, caller)| async move {
            if !first {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed())
                    .await;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                if caller.ended(&s.store).is_some() {
                    return None;
                }
            }
            changes.borrow_and_update();
            let groups = s.store.list_groups(filter.as_deref()).ok()?;
            let now: Vec<(String, String)> = groups
                .into_iter()
                .map(|g| {
                    let json = serde_json::to_string(&g.clone().masked()).unwrap_or_default();
                    (g.id, json)
                })
                .collect();
            // The first answer is the whole list in one event (one parse, one render).
            let events = if first {
                let body = format!(
                    "{{\"items\":[{}]}}",
                    now.iter()
                        .map(|(_, j)| j.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                vec![("snapshot", body)]
            } else {
                list_diff(&sent, &now)
            };
            sent = now.into_iter().collect();
            Some((events, (s, filter, sent, changes, false, caller)))
        },
    )
    .flat_map(|events| {
        futures_util::stream::iter(
            events.into_iter().map(|(kind, data)| {
                Ok(axum::response::sse::Event::default().event(kind).data(data))
            }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_list_sends_only_what_changed() {
        let before: std::collections::HashMap<String, String> =
            [("a", "1"), ("b", "1"), ("c", "1")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let now = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        type Case<'a> = (&'a str, Vec<(String, String)>, Vec<(&'a str, &'a str)>);
        let table: [Case; 4] = [
            (
                "nothing changed",
                now(&[("a", "1"), ("b", "1"), ("c", "1")]),
                vec![],
            ),
            (
                "one changed",
                now(&[("a", "1"), ("b", "2"), ("c", "1")]),
                vec![("upsert", "2")],
            ),
            (
                "one new, two gone",
                now(&[("a", "1"), ("d", "1")]),
                vec![
                    ("upsert", "1"),
                    ("delete", r#"{"id":"b"}"#),
                    ("delete", r#"{"id":"c"}"#),
                ],
            ),
            (
                "all gone",
                now(&[]),
                vec![
                    ("delete", r#"{"id":"a"}"#),
                    ("delete", r#"{"id":"b"}"#),
                    ("delete", r#"{"id":"c"}"#),
                ],
            ),
        ];
        for (what, now, want) in table {
            let got = list_diff(&before, &now);
            let got: Vec<(&str, &str)> = got.iter().map(|(k, d)| (*k, d.as_str())).collect();
            assert_eq!(got, want, "{what}");
        }
        // The first listing sends every group.
        assert_eq!(list_diff(&Default::default(), &now(&[("a", "1")])).len(), 1);
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    /// Check everything a real request would (the spec, the operator's policy, disks,
    /// addresses, quotas, the name) and answer what it would do, changing nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Creates a container group. The body is the spec, in JSON or YAML; it is validated before
/// anything is stored, and every error names the field that is wrong. With `dry_run=true`,
/// everything is checked and nothing stored: the answer (200) is the group as it would be.
#[utoipa::path(post, path = "/v1/container-groups", tag = "container-groups",
    params(WriteQuery),
    request_body(content = GroupSpec, content_type = "application/json", description = "The spec (JSON, or YAML as application/yaml)"),
    responses(
        (status = 201, description = "Accepted; the group will be started", body = ContainerGroup),
        (status = 200, description = "dry_run: what would be made", body = DryRun),
        (status = 400, description = "The spec is invalid", body = ErrorBody),
        (status = 409, description = "A group of that name exists", body = ErrorBody)))]
pub async fn create_group(
    State(s): State<AppState>,
    scope: Scope,
    axum::extract::Query(q): axum::extract::Query<WriteQuery>,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let spec = spec_from(body).await?;
    if spec
        .registry_credentials
        .iter()
        .any(|c| c.password == qci_spec::PASSWORD_MASK)
    {
        return Err(ApiError::Fields(vec![qci_spec::FieldError {
            field: "registry_credentials".into(),
            message: "a password is the mask qci shows instead of one; give the password itself"
                .into(),
        }]));
    }
    check_policy(&s, &spec)?;
    s.nodes.check_takes_groups().await?;
    let mut spec = spec;
    spec.runtime = Some(
        s.runtimes
            .resolve(spec.runtime)
            .map_err(|e| ApiError::Fields(vec![e]))?,
    );
    check_runtime_support(&spec)?;
    check_named_cache(&s, scope.owner(), &spec)?;
    crate::disks::check_group_disks(&s, scope.owner(), &spec)?;
    let resources = s
        .specs
        .size_checked(&spec)
        .map_err(|e| ApiError::Fields(vec![e]))?;
    if q.dry_run {
        let g = s.store.try_create_group(scope.owner(), &spec, &resources)?;
        return Ok(Json(DryRun {
            group: g.masked(),
            update: None,
        })
        .into_response());
    }
    let g = s
        .store
        .create_sized_group(scope.owner(), &spec, &resources)?;
    tracing::info!(group = %g.id, name = %g.name, "created");
    (s.on_group_change)(&g.id);
    Ok((StatusCode::CREATED, Json(g.masked())).into_response())
}

/// What the group's runtime (resolved) cannot hold, each field named.
fn check_runtime_support(spec: &GroupSpec) -> Result<(), ApiError> {
    let errors = spec.runtime_errors();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Fields(errors))
    }
}

/// What the server's operator allows in security contexts.
fn check_policy(s: &AppState, spec: &GroupSpec) -> Result<(), ApiError> {
    let errors = s.security.check(spec);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Fields(errors))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Answer only once waiting for this is over: the group got there, or it will not by
    /// itself (it failed, is being deleted, or a container is stuck: a bad image, a start
    /// error, a crash loop) — or `timeout` has passed. The answer comes as soon as the group
    /// changes; there is no need to poll.
    wait_for: Option<qci_spec::WaitFor>,
    /// With `wait_for`: the longest wait, in milliseconds (none: as long as it takes).
    timeout: Option<u64>,
    /// Keep the response open as server-sent events: an `upsert` (data: the group) now and
    /// whenever it changes, and a `delete` (data: `{"id": ...}`) once it is gone, which ends
    /// the stream.
    #[serde(default)]
    watch: bool,
}

/// Gets one container group by id or name; with `wait_for`, once waiting for it is over; with
/// `watch=true`, as a live stream.
#[utoipa::path(get, path = "/v1/container-groups/{id}", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name"), GetQuery),
    responses((status = 200, body = ContainerGroup), (status = 404, body = ErrorBody)))]
pub async fn get_group(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<GetQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    // (Subscribed before the first read, so no change can fall between the two.)
    let mut changes = s.store.watch_changes();
    let mut g = s.store.find_group(scope.owner(), &id)?;
    if q.watch {
        if q.wait_for.is_some() {
            return Err(ApiError::BadRequest(
                "watch and wait_for: give one or the other".into(),
            ));
        }
        let stream = watch_group(s, scope.owner().to_string(), g, changes, scope.caller);
        return Ok(axum::response::sse::Sse::new(stream)
            .keep_alive(axum::response::sse::KeepAlive::default())
            .into_response());
    }
    let Some(want) = q.wait_for else {
        return Ok(Json(g.masked()).into_response());
    };
    // (A timeout too far off to represent is no timeout: adding it would overflow.)
    let deadline = q.timeout.and_then(|ms| {
        tokio::time::Instant::now().checked_add(std::time::Duration::from_millis(ms))
    });
    loop {
        if g.wait_outcome(want).is_some() {
            return Ok(Json(g.masked()).into_response());
        }
        let changed = changes.changed();
        let woke = match deadline {
            Some(d) => tokio::time::timeout_at(d, changed).await.ok(),
            None => Some(changed.await),
        };
        if !matches!(woke, Some(Ok(()))) {
            return Ok(Json(g.masked()).into_response());
        }
        // (Marked seen before the read: a change after it wakes the next wait.)
        changes.borrow_and_update();
        g = s.store.find_group(scope.owner(), &g.id)?;
    }
}

/// The stream behind a group's `?watch=true`: the group now, then whenever it differs from
/// what was sent (woken by the store, at least every 5 s), then its deletion; it ends there,
/// or when the caller's key or session stops working.
fn watch_group(
    s: AppState,
    owner: String,
    g: ContainerGroup,
    changes: tokio::sync::watch::Receiver<u64>,
    caller: Caller,
) -> impl futures_util::Stream<Item = SseItem> {
    use axum::response::sse::Event;
    let json = |g: ContainerGroup| serde_json::to_string(&g.masked()).unwrap_or_default();
    let first = json(g.clone());
    futures_util::stream::unfold(
        (
            s,
            owner,
            g.id,
            Some(first),
            String::new(),
            changes,
            caller,
            false,
        ),
        move |(s, owner, id, first, mut sent, mut changes, caller, gone)| async move {
            if gone {
                return None;
            }
            if let Some(first) = first {
                let ev = Event::default().event("upsert").data(first.clone());
                return Some((Ok(ev), (s, owner, id, None, first, changes, caller, false)));
            }
            loop {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed())
                    .await;
                changes.borrow_and_update();
                if caller.ended(&s.store).is_some() {
                    return None;
                }
                match s.store.find_group(&owner, &id) {
                    Ok(g) => {
                        let now = json(g);
                        if now != sent {
                            sent = now;
                            let ev = Event::default().event("upsert").data(sent.clone());
                            return Some((
                                Ok(ev),
                                (s, owner, id, None, sent, changes, caller, false),
                            ));
                        }
                    }
                    Err(qci_store::StoreError::NotFound(_)) => {
                        let ev = Event::default()
                            .event("delete")
                            .data(serde_json::json!({ "id": id }).to_string());
                        return Some((Ok(ev), (s, owner, id, None, sent, changes, caller, true)));
                    }
                    Err(_) => continue,
                }
            }
        },
    )
}

/// Updates a group in place (phase Updating): the images of changed containers are pulled
/// first, then only the containers whose spec changed are recreated; the others keep running
/// (same PID). If the new images cannot be pulled, the old containers keep running and the
/// status says why. The name cannot change; a credential's password may be given as the mask
/// to keep the stored one. With `dry_run=true`, everything is checked and nothing changed: the
/// answer says which containers the update would recreate.
#[utoipa::path(put, path = "/v1/container-groups/{id}", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name"), WriteQuery),
    request_body(content = GroupSpec, content_type = "application/json"),
    responses((status = 200, description = "The group (with dry_run: a DryRun)", body = ContainerGroup), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_group(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<WriteQuery>,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let g = s.store.find_group(scope.owner(), &id)?;
    let spec = spec_from(body).await?;
    let field = |field: &str, message: String| {
        ApiError::Fields(vec![qci_spec::FieldError {
            field: field.into(),
            message,
        }])
    };
    if spec.name != g.spec.name {
        return Err(field(
            "name",
            format!(
                "cannot change (it is {:?}); create a new group instead",
                g.spec.name
            ),
        ));
    }
    check_policy(&s, &spec)?;
    // A group stays on the runtime it was made on (groups from before runtimes: runc).
    let mut spec = spec;
    let was = g.spec.runtime.unwrap_or(qci_spec::ContainerRuntime::Runc);
    match spec.runtime {
        Some(r) if r != was => {
            return Err(field(
                "runtime",
                format!("cannot change (it is {was}); create a new group instead"),
            ));
        }
        _ => spec.runtime = Some(was),
    }
    check_runtime_support(&spec)?;
    check_named_cache(&s, scope.owner(), &spec)?;
    crate::disks::check_disks_unchanged(&g.spec, &spec)?;
    crate::networks::check_network_update(&s, scope.owner(), &g.id, &g.spec, &spec)?;
    crate::disks::check_group_disks(&s, scope.owner(), &spec)?;
    let resources = s
        .specs
        .size_checked(&spec)
        .map_err(|e| ApiError::Fields(vec![e]))?;
    if q.dry_run {
        let plan = g.spec.update_plan(&spec);
        let g = s.store.try_update_group(&g.id, &spec, &resources)?;
        return Ok(Json(DryRun {
            group: g.masked(),
            update: Some(plan),
        })
        .into_response());
    }
    let g = s.store.update_group(&g.id, &spec, &resources)?;
    tracing::info!(group = %g.id, "updated");
    (s.on_group_change)(&g.id);
    Ok(Json(g.masked()).into_response())
}

/// Deletes a container group: its containers are stopped (SIGTERM, then SIGKILL after the
/// grace period) and everything made for it is removed. Answers at once with the group in
/// phase Deleting; it disappears once cleanup has finished.
#[utoipa::path(delete, path = "/v1/container-groups/{id}", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name")),
    responses((status = 202, body = ContainerGroup), (status = 404, body = ErrorBody)))]
pub async fn delete_group(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ContainerGroup>), ApiError> {
    let g = s.store.find_group(scope.owner(), &id)?;
    let g = s.store.request_deletion(&g.id)?;
    tracing::info!(group = %g.id, "deletion requested");
    (s.on_group_change)(&g.id);
    Ok((StatusCode::ACCEPTED, Json(g.masked())))
}

/// Restarts a group: every container is stopped (SIGTERM, then SIGKILL after the grace
/// period), then the init containers run again, then the work containers. Phase Restarting
/// meanwhile; restart counts are kept.
#[utoipa::path(post, path = "/v1/container-groups/{id}/restart", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name")),
    responses((status = 202, body = ContainerGroup), (status = 404, body = ErrorBody)))]
pub async fn restart_group(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ContainerGroup>), ApiError> {
    let g = s.store.find_group(scope.owner(), &id)?;
    let g = s.store.request_restart(&g.id)?;
    tracing::info!(group = %g.id, "restart requested");
    (s.on_group_change)(&g.id);
    Ok((StatusCode::ACCEPTED, Json(g.masked())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Keep the response open (server-sent events, one `data:` line per event) and send
    /// events as they happen or repeat.
    #[serde(default)]
    watch: bool,
}

/// A group's events by the time they last happened; repeats are folded (`count`). Readable for
/// a while after the group is deleted. With `watch=true`, a server-sent event stream.
#[utoipa::path(get, path = "/v1/container-groups/{id}/events", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name"), EventQuery),
    responses((status = 200, body = EventList), (status = 404, body = ErrorBody)))]
pub async fn list_events(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<EventQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    // A deleted group's events stay readable for a while: users want to see why it failed.
    let gid = match s.store.find_group(scope.owner(), &id) {
        Ok(g) => g.id,
        Err(qci_store::StoreError::NotFound(_)) => {
            s.store.find_deleted_group(scope.owner(), &id)?
        }
        Err(e) => return Err(e.into()),
    };
    if !q.watch {
        return Ok(Json(EventList {
            items: s.store.events(&gid)?,
        })
        .into_response());
    }
    // Woken by the store when a group or an event changes (and every 5 s all the same).
    let changes = s.store.watch_changes();
    let caller = scope.caller;
    let stream = futures_util::stream::unfold(
        (s, gid, 0i64, true, changes, caller),
        |(s, gid, seq, first, mut changes, caller)| async move {
            loop {
                if !first {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed())
                            .await;
                    // A revoked key or a signed-out session ends the stream.
                    if caller.ended(&s.store).is_some() {
                        return None;
                    }
                }
                // (Marked seen before the read: a change after it wakes the next wait.)
                changes.borrow_and_update();
                let batch = s.store.events_since(None, Some(&gid), seq, 1000).ok()?;
                if batch.is_empty() {
                    if first {
                        return Some((Vec::new(), (s, gid, seq, false, changes, caller)));
                    }
                    // The group is gone and nothing more will come.
                    if matches!(s.store.get_group(&gid), Ok(None)) {
                        return None;
                    }
                    continue;
                }
                let last = batch.last().map(|e| e.seq).unwrap_or(seq);
                let events: Vec<Result<axum::response::sse::Event, std::convert::Infallible>> =
                    batch
                        .iter()
                        .filter_map(|e| axum::response::sse::Event::default().json_data(e).ok())
                        .map(Ok)
                        .collect();
                return Some((events, (s, gid, last, false, changes, caller)));
            }
        },
    )
    .flat_map(futures_util::stream::iter);
    Ok(axum::response::sse::Sse::new(stream)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AllEventsQuery {
    /// At most this many (the newest); 500 by default.
    limit: Option<i64>,
}

/// Events across every group (deleted ones' too, while kept), by the time they last happened.
#[utoipa::path(get, path = "/v1/events", tag = "container-groups", params(AllEventsQuery),
    responses((status = 200, body = EventList)))]
pub async fn all_events(
    State(s): State<AppState>,
    scope: ListScope,
    axum::extract::Query(q): axum::extract::Query<AllEventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    Ok(Json(EventList {
        items: s.store.events_since(scope.filter(), None, 0, limit)?,
    }))
}

/// A group that names an image cache needs one that exists and holds all its images.
fn check_named_cache(s: &AppState, owner: &str, spec: &GroupSpec) -> Result<(), ApiError> {
    let Some(name) = spec
        .image_cache
        .as_deref()
        .filter(|m| *m != "auto" && *m != "none")
    else {
        return Ok(());
    };
    let field = |message: String| {
        ApiError::Fields(vec![qci_spec::FieldError {
            field: "image_cache".into(),
            message,
        }])
    };
    let c = match s.store.find_image_cache(owner, name) {
        Ok(c) => c,
        Err(qci_store::StoreError::CacheNotFound(_)) => {
            return Err(field(format!("no image cache named {name:?}")));
        }
        Err(e) => return Err(e.into()),
    };
    if c.status.phase == qci_spec::CachePhase::Failed {
        return Err(field(format!(
            "image cache {name:?} failed: {}",
            c.status.message.unwrap_or_default()
        )));
    }
    let missing: Vec<&str> = spec
        .all_containers()
        .map(|c| c.image.as_str())
        .filter(|i| !c.spec.images.iter().any(|x| x == i))
        .collect();
    if !missing.is_empty() {
        return Err(field(format!(
            "image cache {name:?} does not hold {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start of the window (RFC 3339); the beginning of time if absent.
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the window (RFC 3339); now if absent.
    to: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UsageList {
    pub items: Vec<qci_spec::Usage>,
}

/// Metered use per group: normalised core-seconds, GiB-seconds and cost, counted while a group
/// is Pending, Running or Restarting (never while Failed or Succeeded).
#[utoipa::path(get, path = "/v1/usage", tag = "container-groups", params(UsageQuery),
    responses((status = 200, body = UsageList)))]
pub async fn usage(
    State(s): State<AppState>,
    scope: ListScope,
    axum::extract::Query(q): axum::extract::Query<UsageQuery>,
) -> Result<Json<UsageList>, ApiError> {
    let from = q.from.unwrap_or_default();
    let to = q.to.unwrap_or_else(chrono::Utc::now);
    Ok(Json(UsageList {
        items: s.store.usage(scope.filter(), from, to)?,
    }))
}
