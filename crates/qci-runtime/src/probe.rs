//! Running health probes against a container: a command inside it (`runc exec`), or a TCP
//! connection or HTTP GET to a port on the group's loopback, made from inside its network
//! namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use crate::runtime::Runtime;

/// A probe's verdict, with what it saw when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    Failure(String),
}

impl Runtime {
    /// Runs `argv` in the container (`runc exec`); exit status 0 within `timeout` is success.
    /// A command still running at the timeout is killed, in the container too.
    pub async fn probe_exec(
        &self,
        group_id: &str,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> ProbeOutcome {
        use tokio::io::AsyncReadExt;
        let mut p = match self.exec(group_id, name, argv, None) {
            Ok(p) => p,
            Err(e) => return ProbeOutcome::Failure(format!("cannot run runc exec: {e}")),
        };
        let Some(crate::ExecIo::Pipes {
            stdin,
            mut stdout,
            mut stderr,
        }) = p.io.take()
        else {
            return ProbeOutcome::Failure("runc exec gave no pipes".into());
        };
        drop(stdin);
        let run = async {
            // Both streams are read to their end (a full pipe would stall the command); what
            // they said is kept for the failure's message.
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let _ = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            out.extend_from_slice(&err);
            let exit = p.wait().await;
            if let Some(e) = exit.error {
                // runc's words about it are not the command's output.
                out = e.into_bytes();
            }
            (exit.code, out)
        };
        let res = tokio::time::timeout(timeout, run).await;
        match res {
            Err(_) => {
                p.kill().await;
                ProbeOutcome::Failure(format!(
                    "command timed out after {}s",
                    timeout.as_secs_f64()
                ))
            }
            Ok((0, _)) => ProbeOutcome::Success,
            Ok((code, said)) => {
                let said = String::from_utf8_lossy(&said);
                let said: String = said.trim().chars().take(300).collect();
                ProbeOutcome::Failure(format!("command exited with {code}: {said}"))
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
