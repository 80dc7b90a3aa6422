//! `qci exec GROUP [-c NAME] [-i] -- CMD ARG...`.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::bail;
use qci_client::Client;

use crate::cli::ExecArgs;

pub async fn exec(client: &Client, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let container = match a.container {
        Some(c) => c,
        None => {
            let g = client.get_group(&a.group).await?;
            match g.spec.containers.as_slice() {
                [only] => only.name.clone(),
                many => bail!(
                    "group {} has {} containers; name one with -c ({})",
                    g.name,
                    many.len(),
                    many.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let stdin = a.stdin.then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16384];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        rx
    });
    let code = client
        .exec(&a.group, &container, &a.command, stdin, |channel, data| {
            if channel == 2 {
                let _ = std::io::stderr().write_all(data);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(data);
                let _ = out.flush();
            }
        })
        .await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
