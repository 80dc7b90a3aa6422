//! Resource use: a group's series, and every container's latest reading as Prometheus text.

use std::fmt::Write;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use qci_spec::MetricSample;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Scope;
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// From when: RFC 3339, or an age such as `10m` (default: the last hour).
    since: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MetricList {
    pub items: Vec<MetricSample>,
}

/// A group's resource use over time, per container: CPU (cores, and seconds in all), memory
/// working set, pids, and the group's network bytes. 24 hours are kept, one reading a minute
/// past the first hour.
#[utoipa::path(get, path = "/v1/container-groups/{id}/metrics", tag = "container-groups",
    params(("id" = String, Path, description = "Group id or name"), MetricsQuery),
    responses((status = 200, body = MetricList), (status = 404, body = crate::ErrorBody)))]
pub async fn group_metrics(
    State(s): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<MetricList>, ApiError> {
    let g = s.store.find_group(scope.owner(), &id)?;
    let since = match q.since.as_deref() {
        Some(v) => crate::logs::parse_since(v)?,
        None => chrono::Utc::now() - chrono::Duration::hours(1),
    };
    Ok(Json(MetricList {
        items: s.store.samples(&g.id, since)?,
    }))
}

/// Upper bounds (seconds) of the API latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// API request latency, for `/metrics` (`qci_api_request_duration_seconds`).
#[derive(Default)]
pub struct Latency {
    counts: [std::sync::atomic::AtomicU64; BUCKETS.len()],
    total: std::sync::atomic::AtomicU64,
    sum_micros: std::sync::atomic::AtomicU64,
}

impl Latency {
    fn observe(&self, secs: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.total.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String) {
        use std::sync::atomic::Ordering::Relaxed;
        let name = "qci_api_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to answer API requests\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let total = self.total.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// Times every request (streams until their headers are sent).
pub async fn time_requests(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    s.latency.observe(start.elapsed().as_secs_f64());
    resp
}

/// Prometheus text: every running container's latest reading, labelled by group id, group
/// name and container, and counts of groups by phase.
pub async fn prometheus(State(s): State<AppState>) -> Result<Response, ApiError> {
    let groups = s.store.all_groups()?;
    let mut out = String::new();
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let series = [
        (
            "qci_container_cpu_seconds_total",
            "counter",
            "CPU time used by the container",
        ),
        (
            "qci_container_memory_working_set_bytes",
            "gauge",
            "Memory in use less inactive file cache",
        ),
        (
            "qci_container_pids",
            "gauge",
            "Processes and threads in the container",
        ),
        (
            "qci_group_network_receive_bytes_total",
            "counter",
            "Bytes received in the group's network namespace",
        ),
        (
            "qci_group_network_transmit_bytes_total",
            "counter",
            "Bytes sent in the group's network namespace",
        ),
    ];
    let mut lines: Vec<Vec<String>> = vec![Vec::new(); series.len()];
    for g in &groups {
        let samples = s.store.samples(&g.id, since)?;
        let mut latest: std::collections::BTreeMap<&str, &MetricSample> = Default::default();
        for m in &samples {
            latest.insert(&m.container, m);
        }
        let labels = |c: Option<&str>| {
            let mut l = format!(
                "tenant=\"{}\",group_id=\"{}\",group=\"{}\"",
                g.owner, g.id, g.name
            );
            if let Some(c) = c {
                let _ = write!(l, ",container=\"{c}\"");
            }
            l
        };
        for (c, m) in &latest {
            lines[0].push(format!(
                "qci_container_cpu_seconds_total{{{}}} {}",
                labels(Some(c)),
                m.cpu_seconds_total
            ));
            lines[1].push(format!(
                "qci_container_memory_working_set_bytes{{{}}} {}",
                labels(Some(c)),
                m.memory_bytes
            ));
            lines[2].push(format!(
                "qci_container_pids{{{}}} {}",
                labels(Some(c)),
                m.pids
            ));
        }
        if let Some(m) = latest.values().next() {
            lines[3].push(format!(
                "qci_group_network_receive_bytes_total{{{}}} {}",
                labels(None),
                m.rx_bytes
            ));
            lines[4].push(format!(
                "qci_group_network_transmit_bytes_total{{{}}} {}",
                labels(None),
                m.tx_bytes
            ));
        }
    }
    for ((name, kind, help), l) in series.iter().zip(lines) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for line in l {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP qci_groups Container groups by phase\n# TYPE qci_groups gauge"
    );
    let mut phases: std::collections::BTreeMap<(&str, String), usize> = Default::default();
    for g in &groups {
        *phases
            .entry((g.owner.as_str(), g.status.phase.to_string()))
            .or_default() += 1;
    }
    for ((t, p), n) in phases {
        let _ = writeln!(out, "qci_groups{{tenant=\"{t}\",phase=\"{p}\"}} {n}");
    }
    let running: usize = groups
        .iter()
        .flat_map(|g| g.status.init_containers.iter().chain(&g.status.containers))
        .filter(|c| c.state == qci_spec::ContainerState::Running)
        .count();
    let _ = writeln!(
        out,
        "# HELP qci_monitors Containers running, each watched by a monitor\n# TYPE qci_monitors gauge\nqci_monitors {running}"
    );
    for (name, help, value) in (s.gauges)() {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    s.latency.render(&mut out);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(axum::body::Body::from(out))
        .map_err(|e| ApiError::Internal(e.to_string()))
}
