//! What a group's processes may do: Kubernetes' `securityContext`, in snake_case, on the group
//! (defaults for every container, plus what only a whole group can have: supplemental groups
//! and sysctls) and on each container (which wins field by field).
//!
//! The rules here are pure: [`check_security`] is part of [`crate::validate`], and
//! [`SecurityPolicy::check`] applies what the operator of a server allows.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::group::GroupSpec;
use crate::validate::FieldError;

pub use oci_spec::runtime::Capability;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityContext {
    /// The uid the container's processes run as, instead of the image's `User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// The primary gid, instead of the user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    /// Refuse to start (CreateContainerConfigError) if the process would run as uid 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Group level only: gids added to every container's processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    /// Mount the root filesystem read-only (volumes and /dev/shm stay writable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// `false` sets no_new_privs: setuid binaries and file capabilities gain nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Never granted: qci refuses `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Container level only: changes to the default capability set (Docker's 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// `RuntimeDefault` (the default), `Unconfined` (if the server allows it) or `Localhost`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "seccomp_profile"
    )]
    pub seccomp_profile: Option<SeccompProfile>,
    /// Group level only: namespaced kernel parameters (the safe set Kubernetes allows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Capability names, with or without `CAP_` (`NET_ADMIN`, `cap_net_admin`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Names, or `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum SeccompType {
    /// The server's default profile.
    #[default]
    RuntimeDefault,
    /// No seccomp filter at all.
    Unconfined,
    /// A profile the operator placed in the server's seccomp directory.
    Localhost,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: SeccompType,
    /// For `Localhost`: a file name in the server's seccomp directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// Accepts Kubernetes' `{type: RuntimeDefault}` and the short `RuntimeDefault`.
fn seccomp_profile<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SeccompProfile>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Short(SeccompType),
        Full(SeccompProfile),
    }
    let v = Option::<serde_json::Value>::deserialize(d)?;
    let Some(v) = v else { return Ok(None) };
    match serde_json::from_value::<Either>(v.clone()) {
        Ok(Either::Short(kind)) => Ok(Some(SeccompProfile {
            kind,
            localhost_profile: None,
        })),
        Ok(Either::Full(p)) => Ok(Some(p)),
        Err(_) => {
            // Say what is wrong with the long form, which is what the user most likely wrote.
            let msg = match v {
                serde_json::Value::String(s) => format!(
                    "unknown seccomp profile type {s:?}: use RuntimeDefault, Unconfined or Localhost"
                ),
                other => match serde_json::from_value::<SeccompProfile>(other) {
                    Err(e) => e.to_string(),
                    Ok(_) => "invalid seccomp profile".to_string(),
                },
            };
            Err(serde::de::Error::custom(msg))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

/// Docker's default capabilities: what a container's root has unless it drops or adds some.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Kubernetes' safe sysctls: namespaced, and unable to affect other groups or the host.
const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_wmem",
];

/// Parses `NET_ADMIN`, `CAP_NET_ADMIN` or `net_admin`.
pub fn parse_capability(name: &str) -> Result<Capability, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full.clone()))
        .map_err(|_| format!("unknown capability {name:?}"))
}

/// The capability name as Kubernetes writes it (`NET_ADMIN`).
pub fn capability_name(c: Capability) -> String {
    let s = serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    s.trim_start_matches("CAP_").to_string()
}

/// The bounding set a container gets: the defaults, less `drop` (`ALL` drops every one), plus
/// `add`. Names were checked by validation; unknown ones are ignored here.
pub fn effective_capabilities(caps: Option<&Capabilities>) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| capability_name(*c))
        .collect();
    let Some(caps) = caps else { return set };
    if caps.drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        set.clear();
    }
    for d in &caps.drop {
        if let Ok(c) = parse_capability(d) {
            set.remove(&capability_name(c));
        }
    }
    for a in &caps.add {
        if let Ok(c) = parse_capability(a) {
            set.insert(capability_name(c));
        }
    }
    set
}

/// A file name in the server's seccomp directory: no path, no hidden file.
fn check_profile_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be a file name of 1 to 255 bytes".into());
    }
    if name.contains('/') || name.contains('\0') || name.starts_with('.') {
        return Err(format!(
            "{name:?} must be a plain file name in the server's seccomp directory"
        ));
    }
    Ok(())
}

