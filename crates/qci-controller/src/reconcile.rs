//! One pass over one group: observe, decide, act, report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use qci_image::{Credentials, PulledImage};
use qci_runtime::{ExitRecord, Observed, StartRequest, VolumeMountRequest};
use qci_spec::{
    ContainerGroup, ContainerSpec, ContainerState, ContainerStatus, EventType, GroupPhase,
    GroupStatus, Health, LastState, PullPolicy, RestartPolicy,
};

use crate::{Controller, ControllerError};

/// Wait before pulling again after failed pulls: 5 s, doubling up to 5 minutes.
const PULL_BACKOFF_BASE: Duration = Duration::from_secs(5);

fn pull_backoff(failures: u32) -> Duration {
    PULL_BACKOFF_BASE
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(BACKOFF_MAX)
}

/// Why a container has no image to start from.
#[derive(Debug, Clone)]
struct PullFailure {
    /// ErrImagePull or ErrImageNeverPull.
    reason: &'static str,
    message: String,
}
/// Crash-loop back-off: the first restart is immediate, then 10 s doubling up to 5 minutes.
/// Wait before trying again an update that could not get its images.
const UPDATE_RETRY: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The hash of what a container is made from ([`qci_spec::GroupSpec::container_identity`]): a container
/// whose recorded fingerprint differs is out of date.
fn fingerprint(g: &ContainerGroup, c: &ContainerSpec) -> String {
    use sha2::Digest;
    let what = g.spec.container_identity(c);
    hex::encode(sha2::Sha256::digest(what.to_string().as_bytes()))
}

/// Cap of the pull back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run this long forgives earlier crashes: the back-off starts over.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The wait before a restart, after `streak` quick restarts in a row: none for the first, then
/// `base`, doubling up to `max` (Kubernetes' crash-loop back-off).
fn restart_delay(streak: u32, base: Duration, max: Duration) -> Duration {
    if streak == 0 {
        return Duration::ZERO;
    }
    base.saturating_mul(1 << (streak - 1).min(16)).min(max)
}

/// True when the run lasted long enough to start the back-off over.
fn ran_long(st: &ContainerStatus) -> bool {
    match (st.started_at, st.finished_at) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default() >= BACKOFF_RESET,
        _ => false,
    }
}

/// What to do with one container in this pass.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Nothing,
    Start,
    Restart,
}

impl Controller {
    /// Returns true when another pass should follow at once.
    pub(crate) async fn reconcile(
        self: &std::sync::Arc<Self>,
        id: &str,
    ) -> Result<bool, ControllerError> {
        let Some(g) = self.store.get_group(id)? else {
            return Ok(false);
        };
        if g.deletion_requested_at.is_some() {
            self.cleanup(&g).await?;
            return Ok(false);
        }
        if g.restart_generation > g.status.observed_restart_generation {
            self.restart_group(&g).await?;
            return Ok(true);
        }
        if g.status.phase.is_final() {
            // Nothing will run in a finished group's gVisor sandbox again: its memory goes
            // back now, not at delete (a restart request makes it again).
            self.runtime.remove_gvisor_sandbox(&g.id).await?;
            return Ok(false);
        }
        self.sync(&g).await
    }

    pub(crate) fn event(
        &self,
        g: &ContainerGroup,
        container: Option<&str>,
        ty: EventType,
        reason: &str,
        message: &str,
    ) {
        if let Err(e) = self.store.add_event(&g.id, container, ty, reason, message) {
            tracing::warn!("recording event: {e}");
        }
    }

    async fn sync(
        self: &std::sync::Arc<Self>,
        g: &ContainerGroup,
    ) -> Result<bool, ControllerError> {
        if g.spec.volumes.iter().any(|v| v.disk.is_some())
            && let Some(d) = self
                .store
                .disks_of_group(&g.id)?
                .into_iter()
                .find(|d| d.phase == qci_spec::DiskPhase::Creating)
        {
            // Its image is being made (a pass or two); nothing to report as a failure.
            let msg = format!("waiting for disk {:?} to be made", d.name);
            if g.status.message.as_deref() != Some(&msg) {
                let status = GroupStatus {
                    message: Some(msg),
                    ..g.status.clone()
                };
                self.store.set_status(&g.id, &status)?;
            }
            return Ok(false);
        }
        let disks = self.attached_disks(g)?;
        if let Err(e) = self.runtime.ensure_volumes(&g.id, &g.spec.volumes, &disks) {
            let msg = format!("cannot prepare the group's volumes: {e}");
            if g.status.message.as_deref() != Some(&msg) {
                self.event(g, None, EventType::Warning, "FailedVolumes", &msg);
                let status = GroupStatus {
                    message: Some(msg),
                    ..g.status.clone()
                };
                self.store.set_status(&g.id, &status)?;
            }
            return Ok(false);
        }
        let shm = g
            .spec
            .shm_size
            .as_ref()
            .and_then(|q| qci_spec::parse_memory_bytes(&q.0).ok());
        if let Err(e) = self.runtime.ensure_sandbox(&g.id, &g.name, shm).await {
            let msg = format!("cannot create the group's namespaces: {e}");
            if g.status.message.as_deref() != Some(&msg) {
                self.event(g, None, EventType::Warning, "FailedSandbox", &msg);
                let status = GroupStatus {
                    message: Some(msg),
                    ..g.status.clone()
                };
                self.store.set_status(&g.id, &status)?;
            }
            return Ok(false);
        }
        let held = self.enforced(&g.id).is_some();
        match self.enforce_size(g) {
            Ok(true) => {}
            // Refused a moment ago: said then; tried again later.
            Ok(false) if held => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                let msg = format!("cannot hold the group to its size: {e}");
                self.event(g, None, EventType::Warning, "FailedLimits", &msg);
                // Nothing starts unlimited; a group already held to its old size (an update
                // the kernel refused, such as less memory than it uses now) carries on under it.
                if !held {
                    let status = GroupStatus {
                        message: Some(msg),
                        ..g.status.clone()
                    };
                    self.store.set_status(&g.id, &status)?;
                    return Ok(false);
                }
            }
        }
        let mut attached = g.clone();
        if !self.attach_network(&mut attached).await? {
            return Ok(false);
        }
        let g = &attached;
        let now = Utc::now();
        let policy = g.spec.restart_policy;
        let prev = &g.status;
        let init_obs = join_all(
            g.spec
                .init_containers
                .iter()
                .map(|c| self.runtime.observe(&g.id, &c.name)),
        )
        .await;
        let work_obs = join_all(
            g.spec
                .containers
                .iter()
                .map(|c| self.runtime.observe(&g.id, &c.name)),
        )
        .await;

