//! Several qci nodes on etcd — the store Kubernetes trusts, never a consensus of our own.
//!
//! This first stage is membership: which nodes there are, what each offers and holds, whether
//! it is alive, and whether it is cordoned. What lives in etcd, under `/qci/v1/`:
//!
//! - `nodes/<name>`: the node's record (JSON, [`Node`] less `ready`, plus the node's id). No
//!   lease: it outlives the node, so a dead node shows as NotReady rather than vanishing.
//! - `alive/<name>`: the node's id, under the node's lease ([`LEASE_TTL`]). The node is Ready
//!   while this key exists and names the record's id.
//!
//! A node joins with one transaction that takes `alive/<name>` when it is absent or already
//! holds this node's own id (the same data dir restarting within the TTL); another machine
//! using the name is refused. The node renews its lease every [`RENEW`]; a lease found gone
//! (the node was cut off for longer than the TTL) is taken again by the same transaction. The
//! record is only ever changed by compare-and-swap on its revision, so a cordon written
//! through another node and an allocation report at the same moment never undo each other.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use qci_spec::{Node, NodeResources};
use serde::{Deserialize, Serialize};

/// Seconds a node's lease lives without renewal: past it, the node is NotReady.
pub const LEASE_TTL: i64 = 10;
/// How often a node renews its lease (well inside the TTL: two renewals may fail in a row).
pub const RENEW: Duration = Duration::from_secs(3);
/// How long one request to etcd may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const NODES: &str = "/qci/v1/nodes/";
const ALIVE: &str = "/qci/v1/alive/";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error(
        "node name {name:?} is in use by another qci node (at {address}); give this one another --node-name"
    )]
    NameTaken { name: String, address: String },
    #[error("no node named {0:?}")]
    NoNode(String),
    #[error("node {name:?}: its record in etcd cannot be read: {source}")]
    Record {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("node {0:?}: its record kept changing while it was being written; try again")]
    Contended(String),
}

pub type Result<T> = std::result::Result<T, ClusterError>;

/// What a node is, as it joins.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// Stable across restarts of the same data dir; tells a restart from a name clash.
    pub id: String,
    pub address: String,
    pub capacity: NodeResources,
    pub version: String,
}

/// The record under `nodes/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    name: String,
    id: String,
    address: String,
    cordoned: bool,
    capacity: NodeResources,
    allocated: NodeResources,
    groups: u32,
    version: String,
    joined_at: chrono::DateTime<Utc>,
    updated_at: chrono::DateTime<Utc>,
}

impl Record {
    fn node(self, ready: bool) -> Node {
        Node {
            name: self.name,
            address: self.address,
            ready,
            cordoned: self.cordoned,
            capacity: self.capacity,
            allocated: self.allocated,
            groups: self.groups,
            version: self.version,
            joined_at: self.joined_at,
            updated_at: self.updated_at,
        }
    }
}

/// A connection to the cluster's etcd (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    endpoints: String,
}

