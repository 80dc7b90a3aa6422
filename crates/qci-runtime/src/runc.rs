//! The runc command line, and nothing else builds it. gVisor's `runsc` takes the same command
//! line (with its own global flags), so [`Runc::gvisor`] is the same type aimed at it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("runc {args}: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("cannot run {path}: {source}; install it with `apt-get install {package}`")]
    Spawn {
        path: String,
        package: &'static str,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuncStatus {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuncState {
    pub status: RuncStatus,
    pub pid: i32,
}

/// Where runsc writes the sandbox's pid of a command it runs with `pid_file`.
pub fn internal_pid_file(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("inner")
}

/// runc (or runsc) bound to one state root.
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
    /// Global flags beyond `--root`, before the subcommand.
    pub global: Vec<String>,
    /// This is gVisor's runsc: its state is files named after each container's sandbox, not
    /// a directory per container.
    pub gvisor: bool,
}

impl Runc {
    pub fn new(root: &Path) -> Runc {
        let binary = std::env::var_os("QCI_RUNC")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("runc"));
        Runc {
            binary,
            root: root.to_path_buf(),
            global: Vec::new(),
            gvisor: false,
        }
    }

    /// gVisor's runsc (`QCI_RUNSC`, else `runsc` on PATH). Its sandboxes live in a group's own
    /// network namespace and use it directly (`--network=host`): this runsc's own network
    /// stack refuses to start on current kernels (see ARCHITECTURE.md, Runtimes).
    pub fn gvisor(root: &Path) -> Runc {
        let binary = std::env::var_os("QCI_RUNSC")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("runsc"));
        Runc {
            binary,
            root: root.to_path_buf(),
            global: vec!["--network=host".to_string()],
            gvisor: true,
        }
    }

    /// The Debian package that has this binary.
    pub fn package(&self) -> &'static str {
        if self.gvisor { "runsc" } else { "runc" }
    }

    /// `runc --version`'s output, or why it did not run.
    pub fn version(&self) -> Result<String, String> {
        match std::process::Command::new(&self.binary)
            .arg("--version")
            .output()
        {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
            Ok(o) => Err(format!(
                "{} --version failed: {}",
                self.binary.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("{}: {e}", self.binary.display())),
        }
    }

    /// A runc command with the global flags set; arguments follow.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .args(&self.global)
            .args(args);
        c
    }

    /// `runc run --detach` for the monitor: stdio is the container's, errors go to `log`. One
    /// invocation rather than `create` then `start`: every runc invocation reads the mount
    /// table, whose cost grows with every container on the machine.
    pub fn run_detached_command(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
        console_socket: Option<&Path>,
    ) -> std::process::Command {
        let mut c = std::process::Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .args(&self.global)
            .arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json");
        c.arg("run").arg("--detach");
        // A container with a terminal: runc sends the terminal's master over this socket.
        if let Some(sock) = console_socket {
            c.arg("--console-socket").arg(sock);
        }
        c.arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id);
        c
    }

    /// `runc exec` of `argv` in container `id`, naming the command's pid in `pid_file` and
    /// writing runc's own errors, as JSON lines, to `log` (they also reach the command's
    /// stderr); with `tty`, runc gives it a terminal of its own and copies to and from the
    /// caller's stdio (which must then be a terminal).
    pub fn exec_command(
        &self,
        id: &str,
        argv: &[String],
        pid_file: &Path,
        log: &Path,
        tty: bool,
    ) -> std::process::Command {
        let mut c = std::process::Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .args(&self.global)
            .arg("--log")
            .arg(log)
            .args(["--log-format", "json", "exec"]);
        if tty && self.gvisor {
            // This runsc has no `-t`: a command gets a terminal when runsc's own stdio is one
            // and a console socket is named. That is what `runsc exec --detach
            // --console-socket` does itself — it makes a pty, sends the master over the socket
            // and runs this same command (without --detach) on the slave, which then never
            // opens the socket; qci holds the pty (see exec.rs) and so also the command's exit
            // status, which a detached exec would lose. Checked by hand (ARCHITECTURE.md).
            c.arg("--console-socket")
                .arg(pid_file.with_extension("console"));
        } else if tty {
            c.arg("-t");
        }
        c.arg("--pid-file").arg(pid_file);
        // runsc's pid file names its own client process; the command's pid in the sandbox
        // goes here, for [`Runc::kill_process`].
        if self.gvisor {
            c.arg("--internal-pid-file")
                .arg(internal_pid_file(pid_file));
        }
        c.arg(id).args(argv);
        c
    }

    /// Sends `signal` to one process (`pid`, as runsc numbers it in the sandbox) of
    /// container `id` (runsc only: runc's processes are signalled directly).
    pub async fn kill_process(&self, id: &str, pid: u32, signal: &str) -> Result<(), RuncError> {
        self.run_ok(&["kill", "--pid", &pid.to_string(), id, signal])
            .await
            .map(|_| ())
    }

    async fn run(&self, args: &[&str]) -> Result<std::process::Output, RuncError> {
        let mut cmd = tokio::process::Command::from(self.command(args));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.output().await.map_err(|source| RuncError::Spawn {
            path: self.binary.display().to_string(),
            package: self.package(),
            source,
        })
    }

    async fn run_ok(&self, args: &[&str]) -> Result<std::process::Output, RuncError> {
        let out = self.run(args).await?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(RuncError::Failed {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// The container's state, or None if runc does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<RuncState>, RuncError> {
        let out = self.run(&["state", id]).await?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("does not exist") || err.contains("not exist") {
                return Ok(None);
            }
            return Err(RuncError::Failed {
                args: format!("state {id}"),
                stderr: err.trim().to_string(),
            });
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| RuncError::Failed {
                args: format!("state {id}"),
                stderr: format!("unreadable state: {e}"),
            })
    }

    /// Sends a signal to the container's processes. A stopped or missing container is not an error.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuncError> {
        match self.run_ok(&["kill", "--all", id, signal]).await {
            Ok(_) => Ok(()),
            Err(RuncError::Failed { stderr, .. })
                if stderr.contains("not running")
                    || stderr.contains("does not exist")
                    || stderr.contains("process already finished")
                    // (A gVisor sandbox that is gone: nothing in it to signal.)
                    || (self.gvisor && stderr.contains("connecting to control server")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the container (killing it if needed). A missing container is not an error.
    pub async fn delete(&self, id: &str) -> Result<(), RuncError> {
        // runc knows a container only by its state directory under the root: without one
        // there is nothing to delete, and no runc to start (a few ms of every first start).
        // (runsc keeps files named after the sandbox instead: it is asked.)
        if !self.gvisor && !self.root.join(id).exists() {
            return Ok(());
        }
        match self.run_ok(&["delete", "--force", id]).await {
            Ok(_) => Ok(()),
            Err(RuncError::Failed { stderr, .. }) if stderr.contains("does not exist") => Ok(()),
            // A container of a gVisor sandbox that is gone (killed whole, say by the OOM
            // killer): nothing of it runs; its state goes with the sandbox's removal.
            Err(RuncError::Failed { stderr, .. })
                if self.gvisor && stderr.contains("connecting to control server") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Ids of every container under this root.
    pub async fn list(&self) -> Result<Vec<String>, RuncError> {
        let out = self.run_ok(&["list", "-q"]).await?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .collect())
    }
}
