//! Which namespaces a container process creates or joins, and the uid/gid maps.
//!
//! Owns: turning `linux.namespaces` into clone/unshare flags and setns fds (opened in the parent,
//! before the clone), the setns order, and writing `/proc/<pid>/{uid,gid}_map`.
//! Must not touch mounts or credentials beyond the maps.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use rustix::fs::{Mode, OFlags};

use super::{Step, StepError};

/// The namespaces to create and to join.
pub struct NsPlan {
    /// CLONE_NEW* flags of namespaces created fresh.
    pub new_flags: u64,
    /// Namespaces joined with setns, in the order they must be joined (user first: joining the
    /// others needs CAP_SYS_ADMIN in the user namespace that owns them; mount last, because
    /// setns(CLONE_NEWNS) changes our root and later paths would resolve in the container).
    pub joins: Vec<(LinuxNamespaceType, PathBuf, OwnedFd)>,
    /// Uid/gid map file contents, when a user namespace is created.
    pub uid_map: String,
    pub gid_map: String,
    /// A new cgroup namespace is made by the init itself after it joined its cgroups (not in
    /// `new_flags`): cgroup_namespaces(7) roots the namespace at the creator's cgroup at that
    /// moment, and the container must see its own cgroup as `/` (runc unshares it after the
    /// join too).
    pub cgroup_ns_after_join: bool,
}

/// The kernel CLONE_NEW* flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> u64 {
    (match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }) as u64
}

/// The `/proc/<pid>/ns/` file name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// setns order: user first, mount last (see `NsPlan::joins`).
fn join_rank(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 9,
        _ => 5,
    }
}

fn open_ns(path: &Path) -> Step<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        StepError::sys(
            "open namespace",
            path.display(),
            e,
            "does the namespace path exist?",
        )
    })
}

/// The plan for a new container: fresh namespaces plus the ones joined by `path`.
pub fn plan_create(spec: &Spec) -> Step<NsPlan> {
    let linux = spec.linux().as_ref();
    let mut plan = NsPlan {
        new_flags: 0,
        joins: Vec::new(),
        uid_map: String::new(),
        gid_map: String::new(),
        cgroup_ns_after_join: false,
    };
    for ns in linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        match ns.path() {
            Some(p) => plan.joins.push((ns.typ(), p.clone(), open_ns(p)?)),
            None => plan.new_flags |= clone_flag(ns.typ()),
        }
    }
    plan.joins.sort_by_key(|(t, _, _)| join_rank(*t));
    let cgroup = libc::CLONE_NEWCGROUP as u64;
    plan.cgroup_ns_after_join = plan.new_flags & cgroup != 0;
    plan.new_flags &= !cgroup;
    if plan.new_flags & libc::CLONE_NEWUSER as u64 != 0 {
        let l = linux.ok_or_else(|| StepError::msg("a user namespace needs linux.uidMappings"))?;
        plan.uid_map = map_text(l.uid_mappings().as_deref().unwrap_or_default());
        plan.gid_map = map_text(l.gid_mappings().as_deref().unwrap_or_default());
    }
    Ok(plan)
}

/// The plan for `exec`: join every namespace of the running init that differs from ours.
pub fn plan_tenant(spec: &Spec, init_pid: i32) -> Step<NsPlan> {
    let mut plan = NsPlan {
        new_flags: 0,
        joins: Vec::new(),
        uid_map: String::new(),
        gid_map: String::new(),
        cgroup_ns_after_join: false,
    };
    let listed = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    for ns in listed.into_iter().flatten() {
        let name = proc_name(ns.typ());
        let theirs = PathBuf::from(format!("/proc/{init_pid}/ns/{name}"));
        let fd = open_ns(&theirs)?;
        let ours = rustix::fs::stat(format!("/proc/self/ns/{name}").as_str())
            .map_err(|e| StepError::sys("stat", format!("/proc/self/ns/{name}"), e, ""))?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| StepError::sys("stat", theirs.display(), e, ""))?;
        // Joining our own user namespace is EINVAL (setns(2)); skipping equal ones also saves syscalls.
        if (st.st_dev, st.st_ino) != (ours.st_dev, ours.st_ino) {
            plan.joins.push((ns.typ(), theirs, fd));
        }
    }
    plan.joins.sort_by_key(|(t, _, _)| join_rank(*t));
    Ok(plan)
}

/// `container host size` lines, as /proc/<pid>/uid_map wants them (one write, user_namespaces(7)).
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write the maps of `pid` (run by the parent, which holds CAP_SETUID/CAP_SETGID in the parent
/// user namespace). `setgroups` is set to `deny` only when the writer lacks CAP_SETGID there
/// (not root): the kernel refuses such a writer's gid_map otherwise (user_namespaces(7),
/// "Interaction with system calls changing process GIDs"); root keeps setgroups usable.
pub fn write_maps(pid: i32, plan: &NsPlan) -> Step {
    if !plan.gid_map.is_empty() && !rustix::process::geteuid().is_root() {
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, b"deny").map_err(|e| {
            let errno = rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO);
            StepError::sys("write", &path, errno, "Linux >= 3.19")
        })?;
    }
    for (file, text) in [("uid_map", &plan.uid_map), ("gid_map", &plan.gid_map)] {
        if text.is_empty() {
            continue;
        }
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text.as_bytes()).map_err(|e| {
            let errno = rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO);
            StepError::sys(
                "write",
                &path,
                errno,
                "are the host ids in the mapping valid?",
            )
        })?;
    }
    Ok(())
}

/// Join the planned namespaces (in the child).
pub fn join_all(plan: &NsPlan) -> Step {
    for (t, path, fd) in &plan.joins {
        rustix::thread::move_into_link_name_space(fd.as_fd(), None).map_err(|e| {
            StepError::sys(
                &format!("join {} namespace", proc_name(*t)),
                path.display(),
                e,
                "setns(2)",
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_one_line_each() {
        let m: LinuxIdMapping =
            serde_json::from_str(r#"{"containerID":0,"hostID":100000,"size":65536}"#).unwrap();
        assert_eq!(map_text(&[m, m]), "0 100000 65536\n0 100000 65536\n");
    }

    #[test]
    fn user_first_mount_last() {
        let mut v = [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::User,
        ];
        v.sort_by_key(|t| join_rank(*t));
        assert_eq!(
            v,
            [
                LinuxNamespaceType::User,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Mount
            ]
        );
    }
}
