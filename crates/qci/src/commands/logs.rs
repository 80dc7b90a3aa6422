//! `qci logs GROUP [-c CONTAINER] [--tail N] [-f]`.

use std::io::Write;
use std::process::ExitCode;

use futures_util::StreamExt;
use qci_client::{Client, LogOptions};

use crate::cli::LogsArgs;

pub async fn logs(client: &Client, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let opts = LogOptions {
        container: a.container,
        tail: a.tail,
        follow: a.follow,
        timestamps: a.timestamps,
        previous: a.previous,
        since: a.since,
        limit_bytes: a.limit_bytes,
        stream: None,
    };
    let resp = client.logs(&a.group, &opts).await?;
    let mut body = resp.bytes_stream();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
