//! cgroup clean-up. runc creates each container's cgroup and removes it on delete; qci removes
//! the group's parent directory in every hierarchy (cgroup v1, hybrid, or v2).

use std::path::PathBuf;

/// Mount points of every cgroup hierarchy (v1 controllers and the v2 unified tree).
pub fn hierarchy_roots() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mount_point = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// Every existing directory of cgroup `rel` (e.g. `/qci-x/cg-y`), in all hierarchies.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    hierarchy_roots()
        .into_iter()
        .map(|r| r.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes cgroup `rel` and any empty children, in all hierarchies. cgroup directories are
/// removed with rmdir (their files cannot be unlinked), deepest first.
pub fn remove(rel: &str) -> std::io::Result<()> {
    for dir in cgroup_dirs(rel) {
        remove_tree(&dir)?;
    }
    Ok(())
}

fn remove_tree(dir: &std::path::Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(std::io::Error::other(format!(
            "removing cgroup {}: {e}",
            dir.display()
        ))),
    }
}

/// How many times the kernel's OOM killer fired in cgroup `rel` (v2 `memory.events`, or v1
/// `memory.oom_control`).
pub fn oom_kills(rel: &str) -> u64 {
    let rel = rel.trim_start_matches('/');
    for root in hierarchy_roots() {
        for file in ["memory.events", "memory.oom_control"] {
            if let Ok(text) = std::fs::read_to_string(root.join(rel).join(file))
                && let Some(n) = text.lines().find_map(|l| l.strip_prefix("oom_kill "))
            {
                return n.trim().parse().unwrap_or(0);
            }
        }
    }
    0
}
