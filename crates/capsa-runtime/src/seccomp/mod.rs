//! seccomp: `linux.seccomp` from config.json compiled into a classic BPF program in the
//! runtime process (before the fork), and loaded by the container init with one raw
//! seccomp(2) call, which is async-signal-safe.
//!
//! Owns: the translation of OCI seccomp to libseccomp, the exported program, the on-disk cache
//! of programs (`cache`) and Docker's default profile (`docker`). Must not decide *when* the
//! filter is loaded (the init's `security` step does, after capabilities and no_new_privs).

mod cache;
mod docker;

use std::io::Read;
use std::os::fd::AsFd;
use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

pub use cache::compile_cached;
pub use docker::docker_default;

/// Errors of compiling or loading a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: {what}: {source}")]
    Libseccomp {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: {0}")]
    Unsupported(String),
    #[error("seccomp: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// From `load`: the raw errno of seccomp(2) (no allocation happens on that path).
    #[error(
        "seccomp: cannot load the filter: seccomp(SECCOMP_SET_MODE_FILTER) failed with errno {errno} \
         (EACCES: set no_new_privs or keep CAP_SYS_ADMIN first; EINVAL: a flag this kernel lacks)"
    )]
    Load { errno: i32 },
}

fn lib_err(
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Libseccomp { what, source }
}

// Kernel ABI (include/uapi/linux/seccomp.h).
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1 << 0;
const SECCOMP_FILTER_FLAG_LOG: u32 = 1 << 1;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// A filter compiled ahead of the fork, so that the container init only loads it.
#[derive(Clone)]
pub struct SeccompFilter {
    program: Vec<libc::sock_filter>,
    flags: u32,
}

impl PartialEq for SeccompFilter {
    fn eq(&self, other: &Self) -> bool {
        self.flags == other.flags && self.to_bytes() == other.to_bytes()
    }
}

impl Eq for SeccompFilter {}

impl std::fmt::Debug for SeccompFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompFilter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}

impl SeccompFilter {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// The SECCOMP_FILTER_FLAG_* bits passed to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Installs the filter on the calling thread: one seccomp(2) call, no allocation, no lock,
    /// so it is safe between fork and exec. The kernel requires no_new_privs or
    /// CAP_SYS_ADMIN in the caller's user namespace (kernel/seccomp.c, seccomp_prepare_filter).
    pub fn load(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to `self.program`, which outlives the call; the kernel copies
        // the program and does not keep the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                self.flags as libc::c_uint,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            // SAFETY: reading errno of this thread right after the failed call.
            let errno = unsafe { *libc::__errno_location() };
            return Err(SeccompError::Load { errno });
        }
        Ok(())
    }

    fn from_bytes(bytes: &[u8], flags: u32) -> Option<SeccompFilter> {
        if bytes.is_empty()
            || !bytes.len().is_multiple_of(8)
            || bytes.len() / 8 > usize::from(u16::MAX)
        {
            return None;
        }
        let program = bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Some(SeccompFilter { program, flags })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.program.len() * 8);
        for i in &self.program {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }
}

/// Compiles `spec` with libseccomp and exports the BPF program.
///
/// As runc does: syscall names this libseccomp or architecture does not know are skipped with
/// a debug log; a rule whose action equals the default action is skipped (libseccomp refuses
/// it); conditions on distinct arguments are ANDed in one rule, while several conditions on
/// the same argument become one rule each (ORed), since libseccomp cannot AND them.
pub fn compile(spec: &LinuxSeccomp) -> Result<SeccompFilter, SeccompError> {
    if spec.listener_path().is_some() || uses_notify(spec) {
        return Err(SeccompError::Unsupported(
            "SCMP_ACT_NOTIFY needs a seccomp user-notification listener (linux.seccomp.listenerPath), \
             which capsa does not support yet; use SCMP_ACT_ERRNO or SCMP_ACT_TRACE instead"
                .to_string(),
        ));
    }
    let default_errno = spec.default_errno_ret();
    let default = action(spec.default_action(), default_errno)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib_err("cannot create a filter"))?;
    for arch in spec.architectures().iter().flatten() {
        let name = serde_json::to_value(arch).ok();
        let name = name.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        let a =
            ScmpArch::from_str(name).map_err(lib_err(format!("unknown architecture {name}")))?;
        ctx.add_arch(a)
            .map_err(lib_err(format!("cannot add architecture {name}")))?;
    }
    for rule in spec.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let groups = condition_groups(rule.args().as_deref().unwrap_or(&[]));
        for name in rule.names() {
            let Ok(sys) = ScmpSyscall::from_name(name) else {
                tracing::debug!("seccomp: unknown syscall {name:?} skipped");
                continue;
            };
            for conds in &groups {
                ctx.add_rule_conditional(act, sys, conds)
                    .map_err(lib_err(format!("cannot add the rule for {name}")))?;
            }
        }
    }
    let program = export(&ctx)?;
    let flags = filter_flags(spec.flags().as_deref().unwrap_or(&[]));
    SeccompFilter::from_bytes(&program, flags).ok_or_else(|| {
        SeccompError::Unsupported(format!("libseccomp exported {} bytes", program.len()))
    })
}

