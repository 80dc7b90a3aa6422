//! Images without a registry: archives in and out of the store.
//!
//! - In: an OCI image layout in a tar (`skopeo copy … oci-archive:`, `podman save --format
//!   oci-archive`, `docker save` since Docker 25), or a docker-archive tar (`docker save`,
//!   `podman save`, `skopeo copy … docker-archive:`): `manifest.json` naming each image's
//!   config file, tags and layer tars.
//! - Out: an OCI image layout in a tar, which every tool above loads.
//!
//! Every blob's SHA-256 is computed as the archive is read and checked against what names it
//! (an OCI descriptor's digest; a docker-archive config's file name and its `rootfs.diff_ids`
//! for the layers), so an archive cannot smuggle content in under another digest. Only regular
//! files and directories are taken from the tar; a symbolic link (older docker-archives link
//! repeated layers) is followed by name within the archive, never on the host.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::store::{ImageError, ImageStore, PulledImage, hex_of};

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an image archive: {0}")]
    Malformed(String),
    #[error("{name}: its content has digest {got}, not the {want} the archive gives it")]
    Digest {
        name: String,
        want: String,
        got: String,
    },
    #[error(
        "the archive names no image (no ref.name annotation, no RepoTags): give a name with --tag"
    )]
    NoName,
}

/// The most entries an archive may have (a layout has a handful per image).
const MAX_ENTRIES: usize = 100_000;
/// The most bytes of a JSON file of the archive (index, manifest, config).
const MAX_JSON: u64 = 4 << 20;
/// How many links are followed from one name.
const MAX_HOPS: usize = 16;

/// The archive's files, read once: regular files copied out (with their digest), links
/// remembered by name.
struct Unpacked {
    dir: PathBuf,
    files: HashMap<String, (PathBuf, String, u64)>,
    links: HashMap<String, String>,
}

