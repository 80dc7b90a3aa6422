//! The controller and node agent: a level-triggered loop that compares each stored group with
//! what actually runs on this machine and acts on the difference.
//!
//! Architecture invariants:
//! - a pass reads the desired state (the store) and the actual state (the runtime's files),
//!   never a memory of what it did before, so a crash at any point is repaired by the next pass;
//! - at most one pass works on a given group at a time;
//! - the controller writes only status and events; specs are the API's.

mod cache;
mod disks;
mod health;
mod network;
mod process;
mod reconcile;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qci_image::ImageStore;
use qci_runtime::Runtime;
use qci_store::Store;
use tokio::sync::Notify;

pub use process::{DEFAULT_PATH, container_config};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] qci_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] qci_runtime::RuntimeError),
    #[error(transparent)]
    Image(#[from] qci_image::ImageError),
    #[error(transparent)]
    Network(#[from] qci_network::NetError),
    #[error("network {0} is gone")]
    NetworkGone(String),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The `busy` key of the network pass (group ids start with `cg-`).
const NETWORK_KEY: &str = "network";

/// How often every group is looked at even when nothing asked for it.
const RESYNC: Duration = Duration::from_millis(250);
/// At most this many containers start at once. Each start is mostly runc and the kernel
/// copying and rendering the mount table (which grows with every container); a hundred at once
/// start no sooner than a few at a time, and starve the API of CPU meanwhile.
const MAX_STARTS: usize = 4;

/// How often a settled group (see [`Controller::settled`]) is looked at all the same.
const SETTLED_RESYNC: Duration = Duration::from_secs(2);

/// Settings of `qci serve` that shape the controller's behaviour.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The most bytes the image store may take (`--image-store-max-size`).
    pub image_budget: Option<u64>,
    /// Crash-loop back-off: the wait before the second restart, doubling up to the cap.
    pub restart_backoff_base: Duration,
    pub restart_backoff_max: Duration,
    /// The pids limit of containers that set none.
    pub default_pids_limit: Option<i64>,
    /// Failed groups are deleted this long after they failed.
    pub failed_group_ttl: Duration,
    /// A deleted group's events stay readable this long.
    pub deleted_group_retention: Duration,
    /// How often containers' resource use is read.
    pub metrics_interval: Duration,
    /// How long the basic network's router stays once no group is in it (so groups started
    /// one after another do not each build it again).
    pub basic_network_linger: Duration,
    /// The profile for `RuntimeDefault` (`--seccomp-profile`, else the one qci ships).
    pub seccomp_default: std::sync::Arc<qci_runtime::seccomp::Profile>,
    /// Where `Localhost` profiles are (`<data>/seccomp`).
    pub seccomp_dir: std::path::PathBuf,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            image_budget: None,
            restart_backoff_base: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            default_pids_limit: Some(4096),
            failed_group_ttl: Duration::from_secs(3600),
            deleted_group_retention: Duration::from_secs(24 * 3600),
            metrics_interval: Duration::from_secs(10),
            basic_network_linger: Duration::from_secs(30),
            seccomp_default: std::sync::Arc::new(qci_runtime::seccomp::Profile::default_profile()),
            seccomp_dir: std::path::PathBuf::from("/var/lib/qci/seccomp"),
        }
    }
}

