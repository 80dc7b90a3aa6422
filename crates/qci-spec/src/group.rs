//! The container group spec as users write it (YAML or JSON, snake_case).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
}

fn default_grace() -> u64 {
    10
}

impl GroupSpec {
    /// Init containers then work containers, in order.
    pub fn all_containers(&self) -> impl Iterator<Item = &ContainerSpec> {
        self.init_containers.iter().chain(self.containers.iter())
    }
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
    /// CPU cores, e.g. `0.5`, `2` or `500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cpu: Option<Quantity>,
    /// Memory, e.g. `256Mi`, `1Gi`, `512M` or a byte count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub memory: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

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
    pub spec: GroupSpec,
    pub status: GroupStatus,
}
