//! The container group spec as users write it (YAML or JSON, snake_case).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::probe::Probe;
use crate::quantity::Quantity;
use crate::status::GroupStatus;

/// The tenant every resource belongs to while qci has a single one.
pub const DEFAULT_OWNER: &str = "default";
/// At most this many containers (init and work together) in one group.
pub const MAX_CONTAINERS: usize = 20;

/// What a user submits: a pod-like group of containers sharing one network namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// DNS label, unique among the owner's groups; also the group's hostname.
    pub name: String,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Time between SIGTERM and SIGKILL when containers are stopped.
    #[serde(default = "default_grace")]
    pub termination_grace_period_seconds: u64,
    /// Run one by one, each to completion, before the work containers start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<ContainerSpec>,
    /// Run in parallel once every init container has completed.
    pub containers: Vec<ContainerSpec>,
    /// Credentials for private registries; each applies to images whose registry is `server`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registry_credentials: Vec<RegistryCredential>,
    /// `auto` (the default: a Ready image cache holding all the group's images, if any),
    /// `none`, or an image cache's name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_cache: Option<String>,
    /// One /dev/shm of this size shared by all the group's containers (less than half the
    /// group's memory); without it each container has its own 64 MiB /dev/shm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub shm_size: Option<Quantity>,
    /// The group's cores, instead of the sum of its containers'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cpu: Option<Quantity>,
    /// The group's memory, instead of the sum of its containers'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub memory: Option<Quantity>,
    /// Volumes its containers may mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::Volume>,
    /// An instance type of the server's disk compatibility table ("standard" by default); it
    /// decides which disk types the group can attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// The group's network: the basic network by default, a VPC, or none; an EIP; a firewall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::NetworkSpec>,
    /// Defaults for every container's security_context, plus supplemental groups and sysctls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<crate::SecurityContext>,
    /// What the group's containers run on: `runc` (Linux namespaces and cgroups) or `gvisor`
    /// (a user-space kernel per group). Absent: the server's `--default-runtime`; the server
    /// fills it in when the group is created. It cannot change once the group exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<ContainerRuntime>,
}

/// What a group's containers run on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    /// runc: the containers share the host's kernel, confined by namespaces, cgroups,
    /// seccomp and capabilities.
    Runc,
    /// gVisor (`runsc`): the group's containers run on a kernel of their own in user space.
    Gvisor,
}

impl ContainerRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::Runc => "runc",
            ContainerRuntime::Gvisor => "gvisor",
        }
    }
}

impl std::fmt::Display for ContainerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ContainerRuntime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "runc" => Ok(ContainerRuntime::Runc),
            "gvisor" => Ok(ContainerRuntime::Gvisor),
            other => Err(format!("{other:?} is not a runtime: runc or gvisor")),
        }
    }
}

/// Which runtimes this server runs groups on: its default, what the operator allows
/// (`qci serve --default-runtime`, `--allowed-runtime`), and why a runtime cannot be used
/// on this machine at all.
#[derive(Debug, Clone)]
pub struct RuntimePolicy {
    pub default: ContainerRuntime,
    pub allowed: std::collections::BTreeSet<ContainerRuntime>,
    /// Runtimes this machine cannot run, each with the reason (and its fix).
    pub unavailable: std::collections::BTreeMap<ContainerRuntime, String>,
}

impl Default for RuntimePolicy {
    fn default() -> Self {
        RuntimePolicy {
            default: ContainerRuntime::Runc,
            allowed: [ContainerRuntime::Runc, ContainerRuntime::Gvisor].into(),
            unavailable: Default::default(),
        }
    }
}

impl RuntimePolicy {
    /// The runtime a new group runs on: the one it asks for, else the default; refused
    /// (naming `runtime`) when the operator does not allow it or the machine cannot run it.
    pub fn resolve(
        &self,
        asked: Option<ContainerRuntime>,
    ) -> Result<ContainerRuntime, crate::FieldError> {
        let r = asked.unwrap_or(self.default);
        let field = |message: String| crate::FieldError::new("runtime", message);
        if !self.allowed.contains(&r) {
            let allowed: Vec<&str> = self.allowed.iter().map(|a| a.as_str()).collect();
            return Err(field(format!(
                "{r} is not allowed on this server (it allows {})",
                allowed.join(", ")
            )));
        }
        if let Some(why) = self.unavailable.get(&r) {
            return Err(field(format!("{r} is not available on this server: {why}")));
        }
        Ok(r)
    }
}

