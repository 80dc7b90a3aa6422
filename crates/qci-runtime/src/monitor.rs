//! The per-container monitor (conmon-style), run as `qci monitor ...`.
//!
//! `qci serve` starts `qci monitor`, which forks: the parent waits until the container has been
//! created and started, prints a [`StartRecord`] (or the error) and exits; the child is the
//! monitor. It leaves qci's session, becomes a child subreaper (so the container's first process
//! becomes its child when `runc run --detach` exits), holds the container's stdout and stderr pipes,
//! appends every line to the container's log in CRI format
//! (`<RFC 3339 time> <stdout|stderr> <F|P> <text>`), waits for the container and writes an
//! [`ExitRecord`] atomically. Then it exits. It never talks to `qci serve`: everything it knows
//! is in files, so `qci serve` may stop, crash or restart at any time.
//!
//! Files in the container dir: `monitor.pid`, `runc.log`, `pid` (runc's pid file),
//! `started.json`, `exit.json`, `monitor.log` (the monitor's own diagnostics).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::runc::Runc;

/// Everything the monitor needs, passed on its command line.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorArgs {
    pub runc_root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    /// The container log file (appended to).
    pub log: PathBuf,
    /// The container's cgroup, relative to the hierarchy roots (for OOM detection).
    pub cgroup: String,
    /// A unix datagram socket poked once the exit is recorded, so `qci serve` (if it runs)
    /// looks at once instead of at its next pass.
    pub notify: PathBuf,
    /// The log is rotated once past this many bytes.
    pub max_log_size: u64,
    /// The container has a terminal (runc hands its master to the monitor).
    pub tty: bool,
    /// The container's standard input is kept open for attach.
    pub stdin: bool,
    /// The container joins its group's gVisor sandbox: `runc_root` is runsc's, and its exit
    /// comes from `runsc wait` (every container of a sandbox names the sandbox's pid).
    pub gvisor: bool,
}

impl MonitorArgs {
    /// Reads what [`MonitorArgs::to_args`] wrote (each flag once, every one but
    /// `--max-log-size` required).
    pub fn from_args(args: &[std::ffi::OsString]) -> Result<MonitorArgs, String> {
        let mut found: std::collections::HashMap<&str, &std::ffi::OsString> = Default::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag
                .to_str()
                .and_then(|f| f.strip_prefix("--"))
                .filter(|f| {
                    [
                        "runc-root",
                        "id",
                        "bundle",
                        "log",
                        "cgroup",
                        "notify",
                        "max-log-size",
                        "tty",
                        "stdin",
                        "gvisor",
                    ]
                    .contains(f)
                })
                .ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            if found.insert(name, value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        let path = |name: &str| -> Result<PathBuf, String> {
            found
                .get(name)
                .map(PathBuf::from)
                .ok_or_else(|| format!("--{name} is required"))
        };
        let text = |name: &str| -> Result<String, String> {
            found
                .get(name)
                .map(|v| v.to_str().map(String::from))
                .ok_or_else(|| format!("--{name} is required"))?
                .ok_or_else(|| format!("--{name} is not UTF-8"))
        };
        Ok(MonitorArgs {
            runc_root: path("runc-root")?,
            id: text("id")?,
            bundle: path("bundle")?,
            log: path("log")?,
            cgroup: text("cgroup")?,
            notify: path("notify")?,
            max_log_size: match found.get("max-log-size") {
                None => 10 << 20,
                Some(v) => v
                    .to_str()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("--max-log-size: {v:?} is not a number of bytes"))?,
            },
            tty: found.get("tty").is_some_and(|v| *v == "true"),
            stdin: found.get("stdin").is_some_and(|v| *v == "true"),
            gvisor: found.get("gvisor").is_some_and(|v| *v == "true"),
        })
    }

    /// The command-line arguments after `qci monitor`.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--runc-root".into(),
            self.runc_root.display().to_string(),
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            self.bundle.display().to_string(),
            "--log".into(),
            self.log.display().to_string(),
            "--cgroup".into(),
            self.cgroup.clone(),
            "--notify".into(),
            self.notify.display().to_string(),
            "--max-log-size".into(),
            self.max_log_size.to_string(),
            "--tty".into(),
            self.tty.to_string(),
            "--stdin".into(),
            self.stdin.to_string(),
            "--gvisor".into(),
            self.gvisor.to_string(),
        ]
    }
}

