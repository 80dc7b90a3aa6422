//! What qci observed: group phase, per-container state, and events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum GroupPhase {
    /// Accepted; images are being pulled or containers started.
    #[default]
    Pending,
    Running,
    /// A work container waits to be restarted (crash-loop back-off), or a restart was asked for.
    Restarting,
    /// Containers are being recreated with an updated spec.
    Updating,
    /// Every container ended successfully and none will be restarted.
    Succeeded,
    /// A container failed and the restart policy does not restart it.
    Failed,
    /// Deletion was requested; containers are being stopped and cleaned up.
    Deleting,
}

impl GroupPhase {
    /// True once the group will not change by itself any more.
    pub fn is_final(self) -> bool {
        matches!(self, GroupPhase::Succeeded | GroupPhase::Failed)
    }
}

impl std::fmt::Display for GroupPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct GroupStatus {
    pub phase: GroupPhase,
    /// Why the group is in its phase, when that is not obvious (for example what failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub init_containers: Vec<ContainerStatus>,
    #[serde(default)]
    pub containers: Vec<ContainerStatus>,
    /// When the group entered its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<DateTime<Utc>>,
    /// The last restart request carried out.
    #[serde(default)]
    pub observed_restart_generation: u64,
    /// checking until known; healthy when every work container that should run is running and
    /// ready; unhealthy otherwise.
    #[serde(default)]
    pub health: Health,
    /// When a blocked update is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The group's private address (its containers share it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The EIP the group is published on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip: Option<String>,
    /// The size its cgroup holds the group to (all its containers together), once applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<EnforcedLimits>,
}

/// The cores and memory a group's containers may use together, as set on its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnforcedLimits {
    pub cpu: f64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Checking,
    Healthy,
    Unhealthy,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Checking => "checking",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    #[default]
    Waiting,
    Created,
    Running,
    Terminated,
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContainerState::Waiting => "waiting",
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Terminated => "terminated",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct ContainerStatus {
    pub name: String,
    pub state: ContainerState,
    pub restart_count: u32,
    pub exit_code: Option<i32>,
    /// Completed, Error, OOMKilled, ContainerCreating, ErrImagePull, CrashLoopBackOff, ...
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The manifest digest of the image the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Host PID of the container's first process while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When qci tries again after a failed pull or start, or restarts after an exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// Failed pulls in a row (the back-off between tries doubles with each).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pull_failures: u32,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// How its previous run ended (set when it is restarted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<LastState>,
    /// Quick restarts in a row; the back-off doubles with each and starts over after a run of
    /// ten minutes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub backoff_streak: u32,
    /// Whether it passes its readiness probe (true when running without one); None until known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Whether its startup probe has succeeded (true when running without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
}

/// How a container's previous run ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct LastState {
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Something that happened to a group: Pulling, Pulled, Created, Started, Failed, Killing, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub reason: String,
    pub message: String,
    /// When it last happened.
    pub time: DateTime<Utc>,
    /// When it first happened (repeats are folded into one event).
    pub first_time: DateTime<Utc>,
    /// How many times it happened.
    pub count: u64,
    /// Increases with every new or repeated event (for watching).
    pub seq: i64,
}
