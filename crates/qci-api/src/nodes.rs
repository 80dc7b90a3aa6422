//! `/v1/nodes`: the machines groups run on (admin keys only). With `qci serve --etcd` they are
//! the cluster's nodes as etcd has them; alone, this machine is the one node.

use axum::Json;
use axum::extract::{Path, State};
use qci_spec::{Node, NodeResources};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, AppState, ErrorBody};

/// This node: how it describes itself, and its place in a cluster if it has one.
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub capacity: NodeResources,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// None: this qci runs alone (no `--etcd`).
    pub membership: Option<qci_cluster::Membership>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    pub items: Vec<Node>,
}

/// What the groups of this node's store take ([`qci_store::Store::node_use`]: the normalised
/// sizes of those not finished), and how many.
pub fn allocation(store: &qci_store::Store) -> Result<(NodeResources, u32), qci_store::StoreError> {
    store.node_use()
}

impl NodeView {
    /// This machine as a node of its own.
    fn alone(&self, store: &qci_store::Store) -> Result<Node, ApiError> {
        let (allocated, groups) = allocation(store)?;
        Ok(Node {
            name: self.name.clone(),
            address: self.address.clone(),
            ready: true,
            cordoned: false,
            capacity: self.capacity,
            allocated,
            groups,
            version: env!("CARGO_PKG_VERSION").to_string(),
            joined_at: self.started_at,
            updated_at: chrono::Utc::now(),
        })
    }

    /// Refuses a new group on a cordoned node (or when the cluster cannot say whether it is).
    pub async fn check_takes_groups(&self) -> Result<(), ApiError> {
        let Some(m) = &self.membership else {
            return Ok(());
        };
        let me = m.me().await?;
        if me.cordoned {
            return Err(ApiError::Conflict(format!(
                "node {:?} is cordoned: it takes no new groups (qci node uncordon {})",
                me.name, me.name
            )));
        }
        Ok(())
    }
}

/// Lists the nodes: every node the cluster has known, Ready or not, by name.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, body = NodeList), (status = 503, body = ErrorBody)))]
pub async fn list_nodes(State(s): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    let items = match &s.nodes.membership {
        Some(m) => m.cluster().nodes().await?,
        None => vec![s.nodes.alone(&s.store)?],
    };
    Ok(Json(NodeList { items }))
}

/// Gets one node by name.
#[utoipa::path(get, path = "/v1/nodes/{name}", tag = "nodes",
    params(("name" = String, Path, description = "Node name")),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody)))]
pub async fn get_node(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiError> {
    match &s.nodes.membership {
        Some(m) => Ok(Json(m.cluster().node(&name).await?)),
        None if name == s.nodes.name => Ok(Json(s.nodes.alone(&s.store)?)),
        None => Err(ApiError::NotFound(format!("no node named {name:?}"))),
    }
}

async fn set_cordoned(s: &AppState, name: &str, cordoned: bool) -> Result<Json<Node>, ApiError> {
    match &s.nodes.membership {
        Some(m) => Ok(Json(m.cluster().set_cordoned(name, cordoned).await?)),
        None => Err(ApiError::Conflict(
            "this qci runs alone (no --etcd): there is no other node to keep groups on".into(),
        )),
    }
}

/// Cordons a node: it takes no new groups (those it has run on).
#[utoipa::path(post, path = "/v1/nodes/{name}/cordon", tag = "nodes",
    params(("name" = String, Path, description = "Node name")),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cordon_node(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiError> {
    set_cordoned(&s, &name, true).await
}

/// Lets a cordoned node take new groups again.
#[utoipa::path(post, path = "/v1/nodes/{name}/uncordon", tag = "nodes",
    params(("name" = String, Path, description = "Node name")),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn uncordon_node(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiError> {
    set_cordoned(&s, &name, false).await
}
