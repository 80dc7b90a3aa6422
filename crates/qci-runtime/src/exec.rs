//! Commands run in a running container (`runc exec`): for the API's exec sessions and
//! terminals, and for exec probes. The command line is runc's, so it is built here (with
//! [`Runc::exec_command`]); callers get typed streams and a handle that can resize the
//! terminal, wait, and kill what was started.
//!
//! runc names the command's host pid in a pid file; the command itself lives in the container
//! and runc is only its parent, so ending a session kills both (`kill`).

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

/// A command started in a container.
pub struct ExecProcess {
    child: Child,
    pid_file: PathBuf,
    /// The terminal's master, for resizing (None without a terminal).
    resize: Option<OwnedFd>,
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
        let io_err = |context: &str| {
            let context = context.to_string();
            move |source| RuntimeError::Io { context, source }
        };
        let mut cmd = tokio::process::Command::from(self.runc.exec_command(
            &id,
            argv,
            &pid_file,
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
                    resize: None,
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
                    resize: Some(resize),
                    io: Some(ExecIo::Tty {
                        reader: tokio::fs::File::from_std(file),
                        writer: tokio::fs::File::from_std(writer),
                    }),
                })
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

    /// Waits for the command; its exit code (-1 when it has none, killed by a signal).
    pub async fn wait(&mut self) -> i32 {
        let code = self
            .child
            .wait()
            .await
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(-1);
        let _ = std::fs::remove_file(&self.pid_file);
        code
    }

    /// Kills what was started — the command in the container (runc's pid file names it) and
    /// runc — and waits for runc.
    pub async fn kill(mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
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
    }
}
