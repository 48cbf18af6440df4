//! The BPF side of a recording: CAP_SYS_ADMIN checks of the traced processes, taken by a raw
//! tracepoint program on `cap_capable` instead of the tracefs `stacktrace` trigger.
//!
//! Why: every exec makes ~8 overcommit CAP_SYS_ADMIN probes (cap_vm_enough_memory on each
//! VM_ACCOUNT mmap/brk and fork), and the trigger's full kernel stack walk for each was most of
//! the recording's cost (docs/performance.md). Their tracepoint fields equal those of a real
//! `capable(CAP_SYS_ADMIN)`, so only the call path tells them apart. The program recognizes the
//! probe from two kernel stack slots measured at start ([`progs::Fast`], no unwinding), else
//! takes a short stack, and a full one only when no frame lies in an overcommit function.
//! Classification stays in user space ([`crate::classify`]) on whatever stack was taken.
//!
//! Owns the programs, maps and links of one recording, all held by file descriptors only
//! (nothing pinned): they go away when the recording ends or capsa dies. Must not touch
//! tracefs (the [`crate::recorder`] sets the instance's filter and clock).

pub mod btf;
pub mod insn;
pub mod progs;
pub mod record;
pub mod sys;

use std::os::fd::OwnedFd;

use crate::kallsyms::Symbols;
use progs::{Layout, Maps};
pub use record::Record;

/// Ring buffer data size: 4 MiB, like one tracefs per-CPU buffer (a record is 40-552 bytes).
const RING_SIZE: usize = 4 << 20;
/// Traced pids at once (preallocated hash map, ~2 MB): more forks than this count as lost.
const MAX_PIDS: u32 = 32768;

/// Why the BPF side could not be set up; the recorder then falls back to the trigger.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "{op} ({what}): {errno} (needs root with CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, and a kernel with BPF syscall and raw tracepoint support)"
    )]
    Syscall {
        op: &'static str,
        what: String,
        errno: rustix::io::Errno,
    },
    #[error(
        "the kernel refused BPF program {prog}: {errno}; verifier log (last lines, newest first): {log}"
    )]
    Load {
        prog: String,
        errno: rustix::io::Errno,
        log: String,
    },
    #[error(
        "cannot read {}: {reason} (CONFIG_DEBUG_INFO_BTF is needed to find task_struct.pid and the tracepoint arguments)",
        btf::VMLINUX
    )]
    Btf { reason: String },
    #[error("/proc/kallsyms has no {0} (needed to tell overcommit probes apart in the kernel)")]
    Symbol(&'static str),
    #[error("cannot assemble BPF program {0}: {1}")]
    Asm(String, insn::AsmError),
}

/// The loaded and attached programs of one recording.
#[derive(Debug)]
pub struct Capture {
    pids: OwnedFd,
    lost: OwnedFd,
    ring: sys::RingMap,
    /// Links first: dropping them detaches the programs (the Vec drops in order).
    links: Vec<OwnedFd>,
    _progs: Vec<OwnedFd>,
    _events: OwnedFd,
    cap_capable: (u64, u64),
    fast: bool,
    /// Records read: overcommit probes without a walk, with the short walk, full stacks.
    counts: [u64; 3],
}

/// The argument index of `name` among a raw tracepoint's arguments, from BTF.
fn arg_index(b: &btf::Btf, tp: &str, name: &str) -> Result<usize, BpfError> {
    b.raw_tp_args(tp)
        .and_then(|args| args.iter().position(|a| a == name))
        .ok_or_else(|| BpfError::Btf {
            reason: format!("no argument {name} of raw tracepoint {tp}"),
        })
}

/// What BTF says about this kernel: the `task_struct.pid` offset and the tracepoint argument
/// positions. Read on its own thread while the instance is made (~15 ms for 5.5 MB of BTF).
#[derive(Debug, Clone, Copy)]
pub struct KernelLayout {
    pid_offset: i32,
    cap_arg: usize,
    ret_arg: usize,
    fork_child_arg: usize,
    free_task_arg: usize,
}

