//! Root tests of `capsa_runtime::seccomp`: a forked child loads a compiled filter (the same
//! async-signal-safe `load` the container init uses) and reports, through its exit code,
//! what the kernel answered to a blocked and to an allowed syscall.

use std::time::Instant;

use capsa_caps::{Cap, CapSet};
use capsa_runtime::seccomp::{SeccompFilter, compile, compile_cached, docker_default};
use oci_spec::runtime::LinuxSeccomp;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `body` in a forked child after loading `filter`; returns the child's exit code.
/// `body` must stay async-signal-safe (raw syscalls only): the test harness is threaded.
fn in_child(filter: &SeccompFilter, body: fn() -> i32) -> i32 {
    // SAFETY: the child only calls `load` (one raw syscall), `body` (raw syscalls) and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match filter.load() {
            Ok(()) => body(),
            Err(_) => 99,
        };
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(code) }
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waiting for our own child; `status` is a valid out pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid);
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// -1 and errno, or 0 on success, as a small exit code: errno, or 0.
fn errno_of(rc: libc::c_long) -> i32 {
    if rc == -1 {
        // SAFETY: errno of this thread right after the call.
        unsafe { *libc::__errno_location() }
    } else {
        0
    }
}

fn docker_caps(extra: &[&str]) -> CapSet {
    let names = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    let mut s = CapSet::EMPTY;
    for n in names.iter().chain(extra) {
        if let Some(c) = Cap::from_oci_name(n) {
            s.insert(c);
        }
    }
    s
}

fn unshare_uts() -> i32 {
    // SAFETY: raw syscall with integer arguments.
    errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS) })
}

fn getpid_works() -> i32 {
    // SAFETY: raw syscall without arguments.
    if unsafe { libc::syscall(libc::SYS_getpid) } > 0 {
        0
    } else {
        1
    }
}

#[test]
fn docker_default_blocks_unshare_without_sys_admin() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let filter = compile(&docker_default(docker_caps(&[]))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(in_child(&filter, unshare_uts), libc::EPERM);
    assert_eq!(
        in_child(&filter, getpid_works),
        0,
        "an allowed syscall must work"
    );
    let clone3 = || {
        // SAFETY: clone3 with a NULL args pointer: the filter answers before the kernel reads it.
        errno_of(unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) })
    };
    assert_eq!(
        in_child(&filter, clone3),
        libc::ENOSYS,
        "clone3 -> ENOSYS without SYS_ADMIN"
    );
}

#[test]
fn docker_default_allows_unshare_with_sys_admin() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let filter =
        compile(&docker_default(docker_caps(&["CAP_SYS_ADMIN"]))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(in_child(&filter, unshare_uts), 0);
}

fn spec(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test json {json}: {e}"))
}

#[test]
fn errno_ret_and_masked_eq_reach_the_kernel() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let filter = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":42},
            {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":13,
             "args":[{"index":0,"value":255,"valueTwo":8,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let getppid = || {
        // SAFETY: raw syscall without arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_getppid) })
    };
    assert_eq!(in_child(&filter, getppid), 42);
    let masked_hit = || {
        // SAFETY: personality(0x0408): (0x0408 & 0xff) == 8 -> denied before it runs.
        errno_of(unsafe { libc::syscall(libc::SYS_personality, 0x0408usize) })
    };
    assert_eq!(in_child(&filter, masked_hit), 13);
    let masked_miss = || {
        // SAFETY: personality(0xffffffff) only queries the persona.
        errno_of(unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffusize) })
    };
    assert_eq!(in_child(&filter, masked_miss), 0);
}

#[test]
fn default_errno_ret_applies_to_unlisted_calls() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // Everything the child needs stays allowed; getppid falls to the default action.
    let filter = compile(&spec(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["getppid","gettid"],"action":"SCMP_ACT_ERRNO"}]}"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let getppid = || {
        // SAFETY: raw syscall without arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_getppid) })
    };
    assert_eq!(
        in_child(&filter, getppid),
        libc::EPERM,
        "ERRNO without errnoRet is EPERM"
    );
}

/// Not an assertion on speed: prints the numbers recorded in docs/performance.md.
#[test]
fn compile_and_cache_timings() {
    let profile = docker_default(docker_caps(&[]));
    let start = Instant::now();
    let n = 20;
    for _ in 0..n {
        let _ = compile(&profile);
    }
    let compile_us = start.elapsed().as_micros() / n;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let first = compile_cached(&profile, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    for _ in 0..n {
        let hit = compile_cached(&profile, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hit, first);
    }
    let hit_us = start.elapsed().as_micros() / n;
    eprintln!(
        "docker default profile: {} instructions; compile {compile_us} us; cache hit {hit_us} us",
        first.len()
    );
}
