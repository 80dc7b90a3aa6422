//! Volumes of a group, and where containers mount them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::quantity::{Quantity, parse_memory_bytes};
use crate::validate::FieldError;

/// A volume: exactly one of `config_file`, `empty_dir` and `disk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    /// Files given in plain text at create time; read-only in containers by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<ConfigFileVolume>,
    /// An empty directory that lives as long as the group, on disk or in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolume>,
    /// A disk created beforehand; attached to this group while the group exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskVolume>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskVolume {
    /// The disk's name or id.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFileVolume {
    pub files: Vec<ConfigFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Relative to the volume; directories are made as needed.
    pub path: String,
    pub content: String,
    /// Octal, e.g. "0644" (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyDirVolume {
    /// "" (on disk, the default) or "Memory" (a tmpfs).
    #[serde(default)]
    pub medium: String,
    /// For Memory: the tmpfs size (default 64Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub size_limit: Option<Quantity>,
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// A volume of the group.
    pub name: String,
    /// Absolute, in the container.
    pub mount_path: String,
    /// A path inside the volume to mount instead of its root (relative, no `..`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Default: true for config files, false otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Most bytes a config-file volume's files hold together (as Kubernetes limits a ConfigMap).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The mode of a config file: octal, at most 0777.
pub fn parse_mode(mode: Option<&str>) -> Result<u32, String> {
    match mode {
        None => Ok(0o644),
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|v| *v <= 0o777)
            .ok_or_else(|| format!("{m:?} is not an octal file mode such as \"0644\"")),
    }
}

/// Most parts a path in a spec may have, and most bytes in one part (the kernel's NAME_MAX).
pub const MAX_PATH_DEPTH: usize = 32;
pub const MAX_PATH_PART: usize = 255;

/// Parts within the kernel's and qci's limits (a path the kernel would refuse would only fail
/// later, at start, with no clear reason).
fn check_parts<'a>(parts: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut n = 0;
    for part in parts {
        n += 1;
        if part.len() > MAX_PATH_PART {
            return Err(format!(
                "a part of it is {} bytes long; at most {MAX_PATH_PART}",
                part.len()
            ));
        }
    }
    if n > MAX_PATH_DEPTH {
        return Err(format!("{n} levels deep; at most {MAX_PATH_DEPTH}"));
    }
    Ok(())
}

/// A relative path with no `..`, `.` or empty parts.
pub(crate) fn check_relative(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') {
        return Err("must be a relative path".into());
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") || p.contains('\0') {
        return Err("must not hold '..', '.', empty parts or NUL".into());
    }
    check_parts(p.split('/'))
}

/// Where a volume may not be mounted: over the whole root, or the kernel's file systems the
/// runtime sets up (/dev/shm excepted: a memory volume there is a common pattern).
fn check_mount_point(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.contains('\0') {
        return Err("must be an absolute path".into());
    }
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err("must be an absolute path without '..'".into());
    }
    check_parts(parts.iter().copied())?;
    match parts.as_slice() {
        [] => Err("cannot be / (the container's root)".into()),
        ["dev", "shm", ..] => Ok(()),
        [top @ ("proc" | "sys" | "dev"), ..] => Err(format!(
            "cannot be /{top} or under it: the runtime mounts the kernel's file systems there"
        )),
        _ => Ok(()),
    }
}

pub(crate) fn check_volumes(volumes: &[Volume], errs: &mut Vec<FieldError>) {
    let mut add = |field: String, message: String| errs.push(FieldError { field, message });
    let mut names = std::collections::HashSet::new();
    let mut disks = std::collections::HashMap::new();
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("volumes[{i}]");
        if let Err(m) = crate::validate::check_dns_label(&v.name) {
            add(format!("{path}.name"), m);
        } else if !names.insert(v.name.as_str()) {
            add(
                format!("{path}.name"),
                format!("duplicate volume name {:?}", v.name),
            );
        }
        match (&v.config_file, &v.empty_dir, &v.disk) {
            (None, None, Some(d)) => {
                if d.id.is_empty() || d.id.len() > 64 || d.id.contains(['/', '\0']) {
                    add(
                        format!("{path}.disk.id"),
                        "must be a disk's name or id".into(),
                    );
                } else if let Some(first) = disks.insert(d.id.as_str(), i) {
                    add(
                        format!("{path}.disk.id"),
                        format!("disk {:?} is already volumes[{first}]", d.id),
                    );
                }
            }
            (Some(c), None, None) => {
                let mut seen = std::collections::HashSet::new();
                let total: usize = c.files.iter().map(|f| f.content.len()).sum();
                if total > MAX_CONFIG_BYTES {
                    add(
                        format!("{path}.config_file"),
                        format!(
                            "the files hold {total} bytes; a config-file volume holds at most 1 MiB (use a disk for more)"
                        ),
                    );
                }
                for (j, f) in c.files.iter().enumerate() {
                    let field = format!("{path}.config_file.files[{j}].path");
                    if let Err(m) = check_relative(&f.path) {
                        add(field, m);
                    } else if f.path.split('/').any(|c| c.starts_with("..")) {
                        add(
                            field,
                            "no part may start with '..' (qci keeps its own entries there)".into(),
                        );
                    } else if !seen.insert(f.path.as_str()) {
                        add(field, format!("{:?} is listed twice", f.path));
                    } else if let Some(other) = c.files.iter().find(|o| {
                        o.path.len() > f.path.len()
                            && o.path.starts_with(f.path.as_str())
                            && o.path.as_bytes()[f.path.len()] == b'/'
                    }) {
                        add(
                            field,
                            format!(
                                "{:?} is a file, but {:?} needs it to be a directory",
                                f.path, other.path
                            ),
                        );
                    }
                    if let Err(m) = parse_mode(f.mode.as_deref()) {
                        add(format!("{path}.config_file.files[{j}].mode"), m);
                    }
                }
            }
            (None, Some(e), None) => {
                if !matches!(e.medium.as_str(), "" | "Memory") {
                    add(
                        format!("{path}.empty_dir.medium"),
                        "must be \"\" (disk) or \"Memory\"".into(),
                    );
                }
                if let Some(q) = &e.size_limit
                    && let Err(m) = parse_memory_bytes(&q.0)
                {
                    add(format!("{path}.empty_dir.size_limit"), m);
                }
            }
            _ => add(
                path,
                "give exactly one of config_file, empty_dir and disk".into(),
            ),
        }
    }
}

