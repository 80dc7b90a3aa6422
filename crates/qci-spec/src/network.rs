//! Networks: VPCs (private networks), the basic network, EIPs (published addresses) and
//! firewalls, and how a group names them.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::{FieldError, check_dns_label};

/// A group's network, in its spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// `basic` (the default without `vpc`), `vpc` (the default with it) or `none` (loopback
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetworkMode>,
    /// A VPC's name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// An EIP's name, id or address, or `auto` (one taken from the pool for this group and released
    /// with it). It publishes the group's declared ports and gives the group outbound access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip: Option<String>,
    /// A firewall's name or id: ingress it does not accept is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Basic,
    Vpc,
    None,
}

impl NetworkSpec {
    /// What the group joins.
    pub fn mode(&self) -> NetworkMode {
        self.mode.unwrap_or(if self.vpc.is_some() {
            NetworkMode::Vpc
        } else {
            NetworkMode::Basic
        })
    }
}

/// The EIP value that asks for a new address from the pool.
pub const AUTO_EIP: &str = "auto";

pub(crate) fn check_network(n: &NetworkSpec, errs: &mut Vec<FieldError>) {
    let ref_ok = |s: &str| !s.is_empty() && s.len() <= 64 && !s.contains(['/', '\0']);
    for (field, v) in [
        ("network.vpc", &n.vpc),
        ("network.eip", &n.eip),
        ("network.firewall", &n.firewall),
    ] {
        if let Some(v) = v
            && !ref_ok(v)
        {
            errs.push(FieldError::new(field, "must be a name or an id"));
        }
    }
    match n.mode() {
        NetworkMode::None if n.vpc.is_some() || n.eip.is_some() || n.firewall.is_some() => {
            errs.push(FieldError::new(
                "network.mode",
                "mode none (loopback only) takes no vpc, eip or firewall",
            ));
        }
        NetworkMode::Vpc if n.vpc.is_none() => {
            errs.push(FieldError::new("network.vpc", "mode vpc needs a vpc"));
        }
        NetworkMode::Basic if n.vpc.is_some() => {
            errs.push(FieldError::new(
                "network.mode",
                "mode basic cannot name a vpc",
            ));
        }
        _ => {}
    }
}

/// What a user asks for to make a VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// DNS label, unique among the owner's VPCs.
    pub name: String,
    /// An IPv4 block, /16 to /28 (e.g. 10.100.0.0/24). The first address is the gateway.
    pub cidr: String,
    /// A firewall guarding every group of the VPC (with the group's own, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Vpc {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub cidr: String,
    /// The firewall's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<String>,
    /// The EIP bound to the VPC (outbound access for its groups): its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip: Option<String>,
    /// Groups in it.
    pub groups: u32,
}

/// Checks a VPC spec; the parsed block on success.
pub fn validate_vpc(spec: &VpcSpec) -> Result<Ipv4Net, Vec<FieldError>> {
    let mut errs = Vec::new();
    if let Err(m) = check_dns_label(&spec.name) {
        errs.push(FieldError::new("name", m));
    }
    let net = parse_cidr(&spec.cidr).map_err(|m| errs.push(FieldError::new("cidr", m)));
    match net {
        Ok(n) if errs.is_empty() => Ok(n),
        _ => Err(errs),
    }
}

/// An IPv4 block between /16 and /28, given by its network address.
pub fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 block such as 10.100.0.0/24"))?;
    if net.network() != net.addr() {
        return Err(format!(
            "{s:?} is not the start of its block; did you mean {}?",
            net.trunc()
        ));
    }
    if !(16..=28).contains(&net.prefix_len()) {
        return Err(format!("{s:?}: the prefix must be between /16 and /28"));
    }
    if net.addr().is_loopback() || net.addr().is_multicast() || net.addr().is_unspecified() {
        return Err(format!("{s:?} is not a usable private block"));
    }
    Ok(net)
}

/// The addresses a group may get in `net`: all but the network address, the gateway (the
/// first host) and the broadcast address.
pub fn group_addresses(net: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    net.hosts().skip(1)
}

/// The gateway of `net`: its first host address.
pub fn gateway(net: Ipv4Net) -> Ipv4Addr {
    net.hosts().next().unwrap_or(net.addr())
}

/// A change to a VPC: its firewall (null or absent: none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcUpdate {
    #[serde(default)]
    pub firewall: Option<String>,
}

