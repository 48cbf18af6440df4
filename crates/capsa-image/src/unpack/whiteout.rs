//! OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) and what they become in an unpacked layer
//! that overlayfs stacks. Pure: this file decides, `mod.rs` writes.
//!
//! OCI image-spec layer.md "Whiteouts": `.wh.<name>` hides `<name>` of the layers below; the
//! opaque marker `.wh..wh..opq` hides every sibling from below. overlayfs
//! (Documentation/filesystems/overlayfs.rst) spells the same as a char device 0/0 named
//! `<name>` and the xattr `trusted.overlay.opaque=y` on the directory. An overlay mounted
//! inside a user namespace (mount option `userxattr`) reads `user.overlay.opaque` instead,
//! because trusted.* is out of reach there; whiteout devices work in both modes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Names under `.wh..wh.` other than the opaque marker are AUFS bookkeeping (`.wh..wh.plnk`),
/// which the spec says to ignore.
const META_PREFIX: &[u8] = b".wh..wh.";
/// The xattrs overlayfs reads to treat a lower directory as opaque: `trusted.*` by default,
/// `user.*` with `userxattr` (overlayfs.rst "User xattr"). Layers carry both, so one unpacked
/// layer serves host overlays and overlays mounted inside a container's user namespace.
pub const OVERLAY_OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// What the last component of an entry path means.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// `.wh.<name>`: write an overlay whiteout (char 0:0) named `<name>` in the same directory.
    Hide(&'a OsStr),
    /// `.wh..wh..opq`: mark the containing directory opaque.
    Opaque,
    /// AUFS metadata: skip.
    Ignore,
    /// `.wh.`, `.wh..` or `.wh...`: a whiteout of nothing, or of the directory itself.
    Invalid,
}

/// Classifies the final component of an entry path.
pub fn classify(last: &OsStr) -> Whiteout<'_> {
    let b = last.as_bytes();
    if b == OPAQUE_MARKER {
        return Whiteout::Opaque;
    }
    if b.starts_with(META_PREFIX) {
        return Whiteout::Ignore;
    }
    match b.strip_prefix(WHITEOUT_PREFIX) {
        None => Whiteout::None,
        Some(b"" | b"." | b"..") => Whiteout::Invalid,
        Some(name) => Whiteout::Hide(OsStr::from_bytes(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Whiteout<'_> {
        classify(OsStr::new(s))
    }

    #[test]
    fn whiteouts_are_recognised() {
        assert_eq!(c("file"), Whiteout::None);
        assert_eq!(c(".whatever"), Whiteout::None);
        assert_eq!(c(".wh.file"), Whiteout::Hide(OsStr::new("file")));
        assert_eq!(c(".wh..hidden"), Whiteout::Hide(OsStr::new(".hidden")));
        assert_eq!(c(".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(c(".wh..wh.plnk"), Whiteout::Ignore);
        assert_eq!(c(".wh."), Whiteout::Invalid);
        assert_eq!(c(".wh.."), Whiteout::Invalid);
    }
}