impl Cluster {
    /// Connects to etcd at `endpoints` (`http://HOST:PORT` or `HOST:PORT`; any member will
    /// do, the client moves to another when one fails).
    pub async fn connect(endpoints: &[String]) -> Result<Cluster> {
        let joined = endpoints.join(",");
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(4));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|source| ClusterError::Etcd {
                endpoints: joined.clone(),
                source,
            })?;
        let c = Cluster {
            client,
            endpoints: joined,
        };
        // (connect is lazy: one read says whether etcd answers at all.)
        c.call(async |mut cl| {
            cl.get(ALIVE, Some(GetOptions::new().with_count_only()))
                .await
        })
        .await?;
        Ok(c)
    }

    fn etcd(&self, source: etcd_client::Error) -> ClusterError {
        ClusterError::Etcd {
            endpoints: self.endpoints.clone(),
            source,
        }
    }

    /// One request, tried again on another member when the one it reached is down: the
    /// client spreads requests over every endpoint and does not drop a dead one by itself.
    /// (Safe to repeat: reads, and writes guarded by compare-and-swap.)
    async fn call<T, Fut>(&self, mut f: impl FnMut(Client) -> Fut) -> Result<T>
    where
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            match f(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < 8 && unavailable(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
                }
                Err(e) => return Err(self.etcd(e)),
            }
        }
    }

    /// Every node the cluster has known, alive or not, by name.
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        let records = self
            .call(async |mut cl| cl.get(NODES, Some(GetOptions::new().with_prefix())).await)
            .await?;
        let alive = self
            .call(async |mut cl| cl.get(ALIVE, Some(GetOptions::new().with_prefix())).await)
            .await?;
        let alive: std::collections::HashMap<&[u8], &[u8]> = alive
            .kvs()
            .iter()
            .map(|kv| (&kv.key()[ALIVE.len()..], kv.value()))
            .collect();
        let mut nodes = Vec::new();
        for kv in records.kvs() {
            let name = String::from_utf8_lossy(&kv.key()[NODES.len()..]).into_owned();
            let r: Record = serde_json::from_slice(kv.value())
                .map_err(|source| ClusterError::Record { name, source })?;
            let ready = alive.get(r.name.as_bytes()) == Some(&r.id.as_bytes());
            nodes.push(r.node(ready));
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    /// One node.
    pub async fn node(&self, name: &str) -> Result<Node> {
        let (record, _) = self
            .record(name)
            .await?
            .ok_or_else(|| ClusterError::NoNode(name.to_string()))?;
        let key = format!("{ALIVE}{name}");
        let alive = self
            .call(async |mut cl| cl.get(key.clone(), None).await)
            .await?;
        let ready = alive
            .kvs()
            .first()
            .is_some_and(|kv| kv.value() == record.id.as_bytes());
        Ok(record.node(ready))
    }

    /// A node's record and its revision, if it has one.
    async fn record(&self, name: &str) -> Result<Option<(Record, i64)>> {
        let key = format!("{NODES}{name}");
        let got = self
            .call(async |mut cl| cl.get(key.clone(), None).await)
            .await?;
        let Some(kv) = got.kvs().first() else {
            return Ok(None);
        };
        let r = serde_json::from_slice(kv.value()).map_err(|source| ClusterError::Record {
            name: name.to_string(),
            source,
        })?;
        Ok(Some((r, kv.mod_revision())))
    }

    /// Changes a node's record with `f`, by compare-and-swap on its revision (retried when
    /// another writer came between).
    async fn update(&self, name: &str, f: impl Fn(&mut Record)) -> Result<Record> {
        for _ in 0..10 {
            let (mut r, rev) = self
                .record(name)
                .await?
                .ok_or_else(|| ClusterError::NoNode(name.to_string()))?;
            f(&mut r);
            let key = format!("{NODES}{name}");
            let value = serde_json::to_vec(&r).expect("a record serialises");
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::put(key, value, None)]);
            let done = self.call(async |mut cl| cl.txn(txn.clone()).await).await?;
            if done.succeeded() {
                return Ok(r);
            }
        }
        Err(ClusterError::Contended(name.to_string()))
    }

    /// Cordons a node (no new groups are placed on it) or lets it take groups again.
    pub async fn set_cordoned(&self, name: &str, cordoned: bool) -> Result<Node> {
        self.update(name, |r| r.cordoned = cordoned).await?;
        self.node(name).await
    }

    /// Joins the cluster as `cfg` and keeps this node alive in it until the returned
    /// [`Membership`] is dropped.
    pub async fn join(&self, cfg: NodeConfig) -> Result<Membership> {
        let lease = self.take_name(&cfg).await?;
        let (report, mut reports) = tokio::sync::watch::channel((NodeResources::default(), 0u32));
        let this = self.clone();
        let name = cfg.name.clone();
        let task = tokio::spawn(async move {
            let mut lease = lease;
            let mut keeper = None;
            let mut tick = tokio::time::interval(RENEW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let mut renewed = this.renew(&mut keeper, lease).await;
                        if renewed.is_err() {
                            // The stream's member may have gone: a new stream, at once.
                            keeper = None;
                            renewed = this.renew(&mut keeper, lease).await;
                        }
                        match renewed {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::warn!(node = %cfg.name, "the node's lease expired; joining again");
                                keeper = None;
                                match this.take_name(&cfg).await {
                                    Ok(l) => lease = l,
                                    Err(e) => tracing::error!(node = %cfg.name, "joining again: {e}"),
                                }
                            }
                            Err(e) => {
                                keeper = None;
                                tracing::warn!(node = %cfg.name, "renewing the node's lease: {e}");
                            }
                        }
                    }
                    changed = reports.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let (allocated, groups) = *reports.borrow_and_update();
                        let written = this.update(&cfg.name, |r| {
                            r.allocated = allocated;
                            r.groups = groups;
                            r.updated_at = Utc::now();
                        }).await;
                        if let Err(e) = written {
                            tracing::warn!(node = %cfg.name, "reporting the node's allocations: {e}");
                            // (Reported again at the next change; mark it changed now.)
                            reports.mark_changed();
                            tokio::time::sleep(RENEW).await;
                        }
                    }
                }
            }
        });
        Ok(Membership {
            cluster: self.clone(),
            name,
            report,
            task: Arc::new(AbortOnDrop(task)),
        })
    }

    /// Sends one keep-alive for `lease`. Ok(false): etcd no longer has it.
    async fn renew(
        &self,
        keeper: &mut Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
        lease: i64,
    ) -> Result<bool> {
        if keeper.is_none() {
            *keeper = Some(
                self.call(async |mut cl| cl.lease_keep_alive(lease).await)
                    .await?,
            );
        }
        let (k, stream) = keeper.as_mut().expect("just made");
        k.keep_alive().await.map_err(|e| self.etcd(e))?;
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, stream.message())
            .await
            .map_err(|_| {
                self.etcd(etcd_client::Error::LeaseKeepAliveError(
                    "no answer to a keep-alive".into(),
                ))
            })?
            .map_err(|e| self.etcd(e))?;
        Ok(answer.is_some_and(|a| a.ttl() > 0))
    }

    /// Takes `alive/<name>` under a new lease and writes the node's record (keeping a cordon
    /// it had). Refused when another node holds the name.
    async fn take_name(&self, cfg: &NodeConfig) -> Result<i64> {
        let lease = self
            .call(async |mut cl| cl.lease_grant(LEASE_TTL, None).await)
            .await?
            .id();
        let alive_key = format!("{ALIVE}{}", cfg.name);
        let node_key = format!("{NODES}{}", cfg.name);
        for _ in 0..10 {
            let holder = self
                .call(async |mut cl| cl.get(alive_key.clone(), None).await)
                .await?;
            let held = holder.kvs().first().map(|kv| kv.value().to_vec());
            let old = self.record(&cfg.name).await?;
            if let Some(other) = &held
                && other != cfg.id.as_bytes()
            {
                return Err(ClusterError::NameTaken {
                    name: cfg.name.clone(),
                    address: old
                        .map(|(r, _)| r.address)
                        .unwrap_or_else(|| "an unknown address".into()),
                });
            }
            let now = Utc::now();
            let record = Record {
                name: cfg.name.clone(),
                id: cfg.id.clone(),
                address: cfg.address.clone(),
                cordoned: old.as_ref().is_some_and(|(r, _)| r.cordoned),
                capacity: cfg.capacity,
                allocated: old.as_ref().map(|(r, _)| r.allocated).unwrap_or_default(),
                groups: old.as_ref().map(|(r, _)| r.groups).unwrap_or_default(),
                version: cfg.version.clone(),
                joined_at: now,
                updated_at: now,
            };
            let alive_unchanged = match &held {
                None => Compare::version(alive_key.clone(), CompareOp::Equal, 0),
                Some(v) => Compare::value(alive_key.clone(), CompareOp::Equal, v.clone()),
            };
            let record_unchanged = match &old {
                None => Compare::version(node_key.clone(), CompareOp::Equal, 0),
                Some((_, rev)) => Compare::mod_revision(node_key.clone(), CompareOp::Equal, *rev),
            };
            let txn = Txn::new()
                .when([alive_unchanged, record_unchanged])
                .and_then([
                    TxnOp::put(
                        alive_key.clone(),
                        cfg.id.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    TxnOp::put(
                        node_key.clone(),
                        serde_json::to_vec(&record).expect("a record serialises"),
                        None,
                    ),
                ]);
            let done = self.call(async |mut cl| cl.txn(txn.clone()).await).await?;
            if done.succeeded() {
                tracing::info!(node = %cfg.name, lease, "joined the cluster");
                return Ok(lease);
            }
        }
        Err(ClusterError::Contended(cfg.name.clone()))
    }
}

/// A member that cannot be reached (down, or not yet up): another may answer.
fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// This node's place in the cluster: its lease kept alive and its allocations reported by a
/// task of its own, which ends (and the lease with it, within [`LEASE_TTL`]) when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Membership {
    cluster: Cluster,
    name: String,
    report: tokio::sync::watch::Sender<(NodeResources, u32)>,
    task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Membership {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// What this node's groups take: written to its record (when it changed).
    pub fn report(&self, allocated: NodeResources, groups: u32) {
        self.report.send_if_modified(|now| {
            let changed = *now != (allocated, groups);
            *now = (allocated, groups);
            changed
        });
    }

    /// This node's record as etcd has it now.
    pub async fn me(&self) -> Result<Node> {
        self.cluster.node(&self.name).await
    }

    /// Whether the renewing task still runs (for tests and the health check).
    pub fn running(&self) -> bool {
        !self.task.0.is_finished()
    }
}
