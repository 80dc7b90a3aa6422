//! Nodes: the machines of a qci cluster (`qci serve --etcd`), as the API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Cores and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeResources {
    /// Cores.
    pub cpu: f64,
    pub memory_bytes: u64,
}

/// A node: what it offers, what its groups take, and whether it is alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    /// Unique in the cluster (a DNS label); `qci serve --node-name`.
    pub name: String,
    /// Where other nodes reach its API (`--node-address`).
    pub address: String,
    /// Its lease in the cluster's store is alive (renewed within the last 10 s).
    pub ready: bool,
    /// No new groups are placed on it (`qci node cordon`).
    pub cordoned: bool,
    /// What it offers groups (`--node-cpu`, `--node-memory`; default the machine's).
    pub capacity: NodeResources,
    /// The normalised sizes of the groups it holds.
    pub allocated: NodeResources,
    /// How many groups it holds.
    pub groups: u32,
    /// The qci version it runs.
    pub version: String,
    /// When it (last) joined.
    pub joined_at: DateTime<Utc>,
    /// When it last wrote its record (its allocations, every few seconds when they change).
    pub updated_at: DateTime<Utc>,
}
