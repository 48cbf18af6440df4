//! The binary reader: one thread drains every `per_cpu/cpuN/trace_pipe_raw` of the instance
//! and the BPF ring buffer ([`crate::bpf`]), pairs each cap_capable event with the stack entry
//! that follows it on the same CPU, merges everything in timestamp order and feeds the
//! [`Aggregator`].
//!
//! Owns the reading of the instance's per-CPU raw pipes and the event order. Must not write to
//! tracefs (the [`crate::recorder`] owns the settings) nor decide what an event means (that is
//! the aggregator's job).
//!
//! Why raw: the text `trace_pipe` makes the kernel format every stack frame with a symbol lookup
//! at read time, and the reader parse it back, for ~8 stacks per exec. Raw pages are copied as
//! they are, and each distinct stack is named once from /proc/kallsyms (or its per-boot cache).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::TraceError;
use crate::bpf::Capture;
use crate::event::Header;
use crate::kallsyms::Symbols;
use crate::rawevent::{Decoder, RawEvent};
use crate::recording::Aggregator;
use crate::ringbuf::{self, PageLayout};

/// Events newer than the newest seen minus this (plus the time the round took) wait for the
/// next round: a CPU read earlier in the round may still get older events committed. Without
/// the BPF side the instance keeps the default `local` trace clock (sched_clock, comparable
/// across CPUs when the TSC is stable, as on this x86 VM); with it, `mono`, the clock of the BPF
/// records' timestamps (the switch resets the buffers and waits a grace period at setup).
const ORDER_MARGIN: Duration = Duration::from_millis(10);

/// The raw pipes of one instance, opened before tracing is switched on.
pub struct RawPipes {
    cpus: Vec<Cpu>,
    symbols: Symbols,
    /// The BPF side's CAP_SYS_ADMIN records, drained in the same rounds.
    bpf: Option<Capture>,
    layout: PageLayout,
    decoder: Decoder,
    page_size: usize,
}

struct Cpu {
    cpu: u32,
    file: File,
    path: PathBuf,
    /// A check whose stack entry has not been read yet.
    check: Option<Timed>,
}

/// A decoded event with its timestamp and CPU, waiting to be fed in order.
struct Timed {
    ts: u64,
    cpu: u32,
    event: RawEvent,
    stack: Vec<u64>,
    /// From the BPF ring (no interrupt flag: it is read from the stack instead).
    bpf: bool,
}

fn cpu_number(name: &str) -> Option<u32> {
    name.strip_prefix("cpu")?.parse().ok()
}

impl RawPipes {
    /// Opens `per_cpu/cpu*/trace_pipe_raw` non-blocking and reads the layouts.
    ///
    /// The sub-buffer size is left at the kernel's default (one page): a read returns one
    /// sub-buffer, ~750 reads for 2000 execs of /bin/true, which costs little, while writing
    /// `buffer_subbuf_size_kb` reallocates the buffer (20-25 ms at setup, docs/performance.md).
    pub fn open(
        dir: &Path,
        symbols: Symbols,
        bpf: Option<Capture>,
    ) -> Result<RawPipes, TraceError> {
        let header = dir.join("events/header_page");
        let text = read_once(&header)?;
        let layout = PageLayout::parse(&text).ok_or(TraceError::Format { path: header })?;
        let page_size = subbuf_size(dir, &layout);
        let decoder = Decoder::load(&dir.join("events"))?;
        let per_cpu = dir.join("per_cpu");
        let entries =
            std::fs::read_dir(&per_cpu).map_err(|e| TraceError::io("readdir", &per_cpu, e))?;
        let mut cpus = Vec::new();
        for entry in entries.flatten() {
            let Some(cpu) = cpu_number(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let path = entry.path().join("trace_pipe_raw");
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&path);
            match file {
                Ok(file) => cpus.push(Cpu {
                    cpu,
                    file,
                    path,
                    check: None,
                }),
                // A possible but offline CPU has no buffer (ENODEV): nothing will be written there.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => {}
                Err(e) => return Err(TraceError::io("open", &path, e)),
            }
        }
        Ok(RawPipes {
            cpus,
            symbols,
            bpf,
            layout,
            decoder,
            page_size,
        })
    }

