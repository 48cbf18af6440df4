//! The container's filesystem view: mounts, /dev, masked and read-only paths, pivot_root.
//!
//! Owns `RootfsPlan` (config.json root/mounts/devices/paths, computed before the clone) and every
//! mount the init makes. All targets are resolved inside the rootfs (`resolve`) and mounted
//! through O_PATH fds, before pivot_root, while /proc is still the host's (CVE-2021-30465,
//! CVE-2025-52881). Must not touch credentials or capabilities (`security`).

mod cgroupfs;
pub mod dev;
pub mod options;
pub mod resolve;
pub mod userns;

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::init::{Step, StepError, sys};
use options::MountOptions;
use resolve::fd_path;

/// One entry of config.json `mounts`.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// Destination inside the container, absolute.
    pub dest: String,
    pub fstype: String,
    /// Source: a host path for binds (bundle-relative paths made absolute), else the fs source.
    pub source: CString,
    pub opts: MountOptions,
    pub data: Option<CString>,
    /// For binds: whether the source is a directory (decides mkdir vs an empty file target).
    pub source_is_dir: bool,
    /// The mount's own `uidMappings`/`gidMappings` (OCI idmapped-mount extension), as map texts.
    pub idmap: Option<(String, String)>,
}

/// Everything the init does with the filesystem.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    pub rootfs: CString,
    pub readonly: bool,
    /// `linux.rootfsPropagation`, applied to `/` after pivot_root.
    pub propagation: Option<u64>,
    pub mounts: Vec<MountPlan>,
    /// Whether /dev is ours to populate (it is unless /dev is a bind mount: runc needsSetupDev).
    pub setup_dev: bool,
    pub devices: Vec<dev::DevicePlan>,
    pub masked: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctls: Vec<(String, String)>,
    pub userns: bool,
    pub cgroupns: bool,
    pub no_pivot: bool,
    /// The host has /proc/kcore: add the /dev/core symlink (runc).
    pub kcore: bool,
    /// Host cgroup hierarchies, for `cgroup` mounts (read only when one is configured).
    pub cgroup_hierarchies: Vec<cgroupfs::Hierarchy>,
    /// Where the root comes from (a bind, an idmapped clone, an overlay of idmapped layers).
    pub root_source: userns::RootSource,
}

fn cpath(p: &Path) -> Step<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| StepError::msg(format!("path {} contains NUL", p.display())))
}

impl RootfsPlan {
    pub fn new(spec: &Spec, bundle: &Path, rootfs: &Path, no_pivot: bool) -> Step<Self> {
        let linux = spec.linux().as_ref();
        let has_ns = |t: LinuxNamespaceType| {
            linux
                .and_then(|l| l.namespaces().as_ref())
                .is_some_and(|v| v.iter().any(|n| n.typ() == t))
        };
        let mounts = spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| mount_plan(m, bundle))
            .collect::<Step<Vec<_>>>()?;
        let setup_dev = !mounts
            .iter()
            .any(|m| m.dest.trim_end_matches('/') == "/dev" && m.opts.is_bind());
        let cgroup_hierarchies = if mounts.iter().any(|m| m.fstype == "cgroup") {
            cgroupfs::host_hierarchies()
        } else {
            Vec::new()
        };
        let mut sysctls: Vec<(String, String)> = linux
            .and_then(|l| l.sysctl().clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        sysctls.sort();
        Ok(RootfsPlan {
            rootfs: cpath(rootfs)?,
            readonly: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            propagation: match linux
                .and_then(|l| l.rootfs_propagation().as_deref())
                .filter(|s| !s.is_empty())
            {
                Some(v) => {
                    Some(options::root_propagation(v).ok_or_else(|| {
                        StepError::msg(format!("invalid rootfsPropagation {v:?}"))
                    })?)
                }
                None => None,
            },
            mounts,
            setup_dev,
            devices: dev::plan(
                linux
                    .and_then(|l| l.devices().as_deref())
                    .unwrap_or_default(),
            )?,
            masked: linux
                .and_then(|l| l.masked_paths().clone())
                .unwrap_or_default(),
            readonly_paths: linux
                .and_then(|l| l.readonly_paths().clone())
                .unwrap_or_default(),
            sysctls,
            userns: has_ns(LinuxNamespaceType::User),
            cgroupns: has_ns(LinuxNamespaceType::Cgroup),
            no_pivot,
            kcore: Path::new("/proc/kcore").exists(),
            cgroup_hierarchies,
            root_source: userns::root_source(spec, has_ns(LinuxNamespaceType::User))?,
        })
    }
}

