//! tracefs: finding or mounting it, and private `capsa-*` instances in it.
//!
//! Owns every write under `<tracefs>/instances/capsa-*` and the tracefs mount that capsa made.
//! Must not touch the top-level (global) trace buffer or instances whose name does not start
//! with `capsa-`: other tools on the host use them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::TraceError;

/// Where tracefs lives on current systems (Documentation/trace/ftrace.rst).
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The prefix of every instance capsa makes; the owner's pid follows it.
pub const INSTANCE_PREFIX: &str = "capsa-";
/// `TRACEFS_MAGIC` from include/uapi/linux/magic.h.
const TRACEFS_MAGIC: i64 = 0x7472_6163;
/// The first kernel with the `capability:cap_capable` tracepoint (commit d48da4d5ed7b).
pub const KERNEL_NEEDED: &str = "6.14";

/// Whether this process mounted tracefs, and how many of its recordings use it.
static MOUNT: Mutex<(bool, usize)> = Mutex::new((false, 0));
/// Instances currently owned by this process, for the signal cleanup.
/// Each comes with its reader's stop flag: rmdir answers EBUSY until the reader closes trace_pipe.
pub(crate) static LIVE: Mutex<Vec<(PathBuf, Arc<AtomicBool>)>> = Mutex::new(Vec::new());
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn is_tracefs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type == TRACEFS_MAGIC)
}

/// Makes sure tracefs is mounted at [`TRACEFS`] and takes a reference on it; the matching
/// [`release_mount`] drops the reference (tracefs then stays mounted).
pub(crate) fn acquire_mount() -> Result<PathBuf, TraceError> {
    let root = PathBuf::from(TRACEFS);
    let mut state = MOUNT.lock().unwrap_or_else(|p| p.into_inner());
    if !is_tracefs(&root) {
        use rustix::mount::{MountFlags, mount};
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        mount("tracefs", &root, "tracefs", flags, None).map_err(|e| TraceError::Mount {
            path: root.clone(),
            errno: e,
            kernel: kernel_release(),
        })?;
        state.0 = true;
    }
    state.1 += 1;
    Ok(root)
}

/// Drops the reference taken by [`acquire_mount`]. tracefs stays mounted (as systemd mounts
/// it at boot): another capsa process may have created an instance under our mount between
/// any check and the unmount, and a detached mount would pull the instance out from under it.
pub(crate) fn release_mount(_root: &Path) {
    let mut state = MOUNT.lock().unwrap_or_else(|p| p.into_inner());
    state.1 = state.1.saturating_sub(1);
}

/// The running kernel's release (`uname -r`), for error messages.
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Fails unless this kernel has the `capability:cap_capable` tracepoint.
pub(crate) fn check_support(root: &Path) -> Result<(), TraceError> {
    let event = root.join("events/capability/cap_capable");
    if event.join("format").exists() {
        Ok(())
    } else {
        Err(TraceError::Unsupported {
            kernel: kernel_release(),
            event,
        })
    }
}

/// A fresh instance name that records the owner pid: `capsa-<pid>-<n>-<nanos>`.
pub(crate) fn unique_name() -> String {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{INSTANCE_PREFIX}{pid}-{n}-{nanos}")
}

/// Creates the instance directory (the kernel populates it) and registers it for cleanup.
pub(crate) fn create_instance(
    root: &Path,
    name: &str,
    stop: Arc<AtomicBool>,
) -> Result<PathBuf, TraceError> {
    let dir = root.join("instances").join(name);
    fs::create_dir(&dir).map_err(|e| TraceError::io("mkdir", &dir, e))?;
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((dir.clone(), stop));
    Ok(dir)
}

/// Removes an instance: rmdir drops its buffers, events and triggers in one step. The kernel
/// answers EBUSY while a file in it is still open, so callers close their readers first.
pub(crate) fn remove_instance(dir: &Path) -> Result<(), TraceError> {
    LIVE.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(d, _)| d != dir);
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TraceError::io("rmdir", dir, e)),
    }
}

/// Writes `value` to a tracefs control file. `append` keeps the current content (needed to add
/// a pid to set_event_pid; a truncating open clears the list).
pub(crate) fn write(path: &Path, value: &str, append: bool) -> Result<(), TraceError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(!append)
        .append(append)
        .open(path)
        .map_err(|e| TraceError::io("open", path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| TraceError::io("write", path, e))
}

/// Sums `overrun` and `dropped events` over `per_cpu/cpu*/stats`: events lost because the
/// reader did not keep up (overwrite=0 makes the kernel drop new events and count them).
pub(crate) fn lost_events(dir: &Path) -> u64 {
    let Ok(cpus) = fs::read_dir(dir.join("per_cpu")) else {
        return 0;
    };
    let mut lost = 0;
    for cpu in cpus.flatten() {
        let Ok(stats) = fs::read_to_string(cpu.path().join("stats")) else {
            continue;
        };
        for line in stats.lines() {
            let value = |k: &str| {
                line.strip_prefix(k)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            lost += value("overrun:")
                .or_else(|| value("dropped events:"))
                .unwrap_or(0);
        }
    }
    lost
}

/// Removes the `capsa-<pid>-...` instances whose owner process is gone (a recorder that was
/// killed with SIGKILL cannot clean up after itself). Returns the names removed.
pub fn cleanup_stale() -> Result<Vec<String>, TraceError> {
    let root = Path::new(TRACEFS);
    if !is_tracefs(root) {
        return Ok(Vec::new());
    }
    let dir = root.join("instances");
    let entries = fs::read_dir(&dir).map_err(|e| TraceError::io("readdir", &dir, e))?;
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = owner_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        remove_instance(&entry.path())?;
        removed.push(name);
    }
    Ok(removed)
}

/// The owner pid recorded in an instance name, or `None` for names capsa did not make.
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(INSTANCE_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// Removes every instance this process still owns. Called from the signal cleanup thread:
/// stops tracing, tells the readers to stop, and retries rmdir until they closed trace_pipe.
pub(crate) fn remove_all_live() {
    let live: Vec<(PathBuf, Arc<AtomicBool>)> =
        LIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (d, stop) in &live {
        let _ = write(&d.join("tracing_on"), "0", false);
        stop.store(true, Ordering::Release);
    }
    for (d, _) in &live {
        for _ in 0..100 {
            if remove_instance(d).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_from_name() {
        assert_eq!(owner_pid("capsa-123-0-999"), Some(123));
        assert_eq!(owner_pid("capsa-x"), None);
        assert_eq!(owner_pid("other-123"), None);
        let n = unique_name();
        assert_eq!(owner_pid(&n), Some(std::process::id()));
        assert_ne!(n, unique_name());
    }
}
