//! The `Recorder`: one private tracefs instance following one process tree, and the reader
//! thread that streams its per-CPU `trace_pipe_raw` files ([`crate::pipe_raw`]), or its text
//! `trace_pipe` when /proc/kallsyms hides kernel addresses (`kernel.kptr_restrict=2`).
//!
//! Owns the instance's settings and their order, the reader thread and the instance's removal
//! (stop, Drop, signals). Must not touch other instances or the global buffer.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

use crate::TraceError;
use crate::bpf::{BpfError, Capture, KernelLayout};
use crate::kallsyms::{KALLSYMS, Symbols};
use crate::pipe_raw::RawPipes;
use crate::recording::{Aggregator, Recording};
use crate::tracefs;

/// Per-CPU buffer in KiB. The default (1410) overran with stacks on and nobody reading
/// (cap-tracing.md §3). One check with its stack takes about 180 bytes (a 44-byte cap_capable
/// record and a kernel_stack record of 16 + 8 bytes per frame, 10 to 14 frames), about 1.5 KB per
/// exec of /bin/true: 4 MiB per CPU holds ~2700 execs, over a second of the fastest exec loop,
/// between two reads of a starved reader.
const BUFFER_SIZE_KB: &str = "4096";

/// Pause between reads when the pipes are empty. Fewer wakeups cost the workload less on small
/// machines; the buffer above holds far more than this many milliseconds of events.
const READ_PAUSE_MS: u64 = 40;

/// Options of one recording.
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// The container's rootfs, to read file caps of executed paths when the process is gone.
    pub rootfs: Option<PathBuf>,
    /// Take a kernel stack per check (needed to tell probes from real needs).
    pub stacks: bool,
    /// Read the text `trace_pipe` even when the raw pipes could be used (the fallback for hosts
    /// where /proc/kallsyms hides addresses; set it to test or measure that path).
    pub text: bool,
    /// Take CAP_SYS_ADMIN checks with the BPF program ([`crate::bpf`]) when it can be loaded.
    /// Off (or [`NO_BPF_ENV`] set in the environment), or when loading fails, every check gets
    /// the tracefs `stacktrace` trigger; the report is the same, the recording slower.
    pub bpf: bool,
}

/// Set (to anything but empty or `0`) to make every recording use the tracefs trigger only.
pub const NO_BPF_ENV: &str = "CAPSA_TRACE_NO_BPF";

impl Default for RecorderOptions {
    fn default() -> Self {
        let no_bpf = std::env::var_os(NO_BPF_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        RecorderOptions {
            rootfs: None,
            stacks: true,
            text: false,
            bpf: !no_bpf,
        }
    }
}

/// A running recording. Removing the instance happens in [`Recorder::stop`], or in Drop.
#[derive(Debug)]
pub struct Recorder {
    root: PathBuf,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    reader: Option<ReaderHandle>,
    /// The reader says here when it has closed its pipes (rmdir answers EBUSY before).
    closed: Option<Receiver<()>>,
    /// The BPF side's traced-pid map, when CAP_SYS_ADMIN checks go through BPF.
    bpf_pids: Option<OwnedFd>,
}

/// What the reader thread returns: the aggregated events, the losses the sub-buffer headers
/// reported, and the BPF side's losses.
type ReaderResult = Result<(Aggregator, u64, u64), TraceError>;
type ReaderHandle = JoinHandle<ReaderResult>;

/// The events of one recording, with the filter each one gets.
const EVENTS: &[(&str, Option<&str>)] = &[
    ("sched/sched_process_exec", None),
    ("sched/sched_process_fork", None),
    // Only EPERM: the failure of a capability-dumb file-cap binary (ENOENT from PATH lookups
    // would dominate otherwise).
    ("syscalls/sys_exit_execve", Some("ret == -1")),
];

impl Recorder {
    /// Starts recording the capability checks of `pid` and of every process it forks from now on.
    /// `pid` must be gated (blocked before its exec) so that nothing it does is missed; release
    /// it after this returns.
    pub fn start(pid: i32) -> Result<Recorder, TraceError> {
        Recorder::start_with(pid, RecorderOptions::default())
    }

