//! Disks, level-triggered like groups: a disk's row says what its image file should be
//! (made, grown, removed) and each pass does what is missing. The row comes first and goes
//! last, so a crash at any point leaves work the next pass finishes, never an orphan file.

use std::sync::Arc;

use qci_store::{DiskState, DiskWork};

use crate::Controller;

impl Controller {
    /// Starts the work each disk needs, at most one job per disk.
    pub(crate) fn sync_disks(self: &Arc<Self>) {
        let work = match self.store.disk_work() {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("listing disks: {e}");
                return;
            }
        };
        for w in work {
            let key = format!("disk:{}", w.id);
            if !self
                .busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone())
            {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let runtime = this.runtime.clone();
                let job = w.clone();
                let done = tokio::task::spawn_blocking(move || do_disk_work(&runtime, &job)).await;
                let res = match done {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let recorded = match res {
                    Ok(Outcome::Made(note)) => {
                        // (A growth left for the next attach is noted by the runtime beside
                        // the image, where the attach clears it; the API shows it.)
                        tracing::info!(disk = %w.id, size = w.size, note = ?note, "disk image ready");
                        this.store.disk_made(&w.id, w.size)
                    }
                    Ok(Outcome::Removed) => {
                        tracing::info!(disk = %w.id, "disk removed");
                        this.store.remove_disk(&w.id)
                    }
                    Err(msg) => {
                        tracing::warn!(disk = %w.id, "{msg}");
                        this.store.disk_problem(&w.id, &msg)
                    }
                };
                if let Err(e) = recorded {
                    tracing::error!(disk = %w.id, "recording disk work: {e}");
                }
                this.busy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
            });
        }
    }
}

enum Outcome {
    /// The image has the size wanted (with a note if its filesystem grows later).
    Made(Option<String>),
    Removed,
}

fn do_disk_work(
    rt: &qci_runtime::Runtime,
    w: &DiskWork,
) -> Result<Outcome, qci_runtime::RuntimeError> {
    match w.state {
        // Nothing of a Creating disk is in use: an image left by a crash is made again.
        DiskState::Creating => rt
            .create_disk_image(&w.id, w.size)
            .map(|()| Outcome::Made(None)),
        DiskState::Ready => rt.grow_disk(&w.id, w.size).map(Outcome::Made),
        DiskState::Deleting => rt.remove_disk_image(&w.id).map(|()| Outcome::Removed),
        DiskState::Failed => Ok(Outcome::Made(None)),
    }
}