fn uses_notify(spec: &LinuxSeccomp) -> bool {
    spec.default_action() == LinuxSeccompAction::ScmpActNotify
        || spec
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
}

/// OCI action to libseccomp action. ERRNO and TRACE without `errnoRet` return EPERM, as in
/// runc and the runtime-spec (config-linux.md, "errnoRet").
fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let ret = errno.unwrap_or(libc::EPERM as u32);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno_value(ret)?),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno_value(ret)? as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// The action data field is 16 bits (SECCOMP_RET_DATA).
fn errno_value(v: u32) -> Result<i32, SeccompError> {
    if v > 0xffff {
        return Err(SeccompError::Unsupported(format!(
            "errnoRet {v} does not fit in 16 bits"
        )));
    }
    Ok(v as i32)
}

fn compare(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let index = arg.index() as u32;
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        // OCI: `value` is the mask, `valueTwo` the expected result: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    ScmpArgCompare::new(index, op, datum)
}

/// One condition list per rule to add (see `compile`).
fn condition_groups(args: &[LinuxSeccompArg]) -> Vec<Vec<ScmpArgCompare>> {
    let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if indexes.len() == args.len() {
        vec![args.iter().map(compare).collect()]
    } else {
        args.iter().map(|a| vec![compare(a)]).collect()
    }
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> u32 {
    flags
        .iter()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        })
        .fold(0, |a, b| a | b)
}

/// libseccomp 2.5 (Debian 12) can only export to a file descriptor: use a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let io = |op, source| SeccompError::Io {
        op,
        path: "memfd:capsa-seccomp".into(),
        source,
    };
    let fd = rustix::fs::memfd_create("capsa-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| io("create", e.into()))?;
    ctx.export_bpf(fd.as_fd())
        .map_err(lib_err("cannot export the BPF program"))?;
    let mut file = std::fs::File::from(fd);
    rustix::fs::seek(&file, rustix::fs::SeekFrom::Start(0)).map_err(|e| io("seek", e.into()))?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).map_err(|e| io("read", e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("bad test json {json}: {e}"))
    }

    #[test]
    fn every_action_compiles() {
        for act in [
            "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD",
            "SCMP_ACT_TRAP",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_TRACE",
            "SCMP_ACT_LOG",
        ] {
            let s = spec(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["getppid"],"action":"{act}","errnoRet":5}}]}}"#
            ));
            let f = compile(&s).unwrap_or_else(|e| panic!("{act}: {e}"));
            assert!(f.len() > 3, "{act}: {f:?}");
        }
    }

    #[test]
    fn every_operator_compiles() {
        for op in ["NE", "LT", "LE", "EQ", "GE", "GT", "MASKED_EQ"] {
            let s = spec(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                   "syscalls":[{{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":255,"valueTwo":8,"op":"SCMP_CMP_{op}"}}]}}]}}"#
            ));
            assert!(compile(&s).is_ok(), "{op}");
        }
    }

    #[test]
    fn unknown_names_are_skipped_and_notify_is_refused() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["no_such_call","read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(compile(&s).is_ok());
        let n = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        let err = compile(&n).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("listener"), "{err}");
    }

    #[test]
    fn flags_map_to_kernel_bits() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
        );
        let f = compile(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            f.flags(),
            SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
    }

    #[test]
    fn same_index_conditions_become_separate_rules() {
        let a: Vec<LinuxSeccompArg> = serde_json::from_str(
            r#"[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]"#,
        )
        .unwrap_or_default();
        assert_eq!(condition_groups(&a).len(), 2);
        let b: Vec<LinuxSeccompArg> = serde_json::from_str(
            r#"[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":1,"value":2,"op":"SCMP_CMP_EQ"}]"#,
        )
        .unwrap_or_default();
        assert_eq!(condition_groups(&b).len(), 1);
    }

    #[test]
    fn program_bytes_round_trip() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let f = compile(&s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(SeccompFilter::from_bytes(&f.to_bytes(), f.flags()), Some(f));
        assert_eq!(SeccompFilter::from_bytes(&[1, 2, 3], 0), None);
    }
}
