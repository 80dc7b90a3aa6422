//! Images built here, from files on this machine, and pushed to a test registry.

use std::io::Write;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
    OciImageIndex, OciImageManifest, Platform,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

/// Which media types an image is pushed with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest, config and gzip layer.
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2, with Docker's config and layer media types.
    Docker,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// A layer given as a tar stream.
#[derive(Debug, Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub compression: Compression,
}

/// Where to push: a registry host, the CA it is signed by (HTTPS), and a login.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub ca_pem: Option<Vec<u8>>,
    pub login: Option<(String, String)>,
}

impl Target {
    pub fn plain(host: &str) -> Target {
        Target {
            host: host.to_string(),
            ca_pem: None,
            login: None,
        }
    }
}

/// What goes into a test image besides busybox.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub format: Format,
    /// How the busybox layer is compressed.
    pub compression: Compression,
    /// Layers on top of busybox, bottom first.
    pub extra_layers: Vec<Layer>,
    /// The config's architecture; `amd64` when empty.
    pub architecture: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Extra files: (path inside the image, content, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
}

/// The page the test image's /index.html holds.
pub const INDEX_HTML: &str = "<h1>served by busybox httpd in qci</h1>\n";

/// Pushes `busybox` (CMD `sh`) to `registry` as `repo:tag`; returns the reference.
pub async fn push_busybox(registry: &str, repo: &str, tag: &str) -> String {
    push_image(
        registry,
        repo,
        tag,
        &ImageSpec {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        },
    )
    .await
}

fn busybox_layer(spec: &ImageSpec) -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: install it with `apt-get install busybox-static`");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("running busybox --list");
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_data(&mut h, path, &[][..]).expect("tar dir");
    };
    for d in ["bin", "etc", "root", "proc", "sys", "dev", "var", "var/www"] {
        dir(&mut b, d, 0o755);
    }
    dir(&mut b, "tmp", 0o1777);
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).expect("tar file");
    };
    file(&mut b, "bin/busybox", &busybox, 0o755);
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    );
    file(&mut b, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644);
    file(&mut b, "index.html", INDEX_HTML.as_bytes(), 0o644);
    for (path, data, mode) in &spec.files {
        file(&mut b, path.trim_start_matches('/'), data, *mode);
    }
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("tar symlink");
    }
    b.into_inner().expect("tar")
}

/// Builds an image on busybox and pushes it over plain HTTP; returns `registry/repo:tag`.
pub async fn push_image(registry: &str, repo: &str, tag: &str, spec: &ImageSpec) -> String {
    push_image_to(&Target::plain(registry), repo, tag, spec).await
}

fn layer_blob(layer: &Layer, format: Format) -> ImageLayer {
    let (data, oci, docker) = match layer.compression {
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&layer.tar).expect("gzip");
            (
                gz.finish().expect("gzip"),
                IMAGE_LAYER_GZIP_MEDIA_TYPE,
                IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
            )
        }
        Compression::Zstd => (
            zstd::encode_all(&layer.tar[..], 3).expect("zstd"),
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        Compression::None => (
            layer.tar.clone(),
            IMAGE_LAYER_MEDIA_TYPE,
            IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE,
        ),
    };
    let media_type = if format == Format::Docker {
        docker
    } else {
        oci
    };
    ImageLayer::new(data, media_type.to_string(), None)
}

