//! nftables rulesets, written as text and loaded with one `nft -f -` each, which replaces a
//! whole table in one transaction (`table`, `delete table`, then the new table).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use qci_spec::{Direction, FirewallRule, RuleAction, RuleProtocol};

use crate::NetError;

/// Ports an EIP publishes for one group, and the addresses that carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub eip: Ipv4Addr,
    /// The group's address on the uplinks (the router maps it to the group's own).
    pub alias: Ipv4Addr,
    pub tcp: Vec<u16>,
    pub udp: Vec<u16>,
}

/// The host's table: published ports (DNAT), outbound through EIPs (SNAT), and the filter
/// that lets nothing else in or out of qci's uplinks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostRules {
    pub published: Vec<Published>,
    /// (router uplink address, the VPC's EIP): outbound for a whole VPC.
    pub vpc_snat: Vec<(Ipv4Addr, Ipv4Addr)>,
}

fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!(
        "table {family} {name}\ndelete table {family} {name}\ntable {family} {name} {{\n{body}}}\n"
    )
}

/// A table in two parts: its structure (chains and empty maps, loaded rarely: registering
/// base chains costs the kernel ~10 ms) and its contents (map and set elements, replaced in
/// one transaction whenever they change, which is cheap).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub structure: String,
    pub contents: String,
}

fn elements(family: &str, table: &str, kind: &str, name: &str, items: &[String]) -> String {
    let mut s = format!("flush {kind} {family} {table} {name}\n");
    if !items.is_empty() {
        s.push_str(&format!(
            "add element {family} {table} {name} {{ {} }}\n",
            items.join(", ")
        ));
    }
    s
}

/// The host table named `table`; `links` matches qci's uplinks (a name prefix and `*`).
pub fn host_table(table: &str, links: &str, r: &HostRules) -> Table {
    let nat = "    dnat to ip daddr . tcp dport map @pub_tcp\n    dnat to ip daddr . udp dport map @pub_udp\n";
    let body = format!(
        "  map pub_tcp {{ type ipv4_addr . inet_service : ipv4_addr; }}
  map pub_udp {{ type ipv4_addr . inet_service : ipv4_addr; }}
  map snat_out {{ type ipv4_addr : ipv4_addr; }}
  set allowed_out {{ type ipv4_addr; }}
  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n{nat}  }}
  chain output {{\n    type nat hook output priority -100; policy accept;\n{nat}  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    snat to ip saddr map @snat_out
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname \"{links}\" ct state established,related accept
    oifname \"{links}\" ct state established,related accept
    oifname \"{links}\" ct status dnat accept
    iifname \"{links}\" ip saddr @allowed_out accept
    iifname \"{links}\" drop
    oifname \"{links}\" drop
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"{links}\" ct state established,related accept
    iifname \"{links}\" drop
  }}
"
    );
    let (mut tcp, mut udp, mut snat, mut allowed) = (vec![], vec![], vec![], vec![]);
    for p in &r.published {
        tcp.extend(
            p.tcp
                .iter()
                .map(|port| format!("{} . {port} : {}", p.eip, p.alias)),
        );
        udp.extend(
            p.udp
                .iter()
                .map(|port| format!("{} . {port} : {}", p.eip, p.alias)),
        );
        snat.push(format!("{} : {}", p.alias, p.eip));
        allowed.push(p.alias.to_string());
    }
    for (router, eip) in &r.vpc_snat {
        snat.push(format!("{router} : {eip}"));
        allowed.push(router.to_string());
    }
    let contents = [
        elements("ip", table, "map", "pub_tcp", &tcp),
        elements("ip", table, "map", "pub_udp", &udp),
        elements("ip", table, "map", "snat_out", &snat),
        elements("ip", table, "set", "allowed_out", &allowed),
    ]
    .concat();
    Table {
        structure: replace_table("ip", table, &body),
        contents,
    }
}

/// A router's table: published groups' aliases mapped to their addresses (both ways),
/// everything else leaving as the router's uplink address, and no way in but mapped or
/// answering traffic.
pub fn router_table(router: Ipv4Addr, mapped: &[(Ipv4Addr, Ipv4Addr)]) -> Table {
    let body = format!(
        "  map alias_in {{ type ipv4_addr : ipv4_addr; }}
  map alias_out {{ type ipv4_addr : ipv4_addr; }}
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    iifname \"up0\" dnat to ip daddr map @alias_in
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    oifname \"up0\" snat to ip saddr map @alias_out
    oifname \"up0\" snat to {router}
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname \"br0\" oifname \"up0\" accept
    iifname \"up0\" oifname \"br0\" ct status dnat accept
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"up0\" ct state established,related accept
    iifname \"up0\" drop
  }}
"
    );
    let inward: Vec<String> = mapped.iter().map(|(g, a)| format!("{a} : {g}")).collect();
    let outward: Vec<String> = mapped.iter().map(|(g, a)| format!("{g} : {a}")).collect();
    Table {
        structure: replace_table("ip", "qci", &body),
        contents: [
            elements("ip", "qci", "map", "alias_in", &inward),
            elements("ip", "qci", "map", "alias_out", &outward),
        ]
        .concat(),
    }
}

