//! /dev inside the container: device nodes (config + runc's defaults), the standard symlinks and
//! /dev/ptmx → pts/ptmx.
//!
//! Owns the default device list. Must not mount anything but device bind mounts (user
//! namespaces cannot mknod, so the host node is bound instead, as runc does).

use std::os::fd::OwnedFd;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::resolve::{self, fd_path};
use crate::init::{Step, StepError, sys};

/// One device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    /// Path inside the container, absolute (`/dev/null`).
    pub path: String,
    pub char: bool,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// runc's default devices (specconv AllowedDevices with a path): added unless the config lists
/// the same path.
const DEFAULTS: &[(&str, u32, u32)] = &[
    ("/dev/null", 1, 3),
    ("/dev/random", 1, 8),
    ("/dev/full", 1, 7),
    ("/dev/tty", 5, 0),
    ("/dev/zero", 1, 5),
    ("/dev/urandom", 1, 9),
];

/// Config devices first, then the defaults not already listed.
pub fn plan(devices: &[LinuxDevice]) -> Step<Vec<DevicePlan>> {
    let mut out = Vec::with_capacity(devices.len() + DEFAULTS.len());
    for d in devices {
        let char = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => true,
            LinuxDeviceType::B => false,
            other => {
                return Err(StepError::msg(format!(
                    "device {}: type {other:?} cannot be created",
                    d.path().display()
                )));
            }
        };
        out.push(DevicePlan {
            path: d.path().to_string_lossy().into_owned(),
            char,
            major: d.major() as u32,
            minor: d.minor() as u32,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    for &(path, major, minor) in DEFAULTS {
        if !out.iter().any(|d| d.path == path) {
            out.push(DevicePlan {
                path: path.into(),
                char: true,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            });
        }
    }
    Ok(out)
}

/// Create every device; in a user namespace bind the host's node instead of mknod.
pub fn create_all(root: &OwnedFd, devices: &[DevicePlan], userns: bool) -> Step {
    for d in devices {
        if !d.path.starts_with("/dev/") {
            return Err(StepError::msg(format!(
                "device path {} is not under /dev",
                d.path
            )));
        }
        if userns {
            bind_host_device(root, d)?
        } else {
            make_node(root, d)?
        }
    }
    Ok(())
}

fn make_node(root: &OwnedFd, d: &DevicePlan) -> Step {
    let rel = resolve::relative(&d.path);
    let (dir, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    let parent = resolve::ensure_dir(root, dir)?;
    let kind = if d.char {
        FileType::CharacterDevice
    } else {
        FileType::BlockDevice
    };
    let dev = rustix::fs::makedev(d.major, d.minor);
    match rustix::fs::mknodat(&parent, name, kind, Mode::from_raw_mode(d.mode), dev) {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(()),
        Err(e) => {
            return Err(StepError::sys(
                "mknod",
                &d.path,
                e,
                "is the container in a user namespace?",
            ));
        }
    }
    rustix::fs::chownat(
        &parent,
        name,
        Some(rustix::process::Uid::from_raw(d.uid)),
        Some(rustix::process::Gid::from_raw(d.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| StepError::sys("chown", &d.path, e, ""))
}

fn bind_host_device(root: &OwnedFd, d: &DevicePlan) -> Step {
    let target = resolve::ensure_file(root, &d.path)?;
    let src = std::ffi::CString::new(d.path.as_bytes())
        .map_err(|_| StepError::msg("device path contains NUL"))?;
    sys::mount(Some(&src), &fd_path(&target), None, libc::MS_BIND, None)
        .map_err(|e| StepError::sys("bind host device", &d.path, e, "does it exist on the host?"))
}

/// /dev/fd, stdin, stdout, stderr, (core), and /dev/ptmx → pts/ptmx (runc's setupDevSymlinks
/// and setupPtmx). Existing entries are kept, except ptmx which must point into our devpts.
pub fn symlinks(root: &OwnedFd, with_core: bool) -> Step {
    let dev = resolve::open_in_root(root, "/dev", OFlags::DIRECTORY | OFlags::NOFOLLOW)
        .map_err(|e| StepError::sys("open", "/dev", e, "a symlinked /dev is refused"))?;
    let dev = rustix::fs::openat(
        &dev,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", "/dev", e, ""))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if with_core {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(StepError::sys("symlink", format!("/dev/{name}"), e, "")),
        }
    }
    match rustix::fs::unlinkat(&dev, "ptmx", rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(StepError::sys("remove", "/dev/ptmx", e, "")),
    }
    rustix::fs::symlinkat("pts/ptmx", &dev, "ptmx")
        .map_err(|e| StepError::sys("symlink", "/dev/ptmx", e, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_added_unless_listed() {
        let d: LinuxDevice = serde_json::from_str(
            r#"{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":438}"#,
        )
        .unwrap();
        let p = plan(&[d]).unwrap();
        assert_eq!(p.len(), 6);
        assert_eq!(p.iter().filter(|d| d.path == "/dev/null").count(), 1);
        assert!(
            p.iter()
                .any(|d| d.path == "/dev/tty" && (d.major, d.minor) == (5, 0))
        );
    }
}