fn mount_plan(m: &oci_spec::runtime::Mount, bundle: &Path) -> Step<MountPlan> {
    let dest = m.destination().to_string_lossy().into_owned();
    if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
        return Err(StepError::msg(format!(
            "mount destination {dest:?} must be absolute and without \"..\""
        )));
    }
    let opts = options::parse(m.options().as_deref().unwrap_or_default());
    let fstype = m.typ().clone().unwrap_or_else(|| {
        if opts.is_bind() {
            "bind".into()
        } else {
            "none".into()
        }
    });
    let mut opts = opts;
    if fstype == "bind" && !opts.is_bind() {
        opts.flags |= libc::MS_BIND;
    }
    let raw_source = m.source().clone().unwrap_or_else(|| fstype.clone().into());
    let (source, source_is_dir) = if opts.is_bind() {
        let abs = if raw_source.is_absolute() {
            raw_source
        } else {
            bundle.join(raw_source)
        };
        let is_dir = std::fs::metadata(&abs)
            .map_err(|e| {
                StepError::msg(format!(
                    "cannot stat bind mount source {}: {e}",
                    abs.display()
                ))
            })?
            .is_dir();
        (cpath(&abs)?, is_dir)
    } else {
        (cpath(&raw_source)?, true)
    };
    let data = if opts.data.is_empty() {
        None
    } else {
        Some(
            CString::new(opts.data.clone())
                .map_err(|_| StepError::msg("mount data contains NUL"))?,
        )
    };
    let idmap = match (m.uid_mappings(), m.gid_mappings()) {
        (Some(u), Some(g)) => Some((map_text(u), map_text(g))),
        (None, None) => None,
        _ => {
            return Err(StepError::msg(format!(
                "mount {dest}: uidMappings and gidMappings must be given together (runtime-spec)"
            )));
        }
    };
    if idmap.is_some() && !opts.is_bind() {
        return Err(StepError::msg(format!(
            "mount {dest}: uidMappings/gidMappings are only supported on bind mounts"
        )));
    }
    Ok(MountPlan {
        dest,
        fstype,
        source,
        opts,
        data,
        source_is_dir,
        idmap,
    })
}

