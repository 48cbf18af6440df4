//! Thin safe wrappers for the few syscalls rustix does not offer in the shape we need.
//!
//! Owns: raw `clone` and `clone3`, `mount(2)` with raw flags, `close_range`, `execve`, `PR_CAPBSET_DROP` by
//! number, `_exit` and errno names. Must not hold any policy: callers decide what to call when.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::io::Errno;

/// `clone(flags | SIGCHLD)` with no new stack: fork semantics plus namespace flags.
/// Returns `Ok(0)` in the child and the child's pid in the parent.
///
/// The child may only be used by a single-threaded caller (the runtime process is
/// single-threaded; tests must call this from a process whose other threads hold no locks).
pub fn clone_fork(flags: u64) -> Result<i32, Errno> {
    let flags = flags | libc::SIGCHLD as u64;
    // SAFETY: with a null stack the kernel duplicates the caller's stack copy-on-write, exactly
    // like fork(2); no pointers are passed. The child returns here with 0 and only runs code of
    // this process image until it execs or exits.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(ret as i32)
    }
}

/// `clone_fork`, with the child created inside the cgroup2 directory `cgroup_dir`
/// (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7). ENOSYS or E2BIG mean an older kernel: the
/// caller then clones without it and moves the child by `cgroup.procs`.
pub fn clone_fork_into(flags: u64, cgroup_dir: BorrowedFd<'_>) -> Result<i32, Errno> {
    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes), from
    /// include/uapi/linux/sched.h.
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        // clone3 refuses an exit signal with CLONE_PARENT (EINVAL): such a child inherits the
        // caller's own exit signal (copy_process), as with clone(CLONE_PARENT | SIGCHLD).
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup_dir.as_raw_fd() as u64,
    };
    // SAFETY: `args` is a valid clone_args of the size passed and outlives the call. With a zero
    // stack the child continues on a copy-on-write copy of our stack, exactly like fork(2) (and
    // `clone_fork`): it returns here with 0 and only runs code of this image until exec or exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(ret as i32)
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `mount(source, target, fstype, flags, data)` with raw MS_* flags.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let ret = unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags as libc::c_ulong,
            p(data).cast(),
        )
    };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`: mark every fd >= `first` close-on-exec.
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range takes integers only; with CLOEXEC it closes nothing now.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// Clear FD_CLOEXEC on a raw fd number (a preserved fd the caller handed us).
pub fn clear_cloexec(fd: i32) -> Result<(), Errno> {
    // SAFETY: F_SETFD on an integer fd touches only the fd table entry.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// `prctl(PR_CAPBSET_DROP, n)` for any number up to cap_last_cap (rustix's enum stops at the
/// capabilities it knows).
pub fn capbset_drop(cap: u8) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes one integer argument.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// `execve(path, argv, envp)`; returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> Errno {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: argv/envp are NULL-terminated arrays of pointers to NUL-terminated strings that
    // live until execve returns (it only returns on failure).
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    Errno::from_raw_os_error(last_errno())
}

/// `_exit(code)`: leave the child without running atexit handlers or flushing parent buffers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// `unshare(flags)` for namespace flags only (never CLONE_FILES), so no fd table is split.
pub fn unshare_namespaces(flags: u64) -> Result<(), Errno> {
    // SAFETY: namespace flags do not affect memory or fd tables of this single-threaded process.
    let ret = unsafe { libc::unshare(flags as libc::c_int) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// `ioctl(fd, TIOCSCTTY, 0)`: make the terminal the controlling terminal of this session.
pub fn set_controlling_tty(fd: i32) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)`: a fresh session keyring for the container.
pub fn join_session_keyring(name: &CStr) -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: the name is a NUL-terminated string that outlives the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret < 0 {
        Err(Errno::from_raw_os_error(last_errno()))
    } else {
        Ok(())
    }
}

/// The symbolic name of an errno (`EPERM`), as runc and crun print them.
pub fn errno_name(raw: i32) -> String {
    let name = match raw {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ELOOP => "ELOOP",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EUSERS => "EUSERS",
        _ => return format!("errno {raw}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn errno_names() {
        assert_eq!(super::errno_name(libc::EPERM), "EPERM");
        assert_eq!(super::errno_name(4095), "errno 4095");
    }
}
