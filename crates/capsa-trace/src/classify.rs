//! Classification of one capability check by its kernel call path.
//!
//! Owns the static knowledge of which kernel callers ask for a capability only as a probe (the
//! answer changes a heuristic, not the outcome of the syscall) and which callers are real needs.
//! Pure: must not read tracefs or files. The table comes from stacks taken with the `stacktrace`
//! trigger on Linux 6.18 (shared/reference/cap-tracing.md §2).

use capsa_caps::Cap;
use serde::Serialize;

/// What a check means for the proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A granted check on a path where a refusal fails the operation.
    Required,
    /// An advisory or noaudit check; the reason says why it does not count.
    Probe(ProbeReason),
    /// A refused check on a real path: reported, never proposed.
    Denied,
    /// Made with someone else's credentials (overlayfs override_creds) or from interrupt context.
    Excluded,
}

/// Why a probe does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReason {
    Overcommit,
    Capset,
    ProcPtrace,
    Kallsyms,
    SysctlMode,
    OtherTask,
    SeccompWithoutNnp,
    SgidStrip,
    /// generic_permission asked DAC_READ_SEARCH first and DAC_OVERRIDE then passed the check.
    DacFallback,
}

impl ProbeReason {
    /// One short sentence for the report.
    pub fn explain(self) -> &'static str {
        match self {
            ProbeReason::Overcommit => {
                "overcommit heuristic on mmap/brk/exec (admin memory reserve), not a permission"
            }
            ProbeReason::Capset => {
                "capset(2) asks for it on every call; only raising inheritable caps needs it"
            }
            ProbeReason::ProcPtrace => {
                "ptrace access probe from a /proc read (ps-style); fields are hidden without it"
            }
            ProbeReason::Kallsyms => "/proc/kallsyms shows zero addresses without it",
            ProbeReason::SysctlMode => "sysctl file mode probe; needed only to write there",
            ProbeReason::OtherTask => "noaudit check made on behalf of another task",
            ProbeReason::SeccompWithoutNnp => {
                "seccomp/landlock without no_new_privs; the proposal sets no_new_privs instead"
            }
            ProbeReason::SgidStrip => "the set-group-ID bit is stripped without it; no error",
            ProbeReason::DacFallback => {
                "generic_permission asks it before DAC_OVERRIDE, which then passed the check"
            }
        }
    }
}

/// Frames of the capability machinery itself: skipped to find the caller.
const CAP_LAYER: &[&str] = &[
    "trace_event_raw_event_cap_capable",
    "perf_trace_cap_capable",
    "cap_capable",
    "security_capable",
    "ns_capable",
    "ns_capable_noaudit",
    "ns_capable_setid",
    "ns_capable_common",
    "capable",
    "capable_wrt_inode_uidgid",
    "privileged_wrt_inode_uidgid",
    "has_ns_capability",
    "has_capability",
    "file_ns_capable",
    "sk_ns_capable",
    "sk_capable",
    "sk_net_capable",
    "netlink_ns_capable",
    "netlink_capable",
    "netlink_net_capable",
    "bpf_capable",
    "perfmon_capable",
    "checkpoint_restore_ns_capable",
    "inode_owner_or_capable",
];

/// Callers whose checks are probes, looked up anywhere in the stack (inlining can hide the
/// direct caller), in this order.
const PROBES: &[(&str, ProbeReason)] = &[
    ("security_vm_enough_memory_mm", ProbeReason::Overcommit),
    ("cap_vm_enough_memory", ProbeReason::Overcommit),
    ("__vm_enough_memory", ProbeReason::Overcommit),
    ("cap_capset", ProbeReason::Capset),
    ("do_task_stat", ProbeReason::ProcPtrace),
    ("proc_pid_wchan", ProbeReason::ProcPtrace),
    ("proc_pid_permission", ProbeReason::ProcPtrace),
    ("proc_pid_readlink", ProbeReason::ProcPtrace),
    ("proc_pid_get_link", ProbeReason::ProcPtrace),
    ("proc_map_files_readdir", ProbeReason::ProcPtrace),
    ("kallsyms_show_value", ProbeReason::Kallsyms),
    ("net_ctl_permissions", ProbeReason::SysctlMode),
    ("pid_table_root_permissions", ProbeReason::SysctlMode),
    ("ipc_permissions", ProbeReason::SysctlMode),
    ("set_permissions", ProbeReason::SysctlMode),
    ("has_ns_capability_noaudit", ProbeReason::OtherTask),
    ("has_capability_noaudit", ProbeReason::OtherTask),
    ("seccomp_prepare_filter", ProbeReason::SeccompWithoutNnp),
    ("landlock_restrict_self", ProbeReason::SeccompWithoutNnp),
    ("mode_strip_sgid", ProbeReason::SgidStrip),
    ("setattr_should_drop_sgid", ProbeReason::SgidStrip),
    ("in_group_or_capable", ProbeReason::SgidStrip),
];