/// What a user asks for to make an EIP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EipSpec {
    /// DNS label, unique among the owner's EIPs; default: its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A particular address of the pool; default: the first free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// What an EIP is bound to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EipBinding {
    /// `group` or `vpc`.
    pub kind: String,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Eip {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub address: String,
    /// Made for a group by `eip: auto`; released with it.
    pub auto: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<EipBinding>,
}

/// A bind request: exactly one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EipBind {
    /// A VPC's name or id: its groups get outbound access through the EIP.
    pub vpc: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Accept,
    Drop,
}

/// One firewall rule. Rules are tried by priority (lowest first), then in order; ingress that
/// no rule accepts is dropped, egress that no rule drops passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    #[serde(default = "ingress")]
    pub direction: Direction,
    pub protocol: RuleProtocol,
    /// A port or a range "8000-8100" (tcp and udp only); none: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// The peer: the source of ingress, the destination of egress.
    #[serde(default = "any_cidr")]
    pub cidr: String,
    pub action: RuleAction,
    /// 1 to 1000, lowest first (default 100).
    #[serde(default = "default_priority")]
    pub priority: u32,
}

fn ingress() -> Direction {
    Direction::Ingress
}
fn any_cidr() -> String {
    "0.0.0.0/0".into()
}
fn default_priority() -> u32 {
    100
}

impl FirewallRule {
    /// Parses the CLI form: `ACTION PROTOCOL [PORTS] (from|to) CIDR [priority N]`, e.g.
    /// "accept tcp 8080 from 0.0.0.0/0" (ingress) or "drop udp 53 to 10.0.0.0/8" (egress).
    pub fn parse(s: &str) -> Result<FirewallRule, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let bad = |m: &str| format!("{s:?}: {m}; write e.g. \"accept tcp 8080 from 0.0.0.0/0\"");
        let mut it = words.iter().peekable();
        let action = match it.next().copied() {
            Some("accept") => RuleAction::Accept,
            Some("drop") => RuleAction::Drop,
            _ => return Err(bad("start with accept or drop")),
        };
        let protocol = match it.next().copied() {
            Some("tcp") => RuleProtocol::Tcp,
            Some("udp") => RuleProtocol::Udp,
            Some("icmp") => RuleProtocol::Icmp,
            Some("all") => RuleProtocol::All,
            _ => return Err(bad("the protocol is tcp, udp, icmp or all")),
        };
        let ports = match it.peek() {
            Some(w) if !matches!(**w, "from" | "to") => it.next().map(|p| p.to_string()),
            _ => None,
        };
        let direction = match it.next().copied() {
            Some("from") => Direction::Ingress,
            Some("to") => Direction::Egress,
            _ => return Err(bad("say `from CIDR` (ingress) or `to CIDR` (egress)")),
        };
        let cidr = it
            .next()
            .ok_or_else(|| bad("a CIDR follows from/to"))?
            .to_string();
        let priority = match (it.next().copied(), it.next()) {
            (None, _) => default_priority(),
            (Some("priority"), Some(n)) => n.parse().map_err(|_| bad("priority is a number"))?,
            _ => return Err(bad("only `priority N` may follow the CIDR")),
        };
        if it.next().is_some() {
            return Err(bad("unexpected words at the end"));
        }
        let rule = FirewallRule {
            direction,
            protocol,
            ports,
            cidr,
            action,
            priority,
        };
        let mut errs = Vec::new();
        check_rule(&rule, "rule", &mut errs);
        match errs.first() {
            Some(e) => Err(format!("{s:?}: {}", e.message)),
            None => Ok(rule),
        }
    }

    /// The port range, if the rule has one.
    pub fn port_range(&self) -> Option<(u16, u16)> {
        let p = self.ports.as_deref()?;
        let (a, b) = p.split_once('-').unwrap_or((p, p));
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    }
}