/// A registry login. The password is stored encrypted and never shown again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredential {
    /// The registry, as `host[:port]` (a scheme or path is ignored).
    pub server: String,
    pub username: String,
    /// Write-only: the API answers with a mask.
    pub password: String,
}

/// The value shown instead of a password.
pub const PASSWORD_MASK: &str = "******";

impl RegistryCredential {
    /// `server` reduced to `host[:port]`, lower-cased, as image references name registries.
    pub fn registry(&self) -> String {
        normalize_registry(&self.server)
    }
}

/// `https://Registry.Example.com:5000/v2/` → `registry.example.com:5000`; Docker Hub's
/// aliases become `docker.io`.
pub fn normalize_registry(server: &str) -> String {
    let s = server.trim();
    let s = s.split_once("://").map(|(_, rest)| rest).unwrap_or(s);
    let host = s.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

fn default_grace() -> u64 {
    10
}

impl GroupSpec {
    /// Init containers then work containers, in order.
    pub fn all_containers(&self) -> impl Iterator<Item = &ContainerSpec> {
        self.init_containers.iter().chain(self.containers.iter())
    }

    /// What this group asks for that its runtime cannot hold, each naming its field (checked
    /// once the runtime is known). A gVisor sandbox's kernel runs every container's processes
    /// as its own tasks and serves their system calls itself, so per-container process limits,
    /// seccomp profiles of the operator's and sysctls have nothing to hold them there (this
    /// runsc's own seccomp support ignores a rule's errno: checked by hand).
    pub fn runtime_errors(&self) -> Vec<crate::FieldError> {
        if self.runtime != Some(ContainerRuntime::Gvisor) {
            return Vec::new();
        }
        let mut errs = Vec::new();
        let use_runc = "; leave it out, or use runtime: runc";
        let localhost = |sc: &Option<crate::SecurityContext>| {
            sc.as_ref()
                .and_then(|sc| sc.seccomp_profile.as_ref())
                .is_some_and(|p| p.kind == crate::SeccompType::Localhost)
        };
        let seccomp = format!(
            "a Localhost profile is not loaded in a gVisor sandbox (its kernel serves the \
             system calls itself){use_runc}"
        );
        if localhost(&self.security_context) {
            errs.push(crate::FieldError::new(
                "security_context.seccomp_profile",
                seccomp.clone(),
            ));
        }
        if self
            .security_context
            .as_ref()
            .is_some_and(|sc| !sc.sysctls.is_empty())
        {
            errs.push(crate::FieldError::new(
                "security_context.sysctls",
                format!("gVisor's kernel does not take sysctls{use_runc}"),
            ));
        }
        let lists = [
            ("init_containers", &self.init_containers),
            ("containers", &self.containers),
        ];
        for (list, containers) in lists {
            for (i, c) in containers.iter().enumerate() {
                if c.pids_limit.is_some() {
                    errs.push(crate::FieldError::new(
                        format!("{list}[{i}].pids_limit"),
                        format!(
                            "not held in a gVisor sandbox (its kernel runs the processes as \
                             its own tasks; the group's memory bounds them){use_runc}"
                        ),
                    ));
                }
                if localhost(&c.security_context) {
                    errs.push(crate::FieldError::new(
                        format!("{list}[{i}].security_context.seccomp_profile"),
                        seccomp.clone(),
                    ));
                }
            }
        }
        errs
    }

    /// What work container `c` is made from: its spec and the group settings that shape it.
    /// The controller records its hash in each container's bundle; an update recreates the
    /// containers whose identity changed and leaves the others running.
    pub fn container_identity(&self, c: &ContainerSpec) -> serde_json::Value {
        // A config-file volume mounted whole is updated in place, so its content is not part of
        // the container; mounted by sub_path it is (a file bind does not follow updates, so the
        // container is made again with the new content).
        let volumes: Vec<serde_json::Value> = self
            .volumes
            .iter()
            .filter(|v| c.volume_mounts.iter().any(|m| m.name == v.name))
            .map(|v| {
                let by_sub_path = c
                    .volume_mounts
                    .iter()
                    .any(|m| m.name == v.name && m.sub_path.is_some());
                if v.config_file.is_some() && !by_sub_path {
                    serde_json::json!({"name": v.name, "config_file": "in place"})
                } else {
                    serde_json::json!(v)
                }
            })
            .collect();
        let mut what =
            serde_json::json!({"container": c, "shm": self.shm_size.is_some(), "volumes": volumes});
        // (Only when set, so groups made before security contexts existed keep their identity.)
        if let Some(sc) = &self.security_context {
            what["security_context"] = serde_json::json!(sc);
        }
        what
    }

    /// What an update from this spec to `new` does to the work containers (init containers
    /// are not run again by an update).
    pub fn update_plan(&self, new: &GroupSpec) -> UpdatePlan {
        let mut plan = UpdatePlan::default();
        for c in &new.containers {
            match self.containers.iter().find(|o| o.name == c.name) {
                None => plan.added.push(c.name.clone()),
                Some(o) if self.container_identity(o) != new.container_identity(c) => {
                    plan.recreated.push(c.name.clone())
                }
                Some(_) => plan.kept.push(c.name.clone()),
            }
        }
        plan.removed = self
            .containers
            .iter()
            .filter(|o| !new.containers.iter().any(|c| c.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        plan
    }
}

/// The answer to a dry run (`?dry_run=true` on a create or an update): the group as it would
/// be, and for an update what happens to its containers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DryRun {
    /// The group as it would be (its normalised size and price in `resources`).
    pub group: ContainerGroup,
    /// For an update: which work containers would be recreated, added, removed or kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdatePlan>,
}

/// Which work containers an update makes again, starts, stops or leaves running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpdatePlan {
    /// Stopped and made again from the new spec.
    pub recreated: Vec<String>,
    /// New containers, started.
    pub added: Vec<String>,
    /// Containers no longer in the spec, stopped and removed.
    pub removed: Vec<String>,
    /// Left running as they are (same process).
    pub kept: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// DNS label, unique within the group.
    pub name: String,
    /// An image reference: `[registry/]repository[:tag][@digest]`.
    pub image: String,
    /// Replaces the image's ENTRYPOINT (Docker semantics: the image's CMD is then dropped too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Absolute path; defaults to the image's working dir, then `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Added to (and overriding) the image's environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Ports the container listens on; the group shares one port space.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// CPU cores, e.g. `0.5`, `2` or `500m`. On `runtime: gvisor` the containers' limits add
    /// up to their sandbox's (one sandbox runs them all), within the group's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cpu: Option<Quantity>,
    /// Memory, e.g. `256Mi`, `1Gi`, `512M` or a byte count. On `runtime: gvisor` the
    /// containers' limits add up to their sandbox's, plus 32 MiB for gVisor's own kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub memory: Option<Quantity>,
    /// When to contact the registry; Kubernetes' default: `Always` for `:latest` or no tag,
    /// `IfNotPresent` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Most processes and threads the container may have (default: the server's, 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// Restarts the container (as its group's restart policy allows) when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Decides whether the container is ready; an unready container makes its group unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Holds the other probes back until it succeeds once; failing, it restarts the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Most output kept (default 10Mi); past it the oldest is dropped, one rotated file kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub max_log_size: Option<Quantity>,
    /// The group's volumes this container sees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<crate::VolumeMount>,
    /// Who the container runs as and what it may do; fields set here win over the group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<crate::SecurityContext>,
    /// Keep the container's standard input open for `qci attach` (Kubernetes' `stdin`);
    /// without it, it reads /dev/null.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Give the container a terminal (Kubernetes' `tty`): its output is the terminal's, one
    /// stream, and `qci attach` can type into it and resize it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
}

/// The log size kept when a container sets none.
pub const DEFAULT_MAX_LOG_SIZE: u64 = 10 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum PullPolicy {
    /// Resolve the tag at the registry at every start; download only missing blobs.
    Always,
    /// Use the image if present, else pull it.
    IfNotPresent,
    /// Never contact the registry; fail with ErrImageNeverPull if the image is absent.
    Never,
}

impl ContainerSpec {
    /// A container of `image` with every optional field unset (the image's defaults apply).
    pub fn new(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            command: None,
            args: None,
            working_dir: None,
            env: vec![],
            ports: vec![],
            cpu: None,
            memory: None,
            image_pull_policy: None,
            pids_limit: None,
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            max_log_size: None,
            volume_mounts: vec![],
            security_context: None,
            stdin: false,
            tty: false,
        }
    }
}

