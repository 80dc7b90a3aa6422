//! The controller and node agent: a level-triggered loop that compares each stored group with
//! what actually runs on this machine and acts on the difference.
//!
//! Architecture invariants:
//! - a pass reads the desired state (the store) and the actual state (the runtime's files),
//!   never a memory of what it did before, so a crash at any point is repaired by the next pass;
//! - at most one pass works on a given group at a time;
//! - the controller writes only status and events; specs are the API's.

mod cache;
mod process;
mod reconcile;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qci_image::ImageStore;
use qci_runtime::Runtime;
use qci_store::Store;
use tokio::sync::Notify;

pub use process::{DEFAULT_PATH, container_config};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] qci_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] qci_runtime::RuntimeError),
}

/// How often every group is looked at even when nothing asked for it.
const RESYNC: Duration = Duration::from_millis(250);

pub struct Controller {
    store: Store,
    images: ImageStore,
    runtime: Runtime,
    wake: Notify,
    busy: Mutex<HashSet<String>>,
}

impl Controller {
    pub fn new(store: Store, images: ImageStore, runtime: Runtime) -> Arc<Controller> {
        Arc::new(Controller {
            store,
            images,
            runtime,
            wake: Notify::new(),
            busy: Default::default(),
        })
    }

    /// Asks for a pass now (after a create or delete, for instance).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs passes forever.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.pass();
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    /// Starts a reconcile for every group that has none running.
    fn pass(self: &Arc<Self>) {
        let groups = match self.store.all_groups() {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("listing groups: {e}");
                return;
            }
        };
        match self.store.list_image_caches(None) {
            Ok(caches) => {
                for c in caches
                    .into_iter()
                    .filter(|c| c.status.phase == qci_spec::CachePhase::Creating)
                {
                    if !self
                        .busy
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(c.id.clone())
                    {
                        continue;
                    }
                    let this = self.clone();
                    tokio::spawn(async move {
                        let span =
                            tracing::info_span!("image cache", cache = %c.id, name = %c.name);
                        tracing::Instrument::instrument(this.create_cache(&c), span).await;
                        this.busy
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&c.id);
                    });
                }
            }
            Err(e) => tracing::error!("listing image caches: {e}"),
        }
        for g in groups {
            if g.deletion_requested_at.is_none() && g.status.phase.is_final() {
                continue;
            }
            if !self
                .busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(g.id.clone())
            {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let id = g.id.clone();
                let span = tracing::info_span!("reconcile", group = %id, name = %g.name);
                let res = tracing::Instrument::instrument(this.reconcile(&id), span).await;
                this.busy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                match res {
                    Ok(true) => this.wake(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(group = %id, "reconcile: {e}"),
                }
            });
        }
    }
}
