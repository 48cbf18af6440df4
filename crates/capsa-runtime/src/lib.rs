//! capsa-runtime: an OCI bundle (config.json plus rootfs) becomes a running container.
//!
//! Module ownership (each module's top comment says what it owns and must not touch):
//! - `spec`, `state`, `container`, `hooks`: loading bundles, the on-disk state store and the
//!   lifecycle operations (create/start/state/kill/delete/list/ps/pause/resume/update/exec).
//! - `init`, `rootfs`, `security`, `console`: the processes that become the container
//!   (the init and `exec` tenants): namespaces, mounts, user, capabilities, seccomp load, exec.
//! - `idmap`: idmapped detached mounts for user-namespaced containers (rootfs, layers, volumes).
//! - `cgroups`, `seccomp`: resource control and syscall filters.

pub mod cgroups;
pub mod console;
pub mod container;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod state;
