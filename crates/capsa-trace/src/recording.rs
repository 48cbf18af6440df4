//! Turning a stream of trace events into a `Recording`: per-process state, the phase gate, and
//! aggregation of checks by capability, class, kernel path and executable. Events come typed from
//! the raw reader ([`crate::pipe_raw`], stacks already paired) or as text lines from the
//! fallback reader ([`Aggregator::line`], which pairs stacks by CPU here).
//!
//! Owns the meaning of the event sequence. Reads only `/proc/PID/{root,cwd,mem}` and the
//! `security.capability` xattr of executed files; must not touch tracefs.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use capsa_caps::{Cap, CapSet};
use serde::{Serialize, Serializer};

use crate::classify::{self, Class};
use crate::event::{Header, Line, parse_line};
use crate::filecaps::{self, FileCaps};

const EPERM: i32 = 1;

pub(crate) fn ser_cap<S: Serializer>(cap: &Cap, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&cap.oci_name())
}

pub(crate) fn ser_caps<S: Serializer>(caps: &CapSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(caps.iter().map(|c| c.oci_name()))
}

/// Checks that share a capability, class, kernel path and executable, with one example process.
#[derive(Debug, Clone, Serialize)]
pub struct CheckSummary {
    #[serde(serialize_with = "ser_cap")]
    pub cap: Cap,
    pub class: Class,
    /// ret == 0 (probes keep both outcomes; Required/Denied already say it).
    pub granted: bool,
    /// The first kernel frame after the capability functions (`inet_create`).
    pub path: String,
    /// The syscall entry frame (`__x64_sys_socket`), if the stack reached one.
    pub syscall: Option<String>,
    pub pid: i32,
    pub comm: String,
    pub exe: Option<String>,
    pub count: u64,
    /// A granted DAC_READ_SEARCH check from generic_permission: DAC_OVERRIDE also satisfies it.
    pub dac_alternative: bool,
}

/// A successful exec of a binary that carries file capabilities.
#[derive(Debug, Clone, Serialize)]
pub struct FileCapExec {
    pub pid: i32,
    pub exe: String,
    #[serde(serialize_with = "ser_caps")]
    pub permitted: CapSet,
    pub effective: bool,
}

/// An execve that failed with EPERM: the kernel refuses a capability-dumb file-cap binary whose
/// caps the bounding set lacks without any cap_capable event (cap-tracing.md §0).
#[derive(Debug, Clone, Serialize)]
pub struct FailedExec {
    pub pid: i32,
    pub comm: String,
    /// The path, when it could still be read from the process's memory.
    pub path: Option<String>,
    /// The file caps of that path, when known: the caps the exec needed.
    #[serde(serialize_with = "ser_caps")]
    pub needs: CapSet,
}

/// What one recording saw.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Recording {
    pub root_pid: i32,
    pub checks: Vec<CheckSummary>,
    pub file_cap_execs: Vec<FileCapExec>,
    pub failed_execs: Vec<FailedExec>,
    /// Events the kernel dropped because the reader fell behind (0 means complete).
    pub lost_events: u64,
    /// cap_capable events read in total, and those ignored before the first exec.
    pub events: u64,
    pub ignored_before_exec: u64,
    /// Whether the gated process ever exec'd (false: nothing after the gate was recorded).
    pub saw_exec: bool,
    /// Whether CAP_SYS_ADMIN checks were taken by the BPF program (false: the tracefs trigger
    /// took every check). The classification is the same either way.
    pub sys_admin_via_bpf: bool,
    /// Of those, overcommit probes the program recognized without a stack walk (its fast
    /// path, [`crate::bpf::progs::Fast`]).
    pub bpf_fast_probes: u64,
}

#[derive(Debug, Clone, Default)]
struct Proc {
    comm: String,
    exe: Option<String>,
    exec_ptr: Option<u64>,
}

#[derive(Debug)]
struct Pending {
    header: Header,
    cap: i32,
    ret: i32,
    stack: Vec<String>,
}

