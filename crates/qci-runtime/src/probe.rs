//! Running health probes against a container: a command inside it (`runc exec`), or a TCP
//! connection or HTTP GET to a port on the group's loopback, made from inside its network
//! namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use crate::layout::Layout;
use crate::runtime::Runtime;

/// A probe's verdict, with what it saw when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    Failure(String),
}

impl Runtime {
    /// Runs `argv` in the container (`runc exec`); exit status 0 within `timeout` is success.
    pub async fn probe_exec(
        &self,
        group_id: &str,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> ProbeOutcome {
        let id = Layout::runc_id(group_id, name);
        let mut args: Vec<&str> = vec!["exec", &id];
        args.extend(argv.iter().map(String::as_str));
        let mut cmd = tokio::process::Command::from(self.runc.command(&args));
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        match tokio::time::timeout(timeout, cmd.output()).await {
            Err(_) => ProbeOutcome::Failure(format!(
                "command timed out after {}s",
                timeout.as_secs_f64()
            )),
            Ok(Err(e)) => ProbeOutcome::Failure(format!("cannot run runc exec: {e}")),
            Ok(Ok(out)) if out.status.success() => ProbeOutcome::Success,
            Ok(Ok(out)) => {
                let mut said = String::from_utf8_lossy(&out.stdout).to_string();
                said.push_str(&String::from_utf8_lossy(&out.stderr));
                let said: String = said.trim().chars().take(300).collect();
                ProbeOutcome::Failure(format!(
                    "command exited with {}: {said}",
                    out.status.code().unwrap_or(-1)
                ))
            }
        }
    }

    /// Connects to `port` on the group's loopback.
    pub async fn probe_tcp(&self, group_id: &str, port: u16, timeout: Duration) -> ProbeOutcome {
        self.in_group_netns(group_id, timeout, move |t| {
            TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), t)
                .map(|_| ())
                .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))
        })
        .await
    }

    /// GETs `path` from `port` on the group's loopback; a 2xx or 3xx status is success.
    pub async fn probe_http(
        &self,
        group_id: &str,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> ProbeOutcome {
        let path = path.to_string();
        self.in_group_netns(group_id, timeout, move |t| {
            let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), t)
                .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
            s.set_read_timeout(Some(t)).ok();
            s.set_write_timeout(Some(t)).ok();
            let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: qci-probe\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
            let mut head = [0u8; 64];
            let n = s.read(&mut head).map_err(|e| format!("reading the answer: {e}"))?;
            let line = String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or("").to_string();
            let code: u16 = line.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not an HTTP answer: {line:?}"))?;
            if (200..400).contains(&code) { Ok(()) } else { Err(format!("GET {path} answered {code}")) }
        })
        .await
    }

    /// Runs `f` on a fresh thread inside the group's network namespace (namespaces belong to
    /// threads; the thread ends with the probe, so no other work ever runs there).
    async fn in_group_netns<F>(&self, group_id: &str, timeout: Duration, f: F) -> ProbeOutcome
    where
        F: FnOnce(Duration) -> Result<(), String> + Send + 'static,
    {
        let netns = crate::sandbox::ns_path(&self.layout.sandbox_dir(group_id), "net");
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let res = std::fs::File::open(&netns)
                .map_err(|e| format!("opening the group's network namespace: {e}"))
                .and_then(|ns| {
                    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("entering the group's network namespace: {e}"))
                })
                .and_then(|_| f(timeout));
            let _ = tx.send(res);
        });
        match tokio::time::timeout(timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(Ok(()))) => ProbeOutcome::Success,
            Ok(Ok(Err(e))) => ProbeOutcome::Failure(e),
            _ => ProbeOutcome::Failure(format!("timed out after {}s", timeout.as_secs_f64())),
        }
    }
}