/// `container host size` lines, as /proc/<pid>/uid_map and user namespaces want them.
fn map_text(maps: &[oci_spec::runtime::LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Open a directory of the current root (the `exec` tenant's view of the container).
pub fn open_root_dir(path: &str) -> Step<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", path, e, ""))
}

/// First step in the new mount namespace: our copy of the host mounts must not propagate back
/// (rslave, runc's default), before anything is mounted.
pub fn make_rslave() -> Step {
    sys::mount(None, c"/", None, libc::MS_SLAVE | libc::MS_REC, None).map_err(|e| {
        StepError::sys(
            "make / rslave",
            "in the new mount namespace",
            e,
            "is there a mount namespace?",
        )
    })
}

/// Mount namespace setup up to (not including) pivot_root, on the root that `userns` put in
/// place; returns the rootfs fd.
pub fn prepare(plan: &RootfsPlan, root: OwnedFd, detached: &userns::Detached) -> Step<OwnedFd> {
    for (i, m) in plan.mounts.iter().enumerate() {
        let src = detached.binds.get(i).and_then(Option::as_ref);
        mount_one(&root, m, plan, src)?;
    }
    if plan.setup_dev {
        dev::create_all(&root, &plan.devices, plan.userns)?;
        dev::symlinks(&root, plan.kcore)?;
    }
    Ok(root)
}

/// One config mount, onto a target resolved inside the root.
fn mount_one(root: &OwnedFd, m: &MountPlan, plan: &RootfsPlan, detached: Option<&OwnedFd>) -> Step {
    let target = mount_target(root, m)?;
    if let Some(src) = detached {
        // A clone made on the host (user namespaces: see `userns`), maybe idmapped.
        userns::attach_bind(src, &target, &m.dest)?;
        remount_bind(root, m)?;
        return propagate(root, m);
    }
    match m.fstype.as_str() {
        "cgroup" => return cgroupfs::mount(root, &target, m, plan),
        "sysfs" if plan.userns => {
            // Without its own network namespace a user-namespaced container cannot mount sysfs
            // (EPERM); runc falls back to a recursive bind of the host's /sys.
            if let Err(Errno::PERM) = fs_mount(m, &target) {
                return sys::mount(
                    Some(c"/sys"),
                    &fd_path(&target),
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .map_err(|e| StepError::sys("bind /sys on", &m.dest, e, ""));
            }
            return propagate(root, m);
        }
        _ => {}
    }
    fs_mount(m, &target).map_err(|e| {
        StepError::sys(
            &format!("mount {}", m.fstype),
            format!("on {}", m.dest),
            e,
            mount_hint(m),
        )
    })?;
    if m.opts.is_bind() {
        remount_bind(root, m)?;
    }
    propagate(root, m)
}

fn mount_hint(m: &MountPlan) -> &'static str {
    if m.opts.is_bind() {
        "does the source exist?"
    } else {
        "is the filesystem type supported, and the data valid?"
    }
}

fn fs_mount(m: &MountPlan, target: &OwnedFd) -> Result<(), Errno> {
    let flags = m.opts.flags & !(libc::MS_REMOUNT);
    let fstype = if m.opts.is_bind() {
        None
    } else {
        Some(CString::new(m.fstype.as_bytes()).unwrap_or_default())
    };
    // Bind mounts ignore most flags on the first call; the remount below applies them.
    sys::mount(
        Some(&m.source),
        &fd_path(target),
        fstype.as_deref(),
        flags,
        m.data.as_deref(),
    )
}

/// The mount point inside the root. /proc and /sys (and any proc/sysfs mount) must be real
/// directories, never symlinks (CVE-2023-27561, runc "Prohibit /proc and /sys to be symlinks").
fn mount_target(root: &OwnedFd, m: &MountPlan) -> Step<OwnedFd> {
    let strict = matches!(m.fstype.as_str(), "proc" | "sysfs")
        || matches!(m.dest.as_str(), "/proc" | "/sys");
    if strict {
        match resolve::open_in_root(root, &m.dest, OFlags::NOFOLLOW) {
            Ok(fd) => {
                if resolve::file_type(&fd, &m.dest)? != libc::S_IFDIR {
                    return Err(StepError::msg(format!(
                        "cannot mount {} on {}: the destination is a symlink or not a directory (CVE-2023-27561)",
                        m.fstype, m.dest
                    )));
                }
                return Ok(fd);
            }
            Err(Errno::NOENT) => {}
            Err(Errno::LOOP) => {
                return Err(StepError::msg(format!(
                    "cannot mount {} on {}: the destination is a symlink (CVE-2023-27561)",
                    m.fstype, m.dest
                )));
            }
            Err(e) => return Err(StepError::sys("open", &m.dest, e, "")),
        }
    }
    if m.opts.is_bind() && !m.source_is_dir {
        resolve::ensure_file(root, &m.dest)
    } else {
        resolve::ensure_dir(root, &m.dest)
    }
}

/// Flags other than bind/rec need a second, remount call for bind mounts (mount(2)). In a user
/// namespace, flags locked by the source mount must be kept, so they are read back and added.
fn remount_bind(root: &OwnedFd, m: &MountPlan) -> Step {
    let extra = m.opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if extra == 0 && !m.opts.recursive_ro {
        return Ok(());
    }
    let top = reopen(root, &m.dest)?;
    let flags = (libc::MS_BIND | libc::MS_REMOUNT) | extra;
    remount_keep_locked(&top, flags)
        .map_err(|e| StepError::sys("remount", &m.dest, e, "flags locked by the source?"))?;
    if m.opts.recursive_ro {
        set_recursive_readonly(&top)
            .map_err(|e| StepError::sys("mount_setattr rro", &m.dest, e, "kernel >= 5.12?"))?;
    }
    Ok(())
}

/// After a mount, the old fd still names the covered directory: reopen to get the new mount.
fn reopen(root: &OwnedFd, dest: &str) -> Step<OwnedFd> {
    resolve::open_in_root(root, dest, OFlags::empty())
        .map_err(|e| StepError::sys("reopen", dest, e, ""))
}

/// Remount; on EPERM retry with the mount's current locked flags added (runc does the same).
fn remount_keep_locked(target: &OwnedFd, flags: u64) -> Result<(), Errno> {
    match sys::mount(None, &fd_path(target), None, flags, None) {
        Err(Errno::PERM) => {
            let locked = locked_flags(target)?;
            sys::mount(None, &fd_path(target), None, flags | locked, None)
        }
        r => r,
    }
}

/// MS_* flags of the mount an fd is on, from statvfs (ST_* values match MS_* for these bits).
fn locked_flags(fd: &OwnedFd) -> Result<u64, Errno> {
    let st = rustix::fs::fstatvfs(fd)?;
    let f = st.f_flag;
    let mut out = 0u64;
    for (st_bit, ms) in [
        (rustix::fs::StatVfsMountFlags::RDONLY, libc::MS_RDONLY),
        (rustix::fs::StatVfsMountFlags::NOSUID, libc::MS_NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, libc::MS_NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, libc::MS_NOEXEC),
        (rustix::fs::StatVfsMountFlags::NOATIME, libc::MS_NOATIME),
        (
            rustix::fs::StatVfsMountFlags::NODIRATIME,
            libc::MS_NODIRATIME,
        ),
        (rustix::fs::StatVfsMountFlags::RELATIME, libc::MS_RELATIME),
    ] {
        if f.contains(st_bit) {
            out |= ms;
        }
    }
    Ok(out)
}

/// mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_RDONLY).
fn set_recursive_readonly(fd: &OwnedFd) -> Result<(), Errno> {
    crate::idmap::mount_setattr(fd, true, 1, 0, None)
}

fn propagate(root: &OwnedFd, m: &MountPlan) -> Step {
    if m.opts.propagation.is_empty() {
        return Ok(());
    }
    let top = reopen(root, &m.dest)?;
    for &p in &m.opts.propagation {
        sys::mount(None, &fd_path(&top), None, p, None)
            .map_err(|e| StepError::sys("set propagation of", &m.dest, e, ""))?;
    }
    Ok(())
}

/// maskedPaths and readonlyPaths, resolved inside the root (the container's /proc is mounted
/// under it by now).
pub fn protect_paths(plan: &RootfsPlan, root: &OwnedFd) -> Step {
    // readonlyPaths first, then maskedPaths (runc's order).
    for p in &plan.readonly_paths {
        readonly_path(root, p)?;
    }
    let mut dev_null: Option<OwnedFd> = None;
    for p in &plan.masked {
        let target = match resolve::open_in_root(root, p, OFlags::NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(StepError::sys("open masked path", p, e, "")),
        };
        if resolve::file_type(&target, p)? == libc::S_IFDIR {
            sys::mount(
                Some(c"tmpfs"),
                &fd_path(&target),
                Some(c"tmpfs"),
                libc::MS_RDONLY,
                None,
            )
            .map_err(|e| StepError::sys("mask", p, e, "tmpfs over a directory"))?;
        } else {
            if dev_null.is_none() {
                dev_null = Some(verified_dev_null(root)?);
            }
            if let Some(null) = &dev_null {
                sys::mount(
                    Some(&fd_path(null)),
                    &fd_path(&target),
                    None,
                    libc::MS_BIND,
                    None,
                )
                .map_err(|e| StepError::sys("mask", p, e, "bind of /dev/null"))?;
            }
        }
    }
    Ok(())
}

/// The container's /dev/null, checked to be the real char device 1:3 before it is bind-mounted
/// over masked files (CVE-2025-31133: a symlink or other file there would be mounted instead).
fn verified_dev_null(root: &OwnedFd) -> Step<OwnedFd> {
    let fd = resolve::open_in_root(root, "/dev/null", OFlags::NOFOLLOW)
        .map_err(|e| StepError::sys("open", "/dev/null", e, "it is needed to mask paths"))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| StepError::sys("stat", "/dev/null", e, ""))?;
    let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if !is_char || (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)) != (1, 3) {
        return Err(StepError::msg(
            "refusing to mask paths: /dev/null is not the char device 1:3 (CVE-2025-31133)",
        ));
    }
    Ok(fd)
}