type Key = (Cap, Class, bool, String, Option<String>);

/// Consumes trace lines in order and aggregates them.
#[derive(Debug, Default)]
pub struct Aggregator {
    rec: Recording,
    /// Resolves container paths: exec filenames are relative to the process's root.
    rootfs: Option<PathBuf>,
    procs: HashMap<i32, Proc>,
    pending: HashMap<u32, Pending>,
    stack_cpu: Option<u32>,
    index: HashMap<Key, usize>,
}

impl Aggregator {
    pub fn new(root_pid: i32, rootfs: Option<PathBuf>) -> Aggregator {
        let rec = Recording {
            root_pid,
            ..Recording::default()
        };
        Aggregator {
            rec,
            rootfs,
            ..Aggregator::default()
        }
    }

    /// Feeds one complete line (without its newline).
    pub fn line(&mut self, text: &str) {
        let line = parse_line(text);
        if !matches!(line, Line::Frame(_)) {
            self.end_stack();
        }
        match line {
            Line::Frame(f) => {
                if let Some(p) = self.stack_cpu.and_then(|c| self.pending.get_mut(&c)) {
                    p.stack.push(f);
                }
            }
            Line::StackStart { header } => self.stack_cpu = Some(header.cpu),
            Line::CapCheck { header, cap, ret } => self.cap_check(header, cap, ret),
            Line::Exec {
                header,
                filename,
                pid,
            } => self.exec(&header, filename, pid),
            Line::Fork {
                header,
                child_pid,
                child_comm,
            } => self.fork(&header, child_pid, child_comm),
            Line::ExecEnter {
                header,
                filename_ptr,
            } => {
                self.procs.entry(header.pid).or_default().exec_ptr = Some(filename_ptr);
            }
            Line::ExecFailed { header, errno } if errno == EPERM => self.failed_exec(&header),
            Line::ExecFailed { .. } | Line::Other => {}
        }
    }

    /// How many overcommit probes the BPF program took without a stack walk.
    pub fn set_bpf_fast_probes(&mut self, n: u64) {
        self.rec.bpf_fast_probes = n;
    }

    /// Ends the recording: flushes checks still waiting for their stack.
    pub fn finish(mut self, lost_events: u64) -> Recording {
        self.end_stack();
        let cpus: Vec<u32> = self.pending.keys().copied().collect();
        for c in cpus {
            self.flush(c);
        }
        self.rec.lost_events = lost_events;
        self.rec
    }

    fn end_stack(&mut self) {
        if let Some(c) = self.stack_cpu.take() {
            self.flush(c);
        }
    }

    fn cap_check(&mut self, header: Header, cap: i32, ret: i32) {
        self.rec.events += 1;
        // A check on this CPU without a stack entry (trigger off, or stack lost): flush it first.
        self.flush(header.cpu);
        if !self.rec.saw_exec {
            // Phase gate: before the gated process execs, checks are the runtime's own
            // (capset, PR_CAPBSET_DROP, setgroups...), not the workload's.
            self.rec.ignored_before_exec += 1;
            return;
        }
        self.pending.insert(
            header.cpu,
            Pending {
                header,
                cap,
                ret,
                stack: Vec::new(),
            },
        );
    }

    fn flush(&mut self, cpu: u32) {
        if let Some(p) = self.pending.remove(&cpu) {
            self.record(&p.header, p.cap, p.ret, &p.stack);
        }
    }

    /// One cap_capable event with its stack (innermost first), from the raw reader, which pairs
    /// each check with the stack entry that follows it on the same CPU.
    pub fn check(&mut self, header: &Header, cap: i32, ret: i32, stack: &[String]) {
        self.rec.events += 1;
        if !self.rec.saw_exec {
            // Phase gate, as in the text path.
            self.rec.ignored_before_exec += 1;
            return;
        }
        self.record(header, cap, ret, stack);
    }