fn sysctl_is_safe(name: &str) -> bool {
    SAFE_SYSCTLS.contains(&name)
}

/// The security_context rules, for the group (`level_group`) or one container.
pub(crate) fn check_security(
    path: &str,
    s: &SecurityContext,
    level_group: bool,
    e: &mut Vec<FieldError>,
) {
    let f = |name: &str| format!("{path}.{name}");
    for (name, v) in [
        ("run_as_user", s.run_as_user),
        ("run_as_group", s.run_as_group),
    ] {
        if let Some(id) = v
            && !(0..=i64::from(u32::MAX - 1)).contains(&id)
        {
            e.push(FieldError::new(
                f(name),
                format!("must be between 0 and {}", u32::MAX - 1),
            ));
        }
    }
    if s.run_as_non_root == Some(true) && s.run_as_user == Some(0) {
        e.push(FieldError::new(
            f("run_as_non_root"),
            "contradicts run_as_user: 0",
        ));
    }
    if s.privileged == Some(true) {
        e.push(FieldError::new(
            f("privileged"),
            "privileged containers are not offered: add only the capabilities you need",
        ));
    }
    if !level_group && !s.supplemental_groups.is_empty() {
        e.push(FieldError::new(
            f("supplemental_groups"),
            "set supplemental groups on the group's security_context",
        ));
    }
    if s.supplemental_groups.len() > 32 {
        e.push(FieldError::new(
            f("supplemental_groups"),
            "at most 32 groups",
        ));
    }
    for (i, g) in s.supplemental_groups.iter().enumerate() {
        if !(0..=i64::from(u32::MAX - 1)).contains(g) {
            e.push(FieldError::new(
                format!("{path}.supplemental_groups[{i}]"),
                format!("must be between 0 and {}", u32::MAX - 1),
            ));
        }
    }
    if let Some(caps) = &s.capabilities {
        if level_group {
            e.push(FieldError::new(
                f("capabilities"),
                "set capabilities on each container's security_context",
            ));
        }
        for (list, names) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (i, n) in names.iter().enumerate() {
                let field = format!("{path}.capabilities.{list}[{i}]");
                if n.eq_ignore_ascii_case("ALL") {
                    if list == "add" {
                        e.push(FieldError::new(
                            field,
                            "ALL cannot be added: name the capabilities you need",
                        ));
                    }
                } else if let Err(m) = parse_capability(n) {
                    e.push(FieldError::new(field, m));
                }
            }
        }
    }
    if let Some(p) = &s.seccomp_profile {
        let field = f("seccomp_profile");
        match (p.kind, &p.localhost_profile) {
            (SeccompType::Localhost, None) => e.push(FieldError::new(
                format!("{field}.localhost_profile"),
                "required with type Localhost",
            )),
            (SeccompType::Localhost, Some(n)) => {
                if let Err(m) = check_profile_name(n) {
                    e.push(FieldError::new(format!("{field}.localhost_profile"), m));
                }
            }
            (_, Some(_)) => e.push(FieldError::new(
                format!("{field}.localhost_profile"),
                "only with type Localhost",
            )),
            (_, None) => {}
        }
    }
    if !level_group && !s.sysctls.is_empty() {
        e.push(FieldError::new(
            f("sysctls"),
            "set sysctls on the group's security_context (containers share its namespaces)",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, sc) in s.sysctls.iter().enumerate() {
        let field = format!("{path}.sysctls[{i}]");
        if !sysctl_is_safe(&sc.name) {
            e.push(FieldError::new(
                format!("{field}.name"),
                format!(
                    "sysctl {:?} is not allowed: only namespaced, safe sysctls can be set ({})",
                    sc.name,
                    SAFE_SYSCTLS.join(", ")
                ),
            ));
        } else if !seen.insert(sc.name.as_str()) {
            e.push(FieldError::new(
                format!("{field}.name"),
                format!("{:?} is set twice", sc.name),
            ));
        }
        if sc.value.is_empty() || sc.value.len() > 256 || sc.value.contains(['\n', '\0']) {
            e.push(FieldError::new(
                format!("{field}.value"),
                "must be 1 to 256 characters on one line",
            ));
        }
    }
}

/// One container's security_context merged over its group's (container fields win).
pub fn merged(
    group: Option<&SecurityContext>,
    container: Option<&SecurityContext>,
) -> SecurityContext {
    let g = group.cloned().unwrap_or_default();
    let Some(c) = container else { return g };
    SecurityContext {
        run_as_user: c.run_as_user.or(g.run_as_user),
        run_as_group: c.run_as_group.or(g.run_as_group),
        run_as_non_root: c.run_as_non_root.or(g.run_as_non_root),
        supplemental_groups: g.supplemental_groups,
        read_only_root_filesystem: c.read_only_root_filesystem.or(g.read_only_root_filesystem),
        allow_privilege_escalation: c
            .allow_privilege_escalation
            .or(g.allow_privilege_escalation),
        privileged: c.privileged.or(g.privileged),
        capabilities: c.capabilities.clone(),
        seccomp_profile: c.seccomp_profile.clone().or(g.seccomp_profile),
        sysctls: g.sysctls,
    }
}

/// What the operator of a server allows beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityPolicy {
    /// `qci serve --allow-unconfined-seccomp`.
    pub allow_unconfined: bool,
    /// `qci serve --allowed-capability NAME` (beyond the 14 defaults, which are always allowed).
    pub allowed_capabilities: BTreeSet<String>,
}

