//! Commands run in a running container (`runc exec`): for the API's exec sessions and
//! terminals, and for exec probes. The command line is runc's, so it is built here (with
//! [`Runc::exec_command`]); callers get typed streams and a handle that can resize the
//! terminal, wait, and kill what was started.
//!
//! runc names the command's host pid in a pid file; the command itself lives in the container
//! and runc is only its parent, so ending a session kills both (`kill`).
//!
//! runc writes the pid file only once the command has started. When runc exits with no pid
//! file, the command never ran: what runc said (its JSON log) is turned into the shell's
//! convention, as Docker does — 127 and "executable file not found in $PATH: NAME" for a
//! command that is not there, 126 for one that cannot be run — and whatever reached the
//! streams before then was runc's, not the command's (see [`ExecProcess::started`]).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use crate::runtime::RuntimeError;
use crate::{Layout, Runtime, pty};

/// Numbers exec sessions, for their pid files.
static SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How the command talks: pipes, or a terminal.
pub enum ExecIo {
    /// stdin (None once closed), stdout and stderr as pipes.
    Pipes {
        stdin: Option<ChildStdin>,
        stdout: ChildStdout,
        stderr: ChildStderr,
    },
    /// The master side of a pseudo-terminal: output comes from `reader` (stdout and stderr
    /// together), input goes to `writer`.
    Tty {
        reader: tokio::fs::File,
        writer: tokio::fs::File,
    },
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecExit {
    /// Its exit code; -1 when a signal ended it; 126 or 127 when it never ran.
    pub code: i32,
    /// Why it never ran, in one sentence (None: it ran).
    pub error: Option<String>,
}

/// A command started in a container.
pub struct ExecProcess {
    child: Child,
    pid_file: PathBuf,
    /// runc's own log (JSON lines): why a command did not start.
    log_file: PathBuf,
    /// The terminal's master, for resizing (None without a terminal).
    resize: Option<OwnedFd>,
    /// In a gVisor sandbox: runsc and the container, which alone can reach the command
    /// (killing runsc's client leaves it running in the sandbox).
    gvisor: Option<(crate::Runc, String)>,
    /// Taken by the caller to move the streams; what is left is the handle.
    pub io: Option<ExecIo>,
}

impl Runtime {
    /// Starts `argv` in the container `name` of group `group_id` (its namespaces, cgroup, env
    /// and working dir). With `tty` (rows, cols) the command gets a terminal of that size.
    pub fn exec(
        &self,
        group_id: &str,
        name: &str,
        argv: &[String],
        tty: Option<(u16, u16)>,
    ) -> Result<ExecProcess, RuntimeError> {
        let id = Layout::runc_id(group_id, name);
        let pid_dir = self.layout.run_dir.join("exec");
        std::fs::create_dir_all(&pid_dir).map_err(|source| RuntimeError::Io {
            context: format!("creating {}", pid_dir.display()),
            source,
        })?;
        let pid_file = pid_dir.join(format!(
            "{id}.{}.pid",
            SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let log_file = pid_file.with_extension("log");
        let io_err = |context: &str| {
            let context = context.to_string();
            move |source| RuntimeError::Io { context, source }
        };
        let engine = self.engine(&self.layout.container_dir(&id));
        let gvisor = engine.gvisor.then(|| (engine.clone(), id.clone()));
        let mut cmd = tokio::process::Command::from(engine.exec_command(
            &id,
            argv,
            &pid_file,
            &log_file,
            tty.is_some(),
        ));
        cmd.kill_on_drop(true);
        match tty {
            None => {
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().map_err(|source| {
                    RuntimeError::Runc(crate::RuncError::Spawn {
                        path: self.runc.binary.display().to_string(),
                        package: self.runc.package(),
                        source,
                    })
                })?;
                let io = ExecIo::Pipes {
                    stdin: child.stdin.take(),
                    stdout: child.stdout.take().expect("piped"),
                    stderr: child.stderr.take().expect("piped"),
                };
                Ok(ExecProcess {
                    child,
                    pid_file,
                    log_file,
                    resize: None,
                    gvisor,
                    io: Some(io),
                })
            }
            Some((rows, cols)) => {
                let (master, slave) =
                    pty::open(rows, cols).map_err(io_err("opening a terminal"))?;
                let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
                cmd.stdin(stdio(&slave).map_err(io_err("duplicating the terminal"))?)
                    .stdout(stdio(&slave).map_err(io_err("duplicating the terminal"))?)
                    .stderr(stdio(&slave).map_err(io_err("duplicating the terminal"))?);
                pty::controlling_terminal(&mut cmd);
                let child = cmd.spawn().map_err(|source| {
                    RuntimeError::Runc(crate::RuncError::Spawn {
                        path: self.runc.binary.display().to_string(),
                        package: self.runc.package(),
                        source,
                    })
                })?;
                drop(slave);
                let resize = master
                    .try_clone()
                    .map_err(io_err("duplicating the terminal"))?;
                let file = std::fs::File::from(master);
                let writer = file
                    .try_clone()
                    .map_err(io_err("duplicating the terminal"))?;
                Ok(ExecProcess {
                    child,
                    pid_file,
                    log_file,
                    resize: Some(resize),
                    gvisor,
                    io: Some(ExecIo::Tty {
                        reader: tokio::fs::File::from_std(file),
                        writer: tokio::fs::File::from_std(writer),
                    }),
                })
            }
        }
    }
}

impl Runtime {
    /// Connects to the first process of container `name` of group `group_id`, which must
    /// have `stdin` or `tty` and be running: frames as [`crate::attach`] describes them.
    pub async fn attach(
        &self,
        group_id: &str,
        name: &str,
    ) -> Result<tokio::net::UnixStream, RuntimeError> {
        let dir = self.layout.container_dir(&Layout::runc_id(group_id, name));
        let sock = dir.join("attach.sock");
        // The monitor binds the socket just after `runc run` returns; a pass can see the
        // container running a moment before. So a socket not there yet (or not yet listening)
        // is tried again for a little while, unless the container has ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match tokio::net::UnixStream::connect(&sock).await {
                Ok(s) => return Ok(s),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) && std::time::Instant::now() < deadline
                        && !dir.join("exit.json").exists() =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(source) => {
                    return Err(RuntimeError::Io {
                        context: format!(
                            "attaching to container {name} (it must run, with stdin or tty set)"
                        ),
                        source,
                    });
                }
            }
        }
    }
}

