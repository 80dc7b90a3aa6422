//! End-to-end: tenants and keys. Every path of the OpenAPI document (read at test time, so a
//! new endpoint is covered without editing this test) is walked as another tenant, as a viewer
//! and with no key; quotas; browser safety; the audit trail; files and logs that keep keys
//! secret; TLS; the CLI's identity.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use qci_client::Client;
use qci_spec::{GroupPhase, Role, TenantSpec};
use qci_testkit::{Registry, Server, push_busybox};
use reqwest::Method;

const QCI: &str = env!("CARGO_BIN_EXE_qci");

/// Makes `tenant` (with `quota`, CLI form) and a key of `role` in it; answers the key.
async fn tenant_key(s: &Server, tenant: &str, quota: &str, role: Role) -> String {
    let mut q = qci_spec::QuotaSpec::default();
    q.apply_pairs(quota).unwrap();
    match s
        .client
        .create_tenant(&TenantSpec {
            name: tenant.into(),
            quota: q,
        })
        .await
    {
        Ok(_) => {}
        Err(qci_client::ClientError::Api { status: 409, .. }) => {}
        Err(e) => panic!("tenant {tenant}: {e}"),
    }
    key(s, tenant, role).await
}

async fn key(s: &Server, tenant: &str, role: Role) -> String {
    s.key(tenant, role).await
}

