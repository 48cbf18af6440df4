//! Container snapshots: an overlayfs mount of an image's shared, read-only layers under a
//! per-container upper dir.
//!
//! Owns `<dir>/{upper,work,rootfs,snapshot.json}` inside the container dir the front end
//! passes (it owns the dir itself and everything else in it) and the container's lease in the
//! store. It never writes into layers/: those are lower dirs, shared by every container.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, Mode};
use rustix::io::Errno;
use rustix::mount::{
    self as rmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags,
};
use serde::{Deserialize, Serialize};

use crate::error::{ImageError, Result};
use crate::store::{Image, ImageStore, Lease};

const RECORD: &str = "snapshot.json";
/// statfs(2) f_type of overlayfs (include/uapi/linux/magic.h OVERLAYFS_SUPER_MAGIC).
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// A container's writable view of an image, mounted at `rootfs`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub container_id: String,
    /// The container dir the front end gave (`<root>/containers/<id>`).
    pub dir: PathBuf,
    /// The mount point: the container's root filesystem.
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// overlayfs lower dirs, top layer first (overlayfs.rst: the first lowerdir is uppermost).
    pub lower: Vec<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    lease: Lease,
    lower: Vec<PathBuf>,
}

impl Snapshot {
    /// Leases the image, creates `upper`, `work` and `rootfs` in `dir`, and mounts overlayfs
    /// at `rootfs`. On failure nothing is left mounted and the lease is dropped.
    pub fn prepare(
        store: &ImageStore,
        image: &Image,
        container_id: &str,
        dir: &Path,
    ) -> Result<Snapshot> {
        check_container_id(container_id)?;
        if image.layers.is_empty() {
            return Err(ImageError::Format(format!(
                "image {} has no layers to mount",
                image.config.short()
            )));
        }
        if dir.join(RECORD).exists() || dir.join("upper").exists() {
            // Never reuse (and on failure never clean up) another snapshot's upper dir: it
            // holds the container's writes.
            return Err(ImageError::Conflict(format!(
                "container {container_id} already has a snapshot in {}",
                dir.display()
            )));
        }
        let lease = store.add_lease(container_id, image)?;
        let made =
            Self::create(store, lease, container_id, dir).and_then(|s| s.mount().map(|()| s));
        if made.is_err() {
            let _ = Self::remove(store, container_id, dir);
        }
        made
    }

    fn create(
        store: &ImageStore,
        lease: Lease,
        container_id: &str,
        dir: &Path,
    ) -> Result<Snapshot> {
        let lower: Vec<PathBuf> = lease
            .layers
            .iter()
            .rev()
            .map(|l| store.layer_root(&l.diff_id))
            .collect();
        let snap = Snapshot::paths(container_id, dir, lower.clone());
        fs::create_dir_all(dir).map_err(|e| ImageError::io("create", dir, e))?;
        for d in [&snap.upper, &snap.work, &snap.rootfs] {
            rustix::fs::mkdir(d, Mode::from_raw_mode(0o755))
                .map_err(|e| ImageError::sys("mkdir", d, e))?;
        }
        let data =
            serde_json::to_vec_pretty(&Record { lease, lower }).map_err(|e| ImageError::Json {
                path: dir.join(RECORD),
                source: e,
            })?;
        crate::store::write_atomic(dir, RECORD, &data, false)?;
        Ok(snap)
    }

    fn paths(container_id: &str, dir: &Path, lower: Vec<PathBuf>) -> Snapshot {
        Snapshot {
            container_id: container_id.to_string(),
            dir: dir.to_path_buf(),
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
            lower,
        }
    }

    /// Loads a prepared snapshot (mounted or not, e.g. after a reboot) from `dir`.
    pub fn load(container_id: &str, dir: &Path) -> Result<Snapshot> {
        let path = dir.join(RECORD);
        let data = fs::read(&path).map_err(|e| ImageError::io("read", &path, e))?;
        let rec: Record =
            serde_json::from_slice(&data).map_err(|e| ImageError::Json { path, source: e })?;
        Ok(Snapshot::paths(container_id, dir, rec.lower))
    }

    /// Whether overlayfs is mounted at `rootfs`.
    pub fn is_mounted(&self) -> bool {
        rustix::fs::statfs(&self.rootfs).is_ok_and(|s| s.f_type == OVERLAYFS_MAGIC)
    }

