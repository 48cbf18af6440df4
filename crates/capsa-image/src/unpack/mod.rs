//! Layer application: one tar stream into one empty layer directory, safely.
//!
//! Owns every filesystem write below the layer directory it is given, and nothing else: it
//! never writes outside that directory and never reads the store. Every write is relative to
//! a directory fd whose path was resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
//! (openat2(2): any `..` or symlink that would leave the root fails with EXDEV), and the final
//! component is created with O_EXCL/O_NOFOLLOW-style calls that never follow a symlink.
//! The `tar` crate only parses entries; it writes nothing.

pub mod path;
pub mod whiteout;

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{ImageError, Result};
use path::PathRefusal;
use whiteout::Whiteout;

/// Bounds on what one layer may do.
#[derive(Debug, Clone)]
pub struct UnpackLimits {
    /// The most bytes the uncompressed tar stream, and the file data written from it, may
    /// reach; a decompression bomb stops here. Default 32 GiB.
    pub max_bytes: u64,
    /// Whether char and block device nodes may be created (fifos always may).
    pub allow_devices: bool,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 32 << 30,
            allow_devices: true,
        }
    }
}

/// What one layer held.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LayerStats {
    pub entries: u64,
    /// Bytes of regular-file data written (the layer's unpacked size).
    pub bytes: u64,
}

