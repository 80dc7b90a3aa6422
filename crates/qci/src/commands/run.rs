//! `qci run [flags] IMAGE [CMD [ARG...]]`: `docker run` for one-container groups.
//!
//! The flags become a group spec (one container, named like the group) that the server
//! validates as any other; in the foreground the container's output is followed until it
//! ends and qci exits with its exit code, as `docker run` does (125 when the container
//! could not be started, 130 on Ctrl-C). `--rm` deletes the group at the end.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use qci_client::{Client, ClientError, LogOptions};
use qci_spec::{ContainerGroup, ContainerState, WaitFor};
use serde_json::{Value, json};

use crate::cli::RunArgs;

/// Docker's exit code when the container could not be run at all.
const NOT_RUN: u8 = 125;

pub async fn run(client: &Client, a: RunArgs) -> anyhow::Result<ExitCode> {
    let name = match &a.name {
        Some(n) => n.clone(),
        None => default_name(&a.image),
    };
    let spec = spec(&a, &name, |k| std::env::var(k).ok())?;
    let g = match client.create_group(&spec.to_string()).await {
        Ok(g) => g,
        Err(ClientError::Api { fields, .. }) if !fields.is_empty() => {
            eprintln!("error: qci run made a group spec the server refused:");
            for f in fields {
                eprintln!("  {f}");
            }
            return Ok(ExitCode::from(NOT_RUN));
        }
        Err(e) => return Err(e.into()),
    };
    if a.detach {
        println!("{}", g.id);
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = tokio::select! {
        r = foreground(client, &g.id, &name, a.interactive, a.tty) => r,
        _ = tokio::signal::ctrl_c() => {
            if !a.rm {
                eprintln!("qci: group {name} keeps running; `qci delete {name}` stops it");
            }
            Ok(ExitCode::from(130))
        }
    };
    if a.rm {
        remove(client, &g.id).await?;
    }
    outcome
}

/// Waits for the container to start, prints its output until it ends, and gives its exit
/// code.
async fn foreground(
    client: &Client,
    id: &str,
    container: &str,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<ExitCode> {
    // Started (or already over), or stuck: an image that cannot be pulled, a command that
    // cannot run.
    loop {
        let g = client
            .wait_group(id, WaitFor::Running, Duration::from_secs(1))
            .await?;
        if let Some((_, reason, message)) = g.stuck() {
            eprintln!("error: {}: {reason}: {message}", g.name);
            return Ok(ExitCode::from(not_run_code(reason, message)));
        }
        let state = own(&g, container).map(|c| c.state);
        if matches!(
            state,
            Some(ContainerState::Running | ContainerState::Terminated)
        ) || g.status.phase.is_final()
        {
            break;
        }
    }
    // Attached: this terminal or standard input is the container's, and its output comes
    // as it is written. (A container that already ended has only its log to show.)
    if (stdin || tty)
        && own(&client.get_group(id).await?, container).map(|c| c.state)
            == Some(ContainerState::Running)
    {
        let (io, raw) = super::exec::session_io(stdin, tty);
        match client
            .attach(id, container, io, super::exec::print_output)
            .await
        {
            Ok(code) => {
                drop(raw);
                return Ok(exit_code(code));
            }
            // It ended between the look and the attach.
            Err(ClientError::Api { status: 409, .. }) => drop(raw),
            // Or as the attach began (a quick command): once its status says it ended, its
            // log and exit code tell the rest; still running, the error stands.
            Err(e) => {
                drop(raw);
                let mut ended = false;
                for _ in 0..30 {
                    let g = client.get_group(id).await?;
                    if own(&g, container).map(|c| c.state) != Some(ContainerState::Running) {
                        ended = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if !ended {
                    return Err(e.into());
                }
            }
        }
    }
    // Its stdout here to stdout, its stderr to stderr.
    let (out, err) = tokio::join!(
        copy(client, id, container, "stdout", std::io::stdout()),
        copy(client, id, container, "stderr", std::io::stderr()),
    );
    out?;
    err?;
    let g = match client.get_group(id).await {
        Ok(g) => g,
        Err(e) if e.is_not_found() => bail!("the group was deleted while it ran"),
        Err(e) => return Err(e.into()),
    };
    match own(&g, container) {
        Some(c) if c.state == ContainerState::Terminated => {
            if c.reason.as_deref() == Some("OOMKilled") {
                eprintln!("qci: {container} was killed: out of memory (OOMKilled)");
            }
            Ok(exit_code(c.exit_code.unwrap_or(1)))
        }
        _ => bail!(
            "the output of {container} ended while it was {}",
            g.status.phase
        ),
    }
}

/// Docker's codes for a container that never ran: 127 for a command that is not there, 126
/// for one that cannot be run, 125 for anything else (an image, a configuration).
fn not_run_code(reason: &str, message: &str) -> u8 {
    if reason != "ContainerCannotRun" {
        NOT_RUN
    } else if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        NOT_RUN
    }
}

/// Follows one of the container's streams into `to` until the container ends.
async fn copy(
    client: &Client,
    id: &str,
    container: &str,
    stream: &str,
    mut to: impl Write,
) -> anyhow::Result<()> {
    let opts = LogOptions {
        container: Some(container.to_string()),
        follow: true,
        stream: Some(stream.to_string()),
        ..Default::default()
    };
    let mut body = client.logs(id, &opts).await?.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("reading the container's {stream}"))?;
        // A reader that stopped reading (`| head`) is not the container's failure.
        if to.write_all(&chunk).and_then(|_| to.flush()).is_err() {
            break;
        }
    }
    Ok(())
}

fn own<'a>(g: &'a ContainerGroup, name: &str) -> Option<&'a qci_spec::ContainerStatus> {
    g.status.containers.iter().find(|c| c.name == name)
}