    /// Mounts overlayfs at `rootfs` with the new mount API: each lower dir is passed on its
    /// own (`lowerdir+`, Linux 6.8), so the page-size limit of the mount(2) option string does
    /// not bound the number of layers. Older kernels get mount(2) with the joined string.
    pub fn mount(&self) -> Result<()> {
        match self.mount_fd_api() {
            Err(MountFailure::Unsupported) => self.mount_legacy(),
            Err(MountFailure::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    fn mount_fd_api(&self) -> std::result::Result<(), MountFailure> {
        let fs = match rmount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
            Ok(fd) => fd,
            Err(Errno::NOSYS) => return Err(MountFailure::Unsupported),
            Err(e) => return Err(self.mount_error("fsopen overlay", e, None)),
        };
        for l in &self.lower {
            match rmount::fsconfig_set_string(&fs, "lowerdir+", l) {
                Ok(()) => {}
                Err(Errno::INVAL) if l == &self.lower[0] => return Err(MountFailure::Unsupported),
                Err(e) => return Err(self.mount_error("fsconfig lowerdir+", e, Some(&fs))),
            }
        }
        let set = |k: &str, v: &Path| rmount::fsconfig_set_string(&fs, k, v);
        set("upperdir", &self.upper)
            .map_err(|e| self.mount_error("fsconfig upperdir", e, Some(&fs)))?;
        set("workdir", &self.work)
            .map_err(|e| self.mount_error("fsconfig workdir", e, Some(&fs)))?;
        rmount::fsconfig_create(&fs)
            .map_err(|e| self.mount_error("fsconfig create", e, Some(&fs)))?;
        let mnt = rmount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map_err(|e| self.mount_error("fsmount", e, Some(&fs)))?;
        rmount::move_mount(
            mnt.as_fd(),
            "",
            CWD,
            &self.rootfs,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| self.mount_error("move_mount", e, None))?;
        Ok(())
    }

    fn mount_legacy(&self) -> Result<()> {
        let lower: Vec<String> = self
            .lower
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        );
        if opts.len() >= 4096 {
            return Err(ImageError::Format(format!(
                "the overlay options for {} layers exceed one page and this kernel lacks lowerdir+ (Linux 6.8)",
                self.lower.len()
            )));
        }
        let data = std::ffi::CString::new(opts)
            .map_err(|_| ImageError::Format("overlay options contain a NUL byte".into()))?;
        rmount::mount(
            "overlay",
            &self.rootfs,
            "overlay",
            rmount::MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| ImageError::sys("mount overlay on", &self.rootfs, e))
    }

    /// The kernel explains fsconfig failures in the fs context's log (fsopen(2)); quote it.
    fn mount_error(&self, call: &'static str, e: Errno, fs: Option<&OwnedFd>) -> MountFailure {
        let log = fs.map(read_fs_log).unwrap_or_default();
        let hint = if log.is_empty() {
            String::new()
        } else {
            format!(" (kernel: {log})")
        };
        MountFailure::Failed(ImageError::Format(format!(
            "cannot mount overlay on {}: {call}: {e}{hint}",
            self.rootfs.display()
        )))
    }

    /// Unmounts `rootfs`; a busy mount is detached lazily (umount2 MNT_DETACH).
    pub fn unmount(&self) -> Result<()> {
        if !self.is_mounted() {
            return Ok(());
        }
        match rmount::unmount(&self.rootfs, UnmountFlags::empty()) {
            Ok(()) | Err(Errno::INVAL | Errno::NOENT) => Ok(()),
            Err(Errno::BUSY) => rmount::unmount(&self.rootfs, UnmountFlags::DETACH)
                .map_err(|e| ImageError::sys("umount2 MNT_DETACH", &self.rootfs, e)),
            Err(e) => Err(ImageError::sys("umount", &self.rootfs, e)),
        }
    }

    /// Unmounts and deletes the snapshot's dirs and record, then drops the lease (which lets
    /// garbage collection take layers no image uses any more). Idempotent.
    pub fn remove(store: &ImageStore, container_id: &str, dir: &Path) -> Result<()> {
        check_container_id(container_id)?;
        let snap = Snapshot::paths(container_id, dir, Vec::new());
        snap.unmount()?;
        if snap.is_mounted() {
            // Deleting through a live overlay would only whiteout files in upper/; stop instead.
            return Err(ImageError::Format(format!(
                "{} is still mounted; not removing the snapshot",
                snap.rootfs.display()
            )));
        }
        for d in [&snap.rootfs, &snap.upper, &snap.work] {
            match fs::remove_dir_all(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove", d, e)),
            }
        }
        match fs::remove_file(dir.join(RECORD)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("remove", &dir.join(RECORD), e)),
        }
        store.drop_lease(container_id)
    }
}

enum MountFailure {
    /// The kernel lacks the new mount API or `lowerdir+`: fall back to mount(2).
    Unsupported,
    Failed(ImageError),
}

fn read_fs_log(fs: &OwnedFd) -> String {
    let mut file = match fs.try_clone() {
        Ok(fd) => fs::File::from(fd),
        Err(_) => return String::new(),
    };
    let mut buf = [0u8; 1024];
    match file.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
        Err(_) => String::new(),
    }
}

/// Container IDs name files (`leases/<id>.json`): keep them to a safe alphabet.
fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::Format(format!(
            "invalid container id {id:?}: use letters, digits, '_', '.', '-'"
        )))
    }
}
