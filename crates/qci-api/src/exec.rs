//! `/v1/container-groups/{id}/containers/{name}/exec`: a command in a running container, over a
//! WebSocket.
//!
//! Framing (binary messages, the first byte names the channel, like Kubernetes'
//! `v5.channel.k8s.io`):
//! - `0` stdin (client → server); an empty payload closes the command's stdin;
//! - `1` stdout, `2` stderr (server → client);
//! - `3` status (server → client, last): JSON `{"exit_code": N}` or `{"error": "..."}`;
//! - `4` resize (client → server): JSON `{"cols": C, "rows": R}` (with a terminal).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use qci_spec::ContainerState;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use utoipa::IntoParams;

use crate::auth::Scope;
use crate::{ApiError, AppState};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STATUS: u8 = 3;
pub const RESIZE: u8 = 4;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecQuery {
    /// The command and its arguments, as a JSON array of strings (passed on exactly).
    command: String,
    /// Give the command a terminal (output then comes on channel 1 only; resize applies).
    #[serde(default)]
    tty: bool,
    /// The terminal's starting size.
    rows: Option<u16>,
    cols: Option<u16>,
}

/// Runs a command in a running container (its namespaces, cgroup, env and working dir), over a
/// WebSocket with the framing described above. A container that is not running gets 409.
#[utoipa::path(get, path = "/v1/container-groups/{id}/containers/{name}/exec", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name"), ("name" = String, Path, description = "Container"), ExecQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 409, body = crate::ErrorBody)))]
pub async fn exec(
    State(s): State<AppState>,
    scope: Scope,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<ExecQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let g = s.store.find_group(scope.owner(), &id)?;
    let argv: Vec<String> = serde_json::from_str(&q.command).map_err(|e| {
        ApiError::BadRequest(format!("command must be a JSON array of strings: {e}"))
    })?;
    if argv.is_empty() || argv.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::BadRequest(
            "command must be a non-empty list of strings without NUL".into(),
        ));
    }
    let st = g
        .status
        .init_containers
        .iter()
        .chain(&g.status.containers)
        .find(|c| c.name == name);
    let Some(st) = st.filter(|_| g.spec.all_containers().any(|c| c.name == name)) else {
        return Err(ApiError::NotFound(format!(
            "group {:?} has no container {name:?}",
            g.name
        )));
    };
    if st.state != ContainerState::Running {
        return Err(ApiError::Conflict(format!(
            "container {name:?} is {}, not running: only running containers can be connected to",
            st.state
        )));
    }
    let runc_id = qci_runtime::Layout::runc_id(&g.id, &name);
    let runc = qci_runtime::Runc::new(&s.layout.runc_root);
    let pid_dir = s.layout.run_dir.join("exec");
    std::fs::create_dir_all(&pid_dir).map_err(|e| ApiError::Internal(format!("exec: {e}")))?;
    let pid_file = pid_dir.join(format!(
        "{runc_id}.{}.pid",
        SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    // Held for the session's life: the tenant's `exec_sessions` quota counts it.
    let limit = s
        .store
        .tenant_quota(scope.owner())?
        .and_then(|q| q.exec_sessions);
    let slot = s
        .exec_sessions
        .take(scope.owner(), limit)
        .map_err(|e| ApiError::Store(e.into()))?;
    if q.tty {
        let (rows, cols) = (q.rows.unwrap_or(24), q.cols.unwrap_or(80));
        return Ok(ws.on_upgrade(move |socket| async move {
            tty_session(socket, runc, runc_id, argv, pid_file, rows, cols).await;
            drop(slot);
        }));
    }
    Ok(ws.on_upgrade(move |socket| async move {
        session(socket, runc, runc_id, argv, pid_file).await;
        drop(slot);
    }))
}

/// Kills what an exec session started: the command (named by runc's pid file) and runc.
async fn end(child: &mut tokio::process::Child, pid_file: &std::path::Path) {
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_file(pid_file);
}

#[derive(Deserialize)]
struct Resize {
    rows: u16,
    cols: u16,
}

async fn tty_session(
    mut ws: WebSocket,
    runc: qci_runtime::Runc,
    id: String,
    argv: Vec<String>,
    pid_file: std::path::PathBuf,
    rows: u16,
    cols: u16,
) {
    let fail = |e: String| frame(STATUS, &serde_json::json!({"error": e}).to_string());
    let (master, slave) = match crate::pty::open(rows, cols) {
        Ok(p) => p,
        Err(e) => {
            let _ = ws.send(fail(format!("opening a terminal: {e}"))).await;
            return;
        }
    };
    let pid_arg = pid_file.display().to_string();
    let mut args: Vec<&str> = vec!["exec", "-t", "--pid-file", &pid_arg, &id];
    args.extend(argv.iter().map(String::as_str));
    let mut cmd = tokio::process::Command::from(runc.command(&args));
    let stdio = |fd: &std::os::fd::OwnedFd| fd.try_clone().map(std::process::Stdio::from);
    match (stdio(&slave), stdio(&slave), stdio(&slave)) {
        (Ok(i), Ok(o), Ok(e)) => {
            cmd.stdin(i).stdout(o).stderr(e);
        }
        _ => {
            let _ = ws.send(fail("duplicating the terminal".into())).await;
            return;
        }
    }
    cmd.kill_on_drop(true);
    crate::pty::controlling_terminal(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = ws.send(fail(e.to_string())).await;
            return;
        }
    };
    drop(slave);
    let resize_fd = match master.try_clone() {
        Ok(f) => f,
        Err(e) => {
            let _ = ws.send(fail(e.to_string())).await;
            end(&mut child, &pid_file).await;
            return;
        }
    };
    let file = std::fs::File::from(master);
    let mut writer = match file.try_clone() {
        Ok(w) => tokio::fs::File::from_std(w),
        Err(e) => {
            let _ = ws.send(fail(e.to_string())).await;
            end(&mut child, &pid_file).await;
            return;
        }
    };
    let mut reader = tokio::fs::File::from_std(file);
    let mut buf = vec![0u8; 16384];
    let mut open = true;
    loop {
        tokio::select! {
            n = reader.read(&mut buf), if open => match n {
                // EIO once the command and everything on the terminal are gone.
                Ok(0) | Err(_) => open = false,
                Ok(n) => if ws.send(frame_bytes(STDOUT, &buf[..n])).await.is_err() { break },
            },
            msg = ws.recv() => match msg {
                Some(Ok(Message::Binary(b))) if b.first() == Some(&STDIN) => {
                    let _ = writer.write_all(&b[1..]).await;
                    let _ = writer.flush().await;
                }
                Some(Ok(Message::Binary(b))) if b.first() == Some(&RESIZE) => {
                    if let Ok(r) = serde_json::from_slice::<Resize>(&b[1..]) {
                        let _ = crate::pty::resize(&resize_fd, r.rows, r.cols);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
            status = child.wait() => {
                // Whatever the terminal still holds, then the status.
                while let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(100), reader.read(&mut buf)).await {
                    if n == 0 || ws.send(frame_bytes(STDOUT, &buf[..n])).await.is_err() {
                        break;
                    }
                }
                let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
                let _ = ws.send(frame(STATUS, &serde_json::json!({"exit_code": code}).to_string())).await;
                let _ = ws.send(Message::Close(None)).await;
                let _ = std::fs::remove_file(&pid_file);
                return;
            }
        }
    }
    end(&mut child, &pid_file).await;
}

/// Numbers exec sessions, for their pid files.
static SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn session(
    mut ws: WebSocket,
    runc: qci_runtime::Runc,
    id: String,
    argv: Vec<String>,
    pid_file: std::path::PathBuf,
) {
    let pid_arg = pid_file.display().to_string();
    let mut args: Vec<&str> = vec!["exec", "--pid-file", &pid_arg, &id];
    args.extend(argv.iter().map(String::as_str));
    let mut cmd = tokio::process::Command::from(runc.command(&args));
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = ws
                .send(frame(
                    STATUS,
                    &serde_json::json!({"error": e.to_string()}).to_string(),
                ))
                .await;
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let (mut ob, mut eb) = (vec![0u8; 16384], vec![0u8; 16384]);
    let (mut out_open, mut err_open) = (true, true);
    loop {
        tokio::select! {
            n = out.read(&mut ob), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => if ws.send(frame_bytes(STDOUT, &ob[..n])).await.is_err() { break },
            },
            n = err.read(&mut eb), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => if ws.send(frame_bytes(STDERR, &eb[..n])).await.is_err() { break },
            },
            msg = ws.recv() => match msg {
                Some(Ok(Message::Binary(b))) if b.first() == Some(&STDIN) => {
                    if b.len() == 1 {
                        stdin = None;
                    } else if let Some(i) = stdin.as_mut() && i.write_all(&b[1..]).await.is_err() {
                        stdin = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
            status = child.wait(), if !out_open && !err_open => {
                let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
                let _ = ws.send(frame(STATUS, &serde_json::json!({"exit_code": code}).to_string())).await;
                let _ = ws.send(Message::Close(None)).await;
                let _ = std::fs::remove_file(&pid_file);
                return;
            }
        }
    }
    // The client went away: nothing of the session may stay. The command itself runs in the
    // container (runc's pid file names it); runc is only its parent.
    end(&mut child, &pid_file).await;
}

fn frame(channel: u8, text: &str) -> Message {
    frame_bytes(channel, text.as_bytes())
}

fn frame_bytes(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}