impl SecurityPolicy {
    /// Parses `--allowed-capability` values.
    pub fn new(allow_unconfined: bool, capabilities: &[String]) -> Result<SecurityPolicy, String> {
        let mut allowed = BTreeSet::new();
        for c in capabilities {
            allowed.insert(capability_name(parse_capability(c)?));
        }
        Ok(SecurityPolicy {
            allow_unconfined,
            allowed_capabilities: allowed,
        })
    }

    /// Errors for what the spec asks and this server does not allow, naming the field.
    pub fn check(&self, spec: &GroupSpec) -> Vec<FieldError> {
        let mut e = Vec::new();
        let defaults: BTreeSet<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| capability_name(*c))
            .collect();
        let unconfined = |path: String, s: &Option<SecurityContext>, e: &mut Vec<FieldError>| {
            if let Some(p) = s.as_ref().and_then(|s| s.seccomp_profile.as_ref())
                && p.kind == SeccompType::Unconfined
                && !self.allow_unconfined
            {
                e.push(FieldError::new(
                    format!("{path}.seccomp_profile"),
                    "Unconfined is not allowed on this server (its operator can allow it with qci serve --allow-unconfined-seccomp)",
                ));
            }
        };
        unconfined("security_context".into(), &spec.security_context, &mut e);
        for (list, containers) in [
            ("init_containers", &spec.init_containers),
            ("containers", &spec.containers),
        ] {
            for (i, c) in containers.iter().enumerate() {
                let path = format!("{list}[{i}].security_context");
                unconfined(path.clone(), &c.security_context, &mut e);
                let Some(caps) = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.capabilities.as_ref())
                else {
                    continue;
                };
                for (j, a) in caps.add.iter().enumerate() {
                    let Ok(cap) = parse_capability(a) else {
                        continue;
                    };
                    let name = capability_name(cap);
                    if !defaults.contains(&name) && !self.allowed_capabilities.contains(&name) {
                        e.push(FieldError::new(
                            format!("{path}.capabilities.add[{j}]"),
                            format!(
                                "{name} is not allowed on this server (its operator can allow it with qci serve --allowed-capability {name})"
                            ),
                        ));
                    }
                }
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::field_errors as errs;
    use crate::parse_spec;

    #[test]
    fn capability_names() {
        assert_eq!(parse_capability("net_admin").unwrap(), Capability::NetAdmin);
        assert_eq!(
            parse_capability("CAP_SYS_TIME").unwrap(),
            Capability::SysTime
        );
        assert!(parse_capability("FLY").is_err());
        assert_eq!(
            capability_name(Capability::NetBindService),
            "NET_BIND_SERVICE"
        );
    }

    #[test]
    fn effective_sets() {
        let all = effective_capabilities(None);
        assert_eq!(all.len(), 14);
        let none = effective_capabilities(Some(&Capabilities {
            add: vec!["net_bind_service".into()],
            drop: vec!["ALL".into()],
        }));
        assert_eq!(
            none.into_iter().collect::<Vec<_>>(),
            vec!["NET_BIND_SERVICE"]
        );
        let less = effective_capabilities(Some(&Capabilities {
            add: vec!["NET_ADMIN".into()],
            drop: vec!["CAP_CHOWN".into()],
        }));
        assert!(less.contains("NET_ADMIN") && !less.contains("CHOWN") && less.len() == 14);
    }

    #[test]
    fn rules_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "security_context: {privileged: true}",
                "containers[0].security_context.privileged: privileged containers are not offered",
            ),
            (
                "security_context: {capabilities: {add: [FLY]}}",
                "containers[0].security_context.capabilities.add[0]: unknown capability \"FLY\"",
            ),
            (
                "security_context: {capabilities: {add: [ALL]}}",
                "containers[0].security_context.capabilities.add[0]: ALL cannot be added",
            ),
            (
                "security_context: {run_as_user: -1}",
                "containers[0].security_context.run_as_user: must be between 0",
            ),
            (
                "security_context: {run_as_non_root: true, run_as_user: 0}",
                "containers[0].security_context.run_as_non_root: contradicts",
            ),
            (
                "security_context: {seccomp_profile: {type: Localhost}}",
                "containers[0].security_context.seccomp_profile.localhost_profile: required",
            ),
            (
                "security_context: {seccomp_profile: {type: Localhost, localhost_profile: ../x.json}}",
                "containers[0].security_context.seccomp_profile.localhost_profile: \"../x.json\" must be a plain file name",
            ),
            (
                "security_context: {seccomp_profile: Wide}",
                "containers[0].security_context.seccomp_profile: unknown seccomp profile type \"Wide\"",
            ),
            (
                "security_context: {sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}]}",
                "containers[0].security_context.sysctls: set sysctls on the group",
            ),
            (
                "security_context: {supplemental_groups: [5]}",
                "containers[0].security_context.supplemental_groups: set supplemental groups on the group",
            ),
        ];
        for (sc, want) in cases {
            let e = errs(&format!(
                "name: s\ncontainers:\n  - name: a\n    image: bb\n    {sc}\n"
            ));
            assert!(
                e.iter().any(|m| m.starts_with(want)),
                "{sc}: {e:?} lacks {want}"
            );
        }
        let e = errs(
            "name: s\nsecurity_context: {sysctls: [{name: kernel.panic, value: '1'}, {name: net.ipv4.tcp_syncookies, value: ''}]}\ncontainers: [{name: a, image: bb}]\n",
        );
        assert!(
            e[0].starts_with(
                "security_context.sysctls[0].name: sysctl \"kernel.panic\" is not allowed"
            ),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("security_context.sysctls[1].value:"),
            "{e:?}"
        );
        let e = errs(
            "name: s\nsecurity_context: {capabilities: {add: [NET_ADMIN]}}\ncontainers: [{name: a, image: bb}]\n",
        );
        assert!(
            e[0].starts_with("security_context.capabilities: set capabilities on each container"),
            "{e:?}"
        );
    }

    #[test]
    fn short_and_long_seccomp_forms() {
        let s = parse_spec(
            "name: s\nsecurity_context: {seccomp_profile: Unconfined, run_as_user: 1000}\ncontainers:\n  - {name: a, image: bb, security_context: {seccomp_profile: {type: RuntimeDefault}, read_only_root_filesystem: true}}\n",
        )
        .unwrap();
        let m = merged(
            s.security_context.as_ref(),
            s.containers[0].security_context.as_ref(),
        );
        assert_eq!(m.seccomp_profile.unwrap().kind, SeccompType::RuntimeDefault);
        assert_eq!(m.run_as_user, Some(1000));
        assert_eq!(m.read_only_root_filesystem, Some(true));
    }

    #[test]
    fn the_server_decides_unconfined_and_added_capabilities() {
        let s = parse_spec(
            "name: s\ncontainers:\n  - {name: a, image: bb, security_context: {seccomp_profile: Unconfined, capabilities: {add: [NET_ADMIN, KILL]}}}\n",
        )
        .unwrap();
        let strict = SecurityPolicy::default();
        let e: Vec<String> = strict.check(&s).iter().map(|f| f.to_string()).collect();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with(
            "containers[0].security_context.seccomp_profile: Unconfined is not allowed"
        ));
        assert!(e[1].starts_with(
            "containers[0].security_context.capabilities.add[0]: NET_ADMIN is not allowed"
        ));
        let open = SecurityPolicy::new(true, &["cap_net_admin".into()]).unwrap();
        assert!(open.check(&s).is_empty());
        assert!(SecurityPolicy::new(false, &["nope".into()]).is_err());
    }
}
