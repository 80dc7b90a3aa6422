//! qci's shared vocabulary: what a user asks for (a [`GroupSpec`]), what qci reports back
//! ([`GroupStatus`], [`Event`]), and the rules a spec must follow before anything is stored.
//!
//! Architecture invariant: this crate does no I/O and has no async runtime. Every other crate
//! speaks these types; only this crate decides whether a spec is valid.

mod group;
mod parse;
mod quantity;
mod status;
mod validate;

pub use group::{
    ContainerGroup, ContainerSpec, EnvVar, GroupSpec, PortSpec, Protocol, RestartPolicy,
    DEFAULT_OWNER, MAX_CONTAINERS,
};
pub use parse::{parse_spec, SpecError};
pub use quantity::{parse_cpu_millis, parse_memory_bytes, Quantity};
pub use status::{ContainerState, ContainerStatus, Event, EventType, GroupPhase, GroupStatus};
pub use validate::{validate, FieldError};
