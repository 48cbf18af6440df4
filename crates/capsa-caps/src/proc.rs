//! The only I/O of this crate: reading `/proc/PID/status`, `/proc/sys/kernel/cap_last_cap`,
//! the caller's securebits (prctl PR_GET_SECUREBITS, a read-only query) and the account
//! databases `/etc/passwd` and `/etc/group` for names.
//!
//! Owns these reads and their error texts. Must not change any process state.

use std::io;
use std::path::{Path, PathBuf};

use crate::cap::{CapSet, LAST_KNOWN};
use crate::names::Accounts;
use crate::state::{CapState, ProcStatus, StatusError};

/// A failed read, naming the path and a hint.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no such process: {pid} (cannot read {path}: ENOENT)")]
    NoSuchProcess { pid: u32, path: PathBuf },
    #[error("process {pid} has exited (it is a zombie waiting to be reaped)")]
    Exited { pid: u32 },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse {path}: {source}")]
    Status { path: PathBuf, source: StatusError },
    #[error("cannot parse {path}: {value:?} is not a capability number")]
    LastCap { path: PathBuf, value: String },
    #[error("cannot read securebits: prctl(PR_GET_SECUREBITS): {0}")]
    Securebits(io::Error),
}

const CAP_LAST_CAP: &str = "/proc/sys/kernel/cap_last_cap";

fn read(path: &Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.into(),
        source,
    })
}

/// Reads `/proc/PID/status`. A PID that does not exist, or has exited (zombie), is an error.
pub fn read_status(pid: u32) -> Result<ProcStatus, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // ENOENT: no such PID; ESRCH: the task went away between open and read.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) =>
        {
            return Err(ProcError::NoSuchProcess { pid, path });
        }
        Err(source) => return Err(ProcError::Read { path, source }),
    };
    let status =
        ProcStatus::parse(pid, &text).map_err(|source| ProcError::Status { path, source })?;
    if status.is_zombie() {
        return Err(ProcError::Exited { pid });
    }
    Ok(status)
}

/// Reads the capability state of the calling process, including its securebits.
pub fn self_state() -> Result<CapState, ProcError> {
    let path = PathBuf::from("/proc/self/status");
    let text = read(&path)?;
    let mut st = ProcStatus::parse(std::process::id(), &text)
        .map_err(|source| ProcError::Status { path, source })?;
    let bits =
        rustix::thread::capabilities_secure_bits().map_err(|e| ProcError::Securebits(e.into()))?;
    st.caps.securebits = Some(bits.bits());
    Ok(st.caps)
}

/// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn cap_last_cap() -> Result<u8, ProcError> {
    let path = Path::new(CAP_LAST_CAP);
    let text = read(path)?;
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|n| *n < 64)
        .ok_or_else(|| ProcError::LastCap {
            path: path.into(),
            value: text.trim().into(),
        })
}

/// What this host lets us grant: our own bounding set, capped at the kernel's last cap.
/// A child can never hold a cap outside its parent's bounding set (capabilities(7)), so this
/// is the honest meaning of "all" for `--privileged` and `--cap-add ALL`.
pub fn host_available() -> Result<CapSet, ProcError> {
    let status = read_status(std::process::id())?;
    let last = cap_last_cap().unwrap_or(LAST_KNOWN);
    Ok(status.caps.bounding.intersection(CapSet::up_to(last)))
}

/// Every numeric entry of /proc, in ascending PID order.
pub fn all_pids() -> Result<Vec<u32>, ProcError> {
    let path = Path::new("/proc");
    let dir = std::fs::read_dir(path).map_err(|source| ProcError::Read {
        path: path.into(),
        source,
    })?;
    let mut pids: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Reads `/etc/passwd` and `/etc/group`. Missing files give empty databases (every id then
/// prints as `???`, as capsh does).
pub fn accounts() -> Accounts {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    Accounts::parse(&passwd, &group)
}