/// Unpacks the tar stream `tar` into the existing empty directory `target`.
///
/// `layer` names the layer in errors (a digest or the import source).
pub fn unpack_layer(
    layer: &str,
    tar: impl Read,
    target: &Path,
    limits: &UnpackLimits,
) -> Result<LayerStats> {
    let root = rfs::open(
        target,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::sys("open", target, e))?;
    let exceeded = Rc::new(Cell::new(false));
    let input = LimitReader {
        inner: tar,
        left: limits.max_bytes,
        exceeded: exceeded.clone(),
    };
    let mut archive = tar::Archive::new(input);
    let mut w = Writer {
        layer: layer.to_string(),
        root,
        limits: limits.clone(),
        stats: LayerStats::default(),
        dir_times: Vec::new(),
        parent_cache: None,
        exceeded,
    };
    let entries = archive.entries().map_err(|e| w.stream_error(None, e))?;
    let mut last = None;
    for entry in entries {
        let entry = entry.map_err(|e| w.stream_error(last.as_deref(), e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        w.apply(entry, &name)?;
        w.stats.entries += 1;
        last = Some(name);
    }
    w.restore_dir_times()?;
    Ok(w.stats)
}

/// Counts the uncompressed stream and fails once it passes the limit.
struct LimitReader<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for LimitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("layer size limit exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Ownership, mode, times and xattrs of one entry, with pax overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Writer {
    layer: String,
    root: OwnedFd,
    limits: UnpackLimits,
    stats: LayerStats,
    /// Directory mtimes are set last: creating children would change them again.
    dir_times: Vec<(Vec<u8>, Timespec)>,
    /// The parent directory of the previous entry; tars list siblings together.
    parent_cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    exceeded: Rc<Cell<bool>>,
}

impl Writer {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::Unpack {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn limit_error(&self, entry: &str) -> ImageError {
        self.refuse(
            entry,
            format!(
                "the layer exceeds the size limit of {} bytes (a decompression bomb?); raise CAPSA_MAX_LAYER_SIZE if it is genuine",
                self.limits.max_bytes
            ),
        )
    }

    /// An error from the tar stream itself (not from one entry's write).
    fn stream_error(&self, after: Option<&str>, e: io::Error) -> ImageError {
        let at = after.map_or_else(
            || "<start of archive>".to_string(),
            |a| format!("<after {a}>"),
        );
        if self.exceeded.get() {
            return self.limit_error(&at);
        }
        self.refuse(&at, format!("not a valid tar stream: {e}"))
    }

    fn sys(&self, entry: &str, call: &str, e: Errno) -> ImageError {
        let hint = match e {
            Errno::XDEV | Errno::LOOP => {
                " (a symlink or '..' in the path leads out of the layer: refused)"
            }
            Errno::PERM | Errno::ACCESS => " (unpacking layers needs root)",
            Errno::NOTSUP => {
                " (the store's filesystem lacks this kind of xattr: put the store on ext4, xfs, btrfs or tmpfs)"
            }
            _ => "",
        };
        self.refuse(entry, format!("{call}: {e}{hint}"))
    }

    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>, name: &str) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            // Metadata records (pax global headers reach us as entries): nothing to write.
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let comps =
            path::components(&raw).map_err(|r: PathRefusal| self.refuse(name, r.reason()))?;
        let meta = self.meta(&mut entry, name)?;
        let Some((last, parents)) = comps.split_last() else {
            return self.apply_root(kind, &meta, name);
        };
        match whiteout::classify(last) {
            Whiteout::None => {}
            Whiteout::Ignore => return Ok(()),
            Whiteout::Invalid => return Err(self.refuse(name, "a whiteout must name an entry")),
            Whiteout::Hide(target) => return self.write_whiteout(parents, target, name),
            Whiteout::Opaque => return self.mark_opaque(parents, name),
        }
        let parent = self.parent(parents, name)?;
        match kind {
            EntryType::Directory => self.write_dir(&parent, parents, last, &meta, name),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.write_file(&parent, last, &mut entry, &meta, name)
            }
            EntryType::Symlink => self.write_symlink(&parent, last, &entry, &meta, name),
            EntryType::Link => self.write_hardlink(&parent, last, &entry, name),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.write_node(&parent, last, kind, &entry, &meta, name)
            }
            other => Err(self.refuse(
                name,
                format!("unsupported tar entry type {:?}", other.as_byte() as char),
            )),
        }
    }

    /// Reads ownership, mode, mtime and xattrs, letting pax records (POSIX pax `uid`, `gid`,
    /// `mtime`, and `SCHILY.xattr.*` as GNU tar and Docker write them) override the header.
    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
        let h = entry.header();
        let bad =
            |what: &str, e: io::Error| self.refuse(name, format!("bad {what} in tar header: {e}"));
        let mut meta = Meta {
            mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
            uid: u32::try_from(h.uid().map_err(|e| bad("uid", e))?)
                .map_err(|_| self.refuse(name, "uid out of range"))?,
            gid: u32::try_from(h.gid().map_err(|e| bad("gid", e))?)
                .map_err(|_| self.refuse(name, "gid out of range"))?,
            mtime: Timespec {
                tv_sec: h.mtime().map_err(|e| bad("mtime", e))? as i64,
                tv_nsec: 0,
            },
            xattrs: Vec::new(),
        };
        let Some(pax) = entry.pax_extensions().map_err(|e| bad("pax header", e))? else {
            return Ok(meta);
        };
        for ext in pax {
            let ext = ext.map_err(|e| bad("pax record", e))?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let num = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u32>().ok())
            };
            match key {
                "uid" => meta.uid = num().ok_or_else(|| self.refuse(name, "bad pax uid"))?,
                "gid" => meta.gid = num().ok_or_else(|| self.refuse(name, "bad pax gid"))?,
                "mtime" => meta.mtime = parse_pax_time(value).unwrap_or(meta.mtime),
                k => {
                    if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                        meta.xattrs.push((OsString::from(x), value.to_vec()));
                    }
                }
            }
        }
        Ok(meta)
    }

    /// `./` itself: only a directory may describe the root, and it sets the root's metadata.
    fn apply_root(&mut self, kind: EntryType, meta: &Meta, name: &str) -> Result<()> {
        if kind != EntryType::Directory {
            return Err(self.refuse(name, "only a directory may name the layer root"));
        }
        let dir = rfs::openat(
            &self.root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.sys(name, "open", e))?;
        self.set_fd_meta(&dir, meta, name)?;
        self.dir_times.push((b".".to_vec(), meta.mtime));
        Ok(())
    }

    /// Resolves (creating missing directories) the parent of an entry, beneath the root.
    fn parent(&mut self, parents: &[&OsStr], name: &str) -> Result<Rc<OwnedFd>> {
        let key = path::join(parents);
        if let Some((k, fd)) = &self.parent_cache
            && *k == key
        {
            return Ok(fd.clone());
        }
        let fd = match self.resolve_dir(&key) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.create_parents(parents, name)?,
            Err(Errno::NOTDIR) => {
                return Err(self.refuse(name, "a parent of this entry is not a directory"));
            }
            Err(e) => return Err(self.sys(name, "openat2 (parent directory)", e)),
        };
        let fd = Rc::new(fd);
        self.parent_cache = Some((key, fd.clone()));
        Ok(fd)
    }

    fn resolve_dir(&self, rel: &[u8]) -> std::result::Result<OwnedFd, Errno> {
        rfs::openat2(
            &self.root,
            OsStr::from_bytes(rel),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    }

    /// Tars may omit parent directory entries; create them 0755 root-owned as tar(1) does.
    fn create_parents(&mut self, parents: &[&OsStr], name: &str) -> Result<OwnedFd> {
        let mut fd = self
            .resolve_dir(b".")
            .map_err(|e| self.sys(name, "openat2 (layer root)", e))?;
        for i in 1..=parents.len() {
            match self.resolve_dir(&path::join(&parents[..i])) {
                Ok(next) => fd = next,
                Err(Errno::NOENT) => {
                    let comp = parents[i - 1];
                    rfs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755))
                        .map_err(|e| self.sys(name, "mkdirat (missing parent)", e))?;
                    fd = self
                        .resolve_dir(&path::join(&parents[..i]))
                        .map_err(|e| self.sys(name, "openat2 (parent directory)", e))?;
                }
                Err(Errno::NOTDIR) => {
                    return Err(self.refuse(name, "a parent of this entry is not a directory"));
                }
                Err(e) => return Err(self.sys(name, "openat2 (parent directory)", e)),
            }
        }
        Ok(fd)
    }

    /// Makes room for a new entry: an existing directory stays when a directory comes again
    /// (tar merges), anything else is removed first (later entries win, as in tar(1)).
    /// Returns whether a directory was kept.
    fn clear_slot(
        &mut self,
        parent: &OwnedFd,
        last: &OsStr,
        want_dir: bool,
        name: &str,
    ) -> Result<bool> {
        let st = match rfs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(self.sys(name, "fstatat", e)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir && want_dir {
            return Ok(true);
        }
        // The cached parent may live below what is removed or replaced.
        self.parent_cache = None;
        if is_dir {
            let p = proc_path(parent, last);
            std::fs::remove_dir_all(&p)
                .map_err(|e| self.refuse(name, format!("cannot replace directory: {e}")))?;
        } else {
            rfs::unlinkat(parent, last, AtFlags::empty())
                .map_err(|e| self.sys(name, "unlinkat", e))?;
        }
        Ok(false)
    }

    fn write_dir(
        &mut self,
        parent: &OwnedFd,
        parents: &[&OsStr],
        last: &OsStr,
        meta: &Meta,
        name: &str,
    ) -> Result<()> {
        if !self.clear_slot(parent, last, true, name)? {
            rfs::mkdirat(parent, last, Mode::from_raw_mode(0o700))
                .map_err(|e| self.sys(name, "mkdirat", e))?;
        }
        let dir = rfs::openat(
            parent,
            last,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.sys(name, "openat (directory)", e))?;
        self.set_fd_meta(&dir, meta, name)?;
        let mut full = parents.to_vec();
        full.push(last);
        self.dir_times.push((path::join(&full), meta.mtime));
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        parent: &OwnedFd,
        last: &OsStr,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        name: &str,
    ) -> Result<()> {
        self.clear_slot(parent, last, false, name)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(parent, last, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| self.sys(name, "openat (create)", e))?;
        let mut file = std::fs::File::from(fd);
        self.copy_data(entry, &mut file, name)?;
        self.set_fd_meta(&file, meta, name)?;
        rfs::futimens(&file, &times(meta.mtime)).map_err(|e| self.sys(name, "futimens", e))
    }

    /// Copies entry data, counting against the limit (sparse entries expand while read).
    fn copy_data(
        &mut self,
        src: &mut impl Read,
        dst: &mut std::fs::File,
        name: &str,
    ) -> Result<()> {
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(_) if self.exceeded.get() => return Err(self.limit_error(name)),
                Err(e) => return Err(self.refuse(name, format!("cannot read entry data: {e}"))),
            };
            self.stats.bytes += n as u64;
            if self.stats.bytes > self.limits.max_bytes {
                return Err(self.limit_error(name));
            }
            dst.write_all(&buf[..n])
                .map_err(|e| self.refuse(name, format!("write: {e}")))?;
        }
    }

    /// Order matters: chown(2) clears set-user-ID and set-group-ID bits and the kernel drops
    /// `security.capability` on chown and on write, so chown, then chmod, then xattrs.
    fn set_fd_meta(&self, fd: &impl AsFd, meta: &Meta, name: &str) -> Result<()> {
        rfs::fchown(
            fd,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
        )
        .map_err(|e| self.sys(name, "fchown", e))?;
        rfs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| self.sys(name, "fchmod", e))?;
        for (key, value) in &meta.xattrs {
            if !xattr_allowed(key) {
                tracing::warn!(layer = %self.layer, entry = name, xattr = ?key, "skipping xattr outside user./security./system.");
                continue;
            }
            rfs::fsetxattr(fd, key.as_os_str(), value, rfs::XattrFlags::empty())
                .map_err(|e| self.sys(name, "fsetxattr", e))?;
        }
        Ok(())
    }

    fn write_symlink<R: Read>(
        &mut self,
        parent: &OwnedFd,
        last: &OsStr,
        entry: &tar::Entry<'_, R>,
        meta: &Meta,
        name: &str,
    ) -> Result<()> {
        // The link text is data: it is resolved later, inside the container's root.
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| self.refuse(name, "symlink without a target"))?
            .into_owned();
        self.clear_slot(parent, last, false, name)?;
        rfs::symlinkat(OsStr::from_bytes(&target), parent, last)
            .map_err(|e| self.sys(name, "symlinkat", e))?;
        self.set_nofollow_meta(parent, last, meta, false, name)
    }

    /// A hard link's target must already be in this layer; its path gets the same checks
    /// as an entry path, so it cannot name a file outside the layer.
    fn write_hardlink<R: Read>(
        &mut self,
        parent: &OwnedFd,
        last: &OsStr,
        entry: &tar::Entry<'_, R>,
        name: &str,
    ) -> Result<()> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| self.refuse(name, "hard link without a target"))?
            .into_owned();
        let tcomps = path::components(&raw)
            .map_err(|r| self.refuse(name, format!("hard link target: {}", r.reason())))?;
        let Some((tlast, tparents)) = tcomps.split_last() else {
            return Err(self.refuse(name, "hard link to the layer root"));
        };
        let tparent = match self.resolve_dir(&path::join(tparents)) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => {
                return Err(self.refuse(name, "hard link target is not in this layer"));
            }
            Err(e) => return Err(self.sys(name, "openat2 (hard link target)", e)),
        };
        self.clear_slot(parent, last, false, name)?;
        match rfs::linkat(&tparent, *tlast, parent, last, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(self.refuse(name, "hard link target is not in this layer")),
            Err(e) => Err(self.sys(name, "linkat", e)),
        }
    }

    fn write_node<R: Read>(
        &mut self,
        parent: &OwnedFd,
        last: &OsStr,
        kind: EntryType,
        entry: &tar::Entry<'_, R>,
        meta: &Meta,
        name: &str,
    ) -> Result<()> {
        let ft = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        if ft != FileType::Fifo && !self.limits.allow_devices {
            return Err(self.refuse(name, "device nodes are not allowed in this layer"));
        }
        let h = entry.header();
        let num = |v: io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0);
        let dev = rfs::makedev(num(h.device_major()), num(h.device_minor()));
        self.clear_slot(parent, last, false, name)?;
        rfs::mknodat(parent, last, ft, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| self.sys(name, "mknodat", e))?;
        self.set_nofollow_meta(parent, last, meta, true, name)
    }

    /// Metadata for entries that cannot be opened safely (symlinks, device nodes, fifos):
    /// *at calls with AT_SYMLINK_NOFOLLOW, and lsetxattr through the parent fd's /proc path.
    fn set_nofollow_meta(
        &self,
        parent: &OwnedFd,
        last: &OsStr,
        meta: &Meta,
        chmod: bool,
        name: &str,
    ) -> Result<()> {
        rfs::chownat(
            parent,
            last,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.sys(name, "fchownat", e))?;
        if chmod {
            // Not a symlink (we just made it), so following is moot; mknod's mode was masked by umask.
            rfs::chmodat(
                parent,
                last,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| self.sys(name, "fchmodat", e))?;
            let p = proc_path(parent, last);
            for (key, value) in meta.xattrs.iter().filter(|(k, _)| xattr_allowed(k)) {
                rfs::lsetxattr(&p, key.as_os_str(), value, rfs::XattrFlags::empty())
                    .map_err(|e| self.sys(name, "lsetxattr", e))?;
            }
        }
        rfs::utimensat(parent, last, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.sys(name, "utimensat", e))
    }

    /// `.wh.<target>` becomes the overlay whiteout: a char device 0:0 named `<target>`.
    fn write_whiteout(&mut self, parents: &[&OsStr], target: &OsStr, name: &str) -> Result<()> {
        let parent = self.parent(parents, name)?;
        self.clear_slot(&parent, target, false, name)?;
        rfs::mknodat(
            &*parent,
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .map_err(|e| self.sys(name, "mknodat (whiteout)", e))
    }

    /// `.wh..wh..opq` becomes `trusted.overlay.opaque=y` and `user.overlay.opaque=y` on its
    /// directory. These are the only overlay xattrs a layer gets: tar entries that carry
    /// `trusted.*` or `user.overlay.*` themselves are skipped by `xattr_allowed`.
    fn mark_opaque(&mut self, parents: &[&OsStr], name: &str) -> Result<()> {
        let parent = self.parent(parents, name)?;
        let dir = rfs::openat(
            &*parent,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.sys(name, "openat (opaque directory)", e))?;
        for key in whiteout::OVERLAY_OPAQUE_XATTRS {
            rfs::fsetxattr(&dir, key, b"y", rfs::XattrFlags::empty())
                .map_err(|e| self.sys(name, &format!("fsetxattr {key}"), e))?;
        }
        Ok(())
    }

    fn restore_dir_times(&self) -> Result<()> {
        for (rel, mtime) in self.dir_times.iter().rev() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            match rfs::openat2(
                &self.root,
                OsStr::from_bytes(rel),
                flags,
                Mode::empty(),
                resolve,
            ) {
                Ok(fd) => rfs::futimens(&fd, &times(*mtime))
                    .map_err(|e| self.sys(&String::from_utf8_lossy(rel), "futimens", e))?,
                // Replaced or removed by a later entry: nothing to restore.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {}
                Err(e) => return Err(self.sys(&String::from_utf8_lossy(rel), "openat2", e)),
            }
        }
        Ok(())
    }
}

