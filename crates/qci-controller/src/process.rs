//! What a container runs: the image's config merged with the spec, with Docker's semantics.

use qci_image::ImageConfig;
use qci_runtime::ContainerConfig;
use qci_spec::{ContainerSpec, parse_cpu_millis, parse_memory_bytes};

/// The PATH Docker supplies when an image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `command` replaces the image's ENTRYPOINT (and then drops its CMD), `args` replaces CMD;
/// the image's env, working dir and user apply unless the spec overrides them.
pub fn container_config(
    spec: &ContainerSpec,
    image: &ImageConfig,
    hostname: &str,
    shared_shm: bool,
    default_pids_limit: Option<i64>,
) -> Result<ContainerConfig, String> {
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
        return Err(
            "no command to run: the image has no ENTRYPOINT or CMD; set command".to_string(),
        );
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
        set(&e.name, &e.value);
    }
    let cwd = spec
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    Ok(ContainerConfig {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: Option<&[&str]>, args: Option<&[&str]>) -> ContainerSpec {
        ContainerSpec {
            command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
            args: args.map(|c| c.iter().map(|s| s.to_string()).collect()),
            env: vec![qci_spec::EnvVar {
                name: "B".into(),
                value: "spec".into(),
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
    fn docker_semantics() {
        let c = container_config(&spec(None, None), &image(), "web", false, None).unwrap();
        assert_eq!(c.args, vec!["/entry", "--serve"]);
        assert_eq!(
            c.env,
            vec!["PATH=/opt/bin", "HOSTNAME=web", "A=img", "B=spec"]
        );
        assert_eq!(c.cwd, "/app");
        assert_eq!(c.user.as_deref(), Some("www"));
        assert_eq!(c.memory_bytes, Some(64 << 20));
        assert_eq!(
            container_config(&spec(Some(&["sh"]), None), &image(), "w", false, None)
                .unwrap()
                .args,
            vec!["sh"]
        );
        assert_eq!(
            container_config(&spec(None, Some(&["-v"])), &image(), "w", false, None)
                .unwrap()
                .args,
            vec!["/entry", "-v"]
        );
        assert_eq!(
            container_config(
                &spec(Some(&["a"]), Some(&["b"])),
                &image(),
                "w",
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
        let c = container_config(&spec(None, None), &img, "w", false, None).unwrap();
        assert_eq!(c.env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(c.cwd, "/");
        assert!(
            container_config(&spec(None, None), &ImageConfig::default(), "w", false, None)
                .unwrap_err()
                .contains("no command")
        );
    }
}
