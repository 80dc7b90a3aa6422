//! What a container runs: the image's config merged with the spec, with Docker's semantics.

use qci_image::ImageConfig;
use std::path::Path;

use qci_runtime::seccomp::{Profile, Target};
use qci_runtime::{ContainerConfig, Security};
use qci_spec::{
    ContainerSpec, SeccompType, SecurityContext, effective_capabilities, merged_security,
    parse_cpu_millis, parse_memory_bytes,
};

/// Why a container's configuration cannot be made from its spec and image.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no command to run: the image has no ENTRYPOINT or CMD; set command")]
    NoCommand,
    #[error(transparent)]
    Seccomp(#[from] qci_runtime::seccomp::SeccompError),
}

/// The PATH Docker supplies when an image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `command` replaces the image's ENTRYPOINT (and then drops its CMD), `args` replaces CMD;
/// the image's env, working dir and user apply unless the spec overrides them.
pub fn container_config(
    spec: &ContainerSpec,
    image: &ImageConfig,
    hostname: &str,
    group_ip: Option<&str>,
    shared_shm: bool,
    default_pids_limit: Option<i64>,
) -> Result<ContainerConfig, ConfigError> {
    let entrypoint = spec
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let cmd = match (&spec.args, &spec.command) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(ConfigError::NoCommand);
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    set("PATH", DEFAULT_PATH);
    set("HOSTNAME", hostname);
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for e in &spec.env {
        // The downward API: fields of the group, as it is now (validation allows these).
        let value = match e
            .value_from
            .as_ref()
            .map(|f| f.field_ref.field_path.as_str())
        {
            Some("metadata.name") => hostname,
            Some("metadata.namespace") => "default",
            Some("status.podIP") => group_ip.unwrap_or(""),
            _ => e.value.as_str(),
        };
        set(&e.name, value);
    }
    let cwd = spec
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    Ok(ContainerConfig {
        tty: spec.tty,
        stdin: spec.stdin,
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        user: image.user.clone(),
        hostname: hostname.to_string(),
        // Validation already checked these quantities.
        cpu_millis: spec.cpu.as_ref().and_then(|q| parse_cpu_millis(&q.0).ok()),
        memory_bytes: spec
            .memory
            .as_ref()
            .and_then(|q| parse_memory_bytes(&q.0).ok()),
        pids_limit: spec.pids_limit.or(default_pids_limit),
        shared_shm,
        max_log_size: spec
            .max_log_size
            .as_ref()
            .and_then(|q| parse_memory_bytes(&q.0).ok())
            .unwrap_or(qci_spec::DEFAULT_MAX_LOG_SIZE),
        // Filled in by the caller, which knows where the group's volumes are.
        mounts: Vec::new(),
        // Filled in by the caller with [`security`].
        security: Security::default(),
    })
}