/// Kubernetes' default: `Always` for `:latest` or no tag, `IfNotPresent` otherwise.
pub fn default_pull_policy(image: &str) -> PullPolicy {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last
        .split('@')
        .next()
        .unwrap_or(last)
        .split_once(':')
        .map(|(_, t)| t);
    if image.contains('@') || tag.is_some_and(|t| t != "latest") {
        PullPolicy::IfNotPresent
    } else {
        PullPolicy::Always
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
    /// Instead of `value`, a field of the group given when the container starts (Kubernetes'
    /// downward API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvSource>,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvSource {
    pub field_ref: FieldRef,
}

/// A field of the group: `metadata.name` (its name), `metadata.namespace` (`default`), or
/// `status.podIP` (its address in its network; empty without one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldRef {
    pub field_path: String,
}

/// The fields `value_from.field_ref.field_path` may name.
pub const ENV_FIELDS: [&str; 3] = ["metadata.name", "metadata.namespace", "status.podIP"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub port: i64,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Protocol {
    #[default]
    #[serde(alias = "tcp")]
    TCP,
    #[serde(alias = "udp")]
    UDP,
}

/// A stored container group: the spec as submitted plus what qci observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContainerGroup {
    pub id: String,
    pub name: String,
    /// The tenant that owns the group.
    pub owner: String,
    pub created_at: DateTime<Utc>,
    /// Set once deletion was requested; the group is removed when cleanup has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_requested_at: Option<DateTime<Utc>>,
    /// Incremented by each restart request (`qci restart`).
    #[serde(default)]
    pub restart_generation: u64,
    /// Requested and normalised size (and price), fixed at creation.
    #[serde(default)]
    pub resources: crate::GroupResources,
    pub spec: GroupSpec,
    pub status: GroupStatus,
    /// The node it runs on (`qci serve --node-name`, default the machine's hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// What a waiter waits for (`GET /v1/container-groups/{id}?wait_for=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum WaitFor {
    /// The group runs (or ran and ended, or its restart policy keeps it going).
    Running,
}