pub struct Controller {
    store: Store,
    images: ImageStore,
    runtime: Runtime,
    config: ControllerConfig,
    wake: Notify,
    /// Wakes the loop for the groups in `dirty` alone.
    wake_some: Notify,
    /// The networks' fingerprint the last full pass read (passes of single groups use it).
    networks: Mutex<u64>,
    busy: Mutex<HashSet<String>>,
    probes: health::Probes,
    /// When each group was last metered.
    metered: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// How groups are networked (none: loopback only).
    network: std::sync::OnceLock<Arc<dyn qci_network::NetworkDriver>>,
    /// One network sync at a time.
    net_lock: tokio::sync::Mutex<()>,
    /// When a group was last seen in the basic network.
    basic_used: Mutex<Option<std::time::Instant>>,
    /// The size this process set on each group's cgroup.
    limits: Mutex<std::collections::HashMap<String, qci_runtime::GroupLimits>>,
    /// Groups whose last pass found them steady (Running, every container running, nothing
    /// timed such as a back-off or a probe) and did nothing: what their row and the networks
    /// were then, and when. Such a group is passed over until its row or the networks change,
    /// one of its containers exits (the monitor's datagram names it), or SETTLED_RESYNC has
    /// gone by; with hundreds of idle groups this is most of the controller's work saved.
    settled: Mutex<std::collections::HashMap<String, (u64, std::time::Instant)>>,
    /// Groups named since their last pass: the API changed them, or a container of theirs
    /// exited. They are passed at once, alone, and even when settled.
    dirty: Mutex<HashSet<String>>,
    /// The containers on this machine by group, read once at the start of each pass.
    listed: Mutex<Arc<std::collections::HashMap<String, Vec<String>>>>,
    /// Groups being deleted whose network place is already unplugged: left out of every
    /// network sync from then on, so a periodic sync cannot bring back what they alone used
    /// (the basic network's router) before their row goes.
    detached: Mutex<HashSet<String>>,
    /// Container starts under way at once (see [`MAX_STARTS`]).
    starts: tokio::sync::Semaphore,
    /// Sizes the kernel refused (group id and size → when), not retried at every pass.
    limit_refused: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// The server is stopping: no more passes, and networks no group uses are removed.
    stopping: std::sync::atomic::AtomicBool,
}

impl Controller {
    pub fn new(
        store: Store,
        images: ImageStore,
        runtime: Runtime,
        config: ControllerConfig,
    ) -> Arc<Controller> {
        Arc::new(Controller {
            store,
            images,
            runtime,
            config,
            wake: Notify::new(),
            wake_some: Notify::new(),
            networks: Mutex::new(0),
            busy: Default::default(),
            network: Default::default(),
            net_lock: Default::default(),
            basic_used: Default::default(),
            probes: Default::default(),
            metered: Default::default(),
            limits: Default::default(),
            limit_refused: Default::default(),
            starts: tokio::sync::Semaphore::new(MAX_STARTS),
            detached: Default::default(),
            listed: Default::default(),
            settled: Default::default(),
            dirty: Default::default(),
            stopping: Default::default(),
        })
    }

    /// For a server that is stopping: no further passes, and what the host keeps for qci
    /// only while groups need it goes — every network no group is in (the basic network's
    /// router, unused VPC routers, their uplinks and routes, the host's table once no network
    /// is left) and this instance's parent cgroups once empty. Running groups keep what they
    /// use; the next start makes the rest again.
    pub async fn release_host(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.sync_networks(None).await {
            tracing::warn!("removing networks no group uses: {e}");
        }
        self.runtime.release_cgroup_parent();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks for a pass now (after a create or delete, for instance).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Asks for a pass of group `id` now, and of it alone (the API changed its row).
    pub fn wake_group(&self, id: &str) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        self.wake_some.notify_one();
    }

    /// Asks for a pass now for the group of the container runc knows as `runc_id` (its
    /// monitor recorded an exit), even if the group is settled.
    pub fn wake_container(&self, runc_id: &str) {
        match runc_id.strip_prefix("cg-").and_then(|r| r.split_once('-')) {
            Some((hex, _)) => self.wake_group(&format!("cg-{hex}")),
            None => self.wake(),
        }
    }

