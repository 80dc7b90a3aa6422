//! Unpacking one layer tarball into a directory that overlayfs can use as a lower layer.

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer entry {path:?} escapes the layer root")]
    Escape { path: String },
    #[error("layer entry {path:?}: {source}")]
    Entry {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "layer entry {path:?} is a hard link to {target:?}, which no layer below holds as a file"
    )]
    LinkTarget { path: String, target: String },
    #[error("reading layer: {0}")]
    Io(#[from] std::io::Error),
}

/// A hard link to a file of a layer below: the OCI layer format allows it and real images
/// have them, but overlayfs cannot link across layers. The file is copied into this layer
/// once the layers below are unpacked ([`resolve_lower_links`]), as containerd does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LowerLink {
    /// The link, relative to the layer root.
    pub path: PathBuf,
    /// What it links to, relative to the image's root.
    pub target: PathBuf,
}

/// Unpacks a layer blob (gzip, zstd or plain tar, told apart by their magic bytes) into `dest`,
/// which must not exist yet. On error nothing of the layer is left. Hard links to files of
/// layers below are written to `links` (before the layer is in place, so a crash cannot lose
/// them) for [`resolve_lower_links`].
pub fn unpack_layer(blob: &Path, dest: &Path, links: &Path) -> Result<(), LayerError> {
    let tmp = dest.with_extension("partial");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let mut lower = Vec::new();
    match unpack_into(blob, &tmp, &mut lower) {
        Ok(()) => {
            if !lower.is_empty() {
                if let Some(dir) = links.parent() {
                    fs::create_dir_all(dir)?;
                }
                let json = serde_json::to_vec(&lower).map_err(std::io::Error::other)?;
                fs::write(links, json)?;
            }
            fs::rename(&tmp, dest)?;
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn unpack_into(blob: &Path, root: &Path, lower: &mut Vec<LowerLink>) -> Result<(), LayerError> {
    let mut f = BufReader::new(fs::File::open(blob)?);
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut f, &mut magic)?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let reader: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(head.chain(f))),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::new(head.chain(f))?),
        _ => Box::new(head.chain(f)),
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_unpack_xattrs(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let shown = raw.display().to_string();
        let rel = clean(&raw).ok_or_else(|| LayerError::Escape {
            path: shown.clone(),
        })?;
        if let Some(target) = entry.link_name()?
            && entry.header().entry_type().is_hard_link()
        {
            // Hard links must point inside the image too; tar checks symlink-ancestors itself.
            let Some(target) = clean(&target) else {
                return Err(LayerError::Escape { path: shown });
            };
            if fs::symlink_metadata(root.join(&target)).is_err() {
                lower.push(LowerLink { path: rel, target });
                continue;
            }
        }
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        let err = |source| LayerError::Entry {
            path: shown.clone(),
            source,
        };
        if name == ".wh..wh..opq" {
            let dir = root.join(&parent);
            ensure_inside(root, &dir, &shown)?;
            fs::create_dir_all(&dir).map_err(err)?;
            xattr::set(&dir, "trusted.overlay.opaque", b"y").map_err(err)?;
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            let dir = root.join(&parent);
            ensure_inside(root, &dir, &shown)?;
            fs::create_dir_all(&dir).map_err(err)?;
            let target = dir.join(hidden);
            let _ = fs::remove_dir_all(&target).or_else(|_| fs::remove_file(&target));
            nix::sys::stat::mknod(
                &target,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .map_err(|e| err(e.into()))?;
        } else if let Some(kind) = special_kind(entry.header().entry_type()) {
            // The tar crate writes device nodes and FIFOs as empty files; make them for real.
            let target = root.join(&rel);
            ensure_inside(root, target.parent().unwrap_or(root), &shown)?;
            make_special(&target, kind, entry.header()).map_err(err)?;
        } else {
            match entry.unpack_in(root) {
                Ok(true) => {}
                Ok(false) => return Err(LayerError::Escape { path: shown }),
                // tar refuses to write through a symlink that leads out of the root.
                Err(e) if e.to_string().contains("outside of destination") => {
                    return Err(LayerError::Escape { path: shown });
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
    Ok(())
}

/// Copies each link's target from the nearest layer below that holds it (`lowers`, bottom
/// first) into `layer`, with its mode, owner and times. No path is followed through a symlink.
pub fn resolve_lower_links(
    layer: &Path,
    links: &[LowerLink],
    lowers: &[PathBuf],
) -> Result<(), LayerError> {
    for l in links {
        let shown = l.path.display().to_string();
        let parent = l.target.parent().unwrap_or(Path::new(""));
        let from = std::iter::once(layer)
            .chain(lowers.iter().rev().map(PathBuf::as_path))
            .filter(|root| ensure_inside(root, &root.join(parent), &shown).is_ok())
            .map(|root| root.join(&l.target))
            .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
            .ok_or_else(|| LayerError::LinkTarget {
                path: shown.clone(),
                target: l.target.display().to_string(),
            })?;
        let to = layer.join(&l.path);
        let dir = to.parent().unwrap_or(layer);
        ensure_inside(layer, dir, &shown)?;
        let err = |source| LayerError::Entry {
            path: shown.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        if from.starts_with(layer) {
            let _ = fs::remove_file(&to);
            fs::hard_link(&from, &to).map_err(err)?;
            continue;
        }
        let meta = fs::symlink_metadata(&from).map_err(err)?;
        let tmp = to.with_extension("qci-link");
        fs::copy(&from, &tmp).map_err(err)?;
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::lchown(&tmp, Some(meta.uid()), Some(meta.gid())).map_err(err)?;
        fs::set_permissions(&tmp, meta.permissions()).map_err(err)?;
        fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(meta.modified()?))
            .map_err(err)?;
        fs::rename(&tmp, &to).map_err(err)?;
    }
    Ok(())
}

fn special_kind(t: tar::EntryType) -> Option<nix::sys::stat::SFlag> {
    use nix::sys::stat::SFlag;
    match t {
        tar::EntryType::Char => Some(SFlag::S_IFCHR),
        tar::EntryType::Block => Some(SFlag::S_IFBLK),
        tar::EntryType::Fifo => Some(SFlag::S_IFIFO),
        _ => None,
    }
}

/// A device node or FIFO with the entry's numbers, mode and owner.
fn make_special(
    target: &Path,
    kind: nix::sys::stat::SFlag,
    h: &tar::Header,
) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::symlink_metadata(target).is_ok() {
        let _ = fs::remove_dir_all(target).or_else(|_| fs::remove_file(target));
    }
    let mode = h.mode()? & 0o7777;
    let dev = nix::sys::stat::makedev(
        u64::from(h.device_major()?.unwrap_or(0)),
        u64::from(h.device_minor()?.unwrap_or(0)),
    );
    nix::sys::stat::mknod(
        target,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(mode),
        dev,
    )?;
    std::os::unix::fs::lchown(target, Some(h.uid()? as u32), Some(h.gid()? as u32))?;
    // mknod applies the umask; set the mode exactly.
    fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The path without `.` and leading `/`... no: absolute paths and `..` are refused (None).
fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Refuses a directory reached through a symlink that leads out of the layer root.
fn ensure_inside(root: &Path, dir: &Path, shown: &str) -> Result<(), LayerError> {
    let mut cur = root.to_path_buf();
    if let Ok(rel) = dir.strip_prefix(root) {
        for c in rel.components() {
            cur.push(c);
            if fs::symlink_metadata(&cur)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false)
            {
                return Err(LayerError::Escape {
                    path: shown.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn tarball(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    // set_path refuses `..`, so write the name bytes directly.
                    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn unpack(
        entries: &[(&str, Option<&[u8]>)],
        gzip: bool,
    ) -> (tempfile::TempDir, Result<(), LayerError>) {
        let dir = tempfile::tempdir().unwrap();
        let mut data = tarball(entries);
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, &data).unwrap();
            data = enc.finish().unwrap();
        }
        let blob = dir.path().join("blob");
        fs::write(&blob, data).unwrap();
        let r = unpack_layer(&blob, &dir.path().join("out"), &dir.path().join("links"));
        (dir, r)
    }

    #[test]
    fn files_whiteouts_and_opaque_dirs() {
        let (dir, r) = unpack(
            &[
                ("etc/", None),
                ("etc/hello", Some(b"hi")),
                ("etc/.wh.gone", Some(b"")),
                ("var/.wh..wh..opq", Some(b"")),
            ],
            true,
        );
        r.unwrap();
        let out = dir.path().join("out");
        assert_eq!(fs::read(out.join("etc/hello")).unwrap(), b"hi");
        let wh = fs::symlink_metadata(out.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(
            xattr::get(out.join("var"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
    }

    #[test]
    fn hard_links_devices_and_file_capabilities_are_kept() {
        use std::os::unix::fs::MetadataExt;
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(3);
        // A file capability (cap_net_bind_service+ep) as a PAX xattr record.
        let cap: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        b.append_pax_extensions([("SCHILY.xattr.security.capability", cap)])
            .unwrap();
        b.append_data(&mut h, "bin/tool", &b"bin"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Link);
        l.set_uid(0);
        l.set_gid(0);
        l.set_mtime(0);
        l.set_size(0);
        b.append_link(&mut l, "bin/tool-link", "bin/tool").unwrap();
        let mut d = tar::Header::new_gnu();
        d.set_entry_type(tar::EntryType::Char);
        d.set_mode(0o666);
        d.set_uid(0);
        d.set_gid(0);
        d.set_mtime(0);
        d.set_size(0);
        d.set_device_major(1).unwrap();
        d.set_device_minor(3).unwrap();
        b.append_data(&mut d, "dev/null", &[][..]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, b.into_inner().unwrap()).unwrap();
        unpack_layer(&blob, &dir.path().join("out"), &dir.path().join("links")).unwrap();
        let out = dir.path().join("out");
        let tool = fs::metadata(out.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid bit kept");
        assert_eq!(
            tool.ino(),
            fs::metadata(out.join("bin/tool-link")).unwrap().ino(),
            "hard link kept"
        );
        assert_eq!(
            xattr::get(out.join("bin/tool"), "security.capability")
                .unwrap()
                .as_deref(),
            Some(cap)
        );
        let null = fs::symlink_metadata(out.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    }

    #[test]
    fn zstd_layers() {
        let dir = tempfile::tempdir().unwrap();
        let data = zstd::encode_all(&tarball(&[("hello", Some(b"zstd"))])[..], 3).unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, data).unwrap();
        unpack_layer(&blob, &dir.path().join("out"), &dir.path().join("links")).unwrap();
        assert_eq!(fs::read(dir.path().join("out/hello")).unwrap(), b"zstd");
    }

    #[test]
    fn escaping_entries_are_refused_and_nothing_is_kept() {
        let (dir, r) = unpack(&[("ok", Some(b"x")), ("../evil", Some(b"x"))], false);
        assert!(matches!(r, Err(LayerError::Escape { .. })), "{r:?}");
        assert!(!dir.path().join("out").exists());
        assert!(!dir.path().join("out.partial").exists());
        assert!(!dir.path().join("evil").exists());
        let (_dir, r) = unpack(&[("/abs", Some(b"x"))], false);
        assert!(matches!(r, Err(LayerError::Escape { .. })), "{r:?}");
    }

    #[test]
    fn hard_links_to_lower_layers_become_copies() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        // The layer below: bin/tool (setuid, owned by 7), and a symlink that leads out.
        let lower = dir.path().join("lower");
        fs::create_dir_all(lower.join("bin")).unwrap();
        fs::write(lower.join("bin/tool"), b"lower").unwrap();
        std::os::unix::fs::lchown(lower.join("bin/tool"), Some(7), Some(8)).unwrap();
        fs::set_permissions(
            lower.join("bin/tool"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", lower.join("out")).unwrap();
        // The layer above: a hard link to it, one to a file of its own, one through the symlink.
        let link = |b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str| {
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Link);
            l.set_size(0);
            l.set_mtime(0);
            l.set_uid(0);
            l.set_gid(0);
            b.append_link(&mut l, path, target).unwrap();
        };
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(3);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, "own", &b"own"[..]).unwrap();
        link(&mut b, "usr/bin/tool", "bin/tool");
        link(&mut b, "own-link", "own");
        let blob = dir.path().join("blob");
        fs::write(&blob, b.into_inner().unwrap()).unwrap();
        let (out, links) = (dir.path().join("out-layer"), dir.path().join("links.json"));
        unpack_layer(&blob, &out, &links).unwrap();
        let pending: Vec<LowerLink> = serde_json::from_slice(&fs::read(&links).unwrap()).unwrap();
        assert_eq!(
            pending,
            vec![LowerLink {
                path: "usr/bin/tool".into(),
                target: "bin/tool".into()
            }]
        );
        resolve_lower_links(&out, &pending, std::slice::from_ref(&lower)).unwrap();
        let copy = fs::metadata(out.join("usr/bin/tool")).unwrap();
        assert_eq!(fs::read(out.join("usr/bin/tool")).unwrap(), b"lower");
        assert_eq!(
            (copy.uid(), copy.gid(), copy.mode() & 0o7777),
            (7, 8, 0o4755)
        );
        assert_eq!(
            fs::metadata(out.join("own")).unwrap().ino(),
            fs::metadata(out.join("own-link")).unwrap().ino()
        );
        // A target no layer holds, or one reached through a symlink, is refused.
        for target in ["bin/none", "out/passwd"] {
            let bad = [LowerLink {
                path: "x".into(),
                target: target.into(),
            }];
            let e = resolve_lower_links(&out, &bad, std::slice::from_ref(&lower)).unwrap_err();
            assert!(matches!(e, LayerError::LinkTarget { .. }), "{target}: {e}");
        }
    }
}
