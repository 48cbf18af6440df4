//! The rootfs and bind mounts of a container that has its own user namespace.
//!
//! Owns: where the root comes from (`RootSource`: a plain bind, an idmapped clone of root.path,
//! or an overlay assembled inside the user namespace from idmapped layers), the detached mounts
//! the runtime makes on the host before the clone (`Detached`), and the init's steps that attach
//! them (`attach_early` before it becomes root in its namespace, `mount_overlay` after).
//! Must not touch credentials (the init's `enter_new_userns_as_root` does) or other mounts.
//!
//! Why this order. The init is cloned into the new user namespace with the host credentials of
//! the runtime (kuid 0), only mapped to nothing; until it switches to the mapped root it still
//! passes owner permission checks on the host's root-owned 0700 directories (the state and store
//! roots). Capabilities in its own namespace do not help there (capable_wrt_inode_uidgid needs the
//! inode's owner to be mapped). So every host path is looked up before the switch, and every bind
//! source is a detached clone made by the runtime on the host. The overlay itself must be mounted
//! after the switch: overlayfs writes to the upper layer with its mounter's credentials, and
//! kuid 0 cannot be written through an idmapped upper layer (EOVERFLOW).
//!
//! Interface (annotations on config.json, set by capsa's front end; runc ignores them):
//! - `org.capsa.rootfs.idmap: "true"`: idmap root.path with linux.uidMappings/gidMappings.
//! - `org.capsa.rootfs.overlay: {"lower":[dirs, top first],"upper":dir,"work":dir}`: mount an
//!   overlay of those dirs on root.path inside the user namespace, each layer idmapped.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

use super::MountPlan;
use crate::idmap::{self, UsernsCache};
use crate::init::{Step, StepError, sys};

/// Annotation asking for an idmapped rootfs directory.
pub const ANNOTATION_IDMAP: &str = "org.capsa.rootfs.idmap";
/// Annotation carrying the overlay layers of the rootfs.
pub const ANNOTATION_OVERLAY: &str = "org.capsa.rootfs.overlay";

/// The layers of an overlay rootfs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct OverlayLayers {
    /// Lower dirs, uppermost first (overlayfs.rst).
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// Where the container's root comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RootSource {
    /// root.path bind-mounted on itself (no idmapping).
    #[default]
    Bind,
    /// An idmapped clone of root.path.
    Idmapped,
    /// An overlay of idmapped layers, mounted inside the user namespace.
    Overlay(OverlayLayers),
}

/// The rootfs source asked for by the annotations.
pub fn root_source(spec: &Spec, userns: bool) -> Step<RootSource> {
    let ann = spec.annotations().as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
    let source = if let Some(json) = get(ANNOTATION_OVERLAY) {
        let layers: OverlayLayers = serde_json::from_str(json)
            .map_err(|e| StepError::msg(format!("invalid annotation {ANNOTATION_OVERLAY}: {e}")))?;
        if layers.lower.is_empty() || layers.upper.parent() != layers.work.parent() {
            return Err(StepError::msg(format!(
                "invalid annotation {ANNOTATION_OVERLAY}: it needs at least one lower dir, and \
                 upper and work must share a parent directory (overlayfs wants them on one mount)"
            )));
        }
        RootSource::Overlay(layers)
    } else if get(ANNOTATION_IDMAP) == Some("true") {
        RootSource::Idmapped
    } else {
        RootSource::Bind
    };
    if source != RootSource::Bind && !userns {
        return Err(StepError::msg(
            "an idmapped rootfs needs a user namespace (linux.namespaces type user with uidMappings)",
        ));
    }
    Ok(source)
}

/// Detached mounts made by the runtime on the host before the clone; the init inherits the fds.
#[derive(Default)]
pub struct Detached {
    /// `RootSource::Idmapped`: the idmapped clone of root.path.
    pub root: Option<OwnedFd>,
    /// `RootSource::Overlay`: idmapped clones of each lower dir and of the upper/work parent,
    /// attached over their own host paths in the init's mount namespace.
    pub layers: Vec<(CString, OwnedFd)>,
    /// Per config mount (same index): the detached clone of a bind source.
    pub binds: Vec<Option<OwnedFd>>,
}