impl ExecProcess {
    /// Sets the terminal's size (the command gets SIGWINCH); nothing without a terminal.
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        match &self.resize {
            Some(fd) => pty::resize(fd, rows, cols),
            None => Ok(()),
        }
    }

    /// Whether the command has started (runc wrote its pid file). Until then, anything on
    /// the streams may be runc's own words about why it could not start the command.
    pub fn started(&self) -> bool {
        self.pid_file.exists()
    }

    /// Waits for the command; how it ended.
    pub async fn wait(&mut self) -> ExecExit {
        let code = self
            .child
            .wait()
            .await
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(-1);
        let exit = if code == RUNC_FAILED && !self.started() {
            let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
            let (code, error) = not_started(&runc_error(&log));
            ExecExit {
                code,
                error: Some(error),
            }
        } else {
            ExecExit { code, error: None }
        };
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = std::fs::remove_file(crate::runc::internal_pid_file(&self.pid_file));
        let _ = std::fs::remove_file(&self.log_file);
        exit
    }

    /// Kills what was started — the command in the container (runc's pid file names it) and
    /// runc — and waits for runc.
    pub async fn kill(mut self) {
        let inner = crate::runc::internal_pid_file(&self.pid_file);
        if let Some((runsc, id)) = &self.gvisor {
            // The command lives in the sandbox: only runsc can reach it.
            if let Some(pid) = std::fs::read_to_string(&inner)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                let _ = runsc.kill_process(id, pid, "KILL").await;
            }
        } else if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let _ = std::fs::remove_file(&self.pid_file);
        let _ = std::fs::remove_file(&inner);
        let _ = std::fs::remove_file(&self.log_file);
    }
}

/// runc's exit code when it fails (`fatalWithCode(…, 255)` for exec).
const RUNC_FAILED: i32 = 255;

/// The last error runc logged (its log is JSON lines with `level` and `msg`), or a note
/// that it said nothing.
fn runc_error(log: &str) -> String {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
        .unwrap_or_else(|| "runc exec failed and logged no reason".to_string())
}

/// A command runc could not start: the shell's exit code (127 not found, 126 cannot be
/// run) and one sentence, from runc's error (for example `exec failed: unable to start
/// container process: exec: "x": executable file not found in $PATH`).
fn not_started(runc: &str) -> (i32, String) {
    // runc (Go's os/exec) quotes the command: `exec: "NAME": REASON`.
    let parsed = runc.rsplit_once("exec: \"").and_then(|(_, rest)| {
        let (name, reason) = rest.split_once("\": ")?;
        Some((name, reason))
    });
    let Some((name, reason)) = parsed else {
        let words = runc
            .trim_start_matches("exec failed: ")
            .trim_start_matches("unable to start container process: ");
        return (126, format!("cannot run the command: {words}"));
    };
    if reason.contains("executable file not found") {
        (127, format!("executable file not found in $PATH: {name}"))
    } else if reason.ends_with("no such file or directory") {
        (127, format!("no such file or directory: {name}"))
    } else if reason.ends_with("permission denied") {
        (126, format!("permission denied: {name} is not executable"))
    } else if reason.ends_with("is a directory") {
        (126, format!("is a directory: {name}"))
    } else {
        (126, format!("cannot run {name}: {reason}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_that_never_ran_get_the_shells_codes() {
        let cases = [
            (
                r#"exec failed: unable to start container process: exec: "nosuchcmd": executable file not found in $PATH"#,
                127,
                "executable file not found in $PATH: nosuchcmd",
            ),
            (
                r#"exec failed: unable to start container process: exec: "/nope": stat /nope: no such file or directory"#,
                127,
                "no such file or directory: /nope",
            ),
            (
                r#"exec failed: unable to start container process: exec: "/etc/passwd": permission denied"#,
                126,
                "permission denied: /etc/passwd is not executable",
            ),
            (
                r#"exec failed: unable to start container process: exec: "/etc": is a directory"#,
                126,
                "is a directory: /etc",
            ),
            (
                "exec failed: cannot exec in a stopped container",
                126,
                "cannot run the command: cannot exec in a stopped container",
            ),
        ];
        for (runc, code, said) in cases {
            assert_eq!(not_started(runc), (code, said.to_string()), "{runc}");
        }
    }

    #[test]
    fn the_last_error_of_runcs_log_is_the_reason() {
        let log = concat!(
            r#"{"level":"warning","msg":"something else","time":"t"}"#,
            "\n",
            r#"{"level":"error","msg":"exec failed: x","time":"t"}"#,
            "\n",
            "not json\n"
        );
        assert_eq!(runc_error(log), "exec failed: x");
        assert_eq!(runc_error(""), "runc exec failed and logged no reason");
    }
}
