//! `cgroup` mounts: cgroup2 on a unified host; on v1/hybrid hosts a tmpfs with one mount per host
//! hierarchy (and the host's alias symlinks such as `cpu -> cpu,cpuacct`), as runc lays it out.
//!
//! Owns only the container's view of /sys/fs/cgroup. Must not create or write cgroups
//! (`cgroups` does). Inside a new cgroup namespace each hierarchy shows the container's subtree.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::{MountPlan, RootfsPlan, reopen, resolve::fd_path};
use crate::init::{Step, StepError, sys};

/// One host hierarchy under /sys/fs/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// A mounted hierarchy: directory name ("" for /sys/fs/cgroup itself), fs type, options.
    Mount {
        name: String,
        fstype: String,
        options: String,
    },
    /// An alias symlink: name -> target.
    Link { name: String, target: String },
}

/// Read the host's hierarchies (mountinfo and the alias symlinks).
pub fn host_hierarchies() -> Vec<Hierarchy> {
    let mut out = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in dir.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                out.push(Hierarchy::Link {
                    name: e.file_name().to_string_lossy().into(),
                    target: t.to_string_lossy().into(),
                });
            }
        }
    }
    out
}

/// The cgroup/cgroup2 mounts at or directly under /sys/fs/cgroup, with their kernel options.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or("");
        let mut r = right.split(' ');
        let (fstype, _src, sopts) = (r.next().unwrap_or(""), r.next(), r.next().unwrap_or(""));
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let name = match mount_point.strip_prefix("/sys/fs/cgroup") {
            Some("") => String::new(),
            Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => {
                rest[1..].to_string()
            }
            _ => continue,
        };
        // Keep only what selects the hierarchy (controllers, name=), not rw/ro.
        let options = sopts
            .split(',')
            .filter(|o| *o != "rw" && *o != "ro")
            .collect::<Vec<_>>()
            .join(",");
        out.push(Hierarchy::Mount {
            name,
            fstype: fstype.to_string(),
            options,
        });
    }
    out
}

/// Mount the container's /sys/fs/cgroup view on `target`.
pub fn mount(root: &OwnedFd, target: &OwnedFd, m: &MountPlan, plan: &RootfsPlan) -> Step {
    let flags = m.opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    let unified = plan
        .cgroup_hierarchies
        .iter()
        .any(|h| matches!(h, Hierarchy::Mount { name, .. } if name.is_empty()));
    if unified {
        return sys::mount(
            Some(c"cgroup2"),
            &fd_path(target),
            Some(c"cgroup2"),
            flags,
            None,
        )
        .map_err(|e| {
            StepError::sys(
                "mount cgroup2 on",
                &m.dest,
                e,
                "is there a cgroup namespace?",
            )
        });
    }
    let tmpfs_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount(
        Some(c"tmpfs"),
        &fd_path(target),
        Some(c"tmpfs"),
        tmpfs_flags,
        Some(c"mode=755"),
    )
    .map_err(|e| StepError::sys("mount tmpfs on", &m.dest, e, ""))?;
    let top = reopen(root, &m.dest)?;
    let dir = rustix::fs::openat(
        &top,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", &m.dest, e, ""))?;
    for h in &plan.cgroup_hierarchies {
        mount_hierarchy(&dir, h, flags, &m.dest)?;
    }
    if flags & libc::MS_RDONLY != 0 {
        sys::mount(
            None,
            &fd_path(&top),
            None,
            (libc::MS_REMOUNT | libc::MS_BIND) | tmpfs_flags | flags,
            None,
        )
        .map_err(|e| StepError::sys("remount read-only", &m.dest, e, ""))?;
    }
    Ok(())
}

fn mount_hierarchy(dir: &OwnedFd, h: &Hierarchy, flags: u64, dest: &str) -> Step {
    match h {
        Hierarchy::Link { name, target } => {
            match rustix::fs::symlinkat(target.as_str(), dir, name.as_str()) {
                Ok(()) | Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(StepError::sys("symlink", format!("{dest}/{name}"), e, "")),
            }
        }
        Hierarchy::Mount {
            name,
            fstype,
            options,
        } => {
            let show = format!("{dest}/{name}");
            match rustix::fs::mkdirat(dir, name.as_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(StepError::sys("mkdir", &show, e, "")),
            }
            let sub = rustix::fs::openat(
                dir,
                name.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| StepError::sys("open", &show, e, ""))?;
            let fs = CString::new(fstype.as_bytes()).unwrap_or_default();
            let data = CString::new(options.as_bytes()).unwrap_or_default();
            let data = if options.is_empty() {
                None
            } else {
                Some(data.as_c_str())
            };
            sys::mount(Some(&fs), &fd_path(&sub), Some(&fs), flags, data).map_err(|e| {
                StepError::sys(
                    &format!("mount {fstype}"),
                    format!("on {show}"),
                    e,
                    "is there a cgroup namespace?",
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_mountinfo() {
        let t = "35 24 0:30 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
                 36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n\
                 39 35 0:34 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct\n\
                 40 24 0:35 / /mnt/other rw - cgroup cgroup rw,pids\n";
        let h = parse_mountinfo(t);
        assert_eq!(
            h,
            vec![
                Hierarchy::Mount {
                    name: "unified".into(),
                    fstype: "cgroup2".into(),
                    options: "nsdelegate".into()
                },
                Hierarchy::Mount {
                    name: "cpu,cpuacct".into(),
                    fstype: "cgroup".into(),
                    options: "cpu,cpuacct".into()
                },
            ]
        );
    }
}
