//! status: what a container's state really is, derived from the record plus /proc. A record
//! that says "running" is only believed while its init pid is alive *and* has the recorded
//! start time (a recycled pid has another); otherwise the container has exited, even if its
//! monitor died before it could write that down. Must not write records.

use crate::record::{Record, Status};

/// Start time (clock ticks after boot) and state letter of a live, non-zombie process.
pub fn proc_start(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let st = capsa_runtime::state::proc_stat(pid)?;
    (st.state != b'Z' && st.state != b'X').then_some(st.start_time)
}

/// Whether the recorded process is still the one we started.
pub fn same_process(pid: i32, start: u64) -> bool {
    proc_start(pid).is_some_and(|s| s == start)
}

/// The observed status.
pub fn observe(r: &Record) -> Status {
    match r.state.status {
        Status::Running if same_process(r.state.pid, r.state.pid_start) => Status::Running,
        Status::Running => Status::Exited,
        s => s,
    }
}

/// Whether the record's monitor is still alive.
pub fn monitor_alive(r: &Record) -> bool {
    r.state.monitor_pid > 0 && same_process(r.state.monitor_pid, r.state.monitor_start)
}
