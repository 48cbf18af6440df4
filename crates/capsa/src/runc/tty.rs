//! The foreground terminal of `run` and `exec -t` without `--detach`: capsa-runc is its own
//! console socket, receives the pty master from the container and relays it to its stdio.
//!
//! Owns: the temporary console socket, receiving the master (SCM_RIGHTS), raw mode of our
//! terminal and the copy loop, with signals read from a signalfd so that one poll(2) loop
//! serves the terminal, SIGWINCH, forwarded signals and the container's exit.
//! Must not touch: the container side of the pty (`capsa_runtime::console`).

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize};

use capsa_runtime::container::{foreground, send_signal};

/// A console socket bound in the state root for one container; removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds `<root>/.console-<id>-<our pid>.sock`. The runtime connects before it clones the
    /// init, and the connection waits in the backlog until we accept it after `create`.
    pub fn bind(root: &Path, id: &str) -> Result<ConsoleSocket> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let path = root.join(format!(".console-{id}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot bind console socket {}", path.display()))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master (one SCM_RIGHTS fd; the
    /// payload is the pty name).
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (conn, _) = self
            .listener
            .accept()
            .context("cannot accept on the console socket")?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 256];
        recvmsg(
            &conn,
            &mut [IoSliceMut::new(&mut name)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .context("cannot receive the pty master")?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg
                && let Some(fd) = fds.next()
            {
                return Ok(fd);
            }
        }
        bail!("the console socket message carried no file descriptor")
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Our terminal in raw mode for as long as this lives (the container's pty does the line
/// discipline), restored on drop.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = rustix::stdio::stdin();
        let Ok(saved) = tcgetattr(stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = tcsetattr(stdin, OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, t);
        }
    }
}

/// Relays between our stdio and `master` until `pid` exits; returns its exit code. The
/// forwarded signals and SIGCHLD must already be blocked (`foreground::block_signals`).
pub fn relay(master: &OwnedFd, pid: i32) -> Result<i32> {
    let sigfd = signalfd().context("cannot create a signalfd")?;
    copy_winsize(master);
    let _raw = RawMode::enter();
    let stdin = rustix::stdio::stdin();
    let (mut stdin_open, mut master_open) = (true, true);
    let mut buf = [0u8; 8192];
    loop {
        if let Some(code) = foreground::reap(pid)? {
            drain(master, &mut buf);
            return Ok(code);
        }
        let mut fds = [
            PollFd::new(&sigfd, PollFlags::IN),
            PollFd::new(
                master,
                if master_open {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
            PollFd::new(
                &stdin,
                if stdin_open {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("poll on the terminal failed"),
        }
        let ready = [fds[0].revents(), fds[1].revents(), fds[2].revents()];
        if !ready[0].is_empty() {
            handle_signal(&sigfd, master, pid);
        }
        if !ready[1].is_empty() {
            master_open = copy(master.as_fd(), rustix::stdio::stdout(), &mut buf);
        }
        if !ready[2].is_empty() {
            stdin_open = copy(stdin, master.as_fd(), &mut buf);
        }
    }
}

/// One read and a full write; false once the source is at EOF or failed (EIO on the master
/// means every slave fd is closed).
fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    let n = match rustix::io::read(from, &mut *buf) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    let mut rest = &buf[..n];
    while !rest.is_empty() {
        match rustix::io::write(to, rest) {
            Ok(w) => rest = &rest[w..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return true,
        }
    }
    true
}

/// Output the container wrote just before it exited is still in the pty: copy what is there.
fn drain(master: &OwnedFd, buf: &mut [u8]) {
    loop {
        let mut fds = [PollFd::new(master, PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if !matches!(poll(&mut fds, Some(&zero)), Ok(1))
            || !copy(master.as_fd(), rustix::stdio::stdout(), buf)
        {
            return;
        }
    }
}

fn handle_signal(sigfd: &OwnedFd, master: &OwnedFd, pid: i32) {
    let mut info = [0u8; 128];
    let Ok(n) = rustix::io::read(sigfd, &mut info) else {
        return;
    };
    if n < 4 {
        return;
    }
    // struct signalfd_siginfo starts with `u32 ssi_signo` (signalfd(2)).
    let sig = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
    match sig {
        libc::SIGCHLD => {}
        libc::SIGWINCH => copy_winsize(master),
        _ => {
            let _ = send_signal(pid, sig);
        }
    }
}

fn copy_winsize(master: &OwnedFd) {
    if let Ok(ws) = tcgetwinsize(rustix::stdio::stdin()) {
        let _ = tcsetwinsize(master, ws);
    }
}

/// A signalfd for the signals `foreground::block_signals` blocked.
fn signalfd() -> std::io::Result<OwnedFd> {
    let set = foreground::blocked_set();
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new fd, which we own from here on.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