/// Make the detached mounts (runtime side, host credentials). `maps` are the container's
/// uid_map/gid_map texts; empty when the user namespace is joined rather than created.
pub fn detach_sources(
    root: &RootSource,
    rootfs: &Path,
    mounts: &[MountPlan],
    maps: (&str, &str),
) -> Step<Detached> {
    let mut cache = UsernsCache::default();
    let mut out = Detached::default();
    let need_maps = |what: &str| {
        if maps.0.is_empty() {
            Err(StepError::msg(format!(
                "{what} needs linux.uidMappings and linux.gidMappings (the user namespace must be created, not joined)"
            )))
        } else {
            Ok(())
        }
    };
    match root {
        RootSource::Bind => {}
        RootSource::Idmapped => {
            need_maps("an idmapped rootfs")?;
            let ns = cache.get(maps.0, maps.1)?;
            out.root = Some(idmap::idmapped_clone(rootfs, ns, true)?);
        }
        RootSource::Overlay(l) => {
            need_maps("an overlay rootfs")?;
            let ns = cache.get(maps.0, maps.1)?;
            let top = l.upper.parent().unwrap_or(Path::new("/"));
            for dir in l.lower.iter().map(PathBuf::as_path).chain([top]) {
                let fd = idmap::idmapped_clone(dir, ns, false)?;
                out.layers.push((super::cpath(dir)?, fd));
            }
        }
    }
    for m in mounts {
        out.binds.push(detach_bind(m, maps, &mut cache)?);
    }
    Ok(out)
}

fn detach_bind(
    m: &MountPlan,
    maps: (&str, &str),
    cache: &mut UsernsCache,
) -> Step<Option<OwnedFd>> {
    if !m.opts.is_bind() {
        return Ok(None);
    }
    let path = Path::new(std::ffi::OsStr::from_bytes(m.source.as_bytes()));
    let recursive = m.opts.flags & libc::MS_REC != 0;
    let Some(ridmap) = m.opts.idmap.or(m.idmap.as_ref().map(|_| false)) else {
        return idmap::clone_tree(path, recursive).map(Some);
    };
    let (u, g) = match &m.idmap {
        Some((u, g)) => (u.as_str(), g.as_str()),
        None if !maps.0.is_empty() => maps,
        None => {
            return Err(StepError::msg(format!(
                "mount {}: \"idmap\" without uidMappings needs the container's linux.uidMappings",
                m.dest
            )));
        }
    };
    let ns = cache.get(u, g)?;
    idmap::idmapped_clone(path, ns, ridmap || recursive).map(Some)
}

/// What `attach_early` leaves for the steps after the switch to the mapped root.
pub enum Early {
    /// The root mount is in place: its O_PATH fd.
    Root(OwnedFd),
    /// The overlay still has to be mounted (as the mapped root) on `target` from these layers.
    Overlay {
        target: OwnedFd,
        lower: Vec<OwnedFd>,
        upper: OwnedFd,
        work: OwnedFd,
    },
}

fn open_path(path: &std::ffi::CStr) -> Step<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", path.to_string_lossy(), e, ""))
}

fn attach(fd: &OwnedFd, path: &std::ffi::CStr) -> Step {
    rustix::mount::move_mount(
        fd,
        c"",
        rustix::fs::CWD,
        path,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| {
        StepError::sys(
            "attach (move_mount) the idmapped mount on",
            path.to_string_lossy(),
            e,
            "",
        )
    })
}