    fn record(&mut self, header: &Header, cap: i32, ret: i32, stack: &[String]) {
        let Some(cap) = u8::try_from(cap).ok().and_then(Cap::from_index) else {
            return;
        };
        let class = classify::classify(cap, ret == 0, stack, header.in_interrupt());
        let path = classify::caller(stack).unwrap_or("?").to_string();
        let proc_ = self.procs.get(&header.pid);
        let exe = proc_.and_then(|x| x.exe.clone());
        let key = (cap, class, ret == 0, path.clone(), exe.clone());
        if let Some(&i) = self.index.get(&key) {
            self.rec.checks[i].count += 1;
            return;
        }
        let comm = proc_
            .map(|x| x.comm.clone())
            .unwrap_or_else(|| comm_of(header));
        let syscall = stack.iter().rev().find(|f| f.contains("_sys_")).cloned();
        let dac_alternative = ret == 0 && classify::dac_alternative(cap, stack);
        self.index.insert(key, self.rec.checks.len());
        self.rec.checks.push(CheckSummary {
            cap,
            class,
            granted: ret == 0,
            path,
            syscall,
            pid: header.pid,
            comm,
            exe,
            count: 1,
            dac_alternative,
        });
    }

    /// A fork: the child runs the parent's executable until it execs.
    pub fn fork(&mut self, header: &Header, child_pid: i32, child_comm: String) {
        let exe = self.procs.get(&header.pid).and_then(|p| p.exe.clone());
        self.procs.insert(
            child_pid,
            Proc {
                comm: child_comm,
                exe,
                exec_ptr: None,
            },
        );
    }

    /// A successful exec of `filename` by `pid`.
    pub fn exec(&mut self, header: &Header, filename: String, pid: i32) {
        if pid == self.rec.root_pid {
            self.rec.saw_exec = true;
        }
        // The kernel sets comm to the file's basename on exec; the printed comm may be stale.
        let comm = filename.rsplit('/').next().unwrap_or(&filename).to_string();
        if self.rec.saw_exec
            && let Some(fc) = self.file_caps_of(header.pid, &filename)
        {
            self.rec.file_cap_execs.push(FileCapExec {
                pid,
                exe: filename.clone(),
                permitted: fc.permitted,
                effective: fc.effective,
            });
        }
        self.procs.insert(
            pid,
            Proc {
                comm,
                exe: Some(filename),
                exec_ptr: None,
            },
        );
    }

    /// An execve that returned `errno`; only EPERM matters (a refused file-cap binary).
    pub fn exec_failed(&mut self, header: &Header, errno: i32) {
        if errno == EPERM {
            self.failed_exec(header);
        }
    }

    fn failed_exec(&mut self, header: &Header) {
        if !self.rec.saw_exec {
            return;
        }
        let ptr = self.procs.get(&header.pid).and_then(|p| p.exec_ptr);
        let path = ptr.and_then(|p| read_user_string(header.pid, p));
        let needs = path
            .as_deref()
            .and_then(|f| self.file_caps_of(header.pid, f))
            .map(|fc| fc.permitted)
            .unwrap_or_default();
        let comm = self
            .procs
            .get(&header.pid)
            .map(|p| p.comm.clone())
            .unwrap_or_else(|| comm_of(header));
        self.rec.failed_execs.push(FailedExec {
            pid: header.pid,
            comm,
            path,
            needs,
        });
    }

    /// Reads the file caps of an exec'd path as the process sees it: through /proc/PID/root
    /// while the process lives, else under the rootfs the caller named, else on the host.
    fn file_caps_of(&self, pid: i32, filename: &str) -> Option<FileCaps> {
        let candidates = exec_path_candidates(pid, filename, self.rootfs.as_deref());
        candidates.iter().find_map(|p| filecaps::read(p))
    }
}

