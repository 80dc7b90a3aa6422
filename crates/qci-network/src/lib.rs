//! Group networking. Every network (the basic one, each VPC) is a router: a network namespace
//! of its own holding a bridge (`br0`, with the gateway address) that the network's groups
//! plug into, and an uplink veth to the host (`up0` inside, `qn…` on the host) with a /31 of
//! the transit block. Networks never share a routing table, so VPC blocks may overlap and VPCs
//! cannot reach each other. Traffic leaves only through an EIP:
//!
//! - a group's EIP: the host maps EIP ↔ the group's alias (a transit address) and the router
//!   maps the alias ↔ the group's address, so published ports reach the group with the
//!   client's address intact, and the group's own traffic leaves as the EIP;
//! - a VPC's EIP: the router sends everything else out as its uplink address, which the host
//!   maps to the EIP.
//!
//! Firewalls are nftables tables inside each group's namespace. Links, addresses and routes
//! are made over netlink (rtnetlink), rules with one `nft -f` per table, each a whole-table
//! replacement in one transaction. All of it sits behind [`NetworkDriver`], so another way of
//! networking (CNI plugins) can be put beside it.

pub mod link;
pub mod netns;
pub mod nft;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::Ipv4Net;
use qci_spec::FirewallRule;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A namespace or mount call refused.
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("netlink: {context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink: link {0} is missing")]
    LinkMissing(String),
    /// nft's own words, and the ruleset it refused.
    #[error("nftables: {stderr}\n--- ruleset ---\n{ruleset}")]
    Nft { stderr: String, ruleset: String },
    #[error("network {0} is not ready")]
    NotReady(String),
    #[error("a network thread panicked")]
    ThreadPanicked,
    #[error("{0}")]
    Config(String),
}

impl NetError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
        let context = context.into();
        move |source| NetError::Io { context, source }
    }

    /// Wraps a system call's error with what was being done.
    pub(crate) fn sys(context: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> NetError {
        let context = context.into();
        move |source| NetError::Sys { context, source }
    }
}

/// How this server's networking is set up.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Where routers' namespaces are pinned (`<data>/run/networks`).
    pub run_dir: PathBuf,
    /// The namespace qci treats as the host's network (uplinks, EIPs, NAT); None: its own.
    pub host_ns: Option<PathBuf>,
    /// Uplink /31s come from the first half, group aliases from the second.
    pub transit: Ipv4Net,
    pub eip_pool: Vec<Ipv4Addr>,
    /// The host interface EIP addresses are put on (None: the operator routes them here).
    pub eip_interface: Option<String>,
    /// Four hex digits naming this instance in host link and table names.
    pub instance: String,
}

/// A network to have.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPlan {
    pub id: String,
    pub cidr: Ipv4Net,
    pub slot: u32,
    /// The VPC's EIP (outbound for all its groups).
    pub eip: Option<Ipv4Addr>,
}

/// A group's place in its network.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    pub group_id: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub eip: Option<Ipv4Addr>,
    /// Declared ports, published on the EIP.
    pub tcp: Vec<u16>,
    pub udp: Vec<u16>,
    /// The rules of its firewalls (the group's and its VPC's); None: no firewall.
    pub firewall: Option<Vec<FirewallRule>>,
}

/// A way of networking groups.
pub trait NetworkDriver: Send + Sync {
    /// Brings every network, and the host's and the routers' rules, in line with the plan;
    /// networks not in it are removed.
    fn sync(&self, nets: &[NetworkPlan], groups: &[GroupPlan]) -> Result<(), NetError>;
    /// Whether `net` exists as planned, so a group that publishes nothing (no EIP: it
    /// changes none of the host's or the router's rules) can plug in without a sync.
    fn ready(&self, net: &NetworkPlan) -> bool;
    /// Connects a group's network namespace (pinned at `netns`) to its network.
    fn attach(&self, net: &NetworkPlan, g: &GroupPlan, netns: &Path) -> Result<(), NetError>;
    /// Loads the group's firewall into its namespace.
    fn firewall(&self, g: &GroupPlan, netns: &Path) -> Result<(), NetError>;
    /// Disconnects a group from its network.
    fn detach(&self, network: &str, group_id: &str) -> Result<(), NetError>;
}

