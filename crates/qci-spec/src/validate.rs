//! The rules a spec must follow. Every error names the field path, e.g.
//! `containers[1].ports[0].port: must be between 1 and 65535`.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::group::{ContainerSpec, GroupSpec, MAX_CONTAINERS};
use crate::quantity::{parse_cpu_millis, parse_memory_bytes};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Smallest memory limit a container can start with (Docker's floor).
const MIN_MEMORY: u64 = 6 << 20;
const MAX_GRACE_SECONDS: u64 = 3600;

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Checks every rule and returns all violations, in document order.
pub fn validate(spec: &GroupSpec) -> Result<(), Vec<FieldError>> {
    let mut e = Errors(Vec::new());
    if let Err(m) = check_dns_label(&spec.name) {
        e.add("name", m);
    }
    if spec.containers.is_empty() {
        e.add("containers", "at least one container is required");
    }
    let total = spec.init_containers.len() + spec.containers.len();
    if total > MAX_CONTAINERS {
        e.add("containers", format!("a group holds at most {MAX_CONTAINERS} containers (init containers included), this one has {total}"));
    }
    if spec.termination_grace_period_seconds > MAX_GRACE_SECONDS {
        e.add(
            "termination_grace_period_seconds",
            format!("must be at most {MAX_GRACE_SECONDS}"),
        );
    }
    let mut names: HashMap<&str, String> = HashMap::new();
    let mut ports: HashMap<(i64, crate::Protocol), String> = HashMap::new();
    let lists = [
        ("init_containers", &spec.init_containers),
        ("containers", &spec.containers),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let path = format!("{list}[{i}]");
            if let Some(first) = names.get(c.name.as_str()) {
                e.add(
                    format!("{path}.name"),
                    format!("duplicate container name {:?} (also {first})", c.name),
                );
            } else {
                names.insert(&c.name, path.clone());
            }
            check_container(&mut e, &path, c);
            for (j, p) in c.ports.iter().enumerate() {
                if let Some(first) = ports.get(&(p.port, p.protocol)) {
                    e.add(format!("{path}.ports[{j}].port"), format!("port {}/{:?} is already used by {first} (containers of a group share one network)", p.port, p.protocol));
                } else {
                    ports.insert((p.port, p.protocol), format!("{path}.ports[{j}]"));
                }
            }
        }
    }
    e.0.extend(validate_credentials(&spec.registry_credentials));
    if let Some(t) = &spec.instance_type
        && let Err(m) = check_dns_label(t)
    {
        e.add("instance_type", m);
    }
    crate::volume::check_volumes(&spec.volumes, &mut e.0);
    if let Some(n) = &spec.network {
        crate::network::check_network(n, &mut e.0);
    }
    if let Some(s) = &spec.security_context {
        crate::security::check_security("security_context", s, true, &mut e.0);
    }
    for (list, containers) in [
        ("init_containers", &spec.init_containers),
        ("containers", &spec.containers),
    ] {
        for (i, c) in containers.iter().enumerate() {
            crate::volume::check_mounts(
                &format!("{list}[{i}]"),
                &c.volume_mounts,
                &spec.volumes,
                &mut e.0,
            );
        }
    }
    if let Some(q) = &spec.cpu {
        match parse_cpu_millis(&q.0) {
            Ok(0) => e.add("cpu", "must be more than 0"),
            Ok(_) => {}
            Err(m) => e.add("cpu", m),
        }
    }
    if let Some(q) = &spec.memory
        && let Err(m) = parse_memory_bytes(&q.0)
    {
        e.add("memory", m);
    }
    if let Some(q) = &spec.shm_size {
        match parse_memory_bytes(&q.0) {
            Err(m) => e.add("shm_size", m),
            Ok(b) if b < (1 << 20) => e.add("shm_size", "must be at least 1Mi"),
            Ok(b) => {
                // Known only when every container has a memory limit.
                let total: Option<u64> = spec
                    .all_containers()
                    .map(|c| {
                        c.memory
                            .as_ref()
                            .and_then(|m| parse_memory_bytes(&m.0).ok())
                    })
                    .sum();
                if let Some(total) = total
                    && b * 2 >= total
                {
                    e.add(
                        "shm_size",
                        format!(
                            "must be less than half the group's memory ({:.0}Mi)",
                            total as f64 / f64::from(1 << 20)
                        ),
                    );
                }
            }
        }
    }
    if let Some(c) = &spec.image_cache
        && c != "auto"
        && c != "none"
        && let Err(m) = check_dns_label(c)
    {
        e.add(
            "image_cache",
            format!("use auto, none, or an image cache's name or id: {m}"),
        );
    }
    if e.0.is_empty() { Ok(()) } else { Err(e.0) }
}

