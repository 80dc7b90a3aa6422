//! `/v1/container-groups/{id}/logs`: container output, whole, tailed or followed.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use qci_runtime::logs::{LogLine, join_partials, read_from};
use qci_spec::{ContainerGroup, ContainerState};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Scope;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The container; without it, every container's lines, each prefixed with `[name] `.
    container: Option<String>,
    /// Only the last N lines.
    tail: Option<usize>,
    /// Keep the response open and send new lines as they come, until the containers end or
    /// the group is deleted.
    #[serde(default)]
    follow: bool,
    /// Start each line with its RFC 3339 time.
    #[serde(default)]
    timestamps: bool,
    /// The output of the container's instance before its last restart.
    #[serde(default)]
    previous: bool,
    /// Only lines from this time on: RFC 3339, or an age such as `10m`, `30s`, `2h`.
    since: Option<String>,
    /// At most this many bytes of output (the first ones).
    limit_bytes: Option<usize>,
    /// Only what the containers wrote to this stream: `stdout` or `stderr` (default both).
    stream: Option<String>,
}

/// `10m`, `30s`, `2h`, `1d`, or an RFC 3339 time.
pub(crate) fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let bad = || {
        ApiError::Fields(vec![qci_spec::FieldError {
            field: "since".into(),
            message: format!(
                "{s:?} is neither an RFC 3339 time nor an age such as 10m, 30s, 2h or 1d"
            ),
        }])
    };
    let age = qci_spec::parse_age(s).map_err(|_| bad())?;
    Ok(chrono::Utc::now() - age)
}

/// A container's log files, oldest first: the rotated one, then the current one.
fn files(current: std::path::PathBuf) -> [std::path::PathBuf; 2] {
    let mut rotated = current.clone().into_os_string();
    rotated.push(".1");
    [rotated.into(), current]
}

/// A group's container logs as plain text, one line per output line.
#[utoipa::path(get, path = "/v1/container-groups/{id}/logs", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name"), LogQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = crate::ErrorBody)))]
pub async fn get_logs(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let g = s.store.find_group(scope.owner(), &id)?;
    let names: Vec<String> = match &q.container {
        Some(c) => {
            if !g.spec.all_containers().any(|x| &x.name == c) {
                let known: Vec<&str> = g.spec.all_containers().map(|x| x.name.as_str()).collect();
                return Err(ApiError::NotFound(format!(
                    "group {:?} has no container {c:?} (its containers: {})",
                    g.name,
                    known.join(", ")
                )));
            }
            vec![c.clone()]
        }
        None => g.spec.all_containers().map(|c| c.name.clone()).collect(),
    };
    if let Some(st) = q.stream.as_deref()
        && st != "stdout"
        && st != "stderr"
    {
        return Err(ApiError::Fields(vec![qci_spec::FieldError {
            field: "stream".into(),
            message: format!("{st:?}: must be stdout or stderr"),
        }]));
    }
    let prefix = q.container.is_none() && names.len() > 1;
    let since = q.since.as_deref().map(parse_since).transpose()?;
    let paths: Vec<_> = names
        .iter()
        .map(|n| {
            if q.previous {
                s.layout.previous_log_path(&g.id, n)
            } else {
                s.layout.log_path(&g.id, n)
            }
        })
        .collect();
    let mut offsets = vec![0u64; paths.len()];
    let mut lines = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let [rotated, current] = files(p.clone());
        let (old, _) =
            read_from(&rotated, 0).map_err(|e| ApiError::Internal(format!("reading logs: {e}")))?;
        let (l, off) =
            read_from(&current, 0).map_err(|e| ApiError::Internal(format!("reading logs: {e}")))?;
        offsets[i] = off;
        lines.extend(
            join_partials(old.into_iter().chain(l).collect())
                .into_iter()
                .map(|l| (i, l)),
        );
    }
    if let Some(st) = q.stream.as_deref() {
        lines.retain(|(_, l)| l.stream == st);
    }
    lines.sort_by_key(|(_, l)| l.time);
    if let Some(t) = since {
        lines.retain(|(_, l)| l.time >= t);
    }
    if let Some(n) = q.tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut head = render(&lines, &names, prefix, q.timestamps);
    if let Some(n) = q.limit_bytes {
        truncate_at_char(&mut head, n);
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(head))
            .map_err(|e| ApiError::Internal(e.to_string()));
    }
    if q.previous && q.follow {
        return Err(ApiError::BadRequest(
            "follow and previous do not go together: the previous instance has ended".into(),
        ));
    }
    let builder = Response::builder().header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if !q.follow {
        return builder
            .body(Body::from(head))
            .map_err(|e| ApiError::Internal(e.to_string()));
    }
    let changes = s.store.watch_changes();
    let state = Follow {
        changes,
        s,
        group_id: g.id.clone(),
        names,
        paths,
        offsets,
        prefix,
        timestamps: q.timestamps,
        stream: q.stream,
        first: Some(head),
        done: false,
        checked: None,
        caller: scope.caller,
        caller_checked: std::time::Instant::now(),
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(first) = st.first.take() {
            return Some((Ok::<_, std::io::Error>(first), st));
        }
        loop {
            if st.done {
                return None;
            }
            // A follow ends when the key (or console session) it was opened with stops working.
            if st.caller_checked.elapsed() >= Duration::from_secs(2) {
                st.caller_checked = std::time::Instant::now();
                if st.caller.ended(&st.s.store).is_some() {
                    return None;
                }
            }
            // New output is looked for every 50 ms (a stat of each file when there is none);
            // whether the end came is read from the store only when the store changed (a
            // container's exit is recorded there), or once a second.
            let changed = tokio::select! {
                c = st.changes.changed() => c.is_ok(),
                _ = tokio::time::sleep(Duration::from_millis(50)) => false,
            };
            if changed
                || st
                    .checked
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                st.changes.borrow_and_update();
                st.checked = Some(std::time::Instant::now());
                // Decide whether this is the last read before reading, so nothing written
                // just before the end is missed.
                st.done = st.finished();
            }
            let chunk = st.read_new();
            if !chunk.is_empty() {
                return Some((Ok(chunk), st));
            }
        }
    });
    builder
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