        let backoff = (
            self.config.restart_backoff_base,
            self.config.restart_backoff_max,
        );
        let mut init: Vec<(ContainerStatus, Act)> = g
            .spec
            .init_containers
            .iter()
            .zip(&init_obs)
            .map(|(c, o)| {
                assess(
                    c,
                    find(&prev.init_containers, &c.name),
                    o,
                    policy,
                    true,
                    now,
                    backoff,
                )
            })
            .collect();
        let mut work: Vec<(ContainerStatus, Act)> = g
            .spec
            .containers
            .iter()
            .zip(&work_obs)
            .map(|(c, o)| {
                assess(
                    c,
                    find(&prev.containers, &c.name),
                    o,
                    policy,
                    false,
                    now,
                    backoff,
                )
            })
            .collect();

        // Init containers run one at a time, in order: only the first unfinished one may act.
        let mut init_done = true;
        let mut init_failed = None;
        for (i, (st, act)) in init.iter_mut().enumerate() {
            let completed = st.state == ContainerState::Terminated && st.exit_code == Some(0);
            if completed {
                continue;
            }
            if !init_done {
                *act = Act::Nothing;
                continue;
            }
            init_done = false;
            if st.state == ContainerState::Terminated {
                init_failed = Some(format!(
                    "init container {:?} failed: {}",
                    g.spec.init_containers[i].name,
                    describe_exit(st)
                ));
            }
        }
        if !init_done {
            for (_, act) in work.iter_mut() {
                *act = Act::Nothing;
            }
        }