/// A container's security_context (over its group's) as the runtime applies it. `dir` holds
/// the operator's `Localhost` profiles. An error is the container's configuration's fault.
pub fn security(
    group: Option<&SecurityContext>,
    container: Option<&SecurityContext>,
    default_profile: &Profile,
    dir: &Path,
) -> Result<Security, ConfigError> {
    let sc = merged_security(group, container);
    let id = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
    let capabilities = effective_capabilities(sc.capabilities.as_ref());
    let target = Target::host(capabilities.iter().cloned());
    let kind = sc
        .seccomp_profile
        .as_ref()
        .map(|p| p.kind)
        .unwrap_or_default();
    let seccomp = match kind {
        SeccompType::Unconfined => None,
        SeccompType::RuntimeDefault => Some(default_profile.resolve(&target)),
        SeccompType::Localhost => {
            // Validation made it a plain file name.
            let name = sc
                .seccomp_profile
                .as_ref()
                .and_then(|p| p.localhost_profile.clone())
                .unwrap_or_default();
            Some(Profile::load(&dir.join(&name)).and_then(|p| p.resolve(&target)))
        }
    }
    .transpose()?;
    Ok(Security {
        run_as_user: id(sc.run_as_user),
        run_as_group: id(sc.run_as_group),
        run_as_non_root: sc.run_as_non_root == Some(true),
        supplemental_groups: sc
            .supplemental_groups
            .iter()
            .filter_map(|g| u32::try_from(*g).ok())
            .collect(),
        read_only_root: sc.read_only_root_filesystem == Some(true),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        capabilities,
        seccomp,
        sysctls: sc
            .sysctls
            .iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_contexts_become_runtime_settings() {
        let p = Profile::default_profile();
        let d = tempfile::tempdir().unwrap();
        let def = security(None, None, &p, d.path()).unwrap();
        assert!(def.seccomp.is_some() && def.capabilities.len() == 14 && !def.read_only_root);
        let group: SecurityContext = serde_yaml::from_str(
            "{run_as_user: 1000, supplemental_groups: [5], seccomp_profile: Unconfined}",
        )
        .unwrap();
        let c: SecurityContext = serde_yaml::from_str(
            "{allow_privilege_escalation: false, capabilities: {drop: [ALL]}, read_only_root_filesystem: true}",
        )
        .unwrap();
        let s = security(Some(&group), Some(&c), &p, d.path()).unwrap();
        assert_eq!(s.run_as_user, Some(1000));
        assert_eq!(s.supplemental_groups, vec![5]);
        assert!(s.seccomp.is_none() && s.capabilities.is_empty());
        assert!(s.no_new_privileges && s.read_only_root);
        let local: SecurityContext = serde_yaml::from_str(
            "{seccomp_profile: {type: Localhost, localhost_profile: mine.json}}",
        )
        .unwrap();
        let e = security(None, Some(&local), &p, d.path()).unwrap_err();
        assert!(e.to_string().starts_with("reading seccomp profile"), "{e}");
        std::fs::write(
            d.path().join("mine.json"),
            r#"{"defaultAction":"SCMP_ACT_LOG"}"#,
        )
        .unwrap();
        assert!(
            security(None, Some(&local), &p, d.path())
                .unwrap()
                .seccomp
                .is_some()
        );
    }

    fn spec(command: Option<&[&str]>, args: Option<&[&str]>) -> ContainerSpec {
        ContainerSpec {
            command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
            args: args.map(|c| c.iter().map(|s| s.to_string()).collect()),
            env: vec![qci_spec::EnvVar {
                name: "B".into(),
                value: "spec".into(),
                value_from: None,
            }],
            memory: Some(qci_spec::Quantity("64Mi".into())),
            ..ContainerSpec::new("c", "bb")
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["--serve".into()],
            env: vec!["A=img".into(), "B=img".into(), "PATH=/opt/bin".into()],
            working_dir: Some("/app".into()),
            user: Some("www".into()),
        }
    }

    #[test]
    fn the_downward_api_gives_the_groups_fields() {
        let field = |name: &str, path: &str| qci_spec::EnvVar {
            name: name.into(),
            value: String::new(),
            value_from: Some(qci_spec::EnvSource {
                field_ref: qci_spec::FieldRef {
                    field_path: path.into(),
                },
            }),
        };
        let s = ContainerSpec {
            env: vec![
                field("N", "metadata.name"),
                field("NS", "metadata.namespace"),
                field("IP", "status.podIP"),
            ],
            ..ContainerSpec::new("c", "bb")
        };
        let env = |ip| {
            container_config(&s, &image(), "web", ip, false, None)
                .unwrap()
                .env
        };
        assert_eq!(
            env(Some("10.0.0.5"))[4..],
            ["N=web", "NS=default", "IP=10.0.0.5"]
        );
        assert_eq!(env(None)[6], "IP=");
    }

    #[test]
    fn docker_semantics() {
        let c = container_config(&spec(None, None), &image(), "web", None, false, None).unwrap();
        assert_eq!(c.args, vec!["/entry", "--serve"]);
        assert_eq!(
            c.env,
            vec!["PATH=/opt/bin", "HOSTNAME=web", "A=img", "B=spec"]
        );
        assert_eq!(c.cwd, "/app");
        assert_eq!(c.user.as_deref(), Some("www"));
        assert_eq!(c.memory_bytes, Some(64 << 20));
        assert_eq!(
            container_config(&spec(Some(&["sh"]), None), &image(), "w", None, false, None)
                .unwrap()
                .args,
            vec!["sh"]
        );
        assert_eq!(
            container_config(&spec(None, Some(&["-v"])), &image(), "w", None, false, None)
                .unwrap()
                .args,
            vec!["/entry", "-v"]
        );
        assert_eq!(
            container_config(
                &spec(Some(&["a"]), Some(&["b"])),
                &image(),
                "w",
                None,
                false,
                None
            )
            .unwrap()
            .args,
            vec!["a", "b"]
        );
    }

    #[test]
    fn defaults_when_the_image_says_nothing() {
        let img = ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        let c = container_config(&spec(None, None), &img, "w", None, false, None).unwrap();
        assert_eq!(c.env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(c.cwd, "/");
        assert!(matches!(
            container_config(
                &spec(None, None),
                &ImageConfig::default(),
                "w",
                None,
                false,
                None
            ),
            Err(ConfigError::NoCommand)
        ));
    }
}