/// The frames that make a CAP_SYS_ADMIN check an overcommit probe (the BPF program looks for
/// them in its short stack, [`crate::bpf::progs`]).
pub fn overcommit_frames() -> impl Iterator<Item = &'static str> {
    PROBES
        .iter()
        .filter(|(_, r)| *r == ProbeReason::Overcommit)
        .map(|(f, _)| *f)
}

/// Whether a stack was taken in interrupt context: it runs through a hardirq, softirq or NMI
/// entry (arch/x86/include/asm/idtentry.h `asm_sysvec_*`/`asm_common_interrupt`,
/// kernel/softirq.c `handle_softirqs`). Used for BPF records, which carry no preempt_count.
pub fn irq_stack(stack: &[String]) -> bool {
    stack.iter().any(|f| {
        matches!(
            f.as_str(),
            "handle_softirqs" | "__do_softirq" | "exc_nmi" | "asm_exc_nmi" | "common_interrupt"
        ) || f.starts_with("asm_sysvec_")
            || f.starts_with("sysvec_")
            || f == "asm_common_interrupt"
    })
}

/// The first frame after the capability machinery: the kernel path that asked. The tracing
/// glue is skipped too: with more than one probe on the tracepoint (two recordings at once)
/// the kernel calls them through `__traceiter_cap_capable`.
pub fn caller(stack: &[String]) -> Option<&str> {
    stack
        .iter()
        .map(String::as_str)
        .find(|f| !CAP_LAYER.contains(f) && !f.starts_with("__traceiter_"))
}

/// Classifies one check. `stack` is innermost first, as the trigger prints it.
pub fn classify(cap: Cap, granted: bool, stack: &[String], in_interrupt: bool) -> Class {
    // overlayfs does copy-up and lookups with the mounter's creds (override_creds), so these
    // checks are about the runtime's credentials, not the container's.
    if in_interrupt || overlay_override(stack) {
        return Class::Excluded;
    }
    for (frame, reason) in PROBES {
        if stack.iter().any(|f| f == frame) && probe_applies(*reason, cap) {
            return Class::Probe(*reason);
        }
    }
    if granted {
        Class::Required
    } else {
        Class::Denied
    }
}

/// VFS entry points that overlayfs calls on the real (upper or lower) inode while it holds the
/// mounter's credentials (`ovl_override_creds`, fs/overlayfs/util.c).
const OVERLAY_REAL_FS: &[&str] = &["notify_change", "inode_permission", "lookup_one_len"];

/// Whether a check was made by overlayfs with the mounter's credentials: a VFS entry sits
/// between the capability check and the innermost `ovl_*` frame. overlayfs first checks the
/// task's own credentials on the overlay inode (`ovl_setattr` -> `setattr_prepare` ->
/// `chown_ok`, `ovl_permission` -> `generic_permission`): those checks are the workload's and
/// stay; the second check, on the real inode under override_creds, is the runtime's.
fn overlay_override(stack: &[String]) -> bool {
    let Some(ovl) = stack.iter().position(|f| f.starts_with("ovl_")) else {
        return false;
    };
    // overlayfs asking on its own behalf (`ovl_can_decode_fh`, `ovl_open_realfile`'s O_NOATIME
    // test) runs under override_creds too.
    if caller(stack).is_some_and(|c| c.starts_with("ovl_")) {
        return true;
    }
    stack[..ovl].iter().any(|f| {
        OVERLAY_REAL_FS.contains(&f.as_str()) || f.starts_with("vfs_") || f.starts_with("__vfs_")
    })
}

/// Restricts probe reasons to the caps they are known for, so a real check that merely shares a
/// frame (e.g. a write to /proc/sys/net needing NET_ADMIN) is not hidden under another cap.
fn probe_applies(reason: ProbeReason, cap: Cap) -> bool {
    let name = cap.short_name().unwrap_or("");
    match reason {
        ProbeReason::Overcommit | ProbeReason::SeccompWithoutNnp => name == "SYS_ADMIN",
        ProbeReason::Capset => name == "SETPCAP",
        ProbeReason::ProcPtrace => matches!(name, "SYS_PTRACE" | "PERFMON" | "CHECKPOINT_RESTORE"),
        ProbeReason::Kallsyms => name == "SYSLOG",
        ProbeReason::SgidStrip => name == "FSETID",
        ProbeReason::DacFallback => name == "DAC_READ_SEARCH",
        ProbeReason::SysctlMode | ProbeReason::OtherTask => true,
    }
}

