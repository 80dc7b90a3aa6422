//! `qci delete GROUP [--wait]`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use qci_client::Client;

use crate::cli::DeleteArgs;

pub async fn delete(client: &Client, a: DeleteArgs) -> anyhow::Result<ExitCode> {
    let g = client.delete_group(&a.group).await?;
    if !a.wait {
        println!("{} deleting", g.id);
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    loop {
        match client.get_group(&g.id).await {
            Err(e) if e.is_not_found() => break,
            Err(e) => return Err(e.into()),
            Ok(_) if start.elapsed() > Duration::from_secs(a.timeout) => {
                bail!("group {} is still being deleted after {}s", g.id, a.timeout)
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    println!("{} deleted", g.id);
    Ok(ExitCode::SUCCESS)
}
