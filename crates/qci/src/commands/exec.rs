//! `qci exec GROUP [-c NAME] [-i] -- CMD ARG...`.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::bail;
use qci_client::Client;

use crate::cli::ExecArgs;

/// The container named, or the group's only one.
fn container_of(g: &qci_spec::ContainerGroup, named: Option<String>) -> anyhow::Result<String> {
    if let Some(c) = named {
        return Ok(c);
    }
    match g.spec.containers.as_slice() {
        [only] => Ok(only.name.clone()),
        many => bail!(
            "group {} has {} containers; name one with -c ({})",
            g.name,
            many.len(),
            many.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `qci attach GROUP [-c NAME]`: the container's terminal (or standard input) and output.
pub async fn attach(
    client: &Client,
    group: &str,
    named: Option<String>,
) -> anyhow::Result<ExitCode> {
    let g = client.get_group(group).await?;
    let container = container_of(&g, named)?;
    let spec = g.spec.all_containers().find(|c| c.name == container);
    let (stdin, tty) = spec.map(|c| (c.stdin, c.tty)).unwrap_or_default();
    let (io, raw) = session_io(stdin, tty);
    let code = client.attach(&g.id, &container, io, print_output).await;
    drop(raw);
    Ok(ExitCode::from(u8::try_from(code?).unwrap_or(255)))
}

pub async fn exec(client: &Client, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let container = match a.container {
        Some(c) => c,
        None => container_of(&client.get_group(&a.group).await?, None)?,
    };
    let (io, _raw) = session_io(a.stdin, a.tty);
    let code = client
        .exec(&a.group, &container, &a.command, io, print_output)
        .await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

/// What a session (exec, attach) takes from here: standard input when `stdin`; with `tty`,
/// this terminal's size (sent first, then at every change) and raw mode for as long as the
/// returned guard lives.
pub(super) fn session_io(stdin: bool, tty: bool) -> (qci_client::ExecIo, Option<terminal::Raw>) {
    let stdin = stdin.then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16384];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        rx
    });
    let mut io = qci_client::ExecIo {
        stdin,
        ..Default::default()
    };
    if !tty {
        return (io, None);
    }
    let size = terminal::size().unwrap_or((24, 80));
    io.tty = Some(size);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx.try_send(size);
    io.resize = Some(rx);
    tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(s) = terminal::size()
                && tx.send(s).await.is_err()
            {
                return;
            }
        }
    });
    (io, terminal::Raw::enter())
}

/// A session's output: channel 2 to standard error, the rest to standard output.
pub(super) fn print_output(channel: u8, data: &[u8]) {
    if channel == 2 {
        let _ = std::io::stderr().write_all(data);
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(data);
        let _ = out.flush();
    }
}

pub(super) mod terminal {
    //! The local terminal: its size, and raw mode for the length of a session (restored on
    //! drop, whatever happens).
    use std::os::fd::AsFd;

    use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

    pub fn size() -> Option<(u16, u16)> {
        let out = std::process::Command::new("stty")
            .arg("size")
            .stdin(std::process::Stdio::inherit())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
        Some((it.next()??, it.next()??))
    }

    pub struct Raw(Termios);

    impl Raw {
        /// Raw mode on standard input, if it is a terminal.
        pub fn enter() -> Option<Raw> {
            let stdin = std::io::stdin();
            let saved = tcgetattr(stdin.as_fd()).ok()?;
            let mut raw = saved.clone();
            cfmakeraw(&mut raw);
            tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
            Some(Raw(saved))
        }
    }

    impl Drop for Raw {
        fn drop(&mut self) {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
        }
    }
}