impl KernelLayout {
    pub fn read() -> Result<KernelLayout, BpfError> {
        let b = btf::Btf::vmlinux().map_err(|e| BpfError::Btf {
            reason: e.to_string(),
        })?;
        let pid_offset = b
            .member_offset("task_struct", "pid")
            .and_then(|o| i32::try_from(o).ok())
            .ok_or_else(|| BpfError::Btf {
                reason: "no member pid in struct task_struct".into(),
            })?;
        Ok(KernelLayout {
            pid_offset,
            cap_arg: arg_index(&b, "cap_capable", "cap")?,
            ret_arg: arg_index(&b, "cap_capable", "ret")?,
            fork_child_arg: arg_index(&b, "sched_process_fork", "child")?,
            free_task_arg: arg_index(&b, "sched_process_free", "p")?,
        })
    }
}

fn layout(k: KernelLayout, syms: &Symbols) -> Result<Layout, BpfError> {
    let probe_ranges: Vec<(u64, u64)> = crate::classify::overcommit_frames()
        .filter_map(|f| syms.range(f))
        .collect();
    if probe_ranges.is_empty() {
        return Err(BpfError::Symbol("security_vm_enough_memory_mm"));
    }
    Ok(Layout {
        cap_arg: k.cap_arg,
        ret_arg: k.ret_arg,
        fork_child_arg: k.fork_child_arg,
        free_task_arg: k.free_task_arg,
        pid_offset: k.pid_offset,
        probe_ranges,
        fast: None,
    })
}

/// The name of one of this process's BPF objects: `capsa<pid>_<role>` (at most 14 bytes, under
/// the kernel's 16 with the NUL), so that tests and people can tell whose they are. Roles: `c`
/// cap_capable, `k` calibration, `f` fork, `x` free programs; `p` pid, `l` lost, `r` ring maps.
pub fn name(role: char) -> String {
    format!("capsa{}_{role}", rustix::process::getpid().as_raw_nonzero())
}

fn load(name: &str, prog: Result<Vec<insn::Insn>, insn::AsmError>) -> Result<OwnedFd, BpfError> {
    let insns = prog.map_err(|e| BpfError::Asm(name.to_string(), e))?;
    sys::prog_load(name, &insn::bytes(&insns))
}

impl Capture {
    /// Loads and attaches the programs, following `pid` and the children it forks from now on.
    /// `syms` names the overcommit functions and `cap_capable` (their address ranges).
    pub fn start(pid: i32, kernel: KernelLayout, syms: &Symbols) -> Result<Capture, BpfError> {
        use std::os::fd::AsRawFd;
        let cap_capable = syms
            .range("cap_capable")
            .ok_or(BpfError::Symbol("cap_capable"))?;
        let mut l = layout(kernel, syms)?;
        let pids = sys::map_create(&name('p'), sys::MAP_TYPE_HASH, 4, 4, MAX_PIDS)?;
        let lost = sys::map_create(&name('l'), sys::MAP_TYPE_ARRAY, 4, 8, 1)?;
        let events = sys::map_create(&name('r'), sys::MAP_TYPE_RINGBUF, 0, 0, RING_SIZE as u32)?;
        let ring = sys::RingMap::new(&events, RING_SIZE)?;
        // The root pid goes in before anything is attached, as set_event_pid before enable.
        sys::map_update(&pids, &pid.to_ne_bytes(), &1u32.to_ne_bytes())?;
        let maps = Maps {
            pids: pids.as_raw_fd(),
            events: events.as_raw_fd(),
            lost: lost.as_raw_fd(),
        };
        let fork = load(&name('f'), progs::fork(&l, maps))?;
        let free = load(&name('x'), progs::free(&l, maps))?;
        let (fast, calibration_link) = calibrate(&l, maps, &ring, cap_capable)?;
        l.fast = fast;
        let cap = load(&name('c'), progs::cap_capable(&l, maps))?;
        // Fork tracking first, so that no child escapes between the attachments.
        let links = vec![
            sys::raw_tracepoint_open("sched_process_fork", &fork)?,
            sys::raw_tracepoint_open("sched_process_free", &free)?,
            sys::raw_tracepoint_open("cap_capable", &cap)?,
        ];
        // Detached only now: going from two probes on cap_capable to one and back to two would
        // wait for an RCU grace period (tp_rcu_cond_sync, kernel/tracepoint.c), ~15 ms.
        drop(calibration_link);
        tracing::debug!("capsa-trace: overcommit fast path: {:?}", l.fast);
        Ok(Capture {
            fast: l.fast.is_some(),
            counts: [0; 3],
            pids,
            lost,
            ring,
            links,
            _progs: vec![fork, free, cap],
            _events: events,
            cap_capable,
        })
    }