    /// [`Recorder::start`] with options.
    pub fn start_with(pid: i32, opts: RecorderOptions) -> Result<Recorder, TraceError> {
        // The kernel takes any number into set_event_pid; a pid that does not exist would make a
        // recording that silently sees nothing.
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if pid <= 0 || !proc_dir.exists() {
            return Err(TraceError::PidFilter {
                pid,
                path: proc_dir,
            });
        }
        let raw = !opts.text && crate::kallsyms::addresses_visible();
        // The symbol table and the BPF side's BTF facts are read while the instance is made:
        // the BPF side needs them before anything is enabled, the raw reader needs the table.
        let symbols = raw.then(|| std::thread::spawn(Symbols::load));
        let kernel =
            (raw && opts.stacks && opts.bpf).then(|| std::thread::spawn(KernelLayout::read));
        let mut rec = Recorder::new_instance()?;
        // On any error below, Drop removes the half-made instance: nothing is left half-way.
        // Configured while the threads read: with BPF, the clock switch waits for a grace
        // period (ring_buffer_reset_online_cpus), 20-50 ms.
        rec.configure(pid, kernel.is_some())?;
        let symbols = match symbols.map(std::thread::JoinHandle::join) {
            Some(Ok(s)) => Some(s.map_err(|e| TraceError::io("read", Path::new(KALLSYMS), e))?),
            Some(Err(_)) => return Err(TraceError::ReaderPanicked),
            None => None,
        };
        // After the tracefs probe is on cap_capable: the BPF side measures the stack layout of
        // the recording's tracepoint glue.
        let capture = match (&symbols, kernel) {
            (Some(syms), Some(k)) => start_bpf(
                k.join()
                    .unwrap_or_else(|_| {
                        Err(BpfError::Btf {
                            reason: "the BTF reader thread panicked".into(),
                        })
                    })
                    .and_then(|k| Capture::start(pid, k, syms)),
            ),
            _ => None,
        };
        rec.set_stacks(opts.stacks, capture.is_some())?;
        if let Some(c) = &capture {
            let pids = c
                .pid_map()
                .map_err(|e| TraceError::io("dup the BPF pid map of", &rec.dir, e))?;
            rec.bpf_pids = Some(pids);
        }
        let agg = Aggregator::new(pid, opts.rootfs);
        rec.start_reader(agg, symbols, capture)?;
        Ok(rec)
    }

    /// Mounts tracefs if needed and makes a fresh instance.
    fn new_instance() -> Result<Recorder, TraceError> {
        let root = tracefs::acquire_mount()?;
        if let Err(e) = tracefs::check_support(&root) {
            tracefs::release_mount(&root);
            return Err(e);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let dir = match tracefs::create_instance(&root, &tracefs::unique_name(), stop.clone()) {
            Ok(d) => d,
            Err(e) => {
                tracefs::release_mount(&root);
                return Err(e);
            }
        };
        Ok(Recorder {
            root,
            dir,
            stop,
            reader: None,
            closed: None,
            bpf_pids: None,
        })
    }

    /// Opens the pipes (raw with a symbol table, else text), switches tracing on and starts the
    /// reader thread. The pipes are opened before tracing is switched on, so nothing is missed.
    fn start_reader(
        &mut self,
        agg: Aggregator,
        symbols: Option<Symbols>,
        capture: Option<Capture>,
    ) -> Result<(), TraceError> {
        let stop = self.stop.clone();
        let pause = std::time::Duration::from_millis(READ_PAUSE_MS);
        let (closed, closed_rx) = std::sync::mpsc::channel();
        self.closed = Some(closed_rx);
        let handle = if let Some(symbols) = symbols {
            let pipes = RawPipes::open(&self.dir, symbols, capture)?;
            self.enable()?;
            spawn(&self.dir, move || pipes.read_loop(agg, stop, pause, closed))?
        } else {
            let pipe = self.dir.join("trace_pipe");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&pipe)
                .map_err(|e| TraceError::io("open", &pipe, e))?;
            self.enable()?;
            spawn(&self.dir, move || read_loop(file, pipe, agg, stop, closed))?
        };
        self.reader = Some(handle);
        Ok(())
    }

