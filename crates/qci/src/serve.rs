//! `qci serve`: store, images, runtime, controller and API in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::cli::ServeArgs;

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log file or journal gets plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    host_check(&args.data_dir.join("run/runc"), false)?;
    // (Before anything is made: a runtime setting that cannot be honoured stops here.)
    let runtimes = runtime_policy(args.default_runtime, &args.allowed_runtimes)?;
    let tls = tls_config(&args).await?;
    if !args.listen.ip().is_loopback() && tls.is_none() && !args.insecure_listen {
        bail!(
            "refusing to listen on {} without TLS: API keys would cross the network in clear text. \
             Give --tls-cert and --tls-key, listen on 127.0.0.1, or pass --insecure-listen \
             (behind a TLS proxy)",
            args.listen
        );
    }
    private_dir(&args.data_dir)?;
    let _instance = lock_instance(&args.data_dir)?.ok_or_else(|| {
        anyhow::anyhow!(
            "another qci serve is running with data dir {} (two would fight over its containers)",
            args.data_dir.display()
        )
    })?;
    let layout = qci_runtime::Layout::new(&args.data_dir).context("data dir")?;
    let store = qci_store::Store::open(&layout.data_dir).context("opening the store")?;
    if !store.list_disks(None).context("reading disks")?.is_empty() {
        host_check(&layout.runc_root, true)?;
    }
    let key_file = local_admin_key(&store, &layout.data_dir)?;
    let mut ca_pems = Vec::new();
    for f in &args.registry_cas {
        let pem =
            std::fs::read(f).with_context(|| format!("reading --registry-ca {}", f.display()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            bail!("--registry-ca {}: not a PEM certificate file", f.display());
        }
        ca_pems.push(pem);
    }
    let registries = qci_image::RegistryConfig {
        insecure: args.insecure_registries.clone(),
        ca_pems,
    };
    let images = qci_image::ImageStore::open(&layout.data_dir.join("images"), registries)
        .context("opening the image store")?;
    let specs = match &args.spec_table {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading --spec-table {}", f.display()))?;
            qci_spec::SpecTable::parse(&text)
                .map_err(|e| anyhow::anyhow!("--spec-table {}: {e}", f.display()))?
        }
        None => qci_spec::SpecTable::default(),
    };
    let disk_compat = match &args.disk_compat {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading --disk-compat {}", f.display()))?;
            let t: qci_spec::DiskCompat = serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--disk-compat {}: {e}", f.display()))?;
            t.validate()
                .map_err(|e| anyhow::anyhow!("--disk-compat {}: {e}", f.display()))?;
            t
        }
        None => qci_spec::DiskCompat::default(),
    };
    let exe = std::env::current_exe().context("locating the qci binary")?;
    let disk_runtime = Arc::new(
        qci_runtime::Runtime::new(layout.clone(), exe.clone()).context("preparing the runtime")?,
    );
    let known: Vec<String> = store
        .list_disks(None)
        .context("reading disks")?
        .into_iter()
        .map(|d| d.id)
        .collect();
    disk_runtime.prune_disk_images(&known);
    let runtime =
        qci_runtime::Runtime::new(layout.clone(), exe).context("preparing the runtime")?;
    let secs = |v: f64, flag: &str| {
        if v.is_finite() && v >= 0.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(anyhow::anyhow!(
                "{flag} must be a number of seconds, 0 or more"
            ))
        }
    };
    let seccomp_default = match &args.seccomp_profile {
        Some(f) => qci_runtime::seccomp::Profile::load(f)?,
        None => qci_runtime::seccomp::Profile::default_profile(),
    };
    let security =
        qci_spec::SecurityPolicy::new(args.allow_unconfined_seccomp, &args.allowed_capabilities)
            .map_err(|e| anyhow::anyhow!("--allowed-capability: {e}"))?;
    let config = qci_controller::ControllerConfig {
        seccomp_default: Arc::new(seccomp_default),
        seccomp_dir: layout.data_dir.join("seccomp"),
        image_budget: args.image_store_max_size,
        restart_backoff_base: secs(args.restart_backoff_base, "--restart-backoff-base")?,
        restart_backoff_max: secs(args.restart_backoff_max, "--restart-backoff-max")?,
        default_pids_limit: (args.pids_limit > 0).then_some(args.pids_limit),
        failed_group_ttl: secs(args.failed_group_ttl, "--failed-group-ttl")?,
        deleted_group_retention: secs(args.deleted_group_retention, "--deleted-group-retention")?,
        metrics_interval: secs(args.metrics_interval.max(0.1), "--metrics-interval")?,
        basic_network_linger: secs(args.basic_network_linger, "--basic-network-linger")?,
    };
    let net_cfg = network_config(&args, &layout)?;
    store.set_net_config(qci_store::NetConfig {
        basic_cidr: net_cfg.1,
        eip_pool: net_cfg.0.eip_pool.clone(),
    });
    let driver: Arc<dyn qci_network::NetworkDriver> = Arc::new(
        qci_network::BridgeDriver::new(net_cfg.0.clone()).context("setting up networking")?,
    );
    let controller =
        qci_controller::Controller::new(store.clone(), images.clone(), runtime, config);
    controller.set_network(driver);
    let waker = controller.clone();
    let group_waker = controller.clone();
    let pruner = controller.clone();
    let store_for_audit = store.clone();
    let nodes = Arc::new(node_view(&args, &layout, &store).await?);
    let state = qci_api::AppState {
        store,
        images: images.clone(),
        layout: layout.clone(),
        on_change: Arc::new(move || waker.wake()),
        on_group_change: Arc::new(move |id| group_waker.wake_group(id)),
        specs: Arc::new(specs),
        runtime: disk_runtime,
        network: Arc::new(net_cfg.0),
        disk_compat: Arc::new(disk_compat),
        origins: Arc::new(qci_api::browser::Origins {
            allowed_hosts: args
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            tls: tls.is_some(),
        }),
        failures: Default::default(),
        exec_sessions: Default::default(),
        security: Arc::new(security),
        runtimes: Arc::new(runtimes),
        nodes,
        latency: Default::default(),
        gauges: {
            let (c, i) = (controller.clone(), images.clone());
            Arc::new(move || {
                vec![
                    (
                        "qci_reconciles_in_flight",
                        "Group and image cache reconciles under way",
                        c.reconciles_in_flight() as f64,
                    ),
                    (
                        "qci_pulls_in_flight",
                        "Image pulls under way",
                        i.pulls_in_flight() as f64,
                    ),
                ]
            })
        },
        prune: Arc::new(move || {
            let c = pruner.clone();
            Box::pin(async move {
                let r = c.collect_garbage().await.map_err(|e| e.to_string())?;
                serde_json::to_value(r).map_err(|e| e.to_string())
            })
        }),
    };
    let app = qci_api::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        listen = %args.listen,
        tls = tls.is_some(),
        data_dir = %layout.data_dir.display(),
        cgroup_parent = %layout.cgroup_parent,
        admin_key = %key_file.display(),
        "qci serve ready"
    );
    if let Err(e) = listen_for_exits(&layout, controller.clone()) {
        // Exits are then seen at the next pass (250 ms) instead of at once.
        tracing::warn!("no exit notifications: {e:#}");
    }
    tokio::spawn(
        controller
            .clone()
            .run_gc(std::time::Duration::from_secs(60)),
    );
    tokio::spawn(controller.clone().run_sampler());
    let stopping = controller.clone();
    tokio::spawn(controller.run());
    tokio::spawn(prune_audit(store_for_audit, args.audit_retention));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown().await;
        // Open `logs -f` streams must not keep the process alive for ever.
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    match tls {
        Some(cfg) => {
            axum_server::from_tcp_rustls(listener, cfg)?
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app)
                .await
        }
    }
    .context("serving the API")?;
    stopping.release_host().await;
    tracing::info!("stopped; containers keep running and are adopted at the next start");
    Ok(())
}