    /// Reads until told to stop, then drains what is left, closes the pipes and says so on
    /// `closed` (the instance can be removed from then on, while the last events are named).
    /// Returns the aggregator, the events the sub-buffer headers said were lost, and the
    /// records and forks the BPF side lost. Between
    /// reads it parks for `pause`; [`std::thread::Thread::unpark`] ends the pause early.
    pub fn read_loop(
        mut self,
        mut agg: Aggregator,
        stop: Arc<AtomicBool>,
        pause: Duration,
        closed: Sender<()>,
    ) -> Result<(Aggregator, u64, u64), TraceError> {
        let mut symbols = std::mem::take(&mut self.symbols);
        let mut page = vec![0u8; self.page_size];
        let mut queue: Vec<Timed> = Vec::new();
        let mut missed = 0;
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let started = Instant::now();
            let mut got = false;
            if stopping && let Some(b) = &mut self.bpf {
                b.detach();
            }
            for i in 0..self.cpus.len() {
                got |= self.drain_cpu(i, &mut page, &mut queue, &mut missed)?;
            }
            got |= self.drain_bpf(&mut queue);
            if stopping && !got {
                // Empty after the stop flag was set, with tracing already off: drained.
                break;
            }
            let bound = self.bound(&queue, started.elapsed());
            feed(&mut agg, &mut queue, bound, &mut symbols);
            if !got {
                std::thread::park_timeout(pause);
            }
        }
        for c in &mut self.cpus {
            queue.extend(c.check.take());
        }
        self.cpus.clear();
        let _ = closed.send(());
        // The capture goes while the instance is removed: dropping it closes the programs and
        // maps (nothing is pinned) and unmaps the ring.
        let bpf = self.bpf.take().map(|b| {
            tracing::debug!(
                "capsa-trace: BPF records (probes without a walk, with a walk, full): {:?}",
                b.counts()
            );
            (b.lost(), b.counts()[0])
        });
        let (bpf_lost, fast) = bpf.unwrap_or((0, 0));
        agg.set_bpf_fast_probes(fast);
        feed(&mut agg, &mut queue, u64::MAX, &mut symbols);
        Ok((agg, missed, bpf_lost))
    }

    /// Queues the BPF ring's records. Returns whether there were any.
    fn drain_bpf(&mut self, queue: &mut Vec<Timed>) -> bool {
        let Some(b) = &mut self.bpf else {
            return false;
        };
        let n = b.drain(|r| {
            queue.push(Timed {
                ts: r.ts,
                cpu: 0,
                event: RawEvent::Check {
                    pid: r.pid,
                    interrupt: false,
                    cap: r.cap,
                    ret: r.ret,
                },
                stack: r.stack,
                bpf: true,
            })
        });
        n > 0
    }

    /// Reads one CPU's pipe until it is empty. Returns whether anything was read.
    fn drain_cpu(
        &mut self,
        i: usize,
        page: &mut [u8],
        queue: &mut Vec<Timed>,
        missed: &mut u64,
    ) -> Result<bool, TraceError> {
        let mut got = false;
        loop {
            let c = &mut self.cpus[i];
            let n = match c.file.read(page) {
                Ok(0) => return Ok(got),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(got),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TraceError::io("read", &c.path, e)),
            };
            got = true;
            let parsed = ringbuf::parse_page(&page[..n], &self.layout).map_err(|source| {
                TraceError::Page {
                    path: c.path.clone(),
                    source,
                }
            })?;
            if let Some(m) = parsed.missed {
                // The count is not always stored; the flag alone means at least one.
                *missed += m.max(1);
            }
            for (ts, payload) in parsed.events {
                if let Some(event) = self.decoder.decode(payload) {
                    pair(c, ts, event, queue);
                }
            }
        }
    }

    /// The newest timestamp that is safe to feed: every CPU was read to empty after it.
    fn bound(&self, queue: &[Timed], round: Duration) -> u64 {
        let newest = queue.iter().map(|t| t.ts).max().unwrap_or(0);
        let margin = (ORDER_MARGIN + round).as_nanos() as u64;
        let waiting = self
            .cpus
            .iter()
            .filter_map(|c| c.check.as_ref())
            .map(|t| t.ts);
        waiting.fold(newest.saturating_sub(margin), |b, ts| {
            b.min(ts.saturating_sub(1))
        })
    }
}

