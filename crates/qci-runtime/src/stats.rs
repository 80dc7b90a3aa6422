//! Resource use read from a container's cgroup (v1 or v2) and its network namespace.

use serde::{Deserialize, Serialize};

use crate::cgroup::hierarchy_roots;
use crate::runtime::Runtime;

/// One reading of one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use less the inactive file cache (what `kubectl top` calls the working set).
    pub memory_bytes: u64,
    pub pids: u64,
    /// Bytes received and sent on every interface of the group's network namespace.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

fn read_u64(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_field(path: &std::path::Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// What `runsc events --stats` says of one container.
#[derive(Deserialize)]
struct RunscEvent {
    data: RunscStats,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunscStats {
    cpu: RunscCpu,
    memory: RunscMemory,
    pids: RunscPids,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunscCpu {
    usage: RunscTotal,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunscTotal {
    total: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunscMemory {
    usage: RunscUsage,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunscUsage {
    usage: u64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunscPids {
    current: u64,
}

/// A container's use from `runsc events --stats` output (one JSON object).
fn parse_runsc_stats(out: &str) -> Option<Stats> {
    let e: RunscEvent = serde_json::from_str(out.lines().next()?).ok()?;
    Some(Stats {
        cpu_ns: e.data.cpu.usage.total,
        memory_bytes: e.data.memory.usage.usage,
        pids: e.data.pids.current,
        ..Default::default()
    })
}

/// Adds the network counters of the namespace `pid` is in.
fn add_network(s: &mut Stats, pid: Option<u32>) {
    let Some(dev) =
        pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok())
    else {
        return;
    };
    for line in dev.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() >= 9 {
            s.rx_bytes += f[0];
            s.tx_bytes += f[8];
        }
    }
}

impl Runtime {
    /// The container's use now, or None if it has no cgroup (not running). A container in a
    /// gVisor sandbox is asked of runsc: its processes live in the sandbox, whose cgroup is
    /// the whole group's.
    pub fn stats(&self, group_id: &str, name: &str, pid: Option<u32>) -> Option<Stats> {
        let id = crate::Layout::runc_id(group_id, name);
        let engine = self.engine(&self.layout.container_dir(&id));
        if engine.gvisor {
            let out = engine.command(&["events", "--stats", &id]).output().ok()?;
            let mut s = parse_runsc_stats(&String::from_utf8_lossy(&out.stdout))?;
            // (The recorded pid is the sandbox's: in the group's network namespace.)
            add_network(&mut s, pid);
            return Some(s);
        }
        let rel = format!("{}/{name}", self.layout.group_cgroup(group_id));
        let rel = rel.trim_start_matches('/');
        let mut s = Stats::default();
        let mut found = false;
        for root in hierarchy_roots() {
            let dir = root.join(rel);
            if !dir.is_dir() {
                continue;
            }
            found = true;
            // cgroup v1 controllers, each in its own hierarchy.
            if let Some(v) = read_u64(&dir.join("cpuacct.usage")) {
                s.cpu_ns = v;
            }
            if let Some(v) = read_u64(&dir.join("memory.usage_in_bytes")) {
                let inactive =
                    stat_field(&dir.join("memory.stat"), "total_inactive_file ").unwrap_or(0);
                s.memory_bytes = v.saturating_sub(inactive);
            }
            if let Some(v) = read_u64(&dir.join("pids.current")) {
                s.pids = v;
            }
            // cgroup v2: one tree.
            if let Some(v) = stat_field(&dir.join("cpu.stat"), "usage_usec ") {
                s.cpu_ns = v * 1000;
            }
            if let Some(v) = read_u64(&dir.join("memory.current")) {
                let inactive = stat_field(&dir.join("memory.stat"), "inactive_file ").unwrap_or(0);
                s.memory_bytes = v.saturating_sub(inactive);
            }
        }
        add_network(&mut s, pid);
        found.then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runsc_stats_are_read() {
        let out = r#"{"type":"stats","id":"c2","data":{"cpu":{"usage":{"total":476332503}},"memory":{"usage":{"limit":0,"usage":4042752,"failcnt":0},"swap":{"limit":0,"failcnt":0}},"pids":{"current":2}}}"#;
        let s = parse_runsc_stats(out).unwrap();
        assert_eq!((s.cpu_ns, s.memory_bytes, s.pids), (476332503, 4042752, 2));
        assert_eq!(parse_runsc_stats("not json"), None);
        assert_eq!(parse_runsc_stats(""), None);
        // Fields it lacks read as nothing used.
        let s = parse_runsc_stats(r#"{"data":{}}"#).unwrap();
        assert_eq!(s, Stats::default());
    }
}