/// The comm of a process we saw no fork or exec for: the text header's (read from the kernel's
/// saved_cmdlines), else the live process's, else `?` (raw events carry no comm).
fn comm_of(header: &Header) -> String {
    if !header.comm.is_empty() {
        return header.comm.clone();
    }
    std::fs::read_to_string(format!("/proc/{}/comm", header.pid))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

fn exec_path_candidates(pid: i32, filename: &str, rootfs: Option<&Path>) -> Vec<PathBuf> {
    let rel = filename.trim_start_matches('/');
    let mut out = Vec::new();
    if filename.starts_with('/') {
        out.push(PathBuf::from(format!("/proc/{pid}/root")).join(rel));
        if let Some(r) = rootfs {
            out.push(r.join(rel));
        } else {
            out.push(PathBuf::from(filename));
        }
    } else {
        out.push(PathBuf::from(format!("/proc/{pid}/cwd")).join(rel));
    }
    out
}

/// Reads a NUL-terminated string from another process's memory (best effort: the process may
/// be gone or the buffer reused by the time the reader sees the event).
fn read_user_string(pid: i32, addr: u64) -> Option<String> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = [0u8; 4096];
    let n = mem.read_at(&mut buf, addr).ok()?;
    let end = buf[..n].iter().position(|&b| b == 0)?;
    let s = std::str::from_utf8(&buf[..end]).ok()?;
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "\
  sh-10 [000] .....   1.0: cap_capable: cred 0, target_ns 1, capable_ns 1, cap 8, ret 0
  sh-10 [000] .....   1.0: <stack trace>
 => trace_event_raw_event_cap_capable
 => cap_capable
 => cap_capset
  sh-10 [000] .....   1.1: sched_process_exec: filename=/nonexistent/ping pid=10 old_pid=10
  ping-10 [001] .....   1.2: cap_capable: cred 0, target_ns 1, capable_ns 1, cap 21, ret 0
  ping-10 [000] .....   1.2: cap_capable: cred 0, target_ns 1, capable_ns 1, cap 13, ret 0
  ping-10 [001] .....   1.2: <stack trace>
 => cap_capable
 => security_vm_enough_memory_mm
  ping-10 [000] .....   1.2: <stack trace>
 => cap_capable
 => ns_capable
 => inet_create
 => __sys_socket
 => __x64_sys_socket
  ping-10 [000] .....   1.3: cap_capable: cred 0, target_ns 1, capable_ns 1, cap 13, ret 0
  ping-10 [000] .....   1.3: <stack trace>
 => cap_capable
 => ns_capable
 => inet_create
  ping-10 [000] .....   1.4: sched_process_fork: comm=ping pid=10 child_comm=chown child_pid=11
  chown-11 [000] .....   1.5: cap_capable: cred 0, target_ns 1, capable_ns 0, cap 0, ret -1
";

    #[test]
    fn gate_pairs_and_aggregates() {
        let mut a = Aggregator::new(10, None);
        for l in TRACE.lines() {
            a.line(l);
        }
        let r = a.finish(0);
        assert!(r.saw_exec);
        assert_eq!((r.events, r.ignored_before_exec), (5, 1));
        let find = |n: u8| r.checks.iter().find(|c| c.cap.index() == n);
        let raw = find(13).unwrap_or_else(|| unreachable!());
        assert_eq!(
            (raw.class, raw.count, raw.path.as_str()),
            (Class::Required, 2, "inet_create")
        );
        assert_eq!(raw.exe.as_deref(), Some("/nonexistent/ping"));
        assert_eq!(raw.syscall.as_deref(), Some("__x64_sys_socket"));
        let admin = find(21).unwrap_or_else(|| unreachable!());
        assert!(matches!(admin.class, Class::Probe(_)));
        let chown = find(0).unwrap_or_else(|| unreachable!());
        assert_eq!(
            (chown.class, chown.comm.as_str(), chown.path.as_str()),
            (Class::Denied, "chown", "?")
        );
        assert!(find(8).is_none(), "the capset before exec is gated out");
    }
}
