//! The client commands, one file per verb (or per family of read-only verbs).

mod cache;
mod create;
mod delete;
mod disk;
mod exec;
mod identity;
mod image;
mod logs;
mod network;
mod node;
mod run;
mod show;
mod tenant;

use std::process::ExitCode;

use anyhow::Context as _;
use qci_client::Client;

use crate::cli::{Cli, Command, Output};

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Login(a) => return identity::login(&cli, a).await,
        Command::Context(_) => {
            let Command::Context(c) = cli.command else {
                unreachable!()
            };
            return identity::context(c);
        }
        Command::System(_) => {
            let Command::System(crate::cli::SystemCommand::Reset(a)) = cli.command else {
                unreachable!()
            };
            return crate::serve::reset(a).await;
        }
        // Both describe the command line itself: no server, no key.
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: clap_complete panics on a write error, and a reader that
            // has seen enough (`| head`) closes the pipe.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "qci", &mut script);
            return match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("writing the completion script"))
                }
                _ => Ok(ExitCode::SUCCESS),
            };
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), dir)
                .with_context(|| format!("writing the manual pages into {}", dir.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let client = match &cli.command {
        Command::Serve(_) => Client::new(""),
        _ => identity::client(&cli)?,
    };
    let tenant = cli.tenant.clone();
    match cli.command {
        Command::Serve(a) => crate::serve::serve(*a).await.map(|_| ExitCode::SUCCESS),
        Command::Login(_)
        | Command::Context(_)
        | Command::Completion { .. }
        | Command::System(_)
        | Command::Man { .. } => unreachable!("handled above"),
        Command::Whoami => identity::whoami(&client).await,
        Command::Tenant(c) => tenant::run(&client, c).await,
        Command::Key(c) => tenant::key(&client, tenant.as_deref(), c).await,
        // Without --tenant, the whole trail.
        Command::Audit(a) => {
            let client = client.across_tenants(tenant.is_none());
            tenant::audit(&client, a).await
        }
        Command::Create(a) => create::create(&client, a).await,
        Command::Ls(a) => show::ls(&client, a).await,
        Command::Get(a) => show::get(&client, &a.group, a.output).await,
        Command::Events(a) => show::events(&client, a).await,
        Command::Logs(a) => logs::logs(&client, a).await,
        Command::Delete(a) => delete::delete(&client, a).await,
        Command::Exec(a) => exec::exec(&client, a).await,
        Command::Attach { group, container } => exec::attach(&client, &group, container).await,
        Command::Run(a) => run::run(&client, *a).await,
        Command::Update(a) => create::update(&client, a).await,
        Command::Restart(a) => {
            let g = client.restart_group(&a.group).await?;
            println!("{} restarting", g.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => show::version(&client).await,
        Command::Usage(a) => show::usage(&client, a).await,
        Command::Top { group } => show::top(&client, group).await,
        Command::Image(c) => image::run(&client, c).await,
        Command::ImageCache(c) => cache::run(&client, c).await,
        Command::Disk(c) => disk::run(&client, c).await,
        Command::Node(c) => node::run(&client, c).await,
        Command::Vpc(c) => network::vpc(&client, c).await,
        Command::Eip(c) => network::eip(&client, c).await,
        Command::Firewall(c) => network::firewall(&client, c).await,
    }
}

/// Prints a serialisable value as JSON or YAML.
/// Prints `value` (an object or a list) as `output` asks; false for `wide`, which is the
/// caller's table.
fn print_as<T: serde::Serialize>(value: &T, output: Output) -> anyhow::Result<bool> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Output::Name => {
            let v = serde_json::to_value(value)?;
            let items = match &v {
                serde_json::Value::Array(a) => a.iter().collect(),
                one => vec![one],
            };
            for i in items {
                println!("{}", name_of(i));
            }
        }
        Output::Wide => return Ok(false),
        Output::K8s => anyhow::bail!("-o k8s writes one group: qci get GROUP -o k8s"),
    }
    Ok(true)
}

/// What names an object of the API: its name, else its reference (images), address (EIPs)
/// or id.
fn name_of(v: &serde_json::Value) -> String {
    ["name", "reference", "address", "id"]
        .iter()
        .find_map(|k| v.get(k).and_then(|x| x.as_str()))
        .or_else(|| {
            v.get("spec")
                .and_then(|s| s.get("name"))
                .and_then(|x| x.as_str())
        })
        .unwrap_or("-")
        .to_string()
}

/// "3s", "5m", "2h", "4d": how long ago.
fn age(t: chrono::DateTime<chrono::Utc>) -> String {
    let s = (chrono::Utc::now() - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i + 1 == r.len() {
                    s.clone()
                } else {
                    format!("{s:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
