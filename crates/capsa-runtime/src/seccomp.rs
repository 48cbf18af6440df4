//! seccomp: `linux.seccomp` from config.json compiled into a filter. Bodies are being written.

/// A filter compiled ahead of the fork, so that the container init only loads it.
pub struct SeccompFilter {}
