//! capsa-caps: the Linux capability model. Pure: no syscalls beyond reading /proc (and the
//! read-only securebits query), all of it in the `proc` module.
//!
//! - [`Cap`], [`CapSet`]: numbers and 64-bit sets; [`CapState`]: the five sets of a process.
//! - [`parse`]: Docker's name normalisation and error texts; [`profile`]: default sets;
//!   [`resolve()`]: Docker's `--cap-add`/`--cap-drop`/`--privileged` precedence.
//! - [`text`]: libcap 2.66-identical text (`cap_to_text`, getpcaps, `capsh --print/--decode`);
//!   [`report`]: JSON shapes and pscap-like rows; [`knowledge`]: meaning and risk per cap.

pub mod cap;
pub mod knowledge;
pub mod names;
pub mod parse;
pub mod proc;
pub mod profile;
pub mod report;
pub mod resolve;
pub mod state;
pub mod text;

pub use cap::{Cap, CapSet, LAST_KNOWN};
pub use knowledge::{CapInfo, Risk};
pub use parse::{CapError, CapName, normalize, parse_available, parse_name};
pub use proc::{ProcError, cap_last_cap, host_available};
pub use profile::Profile;
pub use resolve::{ResolveError, resolve};
pub use state::{CapMode, CapState, ProcStatus};

impl CapState {
    /// Reads the capability state of process `pid` from `/proc/PID/status`.
    /// `securebits` stays `None`: the kernel shows them only to the process itself.
    pub fn from_pid(pid: u32) -> Result<CapState, ProcError> {
        proc::read_status(pid).map(|s| s.caps)
    }

    /// The calling process's state, with its securebits.
    pub fn current() -> Result<CapState, ProcError> {
        proc::self_state()
    }
}
