//! Opening and creating paths inside an untrusted rootfs without leaving it (CVE-2021-30465).
//!
//! Every lookup is `openat2(rootfd, path, RESOLVE_IN_ROOT)`: `..` and absolute symlinks are
//! clamped to the rootfs, so a symlink planted in the image cannot send a mount outside it.
//! Callers then mount onto `/proc/self/fd/N` of the O_PATH fd, so what is mounted on is exactly
//! the inode resolved here, even if the path is swapped afterwards.
//! Must not mount anything.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::init::{Step, StepError};

/// `path` relative to the root: leading `/` removed, empty means the root itself.
pub fn relative(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    if p.is_empty() { "." } else { p }
}

/// Open `path` inside `root` as O_PATH (plus `extra` flags), symlinks resolved within the root.
pub fn open_in_root(root: &OwnedFd, path: &str, extra: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        root,
        relative(path),
        OFlags::PATH | OFlags::CLOEXEC | extra,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
}

/// Open or create (mkdir -p) a directory inside the root; returns an O_PATH fd.
pub fn ensure_dir(root: &OwnedFd, path: &str) -> Step<OwnedFd> {
    match open_in_root(root, path, OFlags::DIRECTORY) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => {
            return Err(StepError::sys(
                "open",
                path,
                e,
                "is a parent not a directory?",
            ));
        }
    }
    let rel = relative(path);
    let mut prefix = String::with_capacity(rel.len());
    let mut parent = open_in_root(root, ".", OFlags::DIRECTORY)
        .map_err(|e| StepError::sys("open", "the rootfs", e, ""))?;
    for comp in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(comp);
        match rustix::fs::mkdirat(&parent, comp, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(StepError::sys(
                    "mkdir",
                    format!("/{prefix}"),
                    e,
                    "is the rootfs read-only?",
                ));
            }
        }
        // Re-resolve from the root each time: the new name may be a symlink, clamped to the root.
        parent = open_in_root(root, &prefix, OFlags::DIRECTORY).map_err(|e| {
            StepError::sys(
                "open",
                format!("/{prefix}"),
                e,
                "is it a file, not a directory?",
            )
        })?;
    }
    Ok(parent)
}

/// Open or create an empty regular file inside the root (a bind-mount target for a file).
pub fn ensure_file(root: &OwnedFd, path: &str) -> Step<OwnedFd> {
    match open_in_root(root, path, OFlags::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(StepError::sys("open", path, e, "")),
    }
    let rel = relative(path);
    let (dir, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    let parent = ensure_dir(root, dir)?;
    // The O_PATH parent cannot be used for O_CREAT; reopen it as a real directory fd.
    let parent = rustix::fs::openat(
        &parent,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", dir, e, ""))?;
    let how = OFlags::CREATE | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    match rustix::fs::openat(&parent, name, how, Mode::from_raw_mode(0o644)) {
        Ok(_) | Err(Errno::EXIST) => {}
        Err(e) => {
            return Err(StepError::sys(
                "create",
                path,
                e,
                "a symlink here is refused",
            ));
        }
    }
    open_in_root(root, path, OFlags::NOFOLLOW).map_err(|e| StepError::sys("open", path, e, ""))
}

/// `/proc/self/fd/N` for an fd, as mount(2) takes paths. Only used before pivot_root, in our
/// own fresh mount namespace, where /proc is the host's procfs (not the container's).
pub fn fd_path(fd: &OwnedFd) -> std::ffi::CString {
    crate::console::fd_path(fd)
}

/// File type of an fd (S_IFMT bits).
pub fn file_type(fd: &OwnedFd, show: &str) -> Step<u32> {
    let st = rustix::fs::fstat(fd).map_err(|e| StepError::sys("stat", show, e, ""))?;
    Ok(st.st_mode & libc::S_IFMT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative("/proc"), "proc");
        assert_eq!(relative("/"), ".");
        assert_eq!(relative("dev/pts"), "dev/pts");
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root_dir = t.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        std::os::unix::fs::symlink("/../../../etc", root_dir.join("escape")).unwrap();
        let root =
            rustix::fs::open(&root_dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        // The symlink is clamped to the root: /escape is the root's own /etc.
        let fd = ensure_dir(&root, "/escape/x").unwrap();
        assert!(root_dir.join("etc/x").is_dir());
        drop(fd);
        let f = ensure_file(&root, "/etc/x/file").unwrap();
        assert_eq!(file_type(&f, "f").unwrap(), libc::S_IFREG);
    }
}
