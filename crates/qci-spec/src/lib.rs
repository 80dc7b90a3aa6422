//! qci's shared vocabulary: what a user asks for (a [`GroupSpec`]), what qci reports back
//! ([`GroupStatus`], [`Event`]), and the rules a spec must follow before anything is stored.
//!
//! Architecture invariant: this crate does no I/O and has no async runtime. Every other crate
//! speaks these types; only this crate decides whether a spec is valid.

mod budget;
mod disk;
mod group;
mod image;
mod image_cache;
mod kube;
mod network;
mod node;
mod parse;
mod probe;
mod quantity;
mod security;
mod sizing;
mod status;
mod tenant;
mod validate;
mod volume;

pub use budget::{MAX_DEPTH, prescan};
pub use disk::{
    DEFAULT_INSTANCE_TYPE, Disk, DiskCompat, DiskPhase, DiskResize, DiskSpec, MAX_DISK_BYTES,
    MIN_DISK_BYTES, disk_bytes, validate_disk,
};
pub use group::{
    ContainerGroup, ContainerRuntime, ContainerSpec, DEFAULT_MAX_LOG_SIZE, DEFAULT_OWNER, DryRun,
    ENV_FIELDS, EnvSource, EnvVar, FieldRef, GroupSpec, MAX_CONTAINERS, PASSWORD_MASK, PortSpec,
    Protocol, PullPolicy, RegistryCredential, RestartPolicy, RuntimePolicy, UpdatePlan, WaitFor,
    WaitOutcome, default_pull_policy, image_registry, normalize_registry,
};
pub use image::{ImageInfo, ImageList, PullEvent, PullRequest};
pub use image_cache::{
    CachePhase, CachedImage, ImageCache, ImageCacheSpec, ImageCacheStatus, MAX_CACHE_IMAGES,
    validate_image_cache,
};
pub use kube::{Converted, from_manifests, is_kube, to_manifests};
pub use network::{
    AUTO_EIP, Direction, Eip, EipBind, EipBinding, EipSpec, Firewall, FirewallRule, FirewallSpec,
    MAX_FIREWALL_RULES, NetworkMode, NetworkSpec, RuleAction, RuleProtocol, Vpc, VpcSpec,
    VpcUpdate, gateway, group_addresses, parse_cidr, validate_firewall, validate_vpc,
};
pub use node::{Node, NodeResources};
pub use parse::{SpecError, parse_spec};
pub use probe::{ExecAction, HttpGetAction, Probe, Scheme, TcpSocketAction};
pub use quantity::{Quantity, parse_cpu_millis, parse_memory_bytes};
pub use security::{
    Capabilities, Capability, DEFAULT_CAPABILITIES, SeccompProfile, SeccompType, SecurityContext,
    SecurityPolicy, Sysctl, capability_name, effective_capabilities, merged as merged_security,
    parse_capability,
};
pub use sizing::{
    GVISOR_OVERHEAD_BYTES, GroupResources, MetricSample, Prices, SpecRow, SpecTable, Usage,
    requested, sandbox_limits,
};
pub use status::{
    ContainerState, ContainerStatus, EnforcedLimits, Event, EventType, GroupPhase, GroupStatus,
    Health, LastState,
};
pub use tenant::{
    ApiKey, AuditRecord, CreatedKey, DEFAULT_TENANT, Holdings, KeySpec, MAX_KEY_LIFETIME_DAYS,
    Quota, QuotaExceeded, QuotaKey, QuotaSpec, QuotaUse, Role, Tenant, TenantSpec, TenantUpdate,
    WhoAmI, parse_age, validate_key, validate_tenant,
};
pub use validate::{
    FieldError, check_dns_label, check_image_reference, validate, validate_credentials,
};
pub use volume::{
    ConfigFile, ConfigFileVolume, DiskVolume, EmptyDirVolume, Volume, VolumeMount, parse_mode,
};