/// A container's exit code as this process's: 0–255 (a signal's 128+N stays as it is).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Deletes the group and waits until it is gone.
async fn remove(client: &Client, id: &str) -> anyhow::Result<()> {
    match client.delete_group(id).await {
        Err(e) if e.is_not_found() => return Ok(()),
        r => {
            r?;
        }
    }
    let start = Instant::now();
    loop {
        match client.get_group(id).await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) if start.elapsed() > Duration::from_secs(120) => {
                bail!("group {id} is still being deleted after 120s")
            }
            // (Deletion is a few passes of the controller: asked often, it is seen soon.)
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The image's name (its last path part, without tag or digest) and a random suffix, as a
/// DNS label: `127.0.0.1:5000/library/busybox:1.36` → `busybox-3f9a1c`.
fn default_name(image: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let base = image.split('@').next().unwrap_or(image);
    let last = base.rsplit('/').next().unwrap_or(base);
    let last = last.split(':').next().unwrap_or(last);
    let mut label: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    label = label.trim_matches('-').chars().take(40).collect();
    if label.is_empty() || !label.starts_with(|c: char| c.is_ascii_lowercase()) {
        label.insert_str(0, "run-");
    }
    // RandomState is seeded at random per process: six hex digits with no extra crate.
    let n = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{}-{:06x}", label.trim_end_matches('-'), n & 0xff_ffff)
}

/// The group spec the flags describe. `local_env` reads this process's environment (for
/// `-e NAME` without a value, which Docker takes from the caller).
fn spec(
    a: &RunArgs,
    name: &str,
    local_env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Value> {
    let mut c = json!({"name": name, "image": a.image});
    if a.interactive {
        c["stdin"] = json!(true);
    }
    if a.tty {
        c["tty"] = json!(true);
    }
    if let Some(e) = &a.entrypoint {
        c["command"] = json!([e]);
    }
    if !a.command.is_empty() {
        c["args"] = json!(a.command);
    }
    if let Some(w) = &a.workdir {
        c["working_dir"] = json!(w);
    }
    if let Some(cpu) = &a.cpu {
        c["cpu"] = json!(cpu);
    }
    if let Some(m) = &a.memory {
        c["memory"] = json!(m);
    }
    let mut env = Vec::new();
    for e in &a.env {
        match e.split_once('=') {
            Some((k, v)) => env.push(json!({"name": k, "value": v})),
            None => {
                if let Some(v) = local_env(e) {
                    env.push(json!({"name": e, "value": v}));
                }
            }
        }
    }
    if !env.is_empty() {
        c["env"] = json!(env);
    }
    let ports = a
        .ports
        .iter()
        .map(|p| port(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !ports.is_empty() {
        c["ports"] = json!(ports);
    }
    let mut volumes: Vec<Value> = Vec::new();
    let mut mounts = Vec::new();
    for v in &a.volumes {
        let m = volume(v)?;
        let vol = match volumes.iter().position(|x| x["disk"]["id"] == m.disk) {
            Some(i) => format!("disk{i}"),
            None => {
                volumes.push(
                    json!({"name": format!("disk{}", volumes.len()), "disk": {"id": m.disk}}),
                );
                format!("disk{}", volumes.len() - 1)
            }
        };
        let mut mount = json!({"name": vol, "mount_path": m.path});
        if let Some(sub) = m.sub_path {
            mount["sub_path"] = json!(sub);
        }
        if m.read_only {
            mount["read_only"] = json!(true);
        }
        mounts.push(mount);
    }
    if !mounts.is_empty() {
        c["volume_mounts"] = json!(mounts);
    }
    let mut g = json!({
        "name": name,
        "restart_policy": restart_policy(&a.restart)?,
        "containers": [c],
    });
    if !volumes.is_empty() {
        g["volumes"] = json!(volumes);
    }
    if let Some(r) = &a.runtime {
        // (`--runtime runsc` is how Docker users name gVisor.)
        let r: qci_spec::ContainerRuntime = if r == "runsc" { "gvisor" } else { r }
            .parse()
            .map_err(|e| anyhow::anyhow!("--runtime: {e}"))?;
        g["runtime"] = json!(r.as_str());
    }
    if a.vpc.is_some() || a.eip.is_some() {
        let mut n = json!({});
        if let Some(v) = &a.vpc {
            n["vpc"] = json!(v);
        }
        if let Some(e) = &a.eip {
            n["eip"] = json!(e);
        }
        g["network"] = n;
    }
    Ok(g)
}

/// `-p 8080`, `-p 53/udp`. Docker's `HOST:CONTAINER` has no meaning here: a port is
/// published on the group's EIP under its own number.
fn port(p: &str) -> anyhow::Result<Value> {
    let (num, proto) = match p.split_once('/') {
        Some((n, pr)) => (n, pr.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if num.contains(':') {
        bail!(
            "-p {p}: qci publishes a port on the group's EIP under the number the container \
             listens on; give that number alone (-p 80), with --eip auto to publish it"
        );
    }
    let protocol = match proto.as_str() {
        "tcp" => "TCP",
        "udp" => "UDP",
        _ => bail!("-p {p}: the protocol must be tcp or udp"),
    };
    let port: u16 = num
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("-p {p}: {num:?} is not a port number (1-65535)"))?;
    Ok(json!({"port": port, "protocol": protocol}))
}

#[derive(Debug, PartialEq)]
struct DiskMount {
    disk: String,
    sub_path: Option<String>,
    path: String,
    read_only: bool,
}

/// `-v DISK[/SUB]:PATH[:ro|:rw]`.
fn volume(v: &str) -> anyhow::Result<DiskMount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, path, read_only) = match parts.as_slice() {
        [src, path] => (*src, *path, false),
        [src, path, "ro"] => (*src, *path, true),
        [src, path, "rw"] => (*src, *path, false),
        _ => bail!("-v {v}: expected DISK[/SUB]:PATH[:ro], such as -v data:/var/lib/data"),
    };
    if src.starts_with('/') || src.starts_with('.') {
        bail!(
            "-v {v}: qci mounts disks, not host directories: create one with `qci disk create` \
             and give its name"
        );
    }
    let (disk, sub) = match src.split_once('/') {
        Some((d, s)) => (d, Some(s.to_string()).filter(|s| !s.is_empty())),
        None => (src, None),
    };
    if disk.is_empty() || path.is_empty() {
        bail!("-v {v}: expected DISK[/SUB]:PATH[:ro], such as -v data:/var/lib/data");
    }
    Ok(DiskMount {
        disk: disk.to_string(),
        sub_path: sub,
        path: path.to_string(),
        read_only,
    })
}

/// qci's policies, and Docker's names for them.
fn restart_policy(r: &str) -> anyhow::Result<&'static str> {
    Ok(match r.to_ascii_lowercase().as_str() {
        "never" | "no" => "Never",
        "onfailure" | "on-failure" => "OnFailure",
        "always" | "unless-stopped" => "Always",
        _ => bail!(
            "--restart {r}: must be Always, OnFailure or Never (or Docker's no, on-failure, always, unless-stopped)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> RunArgs {
        let mut argv = vec!["qci", "run"];
        argv.extend_from_slice(line);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_become_a_spec() {
        let a = args(&[
            "--name",
            "web",
            "-e",
            "A=1",
            "-e",
            "HOME_FROM_HERE",
            "-e",
            "UNSET",
            "-p",
            "8080",
            "-p",
            "53/udp",
            "--cpu",
            "0.5",
            "-m",
            "256Mi",
            "-v",
            "data/www:/srv:ro",
            "-v",
            "data:/all",
            "--eip",
            "auto",
            "--restart",
            "on-failure",
            "-w",
            "/srv",
            "img:1",
            "sh",
            "-c",
            "exit 3",
        ]);
        let env = |k: &str| (k == "HOME_FROM_HERE").then(|| "/root".to_string());
        let got = spec(&a, "web", env).unwrap();
        assert_eq!(
            got,
            json!({
                "name": "web",
                "restart_policy": "OnFailure",
                "containers": [{
                    "name": "web", "image": "img:1", "args": ["sh", "-c", "exit 3"],
                    "working_dir": "/srv", "cpu": "0.5", "memory": "256Mi",
                    "env": [{"name": "A", "value": "1"}, {"name": "HOME_FROM_HERE", "value": "/root"}],
                    "ports": [{"port": 8080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                    "volume_mounts": [
                        {"name": "disk0", "mount_path": "/srv", "sub_path": "www", "read_only": true},
                        {"name": "disk0", "mount_path": "/all"},
                    ],
                }],
                "volumes": [{"name": "disk0", "disk": {"id": "data"}}],
                "network": {"eip": "auto"},
            })
        );
        // Arguments that look like flags belong to the command.
        let a = args(&["img", "ls", "-la", "--color"]);
        assert_eq!(
            spec(&a, "x", |_| None).unwrap()["containers"][0]["args"],
            json!(["ls", "-la", "--color"])
        );
        assert_eq!(spec(&a, "x", |_| None).unwrap()["restart_policy"], "Never");
        // The rest of the flags.
        let a = args(&[
            "--vpc",
            "v",
            "--entrypoint",
            "/bin/sh",
            "-it",
            "img",
            "-c",
            "x",
        ]);
        let got = spec(&a, "x", |_| None).unwrap();
        assert_eq!(got["network"], json!({"vpc": "v"}));
        assert!(got.get("runtime").is_none());
        for (flag, want) in [("gvisor", "gvisor"), ("runsc", "gvisor"), ("runc", "runc")] {
            let a = args(&["--runtime", flag, "img"]);
            assert_eq!(spec(&a, "x", |_| None).unwrap()["runtime"], want);
        }
        let a = args(&["--runtime", "kata", "img"]);
        let e = spec(&a, "x", |_| None).unwrap_err().to_string();
        assert!(e.starts_with("--runtime: \"kata\" is not a runtime"), "{e}");
        let c = &got["containers"][0];
        assert_eq!(
            (&c["command"], &c["args"], &c["stdin"], &c["tty"]),
            (
                &json!(["/bin/sh"]),
                &json!(["-c", "x"]),
                &json!(true),
                &json!(true)
            )
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let cases = [
            (vec!["-p", "8080:80", "i"], "-p 8080:80"),
            (vec!["-p", "0", "i"], "-p 0"),
            (vec!["-p", "80/sctp", "i"], "tcp or udp"),
            (vec!["-v", "/etc:/x", "i"], "not host directories"),
            (vec!["-v", "d", "i"], "-v d: expected"),
            (vec!["-v", "d:/x:rx", "i"], "-v d:/x:rx"),
            (vec!["--restart", "sometimes", "i"], "--restart sometimes"),
        ];
        for (line, said) in cases {
            let e = spec(&args(&line), "x", |_| None).unwrap_err().to_string();
            assert!(e.contains(said), "{line:?}: {e}");
        }
    }

    #[test]
    fn containers_that_never_ran_get_dockers_codes() {
        let cases = [
            ("ErrImagePull", "manifest unknown", 125),
            (
                "ContainerCannotRun",
                "exec: \"x\": executable file not found in $PATH",
                127,
            ),
            (
                "ContainerCannotRun",
                "exec: \"/x\": stat /x: no such file or directory",
                127,
            ),
            (
                "ContainerCannotRun",
                "exec: \"/etc\": permission denied",
                126,
            ),
            ("ContainerCannotRun", "something else", 125),
            (
                "CreateContainerConfigError",
                "no such file or directory",
                125,
            ),
        ];
        for (reason, message, code) in cases {
            assert_eq!(not_run_code(reason, message), code, "{reason}: {message}");
        }
    }

    #[test]
    fn default_names_are_dns_labels() {
        for (image, prefix) in [
            ("127.0.0.1:5000/library/busybox:1.36", "busybox-"),
            ("Web_App@sha256:abc", "web-app-"),
            ("r/9lives", "run-9lives-"),
        ] {
            let n = default_name(image);
            assert!(n.starts_with(prefix), "{image}: {n}");
            assert_eq!(n.len(), prefix.len() + 6, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
        }
        assert_ne!(default_name("a"), default_name("a"));
    }
}
