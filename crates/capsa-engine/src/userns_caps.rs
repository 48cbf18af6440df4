//! userns_caps: what each capability can and cannot do when it is held in a user namespace that
//! is not the initial one (a remapped container), and which user namespace a process's
//! capabilities are scoped to (read from /proc).
//!
//! Owns the table behind `capsa caps explain` (its "in a user namespace" part) and the /proc
//! reader behind `capsa caps pid --userns` and `capsa inspect`. Must not hold capability policy.
//!
//! The rule behind the table (user_namespaces(7), "Capabilities"): a capability held in a user
//! namespace is checked with `ns_capable(ns, CAP)` against the namespace that owns the resource
//! (a mount, network, UTS... namespace, or an inode whose owner must be mapped); the kernel's
//! many plain `capable(CAP)` checks ask for the capability in the *initial* user namespace and
//! therefore always fail inside one.

use crate::userns::IdRange;
use serde::Serialize;

/// The inode number of the initial user namespace (include/linux/proc_ns.h PROC_USER_INIT_INO).
pub const INITIAL_USERNS_INODE: u64 = 0xEFFF_FFFD;

/// What one capability gives inside a non-initial user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsernsScope {
    pub can: &'static str,
    pub cannot: &'static str,
}

const OWN_FILES: &str = "only on files whose owner (and group) are mapped in the namespace";

/// The table, by capability number (0..=40).
pub fn scope(cap: u8) -> Option<UsernsScope> {
    let (can, cannot) = match cap {
        0 => (
            "chown files whose ids are mapped, e.g. its own image files",
            "give away or take host files owned by unmapped ids",
        ),
        1 => (
            "bypass file permission checks on its own files (owner mapped)",
            "read or write host-owned files in a volume: the owner is not mapped",
        ),
        2 => (
            "bypass read/search checks on its own files",
            "open_by_handle_at (checked in the initial namespace): no shocker escape",
        ),
        3 => (
            "act as owner of its own files (chmod, utimes)",
            "change host files owned by unmapped ids",
        ),
        4 => ("keep set-id bits on its own files", OWN_FILES),
        5 => (
            "signal processes of its own user namespace",
            "signal host processes",
        ),
        6 => (
            "setgid/setgroups to gids mapped in the namespace",
            "become any host gid outside the mapping",
        ),
        7 => (
            "setuid to uids mapped in the namespace",
            "become any host uid outside the mapping",
        ),
        8 => (
            "drop bounding caps, set inheritable caps of its own processes",
            "affect processes outside the namespace",
        ),
        9 => (
            "nothing",
            "set immutable/append-only flags (checked in the initial namespace)",
        ),
        10 => (
            "bind ports below 1024 in network namespaces it owns",
            "bind low ports in the host's network namespace",
        ),
        11 => (
            "broadcast and listen to multicast in its own network namespace",
            "anything on the host network",
        ),
        12 => (
            "configure interfaces, routes and netfilter of network namespaces it owns",
            "change the host's interfaces, routes or firewall",
        ),
        13 => (
            "raw and packet sockets in its own network namespace",
            "sniff or forge traffic on the host's interfaces",
        ),
        14 => (
            "nothing beyond RLIMIT_MEMLOCK",
            "lock memory past the limit (checked in the initial namespace)",
        ),
        15 => (
            "bypass IPC permission checks in its own IPC namespace",
            "touch the host's SysV IPC objects",
        ),
        16 => (
            "nothing",
            "load or remove kernel modules: init_module and finit_module check the initial namespace (EPERM)",
        ),
        17 => (
            "nothing",
            "iopl/ioperm, /dev/mem, raw block and SCSI access (initial namespace only)",
        ),
        18 => (
            "chroot inside its own mount namespace",
            "escape its mount namespace",
        ),
        19 => (
            "ptrace processes of its own user namespace",
            "ptrace host processes",
        ),
        20 => (
            "nothing",
            "process accounting (acct checks the initial namespace)",
        ),
        21 => (
            "mount tmpfs, proc, sysfs, mqueue, devpts, overlay and bind mounts in its own mount namespace; sethostname in its own UTS namespace; setns into namespaces it owns",
            "mount block-device filesystems, load modules, change the host hostname, swapon, quotactl, most ioctls on host devices",
        ),
        22 => (
            "reboot() in its own PID namespace ends only that namespace's init",
            "reboot or halt the host",
        ),
        23 => (
            "lower its own priority (anyone can)",
            "raise priorities or set real-time policies (checked in the initial namespace)",
        ),
        24 => (
            "nothing",
            "exceed hard rlimits, quotas or reserved space (checked in the initial namespace)",
        ),
        25 => (
            "set clock offsets of a time namespace it owns",
            "set the system clock",
        ),
        26 => (
            "nothing",
            "vhangup and tty configuration (initial namespace)",
        ),
        27 => (
            "create fifos, sockets and overlay whiteouts (0:0)",
            "create device nodes: mknod of devices is refused in a user namespace",
        ),
        28 => ("take leases on its own files", OWN_FILES),
        29 => (
            "nothing",
            "write to the audit log: audit netlink is refused outside the initial namespace",
        ),
        30 => ("nothing", "configure auditing"),
        31 => (
            "set namespaced file capabilities on its own files (effective only inside the namespace)",
            "give a host binary file capabilities that work on the host",
        ),
        32 => ("nothing", "override MAC policy (initial namespace)"),
        33 => ("nothing", "change MAC policy (initial namespace)"),
        34 => (
            "nothing",
            "read or clear the kernel log (initial namespace)",
        ),
        35 => ("nothing", "set wake alarms (initial namespace)"),
        36 => ("nothing", "block system suspend (initial namespace)"),
        37 => ("nothing", "read the audit log (initial namespace)"),
        38 => ("nothing", "privileged perf monitoring (initial namespace)"),
        39 => (
            "use a BPF token the host delegated to the namespace (Linux >= 6.9)",
            "load privileged BPF programs by itself (initial namespace)",
        ),
        40 => (
            "choose PIDs (set_tid, ns_last_pid) in its own PID namespace",
            "checkpoint or restore host processes",
        ),
        _ => return None,
    };
    Some(UsernsScope { can, cannot })
}

