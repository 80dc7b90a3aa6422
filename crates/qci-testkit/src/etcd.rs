//! A real etcd cluster for tests: Debian's `etcd-server`, three members (or any number) on
//! free loopback ports, data in a temp dir; every member killed and its data removed on drop.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    /// Each member's client URL (`http://127.0.0.1:PORT`).
    pub endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until each answers /health.
    pub fn start(n: usize) -> EtcdCluster {
        crate::require(&[("etcd", "etcd-server")]);
        let dir = tempfile::Builder::new()
            .prefix("qci-etcd-")
            .tempdir_in(crate::test_root())
            .expect("etcd dir");
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| (crate::free_port(), crate::free_port()))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let token = format!("qci-test-{}", dir.path().display());
        let mut members = Vec::new();
        let mut endpoints = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).expect("log");
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                // Quick elections: tests kill members.
                .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("starting etcd");
            members.push(Some(child));
            endpoints.push(url);
        }
        let c = EtcdCluster {
            members,
            endpoints,
            _dir: dir,
        };
        for (i, e) in c.endpoints.iter().enumerate() {
            let t = Instant::now();
            while !healthy(e) {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "etcd member m{i} at {e} is not healthy after 30 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        c
    }

    /// The client URLs, comma-separated (as `qci serve --etcd` takes them).
    pub fn urls(&self) -> String {
        self.endpoints.join(",")
    }

    /// SIGKILLs member `i` (the others keep a quorum when there are three).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// etcd's /health answers `"health":"true"` once the member is part of a cluster with a leader.
fn healthy(endpoint: &str) -> bool {
    let addr = endpoint.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
