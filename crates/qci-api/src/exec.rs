//! `/v1/container-groups/{id}/containers/{name}/exec`: a command in a running container, over a
//! WebSocket.
//!
//! Framing (binary messages, the first byte names the channel, like Kubernetes'
//! `v5.channel.k8s.io`):
//! - `0` stdin (client → server); an empty payload closes the command's stdin;
//! - `1` stdout, `2` stderr (server → client);
//! - `3` status (server → client, last): JSON `{"exit_code": N}`, with `"message"` when the
//!   command never ran (126: it cannot be run, 127: it is not there; the same sentence also
//!   comes on stderr, as a shell would say it), or `{"error": "..."}` when no command could be
//!   started at all;
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
    running(&g, &name)?;
    let slot = session_slot(&s, &scope)?;
    let tty = q.tty.then(|| (q.rows.unwrap_or(24), q.cols.unwrap_or(80)));
    let runtime = s.runtime.clone();
    let (caller, store) = (scope.caller, s.store.clone());
    Ok(ws.on_upgrade(move |mut socket| async move {
        match runtime.exec(&g.id, &name, &argv, tty) {
            Ok(p) => session(socket, p, caller.until_ended(&store)).await,
            Err(e) => {
                send_error(&mut socket, e.to_string()).await;
                tokio::spawn(close(socket));
            }
        }
        drop(slot);
    }))
}

/// The spec of container `name` of `g`, if it exists and runs (else 404 or 409).
fn running<'a>(
    g: &'a qci_spec::ContainerGroup,
    name: &str,
) -> Result<&'a qci_spec::ContainerSpec, ApiError> {
    let st = g
        .status
        .init_containers
        .iter()
        .chain(&g.status.containers)
        .find(|c| c.name == name);
    let (Some(st), Some(spec)) = (st, g.spec.all_containers().find(|c| c.name == name)) else {
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
    Ok(spec)
}

/// A place among the tenant's open sessions (its `exec_sessions` quota counts exec and
/// attach alike), held for the session's life.
fn session_slot(s: &AppState, scope: &Scope) -> Result<crate::auth::ExecSlot, ApiError> {
    let limit = s
        .store
        .tenant_quota(scope.owner())?
        .and_then(|q| q.exec_sessions);
    s.exec_sessions
        .take(scope.owner(), limit)
        .map_err(|e| ApiError::Store(e.into()))
}

/// The session could not start: why, as its status frame.
async fn send_error(socket: &mut WebSocket, e: String) {
    let _ = socket
        .send(frame(STATUS, &serde_json::json!({"error": e}).to_string()))
        .await;
}

#[derive(Deserialize)]
struct Resize {
    rows: u16,
    cols: u16,
}

/// Output read before the command started: it may be runc's own words about why the
/// command could not start, which are not the command's output. It is held until runc's pid
/// file shows the command started (then sent), or runc ends without starting it (then
/// dropped: the exit's one sentence replaces it).
struct Held {
    started: bool,
    frames: Vec<Message>,
}

impl Held {
    /// Sends `m` now if the command has started (after what was held), else holds it.
    async fn send(&mut self, ws: &mut WebSocket, p: &qci_runtime::ExecProcess, m: Message) -> bool {
        self.frames.push(m);
        self.flush(ws, Some(p)).await
    }