        // Report exits seen for the first time (as the exit record tells them, whatever the
        // container's status says next).
        let observed = init_obs.iter().chain(&work_obs);
        for (c, o) in g
            .spec
            .init_containers
            .iter()
            .chain(&g.spec.containers)
            .zip(observed)
        {
            let Observed::Exited(e) = o else { continue };
            let before =
                find(&prev.init_containers, &c.name).or_else(|| find(&prev.containers, &c.name));
            if before.and_then(|b| b.finished_at) != Some(e.finished_at) {
                let ty = if e.exit_code == 0 {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                self.event(
                    g,
                    Some(&c.name),
                    ty,
                    "Exited",
                    &format!("container exited: {}", describe_exit_record(e)),
                );
            }
        }

        // Online update: containers made from an older spec are recreated (their new images
        // pulled first, so a bad update leaves the old containers running); containers no
        // longer in the spec go.
        if init_done && let Some(more) = self.update(g, &work_obs, &init, &work).await? {
            return Ok(more);
        }

        // Act: pull each image once, then start the containers that need it, in parallel.
        let to_start: Vec<(&ContainerSpec, bool, Act)> = g
            .spec
            .init_containers
            .iter()
            .zip(&init)
            .map(|(c, (_, a))| (c, true, *a))
            .chain(
                g.spec
                    .containers
                    .iter()
                    .zip(&work)
                    .map(|(c, (_, a))| (c, false, *a)),
            )
            .filter(|(_, _, a)| *a != Act::Nothing)
            .collect();
        let acted = !to_start.is_empty();
        // Why the group's gVisor sandbox could not be made (nothing started then).
        let mut sandbox_failed: Option<String> = None;
        if acted {
            let _no_gc = self.images.hold_for_start().await;
            // Each (image, policy) once per pass, whatever number of containers use it.
            let cache = self.cache_for(g);
            let mut images: Vec<(&str, Option<PullPolicy>)> = to_start
                .iter()
                .map(|(c, _, _)| (c.image.as_str(), c.image_pull_policy))
                .collect();
            images.sort_by_key(|(i, p)| (*i, p.map(|p| p as u8)));
            images.dedup();
            let cache = &cache;
            let pulled: HashMap<(&str, Option<PullPolicy>), Result<PulledImage, PullFailure>> =
                join_all(images.iter().map(|&(i, p)| async move {
                    ((i, p), self.ensure_image(g, cache, i, p).await)
                }))
                .await
                .into_iter()
                .collect();
            // While nothing of the tenant's runs, runc's work in the group's cgroup gets room.
            let starting = to_start
                .iter()
                .filter(|(c, _, _)| pulled[&(c.image.as_str(), c.image_pull_policy)].is_ok())
                .count();
            let any_running = init_obs
                .iter()
                .chain(&work_obs)
                .any(|o| matches!(o, Observed::Running(_) | Observed::Starting));
            let held = self.limits.lock().unwrap().get(&g.id).copied();
            let allowance = held.and_then(|l| {
                start_allowance(l.cpu_millis, starting, any_running).map(|cpu| (l, cpu))
            });
            let group_cgroup = self.runtime.layout.group_cgroup(&g.id);
            if let Some((_, cpu)) = allowance
                && let Err(e) = tokio::task::block_in_place(|| {
                    qci_runtime::cgroup::set_group_cpu(&group_cgroup, cpu)
                })
            {
                tracing::warn!("group {}: no start allowance: {e}", g.id);
            }
            // A gVisor group's containers join its sandbox: made before the first of them
            // (with the start allowance: gVisor boots in the group's cgroup), and made again
            // when it is gone — the host's OOM kill ends all of it, pause process included.
            let gvisor = g.spec.runtime == Some(qci_spec::ContainerRuntime::Gvisor);
            let sandbox_cgroup = qci_runtime::gvisor::sandbox_cgroup(&group_cgroup);
            if gvisor && starting > 0 {
                let start_cpu = allowance.map(|(_, cpu)| cpu);
                sandbox_failed = self.ensure_gvisor_sandbox(g, held, start_cpu).await.err();
            }
            let results = if sandbox_failed.is_some() {
                Vec::new()
            } else {
                join_all(to_start.iter().map(|(c, is_init, act)| {
                    let pulled = &pulled[&(c.image.as_str(), c.image_pull_policy)];
                    let prev_st = if *is_init {
                        init.iter().find(|(s, _)| s.name == c.name)
                    } else {
                        work.iter().find(|(s, _)| s.name == c.name)
                    }
                    .map(|(s, _)| s.clone())
                    .unwrap_or_default();
                    self.start_one(g, c, *act, pulled, prev_st)
                }))
                .await
            };
            // (A sandbox's containers are set up by gVisor's kernel, in the sandbox's cgroup:
            // it had the allowance too, and gets its own quota back.)
            if let Some((l, _)) = allowance
                && gvisor
                && sandbox_failed.is_none()
                && let Err(e) = tokio::task::block_in_place(|| {
                    let (cpu, _) =
                        qci_spec::sandbox_limits(&g.spec, (l.cpu_millis, l.memory_bytes));
                    qci_runtime::cgroup::set_group_cpu(&sandbox_cgroup, cpu)
                })
            {
                // Forgotten as held: the next pass puts the whole size on again.
                tracing::warn!("group {}: restoring its sandbox's CPU quota: {e}", g.id);
                self.limits.lock().unwrap().remove(&g.id);
            }
            if let Some((l, _)) = allowance
                && let Err(e) = tokio::task::block_in_place(|| {
                    qci_runtime::cgroup::set_group_cpu(&group_cgroup, l.cpu_millis)
                })
            {
                // Forgotten as held: the next pass puts the whole size on again.
                tracing::warn!("group {}: restoring its CPU quota: {e}", g.id);
                self.limits.lock().unwrap().remove(&g.id);
            }
            for ((c, is_init, _), st) in to_start.iter().zip(results) {
                let list = if *is_init { &mut init } else { &mut work };
                if let Some(slot) = list.iter_mut().find(|(s, _)| s.name == c.name) {
                    slot.0 = st;
                }
            }
        }

        let init_st: Vec<ContainerStatus> = init.into_iter().map(|(s, _)| s).collect();
        let mut work_st: Vec<ContainerStatus> = work.into_iter().map(|(s, _)| s).collect();
        for (c, st) in g.spec.containers.iter().zip(work_st.iter_mut()) {
            self.tick_probes(g, c, st);
        }
        let (phase, mut message) = phase_of(&g.spec, &init_st, &work_st, init_failed);
        if let Some(msg) = sandbox_failed {
            // Said once; tried again at the next pass.
            if prev.message.as_deref() != Some(&msg) {
                self.event(g, None, EventType::Warning, "FailedSandbox", &msg);
            }
            message = Some(msg);
        }
        let phase_since = if phase == prev.phase {
            prev.phase_since.or(Some(now))
        } else {
            Some(now)
        };
        let status = GroupStatus {
            phase,
            message,
            init_containers: init_st,
            containers: work_st,
            phase_since,
            observed_restart_generation: prev.observed_restart_generation,
            health: Health::Checking,
            retry_at: None,
            ip: prev.ip.clone(),
            eip: prev.eip.clone(),
            limits: self.enforced(&g.id),
        };
        let status = GroupStatus {
            health: crate::health::health_of(status.phase, &status.containers),
            ..status
        };
        if status != *prev {
            if status.phase != prev.phase {
                let ty = if status.phase == GroupPhase::Failed {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                let msg = match &status.message {
                    Some(m) => format!("group is {}: {m}", status.phase),
                    None => format!("group is {}", status.phase),
                };
                self.event(g, None, ty, &status.phase.to_string(), &msg);
            }
            self.store.set_status(&g.id, &status)?;
        }
        if status.phase.is_final() {
            // (Passes skip finished groups: this is the last one.)
            self.runtime.remove_gvisor_sandbox(&g.id).await?;
        }
        Ok(acted)
    }

    /// Puts the group's normalised size on its cgroup (once per process, and again when an
    /// update changes it), before any of its containers starts: together they can never use
    /// more than the group is billed for.
    /// Ok(false): the kernel refused this size less than 30 s ago; it is not tried again yet.
    fn enforce_size(&self, g: &ContainerGroup) -> Result<bool, qci_runtime::CgroupError> {
        let r = &g.resources;
        if r.cpu <= 0.0 || r.memory_bytes == 0 {
            // (Groups stored before sizes existed.)
            return Ok(true);
        }
        let want = qci_runtime::GroupLimits {
            cpu_millis: (r.cpu * 1000.0).round() as u64,
            memory_bytes: r.memory_bytes,
        };
        if self.limits.lock().unwrap().get(&g.id) == Some(&want) {
            return Ok(true);
        }
        // A size the kernel refused is tried again every 30 s, not at every pass.
        let key = format!("{}:{want:?}", g.id);
        if let Some(at) = self.limit_refused.lock().unwrap().get(&key)
            && at.elapsed() < Duration::from_secs(30)
        {
            return Ok(false);
        }
        let group_cgroup = self.runtime.layout.group_cgroup(&g.id);
        if let Err(e) = tokio::task::block_in_place(|| {
            qci_runtime::cgroup::set_group_limits(&group_cgroup, want)
        }) {
            self.limit_refused
                .lock()
                .unwrap()
                .insert(key, std::time::Instant::now());
            return Err(e);
        }
        self.limit_refused
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&format!("{}:", g.id)));
        self.limits.lock().unwrap().insert(g.id.clone(), want);
        Ok(true)
    }

    /// The size set on the group's cgroup by this process, if any.
    fn enforced(&self, id: &str) -> Option<qci_spec::EnforcedLimits> {
        self.limits
            .lock()
            .unwrap()
            .get(id)
            .map(|l| qci_spec::EnforcedLimits {
                cpu: l.cpu_millis as f64 / 1000.0,
                memory_bytes: l.memory_bytes,
            })
    }

    /// The image for a container, as its pull policy says: from the store when allowed and
    /// present, else from the registry with the group's credential for that registry.
    async fn ensure_image(
        &self,
        g: &ContainerGroup,
        cache: &Result<Option<qci_spec::ImageCache>, crate::cache::CacheProblem>,
        image: &str,
        given: Option<PullPolicy>,
    ) -> Result<PulledImage, PullFailure> {
        // An image cache serves every image it holds, without a registry request, unless the
        // container asks for Always itself.
        if given != Some(PullPolicy::Always) {
            match cache {
                Err(p) => {
                    return Err(PullFailure {
                        reason: p.reason,
                        message: p.message.clone(),
                    });
                }
                Ok(Some(c)) => {
                    if let Some(img) = self.cached_image(c, image) {
                        self.event(
                            g,
                            None,
                            EventType::Normal,
                            "Pulled",
                            &format!(
                                "image {image:?} from image cache {:?} ({}, {}), no download",
                                c.name,
                                img.digest,
                                human_bytes(img.size)
                            ),
                        );
                        return Ok(img);
                    }
                    if g.spec.image_cache.as_deref().is_some_and(|m| m != "auto") {
                        return Err(PullFailure {
                            reason: "ErrImageCache",
                            message: format!(
                                "image cache {:?} does not hold image {image:?}",
                                c.name
                            ),
                        });
                    }
                }
                Ok(None) => {}
            }
        }
        let policy = given.unwrap_or_else(|| qci_spec::default_pull_policy(image));
        let creds = self.credentials_for(g, image).map_err(|e| PullFailure {
            reason: "ErrImagePull",
            message: e.to_string(),
        })?;
        if policy != PullPolicy::Always {
            if let Some(img) = self.images.local_for(image, creds.as_ref()) {
                self.event(
                    g,
                    None,
                    EventType::Normal,
                    "Pulled",
                    &format!(
                        "image {image:?} is already present on this machine ({}, {}), no download",
                        img.digest,
                        human_bytes(img.size)
                    ),
                );
                return Ok(img);
            }
            if policy == PullPolicy::Never {
                let message =
                    format!("image {image:?} is not present and image_pull_policy is Never");
                self.event(g, None, EventType::Warning, "ErrImageNeverPull", &message);
                return Err(PullFailure {
                    reason: "ErrImageNeverPull",
                    message,
                });
            }
        }
        let login = creds
            .as_ref()
            .map(|c| format!(" as {}", c.username))
            .unwrap_or_default();
        self.event(
            g,
            None,
            EventType::Normal,
            "Pulling",
            &format!("pulling image {image:?}{login}"),
        );
        let t = Instant::now();
        match self.images.pull(image, creds.as_ref(), None).await {
            Ok(img) => {
                let how = if img.downloaded_bytes == 0 {
                    "is up to date".to_string()
                } else {
                    format!(
                        "was pulled, {} downloaded",
                        human_bytes(img.downloaded_bytes)
                    )
                };
                self.event(
                    g,
                    None,
                    EventType::Normal,
                    "Pulled",
                    &format!(
                        "image {image:?} {how} ({}, {:.2}s)",
                        img.digest,
                        t.elapsed().as_secs_f64()
                    ),
                );
                Ok(img)
            }
            Err(e) => {
                let message = e.to_string();
                self.event(
                    g,
                    None,
                    EventType::Warning,
                    "Failed",
                    &format!("failed to pull image {image:?}: {message}"),
                );
                Err(PullFailure {
                    reason: "ErrImagePull",
                    message,
                })
            }
        }
    }

    /// The group's credential for the image's registry, decrypted.
    fn credentials_for(
        &self,
        g: &ContainerGroup,
        image: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        let registry = qci_spec::image_registry(image);
        let Some(c) = g
            .spec
            .registry_credentials
            .iter()
            .find(|c| c.registry() == registry)
        else {
            return Ok(None);
        };
        let password = self
            .store
            .reveal(&c.password)
            .map_err(|source| CredentialError { registry, source })?;
        Ok(Some(Credentials {
            username: c.username.clone(),
            password,
        }))
    }

    async fn start_one(
        &self,
        g: &ContainerGroup,
        c: &ContainerSpec,
        act: Act,
        pulled: &Result<PulledImage, PullFailure>,
        mut st: ContainerStatus,
    ) -> ContainerStatus {
        let name = c.name.as_str();
        let img = match pulled {
            Ok(img) => img,
            Err(f) => {
                st.state = ContainerState::Waiting;
                st.reason = Some(f.reason.into());
                st.message = Some(f.message.clone());
                st.pull_failures += 1;
                st.retry_at = Some(Utc::now() + pull_backoff(st.pull_failures));
                return st;
            }
        };
        st.pull_failures = 0;
        if let Err(e) = self.images.touch(img).await {
            tracing::warn!("recording use of {}: {e}", img.reference);
        }
        if act == Act::Restart {
            st.last_state = Some(LastState {
                exit_code: st.exit_code,
                signal: st.signal,
                reason: st.reason.clone(),
                message: st.message.clone(),
                started_at: st.started_at,
                finished_at: st.finished_at,
            });
            st.backoff_streak = if ran_long(&st) {
                1
            } else {
                st.backoff_streak + 1
            };
            st.signal = None;
            st.restart_count += 1;
            self.event(
                g,
                Some(name),
                EventType::Normal,
                "Restarting",
                &format!("restarting container (restart {})", st.restart_count),
            );
        }
        let config = crate::process::container_config(
            c,
            &img.config,
            &g.name,
            g.status.ip.as_deref(),
            g.spec.shm_size.is_some(),
            self.config.default_pids_limit,
        );
        let security = crate::process::security(
            g.spec.security_context.as_ref(),
            c.security_context.as_ref(),
            &self.config.seccomp_default,
            &self.config.seccomp_dir,
        );
        let config = match (config, security) {
            (Err(e), _) => Err((e.to_string(), false)),
            (_, Err(e)) => Err((e.to_string(), true)),
            (Ok(mut config), Ok(security)) => {
                config.security = security;
                Ok(config)
            }
        };
        let started = match config {
            Err((msg, config_error)) => {
                let _ = self
                    .runtime
                    .record_start_failure(&g.id, name, &msg, config_error)
                    .await;
                Err((msg, config_error))
            }
            Ok(config) => {
                let req = StartRequest {
                    group_id: g.id.clone(),
                    name: name.to_string(),
                    layers: img
                        .layers
                        .iter()
                        .map(|l| self.images.layer_dir(l))
                        .collect(),
                    config,
                    fingerprint: fingerprint(g, c),
                    volume_mounts: Self::volume_mounts(g, c),
                    gvisor: g.spec.runtime == Some(qci_spec::ContainerRuntime::Gvisor),
                };
                // A few starts at a time: many at once contend for the kernel's mount and
                // cgroup locks and leave the API no CPU, and start no faster.
                let _turn = self.starts.acquire().await;
                self.runtime
                    .start(&req)
                    .await
                    .map_err(|e| (e.to_string(), e.is_config()))
            }
        };
        st.image_digest = Some(img.digest.clone());
        st.retry_at = None;
        match started {
            Ok(rec) => {
                self.event(
                    g,
                    Some(name),
                    EventType::Normal,
                    "Started",
                    &format!("started container (pid {})", rec.pid),
                );
                st.state = ContainerState::Running;
                st.reason = None;
                st.message = None;
                st.exit_code = None;
                st.pid = Some(rec.pid);
                st.started_at = Some(rec.started_at);
                st.finished_at = None;
            }
            Err((msg, config_error)) => {
                let reason = if config_error {
                    "CreateContainerConfigError"
                } else {
                    "ContainerCannotRun"
                };
                self.event(
                    g,
                    Some(name),
                    EventType::Warning,
                    "Failed",
                    &format!("cannot start container: {msg}"),
                );
                // The runtime left an exit record; the next pass applies the restart policy.
                st.state = ContainerState::Waiting;
                st.reason = Some(reason.into());
                st.message = Some(msg);
            }
        }
        st
    }

    /// Makes the group's gVisor sandbox if it is not running, and holds it to its containers'
    /// limits added up ([`qci_spec::sandbox_limits`]: in one sandbox they cannot hold each
    /// container apart), within the group's size `held` — its CPU quota `start_cpu` instead
    /// while containers start with the start allowance (the caller puts it back). Err: why,
    /// for the group's status.
    async fn ensure_gvisor_sandbox(
        &self,
        g: &ContainerGroup,
        held: Option<qci_runtime::GroupLimits>,
        start_cpu: Option<u64>,
    ) -> Result<(), String> {
        self.runtime
            .ensure_gvisor_sandbox(&g.id)
            .await
            .map_err(|e| format!("cannot make the group's gVisor sandbox: {e}"))?;
        let Some(size) = held else { return Ok(()) };
        let (cpu_millis, memory_bytes) =
            qci_spec::sandbox_limits(&g.spec, (size.cpu_millis, size.memory_bytes));
        let cgroup = qci_runtime::gvisor::sandbox_cgroup(&self.runtime.layout.group_cgroup(&g.id));
        tokio::task::block_in_place(|| {
            qci_runtime::cgroup::set_group_limits(
                &cgroup,
                qci_runtime::GroupLimits {
                    cpu_millis: start_cpu.unwrap_or(cpu_millis),
                    memory_bytes,
                },
            )
        })
        .map_err(|e| format!("cannot hold the gVisor sandbox to its containers' limits: {e}"))
    }

    /// The group's disk volumes: volume name → the id of the disk attached for it.
    fn attached_disks(
        &self,
        g: &ContainerGroup,
    ) -> Result<std::collections::HashMap<String, String>, ControllerError> {
        if !g.spec.volumes.iter().any(|v| v.disk.is_some()) {
            return Ok(Default::default());
        }
        let attached = self.store.disks_of_group(&g.id)?;
        Ok(g.spec
            .volumes
            .iter()
            .filter_map(|v| {
                let want = &v.disk.as_ref()?.id;
                let d = attached
                    .iter()
                    .find(|d| &d.id == want)
                    .or_else(|| attached.iter().find(|d| &d.name == want))?;
                Some((v.name.clone(), d.id.clone()))
            })
            .collect())
    }

    /// The group's volumes the container mounts, as the runtime binds them.
    fn volume_mounts(g: &ContainerGroup, c: &ContainerSpec) -> Vec<VolumeMountRequest> {
        c.volume_mounts
            .iter()
            .filter_map(|m| {
                // Validation guarantees the volume exists.
                let v = g.spec.volumes.iter().find(|v| v.name == m.name)?;
                Some(VolumeMountRequest {
                    volume: m.name.clone(),
                    sub_path: m.sub_path.clone(),
                    create: v.empty_dir.is_some() || v.disk.is_some(),
                    dest: m.mount_path.clone(),
                    read_only: m.read_only.unwrap_or(v.config_file.is_some()),
                })
            })
            .collect()
    }

    /// Brings containers in line with an updated spec. `None` when nothing is out of date;
    /// else whether another pass should follow at once.
    async fn update(
        self: &std::sync::Arc<Self>,
        g: &ContainerGroup,
        work_obs: &[Observed],
        init: &[(ContainerStatus, Act)],
        work: &[(ContainerStatus, Act)],
    ) -> Result<Option<bool>, ControllerError> {
        let stale: Vec<&ContainerSpec> = g
            .spec
            .containers
            .iter()
            .zip(work_obs)
            .filter(|(_, o)| !matches!(o, Observed::Absent | Observed::Broken))
            .filter(|(c, _)| {
                self.runtime
                    .fingerprint(&g.id, &c.name)
                    .is_some_and(|f| f != fingerprint(g, c))
            })
            .map(|(c, _)| c)
            .collect();
        let listed = self
            .listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let gone: Vec<String> = listed
            .get(&g.id)
            .into_iter()
            .flatten()
            .filter(|n| !g.spec.all_containers().any(|c| &c.name == *n))
            .cloned()
            .collect();
        if stale.is_empty() && gone.is_empty() {
            return Ok(None);
        }
        let now = Utc::now();
        let keep = |message: Option<String>, retry_at| GroupStatus {
            phase: GroupPhase::Updating,
            message,
            init_containers: init.iter().map(|(s, _)| s.clone()).collect(),
            containers: work.iter().map(|(s, _)| s.clone()).collect(),
            phase_since: if g.status.phase == GroupPhase::Updating {
                g.status.phase_since
            } else {
                Some(now)
            },
            observed_restart_generation: g.status.observed_restart_generation,
            health: g.status.health,
            retry_at,
            ip: g.status.ip.clone(),
            eip: g.status.eip.clone(),
            limits: g.status.limits,
        };
        if g.status.retry_at.is_some_and(|at| at > now) {
            return Ok(Some(false));
        }
        let cache = self.cache_for(g);
        for c in &stale {
            if let Err(f) = self
                .ensure_image(g, &cache, &c.image, c.image_pull_policy)
                .await
            {
                let msg = format!(
                    "the update waits: container {:?}: {}: {}",
                    c.name, f.reason, f.message
                );
                if g.status.message.as_deref() != Some(&msg) {
                    self.event(
                        g,
                        Some(&c.name),
                        EventType::Warning,
                        "UpdateFailed",
                        &format!("{msg}; the old container keeps running"),
                    );
                }
                self.store
                    .set_status(&g.id, &keep(Some(msg), Some(now + UPDATE_RETRY)))?;
                return Ok(Some(false));
            }
        }
        self.store
            .set_status(&g.id, &keep(Some("updating".into()), None))?;
        let grace = Duration::from_secs(g.spec.termination_grace_period_seconds);
        let names: Vec<String> = stale.iter().map(|c| c.name.clone()).chain(gone).collect();
        for n in &names {
            let what = if stale.iter().any(|c| &c.name == n) {
                "recreating it with its new spec"
            } else {
                "it left the spec"
            };
            self.event(
                g,
                Some(n),
                EventType::Normal,
                "Updating",
                &format!("stopping container {n:?}: {what}"),
            );
        }
        let stops = names.iter().map(|n| async move {
            self.runtime.stop(&g.id, n, grace).await?;
            self.runtime.remove_container(&g.id, n).await
        });
        for r in join_all(stops).await {
            r?;
        }
        Ok(Some(true))
    }

    /// Carries out a restart request: every container is stopped and removed, then the group
    /// starts over from its init containers. Restart counts are kept.
    async fn restart_group(&self, g: &ContainerGroup) -> Result<(), ControllerError> {
        let mut status = g.status.clone();
        status.phase = GroupPhase::Restarting;
        status.message = Some("restart requested".into());
        status.phase_since = Some(Utc::now());
        self.store.set_status(&g.id, &status)?;
        self.event(
            g,
            None,
            EventType::Normal,
            "Restarting",
            "restart requested: stopping every container",
        );
        self.stop_and_remove_all(g).await?;
        let reset = |list: &[ContainerStatus]| -> Vec<ContainerStatus> {
            list.iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    restart_count: c.restart_count,
                    reason: Some("ContainerCreating".into()),
                    ..Default::default()
                })
                .collect()
        };
        let status = GroupStatus {
            phase: GroupPhase::Restarting,
            message: None,
            init_containers: reset(&status.init_containers),
            containers: reset(&status.containers),
            phase_since: Some(Utc::now()),
            observed_restart_generation: g.restart_generation,
            health: Health::Checking,
            retry_at: None,
            ip: status.ip.clone(),
            eip: status.eip.clone(),
            limits: status.limits,
        };
        self.store.set_status(&g.id, &status)?;
        Ok(())
    }

    async fn stop_and_remove_all(&self, g: &ContainerGroup) -> Result<(), ControllerError> {
        let grace = Duration::from_secs(g.spec.termination_grace_period_seconds);
        let names: Vec<&str> = g.spec.all_containers().map(|c| c.name.as_str()).collect();
        let stops = names.iter().map(|n| async move {
            if matches!(
                self.runtime.observe(&g.id, n).await,
                Observed::Running(_) | Observed::Starting
            ) {
                self.event(
                    g,
                    Some(n),
                    EventType::Normal,
                    "Killing",
                    &format!("stopping container {n:?}"),
                );
            }
            self.runtime.stop(&g.id, n, grace).await
        });
        for r in join_all(stops).await {
            r?;
        }
        for n in &names {
            self.runtime.remove_container(&g.id, n).await?;
        }
        Ok(())
    }

    /// Stops every container (SIGTERM, SIGKILL after the grace period), removes everything
    /// the group had on this machine, then the group itself.
    async fn cleanup(&self, g: &ContainerGroup) -> Result<(), ControllerError> {
        self.stop_and_remove_all(g).await?;
        // (Asks runsc only when the group has a sandbox's bundle: also after a crash, or for
        // a group whose sandbox was never made.)
        self.runtime.remove_gvisor_sandbox(&g.id).await?;
        self.detach_network(g).await?;
        self.runtime.remove_group(&g.id).await?;
        self.limits.lock().unwrap().remove(&g.id);
        self.settled.lock().unwrap().remove(&g.id);
        self.dirty.lock().unwrap().remove(&g.id);
        self.limit_refused
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&format!("{}:", g.id)));
        self.store.remove_group(&g.id)?;
        self.detached.lock().unwrap().remove(&g.id);
        tracing::info!(group = %g.id, "deleted");
        Ok(())
    }
}

