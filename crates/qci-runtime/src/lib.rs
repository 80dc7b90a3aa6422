//! Running containers on this machine: OCI bundles for runc, the per-container monitor,
//! the group's shared namespaces, overlayfs root filesystems and cgroups.
//!
//! Architecture invariants:
//! - only this crate builds runc command lines ([`runc`]);
//! - everything an instance creates lives under its [`Layout`]: the data dir, a run dir inside
//!   it, runc's `--root`, and a cgroup parent named after the data dir, so two instances with
//!   different data dirs never see each other's containers;
//! - the state of a container is on disk (monitor files, runc state), never only in memory, so
//!   a restarted `qci serve` rebuilds it by looking.

pub mod attach;
mod bundle;
pub mod cgroup;
mod disks;
mod exec;
pub mod gvisor;
pub mod hostcheck;
mod layout;
pub mod logs;
pub mod loopdev;
pub mod monitor;
mod mounts;
mod probe;
mod pty;
mod runc;
mod runtime;
mod sandbox;
pub mod seccomp;
mod stats;
mod user;
mod volumes;

pub use bundle::{BundleError, ContainerConfig, Security};
pub use cgroup::{CgroupError, GroupLimits};
pub use exec::{ExecExit, ExecIo, ExecProcess};
pub use layout::Layout;
pub use monitor::{ExitRecord, MonitorArgs, StartRecord};
pub use probe::ProbeOutcome;
pub use runc::{Runc, RuncError, RuncStatus};
pub use runtime::{Observed, Runtime, RuntimeError, StartRequest, VolumeMountRequest};
pub use stats::Stats;