/// xattrs a layer may set: `user.*`, `security.*` (file capabilities, IMA) and POSIX ACLs.
/// `trusted.*` is refused: `trusted.overlay.*` would steer overlayfs (redirects, metacopy),
/// and only the whiteout conversion writes those. `user.overlay.*` likewise.
fn xattr_allowed(key: &OsStr) -> bool {
    let k = key.as_bytes();
    (k.starts_with(b"user.") && !k.starts_with(b"user.overlay."))
        || k.starts_with(b"security.")
        || k.starts_with(b"system.posix_acl_")
}

fn proc_path(dir: &OwnedFd, last: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(last);
    p
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// pax `mtime` is decimal seconds with an optional fraction (POSIX pax "mtime").
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec = sec.parse::<i64>().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse::<i64>().ok()?
    };
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse() {
        let t = parse_pax_time(b"1700000000.5").map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t, Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time(b"12").map(|t| t.tv_nsec), Some(0));
        assert!(parse_pax_time(b"x").is_none());
    }

    #[test]
    fn xattr_filter() {
        assert!(xattr_allowed(OsStr::new("security.capability")));
        assert!(xattr_allowed(OsStr::new("user.mime")));
        assert!(!xattr_allowed(OsStr::new("trusted.overlay.redirect")));
        assert!(!xattr_allowed(OsStr::new("user.overlay.opaque")));
    }
}