/// Why a block cannot be a network here.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{cidr} overlaps qci's transit block {transit} (qci serve --transit-cidr)")]
    Transit { cidr: Ipv4Net, transit: Ipv4Net },
    #[error("{cidr} holds EIP pool address {eip}")]
    EipPool { cidr: Ipv4Net, eip: Ipv4Addr },
    #[error("{cidr} collides with the host's route to {route}; pick a block the host does not use")]
    HostRoute { cidr: Ipv4Net, route: Ipv4Net },
    /// The host's routes could not be read (not the block's fault).
    #[error("reading the host's routes: {0}")]
    Routes(#[from] NetError),
}

/// Why `cidr` cannot be a network here: it overlaps a route of the host (other than the
/// default route and qci's own transit routes), the transit block or an EIP.
pub fn check_block(cfg: &NetConfig, cidr: Ipv4Net) -> Result<(), BlockError> {
    if cidr.contains(&cfg.transit.network()) || cfg.transit.contains(&cidr.network()) {
        return Err(BlockError::Transit {
            cidr,
            transit: cfg.transit,
        });
    }
    if let Some(e) = cfg.eip_pool.iter().find(|e| cidr.contains(*e)) {
        return Err(BlockError::EipPool { cidr, eip: *e });
    }
    let routes = netns::run(cfg.host_ns.as_deref(), "host routes", |h| async move {
        link::all_routes(&h).await
    })?;
    for (dst, len) in routes {
        if len == 0 {
            continue;
        }
        let Ok(r) = Ipv4Net::new(dst, len) else {
            continue;
        };
        if cfg.transit.contains(&r.network()) {
            continue;
        }
        if r.contains(&cidr.network()) || cidr.contains(&r.network()) {
            return Err(BlockError::HostRoute { cidr, route: r });
        }
    }
    Ok(())
}

/// Where transit blocks are picked from when none is given: the shared address space
/// (RFC 6598), which hosts rarely route.
pub const TRANSIT_SPACE: &str = "100.64.0.0/10";
/// The size of a picked transit block: 2048 uplinks and 2048 EIP aliases.
pub const TRANSIT_PREFIX: u8 = 20;

/// A transit block for this instance: the first, from a place `seed` (the instance's name)
/// decides, of the /20s of [`TRANSIT_SPACE`] that no route of the host falls in (another
/// qci instance's uplinks are such routes). So two instances on one host pick different
/// blocks by themselves.
pub fn pick_transit(host_ns: Option<&Path>, seed: &str) -> Result<Ipv4Net, NetError> {
    let routes = netns::run(host_ns, "host routes", |h| async move {
        link::all_routes(&h).await
    })?;
    let routes: Vec<Ipv4Net> = routes
        .into_iter()
        .filter(|(_, len)| *len > 0)
        .filter_map(|(dst, len)| Ipv4Net::new(dst, len).ok())
        .collect();
    let start = u32::from_str_radix(&short_hash(seed, 8), 16).unwrap_or(0);
    free_transit(start, &routes).ok_or_else(|| {
        NetError::Config(format!(
            "every /{TRANSIT_PREFIX} of {TRANSIT_SPACE} holds a route of this host: give --transit-cidr"
        ))
    })
}

/// The first block of [`TRANSIT_SPACE`], counting from `start`, that overlaps no route.
fn free_transit(start: u32, routes: &[Ipv4Net]) -> Option<Ipv4Net> {
    let space: Ipv4Net = TRANSIT_SPACE.parse().ok()?;
    let blocks: Vec<Ipv4Net> = space.subnets(TRANSIT_PREFIX).ok()?.collect();
    let n = blocks.len() as u32;
    (0..n)
        .map(|i| blocks[((start % n + i) % n) as usize])
        .find(|b| {
            !routes
                .iter()
                .any(|r| r.contains(&b.network()) || b.contains(&r.network()))
        })
}