/// Why waiting ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The group got there.
    Reached,
    /// It will not get there by itself: it failed, is being deleted, or a container is stuck
    /// (its name, reason and message).
    Stuck(String),
}

impl ContainerGroup {
    /// A container that cannot make progress without the user: a bad image, a start error or
    /// a crash loop (seen the first time it happens). (name, reason, message)
    pub fn stuck(&self) -> Option<(&str, &str, &str)> {
        self.status
            .init_containers
            .iter()
            .chain(&self.status.containers)
            .find_map(|c| {
                let r = c.reason.as_deref()?;
                matches!(
                    r,
                    "ErrImagePull"
                        | "ImagePullBackOff"
                        | "ErrImageNeverPull"
                        | "ContainerCannotRun"
                        | "CreateContainerConfigError"
                        | "CrashLoopBackOff"
                )
                .then(|| (c.name.as_str(), r, c.message.as_deref().unwrap_or_default()))
            })
    }

    /// Whether one waiting for `want` is done waiting, and how: None while the group may
    /// still get there by itself.
    pub fn wait_outcome(&self, want: WaitFor) -> Option<WaitOutcome> {
        use crate::GroupPhase::*;
        match want {
            WaitFor::Running => {
                if let Some((name, reason, msg)) = self.stuck() {
                    return Some(WaitOutcome::Stuck(format!(
                        "container {name}: {reason}: {msg}"
                    )));
                }
                match self.status.phase {
                    // Restarting: it ran, and its restart policy keeps it going.
                    Running | Restarting | Updating | Succeeded => Some(WaitOutcome::Reached),
                    Failed => Some(WaitOutcome::Stuck(format!(
                        "failed: {}",
                        self.status.message.as_deref().unwrap_or("no reason given")
                    ))),
                    Deleting => Some(WaitOutcome::Stuck("is being deleted".into())),
                    Pending => None,
                }
            }
        }
    }

    /// The group as the API shows it: passwords replaced by [`PASSWORD_MASK`].
    pub fn masked(mut self) -> ContainerGroup {
        for c in &mut self.spec.registry_credentials {
            c.password = PASSWORD_MASK.to_string();
        }
        self
    }
}

