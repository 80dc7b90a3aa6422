//! overlayfs root filesystems and mount bookkeeping.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// This process's mount table, as /proc/self/mountinfo lists it.
pub struct MountTable {
    /// The file's text.
    pub text: String,
    /// Mount points, in mount order.
    pub points: Vec<PathBuf>,
    set: std::collections::HashSet<PathBuf>,
}

impl MountTable {
    fn parse(text: String) -> MountTable {
        let points: Vec<PathBuf> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(unescape(p)))
            .collect();
        let set = points.iter().cloned().collect();
        MountTable { text, points, set }
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.set.contains(path)
    }
}

/// The open mountinfo file and the table last read from it.
struct Cached {
    file: std::fs::File,
    table: Arc<MountTable>,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The mount table, read again only when it has changed. Every pass of every group asks
/// whether its namespaces are mounted; with hundreds of groups, having the kernel render
/// thousands of mounts (overlay options above all) for each question took both cores. The
/// kernel marks an open mountinfo file with POLLPRI when the table changes (proc(5)), so a
/// poll with no wait says whether the table read last is still the table.
pub fn table() -> std::io::Result<Arc<MountTable>> {
    use std::io::{Read, Seek};
    use std::os::fd::AsFd;
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.as_mut() {
        let mut fds = [nix::poll::PollFd::new(
            c.file.as_fd(),
            nix::poll::PollFlags::POLLPRI,
        )];
        let changed = match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(0) => false,
            // An event, or poll failing: read again to be sure.
            _ => true,
        };
        if !changed {
            return Ok(c.table.clone());
        }
        let mut text = String::new();
        c.file.rewind()?;
        c.file.read_to_string(&mut text)?;
        c.table = Arc::new(MountTable::parse(text));
        return Ok(c.table.clone());
    }
    let mut file = std::fs::File::open("/proc/self/mountinfo")?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let table = Arc::new(MountTable::parse(text));
    *cache = Some(Cached {
        file,
        table: table.clone(),
    });
    Ok(table)
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount point with its source (the device or "tmpfs", "overlay", ...).
pub fn mount_sources() -> Vec<(PathBuf, PathBuf)> {
    let Ok(t) = table() else {
        return vec![];
    };
    t.text
        .lines()
        .filter_map(|l| {
            let point = l.split(' ').nth(4)?;
            let (_, post) = l.split_once(" - ")?;
            let source = post.split(' ').nth(1)?;
            Some((
                PathBuf::from(unescape(point)),
                PathBuf::from(unescape(source)),
            ))
        })
        .collect()
}

/// Whether `path` is a namespace file pinned by a bind mount (nsfs). statfs answers for what
/// is mounted at the path at a constant cost, where the mount table costs the kernel a
/// rendering of every mount on the machine.
pub fn is_nsfs(path: &Path) -> bool {
    use nix::sys::statfs::{NSFS_MAGIC, statfs};
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Whether a filesystem of its own is mounted at `path` (its device differs from its
/// parent's): true for a fresh tmpfs or overlay, not for a bind mount within one filesystem.
pub fn is_own_mount(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else {
        return true;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Whether `path` is the root of a mount (statx's STATX_ATTR_MOUNT_ROOT, Linux 5.8): a
/// constant cost, where the mount table costs the kernel a rendering of every mount on the
/// machine — thousands with many groups, and changed by every start and delete. None when
/// the kernel does not say.
pub fn is_mount_root(path: &Path) -> Option<bool> {
    use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags, statx};
    match statx(
        CWD,
        path,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) {
        Ok(r) => r
            .stx_attributes_mask
            .contains(StatxAttributes::MOUNT_ROOT)
            .then(|| r.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)),
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => Some(false),
        Err(_) => None,
    }
}

pub fn is_mounted(path: &Path) -> bool {
    is_mount_root(path).unwrap_or_else(|| table().is_ok_and(|t| t.contains(path)))
}

/// The first mount point found at or below `dir` (none for a missing `dir`), by statx on every
/// directory; by the mount table when the kernel does not say.
pub fn first_mount_below(dir: &Path) -> Option<PathBuf> {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        match is_mount_root(&d) {
            Some(true) => return Some(d),
            Some(false) => {}
            None => return mounts_under(dir).into_iter().next(),
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            // A file can be a mount point too (a bind-mounted file).
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() && is_mount_root(&e.path()) == Some(true) => {
                    return Some(e.path());
                }
                _ => {}
            }
        }
    }
    None
}

/// Mounts an overlay of `lower` (bottom first) with `upper` and `work` at `target`.
pub fn mount_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::io::Result<()> {
    // overlayfs lists the top layer first.
    let lowers: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    if opts.len() > 4000 {
        return Err(std::io::Error::other(format!(
            "the image has too many layers ({}) for one overlay mount",
            lower.len()
        )));
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| {
        std::io::Error::other(format!(
            "mounting the overlay root filesystem at {}: {e}",
            target.display()
        ))
    })
}

/// Unmounts `path` if it is a mount point (lazily, so a busy mount still goes away).
pub fn unmount_if_mounted(path: &Path) -> std::io::Result<()> {
    while is_mounted(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| std::io::Error::other(format!("unmounting {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Unmounts `path` (every mount stacked there), without MNT_DETACH: a busy mount is an error
/// rather than a mount that lives on out of sight.
pub fn unmount_strict(path: &Path) -> std::io::Result<()> {
    while is_mounted(path) {
        umount2(path, MntFlags::empty())
            .map_err(|e| std::io::Error::other(format!("unmounting {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Every mount point at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    table()
        .map(|t| {
            t.points
                .iter()
                .filter(|p| p.starts_with(dir))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Every lower directory of every overlay mounted on this machine.
pub fn overlay_lower_dirs() -> Vec<PathBuf> {
    let Ok(t) = table() else {
        return vec![];
    };
    t.text
        .lines()
        .filter_map(|l| l.split_once(" - ").map(|(_, post)| post))
        .filter(|post| post.starts_with("overlay "))
        .filter_map(|post| post.split(' ').nth(2))
        .flat_map(|opts| {
            opts.split(',')
                .filter_map(|o| o.strip_prefix("lowerdir="))
                .flat_map(|l| l.split(':').map(|p| PathBuf::from(unescape(p))))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached table follows mounts and unmounts as they happen (the kernel's POLLPRI).
    #[test]
    fn the_table_follows_the_kernel() {
        let d = tempfile::tempdir().unwrap();
        let before = table().unwrap();
        assert!(!before.contains(d.path()));
        mount(
            Some("tmpfs"),
            d.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mounting a tmpfs (the tests run as root)");
        let mounted = table().unwrap();
        let shown = mounted.contains(d.path());
        umount2(d.path(), MntFlags::MNT_DETACH).unwrap();
        assert!(shown, "a new mount is seen at once");
        assert!(
            !table().unwrap().contains(d.path()),
            "an unmount is seen at once"
        );
    }
}
