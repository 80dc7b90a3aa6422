//! `qci exec GROUP [-c NAME] [-i] -- CMD ARG...`.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::bail;
use qci_client::Client;

use crate::cli::ExecArgs;

pub async fn exec(client: &Client, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let container = match a.container {
        Some(c) => c,
        None => {
            let g = client.get_group(&a.group).await?;
            match g.spec.containers.as_slice() {
                [only] => only.name.clone(),
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
    };
    let stdin = a.stdin.then(|| {
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
    let _raw = if a.tty {
        let size = terminal::size().unwrap_or((24, 80));
        io.tty = Some(size);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
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
        terminal::Raw::enter()
    } else {
        None
    };
    let code = client
        .exec(&a.group, &container, &a.command, io, |channel, data| {
            if channel == 2 {
                let _ = std::io::stderr().write_all(data);
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(data);
                let _ = out.flush();
            }
        })
        .await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

mod terminal {
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
