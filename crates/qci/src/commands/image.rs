//! `qci image pull|ls|rm`.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use qci_client::Client;
use qci_spec::{PullRequest, RegistryCredential, image_registry};

use super::{age, print_as, table};
use crate::cli::{ImageCommand, ImagePullArgs};

pub async fn run(client: &Client, c: ImageCommand) -> anyhow::Result<ExitCode> {
    match c {
        ImageCommand::Pull(a) => pull(client, a).await,
        ImageCommand::Ls(o) => {
            let images = client.list_images().await?;
            if let Some(o) = o.output {
                print_as(&images, o)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["REFERENCE", "DIGEST", "SIZE", "LAYERS", "LAST USED"]
                    .map(String::from)
                    .to_vec(),
            ];
            for i in images {
                rows.push(vec![
                    i.reference,
                    i.digest.chars().take(19).collect(),
                    human(i.size),
                    i.layers.to_string(),
                    i.last_used
                        .map(|t| format!("{} ago", age(t)))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            print!("{}", table(&rows));
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Prune => {
            let r = client.prune_images().await?;
            let n = |k: &str| r[k].as_u64().unwrap_or(0);
            println!(
                "removed {} images, {} blobs, {} layers; freed {}; the store now takes {}",
                r["removed_images"].as_array().map(Vec::len).unwrap_or(0),
                n("removed_blobs"),
                n("removed_layers"),
                human(n("freed_bytes")),
                human(n("total_bytes"))
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Rm { image } => {
            client.remove_image(&image).await?;
            println!("{image} removed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn pull(client: &Client, a: ImagePullArgs) -> anyhow::Result<ExitCode> {
    let mut registry_credentials = Vec::new();
    if let Some(username) = a.username {
        registry_credentials.push(RegistryCredential {
            server: image_registry(&a.image),
            username,
            password: read_password()?,
        });
    }
    let req = PullRequest {
        image: a.image.clone(),
        registry_credentials,
    };
    let tty = std::io::stderr().is_terminal();
    let bars = MultiProgress::new();
    let mut by_digest: HashMap<String, ProgressBar> = HashMap::new();
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let info = client
        .pull_image(&req, |digest, done, total| {
            if !tty {
                return;
            }
            let bar = by_digest.entry(digest.to_string()).or_insert_with(|| {
                let b = bars.add(ProgressBar::new(total));
                b.set_style(style.clone());
                b.set_prefix(
                    digest
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect::<String>(),
                );
                b
            });
            bar.set_position(done);
            if done >= total {
                bar.finish();
            }
        })
        .await?;
    println!("{} {} ({})", info.reference, info.digest, human(info.size));
    Ok(ExitCode::SUCCESS)
}

/// A password from standard input, without its line end.
pub(super) fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    Ok(password.trim_end_matches(['\n', '\r']).to_string())
}

pub(super) fn human(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}