/// An EIP pool entry: an address, a range "A-B" or a block "A/len".
pub fn parse_pool(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = || format!("{s:?} is not an address, a range A-B or a block A/len");
    if let Some((a, b)) = s.split_once('-') {
        let (a, b): (Ipv4Addr, Ipv4Addr) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        let (a, b) = (u32::from(a), u32::from(b));
        if a > b || b - a > 65535 {
            return Err(bad());
        }
        return Ok((a..=b).map(Ipv4Addr::from).collect());
    }
    if s.contains('/') {
        let n: Ipv4Net = s.parse().map_err(|_| bad())?;
        if n.prefix_len() < 16 {
            return Err(format!("{s:?} is too large a pool (at most /16)"));
        }
        return Ok(n.hosts().collect());
    }
    Ok(vec![s.trim().parse().map_err(|_| bad())?])
}

fn short_hash(s: &str, n: usize) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..n].to_string()
}

fn hash_of(s: &str) -> String {
    short_hash(s, 32)
}

/// The default driver: routers, bridges and veths in namespaces, nftables.
pub struct BridgeDriver {
    cfg: NetConfig,
    /// What was last loaded, by table: hashes of the rulesets.
    applied: Mutex<HashMap<String, String>>,
}

impl BridgeDriver {
    pub fn new(cfg: NetConfig) -> Result<BridgeDriver, NetError> {
        if cfg.transit.prefix_len() > 22 {
            return Err(NetError::Config(format!(
                "the transit block {} is too small (at most /22)",
                cfg.transit
            )));
        }
        std::fs::create_dir_all(&cfg.run_dir)
            .map_err(NetError::io(format!("creating {}", cfg.run_dir.display())))?;
        Ok(BridgeDriver {
            cfg,
            applied: Mutex::new(HashMap::new()),
        })
    }

    fn half(&self) -> u32 {
        1 << (31 - self.cfg.transit.prefix_len())
    }

    /// The host's and the router's ends of a network's uplink.
    pub fn uplink(&self, slot: u32) -> (Ipv4Addr, Ipv4Addr) {
        let base = u32::from(self.cfg.transit.network());
        let host = base + 2 * (slot % (self.half() / 2));
        (Ipv4Addr::from(host), Ipv4Addr::from(host + 1))
    }

    /// A published group's transit address, by its EIP's place in the pool.
    pub fn alias(&self, eip: Ipv4Addr) -> Option<Ipv4Addr> {
        let i = self.cfg.eip_pool.iter().position(|a| *a == eip)? as u32;
        (i < self.half())
            .then(|| Ipv4Addr::from(u32::from(self.cfg.transit.network()) + self.half() + i))
    }

    fn links_prefix(&self) -> String {
        format!("qn{}", self.cfg.instance)
    }

    fn host_link(&self, net: &str) -> String {
        format!("{}{}", self.links_prefix(), short_hash(net, 6))
    }

    fn router_ns(&self, net: &str) -> PathBuf {
        self.cfg.run_dir.join(net).join("net")
    }

    fn host_ns(&self) -> Option<&Path> {
        self.cfg.host_ns.as_deref()
    }

    /// The router's generation: changes whenever it is made again, so groups re-attach.
    fn generation(&self, net: &str) -> Option<String> {
        std::fs::read_to_string(self.cfg.run_dir.join(net).join("ready")).ok()
    }

    /// Whether the network's router is there as planned.
    fn built(&self, n: &NetworkPlan) -> bool {
        let want = format!("{} {}", n.cidr, n.slot);
        netns::is_pinned(&self.router_ns(&n.id))
            && self
                .generation(&n.id)
                .is_some_and(|g| g.split('|').next() == Some(want.as_str()))
    }

    /// Makes the network's router unless it is there as planned.
    fn ensure_network(&self, n: &NetworkPlan) -> Result<(), NetError> {
        if self.built(n) {
            return Ok(());
        }
        let file = self.router_ns(&n.id);
        let want = format!("{} {}", n.cidr, n.slot);
        self.teardown(&n.id)?;
        let made = self.build_network(n, &file, &want);
        if made.is_err() {
            let _ = self.teardown(&n.id);
        }
        made
    }

