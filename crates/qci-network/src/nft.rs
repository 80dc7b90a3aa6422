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

fn set<T: std::fmt::Display>(items: &[T]) -> String {
    let v: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", v.join(", "))
}

fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!(
        "table {family} {name}\ndelete table {family} {name}\ntable {family} {name} {{\n{body}}}\n"
    )
}

/// The host table named `table`; `links` is the name prefix of qci's uplinks (with `*`).
pub fn host_ruleset(table: &str, links: &str, r: &HostRules) -> String {
    let mut dnat = String::new();
    let mut snat = String::new();
    let mut allowed = Vec::new();
    for p in &r.published {
        if !p.tcp.is_empty() {
            dnat.push_str(&format!(
                "    ip daddr {} tcp dport {} dnat to {}\n",
                p.eip,
                set(&p.tcp),
                p.alias
            ));
        }
        if !p.udp.is_empty() {
            dnat.push_str(&format!(
                "    ip daddr {} udp dport {} dnat to {}\n",
                p.eip,
                set(&p.udp),
                p.alias
            ));
        }
        snat.push_str(&format!("    ip saddr {} snat to {}\n", p.alias, p.eip));
        allowed.push(p.alias);
    }
    for (router, eip) in &r.vpc_snat {
        snat.push_str(&format!("    ip saddr {router} snat to {eip}\n"));
        allowed.push(*router);
    }
    let out = if allowed.is_empty() {
        String::new()
    } else {
        format!(
            "    iifname \"{links}\" ip saddr {} accept\n",
            set(&allowed)
        )
    };
    let body = format!(
        "  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n{dnat}  }}
  chain output {{\n    type nat hook output priority -100; policy accept;\n{dnat}  }}
  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n{snat}  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname \"{links}\" ct state established,related accept
    oifname \"{links}\" ct state established,related accept
    oifname \"{links}\" ct status dnat accept
{out}    iifname \"{links}\" drop
    oifname \"{links}\" drop
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"{links}\" ct state established,related accept
    iifname \"{links}\" drop
  }}
"
    );
    replace_table("ip", table, &body)
}

/// A router's table: each published group's alias mapped to its address, everything else
/// leaving as the router's uplink address, and no way in but mapped or answering traffic.
pub fn router_ruleset(router: Ipv4Addr, mapped: &[(Ipv4Addr, Ipv4Addr)]) -> String {
    let mut dnat = String::new();
    let mut snat = String::new();
    for (group, alias) in mapped {
        dnat.push_str(&format!(
            "    iifname \"up0\" ip daddr {alias} dnat to {group}\n"
        ));
        snat.push_str(&format!(
            "    oifname \"up0\" ip saddr {group} snat to {alias}\n"
        ));
    }
    let body = format!(
        "  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n{dnat}  }}
  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n{snat}    oifname \"up0\" snat to {router}\n  }}
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
    replace_table("ip", "qci", &body)
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
            .map_err(|e| NetError::Io(format!("running nft: {e} (is nftables installed?)")))?;
        child
            .stdin
            .take()
            .ok_or_else(|| NetError::Io("nft has no stdin".into()))?
            .write_all(text.as_bytes())
            .map_err(|e| NetError::Io(format!("writing to nft: {e}")))?;
        let out = child
            .wait_with_output()
            .map_err(|e| NetError::Io(format!("running nft: {e}")))?;
        if !out.status.success() {
            return Err(NetError::Nft(format!(
                "{}\n--- ruleset ---\n{text}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
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
        let t = host_ruleset("qci_ab", "qnab*", &r);
        assert!(t.contains("ip daddr 192.0.2.10 tcp dport { 80, 443 } dnat to 100.127.128.0"));
        assert!(!t.contains("udp dport"));
        assert!(t.contains("ip saddr 100.127.0.3 snat to 192.0.2.11"));
        assert!(t.contains("iifname \"qnab*\" ip saddr { 100.127.128.0, 100.127.0.3 } accept"));
        let empty = host_ruleset("qci_ab", "qnab*", &HostRules::default());
        assert!(!empty.contains("ip saddr {"), "no empty set: {empty}");
    }
}
