//! The group's cgroup. runc creates each container's cgroup (a child of the group's) and
//! removes it on delete; qci sets the group's own limits, so its containers together never use
//! more than the group is sized (and billed) for, and removes the group's directory in every
//! hierarchy (cgroup v1, hybrid, or v2) at the end.

use std::path::{Path, PathBuf};

/// CFS period for the group's CPU limit (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// What a group's cgroup holds its containers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no {0} cgroup controller is mounted")]
    NoController(&'static str),
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: String,
        value: String,
        source: std::io::Error,
    },
}

/// The files and values that put `l` on a group's cgroup, per hierarchy kind. Memory with no
/// swap beyond it (v1 `memsw`, v2 `swap.max`), CPU as a CFS quota per period.
pub fn limit_files(v2: bool, l: GroupLimits) -> Vec<(&'static str, &'static str, String)> {
    let quota = (l.cpu_millis * CPU_PERIOD_US / 1000).max(1000);
    if v2 {
        vec![
            ("memory", "memory.max", l.memory_bytes.to_string()),
            ("memory", "memory.swap.max", "0".to_string()),
            ("cpu", "cpu.max", format!("{quota} {CPU_PERIOD_US}")),
        ]
    } else {
        vec![
            (
                "memory",
                "memory.limit_in_bytes",
                l.memory_bytes.to_string(),
            ),
            (
                "memory",
                "memory.memsw.limit_in_bytes",
                l.memory_bytes.to_string(),
            ),
            ("cpu", "cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
            ("cpu", "cpu.cfs_quota_us", quota.to_string()),
        ]
    }
}

/// The cgroup mounts: (fstype, mount point, super options).
pub(crate) fn cgroup_mounts(mountinfo: &str) -> Vec<(&str, &str, &str)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let options = post.nth(1).unwrap_or("");
            let point = pre.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then_some((fstype, point, options))
        })
        .collect()
}

/// A cgroup hierarchy as mounted: its mount point, whether it is the v2 tree, and its mount
/// options (a v1 hierarchy's controllers are among them).
struct Hierarchy {
    point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

/// The machine's cgroup hierarchies, read from the mount table once: they are mounted at boot
/// and stay, and the sampler asks for them for every container every interval.
fn hierarchies() -> &'static [Hierarchy] {
    static FOUND: std::sync::OnceLock<Vec<Hierarchy>> = std::sync::OnceLock::new();
    if let Some(h) = FOUND.get() {
        return h;
    }
    let Ok(table) = crate::mounts::table() else {
        return &[];
    };
    let found: Vec<Hierarchy> = cgroup_mounts(&table.text)
        .into_iter()
        .map(|(fstype, point, options)| Hierarchy {
            point: PathBuf::from(point),
            v2: fstype == "cgroup2",
            options: options.split(',').map(String::from).collect(),
        })
        .collect();
    if found.is_empty() {
        // Not mounted yet (or no cgroups at all): ask again next time.
        return &[];
    }
    FOUND.get_or_init(|| found)
}

/// The mount point of the v1 hierarchy holding `controller`, or of the v2 tree.
fn hierarchy_of(controller: &str) -> Option<(PathBuf, bool)> {
    let all = hierarchies();
    all.iter()
        .find(|h| !h.v2 && h.options.iter().any(|o| o == controller))
        .or_else(|| all.iter().find(|h| h.v2))
        .map(|h| (h.point.clone(), h.v2))
}

/// Creates cgroup `rel` (e.g. `/qci-x/cg-y`) with limits `l`, or changes the limits of the one
/// there: the kernel applies a new limit to running processes at once.
pub fn set_group_limits(rel: &str, l: GroupLimits) -> Result<(), CgroupError> {
    apply(rel, l, &["memory", "cpu"])
}

/// Changes only the CPU quota of the group's cgroup `rel` (made by [`set_group_limits`]) to
/// `cpu_millis`; its memory limit stays as it is.
pub fn set_group_cpu(rel: &str, cpu_millis: u64) -> Result<(), CgroupError> {
    let l = GroupLimits {
        cpu_millis,
        memory_bytes: 0,
    };
    apply(rel, l, &["cpu"])
}

fn apply(rel: &str, l: GroupLimits, controllers: &[&'static str]) -> Result<(), CgroupError> {
    let rel = rel.trim_start_matches('/');
    for &controller in controllers {
        let (root, v2) = hierarchy_of(controller).ok_or(CgroupError::NoController(controller))?;
        let dir = root.join(rel);
        if v2 {
            enable_v2_controllers(&root, rel)?;
        }
        std::fs::create_dir_all(&dir).map_err(|source| CgroupError::Write {
            path: dir.display().to_string(),
            value: "(mkdir)".into(),
            source,
        })?;
        // v1 refuses a memory limit above memsw, and a memsw below the limit: when the limit
        // grows the first write of the limit fails, memsw grows, and the second one succeeds.
        let mut retry = None;
        for (c, file, value) in limit_files(v2, l) {
            if c != controller {
                continue;
            }
            let path = dir.join(file);
            // No swap accounting (v1 without memsw, v2 without swap): nothing to limit there.
            if file.contains("sw") && !path.exists() {
                continue;
            }
            match write(&path, &value) {
                Err(_) if file == "memory.limit_in_bytes" => retry = Some((path, value)),
                other => other?,
            }
        }
        if let Some((path, value)) = retry {
            write(&path, &value)?;
        }
        // (On v2 both controllers' files are in the one directory; each writes its own. This
        // loop used to stop after memory there, which left a v2 group without its CPU quota.)
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.display().to_string(),
        value: value.to_string(),
        source,
    })
}

/// v2 hands a controller to a child only if every ancestor's subtree_control enables it.
fn enable_v2_controllers(root: &Path, rel: &str) -> Result<(), CgroupError> {
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for part in std::iter::once("").chain(parts.iter().copied()) {
        if !part.is_empty() {
            dir = dir.join(part);
            std::fs::create_dir_all(&dir).map_err(|source| CgroupError::Write {
                path: dir.display().to_string(),
                value: "(mkdir)".into(),
                source,
            })?;
        }
        let control = dir.join("cgroup.subtree_control");
        let have = std::fs::read_to_string(&control).unwrap_or_default();
        for c in ["cpu", "memory", "pids"] {
            if !have.split_whitespace().any(|h| h == c) {
                write(&control, &format!("+{c}"))?;
            }
        }
    }
    Ok(())
}

/// Mount points of every cgroup hierarchy (v1 controllers and the v2 unified tree).
pub fn hierarchy_roots() -> Vec<PathBuf> {
    hierarchies().iter().map(|h| h.point.clone()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_hierarchy_kind() {
        let l = GroupLimits {
            cpu_millis: 500,
            memory_bytes: 1 << 30,
        };
        assert_eq!(
            limit_files(true, l),
            vec![
                ("memory", "memory.max", "1073741824".to_string()),
                ("memory", "memory.swap.max", "0".to_string()),
                ("cpu", "cpu.max", "50000 100000".to_string()),
            ]
        );
        let v1 = limit_files(false, l);
        assert!(v1.contains(&("cpu", "cpu.cfs_quota_us", "50000".to_string())));
        assert!(v1.contains(&(
            "memory",
            "memory.memsw.limit_in_bytes",
            "1073741824".to_string()
        )));
        // A tiny share still gets the kernel's smallest quota.
        let tiny = limit_files(
            true,
            GroupLimits {
                cpu_millis: 1,
                memory_bytes: 1,
            },
        );
        assert_eq!(tiny[2].2, "1000 100000");
    }
}
