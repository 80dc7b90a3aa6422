//! Who the CLI is: the server, key and CA it uses, from (in this order) flags, the
//! environment, the config file's context, and, for a server on this host, the admin key
//! `qci serve` keeps in its data dir. `qci login`, `qci context`, `qci whoami`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use qci_client::{Client, ClientOptions, DEFAULT_SERVER};
use serde::{Deserialize, Serialize};

use super::table;
use crate::cli::{Cli, ContextCommand, LoginArgs};

/// `$XDG_CONFIG_HOME/qci/config.yaml` (0600): named contexts and the current one.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<Ctx>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ctx {
    name: String,
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// The CA certificates (PEM) trusted for this server, kept inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_pem: Option<String>,
}

fn config_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?,
        )
        .join(".config"),
    };
    Ok(base.join("qci").join("config.yaml"))
}

fn load(path: &Path) -> anyhow::Result<Config> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str(&text)
            .with_context(|| format!("reading the qci config file {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the config readable by its owner only (it holds keys), replacing it in one rename.
fn save(path: &Path, cfg: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("no directory for {}", path.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    crate::private_file::write(path, serde_yaml::to_string(cfg)?.as_bytes())
}

/// Whether `server` is on this host: only then is the local admin key sent to it.
fn is_local(server: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(server) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The admin key `qci serve` keeps in its data dir (`QCI_DATA_DIR`, else /var/lib/qci), if
/// this user can read it.
fn local_admin_key() -> Option<String> {
    let dir = std::env::var_os("QCI_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/qci"));
    let key = std::fs::read_to_string(dir.join("admin.key")).ok()?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_string())
}

/// (server, key, the context's CA) by precedence: flag or environment, then the context, then
/// (for a server on this host only) the local admin key. A context's key and CA go to its own
/// server only, never to one named otherwise.
fn resolve(
    server: Option<&str>,
    token: Option<&str>,
    ctx: Option<&Ctx>,
    local_key: impl FnOnce() -> Option<String>,
) -> (String, Option<String>, Option<String>) {
    let server = server
        .map(str::to_string)
        .or_else(|| ctx.map(|c| c.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string())
        .trim_end_matches('/')
        .to_string();
    let ctx = ctx.filter(|c| c.server.trim_end_matches('/') == server);
    let token = token
        .map(str::to_string)
        .or_else(|| ctx.and_then(|c| c.token.clone()))
        .or_else(|| is_local(&server).then(local_key).flatten());
    (server, token, ctx.and_then(|c| c.ca_pem.clone()))
}

/// The client the command line asks for.
pub fn client(cli: &Cli) -> anyhow::Result<Client> {
    let cfg = load(&config_path()?)?;
    let ctx = match &cli.context {
        Some(name) => Some(
            cfg.contexts
                .iter()
                .find(|c| &c.name == name)
                .cloned()
                .ok_or_else(|| {
                    anyhow!("no context {name:?} in the config file (qci context ls)")
                })?,
        ),
        None => cfg
            .current_context
            .as_ref()
            .and_then(|n| cfg.contexts.iter().find(|c| &c.name == n).cloned()),
    };
    let (server, token, ctx_ca) = resolve(
        cli.server.as_deref(),
        cli.token.as_deref(),
        ctx.as_ref(),
        local_admin_key,
    );
    let ca_pem = match &cli.ca {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("reading --ca {}", f.display()))?),
        None => ctx_ca.map(String::into_bytes),
    };
    let opts = ClientOptions {
        token,
        ca_pem,
        tenant: cli.tenant.clone(),
        all_tenants: cli.all_tenants,
    };
    Ok(Client::with_options(&server, opts)?)
}

/// `qci login`: checks the key with the server, then saves it as a context and makes that
/// context the current one.
pub async fn login(cli: &Cli, _a: &LoginArgs) -> anyhow::Result<ExitCode> {
    let server = cli
        .server
        .clone()
        .ok_or_else(|| anyhow!("qci login needs --server URL (or QCI_SERVER)"))?;
    let server = server.trim_end_matches('/').to_string();
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .context("reading the key from standard input")?;
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("no key on standard input (e.g. `qci login --server URL --token-stdin < key.txt`)");
    }
    let ca_pem = match &cli.ca {
        Some(f) => Some(
            std::fs::read_to_string(f).with_context(|| format!("reading --ca {}", f.display()))?,
        ),
        None => None,
    };
    let client = Client::with_options(
        &server,
        ClientOptions {
            token: Some(token.clone()),
            ca_pem: ca_pem.clone().map(String::into_bytes),
            ..Default::default()
        },
    )?;
    let me = client.whoami().await?;
    let name = cli.context.clone().unwrap_or_else(|| {
        reqwest::Url::parse(&server)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_else(|| server.clone())
    });
    let path = config_path()?;
    let mut cfg = load(&path)?;
    cfg.contexts.retain(|c| c.name != name);
    cfg.contexts.push(Ctx {
        name: name.clone(),
        server: server.clone(),
        token: Some(token),
        ca_pem,
    });
    cfg.current_context = Some(name.clone());
    save(&path, &cfg)?;
    println!(
        "logged in to {server} as {} (tenant {}, role {}); context {name:?} is now current",
        me.key_id, me.tenant, me.role
    );
    Ok(ExitCode::SUCCESS)
}

