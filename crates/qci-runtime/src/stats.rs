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

impl Runtime {
    /// The container's use now, or None if it has no cgroup (not running).
    pub fn stats(&self, group_id: &str, name: &str, pid: Option<u32>) -> Option<Stats> {
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
        if let Some(pid) = pid
            && let Ok(dev) = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        {
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
        found.then_some(s)
    }
}