/// The rules for registry credentials (in a group spec, an image pull or an image cache).
pub fn validate_credentials(creds: &[crate::RegistryCredential]) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    let mut servers: HashMap<String, usize> = HashMap::new();
    for (i, c) in creds.iter().enumerate() {
        let path = format!("registry_credentials[{i}]");
        let reg = c.registry();
        if reg.is_empty() || reg.contains(|ch: char| ch.is_whitespace() || ch == '@') {
            e.add(
                format!("{path}.server"),
                format!(
                    "{:?} is not a registry host such as registry.example.com:5000",
                    c.server
                ),
            );
        } else if let Some(first) = servers.insert(reg.clone(), i) {
            e.add(
                format!("{path}.server"),
                format!("{reg} already has a credential (registry_credentials[{first}])"),
            );
        }
        if c.username.is_empty() {
            e.add(format!("{path}.username"), "must not be empty");
        }
        if c.password.is_empty() {
            e.add(format!("{path}.password"), "must not be empty");
        }
    }
    e.0
}

fn check_container(e: &mut Errors, path: &str, c: &ContainerSpec) {
    if let Err(m) = check_dns_label(&c.name) {
        e.add(format!("{path}.name"), m);
    }
    if let Err(m) = check_image_reference(&c.image) {
        e.add(format!("{path}.image"), m);
    }
    if let Some(cmd) = &c.command {
        check_strings(e, &format!("{path}.command"), cmd);
        if cmd.first().is_some_and(|p| p.trim().is_empty()) {
            e.add(
                format!("{path}.command[0]"),
                "must name the program to run (or leave command out to use the image's)",
            );
        }
    }
    if let Some(args) = &c.args {
        check_strings(e, &format!("{path}.args"), args);
    }
    if let Some(wd) = &c.working_dir {
        if !wd.starts_with('/') {
            e.add(format!("{path}.working_dir"), "must be an absolute path");
        } else if wd.split('/').any(|p| p == "..") {
            e.add(format!("{path}.working_dir"), "must not contain '..'");
        } else if wd.contains('\0') {
            e.add(format!("{path}.working_dir"), "must not contain NUL");
        }
    }
    let mut env_seen = HashSet::new();
    for (j, v) in c.env.iter().enumerate() {
        let f = format!("{path}.env[{j}].name");
        if v.name.is_empty() {
            e.add(f, "must not be empty");
        } else if v.name.contains('=') || v.name.contains('\0') {
            e.add(f, "must not contain '=' or NUL");
        } else if !env_seen.insert(&v.name) {
            e.add(f, format!("duplicate variable {:?}", v.name));
        }
        if v.value.contains('\0') {
            e.add(format!("{path}.env[{j}].value"), "must not contain NUL");
        }
        if let Some(from) = &v.value_from {
            if !v.value.is_empty() {
                e.add(
                    format!("{path}.env[{j}].value_from"),
                    "give value or value_from, not both",
                );
            }
            let fp = &from.field_ref.field_path;
            if !crate::group::ENV_FIELDS.contains(&fp.as_str()) {
                e.add(
                    format!("{path}.env[{j}].value_from.field_ref.field_path"),
                    format!(
                        "{fp:?}: must be one of {}",
                        crate::group::ENV_FIELDS.join(", ")
                    ),
                );
            }
        }
    }
    for (j, p) in c.ports.iter().enumerate() {
        if !(1..=65535).contains(&p.port) {
            e.add(
                format!("{path}.ports[{j}].port"),
                "must be between 1 and 65535",
            );
        }
    }
    for (field, probe, liveness) in [
        ("liveness_probe", &c.liveness_probe, true),
        ("readiness_probe", &c.readiness_probe, false),
        ("startup_probe", &c.startup_probe, true),
    ] {
        if let Some(p) = probe {
            crate::probe::check_probe(&format!("{path}.{field}"), p, liveness, &mut e.0);
        }
    }
    if let Some(s) = &c.security_context {
        crate::security::check_security(&format!("{path}.security_context"), s, false, &mut e.0);
    }
    if let Some(q) = &c.max_log_size {
        match parse_memory_bytes(&q.0) {
            Ok(b) if b < 4096 => e.add(format!("{path}.max_log_size"), "must be at least 4Ki"),
            Ok(_) => {}
            Err(m) => e.add(format!("{path}.max_log_size"), m),
        }
    }
    if let Some(n) = c.pids_limit
        && !(8..=4_194_304).contains(&n)
    {
        e.add(
            format!("{path}.pids_limit"),
            "must be between 8 and 4194304",
        );
    }
    if let Some(q) = &c.cpu {
        match parse_cpu_millis(&q.0) {
            Ok(0) => e.add(format!("{path}.cpu"), "must be more than 0"),
            Ok(m) if m > 256_000 => e.add(format!("{path}.cpu"), "must be at most 256 cores"),
            Ok(_) => {}
            Err(m) => e.add(format!("{path}.cpu"), m),
        }
    }
    if let Some(q) = &c.memory {
        match parse_memory_bytes(&q.0) {
            Ok(b) if b < MIN_MEMORY => e.add(format!("{path}.memory"), "must be at least 6Mi"),
            Ok(_) => {}
            Err(m) => e.add(format!("{path}.memory"), m),
        }
    }
}