/// Which user namespace a process is in, and its maps (from /proc/PID/ns/user and uid_map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcUserns {
    pub pid: u32,
    /// The namespace's inode (the number in `readlink /proc/PID/ns/user`).
    pub inode: u64,
    /// Whether it is the initial user namespace: then its caps are host-wide.
    pub initial: bool,
    pub uid_map: Vec<IdRange>,
    pub gid_map: Vec<IdRange>,
}

impl ProcUserns {
    /// Reads the namespace of `pid`.
    pub fn read(pid: u32) -> std::io::Result<ProcUserns> {
        let st = rustix::fs::stat(format!("/proc/{pid}/ns/user").as_str())?;
        let map = |f: &str| -> std::io::Result<Vec<IdRange>> {
            Ok(parse_map(&std::fs::read_to_string(format!(
                "/proc/{pid}/{f}"
            ))?))
        };
        Ok(ProcUserns {
            pid,
            inode: st.st_ino,
            initial: st.st_ino == INITIAL_USERNS_INODE,
            uid_map: map("uid_map")?,
            gid_map: map("gid_map")?,
        })
    }

    /// One line for people: `user namespace 4026532841 (not the initial one: ...), uid map ...`.
    pub fn text(&self) -> String {
        let scope = if self.initial {
            "the initial one: its capabilities apply to the whole host"
        } else {
            "not the initial one: its capabilities apply only to what that namespace owns"
        };
        format!(
            "user namespace {} ({scope}); uid map {}; gid map {}",
            self.inode,
            map_text(&self.uid_map),
            map_text(&self.gid_map)
        )
    }
}

/// `/proc/PID/uid_map` lines (`inside outside count`).
pub fn parse_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some(IdRange {
                inner: it.next()??,
                outer: it.next()??,
                size: it.next()??,
            })
        })
        .collect()
}

fn map_text(m: &[IdRange]) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|r| format!("{}->{} ({})", r.inner, r.outer, r.size))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_cap_has_a_scope() {
        for n in 0..=40u8 {
            let s = scope(n).unwrap();
            assert!(!s.can.is_empty() && !s.cannot.is_empty(), "{n}");
        }
        assert!(scope(41).is_none());
        assert!(scope(21).unwrap().can.contains("tmpfs"));
        assert!(scope(16).unwrap().cannot.contains("finit_module"));
    }

    #[test]
    fn maps_parse_and_print() {
        let m = parse_map("         0     100000      65536\n");
        assert_eq!(
            m,
            vec![IdRange {
                inner: 0,
                outer: 100000,
                size: 65536
            }]
        );
        assert_eq!(map_text(&m), "0->100000 (65536)");
    }

    #[test]
    fn our_own_namespace_reads() {
        let me = ProcUserns::read(std::process::id()).unwrap();
        assert!(!me.uid_map.is_empty());
        assert!(me.text().contains("user namespace"));
    }
}
