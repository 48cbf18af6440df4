//! What each capability 0..=40 lets a process do, how dangerous it is inside a container, and
//! whether Docker and Podman grant it by default. Used by `capsa caps list/explain` and warnings.
//!
//! Owns this table and its wording. Must not do I/O.
//!
//! Risk levels: `critical` = root-equivalent on the host or a known container-escape path;
//! `high` = defeats an important isolation or integrity boundary; `medium` = host-wide or
//! information-leaking effects; `low` = narrow, mostly harmless powers.

use serde::Serialize;

use crate::cap::Cap;
use crate::profile::Profile;

/// How much a capability weakens a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

/// The facts about one capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapInfo {
    pub cap: Cap,
    /// What it permits, in one line.
    pub meaning: &'static str,
    pub risk: Risk,
    /// Why it has that risk (attack technique or effect).
    pub reason: &'static str,
}

impl CapInfo {
    pub fn in_docker_default(&self) -> bool {
        Profile::Docker.set().contains(self.cap)
    }
    pub fn in_podman_default(&self) -> bool {
        Profile::Podman.set().contains(self.cap)
    }
}

use Risk::{Critical as C, High as H, Low as L, Medium as M};

// (meaning, risk, reason), indexed by kernel number.
const TABLE: [(&str, Risk, &str); 41] = [
    (
        "change the owner and group of any file",
        H,
        "take ownership of files the container can reach, e.g. make a setuid binary someone else's",
    ),
    (
        "read, write and execute any file regardless of its permission bits",
        H,
        "every file permission check stops mattering for writable mounts",
    ),
    (
        "read any file and search any directory; open files by handle",
        C,
        "open_by_handle_at(2) can walk out of a bind mount to the host root (the \"shocker\" escape)",
    ),
    (
        "act as the owner of any file: chmod, utimes, xattrs, ACLs, sticky dirs",
        H,
        "can make any reachable file world-writable or setuid",
    ),
    (
        "keep setuid/setgid bits when changing files; set SGID for foreign groups",
        M,
        "helps keep privilege-carrying bits on files it modifies",
    ),
    (
        "send signals to any process",
        M,
        "can kill or stop processes of other users it can see",
    ),
    (
        "set any group id and supplementary groups; forge gids on sockets",
        H,
        "becomes any group, gaining every group-owned file",
    ),
    (
        "set any user id; forge uids on sockets",
        H,
        "becomes any user, including owners of files on shared volumes",
    ),
    (
        "move caps from bounding to inheritable, drop bounding caps, set securebits",
        H,
        "shapes what child processes can gain; combined with file caps it widens privileges",
    ),
    (
        "set the immutable and append-only file attributes",
        L,
        "can make files undeletable, an annoyance rather than an escape",
    ),
    (
        "bind TCP/UDP ports below 1024",
        L,
        "only lets a service listen on privileged ports",
    ),
    (
        "send broadcasts and listen to multicast (unused by the kernel today)",
        L,
        "no effect on current kernels",
    ),
    (
        "configure interfaces, routes, firewall rules, traffic control and sockets",
        H,
        "can reroute, sniff or block traffic; reaches the host's network when sharing its netns",
    ),
    (
        "open raw and packet sockets; bind to any address",
        M,
        "ARP/DNS spoofing and sniffing on the container network",
    ),
    (
        "lock memory (mlock, SHM_LOCK) and use huge pages",
        L,
        "can pin memory, a denial-of-service risk bounded by cgroups",
    ),
    (
        "bypass permission checks on System V IPC objects",
        M,
        "can read or change other processes' shared memory and message queues",
    ),
    (
        "load and unload kernel modules",
        C,
        "loading a module runs arbitrary code in the host kernel",
    ),
    (
        "raw I/O: iopl, ioperm, /dev/mem, /dev/port, FIBMAP",
        C,
        "direct hardware and physical-memory access bypasses the kernel entirely",
    ),
    (
        "use chroot(2); setns(2) into mount namespaces",
        M,
        "chroot tricks help escalate when combined with other powers",
    ),
    (
        "trace any process: ptrace, process_vm_readv/writev, /proc/PID/mem",
        C,
        "with a shared PID namespace it can inject code into host processes",
    ),
    (
        "turn process accounting on or off (acct(2))",
        L,
        "writes accounting records to a chosen file",
    ),
    (
        "mount filesystems, create namespaces, and many other admin operations",
        C,
        "mount plus cgroup v1 release_agent (or a device mount) leads straight to host root",
    ),
    (
        "reboot the machine and load a new kernel (reboot, kexec_load)",
        C,
        "kexec replaces the host kernel; reboot takes the host down",
    ),
    (
        "raise priorities, use real-time scheduling, set others' affinity and I/O class",
        L,
        "can starve other workloads of CPU",
    ),
    (
        "exceed resource limits, quotas and reserved filesystem space",
        M,
        "can exhaust host resources that limits were meant to protect",
    ),
    (
        "set the system clock",
        M,
        "the clock is host-wide: breaks TLS, logs and Kerberos for everyone",
    ),
    (
        "configure TTYs: vhangup, console keymaps",
        H,
        "can rewrite the console keymap to type commands into a root console",
    ),
    (
        "create device nodes (mknod)",
        H,
        "a block device node of the host disk gives raw access, unless the devices cgroup denies it",
    ),
    ("take file leases", L, "can delay other openers of a file"),
    (
        "write records to the kernel audit log",
        L,
        "can add noise to the audit trail",
    ),
    (
        "configure kernel auditing: rules, status, TTY auditing",
        H,
        "can switch auditing off and hide its own actions",
    ),
    (
        "set file capabilities; map uid 0 when creating a user namespace",
        H,
        "can plant file caps on binaries that later run with more privilege",
    ),
    (
        "override mandatory access control (Smack)",
        H,
        "bypasses the MAC policy that may be the last line of defence",
    ),
    (
        "change the MAC policy or labels (Smack, AppArmor, SELinux admin)",
        H,
        "can remove its own confinement",
    ),
    (
        "read the kernel log and kernel pointers (syslog(2), kptr_restrict)",
        M,
        "leaks kernel addresses (defeats KASLR) and host messages",
    ),
    (
        "set alarms that wake the system (CLOCK_*_ALARM)",
        L,
        "can keep a suspended machine waking up",
    ),
    (
        "block system suspend (EPOLLWAKEUP, wake locks)",
        L,
        "can keep the machine awake",
    ),
    (
        "read the audit log through a multicast netlink socket",
        M,
        "sees host-wide audit records",
    ),
    (
        "use perf events and BPF tracing",
        H,
        "with BPF it can read kernel memory and trace host processes",
    ),
    (
        "use privileged bpf(2): maps, programs, BTF",
        H,
        "with PERFMON or NET_ADMIN it can load programs that read kernel memory or rewrite traffic",
    ),
    (
        "checkpoint/restore helpers: set_tid, ns_last_pid, /proc/PID/map_files",
        M,
        "can choose PIDs and reach mapped files of processes it can see",
    ),
];

