//! `qci serve` as a child process on a temp data dir and a free port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qci_client::Client;
use qci_runtime::Layout;

pub struct Server {
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub url: String,
    pub client: Client,
    pub layout: Layout,
    child: Option<Child>,
    log_path: PathBuf,
    flags: Vec<String>,
    /// The network namespace made for this server as "the host's network" (so its bridges,
    /// uplinks and NAT rules never touch the machine's own), removed with it.
    host_netns: Option<String>,
}

impl Server {
    /// Starts `qci serve` (the binary at `exe`) on a fresh data dir.
    pub async fn start(exe: &Path) -> Server {
        Self::start_with(exe, &[]).await
    }

    /// Starts `qci serve` with extra flags (e.g. `--registry-ca FILE`).
    pub async fn start_with(exe: &Path, flags: &[&str]) -> Server {
        crate::require(&[("runc", "runc"), ("ip", "iproute2"), ("nft", "nftables")]);
        qci_image::init_tls();
        let data_dir = tempfile::Builder::new()
            .prefix("qci-data-")
            .tempdir_in(crate::test_root())
            .expect("temp data dir")
            .keep();
        let port = crate::free_port();
        // With --tls-cert, the server is reached over https, trusting the `ca.pem` beside it
        // (as [`crate::make_certs`] leaves it).
        let tls_ca = flags
            .iter()
            .position(|f| *f == "--tls-cert")
            .and_then(|i| flags.get(i + 1))
            .map(|cert| Path::new(cert).with_file_name("ca.pem"));
        let scheme = if tls_ca.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let layout = Layout::new(&data_dir).expect("layout");
        let log_path = crate::test_root().join(format!(
            "{}.serve.log",
            data_dir.file_name().unwrap().to_string_lossy()
        ));
        let mut flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        // Tests check that a deleted group leaves nothing: the basic network goes at once
        // (benchmarks pass the production default).
        if !flags.iter().any(|f| f == "--basic-network-linger") {
            flags.extend(["--basic-network-linger".into(), "0".into()]);
        }
        let host_netns = if flags.iter().any(|f| f == "--network-host-ns") {
            None
        } else {
            let name = format!(
                "qcit-{}",
                data_dir
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .trim_start_matches("qci-data-")
            );
            crate::netns_add(&name);
            flags.push("--network-host-ns".into());
            flags.push(format!("/run/netns/{name}"));
            Some(name)
        };
        let mut s = Server {
            exe: exe.to_path_buf(),
            data_dir,
            port,
            client: match &tls_ca {
                Some(ca) => Client::with_options(
                    &url,
                    qci_client::ClientOptions {
                        ca_pem: Some(std::fs::read(ca).expect("the test CA")),
                        ..Default::default()
                    },
                )
                .expect("a TLS client"),
                None => Client::new(&url),
            },
            url,
            layout,
            child: None,
            log_path,
            flags,
            host_netns,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("serve log");
        let child = Command::new(&self.exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.flags)
            .env("RUST_LOG", "info,qci=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("starting qci serve");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            // `qci serve` writes its admin key before it listens.
            if let Some(key) = self.admin_key() {
                self.client = self.client.with_token(&key);
                if self.client.version().await.is_ok() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("qci serve exited with {status}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "qci serve did not answer within 20s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The local admin key `qci serve` keeps in its data dir.
    pub fn admin_key(&self) -> Option<String> {
        let k = std::fs::read_to_string(self.data_dir.join("admin.key")).ok()?;
        Some(k.trim().to_string()).filter(|k| !k.is_empty())
    }

    /// A new API key of `role` in `tenant` (made with the admin key); answers its secret.
    pub async fn key(&self, tenant: &str, role: qci_spec::Role) -> String {
        self.client
            .create_key(&qci_spec::KeySpec {
                tenant: tenant.into(),
                role,
                name: None,
                expires_in: None,
            })
            .await
            .expect("a new key")
            .secret
    }

    /// A client with another key (or none).
    pub fn client_with(&self, token: Option<&str>) -> Client {
        let mut opts = self.client.options().clone();
        opts.token = token.map(str::to_string);
        Client::with_options(&self.url, opts).expect("a client")
    }

    /// Polls the group until `done` holds (panics with the group and the server log after 60s).
    pub async fn wait_group<F: Fn(&qci_spec::ContainerGroup) -> bool>(
        &self,
        id: &str,
        what: &str,
        done: F,
    ) -> qci_spec::ContainerGroup {
        self.wait_group_as(&self.client, id, what, done).await
    }

    /// [`Server::wait_group`] with another client (another tenant's key).
    pub async fn wait_group_as<F: Fn(&qci_spec::ContainerGroup) -> bool>(
        &self,
        client: &Client,
        id: &str,
        what: &str,
        done: F,
    ) -> qci_spec::ContainerGroup {
        let start = Instant::now();
        loop {
            let g = client.get_group(id).await.expect("get group");
            if done(&g) {
                return g;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; group: {}\nserver log:\n{}",
                serde_json::to_string_pretty(&g).unwrap_or_default(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `qci serve` process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A container's whole log, as `qci logs -c` gives it.
    pub async fn logs(&self, id: &str, container: &str) -> String {
        let opts = qci_client::LogOptions {
            container: Some(container.into()),
            ..Default::default()
        };
        self.client
            .logs(id, &opts)
            .await
            .expect("logs")
            .text()
            .await
            .expect("log text")
    }

    /// Writes a spec file into the data dir and runs `qci create -f` on it (with `extra` flags).
    pub fn create(&self, name: &str, spec: &str, extra: &[&str]) -> (bool, String, String) {
        let path = self.data_dir.join(format!("{name}.spec"));
        std::fs::write(&path, spec).expect("writing spec");
        let mut args = vec!["create", "-f", path.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, as a service manager stops it; waits up to 30 s for it to exit and
    /// returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// This instance's parent cgroup directories that exist, in every hierarchy.
    pub fn cgroup_parents(&self) -> Vec<PathBuf> {
        cgroup_roots()
            .into_iter()
            .map(|r| r.join(&self.layout.cgroup_parent))
            .filter(|p| p.exists())
            .collect()
    }

    /// Starts `qci serve` again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// What `qci serve` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs the CLI against this server; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let key = self.admin_key().unwrap_or_default();
        self.cli_as(&key, args)
    }

    /// The `qci` CLI as a command, aimed at this server with its admin key.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("QCI_SERVER", &self.url)
            .env("QCI_TOKEN", self.admin_key().unwrap_or_default())
            // A config file of the machine's user must not change what the tests run.
            .env("XDG_CONFIG_HOME", self.data_dir.join("config"));
        c
    }

    /// Runs the CLI with `input` on its standard input; returns (success, stdout, stderr).
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the qci CLI");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing the CLI's input");
        let out = child.wait_with_output().expect("the qci CLI ends");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the CLI with `key`; returns (success, stdout, stderr).
    pub fn cli_as(&self, key: &str, args: &[&str]) -> (bool, String, String) {
        let out = self
            .command()
            .args(args)
            .env("QCI_TOKEN", key)
            .stdin(Stdio::null())
            .output()
            .expect("running the qci CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Ids runc knows under this instance's root.
    pub fn runc_ids(&self) -> Vec<String> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(&self.layout.runc_root)
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Containers and sandboxes runsc knows under this instance's root (gVisor groups).
    pub fn runsc_ids(&self) -> Vec<String> {
        if !self.layout.runsc_root.exists() {
            return Vec::new();
        }
        let out = Command::new(std::env::var_os("QCI_RUNSC").unwrap_or_else(|| "runsc".into()))
            .arg("--root")
            .arg(&self.layout.runsc_root)
            .args(["list", "-quiet"])
            .output()
            .expect("runsc list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// runsc's processes (sandboxes, gofers, clients) of this instance: pid and command line.
    pub fn runsc_processes(&self) -> Vec<(i32, String)> {
        let root = self.layout.runsc_root.to_string_lossy().to_string();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|p| {
                let pid = p.file_name().to_string_lossy().parse::<i32>().ok()?;
                let cmd = std::fs::read(p.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (cmd.contains("runsc") && cmd.contains(&root)).then_some((pid, cmd))
            })
            .collect()
    }

    /// Mount points at or below the data dir.
    pub fn mounts(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = self.data_dir.to_string_lossy().to_string();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&dir))
            .map(str::to_string)
            .collect()
    }

    /// Existing cgroup directories of a group, in every hierarchy.
    pub fn group_cgroups(&self, group_id: &str) -> Vec<PathBuf> {
        cgroup_roots()
            .into_iter()
            .map(|r| r.join(&self.layout.cgroup_parent).join(group_id))
            .filter(|p| p.exists())
            .collect()
    }

    /// What a host restart does to an instance (call after [`Server::kill9`]): every
    /// container and monitor is killed and every mount (root filesystems, namespaces) is gone.
    pub fn simulate_reboot(&mut self) {
        self.kill9();
        let data = self.data_dir.to_string_lossy().to_string();
        // Monitors first, so none records an exit: after a reboot nobody would have.
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.contains("monitor") && cmd.contains(&data) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        self.remove_containers_and_mounts();
        // runc's state lives on tmpfs on a real host; it is gone too.
        let _ = std::fs::remove_dir_all(&self.layout.runc_root);
    }

    /// Every runc container of the instance deleted, every mount under its data dir gone.
    fn remove_containers_and_mounts(&self) {
        // (gVisor sandboxes of a failed test: their processes go first, then runsc's state.)
        for (pid, _) in self.runsc_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for id in self.runc_ids() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.layout.runc_root)
                .args(["delete", "--force", &id])
                .output();
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    fn cleanup(&mut self) {
        self.kill9();
        self.remove_containers_and_mounts();
        for root in cgroup_roots() {
            remove_cgroup_tree(&root.join(&self.layout.cgroup_parent));
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(&self.log_path);
        if let Some(ns) = self.host_netns.take() {
            crate::netns_del(&ns);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Mount points of the cgroup hierarchies.
pub fn cgroup_roots() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fs = post.split(' ').next()?;
            let mp = pre.split(' ').nth(4)?;
            (fs == "cgroup" || fs == "cgroup2").then(|| PathBuf::from(mp))
        })
        .collect()
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
