//! The HTTP API under `/v1`, JSON in and out, with an OpenAPI document generated from these
//! handlers at `/v1/openapi.json`. The CLI and the console use nothing else.
//!
//! Architecture invariant: only this crate knows HTTP status codes ([`error::ApiError`]).

pub mod auth;
pub mod browser;
mod caches;
mod console;
mod disks;
mod error;
mod exec;
mod groups;
pub use groups::MAX_SPEC_BYTES;
mod images;
mod logs;
pub mod metrics;
mod networks;
pub mod nodes;
mod sessions;
mod tenants;

use std::sync::Arc;

use qci_runtime::Layout;
use qci_store::Store;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub images: qci_image::ImageStore,
    pub layout: Layout,
    /// Called after a change the controller should act on at once.
    pub on_change: Arc<dyn Fn() + Send + Sync>,
    /// Called after a change to one group (its id): the controller passes that group alone,
    /// not every group, so creating many groups costs no pass over all of them each.
    pub on_group_change: Arc<dyn Fn(&str) + Send + Sync>,
    /// API request latency, for `/metrics`.
    pub latency: Arc<metrics::Latency>,
    /// qci's own gauges for `/metrics`: (name, help, value).
    pub gauges: Arc<dyn Fn() -> Vec<(&'static str, &'static str, f64)> + Send + Sync>,
    /// The supported specs (and prices) groups are normalised to.
    pub specs: Arc<qci_spec::SpecTable>,
    /// Runs image garbage collection now; answers its report.
    pub prune: Arc<dyn Fn() -> PruneFuture + Send + Sync>,
    /// For disk images (make, grow, remove); containers are the controller's.
    pub runtime: Arc<qci_runtime::Runtime>,
    pub disk_compat: Arc<qci_spec::DiskCompat>,
    /// The networking settings (to check VPC blocks against the host).
    pub network: Arc<qci_network::NetConfig>,
    /// The names and scheme this server answers for (browser safety).
    pub origins: Arc<browser::Origins>,
    /// Failed authentications per source address.
    pub failures: Arc<auth::FailureLimiter>,
    /// Exec sessions open per tenant.
    pub exec_sessions: Arc<auth::ExecSessions>,
    /// What the operator allows in security contexts beyond the defaults.
    pub security: Arc<qci_spec::SecurityPolicy>,
    /// Which runtimes groups may run on here, and the default.
    pub runtimes: Arc<qci_spec::RuntimePolicy>,
    /// This node, and its cluster if it has one.
    pub nodes: Arc<nodes::NodeView>,
}

/// What [`AppState::prune`] returns.
pub type PruneFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send>>;

#[derive(OpenApi)]
#[openapi(
    info(title = "qci", description = "Self-hosted elastic container instances: container groups on real Linux containers."),
    tags(
        (name = "container-groups", description = "Container groups: create, inspect, logs, events, delete"),
        (name = "images", description = "The image store: pull, list, remove"),
        (name = "image-caches", description = "Images pulled ahead of time, pinned, so groups start without downloading"),
        (name = "networks", description = "VPCs, EIPs and firewalls"),
        (name = "disks", description = "Disks created beforehand, attached to one group at a time; their data outlives the group"),
        (name = "tenants", description = "Tenants, their quotas, API keys and the audit trail (admin)"),
        (name = "nodes", description = "The machines groups run on: this one, or a cluster's on etcd (admin)")
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Every operation takes `Authorization: Bearer KEY` (but the OpenAPI document and `/healthz`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "api_key",
            Vec::<String>::new(),
        )]);
    }
}

/// The largest body of a request other than a group spec.
pub const MAX_BODY_BYTES: usize = 256 << 10;
/// How long a request's body may take to arrive.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Every route, with its OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(
            // Specs carry config files (up to 1 MiB of content): a larger body limit here.
            OpenApiRouter::new()
                .routes(routes!(groups::list_groups, groups::create_group))
                .routes(routes!(
                    groups::get_group,
                    groups::update_group,
                    groups::delete_group
                ))
                .layer(axum::extract::DefaultBodyLimit::max(groups::MAX_SPEC_BYTES)),
        )
        .routes(routes!(groups::list_events))
        .routes(routes!(groups::all_events))
        .routes(routes!(groups::restart_group))
        .routes(routes!(groups::usage))
        .routes(routes!(logs::get_logs))
        .routes(routes!(exec::exec))
        .routes(routes!(exec::attach))
        .routes(routes!(metrics::group_metrics))
        .routes(routes!(images::list_images, images::remove_image))
        .routes(routes!(images::pull_image))
        .routes(routes!(images::prune_images))
        .routes(routes!(images::load_image))
        .routes(routes!(images::save_image))
        .routes(routes!(images::tag_image))
        .routes(routes!(caches::list_caches, caches::create_cache))
        .routes(routes!(caches::get_cache, caches::delete_cache))
        .routes(routes!(disks::list_disks, disks::create_disk))
        .routes(routes!(disks::get_disk, disks::delete_disk))
        .routes(routes!(disks::resize_disk))
        .routes(routes!(networks::list_vpcs, networks::create_vpc))
        .routes(routes!(
            networks::get_vpc,
            networks::update_vpc,
            networks::delete_vpc
        ))
        .routes(routes!(networks::list_eips, networks::create_eip))
        .routes(routes!(networks::get_eip, networks::delete_eip))
        .routes(routes!(networks::bind_eip))
        .routes(routes!(networks::unbind_eip))
        .routes(routes!(networks::list_firewalls, networks::create_firewall))
        .routes(routes!(
            networks::get_firewall,
            networks::update_firewall,
            networks::delete_firewall
        ))
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(
            tenants::get_tenant,
            tenants::update_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(tenants::list_keys, tenants::create_key))
        .routes(routes!(tenants::revoke_key))
        .routes(routes!(tenants::audit))
        .routes(routes!(tenants::whoami))
        .routes(routes!(sessions::sign_in))
        .routes(routes!(sessions::sign_out))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(nodes::get_node))
        .routes(routes!(nodes::cordon_node))
        .routes(routes!(nodes::uncordon_node))
        .routes(routes!(version))
}

/// The API's router, serving its OpenAPI document at `/v1/openapi.json`. Every request passes
/// the browser guard (Host, Origin, Content-Type), then authentication (keys, roles, audit).
pub fn router(state: AppState) -> axum::Router {
    let (router, openapi) = api_routes()
        .route("/metrics", axum::routing::get(metrics::prometheus))
        .split_for_parts();
    let doc = Arc::new(openapi);
    router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        // The console: its page for any other address, its files under /console/, compressed.
        .fallback_service(
            axum::routing::any(console::page)
                .layer(tower_http::compression::CompressionLayer::new())
                .with_state(()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // Every other body is small; a body that trickles in is cut off (408).
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            BODY_READ_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::time_requests,
        ))
        .with_state(state)
}

/// The OpenAPI document alone (for tooling and tests).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: String,
}

/// The server's version.
#[utoipa::path(get, path = "/v1/version", responses((status = 200, body = VersionInfo)))]
async fn version() -> axum::Json<VersionInfo> {
    axum::Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}
