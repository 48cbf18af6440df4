//! One-time, in-place upgrades of layers that an older capsa unpacked.
//!
//! Owns the `user-opaque` marker in `layers/<diff ID>/` and the `user.overlay.opaque` xattrs it
//! vouches for. Layers unpacked before capsa wrote that xattr carry only
//! `trusted.overlay.opaque` on their opaque directories, which an overlay mounted with
//! `userxattr` (inside a container's user namespace) does not read (overlayfs.rst "User
//! xattr"): their lower entries would show through. The upgrade adds the user.* twin to every
//! directory that has the trusted.* one, and nothing else. It must not touch file data,
//! ownership, modes or any other xattr, and it runs under the store lock (from the lease), so
//! two capsa processes never upgrade the same layer at once.
//!
//! This is the one write into a complete layer. It is harmless to overlays already mounted
//! over the layer: host overlays read only trusted.* xattrs, and the user.* one only corrects
//! what a user-namespaced overlay shows.

use std::ffi::{CStr, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{ImageError, Result};
use crate::store::write_atomic;
use crate::unpack::whiteout::OVERLAY_OPAQUE_XATTRS;

/// Present in a layer dir when its opaque dirs carry the user.* xattr too. Written by every
/// unpack before `complete`, and by [`ensure_user_opaque`] after an upgrade.
pub(crate) const USER_OPAQUE_MARKER: &str = "user-opaque";

/// Writes the marker for a freshly unpacked layer (whose unpacker wrote both xattrs).
pub(crate) fn mark_fresh(layer_dir: &Path) -> Result<()> {
    write_atomic(layer_dir, USER_OPAQUE_MARKER, b"", false)
}

/// Upgrades the complete layer in `layer_dir` (with its `root/`) if it lacks the marker.
/// Returns how many directories got the user.* xattr (0 when there was nothing to do).
/// The caller holds the store lock.
pub(crate) fn ensure_user_opaque(layer_dir: &Path) -> Result<usize> {
    if layer_dir.join(USER_OPAQUE_MARKER).exists() {
        return Ok(0);
    }
    let root = layer_dir.join("root");
    let fixed = add_user_opaque(&root)?;
    if fixed > 0 {
        tracing::info!(layer = %layer_dir.display(), dirs = fixed, "added user.overlay.opaque to opaque directories of a layer unpacked by an older capsa");
    }
    write_atomic(layer_dir, USER_OPAQUE_MARKER, b"", true)?;
    Ok(fixed)
}

/// Walks `root` without following symlinks (each directory is opened beneath the root with
/// RESOLVE_NO_SYMLINKS, the layer being untrusted content) and mirrors
/// `trusted.overlay.opaque` into `user.overlay.opaque`.
fn add_user_opaque(root: &Path) -> Result<usize> {
    let base = rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::sys("open", root, e))?;
    let mut pending: Vec<Vec<u8>> = vec![b".".to_vec()];
    let mut fixed = 0;
    while let Some(rel) = pending.pop() {
        let shown = root.join(OsStr::from_bytes(&rel));
        let dir = match open_beneath(&base, &rel) {
            Ok(fd) => fd,
            Err(e) => return Err(ImageError::sys("openat2 (layer directory)", &shown, e)),
        };
        if copy_opaque(&dir)
            .map_err(|e| ImageError::sys("fsetxattr user.overlay.opaque", &shown, e))?
        {
            fixed += 1;
        }
        for child in subdirs(&dir).map_err(|e| ImageError::sys("getdents", &shown, e))? {
            let mut next = rel.clone();
            next.push(b'/');
            next.extend_from_slice(&child);
            pending.push(next);
        }
    }
    Ok(fixed)
}

fn open_beneath(base: &OwnedFd, rel: &[u8]) -> std::result::Result<OwnedFd, Errno> {
    rfs::openat2(
        base,
        OsStr::from_bytes(rel),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Sets the user.* opaque xattr when the trusted.* one says `y`; returns whether it did.
fn copy_opaque(dir: &OwnedFd) -> std::result::Result<bool, Errno> {
    let [trusted, user] = OVERLAY_OPAQUE_XATTRS;
    let mut buf = [0u8; 8];
    match rfs::fgetxattr(dir, trusted, &mut buf) {
        Ok(n) if &buf[..n] == b"y" => {}
        Ok(_) | Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(false),
        Err(e) => return Err(e),
    }
    rfs::fsetxattr(dir, user, b"y", rfs::XattrFlags::empty())?;
    Ok(true)
}

/// The names of the subdirectories of `dir` (not symlinks to directories).
fn subdirs(dir: &OwnedFd) -> std::result::Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    let mut d = rfs::Dir::read_from(dir)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rfs::statat(dir, name, rfs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            _ => false,
        };
        if is_dir {
            out.push(bytes.to_vec());
        }
    }
    Ok(out)
}