    fn build_network(&self, n: &NetworkPlan, file: &Path, want: &str) -> Result<(), NetError> {
        netns::create(file)?;
        let gw = qci_spec::gateway(n.cidr);
        let prefix = n.cidr.prefix_len();
        netns::run(Some(file), "router", move |h| async move {
            link::set_up(&h, "lo").await?;
            link::ensure_bridge(&h, "br0").await?;
            link::add_address(&h, "br0", gw, prefix).await
        })?;
        netns::run_blocking(Some(file), || {
            netns::sysctl("net.ipv4.ip_forward", "1", false)?;
            // Traffic between groups of a network stays on the bridge, unfiltered by the
            // router (each group's firewall guards it).
            netns::sysctl("net.bridge.bridge-nf-call-iptables", "0", true)
        })?;
        let (host_ip, router_ip) = self.uplink(n.slot);
        let host_link = self.host_link(&n.id);
        let router_file = file.to_path_buf();
        netns::run(self.host_ns(), "uplink", move |h| async move {
            link::veth_into(&h, &host_link, None, &router_file, "up0").await?;
            link::add_address(&h, &host_link, host_ip, 31).await
        })?;
        netns::run(Some(file), "router uplink", move |h| async move {
            link::add_address(&h, "up0", router_ip, 31).await?;
            link::set_up(&h, "up0").await?;
            link::route(&h, Ipv4Addr::UNSPECIFIED, 0, host_ip).await
        })?;
        netns::run_blocking(self.host_ns(), || {
            netns::sysctl("net.ipv4.ip_forward", "1", false)
        })?;
        let generation = format!(
            "{want}|{}",
            short_hash(&format!("{:?}", std::time::SystemTime::now()), 8)
        );
        std::fs::write(self.cfg.run_dir.join(&n.id).join("ready"), generation)
            .map_err(NetError::io(format!("recording network {}", n.id)))?;
        // Its tables, and the host's routes through its uplink, went with the old one.
        self.forget(&format!("router:{}", n.id));
        self.forget("host-addresses");
        tracing::info!(network = %n.id, cidr = %n.cidr, "network ready");
        Ok(())
    }

    /// Removes a network's router (its bridge and uplink go with its namespace).
    fn teardown(&self, net: &str) -> Result<(), NetError> {
        let host_link = self.host_link(net);
        netns::run(self.host_ns(), "removing an uplink", move |h| async move {
            link::delete(&h, &host_link).await
        })?;
        netns::destroy(&self.router_ns(net))?;
        let dir = self.cfg.run_dir.join(net);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NetError::io(format!("removing {}", dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Forgets what was loaded under `key` (its tables went with a namespace).
    fn forget(&self, key: &str) {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k.split('#').next() != Some(key));
    }

    /// Loads `text` unless it is what was last loaded under `key`.
    fn load(&self, key: &str, ns: Option<&Path>, text: &str) -> Result<(), NetError> {
        let h = hash_of(text);
        if self.applied_hash(key) == Some(h.clone()) {
            return Ok(());
        }
        nft::apply(ns, text)?;
        self.record(key, h);
        Ok(())
    }

    /// Loads a table: its structure and contents when the structure changed (or was never
    /// loaded by this process), else only its contents when they changed.
    fn load_table(&self, key: &str, ns: Option<&Path>, t: &nft::Table) -> Result<(), NetError> {
        let (sk, ck) = (format!("{key}#structure"), format!("{key}#contents"));
        let (sh, ch) = (hash_of(&t.structure), hash_of(&t.contents));
        if self.applied_hash(&sk) != Some(sh.clone()) {
            nft::apply(ns, &format!("{}{}", t.structure, t.contents))?;
            self.record(&sk, sh);
            self.record(&ck, ch);
        } else if self.applied_hash(&ck) != Some(ch.clone()) {
            nft::apply(ns, &t.contents)?;
            self.record(&ck, ch);
        }
        Ok(())
    }

    fn applied_hash(&self, key: &str) -> Option<String> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn record(&self, key: &str, hash: String) {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), hash);
    }