    /// The instance directory (`<tracefs>/instances/capsa-...`).
    pub fn instance(&self) -> &Path {
        &self.dir
    }

    /// Follows one more process (for example a `capsa exec` into the container). Its children
    /// are added by event-fork.
    pub fn add_pid(&self, pid: i32) -> Result<(), TraceError> {
        if let Some(pids) = &self.bpf_pids {
            crate::bpf::add_pid(pids, pid).map_err(|e| {
                TraceError::io(
                    "follow pid in",
                    &self.dir,
                    std::io::Error::other(e.to_string()),
                )
            })?;
        }
        tracefs::write(&self.dir.join("set_event_pid"), &format!("{pid}\n"), true)
    }

    /// Settings in the order that matters: the pid filter before any event is enabled, because
    /// an empty set_event_pid means every pid on the host. With `bpf` (the BPF side will be
    /// tried), the instance uses the `mono` clock: the one of bpf_ktime_get_ns, so that both
    /// streams merge by time; set first, as a clock change resets the buffers.
    fn configure(&self, pid: i32, bpf: bool) -> Result<(), TraceError> {
        let d = &self.dir;
        tracefs::write(&d.join("tracing_on"), "0", false)?;
        if bpf {
            tracefs::write(&d.join("trace_clock"), "mono", false)?;
        }
        tracefs::write(&d.join("options/overwrite"), "0", false)?;
        tracefs::write(&d.join("options/event-fork"), "1", false)?;
        tracefs::write(&d.join("buffer_size_kb"), BUFFER_SIZE_KB, false)?;
        tracefs::write(&d.join("set_event_pid"), &pid.to_string(), false)?;
        let filter = std::fs::read_to_string(d.join("set_event_pid")).unwrap_or_default();
        if filter.split_whitespace().next() != Some(pid.to_string().as_str()) {
            return Err(TraceError::PidFilter {
                pid,
                path: d.join("set_event_pid"),
            });
        }
        let cap = d.join("events/capability/cap_capable");
        tracefs::write(&cap.join("enable"), "1", false)?;
        for (event, filter) in EVENTS {
            let e = d.join("events").join(event);
            if !e.exists() {
                continue; // syscall events need CONFIG_FTRACE_SYSCALLS; they only add detail.
            }
            if let Some(f) = filter {
                tracefs::write(&e.join("filter"), f, false)?;
            }
            tracefs::write(&e.join("enable"), "1", false)?;
        }
        Ok(())
    }

    /// The stack trigger, set once the BPF side is decided (adding a trigger costs no grace
    /// period; removing one does). With BPF, CAP_SYS_ADMIN checks are neither written nor
    /// walked by tracefs: the event filter drops the record, and the trigger needs its own
    /// condition, because an unconditional trigger runs before the event filter
    /// (trace_trigger_soft_disabled, include/linux/trace_events.h).
    fn set_stacks(&self, stacks: bool, bpf: bool) -> Result<(), TraceError> {
        let cap = self.dir.join("events/capability/cap_capable");
        if bpf {
            tracefs::write(&cap.join("filter"), "cap != 21", false)?;
        }
        if stacks {
            let trigger = if bpf {
                "stacktrace if cap != 21"
            } else {
                "stacktrace"
            };
            tracefs::write(&cap.join("trigger"), trigger, false)?;
        }
        Ok(())
    }

    fn enable(&self) -> Result<(), TraceError> {
        tracefs::write(&self.dir.join("tracing_on"), "1", false)
    }