fn check_rule(r: &FirewallRule, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(p) = &r.ports {
        if !matches!(r.protocol, RuleProtocol::Tcp | RuleProtocol::Udp) {
            errs.push(FieldError::new(
                format!("{path}.ports"),
                "only tcp and udp rules take ports",
            ));
        } else {
            match r.port_range() {
                Some((a, b)) if a >= 1 && a <= b => {}
                _ => errs.push(FieldError::new(
                    format!("{path}.ports"),
                    format!("{p:?} is not a port (1-65535) or a range such as 8000-8100"),
                )),
            }
        }
    }
    match r.cidr.parse::<Ipv4Net>() {
        Ok(n) if n.network() == n.addr() => {}
        Ok(n) => errs.push(FieldError::new(
            format!("{path}.cidr"),
            format!(
                "{:?} is not the start of its block; did you mean {}?",
                r.cidr,
                n.trunc()
            ),
        )),
        Err(_) => match r.cidr.parse::<Ipv4Addr>() {
            Ok(_) => {}
            Err(_) => errs.push(FieldError::new(
                format!("{path}.cidr"),
                format!("{:?} is not an IPv4 address or block", r.cidr),
            )),
        },
    }
    if !(1..=1000).contains(&r.priority) {
        errs.push(FieldError::new(
            format!("{path}.priority"),
            "must be between 1 and 1000",
        ));
    }
}

/// What a user asks for to make (or replace) a firewall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    pub name: String,
    #[serde(default)]
    pub rules: Vec<FirewallRule>,
}

pub const MAX_FIREWALL_RULES: usize = 200;

pub fn validate_firewall(spec: &FirewallSpec) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    if let Err(m) = check_dns_label(&spec.name) {
        errs.push(FieldError::new("name", m));
    }
    if spec.rules.len() > MAX_FIREWALL_RULES {
        errs.push(FieldError::new(
            "rules",
            format!("at most {MAX_FIREWALL_RULES} rules"),
        ));
    }
    for (i, r) in spec.rules.iter().enumerate() {
        check_rule(r, &format!("rules[{i}]"), &mut errs);
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Firewall {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub rules: Vec<FirewallRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_the_cli_form() {
        let r = FirewallRule::parse("accept tcp 8080 from 0.0.0.0/0").unwrap();
        assert_eq!(r.direction, Direction::Ingress);
        assert_eq!(r.port_range(), Some((8080, 8080)));
        assert_eq!(r.priority, 100);
        let r = FirewallRule::parse("drop udp 5000-5100 to 10.0.0.0/8 priority 5").unwrap();
        assert_eq!(r.direction, Direction::Egress);
        assert_eq!(r.port_range(), Some((5000, 5100)));
        assert_eq!(r.priority, 5);
        let r = FirewallRule::parse("accept icmp from 192.0.2.7").unwrap();
        assert_eq!(r.ports, None);
        for bad in [
            "allow tcp 80 from 0.0.0.0/0",
            "accept sctp 80 from 0.0.0.0/0",
            "accept tcp 80 0.0.0.0/0",
            "accept tcp 0 from 0.0.0.0/0",
            "accept tcp 90-80 from 0.0.0.0/0",
            "accept icmp 80 from 0.0.0.0/0",
            "accept tcp 80 from 10.0.0.1/8",
            "accept tcp 80 from 0.0.0.0/0 priority 0",
            "accept tcp 80 from 0.0.0.0/0 extra",
        ] {
            assert!(FirewallRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vpc_blocks_are_checked() {
        assert!(parse_cidr("10.100.0.0/24").is_ok());
        assert!(
            parse_cidr("10.100.0.1/24")
                .unwrap_err()
                .contains("10.100.0.0/24")
        );
        assert!(parse_cidr("10.0.0.0/8").is_err());
        assert!(parse_cidr("10.0.0.0/30").is_err());
        assert!(parse_cidr("127.0.0.0/24").is_err());
        assert!(parse_cidr("nope").is_err());
        let net = parse_cidr("10.1.2.0/28").unwrap();
        assert_eq!(gateway(net), Ipv4Addr::new(10, 1, 2, 1));
        let a: Vec<_> = group_addresses(net).collect();
        assert_eq!(a.first(), Some(&Ipv4Addr::new(10, 1, 2, 2)));
        assert_eq!(a.last(), Some(&Ipv4Addr::new(10, 1, 2, 14)));
    }

    #[test]
    fn a_group_network_is_consistent() {
        let check = |n: NetworkSpec| {
            let mut e = Vec::new();
            check_network(&n, &mut e);
            e.into_iter().map(|e| e.field).collect::<Vec<_>>()
        };
        assert!(check(NetworkSpec::default()).is_empty());
        assert_eq!(
            check(NetworkSpec {
                mode: Some(NetworkMode::None),
                eip: Some("auto".into()),
                ..Default::default()
            }),
            vec!["network.mode"]
        );
        assert_eq!(
            check(NetworkSpec {
                mode: Some(NetworkMode::Vpc),
                ..Default::default()
            }),
            vec!["network.vpc"]
        );
    }
}
