//! `qci create -f FILE [--wait]`.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use qci_client::{Client, ClientError};
use qci_spec::{ContainerGroup, ContainerState, WaitFor, WaitOutcome};

use crate::cli::CreateArgs;

/// Reads a spec, refusing one larger than the server accepts before sending it (the server
/// would cut the upload off, which a client sees as a broken connection).
fn read_spec(file: &std::path::Path) -> anyhow::Result<String> {
    let limit = qci_api::MAX_SPEC_BYTES as u64;
    let mut bytes = Vec::new();
    let what = if file.as_os_str() == "-" {
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .context("reading the spec from standard input")?;
        "the spec on standard input".to_string()
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", file.display()))?;
        file.display().to_string()
    };
    if bytes.len() as u64 > limit {
        bail!(
            "{what} is larger than {} MiB, the most qci accepts for a group spec",
            limit >> 20
        );
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        anyhow::anyhow!("{what}: line {line} is not UTF-8 (a spec is UTF-8 text)")
    })
}

/// A Kubernetes manifest as a qci spec (JSON), its warnings printed and the disks its
/// claims ask for made; other text as it is.
async fn from_kube(
    client: &Client,
    text: String,
    lenient: bool,
    what: &std::path::Path,
) -> anyhow::Result<Result<String, ExitCode>> {
    if !qci_spec::is_kube(&text) {
        return Ok(Ok(text));
    }
    let c = match qci_spec::from_manifests(&text, lenient) {
        Ok(c) => c,
        Err(fields) => {
            eprintln!("error: {} is not a Pod qci can run:", what.display());
            for f in fields {
                eprintln!("  {f}");
            }
            return Ok(Err(ExitCode::FAILURE));
        }
    };
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    for (name, bytes) in &c.disks {
        match client.get_disk(name).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                let d = client
                    .create_disk(&qci_spec::DiskSpec {
                        name: name.clone(),
                        size: qci_spec::Quantity(bytes.to_string()),
                        disk_type: "standard".into(),
                    })
                    .await
                    .with_context(|| format!("making disk {name} for its PersistentVolumeClaim"))?;
                eprintln!(
                    "disk {name} made for its claim ({} bytes): {}",
                    d.size, d.id
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok(serde_json::to_string(&c.spec)?))
}

pub async fn update(client: &Client, a: crate::cli::UpdateArgs) -> anyhow::Result<ExitCode> {
    let text = match from_kube(client, read_spec(&a.file)?, a.lenient, &a.file).await? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let done = if a.dry_run {
        client.dry_run_update(&a.group, &text).await.map(|d| {
            print!("{}", dry_run_text(&d));
        })
    } else {
        client
            .update_group(&a.group, &text)
            .await
            .map(|g| println!("{} updating", g.id))
    };
    match done {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Api { fields, .. }) if !fields.is_empty() => {
            eprintln!(
                "error: {} cannot update group {}:",
                a.file.display(),
                a.group
            );
            for f in fields {
                eprintln!("  {f}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create(client: &Client, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let text = match from_kube(client, read_spec(&a.file)?, a.lenient, &a.file).await? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let made = if a.dry_run {
        client.dry_run_create(&text).await.map(|d| {
            print!("{}", dry_run_text(&d));
            None
        })
    } else {
        client.create_group(&text).await.map(Some)
    };
    let g = match made {
        Ok(Some(g)) => g,
        Ok(None) => return Ok(ExitCode::SUCCESS),
        Err(ClientError::Api {
            message, fields, ..
        }) if !fields.is_empty() => {
            eprintln!(
                "error: {} is not a valid container group spec:",
                a.file.display()
            );
            for f in fields {
                eprintln!("  {f}");
            }
            let _ = message;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    println!("{}", g.id);
    if !a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    wait_running(client, &g.id, Duration::from_secs(a.timeout)).await
}

/// What a dry run found, for people: the size and price, and for an update what happens to
/// each container.
fn dry_run_text(d: &qci_spec::DryRun) -> String {
    let r = &d.group.resources;
    let price = r
        .price_per_hour
        .map(|p| format!(", {p:.4} an hour"))
        .unwrap_or_default();
    let mut out = format!(
        "{} is valid: {} cores, {} MiB{price}\n",
        d.group.name,
        r.cpu,
        r.memory_bytes >> 20
    );
    if let Some(u) = &d.update {
        for (what, names) in [
            ("recreated", &u.recreated),
            ("added", &u.added),
            ("removed", &u.removed),
            ("kept running", &u.kept),
        ] {
            if !names.is_empty() {
                out.push_str(&format!("{what}: {}\n", names.join(", ")));
            }
        }
    }
    out.push_str("(dry run: nothing was changed)\n");
    out
}

/// Waits for Running or an end; a container that cannot get its image or cannot start is
/// reported at once rather than waited on. The server answers as soon as the group changes
/// (`wait_for`); each answer within a second prints progress.
async fn wait_running(client: &Client, id: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let g = client
            .wait_group(id, WaitFor::Running, left.min(Duration::from_secs(1)))
            .await?;
        let line = progress(&g);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        match g.wait_outcome(WaitFor::Running) {
            Some(WaitOutcome::Reached) => return Ok(ExitCode::SUCCESS),
            Some(WaitOutcome::Stuck(why)) if g.stuck().is_some() => bail!(
                "group {}: {why}\n(qci keeps retrying; `qci delete {}` gives up)",
                g.name,
                g.id
            ),
            Some(WaitOutcome::Stuck(why)) => bail!("group {} {why}", g.name),
            None => {}
        }
        if start.elapsed() >= timeout {
            bail!(
                "group {} is still {} after {}s",
                g.name,
                g.status.phase,
                timeout.as_secs()
            );
        }
    }
}

fn progress(g: &ContainerGroup) -> String {
    let parts: Vec<String> = g
        .status
        .init_containers
        .iter()
        .chain(&g.status.containers)
        .map(|c| match &c.reason {
            Some(r) if c.state != ContainerState::Running => {
                format!("{} {} ({r})", c.name, c.state)
            }
            _ => format!("{} {}", c.name, c.state),
        })
        .collect();
    if parts.is_empty() {
        return format!("{}: {}", g.name, g.status.phase);
    }
    format!("{}: {}  {}", g.name, g.status.phase, parts.join(", "))
}
