//! Read-only commands: `qci ls`, `qci get`, `qci events`, `qci version`.

use std::process::ExitCode;

use qci_client::Client;
use qci_spec::{ContainerGroup, ContainerState, ContainerStatus};

use super::{age, print_as, table};
use crate::cli::Output;

pub async fn ls(client: &Client, a: crate::cli::LsArgs) -> anyhow::Result<ExitCode> {
    let groups = client.list_groups().await?;
    if let Some(o) = a.output
        && print_as(&groups, o)?
    {
        return Ok(ExitCode::SUCCESS);
    }
    let wide = matches!(a.output, Some(Output::Wide));
    let all = client.options().all_tenants;
    let mut rows = vec![group_header(wide)];
    rows.extend(groups.iter().map(|g| group_row(g, wide)));
    if all {
        with_tenants(&mut rows, groups.iter().map(|g| g.owner.clone()));
    }
    print!("{}", table(&rows));
    if !a.watch {
        return Ok(ExitCode::SUCCESS);
    }
    // Watching: the list again every second; a line for each group that changed (its row
    // as the table has it) or went, with the table's column widths.
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let line = |r: &[String]| {
        r.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let key = |r: &[String]| {
        // The age column changes by itself: not a change of the group.
        let mut r = r.to_vec();
        r.pop();
        r
    };
    let mut seen: std::collections::HashMap<String, Vec<String>> = groups
        .iter()
        .zip(rows.iter().skip(1))
        .map(|(g, r)| (g.id.clone(), key(r)))
        .collect();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = client.list_groups().await?;
        for g in &now {
            let r = group_row(g, wide);
            if seen.get(&g.id) != Some(&key(&r)) {
                println!("{}", line(&r));
                seen.insert(g.id.clone(), key(&r));
            }
        }
        let gone: Vec<String> = seen
            .keys()
            .filter(|id| !now.iter().any(|g| &g.id == *id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = seen.remove(&id) {
                let mut r = r;
                if r.len() > 2 {
                    r[2] = "Deleted".into();
                }
                println!("{}", line(&r));
            }
        }
    }
}

fn group_header(wide: bool) -> Vec<String> {
    let mut h = vec![
        "ID", "NAME", "PHASE", "HEALTH", "READY", "RESTARTS", "IP", "EIP",
    ];
    if wide {
        h.extend(["NETWORK", "CPU", "MEMORY", "PRICE/H", "IMAGES"]);
    }
    h.push("AGE");
    h.into_iter().map(String::from).collect()
}

fn group_row(g: &ContainerGroup, wide: bool) -> Vec<String> {
    let running = g
        .status
        .containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .count();
    let restarts: u32 = g.status.containers.iter().map(|c| c.restart_count).sum();
    let mut r = vec![
        g.id.clone(),
        g.name.clone(),
        g.status.phase.to_string(),
        g.status.health.to_string(),
        format!("{running}/{}", g.spec.containers.len()),
        restarts.to_string(),
        g.status.ip.clone().unwrap_or_else(|| "-".into()),
        g.status.eip.clone().unwrap_or_else(|| "-".into()),
    ];
    if wide {
        let network = match g.spec.network.as_ref() {
            Some(n) if n.mode == Some(qci_spec::NetworkMode::None) => "none".to_string(),
            Some(n) => n
                .vpc
                .clone()
                .map(|v| format!("vpc {v}"))
                .unwrap_or_else(|| "basic".into()),
            None => "basic".into(),
        };
        let mut images: Vec<&str> = g.spec.all_containers().map(|c| c.image.as_str()).collect();
        images.dedup();
        r.extend([
            network,
            g.resources.cpu.to_string(),
            format!(
                "{:.2}Gi",
                g.resources.memory_bytes as f64 / f64::from(1u32 << 30)
            ),
            g.resources
                .price_per_hour
                .map(|p| format!("{p:.4}"))
                .unwrap_or_else(|| "-".into()),
            images.join(","),
        ]);
    }
    r.push(age(g.created_at));
    r
}

pub async fn get(client: &Client, id: &str, output: Option<Output>) -> anyhow::Result<ExitCode> {
    let g = client.get_group(id).await?;
    if matches!(output, Some(Output::K8s)) {
        // The Pod and its ConfigMaps, and a claim (with the disk's size) for each disk, so
        // `qci create -f` of this makes the same group.
        let mut docs = Vec::new();
        for v in &g.spec.volumes {
            if let Some(d) = &v.disk {
                let disk = client.get_disk(&d.id).await?;
                docs.push(serde_json::json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": d.id},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": disk.size.to_string()}}},
                }));
            }
        }
        docs.extend(qci_spec::to_manifests(&g.spec));
        if !g.spec.registry_credentials.is_empty() {
            eprintln!("note: registry credentials are left out (passwords are never shown again)");
        }
        for d in docs {
            print!("---\n{}", serde_yaml::to_string(&d)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match output {
        Some(o) if print_as(&g, o)? => {}
        _ => print!("{}", summary(&g)),
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(g: &ContainerGroup) -> String {
    let mut s = String::new();
    s.push_str(&format!("Name:      {}\n", g.name));
    s.push_str(&format!("ID:        {}\n", g.id));
    s.push_str(&format!("Phase:     {}\n", g.status.phase));
    s.push_str(&format!("Health:    {}\n", g.status.health));
    if let Some(ip) = &g.status.ip {
        let net = g
            .spec
            .network
            .as_ref()
            .and_then(|n| n.vpc.clone())
            .map(|v| format!("VPC {v}"))
            .unwrap_or_else(|| "basic network".into());
        s.push_str(&format!("IP:        {ip} ({net})\n"));
    }
    if let Some(eip) = &g.status.eip {
        s.push_str(&format!("EIP:       {eip}\n"));
    }
    if let Some(m) = &g.status.message {
        s.push_str(&format!("Message:   {m}\n"));
    }
    s.push_str(&format!(
        "Created:   {} ({} ago)\n",
        g.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        age(g.created_at)
    ));
    s.push_str(&format!("Restart:   {:?}\n", g.spec.restart_policy));
    s.push_str(&format!(
        "Runtime:   {}\n",
        g.spec.runtime.unwrap_or(qci_spec::ContainerRuntime::Runc)
    ));
    if let Some(n) = &g.node {
        s.push_str(&format!("Node:      {n}\n"));
    }
    let r = &g.resources;
    let mut size = format!(
        "Size:      {} cores, {:.2} GiB (asked {} cores, {:.2} GiB)",
        r.cpu,
        r.memory_bytes as f64 / f64::from(1u32 << 30),
        r.requested_cpu,
        r.requested_memory_bytes as f64 / f64::from(1u32 << 30)
    );
    if let Some(p) = r.price_per_hour {
        size.push_str(&format!(", {p:.4} per hour"));
    }
    s.push_str(&size);
    s.push('\n');
    if let Some(l) = &g.status.limits {
        s.push_str(&format!(
            "Held to:   {} cores, {:.2} GiB (its containers together, on its cgroup)\n",
            l.cpu,
            l.memory_bytes as f64 / f64::from(1u32 << 30)
        ));
    }
    s.push('\n');
    let mut rows = vec![vec![
        "CONTAINER".into(),
        "KIND".into(),
        "STATE".into(),
        "READY".into(),
        "RESTARTS".into(),
        "EXIT".into(),
        "REASON".into(),
        "IMAGE".into(),
    ]];
    let specs = g
        .spec
        .init_containers
        .iter()
        .map(|c| ("init", c))
        .chain(g.spec.containers.iter().map(|c| ("work", c)));
    for (kind, c) in specs {
        let st = g
            .status
            .init_containers
            .iter()
            .chain(&g.status.containers)
            .find(|s| s.name == c.name);
        let default = ContainerStatus::default();
        let st = st.unwrap_or(&default);
        rows.push(vec![
            c.name.clone(),
            kind.into(),
            st.state.to_string(),
            match st.ready {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            },
            st.restart_count.to_string(),
            st.exit_code
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            st.reason.clone().unwrap_or_else(|| "-".into()),
            c.image.clone(),
        ]);
    }
    s.push_str(&table(&rows));
    let messages: Vec<String> = g
        .status
        .init_containers
        .iter()
        .chain(&g.status.containers)
        .filter_map(|c| c.message.as_ref().map(|m| format!("  {}: {m}", c.name)))
        .collect();
    if !messages.is_empty() {
        s.push_str("\nMessages:\n");
        s.push_str(&messages.join("\n"));
        s.push('\n');
    }
    s
}

fn event_row(e: qci_spec::Event, with_group: bool) -> Vec<String> {
    let object = match (with_group, e.container) {
        (true, Some(c)) => format!("{}/{c}", e.group_id),
        (true, None) => e.group_id,
        (false, c) => c.unwrap_or_else(|| "-".into()),
    };
    vec![
        e.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        e.event_type.as_str().into(),
        e.reason,
        object,
        if e.count > 1 {
            format!("x{}", e.count)
        } else {
            String::new()
        },
        e.message,
    ]
}

pub async fn events(client: &Client, a: crate::cli::EventsArgs) -> anyhow::Result<ExitCode> {
    let header = |what: &str| {
        ["TIME", "TYPE", "REASON", what, "COUNT", "MESSAGE"]
            .map(String::from)
            .to_vec()
    };
    match (a.group, a.watch) {
        (Some(g), true) => {
            use std::io::Write;
            client
                .watch_events(&g, |e| {
                    let line = table(&[event_row(e, false)]);
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).is_ok() && out.flush().is_ok()
                })
                .await?;
        }
        (Some(g), false) => {
            let mut rows = vec![header("CONTAINER")];
            rows.extend(
                client
                    .events(&g)
                    .await?
                    .into_iter()
                    .map(|e| event_row(e, false)),
            );
            print!("{}", table(&rows));
        }
        (None, _) => {
            let mut rows = vec![header("OBJECT")];
            rows.extend(
                client
                    .all_events(None)
                    .await?
                    .into_iter()
                    .map(|e| event_row(e, true)),
            );
            print!("{}", table(&rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn usage(client: &Client, a: crate::cli::UsageArgs) -> anyhow::Result<ExitCode> {
    let items = client.usage(a.from, a.to).await?;
    if let Some(o) = a.output
        && print_as(&items, o)?
    {
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["NAME", "ID", "CORE-SECONDS", "GIB-SECONDS", "COST"]
            .map(String::from)
            .to_vec(),
    ];
    let tenants: Vec<String> = items.iter().map(|u| u.tenant.clone()).collect();
    for u in items {
        rows.push(vec![
            u.name,
            u.group_id,
            format!("{:.1}", u.core_seconds),
            format!("{:.1}", u.gib_seconds),
            u.cost
                .map(|c| format!("{c:.4}"))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    if client.options().all_tenants {
        with_tenants(&mut rows, tenants.into_iter());
    }
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// A first column TENANT, for lists of every tenant's (`--all-tenants`).
fn with_tenants(rows: &mut [Vec<String>], tenants: impl Iterator<Item = String>) {
    let mut names = std::iter::once("TENANT".to_string()).chain(tenants);
    for r in rows.iter_mut() {
        r.insert(0, names.next().unwrap_or_default());
    }
}

pub async fn top(client: &Client, group: Option<String>) -> anyhow::Result<ExitCode> {
    let groups = match group {
        Some(g) => vec![client.get_group(&g).await?],
        None => client.list_groups().await?,
    };
    let mut rows = vec![
        [
            "GROUP",
            "CONTAINER",
            "CPU(cores)",
            "MEMORY",
            "PIDS",
            "NET RX/TX",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for g in groups.iter().filter(|g| !g.status.phase.is_final()) {
        let samples = client.metrics(&g.id, Some("5m")).await?;
        let mut latest: std::collections::BTreeMap<String, qci_spec::MetricSample> =
            Default::default();
        for m in samples {
            latest.insert(m.container.clone(), m);
        }
        for (c, m) in latest {
            rows.push(vec![
                g.name.clone(),
                c,
                m.cpu_cores
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "-".into()),
                format!("{:.1}Mi", m.memory_bytes as f64 / f64::from(1u32 << 20)),
                m.pids.to_string(),
                format!("{}/{}", m.rx_bytes, m.tx_bytes),
            ]);
        }
    }
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

pub async fn version(client: &Client) -> anyhow::Result<ExitCode> {
    println!("client: qci {}", env!("CARGO_PKG_VERSION"));
    match client.version().await {
        Ok(v) => println!("server: qci {} at {}", v.version, client.base()),
        Err(e) => println!("server: unavailable ({e})"),
    }
    Ok(ExitCode::SUCCESS)
}