    /// EIP addresses on the EIP interface, and routes to published groups' aliases.
    fn host_addresses(&self, nets: &[NetworkPlan], groups: &[GroupPlan]) -> Result<(), NetError> {
        let mut eips: Vec<Ipv4Addr> = groups.iter().filter_map(|g| g.eip).collect();
        eips.extend(nets.iter().filter_map(|n| n.eip));
        let routes: Vec<(Ipv4Addr, Ipv4Addr)> = groups
            .iter()
            .filter_map(|g| {
                let alias = self.alias(g.eip?)?;
                let n = nets.iter().find(|n| n.id == g.network)?;
                Some((alias, self.uplink(n.slot).1))
            })
            .collect();
        let key = format!("{eips:?}{routes:?}");
        if self.applied_hash("host-addresses").as_ref() == Some(&key) {
            return Ok(());
        }
        let iface = self.cfg.eip_interface.clone();
        let pool = self.cfg.eip_pool.clone();
        let alias_block = Ipv4Net::new(
            Ipv4Addr::from(u32::from(self.cfg.transit.network()) + self.half()),
            self.cfg.transit.prefix_len() + 1,
        )
        .map_err(|e| NetError::Config(e.to_string()))?;
        let want_routes = routes.clone();
        netns::run(self.host_ns(), "host addresses", move |h| async move {
            if let Some(iface) = iface {
                let have = link::addresses(&h, &iface).await?;
                for e in &eips {
                    if !have.contains(&(*e, 32)) {
                        link::add_address(&h, &iface, *e, 32).await?;
                    }
                }
                for (a, len) in have {
                    if len == 32 && pool.contains(&a) && !eips.contains(&a) {
                        link::del_address(&h, &iface, a, 32).await?;
                    }
                }
            }
            for (alias, via) in &want_routes {
                link::route(&h, *alias, 32, *via).await?;
            }
            for d in link::routes(&h, 32).await? {
                if alias_block.contains(&d) && !want_routes.iter().any(|(a, _)| *a == d) {
                    link::del_route(&h, d, 32).await?;
                }
            }
            Ok(())
        })?;
        self.record("host-addresses", key);
        Ok(())
    }
}

impl NetworkDriver for BridgeDriver {
    fn ready(&self, net: &NetworkPlan) -> bool {
        self.built(net)
    }