/// Whether a granted DAC_READ_SEARCH check from generic_permission can also be met by
/// DAC_OVERRIDE. generic_permission (fs/namei.c) tries DAC_READ_SEARCH first for a plain read
/// or a directory search, then DAC_OVERRIDE, so either cap satisfies such a check.
pub fn dac_alternative(cap: Cap, stack: &[String]) -> bool {
    cap.short_name() == Some("DAC_READ_SEARCH")
        && stack
            .iter()
            .any(|f| f == "generic_permission" || f == "capable_wrt_inode_uidgid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(n: u8) -> Cap {
        Cap::from_index(n).unwrap_or_else(|| unreachable!())
    }

    fn stack(frames: &[&str]) -> Vec<String> {
        frames.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overcommit_is_a_probe() {
        let s = stack(&[
            "trace_event_raw_event_cap_capable",
            "cap_capable",
            "security_vm_enough_memory_mm",
            "do_brk_flags",
        ]);
        assert_eq!(
            classify(cap(21), true, &s, false),
            Class::Probe(ProbeReason::Overcommit)
        );
        assert_eq!(caller(&s), Some("security_vm_enough_memory_mm"));
    }

    #[test]
    fn socket_create_is_required_or_denied() {
        let s = stack(&[
            "trace_event_raw_event_cap_capable",
            "cap_capable",
            "security_capable",
            "ns_capable",
            "inet_create",
        ]);
        assert_eq!(classify(cap(13), true, &s, false), Class::Required);
        assert_eq!(classify(cap(13), false, &s, false), Class::Denied);
        assert_eq!(caller(&s), Some("inet_create"));
        let s = stack(&[
            "__traceiter_cap_capable",
            "cap_capable",
            "ns_capable",
            "inet_create",
        ]);
        assert_eq!(caller(&s), Some("inet_create"));
    }

    #[test]
    fn overlay_and_irq_are_excluded() {
        let s = stack(&[
            "cap_capable",
            "capable_wrt_inode_uidgid",
            "generic_permission",
            "inode_permission",
            "ovl_permission",
        ]);
        assert_eq!(classify(cap(1), true, &s, false), Class::Excluded);
        // The task's own check on the overlay inode is the workload's.
        let s = stack(&[
            "cap_capable",
            "capable_wrt_inode_uidgid",
            "generic_permission",
            "ovl_permission",
            "inode_permission",
        ]);
        assert_eq!(classify(cap(1), true, &s, false), Class::Required);
        let s = stack(&[
            "cap_capable",
            "capable_wrt_inode_uidgid",
            "chown_ok",
            "setattr_prepare",
            "ovl_setattr",
            "notify_change",
            "chown_common",
        ]);
        assert_eq!(classify(cap(0), true, &s, false), Class::Required);
        let s = stack(&[
            "cap_capable",
            "capable_wrt_inode_uidgid",
            "chown_ok",
            "setattr_prepare",
            "ext4_setattr",
            "notify_change",
            "ovl_do_notify_change",
            "ovl_setattr",
        ]);
        assert_eq!(classify(cap(0), true, &s, false), Class::Excluded);
        let s = stack(&["cap_capable", "inode_owner_or_capable", "ovl_open_realfile"]);
        assert_eq!(classify(cap(3), true, &s, false), Class::Excluded);
        assert_eq!(
            classify(cap(13), true, &stack(&["cap_capable"]), true),
            Class::Excluded
        );
    }

    #[test]
    fn probe_reason_is_cap_specific() {
        let s = stack(&["cap_capable", "cap_capset", "security_capset"]);
        assert_eq!(
            classify(cap(8), true, &s, false),
            Class::Probe(ProbeReason::Capset)
        );
        assert_eq!(
            classify(cap(8), false, &s, false),
            Class::Probe(ProbeReason::Capset)
        );
        let s = stack(&["cap_capable", "security_vm_enough_memory_mm"]);
        assert_eq!(classify(cap(0), true, &s, false), Class::Required);
    }

    #[test]
    fn dac_read_is_an_alternative() {
        let s = stack(&[
            "cap_capable",
            "capable_wrt_inode_uidgid",
            "generic_permission",
            "inode_permission",
        ]);
        assert!(dac_alternative(cap(2), &s));
        assert!(!dac_alternative(cap(1), &s));
    }
}