    /// What a settled group's row and the networks looked like: any change unsettles it.
    fn settle_key(g: &qci_spec::ContainerGroup, networks: u64) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&g.spec)
            .unwrap_or_default()
            .hash(&mut h);
        g.restart_generation.hash(&mut h);
        g.deletion_requested_at.hash(&mut h);
        networks.hash(&mut h);
        h.finish()
    }

    /// True when the group, as its stored status shows it, has nothing timed to do: Running,
    /// every container running, no probes to launch, no back-off or retry waiting.
    fn steady(g: &qci_spec::ContainerGroup) -> bool {
        g.status.phase == qci_spec::GroupPhase::Running
            && g.deletion_requested_at.is_none()
            && g.status.retry_at.is_none()
            && g.status.containers.len() == g.spec.containers.len()
            && g.status
                .containers
                .iter()
                .all(|c| c.state == qci_spec::ContainerState::Running && c.retry_at.is_none())
            && g.spec.containers.iter().all(|c| {
                c.liveness_probe.is_none()
                    && c.readiness_probe.is_none()
                    && c.startup_probe.is_none()
            })
    }

    /// A fingerprint of what group passes read of the networks (firewalls, VPCs, EIPs).
    fn networks_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let firewalls = self
            .store
            .list_firewalls(None)
            .map(|v| serde_json::to_string(&v).unwrap_or_default());
        let vpcs = self
            .store
            .list_vpcs(None)
            .map(|v| serde_json::to_string(&v).unwrap_or_default());
        let eips = self
            .store
            .list_eips(None)
            .map(|v| serde_json::to_string(&v).unwrap_or_default());
        match (firewalls, vpcs, eips) {
            (Ok(f), Ok(v), Ok(e)) => (f, v, e).hash(&mut h),
            // Unknown: a key nothing settled has, so every group is passed.
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default()
                .hash(&mut h),
        }
        h.finish()
    }

    /// Removes image blobs and layers nothing uses, and keeps the store within its budget.
    pub async fn collect_garbage(&self) -> Result<qci_image::GcReport, ControllerError> {
        let in_use: std::collections::HashSet<String> = self
            .runtime
            .layers_in_use()
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(|hex| format!("sha256:{hex}")))
            .collect();
        let caches = self
            .store
            .list_image_caches(None)?
            .into_iter()
            .map(|c| c.id)
            .collect();
        let report = self
            .images
            .gc(&in_use, &caches, self.config.image_budget)
            .await?;
        if report.freed_bytes > 0 || !report.removed_images.is_empty() {
            tracing::info!(
                freed = report.freed_bytes,
                blobs = report.removed_blobs,
                layers = report.removed_layers,
                images = ?report.removed_images,
                total = report.total_bytes,
                "image garbage collected"
            );
        }
        Ok(report)
    }

    /// Collects image garbage, and forgets the events of groups deleted long ago, every
    /// `every`, for ever.
    pub async fn run_gc(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.collect_garbage().await {
                tracing::warn!("image garbage collection: {e}");
            }
            self.forget_deleted_groups();
        }
    }

    /// Reconciles under way (groups and image caches), for `/metrics`.
    pub fn reconciles_in_flight(&self) -> usize {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Reads every running container's resource use every `metrics_interval`, for ever.
    pub async fn run_sampler(self: Arc<Self>) {
        let mut last_prune = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.metrics_interval).await;
            let Ok(groups) = self.store.all_groups() else {
                continue;
            };
            let now = chrono::Utc::now();
            for g in groups
                .iter()
                .filter(|g| g.deletion_requested_at.is_none() && !g.status.phase.is_final())
            {
                // (Reading is blocking: cgroup files, and runsc for a gVisor container.)
                let samples: Vec<qci_store::RawSample> = tokio::task::block_in_place(|| {
                    g.status
                        .containers
                        .iter()
                        .filter(|c| c.state == qci_spec::ContainerState::Running)
                        .filter_map(|c| {
                            let s = self.runtime.stats(&g.id, &c.name, c.pid)?;
                            Some(qci_store::RawSample {
                                container: c.name.clone(),
                                cpu_ns: s.cpu_ns,
                                memory_bytes: s.memory_bytes,
                                pids: s.pids,
                                rx_bytes: s.rx_bytes,
                                tx_bytes: s.tx_bytes,
                            })
                        })
                        .collect()
                });
                if !samples.is_empty()
                    && let Err(e) = self.store.add_samples(&g.id, now, &samples)
                {
                    tracing::warn!(group = %g.id, "storing metrics: {e}");
                }
            }
            if last_prune.elapsed() > Duration::from_secs(600) {
                last_prune = std::time::Instant::now();
                if let Err(e) = self.store.prune_samples(now) {
                    tracing::warn!("pruning metrics: {e}");
                }
            }
        }
    }

    /// Bills a group once a second while it is Pending, Running or Restarting.
    /// True when the group is billable and was last metered a second ago or more (it is then
    /// counted as metered now; the caller records all such groups in one transaction).
    fn meter_due(&self, g: &qci_spec::ContainerGroup) -> bool {
        use qci_spec::GroupPhase::*;
        let billable = g.deletion_requested_at.is_none()
            && matches!(g.status.phase, Pending | Running | Restarting | Updating);
        let mut metered = self.metered.lock().unwrap_or_else(|p| p.into_inner());
        if !billable {
            metered.remove(&g.id);
            return false;
        }
        if metered
            .get(&g.id)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return false;
        }
        metered.insert(g.id.clone(), std::time::Instant::now());
        true
    }

    /// Drops the events of groups deleted more than the retention ago.
    pub fn forget_deleted_groups(&self) {
        let before = chrono::Utc::now()
            - chrono::Duration::from_std(self.config.deleted_group_retention).unwrap_or_default();
        if let Err(e) = self.store.forget_deleted_groups(before) {
            tracing::warn!("forgetting deleted groups: {e}");
        }
    }

    /// A Failed group past its time to live is deleted (its events stay for a while).
    fn expire_if_due(&self, g: &qci_spec::ContainerGroup) {
        if g.status.phase != qci_spec::GroupPhase::Failed {
            return;
        }
        let ttl = chrono::Duration::from_std(self.config.failed_group_ttl).unwrap_or_default();
        let since = g.status.phase_since.unwrap_or(g.created_at);
        if chrono::Utc::now() < since + ttl {
            return;
        }
        let msg = format!(
            "failed {}s ago; deleted after the failed-group TTL",
            (chrono::Utc::now() - since).num_seconds()
        );
        let _ = self
            .store
            .add_event(&g.id, None, qci_spec::EventType::Normal, "Expired", &msg);
        match self.store.request_deletion(&g.id) {
            Ok(_) => self.wake(),
            Err(e) => tracing::warn!(group = %g.id, "expiring: {e}"),
        }
    }

    /// Runs passes forever: over every group each RESYNC and when woken, and over the groups
    /// named (`dirty`) as soon as they are.
    pub async fn run(self: Arc<Self>) {
        while !self.stopping() {
            // (A pass reads every group: off the async workers, which the API needs.)
            tokio::task::block_in_place(|| self.pass());
            let next = tokio::time::Instant::now() + RESYNC;
            loop {
                tokio::select! {
                    _ = self.wake.notified() => break,
                    _ = tokio::time::sleep_until(next) => break,
                    _ = self.wake_some.notified() => tokio::task::block_in_place(|| self.pass_named()),
                }
            }
        }
    }

    /// Starts a reconcile for each group named in `dirty` (reading only their rows).
    fn pass_named(self: &Arc<Self>) {
        let named: Vec<String> = self
            .dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let networks = *self.networks.lock().unwrap_or_else(|p| p.into_inner());
        for id in named {
            match self.store.get_group(&id) {
                Ok(Some(g)) => self.consider(g, networks),
                Ok(None) => {
                    self.dirty
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                }
                Err(e) => tracing::error!(group = %id, "reading a group: {e}"),
            }
        }
    }

    /// Starts a reconcile for every group that has none running.
    fn pass(self: &Arc<Self>) {
        self.sync_disks();
        // One directory read for every group's question "which containers do I have left?".
        *self.listed.lock().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(self.runtime.all_containers());
        let groups = match self.store.all_groups() {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("listing groups: {e}");
                return;
            }
        };
        match self.store.list_image_caches(None) {
            Ok(caches) => {
                for c in caches
                    .into_iter()
                    .filter(|c| c.status.phase == qci_spec::CachePhase::Creating)
                {
                    if !self
                        .busy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(c.id.clone())
                    {
                        continue;
                    }
                    let this = self.clone();
                    tokio::spawn(async move {
                        let span =
                            tracing::info_span!("image cache", cache = %c.id, name = %c.name);
                        tracing::Instrument::instrument(this.create_cache(&c), span).await;
                        this.busy
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&c.id);
                    });
                }
            }
            Err(e) => tracing::error!("listing image caches: {e}"),
        }
        if self.network.get().is_some()
            && self
                .busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(NETWORK_KEY.into())
        {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.sync_networks(None).await {
                    tracing::warn!("networks: {e}");
                }
                this.busy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(NETWORK_KEY);
            });
        }
        let due: Vec<qci_spec::ContainerGroup> = groups
            .iter()
            .filter(|g| self.meter_due(g))
            .cloned()
            .collect();
        if !due.is_empty()
            && let Err(e) = self.store.meter_all(&due, chrono::Utc::now())
        {
            tracing::warn!(groups = due.len(), "metering: {e}");
        }
        let networks = self.networks_key();
        *self.networks.lock().unwrap_or_else(|p| p.into_inner()) = networks;
        for g in groups {
            self.consider(g, networks);
        }
    }

    /// Starts a reconcile of `g` unless it is settled and not named, final, or has one under
    /// way (`networks`: the networks' fingerprint for its settle key).
    fn consider(self: &Arc<Self>, g: qci_spec::ContainerGroup, networks: u64) {
        // (Taken off only when the group's pass starts: one under way keeps it for the next.)
        let dirty = self
            .dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&g.id);
        let key = Self::settle_key(&g, networks);
        {
            let mut settled = self.settled.lock().unwrap_or_else(|p| p.into_inner());
            match settled.get(&g.id) {
                Some((k, at)) if *k == key && at.elapsed() < SETTLED_RESYNC && !dirty => {
                    return;
                }
                Some(_) => {
                    settled.remove(&g.id);
                }
                None => {}
            }
        }
        let restart = g.restart_generation > g.status.observed_restart_generation;
        if g.deletion_requested_at.is_none() && g.status.phase.is_final() && !restart {
            if dirty {
                self.dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&g.id);
            }
            self.expire_if_due(&g);
            return;
        }
        if !self
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(g.id.clone())
        {
            return;
        }
        if dirty {
            self.dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&g.id);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let id = g.id.clone();
            let span = tracing::info_span!("reconcile", group = %id, name = %g.name);
            let res = tracing::Instrument::instrument(this.reconcile(&id), span).await;
            // Steady before the pass, and still steady as the pass left it (a container
            // that exited meanwhile is in back-off, with a retry time, and is not).
            if matches!(res, Ok(false))
                && Self::steady(&g)
                && !this
                    .dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&id)
                && let Ok(Some(after)) = this.store.get_group(&id)
                && Self::steady(&after)
                && Self::settle_key(&after, networks) == key
            {
                this.settled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone(), (key, std::time::Instant::now()));
            }
            this.busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            match res {
                // It has more to do (a container to start after its sandbox, say): pass
                // it again at once, alone.
                Ok(true) => this.wake_group(&id),
                Ok(false) => {}
                Err(e) => tracing::warn!(group = %id, "reconcile: {e}"),
            }
            // Named while this pass ran: pass it again now rather than at the next resync.
            if this
                .dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
            {
                this.wake_some.notify_one();
            }
        });
    }
}
