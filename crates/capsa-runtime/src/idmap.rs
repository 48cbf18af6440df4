//! Idmapped mounts: detached mount clones whose file ownership is shifted through a user
//! namespace's uid/gid maps (mount_setattr(2) MOUNT_ATTR_IDMAP, Linux 5.12), so an image or a
//! volume never has to be chowned for a remapped container.
//!
//! Owns: the crate's one `mount_setattr` wrapper (rootfs uses it too), the short-lived helper
//! process that holds a user namespace with a given mapping (its ns fd is all MOUNT_ATTR_IDMAP
//! needs), detached clones (`open_tree(OPEN_TREE_CLONE)`) and the support probe that `features`
//! reports.
//! Must not touch the container's own namespaces or mount anything into a mount namespace: the
//! init attaches the clones (`rootfs`).
//!
//! Kernel rules behind the shape (fs/namespace.c `build_mount_idmapped`, `can_idmap_mount`):
//! the caller needs CAP_SYS_ADMIN over the filesystem's user namespace, so the clones are made by
//! the runtime on the host before the container's clone; the mount must be detached (never
//! visible in a mount namespace), which OPEN_TREE_CLONE gives; and the filesystem must allow
//! idmapping (FS_ALLOW_IDMAP: ext4, xfs, btrfs, tmpfs... but not overlayfs on Linux 6.18,
//! which instead accepts idmapped *layers*).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::OpenTreeFlags;
use rustix::process::{Pid, Signal, WaitOptions};

use crate::init::{Step, StepError};

/// `MOUNT_ATTR_IDMAP` (include/uapi/linux/mount.h).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (include/uapi/linux/mount.h, MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], {attr_set, attr_clr, userns_fd}) on the
/// mount `fd` refers to: the one wrapper of the crate (idmapping here; read-only and the other
/// MOUNT_ATTR_* flags in `rootfs`).
pub fn mount_setattr(
    mount: &OwnedFd,
    recursive: bool,
    attr_set: u64,
    attr_clr: u64,
    userns: Option<&OwnedFd>,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `attr` is a valid mount_attr of the size passed and outlives the call; the path is
    // an empty NUL-terminated string; the fds are borrowed for the call only.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    } else {
        Ok(())
    }
}

/// mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE], {attr_set: IDMAP, userns_fd}).
pub fn set_idmap(mount: &OwnedFd, userns: &OwnedFd, recursive: bool) -> Result<(), Errno> {
    mount_setattr(mount, recursive, MOUNT_ATTR_IDMAP, 0, Some(userns))
}

/// A detached copy of the mount tree at `path` (a bind mount that is not attached anywhere yet).
pub fn clone_tree(path: &Path, recursive: bool) -> Step<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(rustix::fs::CWD, path, flags).map_err(|e| {
        StepError::sys(
            "open_tree(OPEN_TREE_CLONE)",
            path.display(),
            e,
            "does the path exist? (Linux >= 5.2)",
        )
    })
}

/// A detached clone of `path`, idmapped through `userns`.
pub fn idmapped_clone(path: &Path, userns: &OwnedFd, recursive: bool) -> Step<OwnedFd> {
    let fd = clone_tree(path, recursive)?;
    set_idmap(&fd, userns, recursive).map_err(|e| {
        StepError::sys(
            "idmap (mount_setattr MOUNT_ATTR_IDMAP)",
            path.display(),
            e,
            &idmap_hint(path, e),
        )
    })?;
    Ok(fd)
}

/// Says which kernel or filesystem is missing what.
fn idmap_hint(path: &Path, e: Errno) -> String {
    let fs = fs_name(path);
    match e {
        Errno::NOSYS => "idmapped mounts need Linux >= 5.12 (mount_setattr)".into(),
        Errno::INVAL => format!(
            "the {fs} filesystem does not support idmapped mounts on this kernel \
             (ext4, xfs, btrfs and tmpfs do; overlayfs only as idmapped layers); \
             use --userns=host or a store on a filesystem that does"
        ),
        Errno::PERM => "only root in the initial user namespace can idmap a host mount".into(),
        _ => format!("filesystem {fs}"),
    }
}

/// A short name of the filesystem `path` is on (statfs f_type), for messages.
pub fn fs_name(path: &Path) -> String {
    let Ok(st) = rustix::fs::statfs(path) else {
        return "unknown".into();
    };
    match st.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        0x8584_58F6 => "ramfs".into(),
        0x6573_5546 => "fuse".into(),
        other => format!("0x{other:x}"),
    }
}

/// User namespace fds by mapping text, so one container with several equal mappings (the rootfs
/// layers and volumes) pays for one helper process.
#[derive(Default)]
pub struct UsernsCache {
    by_map: HashMap<(String, String), OwnedFd>,
}

impl UsernsCache {
    /// The fd of a user namespace with these `uid_map`/`gid_map` contents.
    pub fn get(&mut self, uid_map: &str, gid_map: &str) -> Step<&OwnedFd> {
        let key = (uid_map.to_string(), gid_map.to_string());
        if !self.by_map.contains_key(&key) {
            let fd = userns_with_maps(uid_map, gid_map)?;
            self.by_map.insert(key.clone(), fd);
        }
        self.by_map
            .get(&key)
            .ok_or_else(|| StepError::msg("user namespace cache lost an entry"))
    }
}

/// A user namespace with the given maps: clone a helper into a new user namespace, write its
/// maps from here (we hold CAP_SETUID/CAP_SETGID above it), keep its ns fd and kill it. The
/// namespace lives on as long as the fd does (namespaces(7)).
pub fn userns_with_maps(uid_map: &str, gid_map: &str) -> Step<OwnedFd> {
    let pid = crate::init::sys::clone_fork(libc::CLONE_NEWUSER as u64).map_err(|e| {
        StepError::sys(
            "clone(CLONE_NEWUSER)",
            "the idmap helper",
            e,
            "are user namespaces enabled (user.max_user_namespaces > 0)?",
        )
    })?;
    if pid == 0 {
        // The helper only has to exist; it never runs code of ours beyond this wait.
        loop {
            rustix::event::pause();
        }
    }
    let result = write_helper_maps(pid, uid_map, gid_map).and_then(|()| {
        let path = format!("/proc/{pid}/ns/user");
        rustix::fs::open(
            path.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepError::sys("open", &path, e, ""))
    });
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, Signal::KILL);
        let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
    }
    result
}

fn write_helper_maps(pid: i32, uid_map: &str, gid_map: &str) -> Step {
    for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text).map_err(|e| {
            let errno = Errno::from_io_error(&e).unwrap_or(Errno::IO);
            StepError::sys("write", &path, errno, "are the ids in the mapping valid?")
        })?;
    }
    Ok(())
}

/// Whether this kernel can idmap a mount of `dir`'s filesystem (for `features` and for early,
/// clear errors). Costs one helper process and one clone.
pub fn probe(dir: &Path) -> Result<(), String> {
    let ns = userns_with_maps("0 100000 1\n", "0 100000 1\n").map_err(|e| e.to_string())?;
    let fd = clone_tree(dir, false).map_err(|e| e.to_string())?;
    set_idmap(&fd, &ns, false).map_err(|e| {
        format!(
            "cannot idmap a mount of {}: {} ({})",
            dir.display(),
            crate::init::sys::errno_name(e.raw_os_error()),
            idmap_hint(dir, e)
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_names_the_filesystem() {
        let h = idmap_hint(Path::new("/"), Errno::INVAL);
        assert!(h.contains("does not support idmapped mounts"), "{h}");
        assert!(idmap_hint(Path::new("/"), Errno::NOSYS).contains("5.12"));
    }
}