pub fn context(c: ContextCommand) -> anyhow::Result<ExitCode> {
    let path = config_path()?;
    let mut cfg = load(&path)?;
    match c {
        ContextCommand::Ls => {
            let mut rows = vec![
                ["CURRENT", "NAME", "SERVER", "KEY"]
                    .map(String::from)
                    .to_vec(),
            ];
            for c in &cfg.contexts {
                let current = cfg.current_context.as_deref() == Some(c.name.as_str());
                rows.push(vec![
                    if current { "*".into() } else { String::new() },
                    c.name.clone(),
                    c.server.clone(),
                    c.token
                        .as_deref()
                        .and_then(|t| t.get(4..16))
                        .map(|id| format!("k-{id}"))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            print!("{}", table(&rows));
        }
        ContextCommand::Use { name } => {
            if !cfg.contexts.iter().any(|c| c.name == name) {
                bail!("no context {name:?} (qci context ls; qci login makes one)");
            }
            cfg.current_context = Some(name.clone());
            save(&path, &cfg)?;
            println!("context {name:?} is now current");
        }
        ContextCommand::Rm { name } => {
            let before = cfg.contexts.len();
            cfg.contexts.retain(|c| c.name != name);
            if cfg.contexts.len() == before {
                bail!("no context {name:?}");
            }
            if cfg.current_context.as_deref() == Some(name.as_str()) {
                cfg.current_context = None;
            }
            save(&path, &cfg)?;
            println!("context {name:?} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(client: &Client) -> anyhow::Result<ExitCode> {
    let me = client.whoami().await?;
    println!(
        "{} (tenant {}, role {}) at {}",
        me.key_id,
        me.tenant,
        me.role,
        client.base()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_server_and_key() {
        let ctx = Ctx {
            name: "prod".into(),
            server: "https://qci.example.com/".into(),
            token: Some("ctx-key".into()),
            ca_pem: Some("CA".into()),
        };
        let local = || Some("local-key".to_string());
        let remote = "https://qci.example.com";
        // (--server/QCI_SERVER, --token/QCI_TOKEN, context?) → (server, key, CA)
        type Want<'a> = (&'a str, Option<&'a str>, Option<&'a str>);
        let table: [(Option<&str>, Option<&str>, bool, Want); 7] = [
            (None, None, false, (DEFAULT_SERVER, Some("local-key"), None)),
            (
                None,
                Some("flag"),
                false,
                (DEFAULT_SERVER, Some("flag"), None),
            ),
            (None, None, true, (remote, Some("ctx-key"), Some("CA"))),
            (None, Some("flag"), true, (remote, Some("flag"), Some("CA"))),
            (
                Some("https://qci.example.com/"),
                None,
                true,
                (remote, Some("ctx-key"), Some("CA")),
            ),
            // Another server: the context's key stays home; the local key is for this host only.
            (
                Some("https://other.example"),
                None,
                true,
                ("https://other.example", None, None),
            ),
            (
                Some("http://localhost:7070"),
                None,
                true,
                ("http://localhost:7070", Some("local-key"), None),
            ),
        ];
        for (server, token, with_ctx, want) in table {
            let got = resolve(server, token, with_ctx.then_some(&ctx), local);
            let got = (got.0.as_str(), got.1.as_deref(), got.2.as_deref());
            assert_eq!(got, want, "{server:?} {token:?} {with_ctx}");
        }
    }

    #[test]
    fn the_local_key_goes_to_this_host_only() {
        for (server, local) in [
            ("http://127.0.0.1:7070", true),
            ("https://127.9.9.9", true),
            ("http://localhost:7070", true),
            ("http://[::1]:7070", true),
            ("http://10.0.0.1:7070", false),
            ("https://qci.example.com", false),
            ("http://localhost.evil.example", false),
            ("not a url", false),
        ] {
            assert_eq!(is_local(server), local, "{server}");
        }
    }
}