/// The CPU quota (millicores) a group's cgroup has while `starting` of its containers start,
/// or None to keep its size. `runc init` sets each container up inside the group's cgroup:
/// that is qci's work, not the tenant's, and held to the group's size (a quarter of a core by
/// default) it waited out CFS periods — two containers started together took nearly twice as
/// long as one. So while none of the group's containers runs (its first start, or a start
/// after all of them exited) the group gets one more core per container starting, until the
/// starts return (the quota is put back then); a tenant process started early in that window
/// runs unthrottled for at most the rest of it. With a container of the group already running
/// the size holds: that container's work would get the room.
fn start_allowance(cpu_millis: u64, starting: usize, any_running: bool) -> Option<u64> {
    (starting > 0 && !any_running).then(|| cpu_millis + 1000 * starting as u64)
}

fn find<'a>(list: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    list.iter().find(|s| s.name == name)
}

/// The container's status as observed, and what this pass should do about it.
fn assess(
    c: &ContainerSpec,
    prev: Option<&ContainerStatus>,
    obs: &Observed,
    policy: RestartPolicy,
    is_init: bool,
    now: DateTime<Utc>,
    backoff: (Duration, Duration),
) -> (ContainerStatus, Act) {
    let mut st = prev.cloned().unwrap_or_else(|| ContainerStatus {
        name: c.name.clone(),
        ..Default::default()
    });
    st.pid = None;
    match obs {
        Observed::Absent | Observed::Broken => {
            st.state = ContainerState::Waiting;
            if st.retry_at.is_some_and(|at| at > now) {
                // Between pull attempts, as Kubernetes says it (ErrImageNeverPull stays).
                if st.reason.as_deref() == Some("ErrImagePull") {
                    st.reason = Some("ImagePullBackOff".into());
                }
                return (st, Act::Nothing);
            }
            if st.reason.is_none() {
                st.reason = Some("ContainerCreating".into());
            }
            (st, Act::Start)
        }
        Observed::Starting => {
            st.state = ContainerState::Created;
            st.reason = None;
            (st, Act::Nothing)
        }
        Observed::Running(s) => {
            st.state = ContainerState::Running;
            st.reason = None;
            st.message = None;
            st.exit_code = None;
            st.finished_at = None;
            st.started_at = Some(s.started_at);
            st.pid = Some(s.pid);
            st.retry_at = None;
            (st, Act::Nothing)
        }
        Observed::Exited(e) => {
            fill_exit(&mut st, e);
            let failed = e.exit_code != 0;
            let restart = match policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => failed,
                // Init containers that completed never run again.
                RestartPolicy::Always => failed || !is_init,
            };
            if !restart {
                st.retry_at = None;
                return (st, Act::Nothing);
            }
            let at = match st.retry_at {
                Some(at) => at,
                None => {
                    let streak = if ran_long(&st) { 0 } else { st.backoff_streak };
                    e.finished_at
                        + chrono::Duration::from_std(restart_delay(streak, backoff.0, backoff.1))
                            .unwrap_or_default()
                }
            };
            if at <= now {
                st.retry_at = None;
                (st, Act::Restart)
            } else {
                st.retry_at = Some(at);
                st.state = ContainerState::Waiting;
                st.reason = Some("CrashLoopBackOff".into());
                st.message = Some(format!(
                    "last run: {}; restarting in {}s",
                    describe_exit_record(e),
                    (at - now).num_seconds().max(1)
                ));
                (st, Act::Nothing)
            }
        }
    }
}

