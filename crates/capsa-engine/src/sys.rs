//! sys: the few raw calls the engine needs that rustix does not wrap, each in one small safe
//! function: fork(2) for the monitor. Must not grow beyond process plumbing.

/// What fork returned on this side.
pub enum Forked {
    Parent,
    Child,
}

/// fork(2). The caller must be single-threaded (the CLI is), so the child holds no lock that
/// another thread owned at fork time.
pub fn fork() -> std::io::Result<Forked> {
    // SAFETY: fork takes no arguments; in a single-threaded caller the child may run any code.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}

/// Makes `fd` the process's descriptor number `target` (dup2), for redirecting stdio.
pub fn dup_onto(fd: &impl rustix::fd::AsFd, target: i32) -> std::io::Result<()> {
    use rustix::fd::AsRawFd;
    let raw = fd.as_fd().as_raw_fd();
    if raw == target {
        return Ok(());
    }
    // SAFETY: dup2 only manipulates the descriptor table; both numbers are plain ints and
    // `target` is one of 0, 1, 2, which the caller means to replace.
    let rc = unsafe { libc::dup2(raw, target) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}
