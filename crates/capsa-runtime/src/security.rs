//! The process side of a container's security: capabilities, user and groups, no_new_privs,
//! rlimits, oom_score_adj, sysctls, the fd sweep before exec and the executable lookup.
//!
//! Owns `ProcessPlan` (config.json `process` turned into ready-to-use values before the clone) and
//! the exact capability order. Must not mount anything (`rootfs`) or compile seccomp (`seccomp`).
//!
//! Capability order (`apply_identity`), with the kernel rule behind each step:
//! 1. bounding: PR_CAPBSET_DROP for every cap 0..=cap_last_cap not listed. It needs CAP_SETPCAP
//!    in the effective set (security/commoncap.c cap_prctl_drop), which setuid would clear.
//! 2. PR_SET_KEEPCAPS=1: without it, a setuid from 0 to non-zero clears the permitted set
//!    (capabilities(7), "Effect of user ID changes on capabilities").
//! 3. setgroups, setgid, setuid: groups first, because setgroups and setgid need CAP_SETGID, and
//!    the uid change would drop it from the effective set.
//! 4. PR_SET_KEEPCAPS=0: the flag must not leak into the container (it is reset by execve anyway,
//!    but a later setuid inside the container must behave normally before that).
//! 5. one capset(E, P, I): E must be a subset of the new P, P of the old P, and I of old I|P
//!    and of the bounding set (cap_capset); one call keeps the three consistent.
//! 6. ambient: PR_CAP_AMBIENT_CLEAR_ALL, then RAISE each; a raise needs the cap in both P and I
//!    (cap_prctl ambient rule), so a failure is a warning (runc's behaviour), never an error.
//!
//! I and A are only what the config lists; nothing here fills them (CVE-2022-29162).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};

use capsa_caps::{Cap, CapSet};
use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::init::sys;
use crate::init::{Step, StepError};

/// The five capability sets a process gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapPlan {
    pub bounding: CapSet,
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

/// config.json `process`, converted before the clone.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: CapPlan,
    pub no_new_privs: bool,
    pub terminal: bool,
    pub oom_score_adj: Option<i32>,
    pub rlimits: Vec<(Resource, u64, u64)>,
}

fn cstring(what: &str, s: &str) -> Step<CString> {
    CString::new(s).map_err(|_| StepError::msg(format!("{what} {s:?} contains a NUL byte")))
}

/// OCI capability names to a set. Names were filtered by `spec`; one we still cannot map is a
/// bug there, reported rather than silently dropped.
pub fn cap_set(caps: Option<&Capabilities>) -> Step<CapSet> {
    let mut set = CapSet::EMPTY;
    for c in caps.into_iter().flatten() {
        let name = format!("CAP_{c}");
        let cap = Cap::from_oci_name(&name).ok_or_else(|| {
            StepError::msg(format!("unknown capability {name} in process.capabilities"))
        })?;
        set.insert(cap);
    }
    Ok(set)
}

