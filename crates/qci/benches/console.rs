//! Benchmark: the console's group list in a real browser (Debian's headless chromium through
//! chromedriver), against `qci serve` holding 50 groups. Per load of `/groups`, from the start
//! of navigation: first contentful paint, and the moment every group is in the table (the
//! `qci:list-rendered` mark the list sets on its first complete listing); and the page's
//! weight as a first visit transfers it (gzip bodies of the page and the files it loads).
//!
//! Run as root: `cargo bench -p qci --bench console` (QCI_BENCH_RUNS, default 20).

use std::path::Path;
use std::time::Duration;

use qci_spec::Role;
use qci_testkit::{Browser, LIST_PAGE, Server, get_gzip};

const QCI: &str = env!("CARGO_BIN_EXE_qci");
const GROUPS: usize = 50;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = qci_testkit::bench::runs(20);
    let s = Server::start(Path::new(QCI)).await;
    for i in 0..GROUPS {
        // An image no registry serves: the groups stay Pending, which is all the list needs.
        let spec = format!(
            "name: g{i:02}\ncontainers: [{{name: c, image: '127.0.0.1:9/none:1', image_pull_policy: Never}}]\n"
        );
        s.client.create_group(&spec).await.expect("create");
    }
    let key = s.key("default", Role::Member).await;
    let mut b = Browser::start("bench", 1280, 900).await;
    b.sign_in(&s.url, &key, "default · member").await;
    let mut weight = 0;
    for path in LIST_PAGE {
        let resp = get_gzip(&s.url, path).await;
        weight += resp.bytes().await.expect("body").len();
    }
    println!("list page weight: {weight} bytes (gzip)");
    let (mut fcp, mut rendered) = (Vec::new(), Vec::new());
    for _ in 0..runs + 1 {
        b.c.goto(&format!("{}/groups", s.url)).await.expect("goto");
        b.until(
            "the list rendered",
            &format!("return performance.getEntriesByName('qci:list-rendered').length === 1 && document.querySelectorAll('tbody tr').length === {GROUPS}"),
        )
        .await;
        let m = b
            .js("const p = performance.getEntriesByName('first-contentful-paint')[0]; const r = performance.getEntriesByName('qci:list-rendered')[0]; return [p ? p.startTime : -1, r.startTime]")
            .await;
        let v: Vec<f64> = m
            .as_array()
            .expect("numbers")
            .iter()
            .map(|x| x.as_f64().unwrap_or(-1.0))
            .collect();
        fcp.push(Duration::from_secs_f64(v[0].max(0.0) / 1000.0));
        rendered.push(Duration::from_secs_f64(v[1] / 1000.0));
    }
    // The first load fills the browser's cache; the rest revalidate (304s), as a person's do.
    fcp.remove(0);
    rendered.remove(0);
    qci_testkit::bench::stats("first contentful paint", fcp);
    qci_testkit::bench::stats(&format!("list of {GROUPS} groups rendered"), rendered);
    if std::env::var_os("QCI_BENCH_TRACE").is_some() {
        let t = b.js("return performance.getEntriesByType('resource').map(e => `${e.name.replace(location.origin, '')} start ${e.startTime.toFixed(1)} firstbyte ${e.responseStart.toFixed(1)} end ${e.responseEnd.toFixed(1)}`).join('\\n') + '\\nnav domInteractive ' + performance.getEntriesByType('navigation')[0].domInteractive.toFixed(1) + '\\n' + performance.getEntriesByType('mark').map(m => `${m.name} ${m.startTime.toFixed(1)}`).join('\\n')").await;
        println!("{}", t.as_str().unwrap_or_default());
    }
    b.close().await;
}
