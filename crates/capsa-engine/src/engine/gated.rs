//! gated: a foreground start with a gate between the runtime's create and start, for callers
//! that must act on the init's host pid before the workload's first instruction (the
//! capability profiler attaches its recorder there), and a non-blocking wait so that the
//! caller can stop the container on its own schedule (a deadline, a probe).
//!
//! Owns nothing new: it reuses `launch`, `finish` and the record. Must not print, and must not
//! reap other children of the caller (a probe run with `capsa exec` is the caller's child too).

use super::{Engine, redirect_stdin_to_null};
use crate::error::{Error, Result};

impl Engine {
    /// Starts a created container whose init is this process's child, without a terminal and
    /// with stdin from /dev/null. `gate` runs with the init's host pid while the init is
    /// blocked before its exec (on exec.fifo, until the runtime's start); an error from it
    /// removes the runtime state and is returned. Returns the init's host pid: the caller
    /// must then reap it ([`Engine::try_reap`] or [`Engine::reap`]) and call
    /// [`Engine::record_exit`].
    pub fn start_gated(&self, id: &str, gate: &mut dyn FnMut(i32) -> Result<()>) -> Result<i32> {
        let r = self.store.load(id)?;
        if r.config.tty {
            return Err(Error::InvalidFlag(
                "a gated start has no terminal: drop -t".into(),
            ));
        }
        redirect_stdin_to_null()?;
        match self.launch_gated(&r, false, gate) {
            Ok((pid, _)) => Ok(pid),
            Err(e) => {
                self.record_failure(id, &e);
                Err(e)
            }
        }
    }

    /// The exit code of `pid` if it has exited (reaping only that pid), else None.
    pub fn try_reap(&self, pid: i32) -> Result<Option<i32>> {
        wait_pid(pid, rustix::process::WaitOptions::NOHANG)
    }

    /// Blocks until `pid` exits; returns its exit code (128+N for signal N).
    pub fn reap(&self, pid: i32) -> Result<i32> {
        loop {
            if let Some(code) = wait_pid(pid, rustix::process::WaitOptions::empty())? {
                return Ok(code);
            }
        }
    }

    /// Records the exit of a gated container and releases its runtime state.
    pub fn record_exit(&self, id: &str, code: i32) {
        self.finish(id, code);
    }
}

fn wait_pid(pid: i32, flags: rustix::process::WaitOptions) -> Result<Option<i32>> {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Err(Error::Runtime(format!("invalid pid {pid}")));
    };
    loop {
        match rustix::process::waitpid(Some(p), flags) {
            Ok(Some((_, status))) => {
                let code = match (status.exit_status(), status.terminating_signal()) {
                    (Some(c), _) => c,
                    (None, Some(s)) => 128 + s,
                    (None, None) => 255,
                };
                return Ok(Some(code));
            }
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io("waitpid", "/", e.into())),
        }
    }
}
