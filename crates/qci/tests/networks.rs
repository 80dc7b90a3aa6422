//! End-to-end: VPCs, the basic network, EIPs, published ports and firewalls.
//!
//! qci runs with a network namespace made here as "the host's network" (--network-host-ns),
//! joined by a veth to a second namespace that plays the internet (192.0.2.0/24, TEST-NET-1).
//! Bridges, NAT rules and addresses never touch the machine's own network, and traffic only
//! goes to addresses inside these namespaces.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qci_testkit::{Registry, Server, netns_add, netns_del, push_busybox};

const QCI: &str = env!("CARGO_BIN_EXE_qci");
const OUTSIDE: &str = "192.0.2.2";

/// The two namespaces and the servers run in them; all removed on drop.
struct Topology {
    host: String,
    internet: String,
    children: Vec<Child>,
    _www: tempfile::TempDir,
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect(args[0]);
    assert!(st.success(), "{} failed", args.join(" "));
}

impl Topology {
    fn new() -> Topology {
        qci_testkit::require(&[
            ("ip", "iproute2"),
            ("socat", "socat"),
            ("busybox", "busybox-static"),
        ]);
        // Tests of this file run at once in one process: each gets its own pair.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tag = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (host, internet) = (format!("qnh-{tag}"), format!("qni-{tag}"));
        netns_add(&host);
        netns_add(&internet);
        sh(&[
            "ip", "link", "add", "vh", "netns", &host, "type", "veth", "peer", "name", "vi",
            "netns", &internet,
        ]);
        sh(&[
            "ip",
            "-n",
            &host,
            "addr",
            "add",
            "192.0.2.1/24",
            "dev",
            "vh",
        ]);
        // A second block the host routes, which no VPC may take.
        sh(&[
            "ip",
            "-n",
            &host,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            "vh",
        ]);
        sh(&["ip", "-n", &host, "link", "set", "vh", "up"]);
        sh(&[
            "ip",
            "-n",
            &internet,
            "addr",
            "add",
            "192.0.2.2/24",
            "dev",
            "vi",
        ]);
        sh(&["ip", "-n", &internet, "link", "set", "vi", "up"]);
        // A web server on "the internet".
        let www = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join("index.html"), "from the internet\n").unwrap();
        let httpd = Command::new("ip")
            .args([
                "netns", "exec", &internet, "busybox", "httpd", "-f", "-p", "9090", "-h",
            ])
            .arg(www.path())
            .spawn()
            .expect("httpd");
        Topology {
            host,
            internet,
            children: vec![httpd],
            _www: www,
        }
    }

    /// `cmd` run in the internet namespace; its stdout if it succeeded.
    fn outside(&self, cmd: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.internet, "sh", "-c", cmd])
            .stderr(Stdio::null())
            .output()
            .expect("ip netns exec");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn in_host(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.host])
            .args(args)
            .output()
            .expect("ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        netns_del(&self.host);
        netns_del(&self.internet);
    }
}

/// Runs `cmd` in a group's container; its output if it succeeded.
fn exec(s: &Server, group: &str, cmd: &str) -> Option<String> {
    let (ok, out, _) = s.cli(&["exec", group, "--", "sh", "-c", cmd]);
    ok.then_some(out)
}

