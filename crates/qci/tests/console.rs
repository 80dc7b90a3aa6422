//! End-to-end: the web console in a real browser — Debian's `chromium`, driven through
//! `chromedriver` (WebDriver, the fantoccini crate) — against a real `qci serve` running real
//! containers. A person's path through it: sign in, create a two-container group with the
//! wizard, watch it become Running without reloading, read its logs, type in its terminal, see
//! its memory chart, update one env var (only that container is recreated), delete it; a
//! viewer sees no buttons it cannot use; the page works at 360 px. Screenshots of each step go
//! to `target/console-screenshots/<test>/`. Sessions themselves (cookie attributes, sign-out,
//! revocation, writes without an Origin) are checked over plain HTTP.

use std::path::Path;

use qci_spec::{ContainerState, GroupPhase, Role};
use qci_testkit::{Browser, LIST_PAGE, Registry, Server, get_gzip, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");

fn pid_of(g: &qci_spec::ContainerGroup, name: &str) -> Option<u32> {
    g.status
        .containers
        .iter()
        .find(|c| c.name == name && c.state == ContainerState::Running)
        .and_then(|c| c.pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_a_group_from_the_console() {
    let registry = Registry::start();
    let image = push_busybox(&registry.host(), "console/busybox", "latest").await;
    // (Only runc allowed: the wizard shows the server's refusal of gvisor at its field.)
    let s = Server::start_with(
        Path::new(QCI),
        &["--metrics-interval", "1", "--allowed-runtime", "runc"],
    )
    .await;
    let member = s.key("default", Role::Member).await;
    let viewer = s.key("default", Role::Viewer).await;
    let mut b = Browser::start("person", 1280, 900).await;

    // Signing in: the key goes in once and is not kept in the page.
    b.c.goto(&s.url).await.expect("open");
    b.until("the sign-in page", "return location.pathname === '/login'")
        .await;
    b.shot("sign-in").await;
    b.sign_in(&s.url, &member, "default · member").await;
    let page = b.js("return document.documentElement.outerHTML").await;
    assert!(
        !page.to_string().contains(&member),
        "the key stays in the page"
    );
    let cookie_visible = b.js("return document.cookie").await;
    assert_eq!(
        cookie_visible, "",
        "the session cookie is readable by scripts"
    );
    b.until(
        "the empty list",
        "return !!document.querySelector('table[aria-label=\"Container groups\"]')",
    )
    .await;
    b.shot("empty-list").await;

    // The wizard, step 1: two containers, a port and an env var.
    b.press("Create group").await;
    b.until(
        "the wizard",
        "return !!document.querySelector('[name=c0-image]')",
    )
    .await;
    b.type_in("[name=c0-name]", "web").await;
    b.type_in("[name=c0-image]", &image).await;
    b.type_in(
        "[name=c0-command]",
        "sh\n-c\necho started-$GREETING; cat /etc/app/app.conf; echo; exec httpd -f -p 8080 -h /",
    )
    .await;
    b.type_in("[name=c0-env]", "GREETING=one").await;
    b.type_in("[name=c0-ports]", "8080").await;
    // Ready only once its web server answers.
    b.css("[data-field='containers[0].readiness_probe']")
        .await
        .select_by_value("http")
        .await
        .expect("choosing an HTTP readiness probe");
    b.type_in(
        "[data-field='containers[0].readiness_probe.http_get.port']",
        "8080",
    )
    .await;
    b.press("Add container").await;
    b.type_in("[name=c1-name]", "side").await;
    b.type_in("[name=c1-image]", &image).await;
    b.type_in("[name=c1-command]", "sh\n-c\necho side-up; exec sleep 3600")
        .await;
    b.shot("wizard-containers").await;
    // Every control has a name a screen reader can say.
    let unlabeled = "return [...document.querySelectorAll('input, select, textarea')].filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML)";
    assert_eq!(
        b.js(unlabeled).await,
        serde_json::json!([]),
        "controls without a label"
    );
    // A wrong field is named by the server and shown at the field.
    b.type_in("[name=c1-ports]", "99999").await;
    b.press("Next").await;
    b.until(
        "the port's error at its field",
        "return [...document.querySelectorAll('.field-error')].some(e => e.textContent.startsWith('containers[1].ports'))",
    )
    .await;
    b.shot("wizard-field-error").await;
    b.type_in("[name=c1-ports]", "").await;
    b.press("Next").await;

    // Step 2: a config file, mounted into web.
    b.until("the storage step", "return !!document.querySelector('[aria-current=step]') && document.querySelector('[aria-current=step]').textContent.includes('Storage')")
        .await;
    b.press("Add volume").await;
    b.type_in("[name=v0-f0-content]", "answer=42").await;
    b.press("Add mount to web").await;
    b.type_in("[name=web-m0-path]", "/etc/app").await;
    b.shot("wizard-storage").await;
    b.press("Next").await;
    // Step 3: the basic network; step 4: the name.
    b.until(
        "the network step",
        "return !!document.querySelector('[name=net-mode]')",
    )
    .await;
    b.press("Next").await;
    b.until(
        "the basics step",
        "return !!document.querySelector('[name=group-name]')",
    )
    .await;
    b.type_in("[name=group-name]", "console-demo").await;
    // A runtime this server does not offer is refused at its field, with the reason.
    let runtime = b.css("[data-field=runtime]").await;
    runtime
        .select_by_value("gvisor")
        .await
        .expect("choosing gvisor");
    b.press("Next").await;
    b.until(
        "the runtime's error at its field",
        "return [...document.querySelectorAll('.field-error')].some(e => e.textContent.startsWith('runtime: gvisor is not allowed'))",
    )
    .await;
    b.css("[data-field=runtime]")
        .await
        .select_by_value("")
        .await
        .expect("back to the default");
    b.press("Next").await;
    // Review: the YAML, the command, the size and price.
    b.until(
        "the review's size",
        "return (document.querySelector('#review-size')?.textContent || '').includes('vCPU')",
    )
    .await;
    let yaml = b
        .js("return document.querySelector('#spec-yaml').value")
        .await;
    let yaml = yaml.as_str().unwrap_or_default().to_string();
    for want in [
        "name: console-demo",
        "name: web",
        "name: side",
        "port: 8080",
        "GREETING",
        "answer=42",
        "mount_path: /etc/app",
    ] {
        assert!(
            yaml.contains(want),
            "{want} missing from the review's YAML:\n{yaml}"
        );
    }
    let cmd = b
        .js("return document.querySelector('#create-command').textContent")
        .await;
    assert!(
        cmd.as_str().unwrap_or_default().starts_with("qci create"),
        "{cmd}"
    );
    b.shot("wizard-review").await;
    b.press("Create").await;

    // The list shows it Running, with no page load in between.
    b.until("the list", "return location.pathname === '/groups'")
        .await;
    b.js("window.__sameDocument = true; window.__shift = 0; new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) window.__shift += e.value; }).observe({type: 'layout-shift'}); return true").await;
    b.until(
        "console-demo Running in the list",
        "const r = document.querySelector('tr[data-name=\"console-demo\"]'); return !!r && r.dataset.phase === 'Running' && r.textContent.includes('2/2')",
    )
    .await;
    assert_eq!(
        b.js("return window.__sameDocument === true").await,
        true,
        "the list reloaded"
    );
    // Live updates changed the row in place: no layout shift to speak of (Chrome's "good" is
    // under 0.1).
    let shift = b.js("return window.__shift").await.as_f64().unwrap_or(1.0);
    assert!(shift < 0.1, "the list shifted by {shift} while it updated");
    let unlabeled = "return [...document.querySelectorAll('input, select, textarea')].filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML)";
    assert_eq!(
        b.js(unlabeled).await,
        serde_json::json!([]),
        "controls without a label"
    );
    b.shot("list-running").await;
    // The dark theme, picked by hand (kept in the browser).
    b.js("const t = document.querySelector('select[aria-label=Theme]'); t.value = 'dark'; t.dispatchEvent(new Event('change')); return true")
        .await;
    b.until("the dark theme", "return getComputedStyle(document.body).backgroundColor !== getComputedStyle(document.documentElement).color && document.documentElement.dataset.theme === 'dark'")
        .await;
    b.shot("list-dark").await;
    b.js("const t = document.querySelector('select[aria-label=Theme]'); t.value = 'auto'; t.dispatchEvent(new Event('change')); return true")
        .await;
    let g = s.client.get_group("console-demo").await.expect("the group");
    assert_eq!(g.spec.containers[0].ports[0].port, 8080);
    let probe = g.spec.containers[0]
        .readiness_probe
        .as_ref()
        .expect("the readiness probe");
    assert_eq!(probe.http_get.as_ref().map(|h| h.port), Some(8080));
    assert_eq!(g.spec.containers[0].env[0].value, "one");
    assert_eq!(g.spec.volumes.len(), 1);

    // Logs: a line the container printed (the env var, the config file).
    b.click("tr[data-name=\"console-demo\"] a").await;
    b.until(
        "the overview",
        "return location.pathname === '/groups/console-demo'",
    )
    .await;
    b.until(
        "both containers running in the overview",
        "return document.querySelectorAll('tr[data-container] .phase.running').length === 2",
    )
    .await;
    b.shot("overview").await;
    b.click("#tab-logs").await;
    b.until(
        "the log lines",
        "const t = document.querySelector('pre.logs')?.textContent || ''; return t.includes('started-one') && t.includes('answer=42')",
    )
    .await;
    b.shot("logs").await;

    // The terminal: a command typed, its output seen.
    b.click("#tab-terminal").await;
    b.until(
        "the terminal connected",
        "return (document.querySelector('[aria-live=polite]')?.textContent || '').startsWith('connected') || [...document.querySelectorAll('span')].some(s => s.textContent === 'connected to web')",
    )
    .await;
    b.until(
        "a prompt",
        "return (document.querySelector('.xterm-rows')?.textContent || '').includes('#')",
    )
    .await;
    let input = b.css(".xterm-helper-textarea").await;
    input
        .send_keys("echo hi-from-console\n")
        .await
        .expect("typing in the terminal");
    b.until(
        "the command's output",
        "return [...document.querySelectorAll('.xterm-rows > div')].some(r => r.textContent.trim() === 'hi-from-console')",
    )
    .await;
    b.shot("terminal").await;

    // Monitoring: the memory chart has readings.
    b.click("#tab-monitoring").await;
    b.until(
        "a memory reading",
        "const c = document.querySelector('#chart-memory'); return !!c && Number(c.dataset.points) >= 1 && !!c.querySelector('canvas')",
    )
    .await;
    b.shot("monitoring").await;

    // Update one env var: the review says only web is recreated, and so it is.
    let before = s.client.get_group("console-demo").await.expect("group");
    let (web_pid, side_pid) = (pid_of(&before, "web"), pid_of(&before, "side"));
    assert!(web_pid.is_some() && side_pid.is_some(), "{before:?}");
    b.click("#tab-yaml").await;
    b.until(
        "the spec",
        "return (document.querySelector('textarea')?.value || '').includes('GREETING')",
    )
    .await;
    b.js("const t = document.querySelector('textarea'); t.value = t.value.replace('value: one', 'value: two'); t.dispatchEvent(new Event('input')); return true")
        .await;
    b.press("Review update").await;
    b.until(
        "the update's plan",
        "const p = document.querySelector('#update-plan')?.textContent || ''; return p.includes('Recreated: web') && p.includes('Kept running: side')",
    )
    .await;
    b.js("document.querySelector('#update-plan').scrollIntoView(); return true")
        .await;
    b.shot("update-review").await;
    b.press("Apply update").await;
    let after = s
        .wait_group("console-demo", "web recreated", |g| {
            g.status.phase == GroupPhase::Running
                && pid_of(g, "web").is_some_and(|p| Some(p) != web_pid)
        })
        .await;
    assert_eq!(pid_of(&after, "side"), side_pid, "side was recreated too");
    assert_eq!(after.spec.containers[0].env[0].value, "two");
    assert!(s.logs(&after.id, "web").await.contains("started-two"));

    // The CLI can do what the console did: a dry run of an update (nothing changes) and of
    // a create (nothing made).
    let spec = serde_json::to_string(&after.spec)
        .unwrap()
        .replace("\"value\":\"two\"", "\"value\":\"three\"");
    let (ok, out, err) = s.create("dry-update", "{}", &[]);
    assert!(!ok, "an empty spec was accepted: {out}{err}");
    let file = std::env::temp_dir().join(format!("console-dry-{}.json", std::process::id()));
    std::fs::write(&file, &spec).unwrap();
    let (ok, out, err) = s.cli(&[
        "update",
        "console-demo",
        "-f",
        file.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("recreated: web") && out.contains("kept running: side"),
        "{out}"
    );
    let (ok, out, err) = s.create(
        "dry-create",
        &spec.replace("console-demo", "console-dry"),
        &["--dry-run"],
    );
    assert!(ok && out.contains("console-dry is valid"), "{out}{err}");
    std::fs::remove_file(&file).ok();
    let now = s.client.get_group("console-demo").await.expect("group");
    assert_eq!(
        now.spec.containers[0].env[0].value, "two",
        "a dry run changed the group"
    );
    assert!(
        s.client.get_group("console-dry").await.is_err(),
        "a dry run made a group"
    );

    // A terminal open on a key that is then revoked is closed, and its command killed.
    let doomed = s.key("default", Role::Member).await;
    let client = s.client_with(Some(&doomed));
    let gid = after.id.clone();
    let exec = tokio::spawn(async move {
        client
            .exec(
                &gid,
                "side",
                &["sleep".into(), "300".into()],
                Default::default(),
                |_, _| {},
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    s.client
        .revoke_key(&format!("k-{}", &doomed[4..16]))
        .await
        .expect("revoke");
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), exec)
        .await
        .expect("the exec outlived its revoked key")
        .expect("join");
    let e = r.expect_err("the exec ended without an error");
    assert!(e.to_string().contains("revoked"), "{e}");
    let running_sleep = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|d| {
            std::fs::read(d.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00300\x00")
        })
    };
    let start = std::time::Instant::now();
    while running_sleep() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the revoked key's command runs on"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A viewer sees the group but no button that changes anything.
    b.press("Sign out").await;
    b.until("the sign-in page", "return location.pathname === '/login'")
        .await;
    b.sign_in(&s.url, &viewer, "default · viewer").await;
    b.until(
        "the list for the viewer",
        "return !!document.querySelector('tr[data-name=\"console-demo\"]')",
    )
    .await;
    let writes = b
        .js("return [...document.querySelectorAll('button, a.button')].map(e => e.textContent).filter(t => /Create|Delete|Restart|Update|Apply/.test(t))")
        .await;
    assert_eq!(
        writes,
        serde_json::json!([]),
        "a viewer is offered {writes}"
    );
    b.click("tr[data-name=\"console-demo\"] a").await;
    b.until(
        "the viewer's overview",
        "return !!document.querySelector('#tab-logs')",
    )
    .await;
    let tabs = b
        .js("return [...document.querySelectorAll('[role=tab]')].map(t => t.textContent)")
        .await;
    assert!(
        !tabs.to_string().contains("Terminal"),
        "a viewer gets a terminal: {tabs}"
    );
    b.press("Sign out").await;

    // At 360 px wide: nothing sticks out of the page but the table's own scroller.
    b.c.set_window_size(360, 760).await.expect("narrow window");
    b.sign_in(&s.url, &member, "default · member").await;
    b.until(
        "the narrow list",
        "return !!document.querySelector('tr[data-name=\"console-demo\"]')",
    )
    .await;
    let overflow = b
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap_or(999) <= 0,
        "the page is wider than 360 px by {overflow}"
    );
    b.shot("narrow-list").await;
    b.c.set_window_size(1280, 900).await.expect("wide window");

    // Delete from the list, with confirmation; the row goes without a reload.
    b.js("window.__sameDocument = true; return true").await;
    b.click("tr[data-name=\"console-demo\"] input[type=checkbox]")
        .await;
    b.press("Delete selected").await;
    b.until(
        "the confirmation",
        "return !!document.querySelector('dialog[open]')",
    )
    .await;
    b.shot("delete-confirm").await;
    b.click("dialog[open] button.danger").await;
    b.until(
        "the row gone",
        "return !document.querySelector('tr[data-name=\"console-demo\"]')",
    )
    .await;
    assert_eq!(b.js("return window.__sameDocument === true").await, true);
    b.shot("deleted").await;
    assert!(s.client.get_group("console-demo").await.is_err());
    b.close().await;
    drop(registry);
}

/// The list page's weight, compressed: the page, its style and the modules it loads.
#[tokio::test]
async fn the_list_page_is_light() {
    let s = Server::start(Path::new(QCI)).await;
    let http = reqwest::Client::new();
    let mut total = 0;
    for path in LIST_PAGE {
        let resp = get_gzip(&s.url, path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            Some("gzip"),
            "{path} is not compressed"
        );
        assert!(resp.headers().contains_key("etag"), "{path}");
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        total += resp.bytes().await.expect("body").len();
    }
    assert!(
        total < 150 << 10,
        "the list page weighs {total} bytes compressed"
    );
    // Every console address is the page; unknown API routes stay the API's 404.
    let page = http
        .get(format!("{}/groups/x/logs", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().starts_with("<!doctype html>"));
    let api = http
        .get(format!("{}/v1/nothing-here", s.url))
        .bearer_auth(s.admin_key().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    let missing = http
        .get(format!("{}/console/nope.js", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// Sessions over plain HTTP: what the cookie says, what it may do, and when it stops.
#[tokio::test]
async fn console_sessions() {
    let s = Server::start(Path::new(QCI)).await;
    let member = s.key("default", Role::Member).await;
    let http = reqwest::Client::new();
    let origin = s.url.clone();
    let sign_in = |k: &str| {
        http.post(format!("{}/v1/sessions", s.url))
            .header("origin", &origin)
            .json(&serde_json::json!({ "key": k }))
            .send()
    };
    // A wrong key: 401, no cookie.
    let bad = sign_in(
        "qci_000000000000_0000000000000000000000000000000000000000000000000000000000000000",
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let ok = sign_in(&member).await.unwrap();
    assert_eq!(ok.status(), 201);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    for want in ["qci_session=qcs_", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(want), "{want} missing from {cookie}");
    }
    assert!(!cookie.contains("Secure"), "Secure on plain HTTP: {cookie}");
    assert!(!cookie.contains(&member));
    let info: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(
        (info["tenant"].as_str(), info["role"].as_str()),
        (Some("default"), Some("member"))
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let with = |m: reqwest::Method, path: &str| {
        http.request(m, format!("{}{path}", s.url))
            .header("cookie", &session)
    };
    // Reads work; a write works from the console's origin, not without an Origin, not from another.
    assert_eq!(
        with(reqwest::Method::GET, "/v1/whoami")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let spec =
        r#"{"name": "s1", "containers": [{"name": "c", "image": "127.0.0.1:1/none:latest"}]}"#;
    let post = |origin: Option<&str>| {
        let mut r = with(reqwest::Method::POST, "/v1/container-groups?dry_run=true")
            .header("content-type", "application/json")
            .body(spec);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(post(Some(&origin)).await.unwrap().status(), 200);
    assert_eq!(post(None).await.unwrap().status(), 403);
    assert_eq!(
        post(Some("http://evil.example")).await.unwrap().status(),
        403
    );
    // A dry run stored nothing.
    assert!(s.client.list_groups().await.unwrap().is_empty());
    // A live list is open on the session; signing out ends it (and clears the cookie), and
    // the open list with it.
    let mut watch = with(reqwest::Method::GET, "/v1/container-groups?watch=true")
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let first = watch.chunk().await.unwrap().unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&first).contains("event: snapshot"),
        "{first:?}"
    );
    let out = with(reqwest::Method::DELETE, "/v1/sessions/current")
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = with(reqwest::Method::GET, "/v1/whoami")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while let Ok(Some(_)) = watch.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the live list outlived its session");
    // Revoking the key ends its sessions at once.
    let again = sign_in(&member).await.unwrap();
    let session = again.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let id = format!("k-{}", &member[4..16]);
    s.client.revoke_key(&id).await.expect("revoke");
    let r = http
        .get(format!("{}/v1/whoami", s.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("revoked"));
}

/// The other pages, as an admin: each creates, shows and removes through the API, and an error
/// the API gives is shown where it belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_pages_work() {
    let registry = Registry::start();
    let image = push_busybox(&registry.host(), "pages/busybox", "1").await;
    let s = Server::start(Path::new(QCI)).await;
    let admin = s.admin_key().expect("the admin key");
    let mut b = Browser::start("other-pages", 1280, 900).await;
    b.sign_in(&s.url, &admin, "default · admin").await;
    let row = |name: &str| {
        format!(
            "return [...document.querySelectorAll('tbody tr')].some(r => r.textContent.includes({name:?}))"
        )
    };

    // Disks: a bad size is named at its field; a good one is made, resized, deleted.
    b.click("nav a[href='/disks']").await;
    b.until(
        "the disks page",
        "return !!document.querySelector('[data-field=size]')",
    )
    .await;
    b.type_in("[data-field=name]", "data1").await;
    b.type_in("[data-field=size]", "lots").await;
    b.press("Create").await;
    b.until(
        "the size's error at its field",
        "return [...document.querySelectorAll('.field-error')].some(e => e.textContent.startsWith('size'))",
    )
    .await;
    b.type_in("[data-field=size]", "64Mi").await;
    b.press("Create").await;
    b.until("the disk listed", &row("data1")).await;
    b.press("Resize").await;
    b.type_in("form[aria-label^='Resize'] [name=size]", "128Mi")
        .await;
    b.press("Apply").await;
    b.until("the disk grown", &row("128 MiB")).await;
    b.shot("disks").await;
    let d = s.client.get_disk("data1").await.expect("disk");
    assert_eq!(d.size, 128 << 20);
    b.click("button[aria-label='Delete data1']").await;
    b.click("dialog[open] button.danger").await;
    b.until(
        "the disk gone",
        "return !document.querySelector('tbody').textContent.includes('data1')",
    )
    .await;
    assert!(s.client.get_disk("data1").await.is_err());

    // Firewalls: made, then a rule added in the editor.
    b.click("nav a[href='/firewalls']").await;
    b.until(
        "the firewalls page",
        "return document.querySelector('h1')?.textContent === 'Firewalls'",
    )
    .await;
    b.type_in("[data-field=name]", "web-in").await;
    b.press("Create").await;
    b.until("the firewall listed", &row("web-in")).await;
    b.press("Edit rules").await;
    b.press("Add rule").await;
    b.type_in("[data-field='rules[0].ports']", "8080").await;
    b.type_in("[data-field='rules[0].cidr']", "10.0.0.0/8")
        .await;
    b.press("Save rules").await;
    b.until("one rule", "return [...document.querySelectorAll('tbody tr')].some(r => r.textContent.includes('web-in') && r.children[1].textContent === '1')")
        .await;
    b.shot("firewalls").await;
    let fw = s.client.get_firewall("web-in").await.expect("firewall");
    assert_eq!(fw.rules.len(), 1);
    assert_eq!(fw.rules[0].ports.as_deref(), Some("8080"));
    assert_eq!(fw.rules[0].cidr, "10.0.0.0/8");

    // VPCs: made with the firewall.
    b.click("nav a[href='/vpcs']").await;
    b.until(
        "the VPCs page",
        "return document.querySelector('h1')?.textContent === 'VPCs'",
    )
    .await;
    b.type_in("[data-field=name]", "blue").await;
    b.type_in("[data-field=cidr]", "10.77.0.0/24").await;
    b.type_in("[data-field=firewall]", "web-in").await;
    b.press("Create").await;
    b.until(
        "the VPC listed with its firewall by name",
        "return [...document.querySelectorAll('tbody tr')].some(r => r.textContent.includes('10.77.0.0/24') && r.textContent.includes('web-in'))",
    )
    .await;
    let vpc = s.client.get_vpc("blue").await.expect("vpc");
    assert_eq!(vpc.firewall, Some(fw.id.clone()));

    // EIPs: this server has no pool, and the API's reason reaches the person.
    b.click("nav a[href='/eips']").await;
    b.until(
        "the EIPs page",
        "return document.querySelector('h1')?.textContent === 'EIPs'",
    )
    .await;
    b.press("Create").await;
    b.until(
        "the reason there is no EIP",
        "return (document.querySelector('form .error')?.textContent || '').length > 10",
    )
    .await;
    let said = b
        .js("return document.querySelector('form .error').textContent")
        .await;
    let api_said = s
        .client
        .create_eip(&Default::default())
        .await
        .expect_err("no pool")
        .to_string();
    assert!(
        api_said.contains(said.as_str().unwrap_or("?"))
            || said.as_str().unwrap_or("").contains("pool"),
        "the page said {said}, the API {api_said}"
    );

    // Image caches: made from the registry, Ready; the image is then in the store (admin).
    b.click("nav a[href='/image-caches']").await;
    b.until(
        "the caches page",
        "return !!document.querySelector('[data-field=images]')",
    )
    .await;
    b.type_in("[data-field=name]", "warm").await;
    b.type_in("[data-field=images]", &image).await;
    b.press("Create").await;
    b.until("the cache Ready", "return [...document.querySelectorAll('tbody tr')].some(r => r.textContent.includes('warm') && r.textContent.includes('Ready'))")
        .await;
    b.shot("image-caches").await;
    b.click("nav a[href='/images']").await;
    b.until("the image in the store", &row("pages/busybox"))
        .await;

    // Tenants and keys: a tenant with a quota; a key for it, shown once; revoked.
    b.click("nav a[href='/tenants']").await;
    b.until(
        "the tenants page",
        "return document.querySelector('h1')?.textContent === 'Tenants'",
    )
    .await;
    b.type_in("[data-field=name]", "team-b").await;
    b.type_in("[data-field=groups]", "2").await;
    b.press("Create").await;
    b.until("the tenant with its quota", "return [...document.querySelectorAll('tbody tr')].some(r => r.textContent.includes('team-b') && r.textContent.includes('0 / 2'))")
        .await;
    b.click("nav a[href='/keys']").await;
    b.until(
        "the keys page",
        "return document.querySelector('h1')?.textContent === 'API keys'",
    )
    .await;
    b.type_in("[data-field=tenant]", "team-b").await;
    b.type_in("[data-field=name]", "bob").await;
    b.press("Create").await;
    b.until(
        "the new key shown",
        "return (document.querySelector('#new-key')?.textContent || '').startsWith('qci_')",
    )
    .await;
    let secret = b
        .js("return document.querySelector('#new-key').textContent")
        .await;
    let bob = s.client_with(secret.as_str());
    let who = bob.whoami().await.expect("the key works");
    assert_eq!((who.tenant.as_str(), who.role), ("team-b", Role::Member));
    b.shot("keys").await;
    b.click("button[aria-label='Revoke bob']").await;
    b.click("dialog[open] button.danger").await;
    b.until("bob revoked", "return [...document.querySelectorAll('tbody tr')].some(r => r.textContent.includes('bob') && r.textContent.includes('revoked'))")
        .await;
    assert!(bob.whoami().await.is_err());

    // Usage: the page answers (no group ran, so no rows, and no error).
    b.click("nav a[href='/usage']").await;
    b.until("the usage page", "return (document.querySelector('main p:not(.muted)')?.textContent || '').includes('groups; total cost')")
        .await;
    b.close().await;
    drop(registry);
}
