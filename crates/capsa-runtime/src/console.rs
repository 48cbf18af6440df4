//! The container console: a pty allocated inside the container and its master handed to the
//! caller's `--console-socket`.
//!
//! Owns: connecting the console socket (in the runtime, before the clone), allocating the pty
//! through a verified `/dev/pts/ptmx` of the container's devpts (CVE-2025-52565), mounting the
//! slave on `/dev/console`, sending the master (one SCM_RIGHTS message whose payload is the pty
//! name, as runc's `SendRawFd`), and making the slave the process's stdio and controlling tty.
//! Must not touch any other mount.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::init::{Step, StepError, sys};

/// devpts' f_type (include/uapi/linux/magic.h).
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Connect to the caller's console socket (AF_UNIX stream; abstract addresses are not supported).
pub fn connect(path: &Path) -> Step<OwnedFd> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| StepError::sys("create", "a unix socket", e, ""))?;
    let addr = rustix::net::SocketAddrUnix::new(path)
        .map_err(|e| StepError::sys("use console socket", path.display(), e, "path too long?"))?;
    rustix::net::connect(&sock, &addr).map_err(|e| {
        StepError::sys(
            "connect to console socket",
            path.display(),
            e,
            "is someone listening on it?",
        )
    })?;
    Ok(sock)
}

/// Allocate the pty in the container whose root directory is `root`, send the master to
/// `socket`, and make the slave our stdio. With `mount_console`, bind the slave on /dev/console.
pub fn setup_in_rootfs(root: &OwnedFd, socket: Option<&OwnedFd>, mount_console: bool) -> Step {
    let socket = socket
        .ok_or_else(|| StepError::msg("a terminal was requested but there is no console socket"))?;
    let master = open_verified_ptmx(root)?;
    rustix::pty::unlockpt(&master)
        .map_err(|e| StepError::sys("unlockpt", "/dev/pts/ptmx", e, ""))?;
    // TIOCGPTPEER opens the slave from the master itself: no /dev/pts/N path lookup to redirect.
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY,
    )
    .map_err(|e| {
        StepError::sys(
            "open the pty peer of",
            "/dev/pts/ptmx",
            e,
            "TIOCGPTPEER, kernel >= 4.13",
        )
    })?;
    let name = rustix::pty::ptsname(&master, Vec::new())
        .map_err(|e| StepError::sys("ptsname", "/dev/pts/ptmx", e, ""))?;
    if mount_console {
        mount_on_console(root, &slave)?;
    }
    send_master(socket, &master, name.to_bytes())?;
    drop(master);
    for target in 0..3 {
        // SAFETY: 0..=2 are the standard descriptors; dup2 replaces whatever they were.
        let ret = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        if ret < 0 {
            return Err(StepError::msg(format!(
                "cannot dup2 the pty onto fd {target}: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    sys::set_controlling_tty(0).map_err(|e| {
        StepError::sys(
            "make controlling tty",
            name.to_string_lossy(),
            e,
            "TIOCSCTTY",
        )
    })
}

/// Open `dev/pts/ptmx` without following symlinks out of the root, and check that it is really
/// the ptmx of a devpts (st_rdev 5:2 on a devpts superblock): a container-made file or a bind of
/// something else would let the console be redirected (CVE-2025-52565).
fn open_verified_ptmx(root: &OwnedFd) -> Step<OwnedFd> {
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(
        root,
        "dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    )
    .map_err(|e| {
        StepError::sys(
            "open",
            "/dev/pts/ptmx",
            e,
            "is devpts mounted on /dev/pts with ptmxmode?",
        )
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| StepError::sys("stat", "/dev/pts/ptmx", e, ""))?;
    let sfs =
        rustix::fs::fstatfs(&fd).map_err(|e| StepError::sys("statfs", "/dev/pts/ptmx", e, ""))?;
    let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    let (maj, min) = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
    if !is_char || (maj, min) != (5, 2) || sfs.f_type as i64 != DEVPTS_SUPER_MAGIC {
        return Err(StepError::msg(format!(
            "refusing /dev/pts/ptmx: it is not the ptmx of a devpts (device {maj}:{min}, fs {:#x}; CVE-2025-52565)",
            sfs.f_type
        )));
    }
    Ok(fd)
}

/// Bind the slave on /dev/console (created as an empty file if missing; refused if a symlink).
fn mount_on_console(root: &OwnedFd, slave: &OwnedFd) -> Step {
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS;
    let dev = rustix::fs::openat2(
        root,
        "dev",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    )
    .map_err(|e| StepError::sys("open", "/dev", e, "a symlinked /dev is refused"))?;
    let create = OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY;
    match rustix::fs::openat(&dev, "console", create, Mode::from_raw_mode(0o666)) {
        Ok(_) => {}
        // An existing device node cannot be opened without a tty behind it; ELOOP is a symlink.
        Err(rustix::io::Errno::NXIO | rustix::io::Errno::NODEV) => {}
        Err(e) => {
            return Err(StepError::sys(
                "create",
                "/dev/console",
                e,
                "a symlinked /dev/console is refused",
            ));
        }
    }
    let target = rustix::fs::openat(
        &dev,
        "console",
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", "/dev/console", e, ""))?;
    let src = fd_path(slave);
    let dst = fd_path(&target);
    sys::mount(Some(&src), &dst, None, libc::MS_BIND, None)
        .map_err(|e| StepError::sys("bind the pty on", "/dev/console", e, ""))
}

/// `/proc/self/fd/N` as a C string; only used before pivot_root, where /proc is the host's.
pub fn fd_path(fd: &OwnedFd) -> std::ffi::CString {
    let s = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // A formatted number never contains NUL.
    std::ffi::CString::new(s).unwrap_or_default()
}

/// One sendmsg: payload = pty name, one SCM_RIGHTS cmsg with one fd (what go-runc's
/// `ReceiveMaster` and runc's `RecvFile` accept).
fn send_master(socket: &OwnedFd, master: &OwnedFd, name: &[u8]) -> Step {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [master.as_fd()];
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(StepError::msg("cannot build the SCM_RIGHTS message"));
    }
    rustix::net::sendmsg(
        socket,
        &[std::io::IoSlice::new(name)],
        &mut cmsg,
        SendFlags::NOSIGNAL,
    )
    .map_err(|e| {
        StepError::sys(
            "send the pty master to",
            "the console socket",
            e,
            "did the receiver close it?",
        )
    })?;
    Ok(())
}
