//! `qci tenant`, `qci key`, `qci audit`: tenants and their quotas, API keys, the audit trail.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use qci_client::Client;
use qci_spec::{KeySpec, QuotaKey, QuotaSpec, Tenant, TenantSpec, TenantUpdate};

use super::{age, print_as, table};
use crate::cli::{AuditArgs, KeyCommand, TenantCommand};

fn quota_spec(base: QuotaSpec, pairs: &[String]) -> anyhow::Result<QuotaSpec> {
    let mut q = base;
    for p in pairs {
        q.apply_pairs(p).map_err(|e| anyhow!("--quota {e}"))?;
    }
    Ok(q)
}

/// `used/limit` (or `used` when unlimited).
fn use_of(t: &Tenant, key: QuotaKey) -> String {
    let used = key.show(t.used.get(key));
    match t.quota.limit(key) {
        Some(l) => format!("{used}/{}", key.show(l)),
        None => used,
    }
}

pub async fn run(client: &Client, c: TenantCommand) -> anyhow::Result<ExitCode> {
    match c {
        TenantCommand::Create { name, quota } => {
            let spec = TenantSpec {
                name,
                quota: quota_spec(QuotaSpec::default(), &quota)?,
            };
            let t = client.in_tenant(None).create_tenant(&spec).await?;
            println!("{}", t.name);
        }
        TenantCommand::Update { name, quota } => {
            let client = client.in_tenant(None);
            let current = client.get_tenant(&name).await?;
            let update = TenantUpdate {
                quota: quota_spec(QuotaSpec::from_quota(&current.quota), &quota)?,
            };
            let t = client.update_tenant(&name, &update).await?;
            print!("{}", summary(&t));
        }
        TenantCommand::Ls(o) => {
            let items = client.list_tenants().await?;
            if let Some(o) = o.output
                && print_as(&items, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                [
                    "NAME", "GROUPS", "CORES", "MEMORY", "DISK", "EIPS", "VPCS", "EXEC", "AGE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for t in &items {
                let mut row = vec![t.name.clone()];
                row.extend(QuotaKey::ALL.map(|k| use_of(t, k)));
                row.push(age(t.created_at));
                rows.push(row);
            }
            print!("{}", table(&rows));
        }
        TenantCommand::Get { name, output } => {
            let name = match name {
                Some(n) => n,
                None => client.whoami().await?.tenant,
            };
            let t = client.in_tenant(None).get_tenant(&name).await?;
            match output {
                Some(o) if print_as(&t, o)? => {}
                _ => print!("{}", summary(&t)),
            }
        }
        TenantCommand::Rm { name } => {
            let t = client.in_tenant(None).delete_tenant(&name).await?;
            println!("{} removed", t.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(t: &Tenant) -> String {
    let mut rows = vec![["QUOTA", "USED", "LIMIT"].map(String::from).to_vec()];
    for k in QuotaKey::ALL {
        rows.push(vec![
            k.to_string(),
            k.show(t.used.get(k)),
            t.quota
                .limit(k)
                .map(|l| k.show(l))
                .unwrap_or_else(|| "unlimited".into()),
        ]);
    }
    format!(
        "Name:     {}\nCreated:  {}\n\n{}",
        t.name,
        t.created_at.to_rfc3339(),
        table(&rows)
    )
}

pub async fn key(client: &Client, tenant: Option<&str>, c: KeyCommand) -> anyhow::Result<ExitCode> {
    match c {
        KeyCommand::Create {
            role,
            name,
            expires,
        } => {
            let Some(tenant) = tenant else {
                bail!("qci key create needs --tenant TENANT: the tenant the key acts in");
            };
            let spec = KeySpec {
                tenant: tenant.to_string(),
                role,
                name,
                expires_in: expires,
            };
            let k = client.create_key(&spec).await?;
            eprintln!(
                "key {} ({}) for tenant {}, role {}{}; it is shown this once:",
                k.key.id,
                k.key.name,
                k.key.tenant,
                k.key.role,
                k.key
                    .expires_at
                    .map(|t| format!(", expires {}", t.to_rfc3339()))
                    .unwrap_or_default()
            );
            println!("{}", k.secret);
        }
        KeyCommand::Ls(o) => {
            let items = client.list_keys().await?;
            if let Some(o) = o.output
                && print_as(&items, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                [
                    "ID",
                    "NAME",
                    "TENANT",
                    "ROLE",
                    "STATUS",
                    "EXPIRES",
                    "LAST USED",
                    "AGE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            let now = chrono::Utc::now();
            for k in items {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                rows.push(vec![
                    k.id,
                    k.name,
                    k.tenant,
                    k.role.to_string(),
                    status.into(),
                    k.expires_at
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "never".into()),
                    k.last_used_at
                        .map(|t| format!("{} ago", age(t)))
                        .unwrap_or_else(|| "-".into()),
                    age(k.created_at),
                ]);
            }
            print!("{}", table(&rows));
        }
        KeyCommand::Rm { key } => {
            let k = client.revoke_key(&key).await?;
            println!("{} revoked", k.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(client: &Client, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let items = client.audit(a.since.as_deref()).await?;
    if let Some(o) = a.output
        && print_as(&items, o)?
    {
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["TIME", "TENANT", "KEY", "ACTION", "STATUS", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    for r in items {
        rows.push(vec![
            r.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.tenant.clone(),
            if r.key_tenant == r.tenant {
                r.key_id
            } else {
                format!("{} ({})", r.key_id, r.key_tenant)
            },
            r.action,
            r.status.to_string(),
            r.detail.unwrap_or_default(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}