/// Polls `f` until it gives Some (panics after `secs`).
async fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn web_group(image: &str, name: &str, network: &str) -> String {
    format!(
        r#"name: {name}
termination_grace_period_seconds: 1
network: {network}
volumes:
  - name: www
    config_file: {{files: [{{path: index.html, content: "hello from {name}\n"}}]}}
containers:
  - name: web
    image: '{image}'
    command: [sh, -c, 'httpd -p 8080 -h /www; httpd -p 8081 -h /www; sleep 3600']
    ports: [{{port: 8080}}, {{port: 5353, protocol: UDP}}]
    volume_mounts: [{{name: www, mount_path: /www}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn vpcs_eips_and_firewalls() {
    let topo = Topology::new();
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let host_ns = format!("/run/netns/{}", topo.host);
    let mut s = Server::start_with(
        Path::new(QCI),
        &[
            "--network-host-ns",
            &host_ns,
            "--eip-pool",
            "192.0.2.100-192.0.2.109",
            "--eip-interface",
            "vh",
            "--basic-subnet",
            "172.30.0.0/24",
        ],
    )
    .await;

    // VPCs: a block the host routes is refused; overlapping VPCs are fine.
    let (ok, _, err) = s.cli(&[
        "vpc",
        "create",
        "--name",
        "bad",
        "--cidr",
        "198.51.100.0/24",
    ]);
    assert!(
        !ok && err.contains("cidr") && err.contains("collides"),
        "{err}"
    );
    let (ok, _, err) = s.cli(&["vpc", "create", "--name", "bad", "--cidr", "10.1.0.1/24"]);
    assert!(!ok && err.contains("10.1.0.0/24"), "{err}");
    // v2's groups are all guarded by the VPC's firewall: only 8080, from inside v2.
    let (ok, _, err) = s.cli(&[
        "firewall",
        "create",
        "--name",
        "fw2",
        "--rule",
        "accept tcp 8080 from 10.200.0.0/24",
    ]);
    assert!(ok, "{err}");
    for (name, cidr, fw) in [
        ("v1", "10.100.0.0/24", None),
        ("v2", "10.200.0.0/24", Some("fw2")),
        ("v3", "10.100.0.0/24", None),
    ] {
        let mut args = vec!["vpc", "create", "--name", name, "--cidr", cidr];
        if let Some(f) = fw {
            args.extend(["--firewall", f]);
        }
        let (ok, _, err) = s.cli(&args);
        assert!(ok, "{err}");
    }
    let (ok, _, err) = s.cli(&[
        "firewall",
        "create",
        "--name",
        "fw",
        "--rule",
        "accept tcp 9999 from 0.0.0.0/0",
    ]);
    assert!(ok, "{err}");

    // web (v1, its own EIP, firewall), peer (v1), stranger (v2), twin (v3, same block as v1).
    let (ok, _, err) = s.create(
        "web",
        &web_group(&image, "web", "{vpc: v1, eip: auto, firewall: fw}"),
        &["--wait"],
    );
    assert!(ok, "{err}");
    let client = |name: &str, net: &str| {
        format!(
            "name: {name}\ntermination_grace_period_seconds: 1\nnetwork: {net}\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]\n"
        )
    };
    for (name, net) in [
        ("peer", "{vpc: v1}"),
        ("stranger", "{vpc: v2}"),
        ("twin", "{vpc: v3}"),
        ("plain", "{}"),
    ] {
        let (ok, _, err) = s.create(name, &client(name, net), &["--wait"]);
        assert!(ok, "{name}: {err}");
    }
    let web = s.client.get_group("web").await.unwrap();
    let web_ip = web.status.ip.clone().expect("web has an address");
    let eip = web.status.eip.clone().expect("web has an EIP");
    assert_eq!(web_ip, "10.100.0.2");
    assert_eq!(
        s.client
            .get_group("twin")
            .await
            .unwrap()
            .status
            .ip
            .as_deref(),
        Some("10.100.0.2")
    );
    assert_eq!(
        s.client
            .get_group("plain")
            .await
            .unwrap()
            .status
            .ip
            .as_deref(),
        Some("172.30.0.2")
    );
    let web_pid = web.status.containers[0].pid;
    // Its hostname resolves to its address, as in Docker and Kubernetes.
    let hosts = exec(&s, "web", "cat /etc/hosts").unwrap();
    assert!(hosts.contains(&format!("{web_ip}\tweb\n")), "{hosts}");

    // The firewall lets nothing to 8080 in; a rule change opens it, with no restart.
    let get = |port: u16| format!("timeout 3 wget -q -O- http://{web_ip}:{port}/");
    assert!(
        exec(&s, "peer", &get(8080)).is_none(),
        "the firewall let 8080 through"
    );
    let (ok, _, err) = s.cli(&[
        "firewall",
        "update",
        "fw",
        "--rule",
        "accept tcp 8080 from 10.100.0.0/24",
    ]);
    assert!(ok, "{err}");
    let page = eventually("8080 open after the rule change", 10, || {
        exec(&s, "peer", &get(8080))
    })
    .await;
    assert_eq!(page, "hello from web\n");
    assert_eq!(
        s.client.get_group("web").await.unwrap().status.containers[0].pid,
        web_pid
    );
    assert!(
        exec(&s, "peer", &get(8081)).is_none(),
        "8081 is not accepted by any rule"
    );

    // Another VPC cannot reach v1, even at an address its own block holds elsewhere.
    assert!(exec(&s, "stranger", &get(8080)).is_none(), "v2 reached v1");
    assert!(
        exec(&s, "plain", &get(8080)).is_none(),
        "the basic network reached v1"
    );

    // A VPC's firewall guards its groups.
    let (ok, _, err) = s.create("web2", &web_group(&image, "web2", "{vpc: v2}"), &["--wait"]);
    assert!(ok, "{err}");
    let web2_ip = s.client.get_group("web2").await.unwrap().status.ip.unwrap();
    let page = eventually("web2:8080 from its VPC", 10, || {
        exec(
            &s,
            "stranger",
            &format!("timeout 3 wget -q -O- http://{web2_ip}:8080/"),
        )
    })
    .await;
    assert_eq!(page, "hello from web2\n");
    assert!(
        exec(
            &s,
            "stranger",
            &format!("timeout 3 wget -q -O- http://{web2_ip}:8081/")
        )
        .is_none(),
        "the VPC's firewall let 8081 through"
    );
    let (ok, _, err) = s.cli(&["vpc", "update", "v2", "--no-firewall"]);
    assert!(ok, "{err}");
    eventually("web2:8081 once v2 has no firewall", 10, || {
        exec(
            &s,
            "stranger",
            &format!("timeout 3 wget -q -O- http://{web2_ip}:8081/"),
        )
    })
    .await;

    // Published ports on the EIP: the declared TCP and UDP ports, nothing else.
    let open_fw = [
        "firewall",
        "update",
        "fw",
        "--rule",
        "accept tcp 8080-8081 from 0.0.0.0/0",
        "--rule",
        "accept udp 5353 from 0.0.0.0/0",
    ];
    let (ok, _, err) = s.cli(&open_fw);
    assert!(ok, "{err}");
    let page = eventually("8080 on the EIP", 10, || {
        topo.outside(&format!("timeout 3 busybox wget -q -O- http://{eip}:8080/"))
    })
    .await;
    assert_eq!(page, "hello from web\n");
    assert!(
        topo.outside(&format!("timeout 3 busybox wget -q -O- http://{eip}:8081/"))
            .is_none(),
        "an undeclared port was published"
    );
    let netns = s.data_dir.join("run/sandboxes").join(&web.id).join("net");
    let mut udp = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["socat", "UDP-LISTEN:5353,fork", "SYSTEM:echo pong"])
        .spawn()
        .expect("socat");
    let pong = eventually("UDP 5353 on the EIP", 10, || {
        topo.outside(&format!("echo ping | timeout 3 socat -T2 - UDP:{eip}:5353"))
            .filter(|o| o.contains("pong"))
    })
    .await;
    assert_eq!(pong, "pong\n");
    let _ = udp.kill();
    let _ = udp.wait();

    // The group's own traffic leaves as its EIP; a VPC without an EIP cannot leave at all.
    let outside = format!("timeout 3 wget -q -O- http://{OUTSIDE}:9090/");
    let page = eventually("web reaching out", 10, || exec(&s, "web", &outside)).await;
    assert_eq!(page, "from the internet\n");
    assert!(
        exec(&s, "peer", &outside).is_none(),
        "a VPC without an EIP reached out"
    );
    assert!(
        exec(&s, "plain", &outside).is_none(),
        "the basic network without an EIP reached out"
    );
    let (ok, out, err) = s.cli(&["eip", "create", "--name", "out"]);
    assert!(ok, "{err}");
    let vpc_eip = out.trim().to_string();
    let (ok, _, err) = s.cli(&["eip", "bind", "out", "--vpc", "v1"]);
    assert!(ok, "{err}");
    eventually("peer reaching out through v1's EIP", 10, || {
        exec(&s, "peer", &outside)
    })
    .await;
    let (ok, _, err) = s.cli(&["eip", "rm", "out"]);
    assert!(!ok && err.contains("bound to vpc"), "{err}");
    let (ok, _, err) = s.cli(&["vpc", "rm", "v1"]);
    assert!(!ok && err.contains("web") && err.contains("peer"), "{err}");

    // A crash of qci serve keeps addresses, published ports and rules.
    s.kill9();
    s.restart().await;
    let again = s.client.get_group("web").await.unwrap();
    assert_eq!(again.status.ip.as_deref(), Some(web_ip.as_str()));
    assert_eq!(again.status.containers[0].pid, web_pid);
    let page = eventually("8080 on the EIP after a restart", 10, || {
        topo.outside(&format!("timeout 3 busybox wget -q -O- http://{eip}:8080/"))
    })
    .await;
    assert_eq!(page, "hello from web\n");

    // Restarting the group keeps its address and EIP too.
    let (ok, _, err) = s.cli(&["restart", "web"]);
    assert!(ok, "{err}");
    s.wait_group(&web.id, "Running again with a new process", |g| {
        g.status.phase == qci_spec::GroupPhase::Running
            && g.status.containers[0]
                .pid
                .is_some_and(|p| Some(p) != web_pid)
    })
    .await;
    let page = eventually("8080 on the EIP after qci restart web", 20, || {
        topo.outside(&format!("timeout 3 busybox wget -q -O- http://{eip}:8080/"))
    })
    .await;
    assert_eq!(page, "hello from web\n");
    let again = s.client.get_group("web").await.unwrap();
    assert_eq!(again.status.ip.as_deref(), Some(web_ip.as_str()));
    assert_eq!(again.status.eip.as_deref(), Some(eip.as_str()));

    // Deleting everything leaves no link, rule, address or lease.
    for g in ["web", "web2", "peer", "stranger", "twin", "plain"] {
        let (ok, _, err) = s.cli(&["delete", g, "--wait"]);
        assert!(ok, "{g}: {err}");
    }
    let (ok, _, err) = s.cli(&["eip", "unbind", "out"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.cli(&["eip", "rm", &vpc_eip]);
    assert!(ok, "{err}");
    for v in ["v1", "v2", "v3"] {
        let (ok, _, err) = s.cli(&["vpc", "rm", v]);
        assert!(ok, "{v}: {err}");
    }
    for f in ["fw", "fw2"] {
        let (ok, _, err) = s.cli(&["firewall", "rm", f]);
        assert!(ok, "{err}");
    }
    assert!(
        s.client.list_eips().await.unwrap().is_empty(),
        "the auto EIP was not released"
    );
    eventually("the host clean", 10, || {
        let links = topo.in_host(&["ip", "-o", "link"]);
        let tables = topo.in_host(&["nft", "list", "tables"]);
        let addrs = topo.in_host(&["ip", "-o", "addr", "show", "dev", "vh"]);
        let routes = topo.in_host(&["ip", "route"]);
        let clean = !links.contains(": qn")
            && !tables.contains("qci")
            && !addrs.contains("192.0.2.10")
            && !routes.contains("dev qn");
        clean.then_some(())
    })
    .await;
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
}

/// `qci serve` stopped by SIGTERM keeps exactly what running groups need on the host, and
/// once no group is left it leaves nothing: no router, uplink, route, table, mount or cgroup.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_leaves_the_host_as_it_found_it() {
    let topo = Topology::new();
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let host_ns = format!("/run/netns/{}", topo.host);
    let mut s = Server::start_with(
        Path::new(QCI),
        &[
            "--network-host-ns",
            &host_ns,
            "--eip-pool",
            "192.0.2.110-192.0.2.119",
            "--eip-interface",
            "vh",
            "--basic-subnet",
            "172.31.0.0/24",
            // The basic network's router would otherwise outlive its last group for a while.
            "--basic-network-linger",
            "600",
        ],
    )
    .await;
    let (ok, _, err) = s.cli(&["vpc", "create", "--name", "v", "--cidr", "10.77.0.0/24"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.cli(&["vpc", "create", "--name", "empty", "--cidr", "10.78.0.0/24"]);
    assert!(ok, "{err}");
    for (name, network) in [("basic", "{}"), ("private", "{vpc: v, eip: auto}")] {
        let (ok, _, err) = s.create(name, &web_group(&image, name, network), &["--wait"]);
        assert!(ok, "{name}: {err}");
    }
    let links = |topo: &Topology| {
        topo.in_host(&["ip", "-o", "link"])
            .lines()
            .filter(|l| l.contains(": qn"))
            .count()
    };

    let eip = s
        .client
        .get_group("private")
        .await
        .unwrap()
        .status
        .eip
        .expect("an EIP");

    // Stopped with groups running: their networks and cgroups stay, the empty VPC's router goes.
    assert!(
        s.terminate(),
        "qci serve did not stop cleanly:\n{}",
        s.log()
    );
    assert_eq!(links(&topo), 2, "{}", topo.in_host(&["ip", "-o", "link"]));
    assert!(topo.in_host(&["nft", "list", "tables"]).contains("qci"));
    assert_eq!(
        s.runc_ids().len(),
        2,
        "the containers must outlive qci serve"
    );
    assert!(!s.cgroup_parents().is_empty());
    assert_eq!(
        topo.outside(&format!("timeout 3 busybox wget -q -O- http://{eip}:8080/"))
            .as_deref(),
        Some("hello from private\n"),
        "the published port must keep working while qci serve is stopped"
    );

    // Started again, every group deleted (the basic network would linger), stopped.
    s.restart().await;
    for g in ["basic", "private"] {
        let (ok, _, err) = s.cli(&["delete", g, "--wait"]);
        assert!(ok, "{g}: {err}");
    }
    assert!(
        s.terminate(),
        "qci serve did not stop cleanly:\n{}",
        s.log()
    );
    let links_left = topo.in_host(&["ip", "-o", "link"]);
    let tables = topo.in_host(&["nft", "list", "tables"]);
    let routes = topo.in_host(&["ip", "route"]);
    assert!(!links_left.contains(": qn"), "links left: {links_left}");
    assert!(!tables.contains("qci"), "tables left: {tables}");
    assert!(!routes.contains("dev qn"), "routes left: {routes}");
    let addrs = topo.in_host(&["ip", "-o", "addr", "show", "dev", "vh"]);
    assert!(!addrs.contains(&format!("{eip}/")), "EIP left: {addrs}");
    assert!(s.mounts().is_empty(), "mounts left: {:?}", s.mounts());
    assert!(
        s.cgroup_parents().is_empty(),
        "cgroups left: {:?}",
        s.cgroup_parents()
    );
    assert!(s.runc_ids().is_empty());

    // A second instance on the same host picks a transit block of its own, by itself.
    s.restart().await;
    let (ok, _, err) = s.create("basic", &web_group(&image, "basic", "{}"), &["--wait"]);
    assert!(ok, "{err}");
    let s2 = Server::start_with(
        Path::new(QCI),
        &[
            "--network-host-ns",
            &host_ns,
            "--basic-subnet",
            "172.29.0.0/24",
        ],
    )
    .await;
    let (ok, _, err) = s2.create("basic", &web_group(&image, "basic", "{}"), &["--wait"]);
    assert!(ok, "{err}");
    let block = |s: &Server| {
        std::fs::read_to_string(s.data_dir.join("transit"))
            .unwrap()
            .trim()
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
    };
    let (a, b) = (block(&s), block(&s2));
    assert!(
        !a.contains(&b.network()) && !b.contains(&a.network()),
        "{a} and {b}"
    );
    let routes = topo.in_host(&["ip", "route"]);
    for n in [a, b] {
        assert!(
            routes.lines().any(|l| l
                .split(['/', ' '])
                .next()
                .and_then(|ip| ip.parse().ok())
                .is_some_and(|ip: std::net::Ipv4Addr| n.contains(&ip))),
            "no uplink in {n}: {routes}"
        );
    }
}

/// `qci system reset` takes an instance off the machine: containers, disks and their loop
/// devices, mounts, cgroups, routers, rules, EIP addresses, and the data dir. It refuses while
/// `qci serve` runs, and asks first.
#[tokio::test(flavor = "multi_thread")]
async fn system_reset_removes_everything_an_instance_made() {
    let topo = Topology::new();
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let host_ns = format!("/run/netns/{}", topo.host);
    let mut s = Server::start_with(
        Path::new(QCI),
        &[
            "--network-host-ns",
            &host_ns,
            "--eip-pool",
            "192.0.2.120-192.0.2.129",
            "--eip-interface",
            "vh",
            "--basic-subnet",
            "172.28.0.0/24",
        ],
    )
    .await;
    let (ok, _, err) = s.cli(&["vpc", "create", "--name", "v", "--cidr", "10.79.0.0/24"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.cli(&["disk", "create", "--name", "d", "--size", "64Mi"]);
    assert!(ok, "{err}");
    let spec = format!(
        "name: full\ntermination_grace_period_seconds: 1\nnetwork: {{vpc: v, eip: auto}}\nvolumes: [{{name: d, disk: {{id: d}}}}]\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600'], ports: [{{port: 8080}}], volume_mounts: [{{name: d, mount_path: /d}}]}}]\n"
    );
    let (ok, _, err) = s.create("full", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.create(
        "plain",
        &format!("name: plain\ntermination_grace_period_seconds: 1\ncontainers: [{{name: c, image: '{image}', command: [sleep, '3600']}}]\n"),
        &["--wait"],
    );
    assert!(ok, "{err}");
    let eip = s
        .client
        .get_group("full")
        .await
        .unwrap()
        .status
        .eip
        .unwrap();
    let data = s.data_dir.to_str().unwrap().to_string();
    let reset = |s: &Server, extra: &[&str]| {
        let mut c = s.command();
        c.args([
            "system",
            "reset",
            "--data-dir",
            &data,
            "--network-host-ns",
            &host_ns,
        ])
        .args(["--eip-interface", "vh"])
        .args(extra)
        .stdin(std::process::Stdio::null());
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = reset(&s, &["--force"]);
    assert!(!ok && err.contains("qci serve is running"), "{err}");
    // (Nor does a second qci serve start on the same data dir.)
    let second = s
        .command()
        .args(["serve", "--data-dir", &data, "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another qci serve is running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(s.terminate(), "{}", s.log());
    let (ok, _, err) = reset(&s, &[]);
    assert!(!ok && err.contains("--force"), "{err}");
    assert_eq!(s.runc_ids().len(), 2, "refused resets must remove nothing");
    let loops = std::process::Command::new("losetup")
        .arg("-l")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loops.stdout).contains(&data),
        "the disk is not on a loop device: nothing to check"
    );
    assert!(
        topo.in_host(&["ip", "-o", "addr", "show", "dev", "vh"])
            .contains(&format!("{eip}/"))
    );

    let (ok, out, err) = reset(&s, &["--force"]);
    assert!(ok, "{out}{err}");
    assert!(!s.data_dir.exists(), "the data dir is still there");
    assert!(s.runc_ids().is_empty());
    assert!(s.mounts().is_empty(), "{:?}", s.mounts());
    assert!(s.cgroup_parents().is_empty(), "{:?}", s.cgroup_parents());
    let links = topo.in_host(&["ip", "-o", "link"]);
    let tables = topo.in_host(&["nft", "list", "tables"]);
    let routes = topo.in_host(&["ip", "route"]);
    let addrs = topo.in_host(&["ip", "-o", "addr", "show", "dev", "vh"]);
    assert!(!links.contains(": qn"), "{links}");
    assert!(!tables.contains("qci"), "{tables}");
    assert!(!routes.contains("dev qn"), "{routes}");
    assert!(!addrs.contains(&format!("{eip}/")), "{addrs}");
    let loops = std::process::Command::new("losetup")
        .arg("-l")
        .output()
        .unwrap();
    let loops = String::from_utf8_lossy(&loops.stdout);
    assert!(!loops.contains(&data), "loop devices left: {loops}");
}

/// A gVisor group (`runtime: gvisor`) in a VPC: its sandbox uses the group's own network
/// namespace, so its published port answers on its EIP from outside (an unpublished one does
/// not), a runc group of the VPC reaches it, it reaches the internet as its EIP, and its
/// /etc/hosts names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_gvisor_group_in_a_vpc_is_reached_on_its_eip() {
    qci_testkit::require(&[("runsc", "runsc")]);
    let topo = Topology::new();
    let reg = Registry::start();
    let image = push_busybox(&reg.host(), "bb", "1").await;
    let host_ns = format!("/run/netns/{}", topo.host);
    let s = Server::start_with(
        Path::new(QCI),
        &[
            "--network-host-ns",
            &host_ns,
            "--eip-pool",
            "192.0.2.110-192.0.2.119",
            "--eip-interface",
            "vh",
            "--basic-subnet",
            "172.30.1.0/24",
        ],
    )
    .await;
    let (ok, _, err) = s.cli(&["vpc", "create", "--name", "gv", "--cidr", "10.150.0.0/24"]);
    assert!(ok, "{err}");
    // (An HTTP readiness probe on its web server: probes reach into the sandbox's namespace.)
    let spec = format!(
        "runtime: gvisor\n{}",
        web_group(&image, "gvweb", "{vpc: gv, eip: auto}")
    )
    .replace(
        "    ports: [{port: 8080}",
        "    readiness_probe: {http_get: {path: /index.html, port: 8080}, period_seconds: 1}\n    ports: [{port: 8080}",
    );
    assert!(spec.contains("http_get"), "{spec}");
    let (ok, out, err) = s.create("gvweb", &spec, &["--wait"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let web = s
        .wait_group(&id, "web ready", |g| {
            g.status.containers[0].ready == Some(true)
        })
        .await;
    let eip = web.status.eip.clone().expect("an EIP");
    let ip = web.status.ip.clone().expect("a VPC address");
    assert!(ip.starts_with("10.150.0."), "{ip}");
    let page = eventually("8080 on the EIP", 15, || {
        topo.outside(&format!("timeout 3 busybox wget -q -O- http://{eip}:8080/"))
    })
    .await;
    assert_eq!(page.trim(), "hello from gvweb");
    assert!(
        topo.outside(&format!("timeout 3 busybox wget -q -O- http://{eip}:8081/"))
            .is_none(),
        "an unpublished port answered on the EIP"
    );
    // A runc group of the same VPC reaches it on its address.
    let peer = format!(
        "name: peer\ntermination_grace_period_seconds: 1\nnetwork: {{vpc: gv}}\ncontainers: [{{name: p, image: '{image}', command: [sleep, '3600']}}]\n"
    );
    let (ok, _, err) = s.create("peer", &peer, &["--wait"]);
    assert!(ok, "{err}");
    let page = eventually("the gVisor group from its VPC", 15, || {
        exec(
            &s,
            "peer",
            &format!("timeout 3 wget -q -O- http://{ip}:8080/"),
        )
    })
    .await;
    assert_eq!(page.trim(), "hello from gvweb");
    // Out to the internet, as its EIP; and its /etc/hosts.
    let page = eventually("the internet from gVisor", 15, || {
        exec(
            &s,
            "gvweb",
            &format!("timeout 3 wget -q -O- http://{OUTSIDE}:9090/"),
        )
    })
    .await;
    assert_eq!(page.trim(), "from the internet");
    let hosts = exec(&s, "gvweb", "cat /etc/hosts; dmesg | head -1").expect("exec");
    assert!(
        hosts.contains(&ip) && hosts.contains("gvweb") && hosts.contains("gVisor"),
        "{hosts}"
    );
    // The same resolver settings as a runc group's.
    let resolv = |g: &str| exec(&s, g, "cat /etc/resolv.conf").expect("resolv.conf");
    assert_eq!(resolv("gvweb"), resolv("peer"));
    for g in ["gvweb", "peer"] {
        let (ok, _, err) = s.cli(&["delete", g, "--wait"]);
        assert!(ok, "{err}");
    }
    assert!(s.runsc_ids().is_empty(), "{:?}", s.runsc_ids());
    assert!(s.runsc_processes().is_empty(), "{:?}", s.runsc_processes());
}
