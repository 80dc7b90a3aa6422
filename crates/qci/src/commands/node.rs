//! `qci node ls|get|cordon|uncordon`.

use std::process::ExitCode;

use qci_client::Client;
use qci_spec::Node;

use super::{age, print_as, table};
use crate::cli::NodeCommand;

pub async fn run(client: &Client, c: NodeCommand) -> anyhow::Result<ExitCode> {
    match c {
        NodeCommand::Ls(o) => {
            let nodes = client.list_nodes().await?;
            if let Some(o) = o.output
                && print_as(&nodes, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                [
                    "NAME",
                    "STATUS",
                    "ADDRESS",
                    "CPU",
                    "MEMORY",
                    "ALLOCATED CPU",
                    "ALLOCATED MEMORY",
                    "GROUPS",
                    "AGE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for n in nodes {
                rows.push(vec![
                    n.name.clone(),
                    status(&n),
                    n.address.clone(),
                    cores(n.capacity.cpu),
                    super::image::human(n.capacity.memory_bytes),
                    cores(n.allocated.cpu),
                    super::image::human(n.allocated.memory_bytes),
                    n.groups.to_string(),
                    age(n.joined_at),
                ]);
            }
            print!("{}", table(&rows));
        }
        NodeCommand::Get(a) => {
            let n = client.get_node(&a.group).await?;
            match a.output {
                Some(o) if print_as(&n, o)? => {}
                _ => print!("{}", summary(&n)),
            }
        }
        NodeCommand::Cordon { node } => {
            let n = client.cordon_node(&node, true).await?;
            println!("{} cordoned: it takes no new groups", n.name);
        }
        NodeCommand::Uncordon { node } => {
            let n = client.cordon_node(&node, false).await?;
            println!("{} uncordoned", n.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `Ready`, `NotReady`, with `,SchedulingDisabled` when cordoned (as kubectl says it).
fn status(n: &Node) -> String {
    let s = if n.ready { "Ready" } else { "NotReady" };
    if n.cordoned {
        format!("{s},SchedulingDisabled")
    } else {
        s.to_string()
    }
}

fn cores(c: f64) -> String {
    format!("{}", (c * 1000.0).round() / 1000.0)
}

fn summary(n: &Node) -> String {
    format!(
        "Name:      {}\nStatus:    {}\nAddress:   {}\nCapacity:  {} cores, {}\nAllocated: {} cores, {} ({} groups)\nVersion:   {}\nJoined:    {} ({} ago)\nUpdated:   {}\n",
        n.name,
        status(n),
        n.address,
        cores(n.capacity.cpu),
        super::image::human(n.capacity.memory_bytes),
        cores(n.allocated.cpu),
        super::image::human(n.allocated.memory_bytes),
        n.groups,
        n.version,
        n.joined_at.to_rfc3339(),
        age(n.joined_at),
        n.updated_at.to_rfc3339(),
    )
}