fn check_strings(e: &mut Errors, path: &str, v: &[String]) {
    for (i, s) in v.iter().enumerate() {
        if s.contains('\0') {
            e.add(format!("{path}[{i}]"), "must not contain NUL");
        }
    }
}

/// An RFC 1123 label: 1 to 63 of `a-z`, `0-9` and `-`, starting and ending alphanumeric.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!(
            "must be at most 63 characters, {:?} has {}",
            s,
            s.len()
        ));
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        return Err(format!(
            "{s:?} is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// An image reference as registries take it: `[registry/]repository[:tag][@digest]`.
pub fn check_image_reference(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.trim() != s || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?} is not a valid image reference: it contains whitespace"
        ));
    }
    oci_spec::distribution::Reference::from_str(s)
        .map(|_| ())
        .map_err(|err| format!("{s:?} is not a valid image reference: {err}"))
}

#[cfg(test)]
mod tests {
    use crate::parse::field_errors as errs;
    use crate::parse_spec;

    #[test]
    fn names_and_images() {
        let e = errs(
            "name: Web_1\ncontainers:\n  - {name: a, image: 'UPPER/Case'}\n  - {name: a, image: 'ok:1'}\n",
        );
        assert!(e[0].starts_with("name: "), "{e:?}");
        assert!(
            e.iter().any(|m| m.starts_with("containers[0].image: ")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("containers[1].name: duplicate")),
            "{e:?}"
        );
    }

    #[test]
    fn too_many_containers() {
        let mut y = String::from("name: big\ncontainers:\n");
        for i in 0..21 {
            y.push_str(&format!("  - {{name: c{i}, image: bb}}\n"));
        }
        assert!(
            errs(&y)
                .iter()
                .any(|m| m.starts_with("containers: a group holds at most 20"))
        );
    }