fn readonly_path(root: &OwnedFd, p: &str) -> Step {
    let target = match resolve::open_in_root(root, p, OFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(StepError::sys("open readonly path", p, e, "")),
    };
    let path = fd_path(&target);
    sys::mount(Some(&path), &path, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(|e| StepError::sys("bind readonly path", p, e, ""))?;
    let top = reopen(root, p)?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC;
    remount_keep_locked(&top, flags).map_err(|e| StepError::sys("remount read-only", p, e, ""))
}

/// pivot_root (or MS_MOVE + chroot with --no-pivot), then the read-only root and rootfsPropagation.
pub fn enter(plan: &RootfsPlan, root: OwnedFd) -> Step {
    if plan.no_pivot {
        move_root(&root)?
    } else {
        pivot(&root)?
    }
    drop(root);
    if plan.readonly {
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        let slash = open_root_dir("/")?;
        remount_keep_locked(&slash, flags)
            .map_err(|e| StepError::sys("remount / read-only", "(root.readonly)", e, ""))?;
    }
    if let Some(p) = plan.propagation {
        sys::mount(None, c"/", None, p, None)
            .map_err(|e| StepError::sys("set rootfsPropagation of", "/", e, ""))?;
    }
    Ok(())
}

/// pivot_root(".", "."): the old root ends up stacked on the new one and is then detached
/// (pivot_root(2) NOTES), so no put_old directory is needed in the image.
fn pivot(root: &OwnedFd) -> Step {
    let old = open_root_dir("/")?;
    rustix::process::fchdir(root).map_err(|e| StepError::sys("chdir to", "the rootfs", e, ""))?;
    rustix::process::pivot_root(".", ".")
        .map_err(|e| StepError::sys("pivot_root", "the rootfs", e, "use --no-pivot on ramfs"))?;
    rustix::process::fchdir(&old).map_err(|e| StepError::sys("chdir to", "the old root", e, ""))?;
    // rslave first, so the detach does not propagate to the host's mounts.
    sys::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
        .map_err(|e| StepError::sys("make the old root rslave", ".", e, ""))?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| StepError::sys("unmount", "the old root", e, ""))?;
    rustix::process::chdir("/").map_err(|e| StepError::sys("chdir to", "/", e, ""))
}

fn move_root(root: &OwnedFd) -> Step {
    rustix::process::fchdir(root).map_err(|e| StepError::sys("chdir to", "the rootfs", e, ""))?;
    sys::mount(Some(c"."), c"/", None, libc::MS_MOVE, None)
        .map_err(|e| StepError::sys("move the rootfs to", "/", e, "--no-pivot"))?;
    rustix::process::chroot(".").map_err(|e| StepError::sys("chroot", "the rootfs", e, ""))?;
    rustix::process::chdir("/").map_err(|e| StepError::sys("chdir to", "/", e, ""))
}
