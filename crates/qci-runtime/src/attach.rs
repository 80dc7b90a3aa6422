//! Attach to a container's first process (`qci attach`, `qci run -i -t`), monitor side.
//!
//! A container with `stdin` keeps a pipe to its standard input; one with `tty` has a terminal,
//! whose master runc sends to the monitor over a console socket. The monitor serves
//! `attach.sock` in the container dir: each client's frames go to the input (the pipe or the
//! terminal), and the container's output goes to every client as it is read, after a replay
//! of the last output (so a client that attaches after a prompt was printed still sees it).
//! When the container has exited and its exit is recorded, every client's connection is shut.
//!
//! Frames, both ways: a kind byte, a big-endian u32 length, the payload.
//! - client → monitor: [`STDIN`] data, [`RESIZE`] rows and cols (u16 each, big-endian),
//!   [`STDIN_EOF`];
//! - monitor → client: [`STDOUT`], [`STDERR`] output.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 3;
pub const STDIN_EOF: u8 = 4;

/// Most output replayed to a client that attaches.
const REPLAY: usize = 64 << 10;
/// Largest frame taken from a client.
const MAX_FRAME: usize = 1 << 20;

/// One frame.
pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + data.len());
    f.push(kind);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// The clients attached, and the recent output for the next one.
#[derive(Default)]
pub(crate) struct Fanout {
    inner: Mutex<FanoutInner>,
}

#[derive(Default)]
struct FanoutInner {
    clients: Vec<UnixStream>,
    replay: VecDeque<u8>,
}

impl Fanout {
    /// Output of `kind` to every client; a client that cannot take it now is dropped (the
    /// log keeps everything).
    pub(crate) fn send(&self, kind: u8, data: &[u8]) {
        let f = frame(kind, data);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.clients.retain_mut(|c| c.write_all(&f).is_ok());
        g.replay.extend(&f);
        while g.replay.len() > REPLAY {
            // Whole frames only: drop the oldest.
            let len = g
                .replay
                .range(1..5)
                .fold(0usize, |n, b| (n << 8) | *b as usize);
            let end = (5 + len).min(g.replay.len());
            g.replay.drain(..end);
        }
    }

    fn add(&self, mut c: UnixStream) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (a, b) = g.replay.as_slices();
        if c.write_all(a).and_then(|_| c.write_all(b)).is_ok() {
            g.clients.push(c);
        }
    }

    /// Ends every client's connection (they read end of file).
    pub(crate) fn close(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for c in g.clients.drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Where clients' input goes.
pub(crate) enum Input {
    /// The terminal's master.
    Tty(File),
    /// The write end of the standard input pipe (None once closed).
    Pipe(Option<File>),
}

/// Serves `path` on a thread of its own for as long as the monitor lives.
pub(crate) fn serve(
    path: &Path,
    fanout: Arc<Fanout>,
    input: Arc<Mutex<Input>>,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let Ok(reader) = conn.try_clone() else {
                continue;
            };
            // Writes to a slow client must not hold the container's output back.
            let _ = conn.set_write_timeout(Some(std::time::Duration::from_millis(200)));
            fanout.add(conn);
            let input = input.clone();
            std::thread::spawn(move || read_frames(reader, &input));
        }
    });
    Ok(())
}

fn read_frames(mut c: UnixStream, input: &Mutex<Input>) {
    let mut head = [0u8; 5];
    while c.read_exact(&mut head).is_ok() {
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return;
        }
        let mut data = vec![0u8; len];
        if c.read_exact(&mut data).is_err() {
            return;
        }
        let mut i = input.lock().unwrap_or_else(|p| p.into_inner());
        match (head[0], &mut *i) {
            (STDIN, Input::Tty(m)) => {
                let _ = m.write_all(&data);
            }
            // (The write is made in the guard: one that fails closes the pipe.)
            (STDIN, Input::Pipe(Some(p))) if (&*p).write_all(&data).is_err() => {
                *i = Input::Pipe(None);
            }
            (RESIZE, Input::Tty(m)) if data.len() == 4 => {
                let rows = u16::from_be_bytes([data[0], data[1]]);
                let cols = u16::from_be_bytes([data[2], data[3]]);
                let _ = crate::pty::resize(m, rows, cols);
            }
            (STDIN_EOF, Input::Pipe(_)) => *i = Input::Pipe(None),
            // End of input on a terminal: what Ctrl-D types.
            (STDIN_EOF, Input::Tty(m)) => {
                let _ = m.write_all(&[4]);
            }
            _ => {}
        }
    }
}

/// The terminal master runc sent over the console socket (it connects during `runc run`;
/// the connection and the descriptor wait in the socket until taken here).
pub(crate) fn receive_console(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    listener.set_nonblocking(true)?;
    let (conn, _) = listener.accept()?;
    conn.set_nonblocking(false)?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS just gave this process the descriptor; nothing else owns it.
            #[allow(unsafe_code)]
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(std::io::Error::other(
        "runc sent no terminal over the console socket",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_whole_recent_frames() {
        let f = Fanout::default();
        for i in 0..100u32 {
            f.send(STDOUT, &vec![b'a' + (i % 26) as u8; 1000]);
        }
        let g = f.inner.lock().unwrap();
        assert!(g.replay.len() <= REPLAY);
        // It starts at a frame: a kind, then a length that fits what follows.
        let r: Vec<u8> = g.replay.iter().copied().collect();
        let mut at = 0;
        while at < r.len() {
            assert_eq!(r[at], STDOUT);
            let len = u32::from_be_bytes([r[at + 1], r[at + 2], r[at + 3], r[at + 4]]) as usize;
            assert_eq!(len, 1000);
            at += 5 + len;
        }
        assert_eq!(at, r.len());
        assert_eq!(*r.last().unwrap(), b'a' + (99 % 26) as u8);
    }
}