/// Builds an image on busybox and pushes it to `target`; returns `host/repo:tag`.
pub async fn push_image_to(target: &Target, repo: &str, tag: &str, spec: &ImageSpec) -> String {
    qci_image::init_tls();
    let mut tars = vec![Layer {
        tar: busybox_layer(spec),
        compression: spec.compression,
    }];
    tars.extend(spec.extra_layers.iter().cloned());
    let diff_ids: Vec<String> = tars
        .iter()
        .map(|l| format!("sha256:{}", hex::encode(Sha256::digest(&l.tar))))
        .collect();
    let layers: Vec<ImageLayer> = tars.iter().map(|l| layer_blob(l, spec.format)).collect();
    let mut cfg = serde_json::json!({
        "Env": if spec.env.is_empty() { vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()] } else { spec.env.clone() },
    });
    if let Some(e) = &spec.entrypoint {
        cfg["Entrypoint"] = serde_json::json!(e);
    }
    if let Some(c) = &spec.cmd {
        cfg["Cmd"] = serde_json::json!(c);
    }
    if let Some(w) = &spec.working_dir {
        cfg["WorkingDir"] = serde_json::json!(w);
    }
    if let Some(u) = &spec.user {
        cfg["User"] = serde_json::json!(u);
    }
    let arch = if spec.architecture.is_empty() {
        "amd64"
    } else {
        spec.architecture.as_str()
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config = match spec.format {
        Format::Oci => Config::oci_v1(config, None),
        Format::Docker => Config::new(config, IMAGE_DOCKER_CONFIG_MEDIA_TYPE.to_string(), None),
    };
    let reference = format!("{}/{repo}:{tag}", target.host);
    let r: Reference = reference.parse().expect("reference");
    let client = client_for(target);
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    if spec.format == Format::Docker {
        manifest.media_type = Some(IMAGE_MANIFEST_MEDIA_TYPE.to_string());
    }
    client
        .push(&r, &layers, config, &auth_for(target), Some(manifest))
        .await
        .unwrap_or_else(|e| panic!("pushing {reference}: {e}"));
    reference
}

fn client_for(target: &Target) -> Client {
    match &target.ca_pem {
        None => Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        }),
        Some(pem) => Client::new(ClientConfig {
            protocol: ClientProtocol::Https,
            extra_root_certificates: vec![oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            }],
            ..Default::default()
        }),
    }
}

fn auth_for(target: &Target) -> RegistryAuth {
    match &target.login {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    }
}

/// Pushes an OCI image index at `registry/repo:tag` whose entries are the manifests already
/// pushed at `registry/repo:<member tag>`, listed in the order given with their architecture
/// (os linux); returns the index reference.
pub async fn push_index(registry: &str, repo: &str, tag: &str, members: &[(&str, &str)]) -> String {
    qci_image::init_tls();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let mut manifests = Vec::new();
    for (arch, member) in members {
        let r: Reference = format!("{registry}/{repo}:{member}")
            .parse()
            .expect("reference");
        let (bytes, digest) = client
            .pull_manifest_raw(
                &r,
                &RegistryAuth::Anonymous,
                &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
            )
            .await
            .unwrap_or_else(|e| panic!("reading back {r}: {e}"));
        let platform: Platform =
            serde_json::from_value(serde_json::json!({"architecture": arch, "os": "linux"}))
                .expect("platform");
        manifests.push(ImageIndexEntry {
            media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
            digest,
            size: bytes.len() as i64,
            platform: Some(platform),
            annotations: None,
            artifact_type: None,
        });
    }
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_string()),
        manifests,
        artifact_type: None,
        annotations: None,
    };
    let reference = format!("{registry}/{repo}:{tag}");
    let r: Reference = reference.parse().expect("reference");
    client
        .push_manifest_list(&r, &RegistryAuth::Anonymous, index)
        .await
        .unwrap_or_else(|e| panic!("pushing index {reference}: {e}"));
    reference
}

/// One entry of a hand-made layer.
#[derive(Debug, Clone)]
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    /// A hard link (path, target), the target in this layer or one below.
    HardLink(&'a str, &'a str),
}

/// A tar stream with exactly these entries. Names are written as given, `../` included, so
/// hostile layers can be made.
pub fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let (name, data): (&str, &[u8]) = match e {
            Entry::File(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (p, d)
            }
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, &[])
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).expect("link name");
                (p, &[])
            }
            Entry::HardLink(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_link_name(target).expect("link name");
                (p, &[])
            }
        };
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("tar entry");
    }
    b.into_inner().expect("tar")
}
