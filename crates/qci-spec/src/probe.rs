//! Health probes, with Kubernetes' fields and defaults.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::FieldError;

/// One probe: exactly one of `exec`, `http_get`, `tcp_socket`, and its timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default)]
    pub initial_delay_seconds: u32,
    #[serde(default = "ten")]
    pub period_seconds: u32,
    #[serde(default = "one")]
    pub timeout_seconds: u32,
    #[serde(default = "one")]
    pub success_threshold: u32,
    #[serde(default = "three")]
    pub failure_threshold: u32,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn ten() -> u32 {
    10
}

/// Runs a command in the container; exit status 0 is success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecAction {
    pub command: Vec<String>,
}

/// An HTTP GET to the group's loopback; a status from 200 to 399 is success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpGetAction {
    #[serde(default = "root_path")]
    pub path: String,
    pub port: i64,
    #[serde(default)]
    pub scheme: Scheme,
}

fn root_path() -> String {
    "/".to_string()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Scheme {
    #[default]
    HTTP,
    HTTPS,
}

/// A TCP connection to the group's loopback; connecting is success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpSocketAction {
    pub port: i64,
}

/// The rules a probe follows; `liveness` is true for liveness and startup probes, whose
/// success threshold must be 1.
pub(crate) fn check_probe(path: &str, p: &Probe, liveness: bool, errs: &mut Vec<FieldError>) {
    let mut add = |f: &str, m: &str| {
        errs.push(FieldError {
            field: format!("{path}{f}"),
            message: m.to_string(),
        })
    };
    let actions = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
    ]
    .iter()
    .filter(|a| **a)
    .count();
    if actions != 1 {
        add("", "give exactly one of exec, http_get and tcp_socket");
    }
    if let Some(e) = &p.exec
        && (e.command.is_empty() || e.command.iter().any(|a| a.contains('\0')))
    {
        add(
            ".exec.command",
            "must be a non-empty list of strings without NUL",
        );
    }
    if let Some(h) = &p.http_get {
        if !(1..=65535).contains(&h.port) {
            add(".http_get.port", "must be between 1 and 65535");
        }
        if !h.path.starts_with('/') || h.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            add(
                ".http_get.path",
                "must start with / and hold no spaces or control characters",
            );
        }
        if h.scheme == Scheme::HTTPS {
            add(
                ".http_get.scheme",
                "HTTPS probes are not supported yet; use HTTP or tcp_socket",
            );
        }
    }
    if let Some(t) = &p.tcp_socket
        && !(1..=65535).contains(&t.port)
    {
        add(".tcp_socket.port", "must be between 1 and 65535");
    }
    for (f, v) in [
        (".period_seconds", p.period_seconds),
        (".timeout_seconds", p.timeout_seconds),
        (".success_threshold", p.success_threshold),
        (".failure_threshold", p.failure_threshold),
    ] {
        if v == 0 {
            add(f, "must be at least 1");
        }
    }
    if liveness && p.success_threshold != 1 {
        add(
            ".success_threshold",
            "must be 1 for liveness and startup probes",
        );
    }
}