fn fill_exit(st: &mut ContainerStatus, e: &ExitRecord) {
    st.state = ContainerState::Terminated;
    st.exit_code = Some(e.exit_code);
    st.finished_at = Some(e.finished_at);
    st.started_at = e.started_at;
    st.signal = e.signal;
    st.reason = Some(
        if e.config_error {
            "CreateContainerConfigError"
        } else if e.start_error.is_some() {
            "ContainerCannotRun"
        } else if e.oom_killed {
            "OOMKilled"
        } else if e.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .into(),
    );
    st.message = e.start_error.clone().or_else(|| {
        e.lost.then(|| {
            "the container stopped while no monitor watched it (was the host restarted?)"
                .to_string()
        })
    });
}

fn describe_exit_record(e: &ExitRecord) -> String {
    let mut st = ContainerStatus::default();
    fill_exit(&mut st, e);
    describe_exit(&st)
}

fn describe_exit(st: &ContainerStatus) -> String {
    let mut s = format!("exit code {}", st.exit_code.unwrap_or(-1));
    if let Some(r) = &st.reason {
        s.push_str(&format!(" ({r})"));
    }
    if let Some(m) = &st.message {
        s.push_str(&format!(": {m}"));
    }
    s
}

/// The group's phase follows from its containers' states.
fn phase_of(
    spec: &qci_spec::GroupSpec,
    init: &[ContainerStatus],
    work: &[ContainerStatus],
    init_failed: Option<String>,
) -> (GroupPhase, Option<String>) {
    if let Some(msg) = init_failed {
        // A failed init container is only final when it will not be retried.
        if spec.restart_policy == RestartPolicy::Never {
            return (GroupPhase::Failed, Some(msg));
        }
        return (GroupPhase::Pending, Some(msg));
    }
    let init_done = init
        .iter()
        .all(|s| s.state == ContainerState::Terminated && s.exit_code == Some(0));
    if !init_done {
        let waiting = init.iter().chain(work).find_map(waiting_reason);
        return (GroupPhase::Pending, waiting);
    }
    if work.iter().all(|s| s.state == ContainerState::Terminated) {
        return match work.iter().find(|s| s.exit_code != Some(0)) {
            None => (GroupPhase::Succeeded, None),
            Some(f) => (
                GroupPhase::Failed,
                Some(format!(
                    "container {:?} failed: {}",
                    f.name,
                    describe_exit(f)
                )),
            ),
        };
    }
    if work
        .iter()
        .any(|s| s.reason.as_deref() == Some("CrashLoopBackOff"))
    {
        return (GroupPhase::Restarting, work.iter().find_map(waiting_reason));
    }
    let started = work.iter().all(|s| {
        s.state != ContainerState::Waiting || s.restart_count > 0 || s.started_at.is_some()
    });
    if started
        && work
            .iter()
            .any(|s| matches!(s.state, ContainerState::Running | ContainerState::Waiting))
    {
        return (GroupPhase::Running, work.iter().find_map(waiting_reason));
    }
    (GroupPhase::Pending, work.iter().find_map(waiting_reason))
}