    /// Whether overcommit probes are recognized without an unwind ([`progs::Fast`]).
    pub fn fast(&self) -> bool {
        self.fast
    }

    /// A second handle on the traced-pid map, for [`add_pid`] from another thread.
    pub fn pid_map(&self) -> std::io::Result<OwnedFd> {
        self.pids.try_clone()
    }

    /// Detaches the programs (no new records); the ring stays readable.
    pub fn detach(&mut self) {
        self.links.clear();
    }

    /// Reads every committed record, glue frames stripped. Returns how many were read.
    pub fn drain(&mut self, mut each: impl FnMut(Record)) -> usize {
        let cap_capable = self.cap_capable;
        let counts = &mut self.counts;
        record::drain(&self.ring, |payload| {
            if let Some(mut r) = record::decode(payload) {
                let before = r.stack.len();
                record::strip_glue(&mut r.stack, cap_capable);
                // The fast path writes exactly the two frames after the glue.
                let kind = match (r.short, before == r.stack.len() && before == 2) {
                    (true, true) => 0,
                    (true, false) => 1,
                    (false, _) => 2,
                };
                counts[kind] += 1;
                each(r);
            }
        })
    }

    /// Records read so far: overcommit probes taken without an unwind, with the short walk,
    /// and checks with a full stack.
    pub fn counts(&self) -> [u64; 3] {
        self.counts
    }

    /// Records the programs could not write (ring full) and forks they could not follow.
    pub fn lost(&self) -> u64 {
        sys::map_lookup_u64(&self.lost, &0u32.to_ne_bytes()).unwrap_or(0)
    }
}

/// Measures [`progs::Fast`]: a calibration program records the stack of one overcommit probe
/// that this thread makes (a private writable mapping is charged, mm/vma.c, and
/// security_vm_enough_memory_mm asks cap_vm_enough_memory). The cap_capable tracepoint must
/// already have its tracefs probe, so that the glue is the one of the recording. `None` (the
/// walk for every probe) when anything differs from what the fast path expects. Returns the
/// calibration program's link too, for the caller to drop once its own program is attached.
fn calibrate(
    l: &Layout,
    maps: Maps,
    ring: &sys::RingMap,
    cap_capable: (u64, u64),
) -> Result<(Option<progs::Fast>, OwnedFd), BpfError> {
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    let prog = load(&name('k'), progs::calibrate(l, maps, tid))?;
    let link = sys::raw_tracepoint_open("cap_capable", &prog)?;
    sys::charged_mapping()?;
    let mut fast = None;
    let mut n = 0;
    record::drain(ring, |p| {
        n += 1;
        fast = record::calibration(p, cap_capable, &l.probe_ranges);
    });
    // More than one record: something else asked in between; do not trust it.
    Ok((fast.filter(|_| n == 1), link))
}

/// Follows one more pid (a `capsa exec` into the container), given the map from
/// [`Capture::pid_map`].
pub fn add_pid(pids: &OwnedFd, pid: i32) -> Result<(), BpfError> {
    sys::map_update(pids, &pid.to_ne_bytes(), &1u32.to_ne_bytes())
}
