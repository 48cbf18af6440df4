//! tty: `-t`. The runtime allocates the pty inside the container and sends its master over a
//! console socket (runc's `--console-socket` contract: one SCM_RIGHTS message). The engine
//! listens on a console socket in a private directory, receives the master, copies our window size to it,
//! and relays: our stdin to the master (in raw mode when stdin is a terminal, restored after),
//! the master to our stdout. A detached `-dt` container's monitor relays the master into the
//! log. Must not touch the container's processes: the waiting and signals stay in `engine`.

use crate::error::{Error, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::path::PathBuf;

pub const SOCKET: &str = "console.sock";

/// A bound, listening console socket in a private 0700 directory under /tmp (a sun_path holds
/// only 108 bytes, which a container directory can exceed; the directory keeps other users from
/// connecting first). Both are removed on drop.
pub struct ConsoleSocket {
    pub path: PathBuf,
    dir: PathBuf,
    listener: OwnedFd,
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

pub fn listen() -> Result<ConsoleSocket> {
    use std::os::unix::fs::DirBuilderExt;
    let token = crate::names::new_id()?;
    let dir = PathBuf::from(format!("/tmp/capsa-tty-{}", &token[..16]));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io("create directory", &dir, e))?;
    let path = dir.join(SOCKET);
    let sys = |op: &'static str| {
        let p = path.clone();
        move |e: rustix::io::Errno| Error::io(op, p, e.into())
    };
    let made = (|| {
        let listener = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(sys("socket"))?;
        let addr = rustix::net::SocketAddrUnix::new(&path).map_err(sys("bind"))?;
        rustix::net::bind(&listener, &addr).map_err(sys("bind"))?;
        rustix::net::listen(&listener, 1).map_err(sys("listen"))?;
        Ok(listener)
    })();
    match made {
        Ok(listener) => Ok(ConsoleSocket {
            path,
            dir,
            listener,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(&dir);
            Err(e)
        }
    }
}

impl ConsoleSocket {
    /// Accepts the runtime's connection and takes the pty master out of its message.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let err = |op: &'static str| {
            let path = self.path.clone();
            move |e: rustix::io::Errno| Error::io(op, path, e.into())
        };
        let conn = rustix::net::accept(&self.listener).map_err(err("accept"))?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 64];
        rustix::net::recvmsg(
            &conn,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(err("recvmsg"))?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg
                && let Some(fd) = fds.next()
            {
                return Ok(fd);
            }
        }
        Err(Error::Runtime(format!(
            "no pty master arrived on {}",
            self.path.display()
        )))
    }
}

/// Our terminal in raw mode for as long as this lives (restored on drop).
struct RawMode {
    saved: Option<rustix::termios::Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ =
            rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin().as_fd(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

/// Starts the relay threads; the returned guard restores the terminal when dropped (after the
/// container has exited). `with_stdin`: copy our stdin too (`-i`).
pub fn relay(master: OwnedFd, with_stdin: bool) -> Result<impl Drop> {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout().as_fd()) {
        let _ = rustix::termios::tcsetwinsize(&master, size);
    }
    let raw = RawMode::enter();
    let reader = master
        .try_clone()
        .map_err(|e| Error::io("dup", "pty master", e))?;
    std::thread::spawn(move || {
        let mut from = std::fs::File::from(reader);
        let mut out = std::io::stdout();
        let mut buf = [0u8; 8192];
        // EIO once the last slave fd closes: the container is gone.
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    if with_stdin {
        std::thread::spawn(move || {
            let mut to = std::fs::File::from(master);
            let mut input = std::io::stdin();
            let mut buf = [0u8; 1024];
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(raw)
}