impl ProcessPlan {
    pub fn new(p: &Process) -> Step<Self> {
        let args: Vec<CString> = p
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| cstring("argument", a))
            .collect::<Step<_>>()?;
        if args.is_empty() {
            return Err(StepError::msg("process.args must not be empty"));
        }
        let env = p
            .env()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|e| cstring("env", e))
            .collect::<Step<_>>()?;
        let caps = match p.capabilities() {
            Some(c) => CapPlan {
                bounding: cap_set(c.bounding().as_ref())?,
                effective: cap_set(c.effective().as_ref())?,
                permitted: cap_set(c.permitted().as_ref())?,
                inheritable: cap_set(c.inheritable().as_ref())?,
                ambient: cap_set(c.ambient().as_ref())?,
            },
            // No capabilities object: runc drops everything.
            None => CapPlan::default(),
        };
        let u = p.user();
        Ok(ProcessPlan {
            args,
            env,
            cwd: cstring("cwd", &p.cwd().to_string_lossy())?,
            uid: u.uid(),
            gid: u.gid(),
            additional_gids: u.additional_gids().clone().unwrap_or_default(),
            umask: u.umask(),
            caps,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            terminal: p.terminal().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
            rlimits: p
                .rlimits()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|r| (resource(r.typ()), r.soft(), r.hard()))
                .collect(),
        })
    }

    /// `PATH` from the process environment (the container's, not ours).
    pub fn path_var(&self) -> Option<&[u8]> {
        self.env
            .iter()
            .find_map(|e| e.to_bytes().strip_prefix(b"PATH="))
    }
}

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::Cpu,
        PosixRlimitType::RlimitFsize => Resource::Fsize,
        PosixRlimitType::RlimitData => Resource::Data,
        PosixRlimitType::RlimitStack => Resource::Stack,
        PosixRlimitType::RlimitCore => Resource::Core,
        PosixRlimitType::RlimitRss => Resource::Rss,
        PosixRlimitType::RlimitNproc => Resource::Nproc,
        PosixRlimitType::RlimitNofile => Resource::Nofile,
        PosixRlimitType::RlimitMemlock => Resource::Memlock,
        PosixRlimitType::RlimitAs => Resource::As,
        PosixRlimitType::RlimitLocks => Resource::Locks,
        PosixRlimitType::RlimitSigpending => Resource::Sigpending,
        PosixRlimitType::RlimitMsgqueue => Resource::Msgqueue,
        PosixRlimitType::RlimitNice => Resource::Nice,
        PosixRlimitType::RlimitRtprio => Resource::Rtprio,
        PosixRlimitType::RlimitRttime => Resource::Rttime,
    }
}

/// setrlimit for each configured limit; u64::MAX is RLIM_INFINITY.
pub fn apply_rlimits(p: &ProcessPlan) -> Step {
    let lim = |v: u64| if v == u64::MAX { None } else { Some(v) };
    for &(res, soft, hard) in &p.rlimits {
        rustix::process::setrlimit(
            res,
            Rlimit {
                current: lim(soft),
                maximum: lim(hard),
            },
        )
        .map_err(|e| {
            StepError::sys(
                "setrlimit",
                format!("{res:?} to {soft}/{hard}"),
                e,
                "raising a hard limit needs CAP_SYS_RESOURCE",
            )
        })?;
    }
    Ok(())
}

/// Write /proc/self/oom_score_adj through the trusted /proc handle.
pub fn apply_oom_score_adj(p: &ProcessPlan, proc: &OwnedFd) -> Step {
    let Some(v) = p.oom_score_adj else {
        return Ok(());
    };
    let fd = rustix::fs::openat(
        proc.as_fd(),
        "self/oom_score_adj",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", "/proc/self/oom_score_adj", e, ""))?;
    rustix::io::write(&fd, v.to_string().as_bytes()).map_err(|e| {
        StepError::sys(
            "write",
            "/proc/self/oom_score_adj",
            e,
            "lowering it needs CAP_SYS_RESOURCE",
        )
    })?;
    Ok(())
}

/// Write `linux.sysctl` through the trusted /proc handle. /proc/sys/net (and the ipc/uts keys)
/// resolve against the writer's namespaces at lookup (proc_sys_lookup), so this runs after the
/// namespaces are set up and applies to the container's.
pub fn write_sysctls(sysctls: &[(String, String)], proc: &OwnedFd) -> Step {
    for (key, value) in sysctls {
        let rel = sysctl_path(key)?;
        let show = format!("/proc/{rel}");
        let fd = rustix::fs::openat(
            proc.as_fd(),
            rel.as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            StepError::sys("open sysctl", &show, e, "is the key right, and namespaced?")
        })?;
        rustix::io::write(&fd, value.as_bytes())
            .map_err(|e| StepError::sys("write sysctl", &show, e, ""))?;
    }
    Ok(())
}

/// `net.ipv4.ip_forward` → `sys/net/ipv4/ip_forward`; refuses `..` and `/` tricks.
pub fn sysctl_path(key: &str) -> Step<String> {
    if key.is_empty()
        || key
            .split('.')
            .any(|c| c.is_empty() || c == ".." || c.contains('/'))
    {
        return Err(StepError::msg(format!("invalid sysctl key {key:?}")));
    }
    Ok(format!("sys/{}", key.replace('.', "/")))
}