impl Unpacked {
    fn read(tar: &Path, dir: &Path) -> Result<Unpacked, ArchiveError> {
        std::fs::create_dir_all(dir)?;
        let mut ar = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(tar)?));
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for (i, entry) in ar.entries()?.enumerate() {
            if i >= MAX_ENTRIES {
                return Err(ArchiveError::Malformed(format!(
                    "more than {MAX_ENTRIES} entries"
                )));
            }
            let mut entry = entry?;
            let name = clean(&entry.path()?).ok_or_else(|| {
                ArchiveError::Malformed("an entry's name leaves the archive".into())
            })?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = dir.join(format!("{i}"));
                    let mut out = std::fs::File::create(&path)?;
                    let mut h = Sha256::new();
                    let mut buf = vec![0u8; 256 << 10];
                    let mut size = 0u64;
                    loop {
                        let n = entry.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                        out.write_all(&buf[..n])?;
                        size += n as u64;
                    }
                    let digest = format!("sha256:{}", hex::encode(h.finalize()));
                    files.insert(name, (path, digest, size));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name()?.ok_or_else(|| {
                        ArchiveError::Malformed(format!("{name}: a link without a target"))
                    })?;
                    // A symlink is relative to its directory, a hard link to the archive.
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(&target)
                    } else {
                        target.into_owned()
                    };
                    let target = clean(&base).ok_or_else(|| {
                        ArchiveError::Malformed(format!("{name}: a link that leaves the archive"))
                    })?;
                    links.insert(name, target);
                }
                // Directories, and anything else, carry nothing an image needs.
                _ => {}
            }
        }
        Ok(Unpacked {
            dir: dir.to_path_buf(),
            files,
            links,
        })
    }

    /// A file of the archive by name (links followed within it).
    fn file(&self, name: &str) -> Result<&(PathBuf, String, u64), ArchiveError> {
        let mut name = clean(Path::new(name))
            .ok_or_else(|| ArchiveError::Malformed(format!("{name}: a name that leaves it")))?;
        for _ in 0..MAX_HOPS {
            if let Some(f) = self.files.get(&name) {
                return Ok(f);
            }
            match self.links.get(&name) {
                Some(t) => name = t.clone(),
                None => break,
            }
        }
        Err(ArchiveError::Malformed(format!("it holds no file {name}")))
    }

    /// A blob of an OCI layout, checked against its digest.
    fn blob(&self, digest: &str) -> Result<&(PathBuf, String, u64), ArchiveError> {
        let (alg, hex) = digest.split_once(':').unwrap_or(("", digest));
        if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ArchiveError::Malformed(format!(
                "{digest:?} is not a sha256 digest"
            )));
        }
        let f = self.file(&format!("blobs/sha256/{hex}"))?;
        verify(&format!("blobs/sha256/{hex}"), digest, &f.1)?;
        Ok(f)
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
        name: &str,
    ) -> Result<T, ArchiveError> {
        let size = std::fs::metadata(path)?.len();
        if size > MAX_JSON {
            return Err(ArchiveError::Malformed(format!(
                "{name} is {size} bytes, more than a JSON file of an image may be"
            )));
        }
        serde_json::from_slice(&std::fs::read(path)?)
            .map_err(|e| ArchiveError::Malformed(format!("{name}: {e}")))
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn verify(name: &str, want: &str, got: &str) -> Result<(), ArchiveError> {
    if want.eq_ignore_ascii_case(got) {
        Ok(())
    } else {
        Err(ArchiveError::Digest {
            name: name.to_string(),
            want: want.to_string(),
            got: got.to_string(),
        })
    }
}

/// A path inside the archive as a plain relative name (`./a/../b` → `b`); None if it would
/// leave the archive.
fn clean(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// One image found in an archive, its blobs checked.
struct Found {
    name: Option<String>,
    /// Its manifest as stored (the OCI one, or one made for a docker-archive image).
    manifest: Vec<u8>,
    config: (PathBuf, String),
    layers: Vec<(PathBuf, String)>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn oci_images(u: &Unpacked) -> Result<Vec<Found>, ArchiveError> {
    let (index_path, _, _) = u.file("index.json")?;
    let index: oci_spec::image::ImageIndex = u.json(index_path, "index.json")?;
    let mut found = Vec::new();
    for desc in index.manifests() {
        let name = desc
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned();
        let mut desc = desc.clone();
        // An index inside: the platform this machine runs.
        if desc.media_type() == &oci_spec::image::MediaType::ImageIndex {
            let (p, _, _) = u.blob(desc.digest().as_ref())?;
            let inner: oci_spec::image::ImageIndex = u.json(p, "a nested index")?;
            desc = inner
                .manifests()
                .iter()
                .find(|d| {
                    d.platform().as_ref().is_none_or(|p| {
                        p.architecture() == &oci_spec::image::Arch::Amd64
                            && p.os() == &oci_spec::image::Os::Linux
                    })
                })
                .cloned()
                .ok_or_else(|| {
                    ArchiveError::Malformed("no linux/amd64 image in a nested index".into())
                })?;
        }
        let (mp, _, _) = u.blob(desc.digest().as_ref())?;
        let manifest: oci_spec::image::ImageManifest = u.json(mp, "a manifest")?;
        let (cp, cd, _) = u.blob(manifest.config().digest().as_ref())?;
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let (lp, ld, _) = u.blob(l.digest().as_ref())?;
            layers.push((lp.clone(), ld.clone()));
        }
        found.push(Found {
            name,
            manifest: std::fs::read(mp)?,
            config: (cp.clone(), cd.clone()),
            layers,
        });
    }
    Ok(found)
}

fn docker_images(u: &Unpacked) -> Result<Vec<Found>, ArchiveError> {
    let (mpath, _, _) = u.file("manifest.json")?;
    let entries: Vec<DockerEntry> = u.json(mpath, "manifest.json")?;
    let mut found = Vec::new();
    for e in entries {
        let (cp, cd, csize) = u.file(&e.config)?;
        // The config's name is its digest (`<hex>.json`, or `blobs/sha256/<hex>`).
        let stem = Path::new(&e.config)
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".json").to_string())
            .unwrap_or_default();
        if stem.len() == 64 {
            verify(&e.config, &format!("sha256:{stem}"), cd)?;
        }
        let config: oci_spec::image::ImageConfiguration = u.json(cp, &e.config)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != e.layers.len() {
            return Err(ArchiveError::Malformed(format!(
                "{}: {} layers, but its config lists {}",
                e.config,
                e.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for (l, diff_id) in e.layers.iter().zip(diff_ids) {
            let (lp, ld, lsize) = u.file(l)?;
            // A layer tar is its own diff_id (uncompressed, as docker save writes it).
            verify(l, diff_id, ld)?;
            layers.push((lp.clone(), ld.clone()));
            descs.push(serde_json::json!({
                "mediaType": media_type(lp)?, "digest": ld, "size": lsize,
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": csize},
            "layers": descs,
        });
        let tags = e.repo_tags.unwrap_or_default();
        let manifest = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
        let one = |name: Option<String>| Found {
            name,
            manifest: manifest.clone(),
            config: (cp.clone(), cd.clone()),
            layers: layers.clone(),
        };
        if tags.is_empty() {
            found.push(one(None));
        }
        for t in tags {
            found.push(one(Some(t)));
        }
    }
    Ok(found)
}

/// A layer's media type, from its first bytes.
fn media_type(path: &Path) -> std::io::Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut magic)?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    })
}

impl ImageStore {
    /// Loads every image of the archive at `tar` (an OCI layout or a docker-archive). With
    /// `tag`, the archive must hold one image, and it is stored under that name; otherwise
    /// under the names the archive gives. Blobs are checked as they are read; layers already
    /// in the store are not unpacked again.
    pub async fn load_archive(
        &self,
        tar: &Path,
        tag: Option<&str>,
    ) -> Result<Vec<PulledImage>, ImageError> {
        let _shared = self.gc_lock().read().await;
        let me = self.clone();
        let tar = tar.to_path_buf();
        let tag = tag.map(str::to_string);
        tokio::task::spawn_blocking(move || me.load_blocking(&tar, tag.as_deref()))
            .await
            .map_err(|e| ImageError::Io(std::io::Error::other(e)))?
    }

    fn load_blocking(&self, tar: &Path, tag: Option<&str>) -> Result<Vec<PulledImage>, ImageError> {
        let bad = |e: ArchiveError| ImageError::Archive(e);
        let dir = self
            .tmp_dir()
            .join(format!("load-{}", uuid::Uuid::new_v4()));
        let u = Unpacked::read(tar, &dir).map_err(bad)?;
        let found = if u.file("index.json").is_ok() {
            oci_images(&u)
        } else if u.file("manifest.json").is_ok() {
            docker_images(&u)
        } else {
            Err(ArchiveError::Malformed(
                "it has neither index.json (an OCI layout) nor manifest.json (a docker-archive)"
                    .into(),
            ))
        }
        .map_err(bad)?;
        if found.is_empty() {
            return Err(bad(ArchiveError::Malformed("it holds no image".into())));
        }
        // One image under several names (a docker-archive's RepoTags) is still one image.
        let distinct: std::collections::HashSet<&str> =
            found.iter().map(|f| f.config.1.as_str()).collect();
        if tag.is_some() && distinct.len() > 1 {
            return Err(bad(ArchiveError::Malformed(format!(
                "it holds {} images; --tag names one",
                distinct.len()
            ))));
        }
        let mut loaded = Vec::new();
        for f in found
            .iter()
            .take(if tag.is_some() { 1 } else { found.len() })
        {
            let name = tag
                .map(str::to_string)
                .or(f.name.clone())
                .ok_or(bad(ArchiveError::NoName))?;
            crate::validate_reference(&name)?;
            loaded.push(self.import(&name, f)?);
        }
        Ok(loaded)
    }

    /// Moves one found image's blobs into the store, unpacks its layers and names it.
    fn import(&self, name: &str, f: &Found) -> Result<PulledImage, ImageError> {
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&f.manifest)));
        let mut size = 0;
        for (path, digest) in std::iter::once(&f.config).chain(&f.layers) {
            let dest = self.blob_file(digest);
            size += std::fs::metadata(path)?.len();
            if !dest.exists() {
                // A second link, not a rename: one file may stand for several images of the
                // archive (the scratch copy goes with the rest of it). Same file system.
                let tmp = dest.with_extension("partial");
                let _ = std::fs::remove_file(&tmp);
                if std::fs::hard_link(path, &tmp).is_err() {
                    std::fs::copy(path, &tmp)?;
                }
                std::fs::rename(&tmp, &dest)?;
            }
        }
        for (_, digest) in &f.layers {
            let dir = self.layer_dir(digest);
            if !dir.is_dir() {
                crate::layer::unpack_layer(&self.blob_file(digest), &dir, &self.links_file(digest))
                    .map_err(|source| ImageError::Layer {
                        reference: name.to_string(),
                        digest: digest.clone(),
                        source,
                    })?;
            }
        }
        let layers: Vec<String> = f.layers.iter().map(|(_, d)| d.clone()).collect();
        self.resolve_links_of(&layers)
            .map_err(|(digest, source)| ImageError::Layer {
                reference: name.to_string(),
                digest,
                source,
            })?;
        let config_bytes = std::fs::read(&f.config.0)?;
        let config =
            crate::store::parse_config(&config_bytes).map_err(|message| ImageError::Config {
                reference: name.to_string(),
                message,
            })?;
        let img = PulledImage {
            reference: name.to_string(),
            digest: manifest_digest,
            config,
            layers,
            config_digest: Some(f.config.1.clone()),
            size,
            downloaded_bytes: 0,
            last_used: Some(chrono::Utc::now()),
            private: false,
            logins: Vec::new(),
        };
        self.save_ref_blocking(&img)?;
        Ok(img)
    }

    /// Writes image `reference` as an OCI image layout in a tar to `out` (its blobs as the
    /// store holds them; a manifest made for them, annotated with the reference).
    pub async fn save_archive(&self, reference: &str, out: &Path) -> Result<(), ImageError> {
        let img = self
            .local(reference)
            .ok_or_else(|| ImageError::NotPresent(reference.to_string()))?;
        let _shared = self.gc_lock().read().await;
        let me = self.clone();
        let out = out.to_path_buf();
        tokio::task::spawn_blocking(move || me.save_blocking(&img, &out))
            .await
            .map_err(|e| ImageError::Io(std::io::Error::other(e)))?
    }

    fn save_blocking(&self, img: &PulledImage, out: &Path) -> Result<(), ImageError> {
        let config_digest = img.config_digest.clone().ok_or_else(|| {
            ImageError::NotPresent(format!(
                "{} (pulled before configs were kept)",
                img.reference
            ))
        })?;
        let blob = |d: &str| -> Result<(PathBuf, u64), ImageError> {
            let p = self.blob_file(d);
            let size = std::fs::metadata(&p)
                .map_err(|_| ImageError::NotPresent(format!("{}: blob {d}", img.reference)))?
                .len();
            Ok((p, size))
        };
        let (cpath, csize) = blob(&config_digest)?;
        let mut layers = Vec::new();
        let mut files = vec![(config_digest.clone(), cpath)];
        for d in &img.layers {
            let (p, size) = blob(d)?;
            layers
                .push(serde_json::json!({"mediaType": media_type(&p)?, "digest": d, "size": size}));
            files.push((d.clone(), p));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": csize},
            "layers": layers,
        }))
        .map_err(std::io::Error::other)?;
        let mdigest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": mdigest, "size": manifest.len(),
                "annotations": {REF_NAME: img.reference},
            }],
        }))
        .map_err(std::io::Error::other)?;
        let tmp = out.with_extension("partial");
        let mut ar = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(&tmp)?));
        let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            ar.append_data(&mut h, name, data)
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index)?;
        add(&format!("blobs/sha256/{}", hex_of(&mdigest)), &manifest)?;
        let mut seen = std::collections::HashSet::new();
        for (d, p) in files {
            if seen.insert(d.clone()) {
                ar.append_path_with_name(&p, format!("blobs/sha256/{}", hex_of(&d)))?;
            }
        }
        ar.into_inner()?.flush()?;
        std::fs::rename(&tmp, out)?;
        Ok(())
    }

    /// Gives image `src` a second name `dst` (the same layers).
    pub async fn tag(&self, src: &str, dst: &str) -> Result<PulledImage, ImageError> {
        crate::validate_reference(dst)?;
        let mut img = self
            .local(src)
            .ok_or_else(|| ImageError::NotPresent(src.to_string()))?;
        img.reference = dst.to_string();
        img.last_used = Some(chrono::Utc::now());
        self.save_ref(&img).await?;
        Ok(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_archive() {
        for (path, want) in [
            ("a/b", Some("a/b")),
            ("./a/./b", Some("a/b")),
            ("a/../b", Some("b")),
            ("../b", None),
            ("/etc/passwd", None),
            ("a/../../b", None),
        ] {
            assert_eq!(clean(Path::new(path)).as_deref(), want, "{path}");
        }
    }
}