/// Written once the container runs; also what the launcher prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRecord {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

/// Written once the container has exited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal number that killed it (as shells report it).
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// Set when the container never ran: why it could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
    /// The start failed on the container's configuration (its user, its security_context),
    /// which a restart cannot fix: Kubernetes' CreateContainerConfigError.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub config_error: bool,
    /// Set when the container was found gone with no monitor to record how (a host restart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

#[derive(Serialize, Deserialize)]
struct Handshake {
    #[serde(default)]
    started: Option<StartRecord>,
    #[serde(default)]
    error: Option<String>,
}

/// Parses what the launcher printed.
pub fn parse_handshake(stdout: &[u8]) -> Result<StartRecord, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or("");
    match serde_json::from_str::<Handshake>(line) {
        Ok(Handshake {
            started: Some(s), ..
        }) => Ok(s),
        Ok(Handshake { error: Some(e), .. }) => Err(e),
        _ => Err(format!("the monitor gave no answer (it printed {line:?})")),
    }
}

/// Writes a container's record (started, exit, layers) whole or not at all: readers see the
/// old file or the new one, never half of it. Not flushed to disk: these records describe
/// processes and mounts, which do not outlive the machine; after a power loss the controller
/// finds a container whose record is missing or torn as it finds one that is gone (`read_json`
/// gives nothing, and the start is made again). An fsync here sat on every start's path.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Entry point of `qci monitor`. Must run before the process starts any thread.
pub fn launch(args: MonitorArgs) -> i32 {
    let (hs_read, hs_write) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("qci monitor: pipe: {e}");
            return 1;
        }
    };
    match fork::fork() {
        Err(e) => {
            eprintln!("qci monitor: fork: {e}");
            1
        }
        Ok(None) => {
            drop(hs_read);
            let mut hs = Some(File::from(hs_write));
            let code = monitor(&args, &mut hs);
            std::process::exit(code)
        }
        Ok(Some(_child)) => {
            drop(hs_write);
            let mut out = Vec::new();
            let _ = File::from(hs_read).read_to_end(&mut out);
            let _ = std::io::stdout().write_all(&out);
            if parse_handshake(&out).is_ok() { 0 } else { 1 }
        }
    }
}

#[allow(unsafe_code)]
mod fork {
    /// Forks; `None` in the child, `Some(pid)` in the parent.
    pub fn fork() -> nix::Result<Option<nix::unistd::Pid>> {
        // SAFETY: `qci monitor` calls this before it creates any thread, so the child is a
        // faithful single-threaded copy and may do anything the parent could.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => Ok(None),
            nix::unistd::ForkResult::Parent { child } => Ok(Some(child)),
        }
    }
}

/// Tells the launcher how the start went, once; closing the pipe lets it exit.
fn report(hs: &mut Option<File>, h: &Handshake) {
    if let Some(mut f) = hs.take() {
        let _ =
            f.write_all(format!("{}\n", serde_json::to_string(h).unwrap_or_default()).as_bytes());
    }
}

