//! VPCs, EIPs, firewalls, and each group's place in a network (`group_networks`: its address,
//! its EIP, its firewall). A group's row there is made in the transaction that creates the
//! group and dropped in the one that removes it, so an address or an EIP is never given twice.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use qci_spec::{
    AUTO_EIP, Eip, EipBinding, Firewall, FirewallRule, FirewallSpec, GroupSpec, NetworkMode,
    QuotaUse, Vpc, VpcSpec,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Result, Store, StoreError, unique};

/// The id of the basic network (VPC ids start with `vpc-`).
pub const BASIC_NETWORK: &str = "basic";

/// What the server configured: the basic network's block and the EIP pool.
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    /// None: the basic network is off (groups without a VPC get loopback only).
    pub basic_cidr: Option<Ipv4Net>,
    pub eip_pool: Vec<Ipv4Addr>,
}

pub(crate) type SharedNetConfig = Arc<RwLock<NetConfig>>;

/// A network as the node agent builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRecord {
    /// `basic` or a VPC id.
    pub id: String,
    pub cidr: Ipv4Net,
    /// Its index among networks (the basic network is 0): picks its uplink addresses.
    pub slot: u32,
    /// The EIP bound to the VPC, for outbound access.
    pub eip: Option<Ipv4Addr>,
    pub firewall: Option<String>,
}

/// A group's place in a network.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupNetwork {
    pub group_id: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub eip: Option<Ipv4Addr>,
    pub firewall: Option<String>,
}

fn net_err(field: &str, message: impl Into<String>) -> StoreError {
    StoreError::Network {
        field: field.to_string(),
        message: message.into(),
    }
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// Finds an owner's row id in `table` by id or else by name.
fn resolve(
    conn: &Connection,
    table: &str,
    owner: &str,
    id_or_name: &str,
) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT id FROM {table} WHERE owner = ?1 AND (id = ?2 OR name = ?2) ORDER BY id = ?2 DESC LIMIT 1"
            ),
            params![owner, id_or_name],
            |r| r.get(0),
        )
        .optional()?)
}

