//! Health probes: when each is due, what its results add up to, and what a failing liveness
//! or startup probe does (the container is stopped; the restart policy decides what follows).
//!
//! Results live in memory, keyed by the container's run (its start time): after `qci serve`
//! restarts, probing starts over and the group's health is `checking` until known again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use qci_runtime::ProbeOutcome;
use qci_spec::{
    ContainerGroup, ContainerSpec, ContainerState, ContainerStatus, EventType, GroupPhase, Health,
    Probe,
};

use crate::Controller;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// One probe of one container run.
#[derive(Debug, Default)]
pub(crate) struct ProbeState {
    run: Option<DateTime<Utc>>,
    last: Option<Instant>,
    running: bool,
    successes: u32,
    failures: u32,
    /// The verdict once thresholds say so.
    result: Option<bool>,
}

pub(crate) type ProbeKey = (String, String, Kind);
pub(crate) type Probes = std::sync::Mutex<HashMap<ProbeKey, ProbeState>>;

fn probe_of(c: &ContainerSpec, k: Kind) -> Option<&Probe> {
    match k {
        Kind::Startup => c.startup_probe.as_ref(),
        Kind::Liveness => c.liveness_probe.as_ref(),
        Kind::Readiness => c.readiness_probe.as_ref(),
    }
}

impl Controller {
    /// Starts the probes that are due for a running container and fills in `started` and
    /// `ready` from what they found so far.
    pub(crate) fn tick_probes(
        self: &std::sync::Arc<Self>,
        g: &ContainerGroup,
        c: &ContainerSpec,
        st: &mut ContainerStatus,
    ) {
        if st.state != ContainerState::Running {
            st.ready = None;
            st.started = None;
            self.probes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|k, _| !(k.0 == g.id && k.1 == c.name));
            return;
        }
        let run = st.started_at;
        // What is known so far, and which probes are due.
        let started = match c.startup_probe {
            None => Some(true),
            Some(_) => self.result(g, c, Kind::Startup, run),
        };
        st.started = started;
        let mut launch = Vec::new();
        if c.startup_probe.is_some() && started != Some(true) {
            launch.push(Kind::Startup);
        } else {
            launch.extend([Kind::Liveness, Kind::Readiness]);
        }
        for k in launch {
            if probe_of(c, k).is_some() && self.claim(g, c, k, run) {
                let this = self.clone();
                let (g2, c2) = (g.clone(), c.clone());
                tokio::spawn(async move { this.run_probe(&g2, &c2, k).await });
            }
        }
        st.ready = match (&c.readiness_probe, started) {
            (_, None) => None,
            (_, Some(false)) => Some(false),
            (None, Some(true)) => Some(true),
            (Some(_), Some(true)) => self.result(g, c, Kind::Readiness, run),
        };
    }

    /// What the probe found for this run of the container (nothing from an earlier run).
    fn result(
        &self,
        g: &ContainerGroup,
        c: &ContainerSpec,
        k: Kind,
        run: Option<DateTime<Utc>>,
    ) -> Option<bool> {
        let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes
            .get(&(g.id.clone(), c.name.clone(), k))
            .filter(|s| s.run == run)
            .and_then(|s| s.result)
    }

    /// Marks the probe as running if it is due; true if the caller should run it.
    fn claim(
        &self,
        g: &ContainerGroup,
        c: &ContainerSpec,
        k: Kind,
        run: Option<DateTime<Utc>>,
    ) -> bool {
        let Some(p) = probe_of(c, k) else {
            return false;
        };
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        let state = probes.entry((g.id.clone(), c.name.clone(), k)).or_default();
        if state.run != run {
            *state = ProbeState {
                run,
                ..Default::default()
            };
        }
        let Some(started) = run else { return false };
        let due = !state.running
            && Utc::now()
                >= started + chrono::Duration::seconds(i64::from(p.initial_delay_seconds))
            && state
                .last
                .is_none_or(|l| l.elapsed() >= Duration::from_secs(u64::from(p.period_seconds)));
        if due {
            state.running = true;
            state.last = Some(Instant::now());
        }
        due
    }

    async fn run_probe(&self, g: &ContainerGroup, c: &ContainerSpec, k: Kind) {
        let Some(p) = probe_of(c, k) else { return };
        let timeout = Duration::from_secs(u64::from(p.timeout_seconds));
        let outcome = if let Some(e) = &p.exec {
            self.runtime
                .probe_exec(&g.id, &c.name, &e.command, timeout)
                .await
        } else if let Some(h) = &p.http_get {
            self.runtime
                .probe_http(&g.id, h.port as u16, &h.path, timeout)
                .await
        } else if let Some(t) = &p.tcp_socket {
            self.runtime.probe_tcp(&g.id, t.port as u16, timeout).await
        } else {
            return;
        };
        let mut kill = None;
        let mut unready = None;
        {
            let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
            let Some(state) = probes.get_mut(&(g.id.clone(), c.name.clone(), k)) else {
                return;
            };
            state.running = false;
            match &outcome {
                ProbeOutcome::Success => {
                    state.failures = 0;
                    state.successes += 1;
                    if state.successes >= p.success_threshold {
                        state.result = Some(true);
                    }
                }
                ProbeOutcome::Failure(msg) => {
                    state.successes = 0;
                    state.failures += 1;
                    if state.failures >= p.failure_threshold {
                        if k == Kind::Readiness && state.result != Some(false) {
                            unready = Some(msg.clone());
                        }
                        state.result = Some(false);
                        if k != Kind::Readiness {
                            // Start counting again for the container's next run.
                            state.failures = 0;
                            kill = Some(msg.clone());
                        }
                    }
                }
            }
        }
        if let Some(msg) = unready {
            self.event(
                g,
                Some(&c.name),
                EventType::Warning,
                "Unhealthy",
                &format!("Readiness probe failed: {msg}"),
            );
        }
        if let Some(msg) = kill {
            self.event(
                g,
                Some(&c.name),
                EventType::Warning,
                "Unhealthy",
                &format!("{} probe failed: {msg}", k.name()),
            );
            self.event(
                g,
                Some(&c.name),
                EventType::Normal,
                "Killing",
                &format!(
                    "container failed its {} probe; stopping it",
                    k.name().to_lowercase()
                ),
            );
            let grace = Duration::from_secs(g.spec.termination_grace_period_seconds);
            if let Err(e) = self.runtime.stop(&g.id, &c.name, grace).await {
                tracing::warn!(group = %g.id, container = %c.name, "stopping after a failed probe: {e}");
            }
        }
        self.wake();
    }
}

/// The group's health from its phase and its work containers.
pub(crate) fn health_of(phase: GroupPhase, work: &[ContainerStatus]) -> Health {
    match phase {
        GroupPhase::Succeeded => return Health::Healthy,
        GroupPhase::Failed => return Health::Unhealthy,
        GroupPhase::Pending | GroupPhase::Deleting => return Health::Checking,
        GroupPhase::Running | GroupPhase::Restarting | GroupPhase::Updating => {}
    }
    let mut checking = false;
    for c in work {
        match (c.state, c.ready) {
            (ContainerState::Running, Some(true)) => {}
            (ContainerState::Running, None) => checking = true,
            // A container that completed and will not run again is fine.
            (ContainerState::Terminated, _) if c.exit_code == Some(0) => {}
            _ => return Health::Unhealthy,
        }
    }
    if checking {
        Health::Checking
    } else {
        Health::Healthy
    }
}