pub(crate) fn check_mounts(
    path: &str,
    mounts: &[VolumeMount],
    volumes: &[Volume],
    errs: &mut Vec<FieldError>,
) {
    let mut add = |field: String, message: String| errs.push(FieldError { field, message });
    let mut seen = std::collections::HashSet::new();
    for (j, m) in mounts.iter().enumerate() {
        let p = format!("{path}.volume_mounts[{j}]");
        if !volumes.iter().any(|v| v.name == m.name) {
            add(
                format!("{p}.name"),
                format!("no volume {:?} in the group", m.name),
            );
        }
        if let Err(msg) = check_mount_point(&m.mount_path) {
            add(format!("{p}.mount_path"), msg);
        } else if !seen.insert(m.mount_path.trim_end_matches('/')) {
            add(
                format!("{p}.mount_path"),
                format!("{:?} is mounted twice", m.mount_path),
            );
        }
        if let Some(s) = &m.sub_path
            && let Err(msg) = check_relative(s)
        {
            add(format!("{p}.sub_path"), msg);
        }
    }
}

#[cfg(test)]
mod hostile_paths {
    use super::*;

    #[test]
    fn mount_points_and_file_paths() {
        for (p, ok) in [
            ("/data", true),
            ("/dev/shm", true),
            ("/devices", true),
            ("/", false),
            ("//", false),
            ("/./", false),
            ("/proc", false),
            ("/proc/sys", false),
            ("/sys/", false),
            ("//dev/x", false),
            ("/a/../b", false),
        ] {
            assert_eq!(
                check_mount_point(p).is_ok(),
                ok,
                "{p}: {:?}",
                check_mount_point(p)
            );
        }
        assert!(
            check_relative(&"x".repeat(256))
                .unwrap_err()
                .contains("256 bytes")
        );
        assert!(check_relative(&"x".repeat(255)).is_ok());
        assert!(
            check_relative(&vec!["d"; 33].join("/"))
                .unwrap_err()
                .contains("33 levels")
        );
        assert!(check_mount_point(&format!("/{}", vec!["d"; 3000].join("/"))).is_err());
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_spec;

    fn fields(yaml: &str) -> Vec<String> {
        match parse_spec(yaml) {
            Ok(_) => vec![],
            Err(e) => e.fields().into_iter().map(|f| f.field).collect(),
        }
    }

    #[test]
    fn config_file_paths_cannot_clash_with_qci_or_each_other() {
        let spec = |files: &str| {
            format!(
                "name: g\nvolumes: [{{name: c, config_file: {{files: [{files}]}}}}]\ncontainers: [{{name: a, image: bb}}]\n"
            )
        };
        assert!(fields(&spec("{path: a/b.conf, content: x}, {path: c, content: y}")).is_empty());
        for bad in [
            "{path: ..data, content: x}",
            "{path: dir/..x, content: x}",
            "{path: a, content: x}, {path: a/b, content: y}",
            "{path: a, content: x}, {path: a, content: y}",
            "{path: /etc/x, content: x}",
        ] {
            let f = fields(&spec(bad));
            assert!(
                f.iter()
                    .any(|f| f.starts_with("volumes[0].config_file.files[")),
                "{bad}: {f:?}"
            );
        }
        let big = format!("{{path: big, content: '{}'}}", "x".repeat((1 << 20) + 1));
        assert_eq!(fields(&spec(&big)), vec!["volumes[0].config_file"]);
    }

    #[test]
    fn a_volume_is_exactly_one_kind_and_a_disk_is_named_once() {
        let spec = |vols: &str| {
            format!("name: g\nvolumes: [{vols}]\ncontainers: [{{name: a, image: bb}}]\n")
        };
        assert_eq!(
            fields(&spec("{name: v, empty_dir: {}, disk: {id: d}}")),
            vec!["volumes[0]"]
        );
        assert_eq!(fields(&spec("{name: v}")), vec!["volumes[0]"]);
        assert_eq!(
            fields(&spec("{name: v, disk: {id: d}}, {name: w, disk: {id: d}}")),
            vec!["volumes[1].disk.id"]
        );
        assert_eq!(
            fields(&spec("{name: v, disk: {id: 'a/b'}}")),
            vec!["volumes[0].disk.id"]
        );
    }
}