fn rule_line(r: &FirewallRule) -> String {
    let peer = match r.direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let proto = match (r.protocol, r.port_range()) {
        (RuleProtocol::Tcp, Some((a, b))) if a == b => format!(" tcp dport {a}"),
        (RuleProtocol::Tcp, Some((a, b))) => format!(" tcp dport {a}-{b}"),
        (RuleProtocol::Udp, Some((a, b))) if a == b => format!(" udp dport {a}"),
        (RuleProtocol::Udp, Some((a, b))) => format!(" udp dport {a}-{b}"),
        (RuleProtocol::Tcp, None) => " ip protocol tcp".into(),
        (RuleProtocol::Udp, None) => " ip protocol udp".into(),
        (RuleProtocol::Icmp, _) => " ip protocol icmp".into(),
        (RuleProtocol::All, _) => String::new(),
    };
    let action = match r.action {
        RuleAction::Accept => "accept",
        RuleAction::Drop => "drop",
    };
    format!("    ip {peer} {}{proto} {action}\n", r.cidr)
}

/// A group's firewall (None: no firewall, the table goes). Ingress that no rule accepts is
/// dropped; established traffic and loopback always pass; egress passes unless a rule drops it.
pub fn firewall_ruleset(rules: Option<&[FirewallRule]>) -> String {
    let Some(rules) = rules else {
        return "table inet qci\ndelete table inet qci\n".into();
    };
    let mut sorted: Vec<&FirewallRule> = rules.iter().collect();
    sorted.sort_by_key(|r| r.priority);
    let lines = |d: Direction| -> String {
        sorted
            .iter()
            .filter(|r| r.direction == d)
            .map(|r| rule_line(r))
            .collect()
    };
    let body = format!(
        "  chain input {{
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    iif \"lo\" accept
{}  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    oif \"lo\" accept
{}  }}
",
        lines(Direction::Ingress),
        lines(Direction::Egress)
    );
    replace_table("inet", "qci", &body)
}

/// Loads `text` with `nft -f -` in the namespace pinned at `ns` (None: this one).
pub fn apply(ns: Option<&Path>, text: &str) -> Result<(), NetError> {
    let text = text.to_string();
    crate::netns::run_blocking(ns, move || {
        // The child takes the namespace of the thread that starts it.
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NetError::io("running nft (is nftables installed?)"))?;
        child
            .stdin
            .take()
            .ok_or_else(|| {
                NetError::io("writing to nft")(std::io::Error::other("nft has no stdin"))
            })?
            .write_all(text.as_bytes())
            .map_err(NetError::io("writing to nft"))?;
        let out = child
            .wait_with_output()
            .map_err(NetError::io("running nft"))?;
        if !out.status.success() {
            return Err(NetError::Nft {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ruleset: text,
            });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_rules_are_ordered_by_priority() {
        let rules = vec![
            FirewallRule::parse("accept tcp 8080 from 0.0.0.0/0 priority 50").unwrap(),
            FirewallRule::parse("drop tcp 8080 from 10.0.0.0/8 priority 10").unwrap(),
            FirewallRule::parse("accept udp 5000-5100 from 192.0.2.0/24").unwrap(),
            FirewallRule::parse("drop all to 198.51.100.0/24").unwrap(),
        ];
        let t = firewall_ruleset(Some(&rules));
        let drop = t.find("ip saddr 10.0.0.0/8 tcp dport 8080 drop").unwrap();
        let accept = t.find("ip saddr 0.0.0.0/0 tcp dport 8080 accept").unwrap();
        assert!(drop < accept, "{t}");
        assert!(t.contains("ip saddr 192.0.2.0/24 udp dport 5000-5100 accept"));
        assert!(t.contains("ip daddr 198.51.100.0/24 drop"));
        assert!(t.contains("policy drop"));
        assert_eq!(
            firewall_ruleset(None),
            "table inet qci\ndelete table inet qci\n"
        );
    }

    #[test]
    fn host_rules_publish_ports_and_gate_outbound() {
        let r = HostRules {
            published: vec![Published {
                eip: Ipv4Addr::new(192, 0, 2, 10),
                alias: Ipv4Addr::new(100, 127, 128, 0),
                tcp: vec![80, 443],
                udp: vec![],
            }],
            vpc_snat: vec![(Ipv4Addr::new(100, 127, 0, 3), Ipv4Addr::new(192, 0, 2, 11))],
        };
        let t = host_table("qci_ab", "qnab*", &r);
        assert!(
            t.structure
                .contains("iifname \"qnab*\" ip saddr @allowed_out accept")
        );
        assert!(t.contents.contains(
            "add element ip qci_ab pub_tcp { 192.0.2.10 . 80 : 100.127.128.0, 192.0.2.10 . 443 : 100.127.128.0 }"
        ));
        assert!(t.contents.contains("flush map ip qci_ab pub_udp\n"));
        assert!(
            !t.contents.contains("add element ip qci_ab pub_udp"),
            "no empty set"
        );
        assert!(t.contents.contains(
            "add element ip qci_ab snat_out { 100.127.128.0 : 192.0.2.10, 100.127.0.3 : 192.0.2.11 }"
        ));
        let empty = host_table("qci_ab", "qnab*", &HostRules::default());
        assert_eq!(
            empty.structure, t.structure,
            "the structure never depends on the contents"
        );
    }
}