/// The monitor proper (in the forked child). Returns the monitor's exit code.
fn monitor(args: &MonitorArgs, hs: &mut Option<File>) -> i32 {
    let dir = args.bundle.clone();
    let diag = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("monitor.log"));
    let say = |msg: &str| {
        if let Ok(mut f) = diag.as_ref() {
            let _ = writeln!(
                f,
                "{} {msg}",
                Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
            );
        }
    };
    let fail = |hs: &mut Option<File>, msg: String| {
        report(
            hs,
            &Handshake {
                started: None,
                error: Some(msg),
            },
        );
        1
    };
    // Leave qci's session and stdio: the launcher's caller waits for EOF on them.
    let _ = nix::unistd::setsid();
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return fail(hs, format!("monitor: cannot become a subreaper: {e}"));
    }
    let _ = std::fs::write(dir.join("monitor.pid"), std::process::id().to_string());

    let log = match LogFile::open(&args.log, args.max_log_size) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            return fail(
                hs,
                format!("monitor: opening log {}: {e}", args.log.display()),
            );
        }
    };
    let (out_r, out_w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return fail(hs, format!("monitor: pipe: {e}")),
    };
    let (err_r, err_w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => return fail(hs, format!("monitor: pipe: {e}")),
    };
    let runc = if args.gvisor {
        Runc::gvisor(&args.runc_root)
    } else {
        Runc::new(&args.runc_root)
    };
    let pid_file = dir.join("pid");
    let runc_log = dir.join("runc.log");
    // A terminal: runc hands its master over this socket (it waits there until taken).
    let console_path = dir.join("console.sock");
    let console = if args.tty {
        let _ = std::fs::remove_file(&console_path);
        match std::os::unix::net::UnixListener::bind(&console_path) {
            Ok(l) => Some(l),
            Err(e) => return fail(hs, format!("monitor: console socket: {e}")),
        }
    } else {
        None
    };
    // Standard input kept open for attach, else /dev/null.
    let (stdin_r, stdin_w) = if args.stdin && !args.tty {
        match nix::unistd::pipe() {
            Ok((r, w)) => (Some(r), Some(w)),
            Err(e) => return fail(hs, format!("monitor: pipe: {e}")),
        }
    } else {
        (None, None)
    };
    let mut cmd = runc.run_detached_command(
        &args.id,
        &args.bundle,
        &pid_file,
        &runc_log,
        console.as_ref().map(|_| console_path.as_path()),
    );
    if args.tty {
        // runc's own stdio: the container's is the terminal.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        drop((out_w, err_w));
    } else {
        cmd.stdin(stdin_r.map(Stdio::from).unwrap_or_else(Stdio::null))
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w));
    }
    // A gVisor sandbox is one cgroup, under the group's: an OOM kill there (counted from now)
    // ends the whole sandbox, this container with it (see ARCHITECTURE.md, Runtimes).
    let sandbox_cgroup = crate::gvisor::sandbox_cgroup(
        args.cgroup
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default(),
    );
    let sandbox_ooms = args
        .gvisor
        .then(|| crate::cgroup::oom_kills(&sandbox_cgroup));
    let status = cmd.status();
    drop(cmd);
    let fanout = (args.stdin || args.tty).then(|| Arc::new(crate::attach::Fanout::default()));
    let master = match (&console, &status) {
        (Some(l), Ok(s)) if s.success() => match crate::attach::receive_console(l) {
            Ok(m) => Some(m),
            Err(e) => return fail(hs, format!("monitor: the container's terminal: {e}")),
        },
        _ => None,
    };
    let _ = std::fs::remove_file(&console_path);
    let mut streams = vec![("stdout", out_r), ("stderr", err_r)];
    if let Some(m) = &master {
        match m.try_clone() {
            Ok(m) => streams = vec![("stdout", m)],
            Err(e) => return fail(hs, format!("monitor: the container's terminal: {e}")),
        }
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|(stream, fd)| {
            let log = log.clone();
            let tee = fanout.clone();
            std::thread::spawn(move || copy_lines(fd, stream, &log, tee.as_deref()))
        })
        .collect();
    if let Some(f) = &fanout {
        let input = match (master, stdin_w) {
            (Some(m), _) => crate::attach::Input::Tty(File::from(m)),
            (None, w) => crate::attach::Input::Pipe(w.map(File::from)),
        };
        if let Err(e) = crate::attach::serve(
            &dir.join("attach.sock"),
            f.clone(),
            Arc::new(Mutex::new(input)),
        ) {
            say(&format!("attach socket: {e}"));
        }
    }
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => {
            let msg = runc_errors(&runc_log);
            say(&format!("runc run failed: {msg}"));
            let _ = runc
                .command(&["delete", "--force", &args.id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            return fail(hs, format!("runc run: {msg}"));
        }
        Err(e) => {
            return fail(
                hs,
                format!(
                    "cannot run {}: {e}; install it with `apt-get install {}`",
                    runc.binary.display(),
                    runc.package()
                ),
            );
        }
    }
    let pid: i32 = match std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(p) => p,
        None => return fail(hs, "runc run wrote no pid file".to_string()),
    };
    let started = StartRecord {
        pid: pid as u32,
        started_at: Utc::now(),
    };
    if let Err(e) = write_json_atomic(&dir.join("started.json"), &started) {
        say(&format!("writing started.json: {e}"));
    }
    report(
        hs,
        &Handshake {
            started: Some(started.clone()),
            error: None,
        },
    );

    let (exit_code, signal) = if args.gvisor {
        gvisor_wait(&runc, &args.id, &say)
    } else {
        wait_for(pid, &say)
    };
    for r in readers {
        let _ = r.join();
    }
    let oom_killed = match sandbox_ooms {
        Some(before) => crate::cgroup::oom_kills(&sandbox_cgroup) > before,
        None => crate::cgroup::oom_kills(&args.cgroup) > 0,
    };
    // (The sandbox went with it: runsc could not say how its container ended.)
    let (exit_code, signal) = if oom_killed && args.gvisor && exit_code == 255 {
        (137, Some(9))
    } else {
        (exit_code, signal)
    };
    let rec = ExitRecord {
        exit_code,
        signal,
        oom_killed,
        started_at: Some(started.started_at),
        finished_at: Utc::now(),
        start_error: None,
        config_error: false,
        lost: false,
    };
    if let Err(e) = write_json_atomic(&dir.join("exit.json"), &rec) {
        say(&format!("writing exit.json: {e}"));
        return 1;
    }
    // Attached clients read the end now, and find the exit recorded.
    if let Some(f) = &fanout {
        f.close();
    }
    say(&format!(
        "container exited: code {exit_code}, signal {signal:?}, oom {oom_killed}"
    ));
    // A hint only: nobody may be listening, and the exit record is what counts.
    if let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = sock.send_to(args.id.as_bytes(), &args.notify);
    }
    0
}

