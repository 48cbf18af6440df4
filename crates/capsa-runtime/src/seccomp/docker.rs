//! A seccomp profile with the effect of Docker's default (moby/profiles `seccomp/default.json`),
//! generated for a given bounding set: like Docker, the per-capability groups are keyed on the
//! capabilities the container may ever hold, so `--cap-add SYS_ADMIN` also allows `mount`.
//!
//! Owns: the profile's data, written here as Rust lists, one per group. Must not compile or
//! load anything (`compile` does).
//!
//! Facts taken from the profile (not its text): default action ERRNO with errno 1 (EPERM);
//! one allowlist; `socket` only for the listed address families; `personality` only for five
//! values; per-architecture extras; and per-capability groups. Without CAP_SYS_ADMIN `clone`
//! may not create namespaces (flags masked with 0x7E020000 must be 0) and `clone3`, whose flags
//! live in memory that seccomp cannot read, fails with ENOSYS so that libcs fall back to clone.
//! The profile's `ptrace`/`process_vm_*` group needs Linux >= 4.8, which capsa requires anyway.

use capsa_caps::{Cap, CapSet};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};

/// The unconditional allowlist.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed on Linux >= 4.8 (since then ptrace cannot bypass seccomp), whatever the caps.
const PTRACE_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// socket(2) is allowed for address families below 12 and for these ones (AF_VSOCK, 40, and a
/// few others are not).
const SOCKET_FAMILY_BELOW: u64 = 12;
const SOCKET_FAMILIES: &[u64] = &[
    13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44,
    45,
];

/// personality(2) values: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26, and the query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
const CLONE_NS_FLAGS: u64 = 0x7E02_0000;

#[cfg(target_arch = "x86_64")]
const ARCH_EXTRAS: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "x86")]
const ARCH_EXTRAS: &[&str] = &["modify_ldt"];
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const ARCH_EXTRAS: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(target_arch = "powerpc64")]
const ARCH_EXTRAS: &[&str] = &["sync_file_range2", "swapcontext"];
#[cfg(target_arch = "s390x")]
const ARCH_EXTRAS: &[&str] = &[
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "s390_runtime_instr",
];
#[cfg(target_arch = "riscv64")]
const ARCH_EXTRAS: &[&str] = &["riscv_flush_icache"];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "riscv64"
)))]
const ARCH_EXTRAS: &[&str] = &[];

/// The profile's archMap entry for the native architecture: the native one first, then the
/// compat ABIs whose syscall numbers the filter must also recognise.
#[cfg(target_arch = "x86_64")]
const ARCHES: &[Arch] = &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
#[cfg(target_arch = "aarch64")]
const ARCHES: &[Arch] = &[Arch::ScmpArchAarch64, Arch::ScmpArchArm];
#[cfg(target_arch = "s390x")]
const ARCHES: &[Arch] = &[Arch::ScmpArchS390x, Arch::ScmpArchS390];
#[cfg(target_arch = "riscv64")]
const ARCHES: &[Arch] = &[Arch::ScmpArchRiscv64];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "s390x",
    target_arch = "riscv64"
)))]
const ARCHES: &[Arch] = &[];

const SYS_ADMIN: &[&str] = &[
    "bpf",
    "clone",
    "clone3",
    "fanotify_init",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "lookup_dcookie",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "lsm_set_self_attr",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "perf_event_open",
    "quotactl",
    "quotactl_fd",
    "setdomainname",
    "sethostname",
    "setns",
    "syslog",
    "umount",
    "umount2",
    "unshare",
];
const DAC_READ_SEARCH: &[&str] = &["open_by_handle_at"];
const SYS_BOOT: &[&str] = &["reboot"];
const SYS_CHROOT: &[&str] = &["chroot"];
const SYS_MODULE: &[&str] = &["delete_module", "init_module", "finit_module"];
const SYS_PACCT: &[&str] = &["acct"];
const SYS_PTRACE: &[&str] = &[
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];
const SYS_RAWIO: &[&str] = &["iopl", "ioperm"];
const SYS_TIME: &[&str] = &["settimeofday", "stime", "clock_settime", "clock_settime64"];
const SYS_TTY_CONFIG: &[&str] = &["vhangup"];
const SYS_NICE: &[&str] = &[
    "get_mempolicy",
    "mbind",
    "set_mempolicy",
    "set_mempolicy_home_node",
];
const SYSLOG: &[&str] = &["syslog"];
const BPF: &[&str] = &["bpf"];
const PERFMON: &[&str] = &["perf_event_open"];

/// Capability (by name) -> the syscalls it unlocks.
const BY_CAP: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", DAC_READ_SEARCH),
    ("CAP_SYS_ADMIN", SYS_ADMIN),
    ("CAP_SYS_BOOT", SYS_BOOT),
    ("CAP_SYS_CHROOT", SYS_CHROOT),
    ("CAP_SYS_MODULE", SYS_MODULE),
    ("CAP_SYS_PACCT", SYS_PACCT),
    ("CAP_SYS_PTRACE", SYS_PTRACE),
    ("CAP_SYS_RAWIO", SYS_RAWIO),
    ("CAP_SYS_TIME", SYS_TIME),
    ("CAP_SYS_TTY_CONFIG", SYS_TTY_CONFIG),
    ("CAP_SYS_NICE", SYS_NICE),
    ("CAP_SYSLOG", SYSLOG),
    ("CAP_BPF", BPF),
    ("CAP_PERFMON", PERFMON),
];