pub fn set_no_new_privs() -> Step {
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| StepError::sys("set", "PR_SET_NO_NEW_PRIVS", e, ""))
}

/// CVE-2024-21626: every fd from 3+preserve_fds on is close-on-exec (so no host fd reaches the
/// container process), and the preserved fds 3..3+N are not.
pub fn close_fds_on_exec(preserve_fds: u32) -> Step {
    sys::cloexec_from(3 + preserve_fds)
        .map_err(|e| StepError::sys("close_range", "fds >= 3", e, "kernel >= 5.11?"))?;
    for fd in 3..3 + preserve_fds as i32 {
        sys::clear_cloexec(fd)
            .map_err(|e| StepError::sys("keep", format!("preserved fd {fd}"), e, "is it open?"))?;
    }
    Ok(())
}

pub fn chdir(cwd: &CStr) -> Step {
    rustix::process::chdir(cwd).map_err(|e| {
        StepError::sys(
            "chdir to",
            cwd.to_string_lossy(),
            e,
            "does process.cwd exist in the rootfs?",
        )
    })
}

/// CVE-2024-21626: after chdir the cwd must be inside our root; getcwd(2) prefixes
/// "(unreachable)" when it is not.
pub fn verify_cwd(cwd: &CStr) -> Step {
    let got = rustix::process::getcwd(Vec::new())
        .map_err(|e| StepError::sys("getcwd", "after chdir", e, ""))?;
    if !got.to_bytes().starts_with(b"/") {
        return Err(StepError::msg(format!(
            "current working directory {} is outside the container root (possible fd leak; CVE-2024-21626)",
            cwd.to_string_lossy()
        )));
    }
    Ok(())
}

/// The executable: args[0] if it has a `/`, else the first executable regular file in the
/// container's `PATH` (runc uses Go's LookPath, with this error text).
pub fn look_path(p: &ProcessPlan) -> Step<CString> {
    let arg0 = &p.args[0];
    if arg0.to_bytes().contains(&b'/') {
        return Ok(arg0.clone());
    }
    for dir in p.path_var().unwrap_or_default().split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let mut cand = dir.to_vec();
        cand.push(b'/');
        cand.extend_from_slice(arg0.to_bytes());
        let Ok(c) = CString::new(cand) else { continue };
        let is_file = rustix::fs::stat(c.as_c_str())
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
        if is_file && rustix::fs::access(c.as_c_str(), rustix::fs::Access::EXEC_OK).is_ok() {
            return Ok(c);
        }
    }
    Err(StepError::msg(format!(
        "exec: \"{}\": executable file not found in $PATH",
        arg0.to_string_lossy()
    )))
}

/// Bounding set, user and groups, then E/P/I and ambient, in the order of the module comment.
pub fn apply_identity(p: &ProcessPlan) -> Step {
    drop_bounding(p.caps.bounding)?;
    rustix::thread::set_keep_capabilities(true)
        .map_err(|e| StepError::sys("set", "PR_SET_KEEPCAPS=1", e, ""))?;
    set_user(p)?;
    rustix::thread::set_keep_capabilities(false)
        .map_err(|e| StepError::sys("set", "PR_SET_KEEPCAPS=0", e, ""))?;
    set_caps(&p.caps)?;
    raise_ambient(p.caps.ambient);
    if let Some(m) = p.umask {
        rustix::process::umask(Mode::from_raw_mode(m));
    } else {
        rustix::process::umask(Mode::from_raw_mode(0o022));
    }
    Ok(())
}

/// Step 1: drop every capability not in `keep`, 0..=cap_last_cap (EINVAL marks the end).
fn drop_bounding(keep: CapSet) -> Step {
    for n in 0u8..64 {
        let Some(cap) = Cap::from_index(n) else { break };
        if keep.contains(cap) {
            continue;
        }
        match sys::capbset_drop(n) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => {
                return Err(StepError::sys(
                    "drop from the bounding set",
                    cap,
                    e,
                    "needs CAP_SETPCAP",
                ));
            }
        }
    }
    Ok(())
}