/// The exit of a container in a gVisor sandbox, from `runsc wait` (its first process lives in
/// the sandbox, not among our children). Meanwhile whatever runsc left to us (the container's
/// gofer) is reaped as it ends.
fn gvisor_wait(runc: &Runc, id: &str, say: &dyn Fn(&str)) -> (i32, Option<i32>) {
    #[derive(Deserialize)]
    struct Waited {
        #[serde(rename = "exitStatus")]
        exit_status: i32,
    }
    let mut cmd = runc.command(&["wait", id]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            say(&format!("runsc wait: {e}"));
            return (255, None);
        }
    };
    let pid = child.id() as i32;
    // Reaped by the loop (as any child is); its output is read once it has ended.
    let _ = wait_for(pid, say);
    let mut out = String::new();
    if let Some(mut o) = child.stdout {
        use std::io::Read;
        let _ = o.read_to_string(&mut out);
    }
    match serde_json::from_str::<Waited>(out.trim()) {
        // runsc says 128 + the signal for a container a signal ended, as shells do.
        Ok(w) if w.exit_status > 128 && w.exit_status <= 128 + 64 => {
            (w.exit_status, Some(w.exit_status - 128))
        }
        Ok(w) => (w.exit_status, None),
        Err(e) => {
            let mut err = String::new();
            if let Some(mut o) = child.stderr {
                use std::io::Read;
                let _ = o.read_to_string(&mut err);
            }
            say(&format!("runsc wait {id}: {e}: {out} {err}"));
            (255, None)
        }
    }
}

/// Waits for the container's first process; reaps anything else that was reparented to us.
fn wait_for(pid: i32, say: &dyn Fn(&str)) -> (i32, Option<i32>) {
    let target = Pid::from_raw(pid);
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p == target => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == target => {
                return (128 + sig as i32, Some(sig as i32));
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                // Not our child (it should be, as we are its subreaper): poll until it is gone.
                say(&format!("waitpid: {e}; polling /proc/{pid}"));
                while Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                return (255, None);
            }
        }
    }
}

/// The error messages runc wrote to its JSON log.
fn runc_errors(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect();
    if msgs.is_empty() {
        "failed without a message".to_string()
    } else {
        msgs.join("; ")
    }
}

/// Longest line kept whole; longer ones are split into partial (`P`) records.
const MAX_LINE: usize = 16 * 1024;

/// Copies a stream to the log, one CRI record per line, until EOF.
/// The container log: appended to, and rotated to `<log>.1` (replacing the one before) when a
/// record would take it past its limit, so at most about twice the limit is kept and the
/// newest output always is.
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl LogFile {
    pub fn open(path: &Path, max: u64) -> std::io::Result<LogFile> {
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            max: max.max(4096),
        })
    }

    pub fn write(&mut self, rec: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + rec.len() as u64 > self.max {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, &rotated)?;
            self.file = open_log(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }
}