fn rule(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(names.iter().map(|n| n.to_string()).collect());
    r.set_action(action);
    r
}

/// An ALLOW rule for `name` with one argument condition. The builder cannot fail with every
/// field set; should it ever, the rule is left out, which fails closed (the call stays denied).
fn arg_rule(
    name: &str,
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
) -> Option<LinuxSyscall> {
    let a = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .ok()?;
    let mut r = rule(&[name], LinuxSeccompAction::ScmpActAllow);
    r.set_args(Some(vec![a]));
    Some(r)
}

/// Docker's default profile for a container whose bounding set is `bounding`.
pub fn docker_default(bounding: CapSet) -> LinuxSeccomp {
    use LinuxSeccompAction::{ScmpActAllow as Allow, ScmpActErrno as Errno};
    use LinuxSeccompOperator::{ScmpCmpEq as Eq, ScmpCmpLt as Lt, ScmpCmpMaskedEq as MaskedEq};
    let has = |name: &str| Cap::from_oci_name(name).is_some_and(|c| bounding.contains(c));
    let mut rules = vec![rule(ALLOWED, Allow), rule(PTRACE_SINCE_4_8, Allow)];
    rules.extend(arg_rule("socket", 0, Lt, SOCKET_FAMILY_BELOW));
    rules.extend(
        SOCKET_FAMILIES
            .iter()
            .filter_map(|f| arg_rule("socket", 0, Eq, *f)),
    );
    rules.extend(
        PERSONALITIES
            .iter()
            .filter_map(|p| arg_rule("personality", 0, Eq, *p)),
    );
    if !ARCH_EXTRAS.is_empty() {
        rules.push(rule(ARCH_EXTRAS, Allow));
    }
    for (cap, names) in BY_CAP {
        if has(cap) {
            rules.push(rule(names, Allow));
        }
    }
    if !has("CAP_SYS_ADMIN") {
        // s390 passes the clone flags in the second argument.
        let flags_arg = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        rules.extend(arg_rule("clone", flags_arg, MaskedEq, CLONE_NS_FLAGS));
        let mut clone3 = rule(&["clone3"], Errno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        rules.push(clone3);
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(Errno);
    profile.set_default_errno_ret(Some(libc::EPERM as u32));
    profile.set_architectures(Some(ARCHES.to_vec()));
    profile.set_syscalls(Some(rules));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().iter().flatten().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args().is_none()
                && r.names().iter().any(|n| n == name)
        })
    }

    fn caps(names: &[&str]) -> CapSet {
        let mut s = CapSet::EMPTY;
        for n in names {
            if let Some(c) = Cap::from_oci_name(n) {
                s.insert(c);
            }
        }
        s
    }

    #[test]
    fn sys_admin_unlocks_mount_and_unshare() {
        let without = docker_default(caps(&["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]));
        let with = docker_default(caps(&["CAP_SYS_ADMIN"]));
        for name in ["mount", "unshare", "setns", "umount2"] {
            assert!(!allowed(&without, name), "{name} without SYS_ADMIN");
            assert!(allowed(&with, name), "{name} with SYS_ADMIN");
        }
        let clone3 = |p: &LinuxSeccomp| {
            p.syscalls()
                .iter()
                .flatten()
                .any(|r| r.names() == &["clone3".to_string()] && r.errno_ret() == Some(38))
        };
        assert!(clone3(&without) && !clone3(&with));
    }

    #[test]
    fn sys_ptrace_unlocks_kcmp_and_pidfd_getfd() {
        let without = docker_default(CapSet::EMPTY);
        let with = docker_default(caps(&["CAP_SYS_PTRACE"]));
        for name in ["kcmp", "pidfd_getfd", "process_madvise"] {
            assert!(!allowed(&without, name), "{name}");
            assert!(allowed(&with, name), "{name}");
        }
        // Docker allows ptrace itself on Linux >= 4.8 whatever the caps.
        assert!(allowed(&without, "ptrace"));
    }

    #[test]
    fn every_capability_group_and_shape() {
        let all = docker_default(CapSet::up_to(40));
        for (cap, names) in BY_CAP {
            for n in *names {
                assert!(allowed(&all, n), "{cap}: {n}");
            }
        }
        let none = docker_default(CapSet::EMPTY);
        for n in [
            "reboot",
            "chroot",
            "init_module",
            "acct",
            "iopl",
            "settimeofday",
            "vhangup",
            "mbind",
            "syslog",
            "bpf",
            "perf_event_open",
            "open_by_handle_at",
        ] {
            assert!(!allowed(&none, n), "{n}");
        }
        assert_eq!(none.default_errno_ret(), Some(1));
        assert!(ALLOWED.len() > 350);
        assert!(allowed(&none, "read") && allowed(&none, "arch_prctl"));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(none.architectures().as_deref().map(<[Arch]>::len), Some(3));
    }

    #[test]
    fn compiles_with_libseccomp() {
        let f = super::super::compile(&docker_default(CapSet::EMPTY));
        assert!(f.is_ok_and(|f| f.len() > 100));
    }
}
