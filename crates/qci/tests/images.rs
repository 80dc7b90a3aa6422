//! End-to-end image tests: private TLS registries with credentials, pull policies, layer
//! formats, whiteouts, hostile layers, and blobs fetched once.

use std::path::Path;
use std::time::Duration;

use qci_spec::GroupPhase;
use qci_testkit::{
    Compression, Entry, ImageSpec, Layer, Registry, Server, push_busybox, push_image,
    push_image_to, tar_of,
};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

fn reason_of(g: &qci_spec::ContainerGroup) -> Option<String> {
    g.status.containers.first().and_then(|c| c.reason.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn private_tls_registry_with_credentials_and_passwords_never_shown() {
    const PASSWORD: &str = "s3cret-Pa55word";
    let reg = Registry::start_secure("alice", PASSWORD);
    let spec = ImageSpec {
        cmd: Some(vec!["echo".into(), "private ok".into()]),
        ..Default::default()
    };
    let image = push_image_to(&reg.target(), "private/bb", "1.0", &spec).await;
    let ca = reg.ca_file.clone().unwrap();
    let s = Server::start_with(Path::new(QCI), &["--registry-ca", ca.to_str().unwrap()]).await;
    let host = reg.host();
    let group = |name: &str, password: Option<&str>| {
        let creds = password
            .map(|p| format!("registry_credentials: [{{server: 'https://{host}/', username: alice, password: '{p}'}}]\n"))
            .unwrap_or_default();
        format!(
            "name: {name}\nrestart_policy: Never\n{creds}containers: [{{name: c, image: '{image}'}}]\n"
        )
    };

    // The right password: the image is pulled over TLS and runs.
    let id = s
        .create("good", &group("good", Some(PASSWORD)), &[])
        .1
        .trim()
        .to_string();
    let g = s
        .wait_group(&id, "good ends", |g| g.status.phase.is_final())
        .await;
    assert_eq!(
        g.status.phase,
        GroupPhase::Succeeded,
        "{:?}\n{}",
        g.status,
        s.log()
    );
    assert_eq!(s.logs(&id, "c").await, "private ok\n");
    assert_eq!(g.spec.registry_credentials[0].password, "******");

    // A wrong password, and none: ErrImagePull with the registry's answer, then back-off.
    for (name, pw) in [("wrong", Some("not-the-password")), ("anon", None)] {
        let (ok, out, err) = s.create(name, &group(name, pw), &["--wait"]);
        assert!(!ok, "{name}: pull without the right credential succeeded");
        assert!(
            err.contains("ImagePull") && err.contains("not authorized"),
            "{name}: {err}"
        );
        let id = out.trim().to_string();
        let g = s
            .wait_group(&id, "back-off", |g| {
                reason_of(g).as_deref() == Some("ImagePullBackOff")
            })
            .await;
        assert!(g.status.containers[0].retry_at.is_some());
        let (_, events, _) = s.cli(&["events", name]);
        assert!(
            events.contains("failed to pull") && events.contains("not authorized"),
            "{events}"
        );
    }

    // An image cache of the private image, with the credential.
    let cache = s
        .client
        .create_image_cache(&qci_spec::ImageCacheSpec {
            name: "private".into(),
            images: vec![image.clone()],
            registry_credentials: vec![qci_spec::RegistryCredential {
                server: host.clone(),
                username: "alice".into(),
                password: PASSWORD.into(),
            }],
        })
        .await
        .unwrap();
    assert_eq!(cache.spec.registry_credentials[0].password, "******");
    let c = loop {
        let c = s.client.get_image_cache(&cache.id).await.unwrap();
        if c.status.phase != qci_spec::CachePhase::Creating {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        c.status.phase,
        qci_spec::CachePhase::Ready,
        "{:?}",
        c.status
    );

    // The same from the CLI: --username with the password on standard input is used (and
    // without it the registry says no).
    let (ok, _, err) = s.cli_stdin(
        &[
            "image-cache",
            "create",
            "--name",
            "cli",
            "--wait",
            "--username",
            "alice",
            "--password-stdin",
            &image,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok, "image-cache create --username --password-stdin: {err}");
    let (ok, _, err) = s.cli(&[
        "image-cache",
        "create",
        "--name",
        "cli-anon",
        "--wait",
        &image,
    ]);
    assert!(!ok && err.contains("not authorized"), "{err}");

    // The password is in no API answer, event, log or database file.
    let (_, get, _) = s.cli(&["get", "good", "-o", "json"]);
    let (_, ls, _) = s.cli(&["ls", "-o", "yaml"]);
    let (_, events, _) = s.cli(&["events", "good"]);
    for (what, text) in [
        ("get", get),
        ("ls", ls),
        ("events", events),
        ("serve log", s.log()),
    ] {
        assert!(!text.contains(PASSWORD), "the password shows in {what}");
    }
    for f in ["qci.db", "qci.db-wal"] {
        let bytes = std::fs::read(s.data_dir.join(f)).unwrap_or_default();
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "plaintext password in {f}"
        );
    }
    let key = std::fs::metadata(s.data_dir.join("secret.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_policies() {
    let mut reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1.0").await;
    let s = Server::start(Path::new(QCI)).await;
    let group = |name: &str, policy: &str| {
        format!(
            "name: {name}\nrestart_policy: Never\ncontainers: [{{name: c, image: '{image}', command: ['true'], image_pull_policy: {policy}}}]\n"
        )
    };

    // Never, image absent: ErrImageNeverPull without a single request to the registry.
    let before = reg.requests();
    let (ok, _, err) = s.create("never", &group("never", "Never"), &["--wait"]);
    assert!(!ok && err.contains("ErrImageNeverPull"), "{err}");
    assert_eq!(reg.requests(), before, "Never made registry requests");

    // IfNotPresent pulls once; then, with the registry down, IfNotPresent and Never still run.
    let id = s
        .create("first", &group("first", "IfNotPresent"), &[])
        .1
        .trim()
        .to_string();
    s.wait_group(&id, "first ends", |g| {
        g.status.phase == GroupPhase::Succeeded
    })
    .await;
    reg.stop();
    for (name, policy) in [("again", "IfNotPresent"), ("never2", "Never")] {
        let id = s
            .create(name, &group(name, policy), &[])
            .1
            .trim()
            .to_string();
        let g = s
            .wait_group(&id, "ends", |g| g.status.phase.is_final())
            .await;
        assert_eq!(
            g.status.phase,
            GroupPhase::Succeeded,
            "{name}: {:?}",
            g.status
        );
    }
    // Always must ask the registry, and says why it cannot.
    let (ok, _, err) = s.create("always", &group("always", "Always"), &["--wait"]);
    assert!(
        !ok && err.contains("ImagePull") && err.contains("cannot reach"),
        "{err}"
    );
    reg.resume();

    // Always with a changed tag: only the new layer is downloaded.
    let base_gets = reg.log().matches("\"GET /v2/bb/blobs/").count();
    let spec = ImageSpec {
        extra_layers: vec![Layer {
            tar: tar_of(&[Entry::File("v2", b"two\n")]),
            compression: Compression::Gzip,
        }],
        ..Default::default()
    };
    push_image(&reg.host(), "bb", "1.0", &spec).await;
    let id = s
        .create("updated", &group("updated", "Always"), &[])
        .1
        .trim()
        .to_string();
    let g = s
        .wait_group(&id, "updated ends", |g| g.status.phase.is_final())
        .await;
    assert_eq!(g.status.phase, GroupPhase::Succeeded, "{:?}", g.status);
    let new_gets = reg.log().matches("\"GET /v2/bb/blobs/").count() - base_gets;
    // The new config and the new layer; the busybox layer is already here.
    assert_eq!(
        new_gets,
        2,
        "blob downloads after the tag moved:\n{}",
        reg.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_plain_layers_whiteouts_and_opaque_dirs() {
    let reg = Registry::start();
    let top = tar_of(&[
        Entry::Dir("etc/"),
        Entry::File("etc/.wh.group", b""),
        Entry::Dir("var/"),
        Entry::File("var/.wh..wh..opq", b""),
        Entry::File("var/new", b"fresh\n"),
    ]);
    // A layer with a hard link to a file of the layer below it (real images have them).
    let below = tar_of(&[
        Entry::Dir("data/"),
        Entry::File("data/orig", b"from below\n"),
    ]);
    let linking = tar_of(&[
        Entry::Dir("data/"),
        Entry::HardLink("data/link", "data/orig"),
        Entry::File("data/own", b"own\n"),
        Entry::HardLink("data/own-link", "data/own"),
    ]);
    let spec = ImageSpec {
        compression: Compression::Zstd,
        extra_layers: vec![
            Layer {
                tar: top,
                compression: Compression::None,
            },
            Layer {
                tar: below,
                compression: Compression::Gzip,
            },
            Layer {
                tar: linking,
                compression: Compression::Gzip,
            },
        ],
        ..Default::default()
    };
    let image = push_image(&reg.host(), "layers", "1", &spec).await;
    let s = Server::start(Path::new(QCI)).await;
    let group = format!(
        "name: layers\nrestart_policy: Never\ncontainers: [{{name: c, image: '{image}', command: [sh, -c, 'test -e /etc/group && echo group-present; test -e /etc/passwd && echo passwd-present; ls /var; cat /data/link /data/own-link']}}]\n"
    );
    let id = s.create("layers", &group, &[]).1.trim().to_string();
    let g = s
        .wait_group(&id, "ends", |g| g.status.phase.is_final())
        .await;
    assert_eq!(g.status.phase, GroupPhase::Succeeded, "{:?}", g.status);
    assert_eq!(
        s.logs(&id, "c").await,
        "passwd-present\nnew\nfrom below\nown\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_layers_are_refused_and_leave_nothing() {
    let reg = Registry::start();
    let outside = qci_testkit::test_root().join(format!("escape-target-{}", std::process::id()));
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.to_str().unwrap().to_string();
    let hostile = [
        (
            "dotdot",
            tar_of(&[
                Entry::File("ok", b"fine"),
                Entry::File("../../../../../../tmp/qci-pwned", b"x"),
            ]),
        ),
        (
            "absolute",
            tar_of(&[Entry::File("/tmp/qci-pwned-abs", b"x")]),
        ),
        (
            "symlink",
            tar_of(&[
                Entry::Symlink("escape", &target),
                Entry::File("escape/pwned", b"x"),
            ]),
        ),
    ];
    let s = Server::start(Path::new(QCI)).await;
    for (name, tar) in hostile {
        let spec = ImageSpec {
            extra_layers: vec![Layer {
                tar,
                compression: Compression::Gzip,
            }],
            ..Default::default()
        };
        let image = push_image(&reg.host(), name, "1", &spec).await;
        let group = format!(
            "name: {name}\nrestart_policy: Never\ncontainers: [{{name: c, image: '{image}'}}]\n"
        );
        let (ok, _, err) = s.create(name, &group, &["--wait"]);
        assert!(!ok, "{name}: a hostile layer was accepted");
        assert!(err.contains("escapes the layer root"), "{name}: {err}");
    }
    assert!(!Path::new("/tmp/qci-pwned").exists() && !Path::new("/tmp/qci-pwned-abs").exists());
    assert!(
        !outside.join("pwned").exists(),
        "a write went through the symlink"
    );
    // Only the busybox layer was kept; nothing half-unpacked.
    let layers: Vec<_> = std::fs::read_dir(s.data_dir.join("images/layers/sha256"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
    std::fs::remove_dir_all(&outside).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_fetch_each_blob_once() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "conc", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let group = |name: &str| {
        format!(
            "name: {name}\ncontainers: [{{name: c, image: '{image}', command: [sleep, '60']}}]\n"
        )
    };
    let (one, two) = (group("one"), group("two"));
    let (a, b) = tokio::join!(s.client.create_group(&one), s.client.create_group(&two));
    for g in [a.unwrap(), b.unwrap()] {
        s.wait_group(&g.id, "Running", |g| g.status.phase == GroupPhase::Running)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let blob_gets = reg.log().matches("\"GET /v2/conc/blobs/").count();
    assert_eq!(
        blob_gets,
        2,
        "config and layer should be fetched once each:\n{}",
        reg.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_caches_start_groups_with_the_registry_down() {
    let mut reg = Registry::start();
    let image = push_busybox(&reg.host(), "cached", "latest").await;
    let other = push_busybox(&reg.host(), "other", "1").await;
    let s = Server::start(Path::new(QCI)).await;

    let (ok, out, err) = s.cli(&["image-cache", "create", "--name", "base", &image, "--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    assert!(id.starts_with("ic-"), "{out}");
    let (ok, out, _) = s.cli(&["image-cache", "get", "base"]);
    assert!(
        ok && out.contains("Ready") && out.contains(&image) && out.contains("sha256:"),
        "{out}"
    );
    let (ok, out, _) = s.cli(&["image-cache", "ls"]);
    assert!(ok && out.contains(&id), "{out}");

    // With the registry gone, groups start from the cache: `auto` (the default) and by name,
    // even for a :latest image, whose default policy would otherwise ask the registry.
    reg.stop();
    let group = |name: &str, extra: &str, policy: &str| {
        format!(
            "name: {name}\n{extra}containers: [{{name: c, image: '{image}', command: [sleep, '60']{policy}}}]\n"
        )
    };
    for (name, extra) in [
        ("auto", ""),
        ("named", "image_cache: base\n"),
        ("byid", &*format!("image_cache: {id}\n")),
    ] {
        let (ok, out, err) = s.create(name, &group(name, extra, ""), &["--wait"]);
        assert!(ok, "{name}: {err}\n{}", s.log());
        let (_, events, _) = s.cli(&["events", out.trim()]);
        assert!(
            events.contains("from image cache \"base\""),
            "{name}: {events}"
        );
        assert!(
            !events.contains("Pulling"),
            "{name} contacted the registry: {events}"
        );
    }
    // Asking for Always, or for no cache, goes to the registry, which is down.
    for (name, extra, policy) in [
        ("always", "", ", image_pull_policy: Always"),
        ("nocache", "image_cache: none\n", ""),
    ] {
        let (ok, _, err) = s.create(name, &group(name, extra, policy), &["--wait"]);
        assert!(!ok && err.contains("cannot reach"), "{name}: {err}");
    }
    // A named cache must exist and hold every image.
    let spec =
        format!("name: missing\nimage_cache: base\ncontainers: [{{name: c, image: '{other}'}}]\n");
    let (ok, _, err) = s.create("missing", &spec, &[]);
    assert!(
        !ok && err.contains("image_cache: image cache \"base\" does not hold"),
        "{err}"
    );
    let spec = format!(
        "name: nocache2\nimage_cache: nosuch\ncontainers: [{{name: c, image: '{image}'}}]\n"
    );
    let (ok, _, err) = s.create("nocache2", &spec, &[]);
    assert!(
        !ok && err.contains("no image cache named \"nosuch\""),
        "{err}"
    );

    // A cache whose image cannot be pulled fails with the registry's answer.
    reg.resume();
    let missing = format!("{}/not/there:1", reg.host());
    let (ok, _, err) = s.cli(&[
        "image-cache",
        "create",
        "--name",
        "broken",
        &missing,
        "--wait",
    ]);
    assert!(
        !ok && err.contains("failed") && err.contains("manifest unknown"),
        "{err}"
    );

    let (ok, _, err) = s.cli(&["image-cache", "rm", "base"]);
    assert!(ok, "{err}");
    assert!(
        s.client
            .get_image_cache("base")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(!s.data_dir.join(format!("images/pins/{id}.json")).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_collection_keeps_what_is_in_use_and_honours_the_budget() {
    let reg = Registry::start();
    let with = |name: &'static str| ImageSpec {
        extra_layers: vec![Layer {
            tar: tar_of(&[Entry::File(name, name.as_bytes())]),
            compression: Compression::Gzip,
        }],
        ..Default::default()
    };
    let a = push_image(&reg.host(), "gc-a", "1", &with("a")).await;
    let b = push_image(&reg.host(), "gc-b", "1", &with("b")).await;
    let c = push_image(&reg.host(), "gc-c", "1", &with("c")).await;
    // A budget of one byte: everything nothing uses must go.
    let s = Server::start_with(Path::new(QCI), &["--image-store-max-size", "1"]).await;
    for image in [&a, &b] {
        let (ok, _, err) = s.cli(&["image", "pull", image]);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = s.cli(&["image-cache", "create", "--name", "keep", &c, "--wait"]);
    assert!(ok, "{err}");
    let spec = format!(
        "name: user\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{a}', command: [sleep, '60']}}]\n"
    );
    let (ok, out, err) = s.create("user", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let layers = || {
        std::fs::read_dir(s.data_dir.join("images/layers/sha256"))
            .unwrap()
            .count()
    };
    assert_eq!(layers(), 4, "busybox and one layer each for a, b and c");

    // b is used by nothing: it goes. a runs, c is pinned by a cache: they stay.
    let r = s.client.prune_images().await.unwrap();
    assert_eq!(r["removed_images"], serde_json::json!([b]), "{r}");
    assert_eq!(r["removed_layers"], 1, "{r}");
    assert_eq!(layers(), 3);
    let listed: Vec<String> = s
        .client
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert!(
        listed.contains(&a) && listed.contains(&c) && !listed.contains(&b),
        "{listed:?}"
    );
    let g = s.client.get_group(out.trim()).await.unwrap();
    assert_eq!(g.status.phase, GroupPhase::Running);

    // Once the group, the image and the cache are gone, so is everything.
    assert!(s.cli(&["delete", "user", "--wait"]).0);
    assert!(s.cli(&["image", "rm", &a]).0);
    assert!(s.cli(&["image-cache", "rm", "keep"]).0);
    let (ok, out, err) = s.cli(&["image", "prune"]);
    assert!(ok, "{err}");
    assert!(out.contains("removed 1 images"), "{out}");
    assert_eq!(layers(), 0);
    assert!(s.client.list_images().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_cut_short_does_not_download_finished_blobs_again() {
    let reg = Registry::start();
    let spec = ImageSpec {
        extra_layers: vec![
            Layer {
                tar: tar_of(&[Entry::File("one", b"1")]),
                compression: Compression::Gzip,
            },
            Layer {
                tar: tar_of(&[Entry::File("two", b"2")]),
                compression: Compression::Zstd,
            },
        ],
        ..Default::default()
    };
    let image = push_image(&reg.host(), "resume", "1", &spec).await;
    let s = Server::start(Path::new(QCI)).await;
    let (ok, _, err) = s.cli(&["image", "pull", &image]);
    assert!(ok, "{err}");
    let fetched = reg.log().matches("\"GET /v2/resume/blobs/").count();
    assert_eq!(fetched, 4, "config and three layers");
    // What a crash after the downloads leaves: verified blobs, but no unpacked layers, no
    // reference, and a half-written download.
    let images = s.data_dir.join("images");
    for d in ["layers/sha256", "refs"] {
        for e in std::fs::read_dir(images.join(d)).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap()
            } else {
                std::fs::remove_file(&p).unwrap()
            }
        }
    }
    std::fs::write(images.join("tmp/partial-download"), b"half").unwrap();
    let mut s = s;
    s.restart().await;
    assert!(
        !images.join("tmp/partial-download").exists(),
        "partial downloads are dropped at start"
    );
    let (ok, _, err) = s.cli(&["image", "pull", &image]);
    assert!(ok, "{err}");
    assert_eq!(
        reg.log().matches("\"GET /v2/resume/blobs/").count(),
        fetched,
        "a finished blob was downloaded again"
    );
    let spec = format!(
        "name: r\nrestart_policy: Never\ncontainers: [{{name: c, image: '{image}', command: [cat, /one, /two]}}]\n"
    );
    let id = s.create("r", &spec, &[]).1.trim().to_string();
    s.wait_group(&id, "done", |g| g.status.phase.is_final())
        .await;
    assert_eq!(s.logs(&id, "c").await, "12\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_flow() {
    let dir = tempfile::Builder::new()
        .prefix("qci-token-")
        .tempdir_in(qci_testkit::test_root())
        .unwrap();
    let tokens = qci_testkit::TokenServer::start(dir.path(), "bob", "t0ken-pw").await;
    let reg = Registry::start_token(&tokens, ("bob", "t0ken-pw"));
    let spec = ImageSpec {
        cmd: Some(vec!["echo".into(), "via token".into()]),
        ..Default::default()
    };
    let image = push_image_to(&reg.target(), "tok/bb", "1", &spec).await;
    let s = Server::start(Path::new(QCI)).await;
    let group = |name: &str, pw: &str| {
        format!(
            "name: {name}\nrestart_policy: Never\nregistry_credentials: [{{server: '{}', username: bob, password: '{pw}'}}]\ncontainers: [{{name: c, image: '{image}'}}]\n",
            reg.host()
        )
    };
    let id = s
        .create("tok", &group("tok", "t0ken-pw"), &[])
        .1
        .trim()
        .to_string();
    let g = s
        .wait_group(&id, "ends", |g| g.status.phase.is_final())
        .await;
    assert_eq!(
        g.status.phase,
        GroupPhase::Succeeded,
        "{:?}\n{}",
        g.status,
        s.log()
    );
    assert_eq!(s.logs(&id, "c").await, "via token\n");
    let (ok, _, err) = s.create("bad", &group("bad", "wrong"), &["--wait"]);
    assert!(!ok && err.contains("ImagePull"), "{err}");
}

/// Images without a registry: docker-archive and OCI archives (made by skopeo, which writes
/// both) load and run; what qci saves, skopeo reads and qci loads back; a tag is a second
/// name; archives that lie about their digests, or hold no image, are refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn image_archives_load_save_and_tag() {
    qci_testkit::require(&[("skopeo", "skopeo")]);
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let dir = tempfile::tempdir_in(qci_testkit::test_root()).unwrap();
    let skopeo = |args: &[&str]| {
        let out = std::process::Command::new("skopeo")
            .args(args)
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let docker_tar = dir.path().join("docker.tar");
    let oci_tar = dir.path().join("oci.tar");
    let src = format!("docker://{image}");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--additional-tag",
        "local/bb:extra",
        &src,
        &format!("docker-archive:{}:local/bb:docker", docker_tar.display()),
    ]);
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &src,
        &format!("oci-archive:{}:local/bb:oci", oci_tar.display()),
    ]);

    // A docker-archive, from a file, under the name it carries; an OCI archive from
    // standard input, under a name given here.
    let (ok, out, err) = s.cli(&["image", "load", "-i", docker_tar.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("Loaded image: "), "{out}");
    let docker_name = out
        .trim()
        .strip_prefix("Loaded image: ")
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    assert!(docker_name.ends_with("local/bb:docker"), "{out}");
    // Its second tag too; and under a name given here, one image however many tags.
    assert!(out.contains("local/bb:extra"), "{out}");
    let (ok, out, err) = s.cli(&[
        "image",
        "load",
        "-i",
        docker_tar.to_str().unwrap(),
        "--tag",
        "renamed/bb:1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let out = s
        .command()
        .args(["image", "load", "--tag", "mine/bb:oci"])
        .stdin(std::fs::File::open(&oci_tar).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mine/bb:oci"));

    // Both run, with nothing asked of any registry (the registry is stopped).
    drop(reg);
    for (name, img) in [
        ("from-docker", docker_name.as_str()),
        ("from-oci", "mine/bb:oci"),
    ] {
        let spec = format!(
            "name: {name}\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{img}', image_pull_policy: IfNotPresent, command: [sh, -c, 'echo ran from $0; sleep 600', '{img}']}}]\n"
        );
        let (ok, _, err) = s.create(name, &spec, &["--wait"]);
        assert!(ok, "{name}: {err}");
        let (ok, out, err) = s.cli(&["exec", name, "--", "busybox", "true"]);
        assert!(ok, "{name}: {out}{err}");
    }

    // Saved by qci: an OCI layout skopeo reads, and qci loads back under a third name.
    let saved = dir.path().join("saved.tar");
    let (ok, _, err) = s.cli(&[
        "image",
        "save",
        "mine/bb:oci",
        "-o",
        saved.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let inspected = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}", saved.display()),
    ]);
    assert!(
        inspected.contains("application/vnd.oci.image.manifest.v1+json"),
        "{inspected}"
    );
    let (ok, out, err) = s.cli(&[
        "image",
        "load",
        "-i",
        saved.to_str().unwrap(),
        "--tag",
        "again/bb:1",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("again/bb:1"), "{out}");
    let (ok, _, err) = s.cli(&[
        "image",
        "save",
        "nothing/here:1",
        "-o",
        dir.path().join("x.tar").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("not in the store"), "{err}");

    // A second name for an image of the store.
    let (ok, out, err) = s.cli(&["image", "tag", "mine/bb:oci", "mine/bb:v2"]);
    assert!(ok, "{err}");
    assert!(out.contains("mine/bb:v2"), "{out}");
    let listed = s.client.list_images().await.unwrap();
    let digest = |r: &str| {
        listed
            .iter()
            .find(|i| i.reference == r)
            .map(|i| i.digest.clone())
    };
    assert!(digest("mine/bb:v2").is_some() && digest("mine/bb:v2") == digest("mine/bb:oci"));

    // The Quickstart's image, made by the project's script from Debian's busybox-static
    // (no registry, no test kit), loaded and serving its page to a second container.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
    let made = dir.path().join("quickstart.tar");
    let st = std::process::Command::new(&script)
        .arg(&made)
        .output()
        .expect("scripts/busybox-image.sh");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let (ok, out, err) = s.cli(&["image", "load", "-i", made.to_str().unwrap()]);
    assert!(ok && out.contains("local/busybox:1"), "{out}{err}");
    let spec = "name: quick\ntermination_grace_period_seconds: 1\ncontainers:\n  - {name: server, image: 'local/busybox:1', command: [httpd, -f, -p, '8080'], working_dir: /}\n  - {name: client, image: 'local/busybox:1', command: [sh, -c, 'until wget -qO- http://127.0.0.1:8080/; do sleep 0.2; done; sleep 600']}\n";
    let (ok, _, err) = s.create("quick", spec, &["--wait"]);
    assert!(ok, "{err}");
    let mut page = String::new();
    for _ in 0..50 {
        page = s.logs("quick", "client").await;
        if page.contains("</h1>") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        page.ends_with("<h1>served by busybox httpd in qci</h1>\n"),
        "{page}"
    );

    // Archives that lie or hold nothing: refused, with the reason, and nothing stored.
    let blob = |c: &[u8]| {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(c)))
    };
    let lie = blob(b"what the index says");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{lie}","size":3}}]}}"#
    );
    let blob_name = format!("blobs/sha256/{}", lie.trim_start_matches("sha256:"));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            tar_of(&[
                Entry::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                Entry::File("index.json", index.as_bytes()),
                Entry::File(&blob_name, b"something else"),
            ]),
            "not the sha256:",
        ),
        (
            tar_of(&[Entry::File("hello.txt", b"hi")]),
            "neither index.json",
        ),
        (
            b"not a tar at all, not even close".repeat(40),
            "reading the archive",
        ),
        (
            tar_of(&[
                Entry::File("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                Entry::Symlink("index.json", "../../../../etc/passwd"),
            ]),
            "leaves the archive",
        ),
    ];
    let before = s.client.list_images().await.unwrap().len();
    for (i, (tar, said)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.tar"));
        std::fs::write(&path, tar).unwrap();
        let (ok, _, err) = s.cli(&[
            "image",
            "load",
            "-i",
            path.to_str().unwrap(),
            "--tag",
            "bad/x:1",
        ]);
        assert!(!ok, "case {i} was loaded");
        assert!(err.contains(said), "case {i}: {err}");
    }
    assert_eq!(s.client.list_images().await.unwrap().len(), before);
}