/// This node: its name, address and what it offers; with `--etcd`, joined to the cluster
/// (its lease kept alive and its allocations reported every 5 s while `qci serve` runs).
async fn node_view(
    args: &ServeArgs,
    layout: &qci_runtime::Layout,
    store: &qci_store::Store,
) -> anyhow::Result<qci_api::nodes::NodeView> {
    let name = match &args.node_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()
            .context("reading the hostname")?
            .to_string_lossy()
            .to_ascii_lowercase(),
    };
    if let Err(e) = qci_spec::check_dns_label(&name) {
        bail!("--node-name {name:?}: {e} (the default is the machine's hostname)");
    }
    let cpu = match args.node_cpu {
        Some(c) if c > 0.0 && c.is_finite() => c,
        Some(c) => bail!("--node-cpu {c}: must be more than 0 cores"),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
    };
    let memory_bytes = match args.node_memory {
        Some(0) => bail!("--node-memory: must be more than 0"),
        Some(m) => m,
        None => std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kib| kib * 1024)
            .context("reading MemTotal from /proc/meminfo")?,
    };
    store.set_node_name(&name);
    let capacity = qci_spec::NodeResources { cpu, memory_bytes };
    // What the operator said this node offers holds its groups (a create or growth past it is
    // refused); without the flags a node may hold more than the machine (as before).
    if args.node_cpu.is_some() || args.node_memory.is_some() {
        store.set_node_capacity(Some(qci_spec::NodeResources {
            cpu: args.node_cpu.unwrap_or(f64::INFINITY),
            memory_bytes: args.node_memory.unwrap_or(u64::MAX),
        }));
    }
    let address = args
        .node_address
        .clone()
        .unwrap_or_else(|| args.listen.to_string());
    let membership = if args.etcd.is_empty() {
        None
    } else {
        // Stable for this data dir: a restart takes its own name back; another machine
        // with the same name is refused.
        let id_file = layout.data_dir.join("node-id");
        let id = match std::fs::read_to_string(&id_file) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                std::fs::write(&id_file, &id)
                    .with_context(|| format!("writing {}", id_file.display()))?;
                id
            }
        };
        let cluster = qci_cluster::Cluster::connect(&args.etcd)
            .await
            .context("joining the cluster")?;
        let m = cluster
            .join(qci_cluster::NodeConfig {
                name: name.clone(),
                id,
                address: address.clone(),
                capacity,
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .await
            .context("joining the cluster")?;
        let (reporter, store) = (m.clone(), store.clone());
        tokio::spawn(async move {
            loop {
                match tokio::task::block_in_place(|| qci_api::nodes::allocation(&store)) {
                    Ok((held, groups)) => reporter.report(held, groups),
                    Err(e) => tracing::warn!("reading this node's allocations: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        tracing::info!(node = %name, etcd = %args.etcd.join(","), "joined the cluster");
        Some(m)
    };
    Ok(qci_api::nodes::NodeView {
        name,
        address,
        capacity,
        started_at: chrono::Utc::now(),
        membership,
    })
}

/// The runtimes groups may run on: what the operator allows (all by default), less what this
/// machine or this qci cannot run, each with its reason; the default must be among them.
fn runtime_policy(
    default: qci_spec::ContainerRuntime,
    allowed: &[qci_spec::ContainerRuntime],
) -> anyhow::Result<qci_spec::RuntimePolicy> {
    use qci_spec::ContainerRuntime::{Gvisor, Runc};
    let mut policy = qci_spec::RuntimePolicy {
        default,
        ..Default::default()
    };
    if !allowed.is_empty() {
        policy.allowed = allowed.iter().copied().collect();
    }
    // Checked only where it could be used: a machine that runs no gVisor needs no runsc.
    if policy.allowed.contains(&Gvisor) {
        match qci_runtime::hostcheck::gvisor_check(
            &std::env::temp_dir().join(format!("qci-runsc-check.{}", std::process::id())),
        ) {
            Ok(v) => tracing::info!("gvisor: {v} runs sandboxes here"),
            Err(why) => {
                policy.unavailable.insert(Gvisor, why);
            }
        }
    }
    policy
        .resolve(None)
        .map_err(|e| anyhow::anyhow!("--default-runtime {default}: {}", e.message))?;
    let usable: Vec<String> = [Runc, Gvisor]
        .iter()
        .map(
            |r| match (policy.allowed.contains(r), policy.unavailable.get(r)) {
                (false, _) => format!("{r}: not allowed"),
                (true, Some(why)) => format!("{r}: unavailable, {why}"),
                (true, None) if *r == default => format!("{r}: the default"),
                (true, None) => format!("{r}: allowed"),
            },
        )
        .collect();
    tracing::info!("runtimes: {}", usable.join("; "));
    Ok(policy)
}

/// Refuses to start on a machine that cannot run qci's containers, naming every missing
/// piece and its fix. (`disks`: the store holds disks, so loop devices are needed too.)
fn host_check(runc_root: &Path, disks: bool) -> anyhow::Result<()> {
    let facts = qci_runtime::hostcheck::HostFacts::gather(&qci_runtime::Runc::new(runc_root));
    let problems = qci_runtime::hostcheck::check(&facts, disks);
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
    bail!(
        "this machine cannot run qci's containers yet:\n{}",
        list.join("\n")
    )
}

/// The data dir, made if missing, readable by root only (0700): it holds every tenant's
/// specs, logs and keys. Logs made before this rule are closed off with it.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    for d in [dir.to_path_buf(), dir.join("logs")] {
        if d.exists() {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {} to 0700", d.display()))?;
        }
    }
    Ok(())
}

/// Makes sure `<data>/admin.key` (0600) holds a working admin key, making one on the first
/// start (or when it was lost or revoked). Its path is logged, never the key.
fn local_admin_key(store: &qci_store::Store, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("admin.key");
    let current = std::fs::read_to_string(&path).ok();
    let Some(key) = store
        .ensure_local_admin_key(current.as_deref())
        .context("making the local admin key")?
    else {
        return Ok(path);
    };
    crate::private_file::write(&path, format!("{key}\n").as_bytes())?;
    tracing::info!(
        path = %path.display(),
        "made the local admin key (tenant default); the qci CLI on this host uses it"
    );
    Ok(path)
}

/// The TLS settings from --tls-cert and --tls-key.
async fn tls_config(
    args: &ServeArgs,
) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let cfg = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!(
                "--tls-cert {} / --tls-key {}: not a usable PEM certificate chain and key",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Some(cfg))
}

/// Forgets audit records older than the retention, hourly.
async fn prune_audit(store: qci_store::Store, days: f64) {
    let keep = chrono::Duration::seconds((days.max(0.0) * 86400.0) as i64);
    loop {
        if let Err(e) = store.prune_audit(chrono::Utc::now() - keep) {
            tracing::warn!("pruning the audit trail: {e}");
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Monitors poke this socket when a container exits; each poke wakes the controller.
fn listen_for_exits(
    layout: &qci_runtime::Layout,
    controller: Arc<qci_controller::Controller>,
) -> anyhow::Result<()> {
    let path = layout.notify_socket();
    let _ = std::fs::remove_file(&path);
    let sock = tokio::net::UnixDatagram::bind(&path)
        .with_context(|| format!("binding {}", path.display()))?;
    tokio::spawn(async move {
        let mut buf = [0u8; 256];
        // Each datagram is the runc id of a container whose exit its monitor recorded.
        while let Ok(n) = sock.recv(&mut buf).await {
            controller.wake_container(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Ok(())
}

const DEFAULT_BASIC_SUBNET: &str = "172.30.0.0/16";

/// The transit block: `--transit-cidr`, else the one this instance picked before (kept in
/// `<data>/transit`), else 100.127.0.0/16 for an instance that has networks from before
/// blocks were picked (its routers use it), else a new pick that no route of the host uses —
/// so two instances on one host never share one.
fn transit_block(args: &ServeArgs, layout: &qci_runtime::Layout) -> anyhow::Result<ipnet::Ipv4Net> {
    let file = layout.data_dir.join("transit");
    let parse = |s: &str, what: &str| -> anyhow::Result<ipnet::Ipv4Net> {
        s.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{what} {s:?} is not an IPv4 block"))
    };
    let kept = std::fs::read_to_string(&file).ok();
    let transit = match (&args.transit_cidr, &kept) {
        (Some(s), _) => parse(s, "--transit-cidr")?,
        (None, Some(k)) => parse(k, &file.display().to_string())?,
        (None, None) => {
            let legacy = std::fs::read_dir(layout.run_dir.join("networks"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if legacy {
                "100.127.0.0/16".parse()?
            } else {
                let seed = layout.cgroup_parent.clone();
                qci_network::pick_transit(args.network_host_ns.as_deref(), &seed)
                    .context("picking a transit block")?
            }
        }
    };
    if kept.as_deref().map(str::trim) != Some(transit.to_string().as_str()) {
        std::fs::write(&file, format!("{transit}\n"))
            .with_context(|| format!("writing {}", file.display()))?;
        tracing::info!(%transit, "transit block");
    }
    Ok(transit)
}

/// Four hex digits naming the instance in host link and table names: the start of the data
/// dir's hash, as in the cgroup parent's name.
fn instance_name(layout: &qci_runtime::Layout) -> String {
    layout
        .cgroup_parent
        .trim_start_matches("qci-")
        .chars()
        .take(4)
        .collect()
}

/// The network settings from the flags: the driver's config and the basic network's block.
fn network_config(
    args: &ServeArgs,
    layout: &qci_runtime::Layout,
) -> anyhow::Result<(qci_network::NetConfig, Option<ipnet::Ipv4Net>)> {
    let transit = transit_block(args, layout)?;
    let mut eip_pool = Vec::new();
    for p in &args.eip_pool {
        eip_pool.extend(qci_network::parse_pool(p).map_err(|e| anyhow::anyhow!("--eip-pool {e}"))?);
    }
    eip_pool.sort();
    eip_pool.dedup();
    if let Some(ns) = &args.network_host_ns
        && !ns.exists()
    {
        bail!("--network-host-ns {}: no such file", ns.display());
    }
    let instance = instance_name(layout);
    let cfg = qci_network::NetConfig {
        run_dir: layout.run_dir.join("networks"),
        host_ns: args.network_host_ns.clone(),
        transit,
        eip_pool,
        eip_interface: args.eip_interface.clone(),
        instance,
    };
    let basic = match args.basic_subnet.as_deref() {
        Some("none") => None,
        Some(s) => {
            let net = qci_spec::parse_cidr(s).map_err(|e| anyhow::anyhow!("--basic-subnet {e}"))?;
            qci_network::check_block(&cfg, net)
                .map_err(|e| anyhow::anyhow!("--basic-subnet {e}"))?;
            Some(net)
        }
        None => {
            let net = qci_spec::parse_cidr(DEFAULT_BASIC_SUBNET).expect("a valid default");
            // The default must not stop a host that already routes it (say, to a Docker
            // network): groups there just cannot reach that network of the host's.
            if let Err(e) = qci_network::check_block(&cfg, net) {
                tracing::warn!("the basic network: {e}; choose another with --basic-subnet");
            }
            Some(net)
        }
    };
    Ok((cfg, basic))
}

/// Holds `<data>/instance.lock` for as long as the returned file lives: one `qci serve` (or
/// `qci system reset`) per data dir. None when another holds it.
fn lock_instance(dir: &Path) -> anyhow::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let path = dir.join("instance.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(anyhow::Error::new(e).context(format!("locking {}", path.display()))),
    }
}

/// `qci system reset`: everything the instance at `--data-dir` made, gone from the machine.
pub async fn reset(a: crate::cli::ResetArgs) -> anyhow::Result<std::process::ExitCode> {
    use std::io::{BufRead, IsTerminal, Write};
    if !nix::unistd::Uid::effective().is_root() {
        bail!("qci system reset removes containers, mounts and networks: run it as root");
    }
    if !a.data_dir.join("qci.db").exists() && !a.data_dir.join("run").exists() {
        bail!("{} holds no qci instance", a.data_dir.display());
    }
    let _instance = lock_instance(&a.data_dir)?.ok_or_else(|| {
        anyhow::anyhow!(
            "qci serve is running with data dir {}: stop it first",
            a.data_dir.display()
        )
    })?;
    if !a.force {
        if !std::io::stdin().is_terminal() {
            bail!(
                "qci system reset asks before removing everything: answer on a terminal, or pass --force"
            );
        }
        print!(
            "This removes every group, container, disk, image, key and network of the qci instance at {}.\nType yes to go on: ",
            a.data_dir.display()
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            println!("nothing removed");
            return Ok(std::process::ExitCode::FAILURE);
        }
    }
    let layout = qci_runtime::Layout::new(&a.data_dir).context("data dir")?;
    // The EIP addresses the instance may have put on the host, from its own records.
    let eip_pool: Vec<std::net::Ipv4Addr> = match qci_store::Store::open(&layout.data_dir) {
        Ok(store) => store
            .list_eips(None)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.address.parse().ok())
            .collect(),
        Err(e) => {
            tracing::warn!("reading the store: {e}; EIP addresses on the host stay");
            vec![]
        }
    };
    let exe = std::env::current_exe().context("finding the qci binary")?;
    let runtime = qci_runtime::Runtime::new(layout.clone(), exe).context("the runtime")?;
    runtime
        .remove_everything()
        .await
        .context("removing containers, groups, mounts and cgroups")?;
    let transit = std::fs::read_to_string(layout.data_dir.join("transit"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| "100.127.0.0/16".parse().expect("a block"));
    let instance = instance_name(&layout);
    let driver = qci_network::BridgeDriver::new(qci_network::NetConfig {
        run_dir: layout.run_dir.join("networks"),
        host_ns: a.network_host_ns.clone(),
        transit,
        eip_pool,
        eip_interface: a.eip_interface.clone(),
        instance,
    })
    .context("networking")?;
    tokio::task::spawn_blocking(move || {
        use qci_network::NetworkDriver;
        driver.sync(&[], &[])
    })
    .await?
    .context("removing networks, rules and addresses")?;
    std::fs::remove_dir_all(&a.data_dir)
        .with_context(|| format!("removing {}", a.data_dir.display()))?;
    println!("removed the qci instance at {}", a.data_dir.display());
    Ok(std::process::ExitCode::SUCCESS)
}
