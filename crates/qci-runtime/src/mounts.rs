//! overlayfs root filesystems and mount bookkeeping.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Mount points currently listed in /proc/self/mountinfo.
pub fn mount_points() -> std::io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect())
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
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    text.lines()
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

pub fn is_mounted(path: &Path) -> bool {
    mount_points()
        .map(|m| m.iter().any(|p| p == path))
        .unwrap_or(false)
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
    mount_points()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Every lower directory of every overlay mounted on this machine.
pub fn overlay_lower_dirs() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    text.lines()
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
