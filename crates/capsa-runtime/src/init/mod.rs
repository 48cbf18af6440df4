//! The processes that become a container: the init (create path) and `exec` tenants.
//!
//! Owns: cloning the container init straight from the runtime process (no re-exec of ourselves),
//! the parent/child sync channel, uid/gid map writing, the create/start handshake on
//! `<state_dir>/exec.fifo`, and joining a running container for `exec`.
//! Must not touch: the state store (`state`), cgroup files (`cgroups`, through `Cgroup` methods only)
//! or seccomp compilation (`seccomp`, through `SeccompFilter::load` only).
//!
//! Process shape. Fast path (no namespace joined by `path`): one `clone` with every new namespace
//! flag, and the child is the init. Otherwise (joins, or `exec`), the child is an intermediate that
//! calls setns/unshare and then clones the real process with `CLONE_PARENT`, so that the caller can
//! wait for it; the intermediate reports the pid and exits.
//!
//! Protocol on the SOCK_SEQPACKET pair (one message per datagram, tags in `sync`):
//! child `MAPS` → parent writes uid/gid maps → `MAPS_DONE`; child `PID n` (slow path); `GO`;
//! the init has joined its v1 cgroups itself (and was cloned into its cgroup2 one, or the parent
//! moves it there now, while the init makes its mounts) → `JOINED`; [init with runtime-namespace hooks, mounts done, before pivot_root:
//! `HOOKS` → parent runs prestart/createRuntime → `RESUME`]; child sets up → `READY` (init) or
//! exec (tenant: EOF on the CLOEXEC socket means the exec succeeded); any failure → `ERR message`.

mod child;
mod exe_guard;
mod namespaces;
mod parent;
mod sync;
pub(crate) mod sys;

use std::fmt;
use std::path::Path;

pub use parent::{spawn, spawn_tenant, start};

/// Everything the create path needs to start a container's init process.
pub struct InitRequest<'a> {
    /// Container id (already validated: no `/`, no `..`).
    pub id: &'a str,
    /// The validated spec; unknown/unavailable capability names already removed (with warnings).
    pub spec: &'a oci_spec::runtime::Spec,
    /// Absolute bundle directory (hooks and relative paths are resolved against it).
    pub bundle: &'a Path,
    /// Absolute rootfs directory.
    pub rootfs: &'a Path,
    /// `<root>/<id>`: the state directory; the init blocks on `exec.fifo` in it until `start`.
    /// `spawn` creates the fifo (mode 0622, like runc) and removes it again on failure.
    pub state_dir: &'a Path,
    /// `--console-socket`: receives the pty master when `process.terminal` is true.
    pub console_socket: Option<&'a Path>,
    /// `--preserve-fds N`: fds 3..3+N are passed to the container process.
    pub preserve_fds: u32,
    /// `--no-pivot`: use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the session keyring of the caller.
    pub no_new_keyring: bool,
    /// The cgroup the init joins before it runs any container code.
    pub cgroup: Option<&'a crate::cgroups::Cgroup>,
    /// A compiled seccomp filter to load (from `linux.seccomp`), if any.
    pub seccomp: Option<&'a crate::seccomp::SeccompFilter>,
    /// The runtime-namespace hooks (prestart, createRuntime), called in this process with the
    /// init's host pid once its namespaces and mounts exist and before its pivot_root
    /// (runtime-spec config.md "createRuntime Hooks"). `None` when there are none: then the
    /// init does not stop for them (no extra round trip on the start path).
    pub runtime_hooks: Option<&'a RuntimeHooks<'a>>,
}

/// Runs the runtime-namespace hooks for the init with this host pid; an error fails the create
/// (its text becomes the error of `spawn`).
pub type RuntimeHooks<'a> = dyn Fn(i32) -> Result<(), String> + 'a;

/// Everything `exec` needs to start a process inside a running container.
pub struct ExecRequest<'a> {
    /// Container id (for messages only).
    pub id: &'a str,
    /// Host pid of the container's init: its `/proc/<pid>/ns/*` are joined.
    pub init_pid: i32,
    /// The container's spec: its `linux.namespaces` says which namespaces the tenant joins, and
    /// `linux.uidMappings` whether it is in a user namespace.
    pub spec: &'a oci_spec::runtime::Spec,
    /// The process to run (from `--process` or built from the CLI flags), caps already filtered.
    pub process: &'a oci_spec::runtime::Process,
    /// `--console-socket`: receives the pty master when `process.terminal` is true.
    pub console_socket: Option<&'a Path>,
    /// `--preserve-fds N`: fds 3..3+N are passed to the process.
    pub preserve_fds: u32,
    /// The container's cgroup; the tenant joins it before it runs any container code.
    pub cgroup: Option<&'a crate::cgroups::Cgroup>,
    /// A compiled seccomp filter to load, if any.
    pub seccomp: Option<&'a crate::seccomp::SeccompFilter>,
}

/// A process that was started and is now blocked (init: on exec.fifo) or running (exec).
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    /// Host pid of the process.
    pub pid: i32,
}

/// Why a container process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A step inside the container process failed; the message comes from the child
    /// (e.g. `cannot mount proc on /proc: EPERM (...)`).
    #[error("{0}")]
    Child(String),
    /// A step in the runtime process (before or around the clone) failed.
    #[error("{0}")]
    Parent(StepError),
    /// The child died without saying why.
    #[error("container process exited before reporting its state ({0})")]
    ChildDied(String),
}

impl From<StepError> for InitError {
    fn from(e: StepError) -> Self {
        InitError::Parent(e)
    }
}

/// One failed step: what was attempted, on what, the errno and a hint.
/// Used inside the container process, where errors travel back as text.
#[derive(Debug, Clone)]
pub struct StepError(pub String);

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepError {}

impl StepError {
    /// `cannot <op> <path>: <ERRNO> (<hint>)`.
    pub fn sys(op: &str, path: impl fmt::Display, err: rustix::io::Errno, hint: &str) -> Self {
        let name = sys::errno_name(err.raw_os_error());
        if hint.is_empty() {
            StepError(format!("cannot {op} {path}: {name}"))
        } else {
            StepError(format!("cannot {op} {path}: {name} ({hint})"))
        }
    }

    /// A failure that is not a syscall error.
    pub fn msg(text: impl Into<String>) -> Self {
        StepError(text.into())
    }
}

/// Result of one step.
pub type Step<T = ()> = Result<T, StepError>;