    /// Stops recording, drains what is buffered, removes the instance and returns the result.
    pub fn stop(mut self) -> Result<Recording, TraceError> {
        // Stop writing first, so that the drain ends and the loss counters are final.
        let off = tracefs::write(&self.dir.join("tracing_on"), "0", false);
        self.stop.store(true, Ordering::Release);
        if let Some(h) = &self.reader {
            h.thread().unpark();
        }
        // The instance goes as soon as the reader has closed its pipes: its removal waits for
        // RCU grace periods (docs/performance.md), and the reader names the last stacks meanwhile.
        // A reader that died drops the sender, which ends the wait too.
        if let Some(rx) = self.closed.take() {
            let _ = rx.recv();
        }
        // The per-CPU stats and the sub-buffer flags count the same losses: take the larger.
        let lost = tracefs::lost_events(&self.dir);
        let removed = self.remove();
        let agg = match self.reader.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(TraceError::ReaderPanicked),
            None => Err(TraceError::ReaderPanicked),
        };
        off?;
        let (agg, missed, bpf_lost) = agg?;
        removed?;
        let mut rec = agg.finish(lost.max(missed) + bpf_lost);
        rec.sys_admin_via_bpf = self.bpf_pids.is_some();
        Ok(rec)
    }

    fn remove(&mut self) -> Result<(), TraceError> {
        if self.dir.as_os_str().is_empty() {
            return Ok(());
        }
        let r = tracefs::remove_instance(&self.dir);
        tracefs::release_mount(&self.root);
        self.dir = PathBuf::new();
        r
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.reader.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let _ = tracefs::write(&self.dir.join("tracing_on"), "0", false);
        let _ = self.remove();
    }
}

/// The loaded BPF side, or None after saying once why not (the recording then uses the
/// trigger for every check).
fn start_bpf(capture: Result<Capture, BpfError>) -> Option<Capture> {
    match capture {
        Ok(c) => Some(c),
        Err(e) => {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::warn!(
                    "capsa-trace: CAP_SYS_ADMIN checks fall back to the tracefs stacktrace trigger (slower, same report): {e}"
                )
            });
            None
        }
    }
}

fn spawn<F>(dir: &Path, f: F) -> Result<ReaderHandle, TraceError>
where
    F: FnOnce() -> ReaderResult + Send + 'static,
{
    std::thread::Builder::new()
        .name("capsa-trace-reader".into())
        .spawn(f)
        .map_err(|e| TraceError::io("spawn reader thread for", dir, e))
}

/// The text fallback: streams trace_pipe into the aggregator until told to stop, then drains.
/// The pipe is read non-blocking with a short sleep when empty: poll(2) on trace_pipe may wait
/// for the instance's `buffer_percent` fill level, and the stop flag must be seen promptly.
fn read_loop(
    mut file: File,
    path: PathBuf,
    mut agg: Aggregator,
    stop: Arc<AtomicBool>,
    closed: Sender<()>,
) -> ReaderResult {
    let mut buf = vec![0u8; 1 << 16];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Acquire);
        match file.read(&mut buf) {
            Ok(n) if n > 0 => {
                feed(&mut agg, &mut partial, &buf[..n]);
                continue;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TraceError::io("read", &path, e)),
        }
        if stopping {
            // Empty after the stop flag was set, with tracing already off: drained.
            break;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(READ_PAUSE_MS));
    }
    drop(file);
    let _ = closed.send(());
    if !partial.is_empty() {
        agg.line(&String::from_utf8_lossy(&partial));
    }
    Ok((agg, 0, 0))
}

fn feed(agg: &mut Aggregator, partial: &mut Vec<u8>, data: &[u8]) {
    partial.extend_from_slice(data);
    let Some(last_nl) = partial.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    for line in partial[..last_nl].split(|&b| b == b'\n') {
        agg.line(&String::from_utf8_lossy(line));
    }
    partial.drain(..=last_nl);
}
