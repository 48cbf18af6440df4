//! File capabilities (`security.capability`) of executed binaries.
//!
//! Owns the parsing of the kernel's `vfs_cap_data` / `vfs_ns_cap_data` xattr value
//! (include/uapi/linux/capability.h) and reading it from a path. Must not write xattrs.

use std::path::Path;

use capsa_caps::CapSet;

const VFS_CAP_REVISION_MASK: u32 = 0xFF00_0000;
const VFS_CAP_REVISION_1: u32 = 0x0100_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;

/// The decoded file capabilities of one binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCaps {
    pub permitted: CapSet,
    pub inheritable: CapSet,
    /// The effective bit: the binary is "capability-dumb". execve fails with EPERM when the
    /// process cannot obtain all of `permitted` (capabilities(7), "Safety checking for
    /// capability-dumb binaries"), and the kernel emits no cap_capable event for that refusal.
    pub effective: bool,
    /// The namespace root uid of a revision-3 value.
    pub rootid: Option<u32>,
}

/// Decodes a `security.capability` value. Layout: `u32 magic_etc`, then `{u32 permitted,
/// u32 inheritable}` pairs (1 pair in revision 1, 2 in revisions 2 and 3), then `u32 rootid` in
/// revision 3, all little-endian.
pub fn parse(value: &[u8]) -> Option<FileCaps> {
    let word = |i: usize| -> Option<u32> {
        let b = value.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let magic = word(0)?;
    let (pairs, len) = match magic & VFS_CAP_REVISION_MASK {
        VFS_CAP_REVISION_1 => (1, 12),
        VFS_CAP_REVISION_2 => (2, 20),
        VFS_CAP_REVISION_3 => (2, 24),
        _ => return None,
    };
    if value.len() < len {
        return None;
    }
    let (mut permitted, mut inheritable) = (0u64, 0u64);
    for i in 0..pairs {
        permitted |= u64::from(word(1 + 2 * i)?) << (32 * i);
        inheritable |= u64::from(word(2 + 2 * i)?) << (32 * i);
    }
    let rootid = if len == 24 { word(5) } else { None };
    Some(FileCaps {
        permitted: CapSet::from_bits(permitted),
        inheritable: CapSet::from_bits(inheritable),
        effective: magic & VFS_CAP_FLAGS_EFFECTIVE != 0,
        rootid,
    })
}

/// Reads and decodes the file caps of `path`; `None` when it has none or cannot be read.
pub fn read(path: &Path) -> Option<FileCaps> {
    let mut buf = [0u8; 32];
    let n = rustix::fs::getxattr(path, "security.capability", &mut buf[..]).ok()?;
    parse(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision2_effective_net_raw() {
        // `setcap cap_net_raw=ep`: magic 0x02000001, permitted bit 13.
        let mut v = Vec::new();
        for w in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        let fc = parse(&v).unwrap_or_else(|| unreachable!());
        assert!(fc.effective);
        assert_eq!(fc.permitted.bits(), 1 << 13);
        assert_eq!(fc.rootid, None);
    }

    #[test]
    fn revision3_high_caps_and_rootid() {
        let mut v = Vec::new();
        for w in [0x0300_0000u32, 0, 0, 1 << 6, 0, 100_000] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        let fc = parse(&v).unwrap_or_else(|| unreachable!());
        assert!(!fc.effective);
        assert_eq!(fc.permitted.bits(), 1u64 << 38);
        assert_eq!(fc.rootid, Some(100_000));
        assert_eq!(parse(&v[..20]), None);
        assert_eq!(parse(&[0, 0, 0, 0x04]), None);
    }
}