/// The instance's sub-buffer size: `buffer_subbuf_size_kb` (Linux 6.8+), else what the
/// instance's header_page says (data offset + data size). Reading less than a sub-buffer would
/// split it across reads.
fn subbuf_size(dir: &Path, layout: &PageLayout) -> usize {
    std::fs::read_to_string(dir.join("buffer_subbuf_size_kb"))
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .filter(|&b| b > 0)
        .unwrap_or(layout.data_offset + layout.data_size)
}

/// Reads a tracefs file that answers only the first read (`show_header_page_file` returns 0
/// for any read at a non-zero offset), so `read_to_string`'s small first read would cut it.
fn read_once(path: &Path) -> Result<String, TraceError> {
    let mut f = File::open(path).map_err(|e| TraceError::io("open", path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    let n = loop {
        match f.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.map_err(|e| TraceError::io("read", path, e))?,
        }
    };
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Pairs per CPU: the `stacktrace` trigger writes the stack entry right after the cap_capable
/// event it belongs to, on the same CPU (event_triggers_post_call after the commit).
fn pair(c: &mut Cpu, ts: u64, event: RawEvent, queue: &mut Vec<Timed>) {
    match event {
        RawEvent::Stack(addrs) => {
            if let Some(mut check) = c.check.take() {
                check.stack = addrs;
                queue.push(check);
            }
        }
        RawEvent::Check { .. } => {
            queue.extend(c.check.take());
            c.check = Some(Timed {
                ts,
                cpu: c.cpu,
                event,
                stack: Vec::new(),
                bpf: false,
            });
        }
        other => {
            queue.extend(c.check.take());
            queue.push(Timed {
                ts,
                cpu: c.cpu,
                event: other,
                stack: Vec::new(),
                bpf: false,
            });
        }
    }
}

/// Feeds the queued events with `ts <= bound` in timestamp order (stable: one CPU's events
/// with equal stamps keep their order) and keeps the rest.
fn feed(agg: &mut Aggregator, queue: &mut Vec<Timed>, bound: u64, symbols: &mut Symbols) {
    queue.sort_by_key(|t| t.ts);
    let n = queue.partition_point(|t| t.ts <= bound);
    for t in queue.drain(..n) {
        deliver(agg, t, symbols);
    }
}

fn deliver(agg: &mut Aggregator, t: Timed, symbols: &mut Symbols) {
    let header = |pid: i32, interrupt: bool| Header {
        comm: String::new(),
        pid,
        cpu: t.cpu,
        interrupt,
    };
    match t.event {
        RawEvent::Check {
            pid,
            interrupt,
            cap,
            ret,
        } => {
            let names = symbols.stack(&t.stack);
            // tracefs takes the flag from preempt_count; a BPF record has only its stack.
            let interrupt = interrupt || (t.bpf && crate::classify::irq_stack(&names));
            agg.check(&header(pid, interrupt), cap, ret, &names);
        }
        RawEvent::Exec { pid, filename } => agg.exec(&header(pid, false), filename, pid),
        RawEvent::Fork {
            pid,
            child_pid,
            child_comm,
        } => agg.fork(&header(pid, false), child_pid, child_comm),
        RawEvent::ExecFailed { pid, ret } => {
            agg.exec_failed(&header(pid, false), i32::try_from(-ret).unwrap_or(0))
        }
        RawEvent::Stack(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_dirs() {
        assert_eq!(cpu_number("cpu12"), Some(12));
        assert_eq!(cpu_number("stats"), None);
    }

    fn cpu(n: u32) -> Cpu {
        let path = PathBuf::from("/dev/null");
        let file = File::open(&path).unwrap_or_else(|e| panic!("/dev/null: {e}"));
        Cpu {
            cpu: n,
            file,
            path,
            check: None,
        }
    }

    fn check(pid: i32, cap: i32) -> RawEvent {
        RawEvent::Check {
            pid,
            interrupt: false,
            cap,
            ret: 0,
        }
    }

    /// Two CPUs read one after the other: stacks pair per CPU, the merge follows the
    /// timestamps (the capset before the exec on the other CPU is gated out), and a check
    /// still waiting for its stack holds back later events until the final drain.
    #[test]
    fn pairs_per_cpu_and_merges_by_time() {
        let mut syms = Symbols::parse(
            "ffffffff81000000 T cap_capable\n\
             ffffffff81000100 T cap_capset\n\
             ffffffff81000200 T inet_create\n",
        );
        let (mut c0, mut c1) = (cpu(0), cpu(1));
        let mut q = Vec::new();
        let capset = RawEvent::Stack(vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_0110]);
        let socket = RawEvent::Stack(vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_0210]);
        let exec = RawEvent::Exec {
            pid: 10,
            filename: "/nonexistent/ping".into(),
        };
        // Events 100 ms apart, well beyond the ordering margin.
        let t = |k: u64| 1_000_000_000 + k * 100_000_000;
        pair(&mut c0, t(1), check(10, 8), &mut q);
        pair(&mut c0, t(2), capset, &mut q);
        pair(&mut c0, t(6), check(10, 13), &mut q);
        pair(&mut c0, t(7), socket, &mut q);
        pair(&mut c1, t(5), exec, &mut q);
        pair(&mut c1, t(8), check(10, 21), &mut q);
        assert_eq!(q.len(), 3, "the last check waits for its stack");
        let cap =
            "ID: 1\n\tfield:int cap;\toffset:32;\tsize:4;\n\tfield:int ret;\toffset:36;\tsize:4;\n";
        let cap = crate::rawevent::Format::parse(cap).unwrap_or_else(|| panic!("format"));
        let decoder = Decoder::from_formats(Some(&cap), None, None, None, None);
        let mut pipes = RawPipes {
            cpus: vec![c0, c1],
            symbols: Symbols::default(),
            bpf: None,
            layout: PageLayout::default(),
            decoder: decoder.unwrap_or_else(|| panic!("decoder")),
            page_size: 4096,
        };
        // The newest queued event (t6) minus the margin; the waiting check (t8) is later.
        let bound = pipes.bound(&q, Duration::ZERO);
        assert_eq!(bound, t(6) - ORDER_MARGIN.as_nanos() as u64);
        let mut agg = Aggregator::new(10, None);
        feed(&mut agg, &mut q, bound, &mut syms);
        assert_eq!(q.len(), 1, "the newest event waits for the next round");
        for c in &mut pipes.cpus {
            q.extend(c.check.take());
        }
        feed(&mut agg, &mut q, u64::MAX, &mut syms);
        let r = agg.finish(0);
        assert!(r.saw_exec);
        assert_eq!((r.events, r.ignored_before_exec), (3, 1));
        let raw = r.checks.iter().find(|c| c.cap.index() == 13);
        assert_eq!(raw.map(|c| c.path.as_str()), Some("inet_create"));
        let admin = r.checks.iter().find(|c| c.cap.index() == 21);
        assert_eq!(
            admin.map(|c| c.path.as_str()),
            Some("?"),
            "no stack: no path"
        );
    }
}
