//! `qci vpc|eip|firewall ...`.

use std::process::ExitCode;

use anyhow::anyhow;
use qci_client::Client;
use qci_spec::{EipSpec, FirewallRule, FirewallSpec, VpcSpec};

use super::{age, print_as, table};
use crate::cli::{EipCommand, FirewallCommand, VpcCommand};

pub async fn vpc(client: &Client, c: VpcCommand) -> anyhow::Result<ExitCode> {
    match c {
        VpcCommand::Create {
            name,
            cidr,
            firewall,
        } => {
            let v = client
                .create_vpc(&VpcSpec {
                    name,
                    cidr,
                    firewall,
                })
                .await?;
            println!("{}", v.id);
        }
        VpcCommand::Ls(o) => {
            let vpcs = client.list_vpcs().await?;
            if let Some(o) = o.output
                && print_as(&vpcs, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["ID", "NAME", "CIDR", "EIP", "FIREWALL", "GROUPS", "AGE"]
                    .map(String::from)
                    .to_vec(),
            ];
            for v in vpcs {
                rows.push(vec![
                    v.id.clone(),
                    v.name.clone(),
                    v.cidr.clone(),
                    v.eip.clone().unwrap_or_else(|| "-".into()),
                    v.firewall.clone().unwrap_or_else(|| "-".into()),
                    v.groups.to_string(),
                    age(v.created_at),
                ]);
            }
            print!("{}", table(&rows));
        }
        VpcCommand::Get(a) => {
            let v = client.get_vpc(&a.group).await?;
            if !print_as(&v, a.output.unwrap_or(crate::cli::Output::Yaml))? {
                print_as(&v, crate::cli::Output::Yaml)?;
            }
        }
        VpcCommand::Update { vpc, firewall, .. } => {
            let v = client.update_vpc(&vpc, firewall.as_deref()).await?;
            match &v.firewall {
                Some(f) => println!("{} is guarded by {f}", v.name),
                None => println!("{} has no firewall", v.name),
            }
        }
        VpcCommand::Rm { vpc } => {
            let v = client.delete_vpc(&vpc).await?;
            println!("{} deleted", v.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn eip(client: &Client, c: EipCommand) -> anyhow::Result<ExitCode> {
    match c {
        EipCommand::Create { name, address } => {
            let e = client.create_eip(&EipSpec { name, address }).await?;
            println!("{}", e.address);
        }
        EipCommand::Ls(o) => {
            let eips = client.list_eips().await?;
            if let Some(o) = o.output
                && print_as(&eips, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["ID", "NAME", "ADDRESS", "BOUND TO", "AGE"]
                    .map(String::from)
                    .to_vec(),
            ];
            for e in eips {
                rows.push(vec![
                    e.id.clone(),
                    e.name.clone(),
                    e.address.clone(),
                    e.bound_to
                        .as_ref()
                        .map(|b| format!("{} {}", b.kind, b.name))
                        .unwrap_or_else(|| "-".into()),
                    age(e.created_at),
                ]);
            }
            print!("{}", table(&rows));
        }
        EipCommand::Get(a) => {
            let e = client.get_eip(&a.group).await?;
            if !print_as(&e, a.output.unwrap_or(crate::cli::Output::Yaml))? {
                print_as(&e, crate::cli::Output::Yaml)?;
            }
        }
        EipCommand::Bind { eip, vpc } => {
            let e = client.bind_eip(&eip, &vpc).await?;
            println!("{} bound to VPC {vpc}", e.address);
        }
        EipCommand::Unbind { eip } => {
            let e = client.unbind_eip(&eip).await?;
            println!("{} unbound", e.address);
        }
        EipCommand::Rm { eip } => {
            let e = client.delete_eip(&eip).await?;
            println!("{} released", e.address);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_rules(rules: &[String]) -> anyhow::Result<Vec<FirewallRule>> {
    rules
        .iter()
        .map(|r| FirewallRule::parse(r).map_err(|e| anyhow!("--rule {e}")))
        .collect()
}

pub async fn firewall(client: &Client, c: FirewallCommand) -> anyhow::Result<ExitCode> {
    match c {
        FirewallCommand::Create { name, rules } => {
            let rules = parse_rules(&rules)?;
            let f = client
                .create_firewall(&FirewallSpec { name, rules })
                .await?;
            println!("{}", f.id);
        }
        FirewallCommand::Update { firewall, rules } => {
            let rules = parse_rules(&rules)?;
            let f = client.get_firewall(&firewall).await?;
            let f = client
                .update_firewall(
                    &f.id,
                    &FirewallSpec {
                        name: f.name.clone(),
                        rules,
                    },
                )
                .await?;
            println!("{} has {} rule(s)", f.name, f.rules.len());
        }
        FirewallCommand::Ls(o) => {
            let fws = client.list_firewalls().await?;
            if let Some(o) = o.output
                && print_as(&fws, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![["ID", "NAME", "RULES", "AGE"].map(String::from).to_vec()];
            for f in fws {
                rows.push(vec![
                    f.id.clone(),
                    f.name.clone(),
                    f.rules.len().to_string(),
                    age(f.created_at),
                ]);
            }
            print!("{}", table(&rows));
        }
        FirewallCommand::Get(a) => {
            let f = client.get_firewall(&a.group).await?;
            if !print_as(&f, a.output.unwrap_or(crate::cli::Output::Yaml))? {
                print_as(&f, crate::cli::Output::Yaml)?;
            }
        }
        FirewallCommand::Rm { firewall } => {
            let f = client.delete_firewall(&firewall).await?;
            println!("{} deleted", f.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