/// A log file for appending, readable by root only: a container's output is its tenant's.
fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The pipe a container writes its output into: 1 MiB instead of the kernel's 64 KiB, so a
/// container that writes fast blocks, and the monitor wakes, a sixteenth as often.
const PIPE_SIZE: i32 = 1 << 20;
/// What one read takes from the pipe (more than [`MAX_LINE`], which stays whole in it).
const READ_SIZE: usize = 256 * 1024;

fn copy_lines(
    fd: OwnedFd,
    stream: &str,
    log: &Mutex<LogFile>,
    tee: Option<&crate::attach::Fanout>,
) {
    let kind = if stream == "stderr" {
        crate::attach::STDERR
    } else {
        crate::attach::STDOUT
    };
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    // (Refused above the machine's pipe-max-size: the default pipe then, nothing lost.)
    let _ = fcntl(&fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    // Non-blocking, so that everything already in the pipe is taken before the log is
    // written: a container writing many small pieces costs one log write per drain of the
    // pipe, not one per piece, and nothing waits longer than the pipe takes to empty.
    let nonblocking = fcntl(&fd, FcntlArg::F_GETFL)
        .map(|f| OFlag::from_bits_truncate(f) | OFlag::O_NONBLOCK)
        .and_then(|f| fcntl(&fd, FcntlArg::F_SETFL(f)))
        .is_ok();
    let mut src = File::from(fd);
    // The output read so far: an unfinished line (never MAX_LINE long) kept at its start.
    let mut buf = vec![0u8; READ_SIZE];
    let mut kept = 0;
    let mut batch: Vec<u8> = Vec::with_capacity(2 * READ_SIZE);
    let (full, part) = (format!(" {stream} F "), format!(" {stream} P "));
    // One timestamp and one write per read: a container that writes fast pays one syscall
    // per chunk, not per line.
    let record = |batch: &mut Vec<u8>, stamp: &str, tag: &str, line: &[u8]| {
        batch.extend_from_slice(stamp.as_bytes());
        batch.extend_from_slice(tag.as_bytes());
        batch.extend_from_slice(line);
        batch.push(b'\n');
    };
    let flush = |batch: &mut Vec<u8>| {
        if !batch.is_empty() {
            let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = f.write(batch);
            batch.clear();
        }
    };
    loop {
        let n = match src.read(&mut buf[kept..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && nonblocking => {
                // Drained: write what was read, then wait for more.
                flush(&mut batch);
                let mut fds = [nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(&src),
                    nix::poll::PollFlags::POLLIN,
                )];
                match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
            Err(_) => break,
        };
        let end = kept + n;
        if let Some(t) = tee {
            t.send(kind, &buf[kept..end]);
        }
        let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let mut start = 0;
        // (The kept part has no newline: only the new bytes are searched.)
        for nl in memchr::memchr_iter(b'\n', &buf[kept..end]) {
            let nl = kept + nl;
            // A line longer than MAX_LINE goes in parts, the last one complete.
            while nl - start > MAX_LINE {
                record(&mut batch, &stamp, &part, &buf[start..start + MAX_LINE]);
                start += MAX_LINE;
            }
            record(&mut batch, &stamp, &full, &buf[start..nl]);
            start = nl + 1;
        }
        while end - start >= MAX_LINE {
            record(&mut batch, &stamp, &part, &buf[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        buf.copy_within(start..end, 0);
        kept = end - start;
        if !nonblocking || batch.len() >= READ_SIZE {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
    if kept > 0 {
        let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        record(&mut batch, &stamp, &full, &buf[..kept]);
        flush(&mut batch);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn monitor_arguments_read_back_what_was_written() {
        let a = MonitorArgs {
            runc_root: "/d/run/runc".into(),
            id: "cg-1-web".into(),
            bundle: "/d/containers/cg 1".into(),
            log: "/d/logs/x.log".into(),
            cgroup: "/qci-x/cg-1/web".into(),
            notify: "/d/run/notify.sock".into(),
            max_log_size: 123,
            tty: true,
            stdin: false,
            gvisor: true,
        };
        let os = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(|s| s.into()).collect() };
        let written: Vec<std::ffi::OsString> = a.to_args().into_iter().map(Into::into).collect();
        assert_eq!(MonitorArgs::from_args(&written), Ok(a.clone()));
        let mut short = written.clone();
        short.truncate(12);
        assert_eq!(
            MonitorArgs::from_args(&short).map(|m| m.max_log_size),
            Ok(10 << 20)
        );
        for (args, err) in [
            (os(&["--id"]), "--id needs a value"),
            (os(&["--id", "a", "--id", "b"]), "--id given twice"),
            (os(&["--nope", "x"]), "unexpected argument \"--nope\""),
            (os(&["--id", "a"]), "--runc-root is required"),
        ] {
            assert_eq!(MonitorArgs::from_args(&args), Err(err.to_string()));
        }
        let mut bad = written;
        bad[13] = "12x".into();
        assert!(
            MonitorArgs::from_args(&bad)
                .unwrap_err()
                .contains("max-log-size")
        );
    }

    use super::*;

    #[test]
    fn lines_become_cri_records() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("log");
        let log = Mutex::new(LogFile::open(&path, 1 << 20).unwrap());
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = File::from(w);
        w.write_all(b"hello\nworld\nno newline").unwrap();
        drop(w);
        copy_lines(r, "stdout", &log, None);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with(" stdout F hello"), "{}", lines[0]);
        assert!(lines[2].ends_with(" stdout F no newline"));
        assert!(DateTime::parse_from_rfc3339(lines[0].split(' ').next().unwrap()).is_ok());
    }

    #[test]
    fn long_lines_and_lines_across_reads_stay_whole() {
        // (what the container writes, in separate writes) → the records' tags and lengths
        let long = "x".repeat(MAX_LINE * 2 + 5);
        type Records = Vec<(&'static str, usize)>;
        let cases: Vec<(Vec<String>, Records)> = vec![
            (
                vec!["ab".into(), "c\nd".into(), "\n".into()],
                vec![("F", 3), ("F", 1)],
            ),
            (
                vec![long.clone() + "\n"],
                vec![("P", MAX_LINE), ("P", MAX_LINE), ("F", 5)],
            ),
            (
                vec![long[..MAX_LINE - 1].to_string(), "yz\n".into()],
                vec![("P", MAX_LINE), ("F", 1)],
            ),
            (vec!["\n\n".into()], vec![("F", 0), ("F", 0)]),
        ];
        for (writes, want) in cases {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join("log");
            let log = Mutex::new(LogFile::open(&path, 1 << 30).unwrap());
            let (r, w) = nix::unistd::pipe().unwrap();
            let writer = std::thread::spawn({
                let writes = writes.clone();
                move || {
                    let mut w = File::from(w);
                    for chunk in writes {
                        w.write_all(chunk.as_bytes()).unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
            });
            copy_lines(r, "stdout", &log, None);
            writer.join().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let got: Vec<(String, usize)> = text
                .lines()
                .map(|l| {
                    let mut f = l.splitn(4, ' ');
                    let (_, _, tag) = (f.next(), f.next(), f.next().unwrap());
                    (tag.to_string(), f.next().unwrap_or("").len())
                })
                .collect();
            let want: Vec<(String, usize)> =
                want.iter().map(|(t, n)| (t.to_string(), *n)).collect();
            assert_eq!(
                got,
                want,
                "writes of {:?} bytes",
                writes.iter().map(String::len).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn logs_rotate_past_their_limit() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("log");
        let mut log = LogFile::open(&path, 10_000).unwrap();
        for i in 0..1000 {
            log.write(format!("line {i:05} of some length\n").as_bytes())
                .unwrap();
        }
        let cur = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(d.path().join("log.1")).unwrap();
        assert!(cur.len() <= 10_000 && old.len() <= 10_000);
        assert!(cur.ends_with("line 00999 of some length\n"));
        assert!(!old.contains("line 00000"), "the oldest output is dropped");
    }

    #[test]
    fn handshake() {
        assert!(
            parse_handshake(b"{\"error\":\"boom\"}\n")
                .unwrap_err()
                .contains("boom")
        );
        assert!(parse_handshake(b"").is_err());
        let s = StartRecord {
            pid: 7,
            started_at: Utc::now(),
        };
        let line = serde_json::to_string(&Handshake {
            started: Some(s.clone()),
            error: None,
        })
        .unwrap();
        assert_eq!(parse_handshake(line.as_bytes()).unwrap(), s);
    }
}