/// The facts about `cap`, or `None` above 40.
pub fn info(cap: Cap) -> Option<CapInfo> {
    let (meaning, risk, reason) = *TABLE.get(cap.index() as usize)?;
    Some(CapInfo {
        cap,
        meaning,
        risk,
        reason,
    })
}

/// The facts about every known capability, in number order.
pub fn all() -> impl Iterator<Item = CapInfo> {
    Cap::all_known().filter_map(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_highlights() {
        let by_name = |n: &str| Cap::from_oci_name(n).and_then(info);
        let drs = by_name("CAP_DAC_READ_SEARCH");
        assert_eq!(drs.map(|i| i.risk), Some(Risk::Critical));
        assert!(drs.is_some_and(|i| i.reason.contains("shocker")));
        assert_eq!(
            by_name("CAP_SYS_ADMIN").map(|i| i.risk),
            Some(Risk::Critical)
        );
        assert_eq!(
            by_name("CAP_NET_BIND_SERVICE").map(|i| i.risk),
            Some(Risk::Low)
        );
        assert_eq!(all().count(), 41);
        assert_eq!(all().filter(CapInfo::in_docker_default).count(), 14);
        assert_eq!(all().filter(CapInfo::in_podman_default).count(), 11);
        assert!(Cap::from_index(41).and_then(info).is_none());
    }
}
