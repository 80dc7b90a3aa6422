//! `qci image pull|ls|rm|prune|load|save|tag`.

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
            if let Some(o) = o.output
                && print_as(&images, o)?
            {
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
        ImageCommand::Load { input, tag } => {
            let body = match &input {
                Some(p) if p.as_os_str() != "-" => {
                    let f = tokio::fs::File::open(p)
                        .await
                        .with_context(|| format!("opening {}", p.display()))?;
                    reqwest::Body::wrap_stream(chunks(f))
                }
                _ => {
                    if std::io::stdin().is_terminal() {
                        anyhow::bail!(
                            "give the archive with -i FILE, or on standard input (qci image load < FILE)"
                        );
                    }
                    reqwest::Body::wrap_stream(chunks(tokio::io::stdin()))
                }
            };
            for i in client.load_image(body, tag.as_deref()).await? {
                println!("Loaded image: {} ({})", i.reference, i.digest);
            }
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Save { image, output } => {
            use futures_util::StreamExt;
            use tokio::io::AsyncWriteExt;
            let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match &output {
                Some(p) if p.as_os_str() != "-" => Box::new(
                    tokio::fs::File::create(p)
                        .await
                        .with_context(|| format!("creating {}", p.display()))?,
                ),
                _ => {
                    if std::io::stdout().is_terminal() {
                        anyhow::bail!(
                            "an archive is not for a terminal: give -o FILE, or redirect standard output"
                        );
                    }
                    Box::new(tokio::io::stdout())
                }
            };
            let mut body = client.save_image(&image).await?.bytes_stream();
            while let Some(chunk) = body.next().await {
                out.write_all(&chunk.context("reading the archive")?)
                    .await?;
            }
            out.flush().await?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Tag { source, target } => {
            let i = client.tag_image(&source, &target).await?;
            println!("{} tagged as {}", source, i.reference);
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

/// A reader as a stream of chunks (what an upload's body takes), 256 KiB at a time.
fn chunks(
    r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    futures_util::stream::unfold(r, |mut r| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 << 10];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    })
}
