//! The processes that become a container: the init (create path) and `exec` tenants.
//!
//! Interface used by `container` (the lifecycle code). Bodies are being written.

use std::path::Path;

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
}

/// A process that was started and is now blocked (init: on exec.fifo) or running (exec).
#[derive(Debug, Clone, Copy)]
pub struct Spawned {
    /// Host pid of the process.
    pub pid: i32,
}