    /// Sends what is held once the command has started; false if the client is gone.
    async fn flush(&mut self, ws: &mut WebSocket, p: Option<&qci_runtime::ExecProcess>) -> bool {
        if !self.started {
            self.started = p.is_some_and(|p| p.started());
            if !self.started {
                return true;
            }
        }
        for m in self.frames.drain(..) {
            if ws.send(m).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The end: what is held goes out if the command ran; if it never did, the one
    /// sentence about why replaces it (on `channel`), then the status.
    async fn finish(
        mut self,
        ws: &mut WebSocket,
        exit: qci_runtime::ExecExit,
        channel: u8,
        eol: &str,
    ) {
        let status = match &exit.error {
            None => {
                self.started = true;
                if !self.flush(ws, None).await {
                    return;
                }
                serde_json::json!({"exit_code": exit.code})
            }
            Some(e) => {
                let _ = ws.send(frame(channel, &format!("{e}{eol}"))).await;
                serde_json::json!({"exit_code": exit.code, "message": e})
            }
        };
        let _ = ws.send(frame(STATUS, &status.to_string())).await;
    }
}

/// Ends a session after its status frame: our Close, then what the client still sends is read
/// until its Close (at most 2 s). Dropping the socket with the client's frames unread (stdin
/// sent as the command ended, say) makes the kernel reset the connection, and a reset
/// discards the status frame still waiting in the client's buffer: `qci run -i` then lost its
/// exit code when the machine was busy. Run on a task of its own: the session (and the
/// tenant's session slot) is over already.
async fn close(mut ws: WebSocket) {
    if ws.send(Message::Close(None)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(m)) = ws.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Forwards frames between the WebSocket and the command until it ends (then its status is
/// the last frame), the client goes, or `ended` answers (the caller's key was revoked or their
/// session signed out: an error frame says so); in the last two nothing of the command may
/// stay: it is killed.
async fn session(
    mut ws: WebSocket,
    mut p: qci_runtime::ExecProcess,
    ended: impl std::future::Future<Output = String>,
) {
    tokio::pin!(ended);
    let mut held = Held {
        started: false,
        frames: Vec::new(),
    };
    // While output is held, the pid file is looked for this often.
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
    match p.io.take() {
        Some(qci_runtime::ExecIo::Tty {
            mut reader,
            mut writer,
        }) => {
            let mut buf = vec![0u8; 16384];
            let mut open = true;
            loop {
                tokio::select! {
                    n = reader.read(&mut buf), if open => match n {
                        // EIO once the command and everything on the terminal are gone.
                        Ok(0) | Err(_) => open = false,
                        Ok(n) => if !held.send(&mut ws, &p, frame_bytes(STDOUT, &buf[..n])).await { break },
                    },
                    _ = tick.tick(), if !held.frames.is_empty() => if !held.flush(&mut ws, Some(&p)).await { break },
                    msg = ws.recv() => match msg {
                        Some(Ok(Message::Binary(b))) if b.first() == Some(&STDIN) => {
                            let _ = writer.write_all(&b[1..]).await;
                            let _ = writer.flush().await;
                        }
                        Some(Ok(Message::Binary(b))) if b.first() == Some(&RESIZE) => {
                            if let Ok(r) = serde_json::from_slice::<Resize>(&b[1..]) {
                                let _ = p.resize(r.rows, r.cols);
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        _ => {}
                    },
                    why = &mut ended => {
                        let _ = ws.send(frame(STATUS, &serde_json::json!({"error": why}).to_string())).await;
                        break;
                    }
                    exit = p.wait() => {
                        // Whatever the terminal still holds, then the status.
                        while let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(100), reader.read(&mut buf)).await {
                            if n == 0 {
                                break;
                            }
                            held.frames.push(frame_bytes(STDOUT, &buf[..n]));
                        }
                        held.finish(&mut ws, exit, STDOUT, "\r\n").await;
                        tokio::spawn(close(ws));
                        return;
                    }
                }
            }
        }
        Some(qci_runtime::ExecIo::Pipes {
            mut stdin,
            stdout: mut out,
            stderr: mut err,
        }) => {
            let (mut ob, mut eb) = (vec![0u8; 16384], vec![0u8; 16384]);
            let (mut out_open, mut err_open) = (true, true);
            loop {
                tokio::select! {
                    n = out.read(&mut ob), if out_open => match n {
                        Ok(0) | Err(_) => out_open = false,
                        Ok(n) => if !held.send(&mut ws, &p, frame_bytes(STDOUT, &ob[..n])).await { break },
                    },
                    n = err.read(&mut eb), if err_open => match n {
                        Ok(0) | Err(_) => err_open = false,
                        Ok(n) => if !held.send(&mut ws, &p, frame_bytes(STDERR, &eb[..n])).await { break },
                    },
                    _ = tick.tick(), if !held.frames.is_empty() => if !held.flush(&mut ws, Some(&p)).await { break },
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
                    why = &mut ended => {
                        let _ = ws.send(frame(STATUS, &serde_json::json!({"error": why}).to_string())).await;
                        break;
                    }
                    exit = p.wait(), if !out_open && !err_open => {
                        held.finish(&mut ws, exit, STDERR, "\n").await;
                        tokio::spawn(close(ws));
                        return;
                    }
                }
            }
        }
        None => {}
    }
    p.kill().await;
}

/// Connects to a running container's first process (one with `stdin` or `tty`), over a
/// WebSocket with exec's framing: stdin (an empty frame ends it), resize, and the container's
/// output as it comes (after a replay of its latest). Closing the WebSocket leaves the
/// container running; when the container ends, the status frame gives its exit code.
#[utoipa::path(get, path = "/v1/container-groups/{id}/containers/{name}/attach", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name"), ("name" = String, Path, description = "Container")),
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 409, body = crate::ErrorBody)))]
pub async fn attach(
    State(s): State<AppState>,
    scope: Scope,
    Path((id, name)): Path<(String, String)>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let g = s.store.find_group(scope.owner(), &id)?;
    let spec = running(&g, &name)?;
    if !spec.stdin && !spec.tty {
        return Err(ApiError::Conflict(format!(
            "container {name:?} has neither stdin nor tty: nothing to attach to (qci exec runs a command in it)"
        )));
    }
    let slot = session_slot(&s, &scope)?;
    let runtime = s.runtime.clone();
    let (caller, store) = (scope.caller, s.store.clone());
    Ok(ws.on_upgrade(move |mut socket| async move {
        match runtime.attach(&g.id, &name).await {
            Ok(stream) => {
                // A revoked key or a signed-out session detaches (the container runs on).
                let ended = tokio::select! {
                    ended = attach_session(&mut socket, stream) => ended,
                    why = caller.until_ended(&store) => {
                        send_error(&mut socket, why).await;
                        false
                    }
                };
                if ended {
                    // The container ended: its exit, as its monitor recorded it.
                    let code = match runtime.observe(&g.id, &name).await {
                        qci_runtime::Observed::Exited(r) => r.exit_code,
                        _ => -1,
                    };
                    let _ = socket
                        .send(frame(
                            STATUS,
                            &serde_json::json!({"exit_code": code}).to_string(),
                        ))
                        .await;
                    tokio::spawn(close(socket));
                }
            }
            Err(e) => {
                send_error(&mut socket, e.to_string()).await;
                tokio::spawn(close(socket));
            }
        }
        drop(slot);
    }))
}

/// Forwards frames until the container's output ends (true) or the client goes (false).
async fn attach_session(ws: &mut WebSocket, stream: tokio::net::UnixStream) -> bool {
    use qci_runtime::attach as a;
    let (mut rd, mut wr) = stream.into_split();
    loop {
        tokio::select! {
            head = async {
                let mut head = [0u8; 5];
                rd.read_exact(&mut head).await.map(|_| head)
            } => {
                let Ok(head) = head else { return true };
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                let mut data = vec![0u8; len];
                if rd.read_exact(&mut data).await.is_err() {
                    return true;
                }
                let channel = if head[0] == a::STDERR { STDERR } else { STDOUT };
                if ws.send(frame_bytes(channel, &data)).await.is_err() {
                    return false;
                }
            }
            msg = ws.recv() => {
                let out = match msg {
                    Some(Ok(Message::Binary(b))) if b.first() == Some(&STDIN) => {
                        if b.len() == 1 {
                            a::frame(a::STDIN_EOF, &[])
                        } else {
                            a::frame(a::STDIN, &b[1..])
                        }
                    }
                    Some(Ok(Message::Binary(b))) if b.first() == Some(&RESIZE) => {
                        match serde_json::from_slice::<Resize>(&b[1..]) {
                            Ok(r) => {
                                let mut p = r.rows.to_be_bytes().to_vec();
                                p.extend_from_slice(&r.cols.to_be_bytes());
                                a::frame(a::RESIZE, &p)
                            }
                            Err(_) => continue,
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return false,
                    _ => continue,
                };
                if wr.write_all(&out).await.is_err() {
                    return true;
                }
            }
        }
    }
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