fn waiting_reason(s: &ContainerStatus) -> Option<String> {
    if s.state != ContainerState::Waiting {
        return None;
    }
    let reason = s.reason.as_deref()?;
    if reason == "ContainerCreating" {
        return None;
    }
    Some(match &s.message {
        Some(m) => format!("container {:?}: {reason}: {m}", s.name),
        None => format!("container {:?}: {reason}", s.name),
    })
}

fn human_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// A group's registry password that cannot be unsealed.
#[derive(Debug, thiserror::Error)]
#[error("the credential for {registry} cannot be read: {source}")]
pub(crate) struct CredentialError {
    registry: String,
    #[source]
    source: qci_store::StoreError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_backoff_doubles() {
        assert_eq!(pull_backoff(1), Duration::from_secs(5));
        assert_eq!(pull_backoff(2), Duration::from_secs(10));
        assert_eq!(pull_backoff(20), BACKOFF_MAX);
    }

    #[test]
    fn a_start_gets_room_only_while_nothing_of_the_group_runs() {
        // (size in millicores, containers starting, one of the group running) → quota
        let table = [
            (250, 1, false, Some(1250)),
            (250, 2, false, Some(2250)),
            (2000, 3, false, Some(5000)),
            (250, 0, false, None),
            (250, 1, true, None),
            (250, 2, true, None),
        ];
        for (cpu, starting, running, want) in table {
            assert_eq!(
                start_allowance(cpu, starting, running),
                want,
                "{cpu}m, {starting} starting, running {running}"
            );
        }
    }

    #[test]
    fn backoff() {
        let (b, m) = (Duration::from_secs(10), Duration::from_secs(300));
        assert_eq!(restart_delay(0, b, m), Duration::ZERO);
        assert_eq!(restart_delay(1, b, m), Duration::from_secs(10));
        assert_eq!(restart_delay(3, b, m), Duration::from_secs(40));
        assert_eq!(restart_delay(30, b, m), m);
    }
}