/// Step 3: supplementary groups, gid, uid (all three ids each, as setres*id).
fn set_user(p: &ProcessPlan) -> Step {
    let groups: Vec<rustix::process::Gid> = p
        .additional_gids
        .iter()
        .map(|&g| rustix::process::Gid::from_raw(g))
        .collect();
    match rustix::thread::set_thread_groups(&groups) {
        Ok(()) => {}
        // In a user namespace whose setgroups is "deny" (user_namespaces(7)) runc skips it too.
        Err(rustix::io::Errno::PERM) if groups.is_empty() || setgroups_denied() => {}
        Err(e) => {
            return Err(StepError::sys(
                "setgroups",
                format!("{:?}", p.additional_gids),
                e,
                "are the gids mapped?",
            ));
        }
    }
    let g = rustix::process::Gid::from_raw(p.gid);
    rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| {
        StepError::sys(
            "setgid",
            p.gid,
            e,
            "is the gid mapped in the user namespace?",
        )
    })?;
    let u = rustix::process::Uid::from_raw(p.uid);
    rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| {
        StepError::sys(
            "setuid",
            p.uid,
            e,
            "is the uid mapped in the user namespace?",
        )
    })?;
    Ok(())
}

fn setgroups_denied() -> bool {
    std::fs::read("/proc/self/setgroups").is_ok_and(|t| t.starts_with(b"deny"))
}

/// Step 5: one capset for E, P and I.
fn set_caps(c: &CapPlan) -> Step {
    let bits = |s: CapSet| CapabilitySet::from_bits_retain(s.bits());
    let sets = CapabilitySets {
        effective: bits(c.effective),
        permitted: bits(c.permitted),
        inheritable: bits(c.inheritable),
    };
    rustix::thread::set_capabilities(None, sets).map_err(|e| {
        StepError::sys(
            "capset",
            format!(
                "E={:#x} P={:#x} I={:#x}",
                c.effective.bits(),
                c.permitted.bits(),
                c.inheritable.bits()
            ),
            e,
            "effective must be a subset of permitted",
        )
    })
}

/// Step 6: ambient, one raise per cap; failures are warnings.
fn raise_ambient(ambient: CapSet) {
    if let Err(e) = rustix::thread::clear_ambient_capability_set() {
        tracing::warn!("cannot clear the ambient capability set: {e}");
    }
    for cap in ambient.iter() {
        let one = CapabilitySet::from_bits_retain(1u64 << cap.index());
        if let Err(e) = rustix::thread::configure_capability_in_ambient_set(one, true) {
            tracing::warn!(
                "cannot raise ambient {cap}: {e} (it must be in permitted and inheritable)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn caps_convert_by_name() {
        let p = process(
            r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},
                "capabilities":{"bounding":["CAP_CHOWN","CAP_NET_BIND_SERVICE","CAP_SYS_ADMIN"],
                "effective":["CAP_CHOWN"],"permitted":["CAP_CHOWN"]}}"#,
        );
        let plan = ProcessPlan::new(&p).unwrap();
        assert_eq!(plan.caps.bounding.bits(), (1 << 0) | (1 << 10) | (1 << 21));
        assert_eq!(plan.caps.effective.bits(), 1);
        assert!(plan.caps.inheritable.is_empty() && plan.caps.ambient.is_empty());
    }

    #[test]
    fn missing_capabilities_mean_none() {
        let plan = ProcessPlan::new(&process(
            r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#,
        ))
        .unwrap();
        assert_eq!(plan.caps, CapPlan::default());
    }

    #[test]
    fn empty_args_rejected() {
        assert!(
            ProcessPlan::new(&process(
                r#"{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            "sys/net/ipv4/ip_forward"
        );
        assert!(sysctl_path("net..x").is_err());
        assert!(sysctl_path("net/../../x").is_err());
    }

    #[test]
    fn path_var_comes_from_process_env() {
        let p = process(
            r#"{"cwd":"/","args":["sh"],"env":["A=1","PATH=/bin:/sbin"],"user":{"uid":0,"gid":0}}"#,
        );
        assert_eq!(
            ProcessPlan::new(&p).unwrap().path_var(),
            Some(&b"/bin:/sbin"[..])
        );
    }
}
