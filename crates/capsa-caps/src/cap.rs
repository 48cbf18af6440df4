//! `Cap` (one capability number) and `CapSet` (a 64-bit set of them).
//!
//! Owns the kernel's capability numbering and names. Must not touch /proc or any syscall.

use std::fmt;

/// The highest capability number this build knows a name for (CAP_CHECKPOINT_RESTORE, Linux 5.9).
pub const LAST_KNOWN: u8 = 40;

/// Kernel names in number order, without the `CAP_` prefix (include/uapi/linux/capability.h).
const NAMES: [&str; LAST_KNOWN as usize + 1] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// One capability: a number 0..=63. Names are known for 0..=40.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(u8);

impl Cap {
    /// The capability with kernel number `n`, if `n` fits the 64-bit sets (0..=63).
    pub const fn from_index(n: u8) -> Option<Cap> {
        if n < 64 { Some(Cap(n)) } else { None }
    }

    /// The kernel number.
    pub const fn index(self) -> u8 {
        self.0
    }

    /// Whether this build knows the capability's name (0..=40).
    pub const fn is_known(self) -> bool {
        self.0 <= LAST_KNOWN
    }

    /// The upper-case name without prefix (`CHOWN`), or `None` above 40.
    pub fn short_name(self) -> Option<&'static str> {
        NAMES.get(self.0 as usize).copied()
    }

    /// The OCI/Docker name: `CAP_CHOWN`; unknown numbers print as `CAP_41`.
    pub fn oci_name(self) -> String {
        match self.short_name() {
            Some(n) => format!("CAP_{n}"),
            None => format!("CAP_{}", self.0),
        }
    }

    /// The libcap name: `cap_chown`; unknown numbers print as `cap_41`, as libcap does.
    pub fn libcap_name(self) -> String {
        match self.short_name() {
            Some(n) => format!("cap_{}", n.to_ascii_lowercase()),
            None => format!("cap_{}", self.0),
        }
    }

    /// The name libcap's `cap_to_name(3)` gives: `cap_chown`, and the bare decimal number (`41`)
    /// for numbers libcap 2.66 has no name for. This is what `capsh` and `getpcaps` print.
    pub fn libcap_text_name(self) -> String {
        match self.short_name() {
            Some(n) => format!("cap_{}", n.to_ascii_lowercase()),
            None => self.0.to_string(),
        }
    }

    /// The name `pscap` prints: lower case without prefix (`net_bind_service`), or the number.
    pub fn short_lower_name(self) -> String {
        match self.short_name() {
            Some(n) => n.to_ascii_lowercase(),
            None => self.0.to_string(),
        }
    }

    /// Looks up an exact OCI name (`CAP_CHOWN`), as config.json spells capabilities.
    pub fn from_oci_name(name: &str) -> Option<Cap> {
        let short = name.strip_prefix("CAP_")?;
        NAMES.iter().position(|n| *n == short).map(|i| Cap(i as u8))
    }

    /// Every capability this build knows, in number order.
    pub fn all_known() -> impl Iterator<Item = Cap> {
        (0..=LAST_KNOWN).map(Cap)
    }
}

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.oci_name())
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.oci_name())
    }
}

/// A set of capabilities as the kernel stores it: one bit per number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(u64);

impl CapSet {
    /// The empty set.
    pub const EMPTY: CapSet = CapSet(0);

    /// A set from its kernel bit mask (as in /proc/PID/status `CapEff`).
    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    /// The kernel bit mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Every capability numbered 0..=last.
    pub const fn up_to(last: u8) -> CapSet {
        if last >= 63 {
            CapSet(u64::MAX)
        } else {
            CapSet((1u64 << (last + 1)) - 1)
        }
    }

    pub const fn contains(self, cap: Cap) -> bool {
        self.0 & (1u64 << cap.0) != 0
    }

    pub fn insert(&mut self, cap: Cap) {
        self.0 |= 1u64 << cap.0;
    }

    pub fn remove(&mut self, cap: Cap) {
        self.0 &= !(1u64 << cap.0);
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    pub const fn union(self, other: CapSet) -> CapSet {
        CapSet(self.0 | other.0)
    }

    pub const fn intersection(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    pub const fn difference(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    /// Whether every member of `self` is also in `other`.
    pub const fn is_subset(self, other: CapSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The mask as `/proc/PID/status` and `capsh --decode` spell it: `0x00000000a80425fb`.
    pub fn hex(self) -> String {
        format!("{:#018x}", self.0)
    }

    /// The OCI names of the members in number order (`CAP_CHOWN`, ..., `CAP_41`).
    pub fn oci_names(self) -> Vec<String> {
        self.iter().map(Cap::oci_name).collect()
    }

    /// The members in number order.
    pub fn iter(self) -> impl Iterator<Item = Cap> {
        (0u8..64)
            .filter(move |i| self.0 & (1u64 << i) != 0)
            .map(Cap)
    }
}

impl FromIterator<Cap> for CapSet {
    fn from_iter<I: IntoIterator<Item = Cap>>(iter: I) -> Self {
        let mut s = CapSet::EMPTY;
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSet({:#018x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Cap::all_known() {
            assert_eq!(Cap::from_oci_name(&c.oci_name()), Some(c));
        }
        assert_eq!(Cap::from_oci_name("CAP_41"), None);
        assert_eq!(
            Cap::from_index(41).map(|c| c.libcap_name()),
            Some("cap_41".into())
        );
    }

    #[test]
    fn set_algebra() {
        let s: CapSet = [Cap(0), Cap(5)].into_iter().collect();
        assert_eq!(s.bits(), 0x21);
        assert_eq!(CapSet::up_to(40).bits(), 0x1ff_ffff_ffff);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Cap(0), Cap(5)]);
    }
}