/// One request as a browser-less client would send it; answers (status, body).
async fn call(
    s: &Server,
    key: Option<&str>,
    method: &Method,
    path_and_query: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut req =
        reqwest::Client::new().request(method.clone(), format!("{}{path_and_query}", s.url));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if path_and_query.contains("/exec") || path_and_query.contains("/attach") {
        req = req
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    // A 101 would be an exec session opened: never read its body.
    let text = if status == 101 {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    (status, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_path_is_scoped_to_its_tenant_and_role() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &["--eip-pool", "192.0.2.10-192.0.2.20"]).await;
    let alpha = tenant_key(&s, "alpha", "", Role::Member).await;
    let viewer = key(&s, "alpha", Role::Viewer).await;
    let beta = tenant_key(&s, "beta", "", Role::Member).await;
    let a = s.client_with(Some(&alpha));

    // Alpha holds one of everything.
    let spec = format!(
        "name: web\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]\n"
    );
    let g = a.create_group(&spec).await.expect("group");
    let g = s
        .wait_group_as(&a, &g.id, "Running", |g| {
            g.status.phase == GroupPhase::Running
        })
        .await;
    let pid_before = g.status.containers[0].started_at;
    let disk = a
        .create_disk(&qci_spec::DiskSpec {
            name: "data".into(),
            size: qci_spec::Quantity("16Mi".into()),
            disk_type: "standard".into(),
        })
        .await
        .expect("disk");
    let fw = a
        .create_firewall(&qci_spec::FirewallSpec {
            name: "fw".into(),
            rules: vec![],
        })
        .await
        .expect("firewall");
    let vpc = a
        .create_vpc(&qci_spec::VpcSpec {
            name: "v".into(),
            cidr: "10.100.0.0/24".into(),
            firewall: None,
        })
        .await
        .expect("vpc");
    let eip = a
        .create_eip(&qci_spec::EipSpec::default())
        .await
        .expect("eip");
    let cache = a
        .create_image_cache(&qci_spec::ImageCacheSpec {
            name: "ic".into(),
            images: vec![image.clone()],
            registry_credentials: vec![],
        })
        .await
        .expect("cache");
    let viewer_key_id = a.whoami().await.unwrap().key_id;
    let alpha_ids = [
        g.id.as_str(),
        disk.id.as_str(),
        fw.id.as_str(),
        vpc.id.as_str(),
        eip.id.as_str(),
        cache.id.as_str(),
    ];

    // Each path parameter, filled with alpha's object of that kind.
    let fill = |path: &str| -> String {
        let kind = path.split('/').nth(2).unwrap_or("");
        let id = match kind {
            "container-groups" => g.id.as_str(),
            "disks" => disk.id.as_str(),
            "firewalls" => fw.id.as_str(),
            "vpcs" => vpc.id.as_str(),
            "eips" => eip.id.as_str(),
            "image-caches" => cache.id.as_str(),
            "tenants" => "alpha",
            "keys" => viewer_key_id.as_str(),
            _ => "x",
        };
        let mut p = path
            .replace("{id}", id)
            .replace("{name}", if kind == "tenants" { id } else { "c" });
        if p.ends_with("/exec") {
            p.push_str("?command=%5B%22true%22%5D");
        }
        p
    };
    // A body each write would accept from alpha, so that what answers is the tenant check.
    let body = |method: &Method, path: &str| -> Option<String> {
        if *method == Method::GET || *method == Method::DELETE {
            return None;
        }
        Some(match path {
            "/v1/container-groups/{id}" => serde_json::to_string(&g.spec).unwrap(),
            "/v1/vpcs/{id}" => r#"{"firewall": null}"#.into(),
            "/v1/eips/{id}/bind" => format!(r#"{{"vpc": "{}"}}"#, vpc.id),
            "/v1/disks/{id}/resize" => r#"{"size": "32Mi"}"#.into(),
            "/v1/firewalls/{id}" => r#"{"name": "fw", "rules": []}"#.into(),
            "/v1/tenants/{name}" => r#"{"quota": {}}"#.into(),
            _ => "{}".into(),
        })
    };

    let doc = s.client.openapi().await.expect("openapi");
    let mut ops: Vec<(Method, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["get", "post", "put", "delete", "patch"] {
            if item.get(m).is_some() {
                ops.push((m.to_uppercase().parse().unwrap(), path.clone()));
            }
        }
    }
    for must in [
        "/v1/container-groups/{id}/containers/{name}/exec",
        "/v1/tenants",
        "/v1/keys",
        "/v1/audit",
        "/v1/disks/{id}",
    ] {
        assert!(
            ops.iter().any(|(_, p)| p == must),
            "{must} is not in the OpenAPI document"
        );
    }
    assert!(
        ops.len() >= 40,
        "only {} operations in the document",
        ops.len()
    );

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for (method, path) in &ops {
        // Signing in takes a key in its body, not a header, and signing out is any key's own
        // business: both are checked in the console's tests (console.rs, console_sessions).
        // Here: neither opens anything without a valid key.
        if path == "/v1/sessions" || path == "/v1/sessions/current" {
            let (st, text) = call(&s, None, method, path, Some("{}")).await;
            assert!(
                st == 400 || st == 401,
                "{method} {path} without a key: {st} {text}"
            );
            let (st, text) = call(
                &s,
                Some(&beta),
                method,
                path,
                Some(r#"{"key": "qci_nope"}"#),
            )
            .await;
            assert!(
                st == 401 || st == 204,
                "{method} {path} with a bad key in the body: {st} {text}"
            );
            *outcomes.entry("sessions").or_default() += 1;
            continue;
        }
        let url = fill(path);
        let b = body(method, path);
        let reads =
            *method == Method::GET && !path.ends_with("/exec") && !path.ends_with("/attach");
        let admin_only = ["/v1/keys", "/v1/audit", "/v1/images", "/v1/nodes"]
            .iter()
            .any(|p| path.starts_with(p))
            || (path.starts_with("/v1/tenants") && !reads);

        // No key: 401 with the challenge.
        let (st, text) = call(&s, None, method, &url, b.as_deref()).await;
        assert_eq!(st, 401, "{method} {url} without a key: {text}");
        *outcomes.entry("no key: 401").or_default() += 1;

        // The viewer: reads of its own tenant, never a write or an exec.
        let (st, text) = call(&s, Some(&viewer), method, &url, b.as_deref()).await;
        if reads && !admin_only {
            assert_eq!(st, 200, "{method} {url} as alpha's viewer: {text}");
        } else {
            assert_eq!(
                st, 403,
                "{method} {url} as a viewer must be refused: {text}"
            );
        }
        *outcomes.entry("viewer").or_default() += 1;

        // Another tenant: alpha's objects do not exist for it.
        let (st, text) = call(&s, Some(&beta), method, &url, b.as_deref()).await;
        let names_alpha = path.contains('{');
        if admin_only {
            assert_eq!(st, 403, "{method} {url} as beta (not an admin): {text}");
        } else if names_alpha {
            assert_eq!(st, 404, "{method} {url} as beta must be 404: {text}");
        } else if reads {
            assert!(
                st == 200 || st == 403,
                "{method} {url} as beta: {st} {text}"
            );
        } else {
            // A create in beta's own tenant, with an empty body: refused as a bad body.
            assert!(
                !(200..300).contains(&st) || path == "/v1/eips",
                "{method} {url} as beta: {st} {text}"
            );
        }
        // (An error may echo the id beta sent; an answer that serves something may not hold one.)
        if (200..300).contains(&st) {
            for id in alpha_ids {
                assert!(
                    !text.contains(id),
                    "{method} {url} as beta shows alpha's {id}: {text}"
                );
            }
        }
        *outcomes.entry("other tenant").or_default() += 1;
    }
    eprintln!("walked {} operations: {outcomes:?}", ops.len());

    // Nothing of alpha changed: the same container runs, every object is there as it was.
    let g2 = a.get_group(&g.id).await.expect("alpha's group");
    assert_eq!(g2.status.phase, GroupPhase::Running);
    assert_eq!(
        g2.status.containers[0].started_at, pid_before,
        "the container was restarted"
    );
    assert_eq!(g2.spec, g.spec);
    assert_eq!(a.get_disk(&disk.id).await.unwrap().size, disk.size);
    assert!(a.get_firewall(&fw.id).await.is_ok());
    assert_eq!(a.get_vpc(&vpc.id).await.unwrap().firewall, None);
    assert!(a.get_eip(&eip.id).await.unwrap().bound_to.is_none());
    assert!(a.get_image_cache(&cache.id).await.is_ok());
    assert!(
        s.client_with(Some(&viewer)).whoami().await.is_ok(),
        "the viewer key still works"
    );
    // Logs and exec of another tenant's group: 404 from the client too.
    let b = s.client_with(Some(&beta));
    let e = b
        .exec(&g.id, "c", &["true".into()], Default::default(), |_, _| {})
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = b.logs(&g.id, &Default::default()).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    // Beta's lists are its own; alpha's usage is not in beta's.
    assert!(b.list_groups().await.unwrap().is_empty());
    assert!(
        b.usage(None, None)
            .await
            .unwrap()
            .iter()
            .all(|u| u.tenant == "beta")
    );
    // An admin sees every tenant's with --all-tenants, and one tenant's with --tenant.
    let all = s.client.across_tenants(true).list_groups().await.unwrap();
    assert!(all.iter().any(|x| x.id == g.id && x.owner == "alpha"));
    let (ok, out, _) = s.cli(&["ls", "--all-tenants"]);
    assert!(
        ok && out.starts_with("TENANT") && out.contains("alpha"),
        "{out}"
    );
    let (ok, _, err) = s.cli_as(&alpha, &["ls", "--all-tenants"]);
    assert!(!ok && err.contains("only an admin key"), "{err}");
    assert_eq!(
        s.client
            .in_tenant(Some("alpha"))
            .get_group("web")
            .await
            .unwrap()
            .id,
        g.id
    );
    assert!(
        s.client.get_group("web").await.unwrap_err().is_not_found(),
        "an admin's default is its own tenant"
    );

    // The audit trail holds alpha's creates, and an exec with its command line.
    let code = a
        .exec(
            &g.id,
            "c",
            &["sh".into(), "-c".into(), "exit 7".into()],
            Default::default(),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(code, 7);
    let trail = s.client.in_tenant(Some("alpha")).audit(None).await.unwrap();
    let actions: Vec<String> = trail
        .iter()
        .map(|r| format!("{} {}", r.action, r.status))
        .collect();
    assert!(
        actions.iter().any(|x| x == "POST /v1/container-groups 201"),
        "{actions:?}"
    );
    assert!(
        trail.iter().any(|r| r.action.ends_with("/exec")
            && r.detail.as_deref() == Some("sh -c exit 7")
            && r.status == 101),
        "{actions:?}"
    );
    // Beta's refused attempts are recorded with their status, under the tenant they asked for.
    assert!(trail.iter().all(|r| r.tenant == "alpha"));
    let beta_trail = s.client.in_tenant(Some("beta")).audit(None).await.unwrap();
    assert!(beta_trail.iter().any(|r| r.status == 404), "{beta_trail:?}");
    // The viewer's refused writes are in alpha's trail, with their 403.
    assert!(
        trail
            .iter()
            .any(|r| r.status == 403 && r.action.starts_with("DELETE /v1/container-groups/")),
        "{actions:?}"
    );
    assert!(
        !serde_json::to_string(&trail)
            .unwrap()
            .contains(&alpha[17..]),
        "a key in the audit"
    );
    // The CLI's audit, as an admin and as a member.
    let (ok, out, err) = s.cli(&["audit", "--since", "1h"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("sh -c exit 7") && out.contains("beta"),
        "{out}"
    );
    let (ok, _, err) = s.cli_as(&alpha, &["audit"]);
    assert!(!ok && err.contains("admin"), "{err}");

    // /metrics: an admin or a metrics key; series carry the tenant.
    let metrics = key(&s, "default", Role::Metrics).await;
    let text = s
        .client_with(Some(&metrics))
        .prometheus()
        .await
        .expect("metrics key");
    assert!(text.contains("tenant=\"alpha\""), "{text}");
    let e = a.prometheus().await.unwrap_err();
    assert!(
        matches!(e, qci_client::ClientError::Api { status: 403, .. }),
        "{e}"
    );
    let e = s
        .client_with(Some(&metrics))
        .list_groups()
        .await
        .unwrap_err();
    assert!(
        matches!(e, qci_client::ClientError::Api { status: 403, .. }),
        "{e}"
    );

    // No key was ever logged.
    let log = s.log();
    for k in [&alpha, &viewer, &beta, &metrics, &s.admin_key().unwrap()] {
        assert!(
            !log.contains(&k[17..]),
            "a key's secret is in the server log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_refuse_what_goes_past_them_and_free_what_is_deleted() {
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let s = Server::start_with(Path::new(QCI), &["--eip-pool", "192.0.2.10-192.0.2.20"]).await;
    let k = tenant_key(
        &s,
        "small",
        "cores=0.5,groups=3,disk=32Mi,eips=1,vpcs=1,exec_sessions=1",
        Role::Member,
    )
    .await;
    let c = s.client_with(Some(&k));
    // Each group normalises to 0.25 cores (the smallest size): two fit in 0.5.
    let spec = |name: &str| {
        format!(
            "name: {name}\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600'], cpu: 0.25, memory: 256Mi}}]\n"
        )
    };
    let one = c.create_group(&spec("one")).await.expect("one");
    assert_eq!(one.resources.cpu, 0.25);
    c.create_group(&spec("two")).await.expect("two");
    let e = c.create_group(&spec("three")).await.unwrap_err();
    match &e {
        qci_client::ClientError::Api {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(
                (*status, code.as_str()),
                (403, "QuotaExceeded"),
                "{message}"
            );
            assert_eq!(
                message,
                "exceeded quota: cores, requested: 0.25, used: 0.5, limited: 0.5"
            );
        }
        e => panic!("{e}"),
    }
    assert!(
        c.get_group("three").await.unwrap_err().is_not_found(),
        "nothing of it is kept"
    );
    // The CLI says the same, and `tenant get` shows the use.
    let (ok, out, _) = s.cli_as(&k, &["tenant", "get"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["cores", "0.5", "0.5"]),
        "{out}"
    );
    // Deleting one frees its share.
    let (ok, _, err) = s.cli_as(&k, &["delete", "one", "--wait"]);
    assert!(ok, "{err}");
    let three = c
        .create_group(&spec("three"))
        .await
        .expect("three fits once one is gone");
    s.wait_group_as(&c, &three.id, "Running", |g| {
        g.status.phase == GroupPhase::Running
    })
    .await;

    // Disks, EIPs and VPCs are counted too.
    let disk = |name: &str, size: &str| qci_spec::DiskSpec {
        name: name.into(),
        size: qci_spec::Quantity(size.into()),
        disk_type: "standard".into(),
    };
    c.create_disk(&disk("d1", "16Mi")).await.expect("d1");
    let e = c.create_disk(&disk("d2", "32Mi")).await.unwrap_err();
    assert!(e.to_string().contains("exceeded quota: disk"), "{e}");
    assert_eq!(
        c.list_disks().await.unwrap().len(),
        1,
        "no disk was made past the quota"
    );
    let d1 = c.get_disk("d1").await.unwrap();
    let e = c.resize_disk(&d1.id, "48Mi").await.unwrap_err();
    assert!(e.to_string().contains("exceeded quota: disk"), "{e}");
    c.create_eip(&Default::default()).await.expect("one EIP");
    let e = c.create_eip(&Default::default()).await.unwrap_err();
    assert!(e.to_string().contains("exceeded quota: eips"), "{e}");
    let vpc = |name: &str| qci_spec::VpcSpec {
        name: name.into(),
        cidr: "10.100.0.0/24".into(),
        firewall: None,
    };
    c.create_vpc(&vpc("v1")).await.expect("v1");
    let e = c.create_vpc(&vpc("v2")).await.unwrap_err();
    assert!(e.to_string().contains("exceeded quota: vpcs"), "{e}");

    // One exec session at a time: a second is refused while the first is open.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let first = {
        let c = c.clone();
        let id = three.id.clone();
        tokio::spawn(async move {
            let io = qci_client::ExecIo {
                stdin: Some(rx),
                ..Default::default()
            };
            c.exec(&id, "c", &["cat".into()], io, |_, _| {}).await
        })
    };
    let t = std::time::Instant::now();
    loop {
        let tenant = s.client.get_tenant("small").await.unwrap();
        if tenant.used.exec_sessions == 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the session never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = c
        .exec(
            &three.id,
            "c",
            &["true".into()],
            Default::default(),
            |_, _| {},
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("exceeded quota: exec_sessions"),
        "{e}"
    );
    drop(tx);
    assert_eq!(first.await.unwrap().unwrap(), 0);
    assert_eq!(
        c.exec(
            &three.id,
            "c",
            &["true".into()],
            Default::default(),
            |_, _| {}
        )
        .await
        .unwrap(),
        0
    );

    // An admin raises a limit; a lowered one keeps what is there and refuses more.
    let (ok, _, err) = s.cli(&[
        "tenant",
        "update",
        "small",
        "--quota",
        "cores=unlimited,groups=1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(s.client.get_tenant("small").await.unwrap().used.groups, 2);
    let e = c.create_group(&spec("four")).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("exceeded quota: groups, requested: 1, used: 2, limited: 1"),
        "{e}"
    );
    // Bad quotas name the field; nothing changes.
    let (ok, _, err) = s.cli(&["tenant", "update", "small", "--quota", "cores=-1"]);
    assert!(
        !ok && err.contains("quota.cores: must be 0 or more"),
        "{err}"
    );
    let (ok, _, err) = s.cli(&["tenant", "update", "small", "--quota", "gpus=1"]);
    assert!(!ok && err.contains("unknown quota \"gpus\""), "{err}");
    // A tenant that owns things cannot be removed.
    let (ok, _, err) = s.cli(&["tenant", "rm", "small"]);
    assert!(!ok && err.contains("2 groups"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_browsers_files_and_transport() {
    let s = Server::start_with(Path::new(QCI), &["--allowed-host", "qci.lab"]).await;
    let admin = s.admin_key().expect("the local admin key");

    // The cross-site request of the issue: refused, nothing made.
    let raw = |host: &str, origin: Option<&str>, ct: &str| {
        let mut r = reqwest::Client::new()
            .post(format!("{}/v1/container-groups", s.url))
            .bearer_auth(&admin)
            .header("host", host)
            .header("content-type", ct)
            .body("name: x\ncontainers: [{name: a, image: bb}]\n");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r
    };
    let host = format!("127.0.0.1:{}", s.port);
    for (h, o, ct, want) in [
        (
            "evil.example:7070",
            Some("http://evil.example"),
            "text/plain",
            403,
        ),
        (
            host.as_str(),
            Some("http://evil.example"),
            "application/yaml",
            403,
        ),
        ("rebound.example", None, "application/yaml", 403),
        (host.as_str(), None, "text/plain", 415),
        (
            host.as_str(),
            None,
            "application/x-www-form-urlencoded",
            415,
        ),
    ] {
        let resp = raw(h, o, ct).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{h} {o:?} {ct}");
        assert!(resp.headers().get("access-control-allow-origin").is_none());
    }
    // The server's own origin is fine.
    let resp = raw(&host, Some(&format!("http://{host}")), "application/yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(s.client.list_groups().await.unwrap().len(), 1);
    // A name given with --allowed-host is served (case aside), with its own origin.
    let named = format!("QCI.lab:{}", s.port);
    let resp = raw(
        &named,
        Some(&format!("http://qci.lab:{}", s.port)),
        "application/yaml",
    )
    .body("name: y\ncontainers: [{name: a, image: bb}]\n")
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    // A WebSocket from another origin (exec) is refused before anything runs.
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v1/container-groups/x/containers/a/exec?command=%5B%22true%22%5D",
            s.url
        ))
        .bearer_auth(&admin)
        .header("origin", "http://evil.example")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Keys: the challenge, bad headers, revocation within a second, expiry.
    let resp = reqwest::get(format!("{}/v1/version", s.url)).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"qci\"");
    let hdr = |v: &str| {
        reqwest::Client::new()
            .get(format!("{}/v1/version", s.url))
            .header("authorization", v.to_string())
            .send()
    };
    let resp = hdr(&format!("Bearer {admin}, Basic eDp5")).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("one scheme"));
    let resp = hdr("Basic eDp5").await.unwrap();
    assert_eq!(resp.status(), 401);
    let k = key(&s, "default", Role::Member).await;
    let kc = s.client_with(Some(&k));
    assert!(kc.whoami().await.is_ok());
    let id = kc.whoami().await.unwrap().key_id;
    let (ok, _, err) = s.cli(&["key", "rm", &id]);
    assert!(ok, "{err}");
    let t = std::time::Instant::now();
    let e = kc.whoami().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(e.to_string().contains("was revoked"), "{e}");
    let (ok, out, err) = s.cli(&[
        "key",
        "create",
        "--tenant",
        "default",
        "--role",
        "viewer",
        "--expires",
        "1s",
    ]);
    assert!(ok, "{err}");
    let short = out.lines().last().unwrap().to_string();
    assert!(
        short.starts_with("qci_") && out.lines().count() == 1,
        "the key alone on stdout: {out}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = s.client_with(Some(&short)).whoami().await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // Bad input names the problem.
    for (args, want) in [
        (
            vec!["key", "create", "--tenant", "nope", "--role", "member"],
            "no tenant \"nope\"",
        ),
        (
            vec!["key", "create", "--tenant", "default", "--role", "root"],
            "unknown role",
        ),
        (
            vec![
                "key",
                "create",
                "--tenant",
                "default",
                "--role",
                "member",
                "--expires=-1d",
            ],
            "expires_in",
        ),
        (vec!["tenant", "create", "Not_A_Label"], "name:"),
    ] {
        let (ok, _, err) = s.cli(&args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }

    // Brute force: failed authentications from one address are limited (429 + Retry-After).
    let mut limited = None;
    for i in 0..40 {
        let resp = hdr(&format!("Bearer qci_000000000000_{:064x}", i))
            .await
            .unwrap();
        if resp.status() == 429 {
            limited = Some(resp.headers()["retry-after"].to_str().unwrap().to_string());
            break;
        }
        assert_eq!(resp.status(), 401);
    }
    let wait: u64 = limited.expect("never limited").parse().unwrap();
    assert!((1..=60).contains(&wait));

    // Files: the data dir, the database, the key, logs: root's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.data_dir), 0o700);
    for f in ["qci.db", "qci.db-wal", "admin.key", "secret.key"] {
        assert_eq!(mode(&s.data_dir.join(f)), 0o600, "{f}");
    }

    // A non-loopback address without TLS is refused, saying why.
    let out = std::process::Command::new(QCI)
        .args(["serve", "--data-dir"])
        .arg(s.data_dir.join("other"))
        .args(["--listen", "0.0.0.0:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("without TLS") && err.contains("--insecure-listen"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_the_cli_identity() {
    let certs = tempfile::tempdir().unwrap();
    qci_testkit::make_certs(certs.path());
    let cert = certs.path().join("reg.pem");
    let keyf = certs.path().join("reg.key");
    let ca = certs.path().join("ca.pem");
    let s = Server::start_with(
        Path::new(QCI),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            keyf.to_str().unwrap(),
        ],
    )
    .await;
    assert!(s.url.starts_with("https://"));
    assert!(
        s.client.whoami().await.is_ok(),
        "the testkit's client trusts the CA"
    );
    // Without the CA the CLI refuses the server; with it, it works.
    let (ok, _, err) = s.cli(&["whoami"]);
    assert!(!ok, "an unknown CA was trusted: {err}");
    let (ok, out, err) = s.cli(&["--ca", ca.to_str().unwrap(), "whoami"]);
    assert!(ok, "{err}");
    assert!(out.contains("tenant default, role admin"), "{out}");
    // Plain HTTP to the TLS port is not served.
    let plain = s.url.replacen("https", "http", 1);
    assert!(Client::new(&plain).version().await.is_err());
    // The console's session cookie is Secure over TLS (never sent in clear text).
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).expect("the CA"),
        )
        .build()
        .unwrap();
    let signed_in = http
        .post(format!("{}/v1/sessions", s.url))
        .header("origin", &s.url)
        .json(&serde_json::json!({ "key": s.admin_key().unwrap() }))
        .send()
        .await
        .expect("sign in over TLS");
    assert_eq!(signed_in.status(), 201);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Contexts: login saves server, key and CA; QCI_TOKEN and --token come first.
    let member = key(&s, "default", Role::Member).await;
    let viewer = key(&s, "default", Role::Viewer).await;
    let config = s.data_dir.join("config");
    let run = |args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]| {
        use std::io::Write;
        let mut c = std::process::Command::new(QCI);
        c.args(args)
            .env_remove("QCI_SERVER")
            .env_remove("QCI_TOKEN")
            .env("XDG_CONFIG_HOME", &config)
            .env("QCI_DATA_DIR", s.data_dir.join("nowhere"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        if let Some(i) = stdin {
            child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(
        &[
            "login",
            "--server",
            &s.url,
            "--ca",
            ca.to_str().unwrap(),
            "--token-stdin",
            "--context",
            "lab",
        ],
        Some(&member),
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("role member") && out.contains("\"lab\""),
        "{out}"
    );
    let file = config.join("qci").join("config.yaml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, out, _) = run(&["whoami"], None, &[]);
    assert!(
        ok && out.contains("role member"),
        "the context's key: {out}"
    );
    let (ok, out, _) = run(&["whoami"], None, &[("QCI_TOKEN", viewer.as_str())]);
    assert!(
        ok && out.contains("role viewer"),
        "QCI_TOKEN before the context: {out}"
    );
    let admin = s.admin_key().unwrap();
    let (ok, out, _) = run(
        &["--token", &admin, "whoami"],
        None,
        &[("QCI_TOKEN", viewer.as_str())],
    );
    assert!(ok && out.contains("role admin"), "--token first: {out}");
    let (ok, out, _) = run(&["context", "ls"], None, &[]);
    assert!(ok && out.contains("*") && out.contains("lab"), "{out}");
    let (ok, _, err) = run(&["context", "use", "nope"], None, &[]);
    assert!(!ok && err.contains("no context"), "{err}");
    // A bad key is refused at login and nothing is saved. (Compare the whole
    // file: a key or a CA is hex and base64, and may well contain "bad".)
    let before = std::fs::read(&file).unwrap();
    let (ok, _, err) = run(
        &[
            "login",
            "--server",
            &s.url,
            "--ca",
            ca.to_str().unwrap(),
            "--token-stdin",
            "--context",
            "bad",
        ],
        Some("qci_000000000000_0000"),
        &[],
    );
    assert!(!ok && err.contains("not valid"), "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a refused login changed the config file"
    );
    let (_, out, _) = run(&["context", "ls"], None, &[]);
    assert!(
        !out.split_whitespace().any(|w| w == "bad"),
        "a refused login left a context: {out}"
    );
}