/// The registry an image reference names (`docker.io` when it names none), in the form
/// credentials are matched against.
pub fn image_registry(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            normalize_registry(first)
        }
        _ => "docker.io".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_gvisor_sandbox_cannot_hold_is_named() {
        let fields = |yaml: &str| -> Vec<String> {
            crate::parse_spec(yaml)
                .unwrap()
                .runtime_errors()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let c = "containers: [{name: a, image: bb, pids_limit: 10, security_context: {seccomp_profile: {type: Localhost, localhost_profile: p.json}}}]";
        let sc = "security_context: {sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: '80'}], seccomp_profile: {type: Localhost, localhost_profile: p.json}}";
        let init = "init_containers: [{name: i, image: bb, pids_limit: 50}]";
        assert_eq!(
            fields(&format!("name: g\nruntime: gvisor\n{sc}\n{init}\n{c}")),
            [
                "security_context.seccomp_profile",
                "security_context.sysctls",
                "init_containers[0].pids_limit",
                "containers[0].pids_limit",
                "containers[0].security_context.seccomp_profile",
            ]
        );
        // The same on runc, or on no runtime yet, is fine; so is gVisor without them.
        assert!(fields(&format!("name: g\nruntime: runc\n{sc}\n{init}\n{c}")).is_empty());
        assert!(fields(&format!("name: g\n{sc}\n{c}")).is_empty());
        assert!(
            fields(
                "name: g\nruntime: gvisor\nsecurity_context: {seccomp_profile: {type: RuntimeDefault}, run_as_user: 1000}\ncontainers: [{name: a, image: bb, security_context: {read_only_root_filesystem: true}}]"
            )
            .is_empty()
        );
    }

    #[test]
    fn which_runtime_a_group_gets() {
        use ContainerRuntime::{Gvisor, Runc};
        let policy = |default, allowed: &[ContainerRuntime], missing: Option<ContainerRuntime>| {
            RuntimePolicy {
                default,
                allowed: allowed.iter().copied().collect(),
                unavailable: missing
                    .map(|m| (m, "runsc is not installed".to_string()))
                    .into_iter()
                    .collect(),
            }
        };
        type Case<'a> = (
            &'a str,
            RuntimePolicy,
            Option<ContainerRuntime>,
            Result<ContainerRuntime, &'a str>,
        );
        let table: [Case; 6] = [
            (
                "the default",
                policy(Runc, &[Runc, Gvisor], None),
                None,
                Ok(Runc),
            ),
            (
                "asked",
                policy(Runc, &[Runc, Gvisor], None),
                Some(Gvisor),
                Ok(Gvisor),
            ),
            (
                "an operator's gvisor default",
                policy(Gvisor, &[Gvisor], None),
                None,
                Ok(Gvisor),
            ),
            (
                "not allowed",
                policy(Gvisor, &[Gvisor], None),
                Some(Runc),
                Err("runc is not allowed on this server (it allows gvisor)"),
            ),
            (
                "not on this machine",
                policy(Runc, &[Runc, Gvisor], Some(Gvisor)),
                Some(Gvisor),
                Err("gvisor is not available on this server: runsc is not installed"),
            ),
            (
                "the default is still checked",
                policy(Gvisor, &[Runc, Gvisor], Some(Gvisor)),
                None,
                Err("gvisor is not available on this server: runsc is not installed"),
            ),
        ];
        for (what, p, asked, want) in table {
            let got = p.resolve(asked).map_err(|e| {
                assert_eq!(e.field, "runtime", "{what}");
                e.message
            });
            assert_eq!(got, want.map_err(str::to_string), "{what}");
        }
        // The spec's own words: lower case, nothing else.
        let spec: GroupSpec =
            crate::parse_spec("name: g\nruntime: gvisor\ncontainers: [{name: c, image: i}]")
                .unwrap();
        assert_eq!(spec.runtime, Some(Gvisor));
        let e = crate::parse_spec("name: g\nruntime: kata\ncontainers: [{name: c, image: i}]")
            .unwrap_err();
        assert!(e.to_string().contains("runtime"), "{e}");
    }

    #[test]
    fn what_an_update_recreates() {
        let base = r#"
name: g
volumes:
- {name: conf, config_file: {files: [{path: a.conf, content: "one"}]}}
containers:
- {name: web, image: nginx, env: [{name: A, value: "1"}], volume_mounts: [{name: conf, mount_path: /etc/app}]}
- {name: side, image: busybox, volume_mounts: [{name: conf, mount_path: /etc/x.conf, sub_path: a.conf}]}
- {name: idle, image: busybox}
"#;
        let spec = |edit: &dyn Fn(&str) -> String| -> GroupSpec {
            crate::parse_spec(&edit(base)).unwrap()
        };
        let old = spec(&|s| s.to_string());
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        type Edit<'a> = &'a dyn Fn(&str) -> String;
        let table: [(&str, Edit, UpdatePlan); 4] = [
            (
                "nothing changed",
                &|s| s.to_string(),
                UpdatePlan {
                    kept: names(&["web", "side", "idle"]),
                    ..Default::default()
                },
            ),
            (
                "one env var",
                &|s| s.replace(r#"value: "1""#, r#"value: "2""#),
                UpdatePlan {
                    recreated: names(&["web"]),
                    kept: names(&["side", "idle"]),
                    ..Default::default()
                },
            ),
            // A whole-directory config file is updated in place; a sub_path one is not.
            (
                "config file content",
                &|s| s.replace(r#"content: "one""#, r#"content: "two""#),
                UpdatePlan {
                    recreated: names(&["side"]),
                    kept: names(&["web", "idle"]),
                    ..Default::default()
                },
            ),
            (
                "one added, one removed",
                &|s| {
                    s.replace(
                        "- {name: idle, image: busybox}",
                        "- {name: new, image: busybox}",
                    )
                },
                UpdatePlan {
                    added: names(&["new"]),
                    removed: names(&["idle"]),
                    kept: names(&["web", "side"]),
                    ..Default::default()
                },
            ),
        ];
        for (what, edit, want) in table {
            assert_eq!(old.update_plan(&spec(edit)), want, "{what}");
        }
    }

    #[test]
    fn when_waiting_for_running_ends() {
        use crate::{ContainerState, ContainerStatus, GroupPhase};
        let group = |phase: GroupPhase, reason: Option<&str>| {
            let mut g: ContainerGroup = serde_json::from_value(serde_json::json!({
                "id": "cg-1", "name": "g", "owner": "default",
                "created_at": "2026-12-03T00:00:00Z",
                "spec": {"name": "g", "containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": "Pending"}
            }))
            .unwrap();
            g.status.phase = phase;
            g.status.containers = vec![ContainerStatus {
                name: "c".into(),
                state: ContainerState::Waiting,
                reason: reason.map(String::from),
                message: Some("why".into()),
                ..Default::default()
            }];
            g
        };
        use GroupPhase::*;
        let stuck = |m: &str| Some(WaitOutcome::Stuck(m.to_string()));
        for (phase, reason, want) in [
            (Pending, None, None),
            (Pending, Some("ContainerCreating"), None),
            (
                Pending,
                Some("ErrImagePull"),
                stuck("container c: ErrImagePull: why"),
            ),
            (
                Pending,
                Some("CreateContainerConfigError"),
                stuck("container c: CreateContainerConfigError: why"),
            ),
            (
                Restarting,
                Some("CrashLoopBackOff"),
                stuck("container c: CrashLoopBackOff: why"),
            ),
            (Running, None, Some(WaitOutcome::Reached)),
            (Restarting, Some("Error"), Some(WaitOutcome::Reached)),
            (Updating, None, Some(WaitOutcome::Reached)),
            (Succeeded, Some("Completed"), Some(WaitOutcome::Reached)),
            (Failed, Some("Error"), stuck("failed: no reason given")),
            (Deleting, None, stuck("is being deleted")),
        ] {
            assert_eq!(
                group(phase, reason).wait_outcome(WaitFor::Running),
                want,
                "{phase:?} {reason:?}"
            );
        }
    }

    #[test]
    fn registries() {
        assert_eq!(image_registry("127.0.0.1:5000/busybox"), "127.0.0.1:5000");
        assert_eq!(
            image_registry("Registry.Example.com/a/b:1"),
            "registry.example.com"
        );
        assert_eq!(image_registry("busybox:latest"), "docker.io");
        assert_eq!(image_registry("library/busybox"), "docker.io");
        assert_eq!(image_registry("localhost/x"), "localhost");
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(
            normalize_registry("https://R.example:5000/"),
            "r.example:5000"
        );
    }

    #[test]
    fn kubernetes_default_pull_policy() {
        assert_eq!(default_pull_policy("r:5000/bb"), PullPolicy::Always);
        assert_eq!(default_pull_policy("r:5000/bb:latest"), PullPolicy::Always);
        assert_eq!(
            default_pull_policy("r:5000/bb:1.0"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            default_pull_policy("bb@sha256:aa"),
            PullPolicy::IfNotPresent
        );
    }
}
