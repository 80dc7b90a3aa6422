//! Running netlink work inside a network namespace, and pinning new namespaces to files.
//!
//! A namespace belongs to a thread: each call runs on a short-lived thread that enters the
//! namespace (setns), opens its netlink socket there and drives it on its own small runtime,
//! so the rest of the process never changes namespace.

use std::future::Future;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use rtnetlink::Handle;

use crate::NetError;

/// Runs `f` with a netlink handle inside the namespace pinned at `ns` (None: this process's).
pub fn run<T, F, Fut>(ns: Option<&Path>, what: &str, f: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetError>>,
{
    let ns = ns.map(Path::to_path_buf);
    let what = what.to_string();
    std::thread::spawn(move || -> Result<T, NetError> {
        enter(ns.as_deref())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetError::io(format!("{what}: a runtime")))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(NetError::io(format!("{what}: a netlink socket")))?;
            tokio::spawn(conn);
            f(handle).await
        })
    })
    .join()
    .map_err(|_| NetError::ThreadPanicked)?
}

/// Moves the calling thread into the namespace pinned at `ns` (None: stays).
pub fn enter(ns: Option<&Path>) -> Result<(), NetError> {
    if let Some(ns) = ns {
        let f =
            std::fs::File::open(ns).map_err(NetError::io(format!("opening {}", ns.display())))?;
        setns(f, CloneFlags::CLONE_NEWNET)
            .map_err(NetError::sys(format!("entering {}", ns.display())))?;
    }
    Ok(())
}

/// Runs blocking work (sysctls, files under /proc/sys/net) inside a namespace.
pub fn run_blocking<T: Send + 'static>(
    ns: Option<&Path>,
    f: impl FnOnce() -> Result<T, NetError> + Send + 'static,
) -> Result<T, NetError> {
    let ns = ns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        enter(ns.as_deref())?;
        f()
    })
    .join()
    .map_err(|_| NetError::ThreadPanicked)?
}

/// Makes a new network namespace pinned at `file` (a bind mount of its nsfs file).
pub fn create(file: &Path) -> Result<(), NetError> {
    let file: PathBuf = file.to_path_buf();
    std::thread::spawn(move || -> Result<(), NetError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(NetError::sys("creating a network namespace"))?;
        if let Some(d) = file.parent() {
            std::fs::create_dir_all(d)
                .map_err(NetError::io(format!("creating {}", d.display())))?;
        }
        std::fs::File::create(&file)
            .map_err(NetError::io(format!("creating {}", file.display())))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &file,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(NetError::sys(format!("pinning {}", file.display())))
    })
    .join()
    .map_err(|_| NetError::ThreadPanicked)?
}

/// Unpins a namespace (it goes once nothing else holds it) and removes its file.
pub fn destroy(file: &Path) -> Result<(), NetError> {
    while is_pinned(file) {
        umount2(file, MntFlags::MNT_DETACH)
            .map_err(NetError::sys(format!("unpinning {}", file.display())))?;
    }
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NetError::io(format!("removing {}", file.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Whether `file` is a pinned namespace (a bind mount of an nsfs file). statfs answers for
/// whatever is mounted at the path, at a constant cost; the mount table answered it before,
/// and the kernel's rendering of every mount on the machine (thousands, with many groups)
/// was most of an idle server's CPU.
pub fn is_pinned(file: &Path) -> bool {
    use nix::sys::statfs::{NSFS_MAGIC, statfs};
    statfs(file).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Writes a sysctl of the namespace the thread is in; a missing one (a module not loaded)
/// is skipped when `optional`.
pub fn sysctl(key: &str, value: &str, optional: bool) -> Result<(), NetError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    match std::fs::write(&path, value) {
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::io(format!("setting {key}={value}"))(e)),
        Ok(()) => Ok(()),
    }
}