    #[test]
    fn shared_ports_and_quantities() {
        let e = errs(
            "name: p\ninit_containers:\n  - {name: i, image: bb, memory: 1Mi}\ncontainers:\n  - {name: a, image: bb, ports: [{port: 80}], cpu: 0}\n  - {name: b, image: bb, ports: [{port: 80, protocol: TCP}, {port: 80, protocol: UDP}], memory: lots}\n",
        );
        assert!(
            e.contains(&"init_containers[0].memory: must be at least 6Mi".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"containers[0].cpu: must be more than 0".to_string()),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("containers[1].ports[0].port: port 80/TCP is already used")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("containers[1].memory: invalid memory quantity")),
            "{e:?}"
        );
        assert_eq!(e.len(), 4, "{e:?}");
    }

    #[test]
    fn probes() {
        let e = errs(
            "name: p\ncontainers:\n  - name: a\n    image: bb\n    liveness_probe: {exec: {command: [x]}, tcp_socket: {port: 1}}\n    readiness_probe: {http_get: {port: 0, path: nope}, period_seconds: 0}\n    startup_probe: {tcp_socket: {port: 80}, success_threshold: 2}\n",
        );
        assert_eq!(
            e,
            vec![
                "containers[0].liveness_probe: give exactly one of exec, http_get and tcp_socket",
                "containers[0].readiness_probe.http_get.port: must be between 1 and 65535",
                "containers[0].readiness_probe.http_get.path: must start with / and hold no spaces or control characters",
                "containers[0].readiness_probe.period_seconds: must be at least 1",
                "containers[0].startup_probe.success_threshold: must be 1 for liveness and startup probes",
            ]
        );
        let ok = parse_spec("name: p\ncontainers: [{name: a, image: bb, readiness_probe: {http_get: {port: 80}}}]\n").unwrap();
        let p = ok.containers[0].readiness_probe.as_ref().unwrap();
        assert_eq!(
            (p.period_seconds, p.timeout_seconds, p.failure_threshold),
            (10, 1, 3)
        );
        assert_eq!(p.http_get.as_ref().unwrap().path, "/");
    }

    #[test]
    fn shm_and_pids() {
        let e = errs(
            "name: s\nshm_size: 128Mi\ncontainers:\n  - {name: a, image: bb, memory: 128Mi, pids_limit: 2}\n  - {name: b, image: bb, memory: 100Mi}\n",
        );
        assert_eq!(
            e,
            vec![
                "containers[0].pids_limit: must be between 8 and 4194304",
                "shm_size: must be less than half the group's memory (228Mi)",
            ]
        );
        assert!(
            errs("name: s\nshm_size: 64Mi\ncontainers: [{name: a, image: bb, memory: 256Mi}]\n")
                .is_empty()
        );
        assert!(errs("name: s\nshm_size: 64Mi\ncontainers: [{name: a, image: bb}]\n").is_empty());
    }

    #[test]
    fn env_from_the_groups_fields() {
        assert!(errs("name: w\ncontainers: [{name: a, image: bb, env: [{name: IP, value_from: {field_ref: {field_path: status.podIP}}}]}]\n").is_empty());
        assert_eq!(
            errs(
                "name: w\ncontainers: [{name: a, image: bb, env: [{name: X, value: v, value_from: {field_ref: {field_path: status.hostIP}}}]}]\n"
            ),
            vec![
                "containers[0].env[0].value_from: give value or value_from, not both",
                "containers[0].env[0].value_from.field_ref.field_path: \"status.hostIP\": must be one of metadata.name, metadata.namespace, status.podIP",
            ]
        );
    }

    #[test]
    fn working_dir_and_env() {
        let e = errs(
            "name: w\ncontainers:\n  - {name: a, image: bb, working_dir: rel, env: [{name: 'A=B'}]}\n  - {name: b, image: bb, working_dir: /a/../b}\n",
        );
        assert_eq!(
            e,
            vec![
                "containers[0].working_dir: must be an absolute path",
                "containers[0].env[0].name: must not contain '=' or NUL",
                "containers[1].working_dir: must not contain '..'",
            ]
        );
    }
}