    fn sync(&self, nets: &[NetworkPlan], groups: &[GroupPlan]) -> Result<(), NetError> {
        for n in nets {
            self.ensure_network(n)?;
        }
        // Networks no longer wanted.
        if let Ok(entries) = std::fs::read_dir(&self.cfg.run_dir) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !nets.iter().any(|n| n.id == id) {
                    tracing::info!(network = %id, "removing network");
                    self.teardown(&id)?;
                    self.forget(&format!("router:{id}"));
                }
            }
        }
        for n in nets {
            let mapped: Vec<(Ipv4Addr, Ipv4Addr)> = groups
                .iter()
                .filter(|g| g.network == n.id)
                .filter_map(|g| Some((g.ip, self.alias(g.eip?)?)))
                .collect();
            let t = nft::router_table(self.uplink(n.slot).1, &mapped);
            self.load_table(
                &format!("router:{}", n.id),
                Some(&self.router_ns(&n.id)),
                &t,
            )?;
        }
        self.host_addresses(nets, groups)?;
        let rules = nft::HostRules {
            published: groups
                .iter()
                .filter_map(|g| {
                    let eip = g.eip?;
                    Some(nft::Published {
                        eip,
                        alias: self.alias(eip)?,
                        tcp: g.tcp.clone(),
                        udp: g.udp.clone(),
                    })
                })
                .collect(),
            vpc_snat: nets
                .iter()
                .filter_map(|n| Some((self.uplink(n.slot).1, n.eip?)))
                .collect(),
        };
        let table = format!("qci_{}", self.cfg.instance);
        if nets.is_empty() {
            // Nothing to guard: the host keeps no table of qci's.
            self.forget("host");
            self.load(
                "host-empty",
                self.host_ns(),
                &format!("table ip {table}\ndelete table ip {table}\n"),
            )
        } else {
            self.forget("host-empty");
            let t = nft::host_table(&table, &format!("{}*", self.links_prefix()), &rules);
            self.load_table("host", self.host_ns(), &t)
        }
    }

    fn attach(&self, net: &NetworkPlan, g: &GroupPlan, netns: &Path) -> Result<(), NetError> {
        let Some(generation) = self.generation(&net.id) else {
            return Err(NetError::NotReady(net.id.clone()));
        };
        let marker = netns.with_file_name("network");
        let want = format!("{} {} {generation}", net.id, g.ip);
        if std::fs::read_to_string(&marker).is_ok_and(|m| m == want) {
            return Ok(());
        }
        let port = format!("vg{}", short_hash(&g.group_id, 10));
        let group_ns = netns.to_path_buf();
        netns::run(
            Some(&self.router_ns(&net.id)),
            "plugging in a group",
            move |h| async move { link::veth_into(&h, &port, Some("br0"), &group_ns, "eth0").await },
        )?;
        let (ip, prefix, gw) = (g.ip, net.cidr.prefix_len(), qci_spec::gateway(net.cidr));
        netns::run(Some(netns), "the group's address", move |h| async move {
            link::add_address(&h, "eth0", ip, prefix).await?;
            link::set_up(&h, "eth0").await?;
            link::route(&h, Ipv4Addr::UNSPECIFIED, 0, gw).await
        })?;
        std::fs::write(&marker, want)
            .map_err(NetError::io(format!("recording {}", marker.display())))?;
        tracing::debug!(group = %g.group_id, ip = %g.ip, network = %net.id, "group attached");
        Ok(())
    }

    fn firewall(&self, g: &GroupPlan, netns: &Path) -> Result<(), NetError> {
        let marker = netns.with_file_name("firewall");
        let text = nft::firewall_ruleset(g.firewall.as_deref());
        let want = hash_of(&text);
        match std::fs::read_to_string(&marker) {
            Ok(m) if m == want => return Ok(()),
            // Never loaded, and nothing to load.
            Err(_) if g.firewall.is_none() => return Ok(()),
            _ => {}
        }
        nft::apply(Some(netns), &text)?;
        std::fs::write(&marker, want)
            .map_err(NetError::io(format!("recording {}", marker.display())))
    }

    fn detach(&self, network: &str, group_id: &str) -> Result<(), NetError> {
        let router = self.router_ns(network);
        if !netns::is_pinned(&router) {
            return Ok(());
        }
        let port = format!("vg{}", short_hash(group_id, 10));
        netns::run(Some(&router), "unplugging a group", move |h| async move {
            link::delete(&h, &port).await
        })
    }
}

#[cfg(test)]
mod transit_tests {
    #[test]
    fn transit_blocks_avoid_the_hosts_routes() {
        let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
        // (start, routes) → block
        let cases = [
            (0, vec![], "100.64.0.0/20"),
            (1, vec![], "100.64.16.0/20"),
            (1024, vec![], "100.64.0.0/20"),
            (0, vec![net("100.64.0.4/31")], "100.64.16.0/20"),
            (0, vec![net("100.64.0.0/16")], "100.65.0.0/20"),
            (1023, vec![net("100.127.240.0/31")], "100.64.0.0/20"),
            (
                0,
                vec![net("10.0.0.0/8"), net("192.168.1.0/24")],
                "100.64.0.0/20",
            ),
        ];
        for (start, routes, want) in cases {
            assert_eq!(
                super::free_transit(start, &routes),
                Some(net(want)),
                "{start} {routes:?}"
            );
        }
        assert_eq!(super::free_transit(7, &[net("100.64.0.0/10")]), None);
        assert_eq!(super::free_transit(7, &[net("96.0.0.0/4")]), None);
    }
}
