//! Groups' networks: the plan (from the store) handed to the network driver, each group's
//! attachment after its sandbox exists, and its detachment before its sandbox goes.

use std::sync::Arc;

use qci_network::{GroupPlan, NetworkDriver, NetworkPlan};
use qci_spec::{ContainerGroup, EventType, GroupStatus, Protocol};

use crate::{Controller, ControllerError};

/// Firewall rules by firewall id (None: no such firewall), read once per plan.
type Firewalls = std::collections::HashMap<String, Option<Vec<qci_spec::FirewallRule>>>;

impl Controller {
    /// Uses `driver` for groups' networks (without one, groups have loopback only).
    pub fn set_network(&self, driver: Arc<dyn NetworkDriver>) {
        let _ = self.network.set(driver);
    }

    /// A group's place as the driver wants it: ports from its spec, the rules of its own and
    /// its VPC's firewall.
    /// (`firewalls` keeps the rules read so far: a plan for every group reads each once.)
    fn group_plan(
        &self,
        g: &ContainerGroup,
        gn: qci_store::GroupNetwork,
        nets: &[qci_store::NetworkRecord],
        firewalls: &mut Firewalls,
    ) -> Result<GroupPlan, ControllerError> {
        let mut rules =
            |id: Option<String>| -> Result<Option<Vec<qci_spec::FirewallRule>>, ControllerError> {
                let Some(id) = id else {
                    return Ok(None);
                };
                if let Some(r) = firewalls.get(&id) {
                    return Ok(r.clone());
                }
                let r = self.store.firewall_by_id(&id)?.map(|f| f.rules);
                firewalls.insert(id, r.clone());
                Ok(r)
            };
        let ports = |p: Protocol| -> Vec<u16> {
            let mut v: Vec<u16> = g
                .spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .filter(|x| x.protocol == p)
                .filter_map(|x| u16::try_from(x.port).ok())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let vpc_fw = nets
            .iter()
            .find(|n| n.id == gn.network)
            .and_then(|n| n.firewall.clone());
        let firewall = match (rules(vpc_fw)?, rules(gn.firewall)?) {
            (None, None) => None,
            (a, b) => Some(a.into_iter().chain(b).flatten().collect()),
        };
        Ok(GroupPlan {
            group_id: gn.group_id,
            network: gn.network,
            ip: gn.ip,
            eip: gn.eip,
            tcp: ports(Protocol::TCP),
            udp: ports(Protocol::UDP),
            firewall,
        })
    }

    fn network_record(n: qci_store::NetworkRecord) -> NetworkPlan {
        NetworkPlan {
            id: n.id,
            cidr: n.cidr,
            slot: n.slot,
            eip: n.eip,
        }
    }

    /// What every network and every group's place should be, leaving out group `leaving`
    /// (one being deleted, already unplugged). The basic network exists while groups use it.
    fn network_plan(
        &self,
        leaving: Option<&str>,
    ) -> Result<(Vec<NetworkPlan>, Vec<GroupPlan>), ControllerError> {
        let nets = self.store.networks()?;
        let mut firewalls = Firewalls::new();
        let mut plans = Vec::new();
        let detached = self
            .detached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for gn in self.store.group_networks()? {
            if Some(gn.group_id.as_str()) == leaving || detached.contains(&gn.group_id) {
                continue;
            }
            if gn.eip.is_none() {
                // A sync uses only what a group publishes on its EIP; one without needs no
                // more than its address (and its row is not read: a sync runs every pass).
                plans.push(GroupPlan {
                    group_id: gn.group_id,
                    network: gn.network,
                    ip: gn.ip,
                    eip: None,
                    tcp: vec![],
                    udp: vec![],
                    firewall: None,
                });
            } else if let Some(g) = self.store.get_group(&gn.group_id)? {
                plans.push(self.group_plan(&g, gn, &nets, &mut firewalls)?);
            }
        }
        // The basic network lives while groups use it, and a while after.
        let basic_recent = {
            let in_use = plans.iter().any(|p| p.network == qci_store::BASIC_NETWORK);
            let mut used = self.basic_used.lock().unwrap_or_else(|p| p.into_inner());
            if in_use {
                *used = Some(std::time::Instant::now());
            }
            used.is_some_and(|t| t.elapsed() < self.config.basic_network_linger)
        };
        let stopping = self.stopping();
        let nets = nets
            .into_iter()
            .filter(|n| {
                let in_use = plans.iter().any(|p| p.network == n.id);
                keep_network(&n.id, in_use, basic_recent, stopping)
            })
            .map(Self::network_record)
            .collect();
        Ok((nets, plans))
    }

    /// Brings networks, uplinks and NAT in line with the store (one at a time).
    pub(crate) async fn sync_networks(&self, leaving: Option<&str>) -> Result<(), ControllerError> {
        let Some(driver) = self.network.get().cloned() else {
            return Ok(());
        };
        let _one = self.net_lock.lock().await;
        let (nets, groups) = self.network_plan(leaving)?;
        tokio::task::spawn_blocking(move || driver.sync(&nets, &groups)).await??;
        Ok(())
    }

    /// Connects the group's sandbox to its network and loads its firewall; records its
    /// address in its status. False (with the reason in the status) while it cannot.
    pub(crate) async fn attach_network(
        &self,
        g: &mut ContainerGroup,
    ) -> Result<bool, ControllerError> {
        let Some(driver) = self.network.get().cloned() else {
            return Ok(true);
        };
        let Some(gn) = self.store.group_network(&g.id)? else {
            return Ok(true);
        };
        let netns = self.runtime.layout.sandbox_dir(&g.id).join("net");
        let res = async {
            // A group new to its network: make sure the network (and the host's rules for
            // the group's EIP) exist before plugging in. A group with no EIP changes no rule
            // outside its own namespace, so when its network is there it plugs straight in;
            // a sync reads every group, and one per new group made creating many quadratic.
            let t = std::time::Instant::now();
            let nets = self.store.networks()?;
            let built = nets
                .iter()
                .find(|n| n.id == gn.network)
                .is_some_and(|n| driver.ready(&Self::network_record(n.clone())));
            if !netns.with_file_name("network").exists() && (gn.eip.is_some() || !built) {
                self.sync_networks(None).await?;
            }
            tracing::debug!(group = %g.id, ms = t.elapsed().as_secs_f64() * 1000.0, "network sync");
            let nets = self.store.networks()?;
            let plan = self.group_plan(g, gn.clone(), &nets, &mut Firewalls::new())?;
            let net = nets
                .into_iter()
                .find(|n| n.id == gn.network)
                .map(Self::network_record)
                .ok_or_else(|| ControllerError::NetworkGone(gn.network.clone()))?;
            let t = std::time::Instant::now();
            let r = tokio::task::spawn_blocking(move || {
                driver.attach(&net, &plan, &netns)?;
                driver.firewall(&plan, &netns)
            })
            .await;
            tracing::debug!(ms = t.elapsed().as_secs_f64() * 1000.0, "network attach");
            r??;
            Ok::<(), ControllerError>(())
        }
        .await;
        if let Err(e) = res {
            let msg = format!("cannot connect the group to its network: {e}");
            if g.status.message.as_deref() != Some(&msg) {
                self.event(g, None, EventType::Warning, "FailedNetwork", &msg);
                let status = GroupStatus {
                    message: Some(msg),
                    ..g.status.clone()
                };
                self.store.set_status(&g.id, &status)?;
            }
            return Ok(false);
        }
        let (ip, eip) = (Some(gn.ip.to_string()), gn.eip.map(|e| e.to_string()));
        self.runtime
            .set_group_address(&g.id, &g.name, ip.as_deref())?;
        if g.status.ip != ip || g.status.eip != eip {
            let net = if gn.network == qci_store::BASIC_NETWORK {
                "the basic network".to_string()
            } else {
                format!("VPC {}", gn.network)
            };
            let published = gn
                .eip
                .map(|e| format!(", published on EIP {e}"))
                .unwrap_or_default();
            self.event(
                g,
                None,
                EventType::Normal,
                "NetworkAttached",
                &format!("address {} in {net}{published}", gn.ip),
            );
            g.status.ip = ip;
            g.status.eip = eip;
            self.store.set_status(&g.id, &g.status)?;
        }
        Ok(true)
    }

    /// Unplugs a group being deleted (its address is freed with its row).
    pub(crate) async fn detach_network(&self, g: &ContainerGroup) -> Result<(), ControllerError> {
        let (Some(driver), Some(gn)) = (
            self.network.get().cloned(),
            self.store.group_network(&g.id)?,
        ) else {
            return Ok(());
        };
        self.detached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(g.id.clone());
        let id = g.id.clone();
        let (eip, network) = (gn.eip.is_some(), gn.network.clone());
        let r = tokio::task::spawn_blocking(move || driver.detach(&gn.network, &id)).await;
        match r {
            Ok(Err(e)) => tracing::warn!(group = %g.id, "detaching: {e}"),
            Err(e) => tracing::warn!(group = %g.id, "detaching: {e}"),
            Ok(Ok(())) => {}
        }
        // Its published ports and NAT go now, and its network if it was the last one there.
        // (A group with no EIP among others left no rule outside its namespace: no sync, which
        // reads every group's place and, one per deleted group, made deleting many quadratic.)
        // Last: no group in the network but ones being deleted and already unplugged (this
        // one among them). The count first, so the ids are read only when it may be so.
        let last = {
            let detached = self
                .detached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            self.store.network_members(&network)? <= detached.len()
                && self
                    .store
                    .network_member_ids(&network)?
                    .iter()
                    .all(|id| detached.contains(id))
        };
        if (eip || last)
            && let Err(e) = self.sync_networks(Some(&g.id)).await
        {
            tracing::warn!(group = %g.id, "networks: {e}");
        }
        Ok(())
    }
}

/// Whether a network's router stays: one a group is in always does; otherwise a VPC's
/// does (it is the user's object), and the basic network for its linger after its last
/// group — unless the server is stopping, when nothing no group uses stays on the host.
fn keep_network(id: &str, in_use: bool, basic_recent: bool, stopping: bool) -> bool {
    in_use || (!stopping && (id != qci_store::BASIC_NETWORK || basic_recent))
}

#[cfg(test)]
mod tests {
    use super::keep_network;
    use qci_store::BASIC_NETWORK;

    #[test]
    fn which_networks_stay() {
        // (network, a group is in it, basic used lately, stopping) → kept
        let cases = [
            (BASIC_NETWORK, true, true, false, true),
            (BASIC_NETWORK, false, true, false, true),
            (BASIC_NETWORK, false, false, false, false),
            (BASIC_NETWORK, false, true, true, false),
            (BASIC_NETWORK, true, true, true, true),
            ("vpc-1", false, false, false, true),
            ("vpc-1", false, false, true, false),
            ("vpc-1", true, false, true, true),
        ];
        for (id, in_use, recent, stopping, kept) in cases {
            assert_eq!(
                keep_network(id, in_use, recent, stopping),
                kept,
                "{id} in_use={in_use} recent={recent} stopping={stopping}"
            );
        }
    }
}
