//! A pseudo-terminal for interactive exec: `runc exec -t` runs with the pty's slave as its
//! controlling terminal, and qci talks to the master. runc copies between its terminal and the
//! one it makes in the container, and passes window size changes on (it gets SIGWINCH when
//! the master's size is set).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Opens a pty of `rows` × `cols`; returns (master, slave).
pub(crate) fn open(rows: u16, cols: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let p = nix::pty::openpty(Some(&ws), None).map_err(std::io::Error::from)?;
    Ok((p.master, p.slave))
}

/// Sets the terminal's size (the process on the other side gets SIGWINCH).
pub(crate) fn resize(master: &impl AsRawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the fd is an open pty master and `ws` a valid winsize for TIOCSWINSZ.
    unsafe { set_winsize(master.as_raw_fd(), &ws) }
        .map(|_| ())
        .map_err(std::io::Error::from)
}

/// Makes the child a session leader with the pty (its stdin) as controlling terminal.
pub(crate) fn controlling_terminal(cmd: &mut tokio::process::Command) {
    // SAFETY: between fork and exec only async-signal-safe calls are made (setsid, ioctl).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
