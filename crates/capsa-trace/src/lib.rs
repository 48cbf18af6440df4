//! capsa-trace: records the capability checks of a container's process tree through the
//! kernel's `capability:cap_capable` tracepoint (Linux 6.14+) in a private tracefs instance,
//! classifies each check by its kernel call path, and turns a recording into a proposal.
//!
//! Owns tracefs instances named `capsa-*` and the analysis of what they record. Must not start
//! containers (the caller gates and releases the process) nor touch other tracefs instances.
//!
//! Use: gate a process before its exec, [`Recorder::start`] on its host pid, release it, wait,
//! [`Recorder::stop`], then [`Proposal::from_recording`].

pub mod bpf;
pub mod classify;
pub mod event;
pub mod filecaps;
pub mod kallsyms;
pub mod pipe_raw;
pub mod proposal;
pub mod rawevent;
pub mod recorder;
pub mod recording;
pub mod ringbuf;
pub mod symcache;
pub mod tracefs;

use std::path::{Path, PathBuf};

pub use classify::{Class, ProbeReason};
pub use proposal::{Format, Proposal, Risk};
pub use recorder::{Recorder, RecorderOptions};
pub use recording::Recording;
pub use tracefs::{cleanup_stale, kernel_release};

/// Errors of the recorder.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "this kernel ({kernel}) has no capability:cap_capable tracepoint ({} is missing): capsa profile needs Linux {} or newer",
        event.display(),
        tracefs::KERNEL_NEEDED
    )]
    Unsupported { kernel: String, event: PathBuf },
    #[error(
        "cannot mount tracefs on {}: {errno} (capsa profile needs tracefs and Linux {} or newer with the capability:cap_capable tracepoint; this is {kernel}; are you root with CAP_SYS_ADMIN?)",
        path.display(),
        tracefs::KERNEL_NEEDED
    )]
    Mount {
        path: PathBuf,
        errno: rustix::io::Errno,
        kernel: String,
    },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot follow pid {pid}: {} does not exist or did not take it (is the process gone?)", path.display())]
    PidFilter { pid: i32, path: PathBuf },
    #[error("cannot understand {}: the layout is not the one this capsa knows (Linux 6.14-6.18 layouts); please report the file's content", path.display())]
    Format { path: PathBuf },
    #[error("cannot decode a sub-buffer read from {}: {source} (the ring-buffer layout differs from the one in events/header_page; please report)", path.display())]
    Page {
        path: PathBuf,
        source: ringbuf::PageError,
    },
    #[error("the trace reader thread panicked; the recording is lost")]
    ReaderPanicked,
    #[error("cannot install the SIGINT/SIGTERM cleanup: {0}")]
    Signals(std::io::Error),
}

impl TraceError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> TraceError {
        TraceError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Removes this process's `capsa-*` instances when SIGINT or SIGTERM arrives, then lets the
/// signal take its default action. Call once from a binary that records; a library must not
/// take over signals on its own. The instances of a SIGKILLed process are removed later by
/// [`cleanup_stale`].
pub fn cleanup_on_signals() -> Result<(), TraceError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(TraceError::Signals)?;
    std::thread::Builder::new()
        .name("capsa-trace-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracefs::remove_all_live();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
            }
        })
        .map_err(TraceError::Signals)?;
    Ok(())
}