/// Init side, still with the host credentials: attach the idmapped clones and open every host
/// path the later steps need.
pub fn attach_early(source: &RootSource, rootfs: &CString, d: &Detached) -> Step<Early> {
    match source {
        RootSource::Bind => {
            // pivot_root needs new_root to be a mount point (pivot_root(2)).
            sys::mount(
                Some(rootfs),
                rootfs,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(|e| {
                StepError::sys(
                    "bind the rootfs",
                    rootfs.to_string_lossy(),
                    e,
                    "does root.path exist?",
                )
            })?;
            Ok(Early::Root(open_path(rootfs)?))
        }
        RootSource::Idmapped => {
            let fd = d
                .root
                .as_ref()
                .ok_or_else(|| StepError::msg("the idmapped rootfs was not prepared"))?;
            attach(fd, rootfs)?;
            Ok(Early::Root(open_path(rootfs)?))
        }
        RootSource::Overlay(l) => {
            for (path, fd) in &d.layers {
                attach(fd, path)?;
            }
            let lower = l
                .lower
                .iter()
                .map(|p| open_path(&super::cpath(p)?))
                .collect::<Step<Vec<_>>>()?;
            Ok(Early::Overlay {
                target: open_path(rootfs)?,
                lower,
                upper: open_path(&super::cpath(&l.upper)?)?,
                work: open_path(&super::cpath(&l.work)?)?,
            })
        }
    }
}

/// Init side, as the mapped root: mount the overlay (if any) and return the root's O_PATH fd.
pub fn finish_root(early: Early) -> Step<OwnedFd> {
    let (target, lower, upper, work) = match early {
        Early::Root(fd) => return Ok(fd),
        Early::Overlay {
            target,
            lower,
            upper,
            work,
        } => (target, lower, upper, work),
    };
    let err = |call: &str, e| {
        StepError::sys(
            call,
            "the overlay rootfs",
            e,
            "overlayfs in a user namespace with idmapped layers needs Linux >= 6.13 (layers by fd)",
        )
    };
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| err("fsopen overlay", e))?;
    // userxattr: trusted.* xattrs are out of reach in a user namespace (overlayfs.rst).
    rustix::mount::fsconfig_set_flag(&fs, "userxattr").map_err(|e| err("fsconfig userxattr", e))?;
    for l in &lower {
        rustix::mount::fsconfig_set_fd(&fs, "lowerdir+", l)
            .map_err(|e| err("fsconfig lowerdir+", e))?;
    }
    rustix::mount::fsconfig_set_fd(&fs, "upperdir", &upper)
        .map_err(|e| err("fsconfig upperdir", e))?;
    rustix::mount::fsconfig_set_fd(&fs, "workdir", &work)
        .map_err(|e| err("fsconfig workdir", e))?;
    rustix::mount::fsconfig_create(&fs).map_err(|e| err("fsconfig create", e))?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| err("fsmount", e))?;
    rustix::mount::move_mount(
        &mnt,
        c"",
        &target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| err("move_mount", e))?;
    rustix::fs::openat(
        &mnt,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", "the overlay rootfs", e, ""))
}

/// Attach a detached bind source on `target` (an O_PATH fd inside the root).
pub fn attach_bind(src: &OwnedFd, target: &OwnedFd, dest: &str) -> Step {
    rustix::mount::move_mount(
        src,
        c"",
        target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| StepError::sys("attach (move_mount) the bind mount on", dest, e, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ann: &[(&str, &str)]) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(
            ann.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        s
    }

    #[test]
    fn annotations_choose_the_source() {
        assert_eq!(root_source(&spec(&[]), false).unwrap(), RootSource::Bind);
        assert_eq!(
            root_source(&spec(&[(ANNOTATION_IDMAP, "true")]), true).unwrap(),
            RootSource::Idmapped
        );
        let j = r#"{"lower":["/l2","/l1"],"upper":"/c/upper","work":"/c/work"}"#;
        match root_source(&spec(&[(ANNOTATION_OVERLAY, j)]), true).unwrap() {
            RootSource::Overlay(l) => assert_eq!(l.lower.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn idmap_without_userns_is_an_error() {
        let e = root_source(&spec(&[(ANNOTATION_IDMAP, "true")]), false).unwrap_err();
        assert!(e.0.contains("needs a user namespace"), "{e}");
        let bad = r#"{"lower":[],"upper":"/a/upper","work":"/b/work"}"#;
        assert!(root_source(&spec(&[(ANNOTATION_OVERLAY, bad)]), true).is_err());
    }
}