struct Follow {
    /// Marked when the store changes (a status written: perhaps the end).
    changes: tokio::sync::watch::Receiver<u64>,
    /// When the end was last looked for (None: not yet, so at once: the group may have
    /// ended before the answer began).
    checked: Option<std::time::Instant>,
    /// Who follows, and when their credential was last found working.
    caller: crate::auth::Caller,
    caller_checked: std::time::Instant,
    s: AppState,
    group_id: String,
    names: Vec<String>,
    paths: Vec<std::path::PathBuf>,
    offsets: Vec<u64>,
    prefix: bool,
    timestamps: bool,
    stream: Option<String>,
    first: Option<String>,
    done: bool,
}

impl Follow {
    /// True once no more output can come: the group is gone or final, or every followed
    /// container has terminated for good.
    fn finished(&self) -> bool {
        match self.s.store.get_group(&self.group_id) {
            Ok(Some(g)) => {
                g.deletion_requested_at.is_some()
                    || g.status.phase.is_final()
                    || self.all_terminated(&g)
            }
            _ => true,
        }
    }

    fn all_terminated(&self, g: &ContainerGroup) -> bool {
        self.names.iter().all(|n| {
            g.status
                .init_containers
                .iter()
                .chain(&g.status.containers)
                .any(|c| &c.name == n && c.state == ContainerState::Terminated)
        })
    }

    fn read_new(&mut self) -> String {
        let mut lines = Vec::new();
        for (i, p) in self.paths.iter().enumerate() {
            let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            // Rotated since the last read: the current file started over.
            if len < self.offsets[i] {
                self.offsets[i] = 0;
            }
            // Nothing new: no need to open it.
            if len == self.offsets[i] {
                continue;
            }
            if let Ok((l, off)) = read_from(p, self.offsets[i]) {
                self.offsets[i] = off;
                lines.extend(
                    join_partials(l)
                        .into_iter()
                        .filter(|l| self.stream.as_ref().is_none_or(|s| &l.stream == s))
                        .map(|l| (i, l)),
                );
            }
        }
        lines.sort_by_key(|(_, l)| l.time);
        render(&lines, &self.names, self.prefix, self.timestamps)
    }
}

fn render(lines: &[(usize, LogLine)], names: &[String], prefix: bool, timestamps: bool) -> String {
    let mut out = String::new();
    for (i, l) in lines {
        if timestamps {
            out.push_str(&l.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            out.push(' ');
        }
        if prefix {
            out.push_str(&format!("[{}] ", names[*i]));
        }
        out.push_str(&l.text);
        out.push('\n');
    }
    out
}

/// Cuts `s` to at most `n` bytes, at a character boundary.
fn truncate_at_char(s: &mut String, n: usize) {
    if s.len() > n {
        let mut cut = n;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