/// Places a new group in its network, inside the caller's transaction: an address, its EIP
/// (a free one named, or a new one from the pool for `auto`) and its firewall.
pub(crate) fn attach(
    conn: &Connection,
    cfg: &NetConfig,
    owner: &str,
    group_id: &str,
    spec: &GroupSpec,
) -> Result<()> {
    let n = spec.network.clone().unwrap_or_default();
    let (network, cidr) = match n.mode() {
        NetworkMode::None => return Ok(()),
        NetworkMode::Basic => match cfg.basic_cidr {
            Some(c) => (BASIC_NETWORK.to_string(), c),
            None => {
                if n.eip.is_some() || n.firewall.is_some() {
                    return Err(net_err(
                        "network",
                        "this server runs without a basic network (qci serve --basic-subnet none): name a vpc, or mode none",
                    ));
                }
                return Ok(());
            }
        },
        NetworkMode::Vpc => {
            let want = n.vpc.as_deref().unwrap_or_default();
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT id, cidr FROM vpcs WHERE owner = ?1 AND (id = ?2 OR name = ?2) ORDER BY id = ?2 DESC LIMIT 1",
                    params![owner, want],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (id, cidr) =
                row.ok_or_else(|| net_err("network.vpc", format!("no VPC {want:?}")))?;
            let cidr = cidr.parse().map_err(|_| {
                net_err(
                    "network.vpc",
                    format!("VPC {want:?} has a bad block {cidr:?}"),
                )
            })?;
            (id, cidr)
        }
    };
    // A set of parsed addresses: comparing each candidate with every used address as text
    // was quadratic, and with a thousand groups took a third of the server's CPU.
    let used: std::collections::HashSet<Ipv4Addr> = {
        let mut st = conn.prepare("SELECT ip FROM group_networks WHERE network = ?1")?;
        st.query_map(params![network], |r| r.get::<_, String>(0))?
            .filter_map(|ip| ip.map(|ip| ip.parse().ok()).transpose())
            .collect::<rusqlite::Result<_>>()?
    };
    let ip = qci_spec::group_addresses(cidr)
        .find(|a| !used.contains(a))
        .ok_or_else(|| {
            net_err(
                if network == BASIC_NETWORK {
                    "network"
                } else {
                    "network.vpc"
                },
                format!(
                    "no address is free in {cidr} (its {} addresses are all in use)",
                    used.len()
                ),
            )
        })?;
    let firewall = match &n.firewall {
        None => None,
        Some(f) => Some(
            resolve(conn, "firewalls", owner, f)?
                .ok_or_else(|| net_err("network.firewall", format!("no firewall {f:?}")))?,
        ),
    };
    let eip = match n.eip.as_deref() {
        None => None,
        Some(AUTO_EIP) => {
            let address = free_pool_address(conn, cfg)?.ok_or_else(|| {
                net_err(
                    "network.eip",
                    "the EIP pool has no free address (qci serve --eip-pool)",
                )
            })?;
            let id = new_id("eip");
            conn.execute(
                "INSERT INTO eips (id, owner, name, address, auto, created_at) VALUES (?1, ?2, ?1, ?3, 1, ?4)",
                params![id, owner, address.to_string(), Utc::now().to_rfc3339()],
            )?;
            Some(id)
        }
        Some(e) => {
            let row: Option<(String, Option<String>, Option<String>)> = conn
                .query_row(
                    "SELECT e.id, g.name, v.name FROM eips e
                     LEFT JOIN group_networks gn ON gn.eip = e.id
                     LEFT JOIN container_groups g ON g.id = gn.group_id
                     LEFT JOIN vpcs v ON v.eip = e.id
                     WHERE e.owner = ?1 AND (e.id = ?2 OR e.name = ?2 OR e.address = ?2) ORDER BY e.id = ?2 DESC LIMIT 1",
                    params![owner, e],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            match row {
                None => return Err(net_err("network.eip", format!("no EIP {e:?}"))),
                Some((_, Some(g), _)) => {
                    return Err(net_err(
                        "network.eip",
                        format!("EIP {e:?} is already bound to group {g:?}"),
                    ));
                }
                Some((_, _, Some(v))) => {
                    return Err(net_err(
                        "network.eip",
                        format!("EIP {e:?} is already bound to VPC {v:?}"),
                    ));
                }
                Some((id, None, None)) => Some(id),
            }
        }
    };
    conn.execute(
        "INSERT INTO group_networks (group_id, network, ip, eip, firewall) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![group_id, network, ip.to_string(), eip, firewall],
    )?;
    Ok(())
}

/// The first pool address no EIP has.
fn free_pool_address(conn: &Connection, cfg: &NetConfig) -> Result<Option<Ipv4Addr>> {
    let used: std::collections::HashSet<Ipv4Addr> = {
        let mut st = conn.prepare("SELECT address FROM eips")?;
        st.query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|a| a.map(|a| a.parse().ok()).transpose())
            .collect::<rusqlite::Result<_>>()?
    };
    Ok(cfg.eip_pool.iter().copied().find(|a| !used.contains(a)))
}

/// Drops a group's place (its address, and its EIP if `auto` made it), inside the caller's
/// transaction.
pub(crate) fn detach(conn: &Connection, group_id: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM eips WHERE auto = 1 AND id IN (SELECT eip FROM group_networks WHERE group_id = ?1)",
        params![group_id],
    )?;
    conn.execute(
        "DELETE FROM group_networks WHERE group_id = ?1",
        params![group_id],
    )?;
    Ok(())
}

const VPC_COLUMNS: &str = "v.id, v.name, v.owner, v.created_at, v.cidr, v.firewall, e.address,
    (SELECT COUNT(*) FROM group_networks gn WHERE gn.network = v.id)";

