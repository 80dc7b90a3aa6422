//! A real OCI registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1: plain HTTP,
//! or HTTPS with a certificate from a CA made here and htpasswd (bcrypt) basic auth.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::image::Target;

pub struct Registry {
    pub port: u16,
    /// The CA that signed the registry's certificate (HTTPS registries).
    pub ca_pem: Option<Vec<u8>>,
    /// Where that CA is, as a file (for `qci serve --registry-ca`).
    pub ca_file: Option<std::path::PathBuf>,
    pub login: Option<(String, String)>,
    child: Option<Child>,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Registry {
        Self::launch(None, None)
    }

    /// An HTTPS registry (certificate for 127.0.0.1 from a fresh CA) that wants `user`/`password`.
    pub fn start_secure(user: &str, password: &str) -> Registry {
        Self::launch(Some((user, password)), None)
    }

    /// A plain-HTTP registry that wants Bearer tokens from `token` (which takes `login`).
    pub fn start_token(token: &crate::TokenServer, login: (&str, &str)) -> Registry {
        let mut r = Self::launch(None, Some(token));
        r.login = Some((login.0.to_string(), login.1.to_string()));
        r
    }

    fn launch(secure: Option<(&str, &str)>, token: Option<&crate::TokenServer>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("qci-registry-")
            .tempdir_in(crate::test_root())
            .expect("temp dir");
        let port = crate::free_port();
        let d = dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            d.join("data").display()
        );
        let (mut ca_pem, mut ca_file, mut login) = (None, None, None);
        if let Some((user, password)) = secure {
            make_certs(d);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: qci-test\n    path: {}\n",
                d.join("reg.pem").display(),
                d.join("reg.key").display(),
                d.join("htpasswd").display()
            ));
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd is missing: install it with `apt-get install apache2-utils`");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(d.join("htpasswd"), out.stdout).expect("htpasswd file");
            ca_pem = Some(std::fs::read(d.join("ca.pem")).expect("ca.pem"));
            ca_file = Some(d.join("ca.pem"));
            login = Some((user.to_string(), password.to_string()));
        }
        if let Some(t) = token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm(),
                crate::token::SERVICE,
                crate::token::ISSUER,
                t.cert_file.display()
            ));
        }
        let cfg_path = d.join("config.yml");
        std::fs::write(&cfg_path, config).expect("writing registry config");
        let mut reg = Registry {
            port,
            ca_pem,
            ca_file,
            login,
            child: None,
            config: cfg_path,
            log: d.join("registry.log"),
            dir,
        };
        reg.spawn();
        reg
    }

    fn spawn(&mut self) {
        let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "docker-registry is missing: install it with `apt-get install docker-registry`",
            );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("registry log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "docker-registry did not listen on port {} within 15s: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How to push to it.
    pub fn target(&self) -> Target {
        Target {
            host: self.host(),
            ca_pem: self.ca_pem.clone(),
            login: self.login.clone(),
        }
    }

    /// Everything the registry logged, access log included.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many GET requests for `path` (e.g. `/v2/repo/blobs/sha256:...`) were answered 200.
    pub fn gets(&self, path: &str) -> usize {
        let needle = format!("\"GET {path} ");
        self.log()
            .lines()
            .filter(|l| l.contains(&needle) && l.contains("\" 200 "))
            .count()
    }

    /// Every request the registry logged in its access log.
    pub fn requests(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("\"GET ")
                    || l.contains("\"HEAD ")
                    || l.contains("\"POST ")
                    || l.contains("\"PUT ")
            })
            .count()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn resume(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A test CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost signed by it
/// (`reg.pem`, key `reg.key`), in `d`.
pub fn make_certs(d: &Path) {
    let ossl = |args: &[&str]| crate::openssl(d, args);
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=qci-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "reg.key",
        "-out",
        "reg.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    ossl(&[
        "x509",
        "-req",
        "-in",
        "reg.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "reg.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
