//! `qci disk create|ls|get|resize|rm`.

use std::process::ExitCode;

use qci_client::Client;
use qci_spec::{Disk, DiskSpec, Quantity};

use super::{age, print_as, table};
use crate::cli::DiskCommand;

pub async fn run(client: &Client, c: DiskCommand) -> anyhow::Result<ExitCode> {
    match c {
        DiskCommand::Create {
            name,
            size,
            disk_type,
        } => {
            let d = client
                .create_disk(&DiskSpec {
                    name,
                    size: Quantity(size),
                    disk_type,
                })
                .await?;
            println!("{}", d.id);
        }
        DiskCommand::Ls(o) => {
            let disks = client.list_disks().await?;
            if let Some(o) = o.output
                && print_as(&disks, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["ID", "NAME", "SIZE", "TYPE", "STATUS", "GROUP", "AGE"]
                    .map(String::from)
                    .to_vec(),
            ];
            for d in disks {
                rows.push(vec![
                    d.id.clone(),
                    d.name.clone(),
                    super::image::human(d.size),
                    d.disk_type.clone(),
                    d.phase.to_string(),
                    d.group_name.clone().unwrap_or_else(|| "-".into()),
                    age(d.created_at),
                ]);
            }
            print!("{}", table(&rows));
        }
        DiskCommand::Get(a) => {
            let d = client.get_disk(&a.group).await?;
            match a.output {
                Some(o) if print_as(&d, o)? => {}
                _ => print!("{}", summary(&d)),
            }
        }
        DiskCommand::Resize { disk, size } => {
            let d = client.resize_disk(&disk, &size).await?;
            println!("{} is now {}", d.id, super::image::human(d.size));
            if let Some(m) = &d.message {
                eprintln!("note: {m}");
            }
        }
        DiskCommand::Rm { disk } => {
            let d = client.delete_disk(&disk).await?;
            println!("{} deleted", d.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(d: &Disk) -> String {
    let mut s = format!(
        "Name:      {}\nID:        {}\nSize:      {} ({} bytes)\nType:      {}\nStatus:    {}\n",
        d.name,
        d.id,
        super::image::human(d.size),
        d.size,
        d.disk_type,
        d.phase
    );
    if let (Some(id), Some(name)) = (&d.group_id, &d.group_name) {
        s.push_str(&format!("Group:     {name} ({id})\n"));
    }
    if let Some(m) = &d.message {
        s.push_str(&format!("Message:   {m}\n"));
    }
    s.push_str(&format!(
        "Created:   {} ({} ago)\n",
        d.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        age(d.created_at)
    ));
    s
}