fn read_vpc(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vpc> {
    let created: String = r.get(3)?;
    Ok(Vpc {
        id: r.get(0)?,
        name: r.get(1)?,
        owner: r.get(2)?,
        created_at: time(&created),
        cidr: r.get(4)?,
        firewall: r.get(5)?,
        eip: r.get(6)?,
        groups: r.get::<_, i64>(7)?.max(0) as u32,
    })
}

const EIP_COLUMNS: &str = "e.id, e.name, e.owner, e.created_at, e.address, e.auto,
    gn.group_id, g.name, v.id, v.name";

fn read_eip(r: &rusqlite::Row<'_>) -> rusqlite::Result<Eip> {
    let created: String = r.get(3)?;
    let group: (Option<String>, Option<String>) = (r.get(6)?, r.get(7)?);
    let vpc: (Option<String>, Option<String>) = (r.get(8)?, r.get(9)?);
    let bound_to = match (group, vpc) {
        ((Some(id), name), _) => Some(EipBinding {
            kind: "group".into(),
            name: name.unwrap_or_else(|| id.clone()),
            id,
        }),
        (_, (Some(id), name)) => Some(EipBinding {
            kind: "vpc".into(),
            name: name.unwrap_or_else(|| id.clone()),
            id,
        }),
        _ => None,
    };
    Ok(Eip {
        id: r.get(0)?,
        name: r.get(1)?,
        owner: r.get(2)?,
        created_at: time(&created),
        address: r.get(4)?,
        auto: r.get::<_, i64>(5)? != 0,
        bound_to,
    })
}

const EIP_FROM: &str = "eips e
    LEFT JOIN group_networks gn ON gn.eip = e.id
    LEFT JOIN container_groups g ON g.id = gn.group_id
    LEFT JOIN vpcs v ON v.eip = e.id";

fn read_firewall(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Firewall>> {
    let created: String = r.get(3)?;
    let rules: String = r.get(4)?;
    let (id, name, owner) = (r.get(0)?, r.get(1)?, r.get(2)?);
    Ok(serde_json::from_str::<Vec<FirewallRule>>(&rules)
        .map_err(StoreError::from)
        .map(|rules| Firewall {
            id,
            name,
            owner,
            created_at: time(&created),
            rules,
        }))
}

impl Store {
    /// The network settings of this server (set once at start).
    pub fn set_net_config(&self, cfg: NetConfig) {
        *self.net.write().unwrap_or_else(|p| p.into_inner()) = cfg;
    }

    pub fn net_config(&self) -> NetConfig {
        self.net.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stores a VPC (its block already checked against the host and the other networks).
    pub fn create_vpc(&self, owner: &str, spec: &VpcSpec) -> Result<Vpc> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let firewall = match &spec.firewall {
            None => None,
            Some(f) => Some(
                resolve(&tx, "firewalls", owner, f)?
                    .ok_or_else(|| net_err("firewall", format!("no firewall {f:?}")))?,
            ),
        };
        // The lowest slot no VPC has (0 is the basic network's).
        let slot: i64 = tx.query_row(
            "SELECT COALESCE(MIN(s.slot + 1), 1) FROM (SELECT 0 AS slot UNION SELECT slot FROM vpcs) s
             WHERE s.slot + 1 NOT IN (SELECT slot FROM vpcs)",
            [],
            |r| r.get(0),
        )?;
        let id = new_id("vpc");
        let r = tx.execute(
            "INSERT INTO vpcs (id, owner, name, cidr, firewall, slot, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![id, owner, spec.name, spec.cidr, firewall, slot, Utc::now().to_rfc3339()],
        );
        unique(r, || StoreError::Taken("VPC", spec.name.clone()))?;
        let asked = QuotaUse {
            vpcs: 1,
            ..Default::default()
        };
        crate::tenants::enforce_after(&tx, owner, &asked)?;
        tx.commit()?;
        drop(conn);
        self.find_vpc(owner, &id)
    }

    pub fn find_vpc(&self, owner: &str, id_or_name: &str) -> Result<Vpc> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {VPC_COLUMNS} FROM vpcs v LEFT JOIN eips e ON e.id = v.eip
                     WHERE v.owner = ?1 AND (v.id = ?2 OR v.name = ?2) ORDER BY v.id = ?2 DESC LIMIT 1"
                ),
                params![owner, id_or_name],
                read_vpc,
            )
            .optional()?
            .ok_or_else(|| StoreError::Missing("VPC", id_or_name.to_string()))
    }

    pub fn list_vpcs(&self, owner: Option<&str>) -> Result<Vec<Vpc>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {VPC_COLUMNS} FROM vpcs v LEFT JOIN eips e ON e.id = v.eip
             WHERE ?1 IS NULL OR v.owner = ?1 ORDER BY v.created_at, v.id"
        ))?;
        let rows = st.query_map(params![owner], read_vpc)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets or clears a VPC's firewall (its groups follow on their next pass).
    pub fn set_vpc_firewall(&self, owner: &str, id: &str, firewall: Option<&str>) -> Result<Vpc> {
        let v = self.find_vpc(owner, id)?;
        let conn = self.conn();
        let fw = match firewall {
            None => None,
            Some(f) => Some(
                resolve(&conn, "firewalls", owner, f)?
                    .ok_or_else(|| net_err("firewall", format!("no firewall {f:?}")))?,
            ),
        };
        conn.execute(
            "UPDATE vpcs SET firewall = ?2 WHERE id = ?1",
            params![v.id, fw],
        )?;
        drop(conn);
        self.find_vpc(owner, &v.id)
    }

    /// Removes a VPC no group uses (its EIP, if bound, is let go).
    pub fn remove_vpc(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let groups: Vec<String> = {
            let mut st = conn.prepare(
                "SELECT g.name FROM group_networks gn JOIN container_groups g ON g.id = gn.group_id WHERE gn.network = ?1 ORDER BY g.name",
            )?;
            st.query_map(params![id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        if !groups.is_empty() {
            return Err(StoreError::InUse(format!(
                "VPC {id:?} is used by group(s) {}; delete them first",
                groups.join(", ")
            )));
        }
        conn.execute("DELETE FROM vpcs WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Every network: the basic one (if the server has one) and every VPC.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let cfg = self.net_config();
        let conn = self.conn();
        let mut out = Vec::new();
        if let Some(cidr) = cfg.basic_cidr {
            out.push(NetworkRecord {
                id: BASIC_NETWORK.into(),
                cidr,
                slot: 0,
                eip: None,
                firewall: None,
            });
        }
        let mut st = conn.prepare(
            "SELECT v.id, v.cidr, v.slot, e.address, v.firewall FROM vpcs v LEFT JOIN eips e ON e.id = v.eip ORDER BY v.slot",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        for row in rows {
            let (id, cidr, slot, eip, firewall) = row?;
            let Ok(cidr) = cidr.parse() else { continue };
            out.push(NetworkRecord {
                id,
                cidr,
                slot: slot.max(0) as u32,
                eip: eip.and_then(|a| a.parse().ok()),
                firewall,
            });
        }
        Ok(out)
    }

    /// Every group's place in a network.
    pub fn group_networks(&self) -> Result<Vec<GroupNetwork>> {
        self.query_group_networks(None)
    }

    /// How many groups have a place in `network`.
    pub fn network_members(&self, network: &str) -> Result<usize> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM group_networks WHERE network = ?1",
            params![network],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// The groups that have a place in `network`.
    pub fn network_member_ids(&self, network: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut st =
            conn.prepare_cached("SELECT group_id FROM group_networks WHERE network = ?1")?;
        let ids = st
            .query_map(params![network], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// One group's place, if it has one.
    pub fn group_network(&self, group_id: &str) -> Result<Option<GroupNetwork>> {
        Ok(self.query_group_networks(Some(group_id))?.pop())
    }

    fn query_group_networks(&self, group_id: Option<&str>) -> Result<Vec<GroupNetwork>> {
        let conn = self.conn();
        // (Two statements: `?1 IS NULL OR group_id = ?1` would scan the table for one group.)
        let mut st = conn.prepare_cached(if group_id.is_some() {
            "SELECT gn.group_id, gn.network, gn.ip, e.address, gn.firewall FROM group_networks gn
             LEFT JOIN eips e ON e.id = gn.eip WHERE gn.group_id = ?1"
        } else {
            "SELECT gn.group_id, gn.network, gn.ip, e.address, gn.firewall FROM group_networks gn
             LEFT JOIN eips e ON e.id = gn.eip WHERE ?1 IS NULL ORDER BY gn.group_id"
        })?;
        let rows = st.query_map(params![group_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (group_id, network, ip, eip, firewall) = row?;
            let Ok(ip) = ip.parse() else { continue };
            out.push(GroupNetwork {
                group_id,
                network,
                ip,
                eip: eip.and_then(|a| a.parse().ok()),
                firewall,
            });
        }
        Ok(out)
    }

    /// Changes a group's firewall (an update may; nothing else of its network changes).
    pub fn set_group_firewall(
        &self,
        owner: &str,
        group_id: &str,
        firewall: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn();
        let id = match firewall {
            None => None,
            Some(f) => Some(
                resolve(&conn, "firewalls", owner, f)?
                    .ok_or_else(|| net_err("network.firewall", format!("no firewall {f:?}")))?,
            ),
        };
        conn.execute(
            "UPDATE group_networks SET firewall = ?2 WHERE group_id = ?1",
            params![group_id, id],
        )?;
        Ok(())
    }

    /// Makes an EIP from the pool: `address` if given (it must be in the pool and free), else
    /// the first free one.
    pub fn create_eip(
        &self,
        owner: &str,
        name: Option<&str>,
        address: Option<Ipv4Addr>,
    ) -> Result<Eip> {
        let cfg = self.net_config();
        let mut guard = self.conn();
        let conn = guard.transaction()?;
        let address = match address {
            Some(a) => {
                if !cfg.eip_pool.contains(&a) {
                    return Err(net_err(
                        "address",
                        format!("{a} is not in this server's EIP pool (qci serve --eip-pool)"),
                    ));
                }
                a
            }
            None => free_pool_address(&conn, &cfg)?.ok_or_else(|| {
                net_err(
                    "address",
                    if cfg.eip_pool.is_empty() {
                        "this server has no EIP pool (qci serve --eip-pool)".to_string()
                    } else {
                        format!(
                            "all {} addresses of the EIP pool are taken",
                            cfg.eip_pool.len()
                        )
                    },
                )
            })?,
        };
        let id = new_id("eip");
        let name = name.unwrap_or(&id).to_string();
        let r = conn.execute(
            "INSERT INTO eips (id, owner, name, address, auto, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            params![id, owner, name, address.to_string(), Utc::now().to_rfc3339()],
        );
        match unique(r, || StoreError::Taken("EIP", name.clone())) {
            // The address may be what collided.
            Err(StoreError::Taken(..)) => {
                let taken: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM eips WHERE address = ?1)",
                    params![address.to_string()],
                    |r| r.get(0),
                )?;
                return Err(if taken {
                    net_err("address", format!("{address} is already an EIP"))
                } else {
                    StoreError::Taken("EIP", name)
                });
            }
            r => r?,
        }
        let asked = QuotaUse {
            eips: 1,
            ..Default::default()
        };
        crate::tenants::enforce_after(&conn, owner, &asked)?;
        conn.commit()?;
        drop(guard);
        self.find_eip(owner, &id)
    }

    pub fn find_eip(&self, owner: &str, id_or_name: &str) -> Result<Eip> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {EIP_COLUMNS} FROM {EIP_FROM}
                     WHERE e.owner = ?1 AND (e.id = ?2 OR e.name = ?2 OR e.address = ?2) ORDER BY e.id = ?2 DESC LIMIT 1"
                ),
                params![owner, id_or_name],
                read_eip,
            )
            .optional()?
            .ok_or_else(|| StoreError::Missing("EIP", id_or_name.to_string()))
    }

    pub fn list_eips(&self, owner: Option<&str>) -> Result<Vec<Eip>> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {EIP_COLUMNS} FROM {EIP_FROM} WHERE ?1 IS NULL OR e.owner = ?1 ORDER BY e.created_at, e.id"
        ))?;
        let rows = st.query_map(params![owner], read_eip)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Releases an EIP that nothing is bound to.
    pub fn remove_eip(&self, owner: &str, id: &str) -> Result<()> {
        let e = self.find_eip(owner, id)?;
        if let Some(b) = &e.bound_to {
            return Err(StoreError::InUse(format!(
                "EIP {} is bound to {} {:?}; {}",
                e.address,
                b.kind,
                b.name,
                if b.kind == "vpc" {
                    "unbind it first"
                } else {
                    "delete the group first"
                }
            )));
        }
        self.conn()
            .execute("DELETE FROM eips WHERE id = ?1", params![e.id])?;
        Ok(())
    }

    /// Binds a free EIP to a VPC (outbound access for its groups).
    pub fn bind_eip_to_vpc(&self, owner: &str, eip: &str, vpc: &str) -> Result<Eip> {
        let e = self.find_eip(owner, eip)?;
        if let Some(b) = &e.bound_to {
            return Err(StoreError::InUse(format!(
                "EIP {} is already bound to {} {:?}",
                e.address, b.kind, b.name
            )));
        }
        let v = self.find_vpc(owner, vpc)?;
        if let Some(a) = &v.eip {
            return Err(StoreError::InUse(format!(
                "VPC {:?} already has EIP {a}",
                v.name
            )));
        }
        self.conn().execute(
            "UPDATE vpcs SET eip = ?2 WHERE id = ?1",
            params![v.id, e.id],
        )?;
        self.find_eip(owner, &e.id)
    }

    /// Unbinds an EIP from its VPC (a group's EIP goes with the group).
    pub fn unbind_eip(&self, owner: &str, eip: &str) -> Result<Eip> {
        let e = self.find_eip(owner, eip)?;
        match &e.bound_to {
            Some(b) if b.kind == "group" => {
                return Err(StoreError::InUse(format!(
                    "EIP {} is bound to group {:?} by its spec; it is released when the group is deleted",
                    e.address, b.name
                )));
            }
            _ => {}
        }
        self.conn()
            .execute("UPDATE vpcs SET eip = NULL WHERE eip = ?1", params![e.id])?;
        self.find_eip(owner, &e.id)
    }

    pub fn create_firewall(&self, owner: &str, spec: &FirewallSpec) -> Result<Firewall> {
        let id = new_id("fw");
        let r = self.conn().execute(
            "INSERT INTO firewalls (id, owner, name, rules, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, owner, spec.name, serde_json::to_string(&spec.rules)?, Utc::now().to_rfc3339()],
        );
        unique(r, || StoreError::Taken("firewall", spec.name.clone()))?;
        self.find_firewall(owner, &id)
    }

    pub fn find_firewall(&self, owner: &str, id_or_name: &str) -> Result<Firewall> {
        self.conn()
            .query_row(
                "SELECT id, name, owner, created_at, rules FROM firewalls
                 WHERE owner = ?1 AND (id = ?2 OR name = ?2) ORDER BY id = ?2 DESC LIMIT 1",
                params![owner, id_or_name],
                read_firewall,
            )
            .optional()?
            .unwrap_or_else(|| Err(StoreError::Missing("firewall", id_or_name.to_string())))
    }

    /// A firewall by id, whoever owns it (for the node agent).
    pub fn firewall_by_id(&self, id: &str) -> Result<Option<Firewall>> {
        self.conn()
            .query_row(
                "SELECT id, name, owner, created_at, rules FROM firewalls WHERE id = ?1",
                params![id],
                read_firewall,
            )
            .optional()?
            .transpose()
    }

    pub fn list_firewalls(&self, owner: Option<&str>) -> Result<Vec<Firewall>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, name, owner, created_at, rules FROM firewalls WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, id",
        )?;
        let rows = st.query_map(params![owner], read_firewall)?;
        rows.map(|r| r?).collect()
    }

    /// Replaces a firewall's rules; running groups get them on the next pass.
    pub fn set_firewall_rules(&self, id: &str, rules: &[FirewallRule]) -> Result<()> {
        self.conn().execute(
            "UPDATE firewalls SET rules = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(rules)?],
        )?;
        Ok(())
    }

    /// Removes a firewall nothing uses.
    pub fn remove_firewall(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let users: Vec<String> = {
            let mut st = conn.prepare(
                "SELECT 'group ' || g.name FROM group_networks gn JOIN container_groups g ON g.id = gn.group_id WHERE gn.firewall = ?1
                 UNION ALL SELECT 'VPC ' || name FROM vpcs WHERE firewall = ?1",
            )?;
            st.query_map(params![id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        if !users.is_empty() {
            return Err(StoreError::InUse(format!(
                "firewall {id:?} is used by {}",
                users.join(", ")
            )));
        }
        conn.execute("DELETE FROM firewalls WHERE id = ?1", params![id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, network: &str) -> GroupSpec {
        qci_spec::parse_spec(&format!(
            "name: {name}\nnetwork: {network}\ncontainers:\n  - {{name: a, image: bb}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn addresses_and_eips_are_given_once_and_taken_back() {
        let s = Store::open_in_memory().unwrap();
        s.set_net_config(NetConfig {
            basic_cidr: Some("172.31.0.0/28".parse().unwrap()),
            eip_pool: vec![Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)],
        });
        let a = s.create_group("o", &group("a", "{}")).unwrap();
        let b = s.create_group("o", &group("b", "{eip: auto}")).unwrap();
        let na = s.group_network(&a.id).unwrap().unwrap();
        let nb = s.group_network(&b.id).unwrap().unwrap();
        assert_eq!(na.ip, Ipv4Addr::new(172, 31, 0, 2));
        assert_eq!(nb.ip, Ipv4Addr::new(172, 31, 0, 3));
        assert_eq!(nb.eip, Some(Ipv4Addr::new(192, 0, 2, 10)));

        // Two VPCs may share a block; each gives its own addresses.
        let vpc = |n: &str| VpcSpec {
            name: n.into(),
            cidr: "10.9.0.0/24".into(),
            firewall: None,
        };
        let v1 = s.create_vpc("o", &vpc("v1")).unwrap();
        s.create_vpc("o", &vpc("v2")).unwrap();
        let c = s.create_group("o", &group("c", "{vpc: v1}")).unwrap();
        let d = s.create_group("o", &group("d", "{vpc: v2}")).unwrap();
        assert_eq!(
            s.group_network(&c.id).unwrap().unwrap().ip,
            s.group_network(&d.id).unwrap().unwrap().ip
        );
        let slots: Vec<u32> = s.networks().unwrap().iter().map(|n| n.slot).collect();
        assert_eq!(slots, vec![0, 1, 2]);

        // A named EIP bound elsewhere is refused, naming where; an unknown VPC too.
        let e = s.create_eip("o", Some("pub"), None).unwrap();
        assert_eq!(e.address, "192.0.2.11");
        assert!(s.create_eip("o", None, None).is_err(), "the pool is empty");
        s.bind_eip_to_vpc("o", "pub", "v1").unwrap();
        let err = s.create_group("o", &group("x", "{eip: pub}")).unwrap_err();
        assert!(
            err.to_string().contains("already bound to VPC \"v1\""),
            "{err}"
        );
        let err = s.create_group("o", &group("x", "{vpc: nope}")).unwrap_err();
        assert!(err.to_string().starts_with("network.vpc: no VPC"), "{err}");
        assert!(s.find_group("o", "x").is_err());
        assert!(s.remove_vpc(&v1.id).is_err(), "v1 has a group");

        // Removing a group frees its address and its auto EIP.
        s.remove_group(&b.id).unwrap();
        assert!(s.group_network(&b.id).unwrap().is_none());
        assert_eq!(s.list_eips(None).unwrap().len(), 1);
        let again = s.create_group("o", &group("b2", "{eip: auto}")).unwrap();
        let n = s.group_network(&again.id).unwrap().unwrap();
        assert_eq!(
            (n.ip, n.eip),
            (
                Ipv4Addr::new(172, 31, 0, 3),
                Some(Ipv4Addr::new(192, 0, 2, 10))
            )
        );
        // A /28 has 13 addresses for groups.
        for i in 0..11 {
            s.create_group("o", &group(&format!("f{i}"), "{}")).unwrap();
        }
        let err = s.create_group("o", &group("full", "{}")).unwrap_err();
        assert!(err.to_string().contains("no address is free"), "{err}");
        s.remove_group(&c.id).unwrap();
        s.unbind_eip("o", "pub").unwrap();
        s.remove_vpc(&v1.id).unwrap();
    }
}
