//! The binary payloads of the events a recording enables, decoded with the offsets that each
//! event's `format` file gives (`events/<system>/<name>/format`), never hard-coded ones.
//!
//! Owns the meaning of `cap_capable`, `ftrace/kernel_stack` (what the `stacktrace` trigger
//! writes), `sched_process_exec`, `sched_process_fork` and `sys_exit_execve` payloads. Pure
//! apart from [`Decoder::load`], which reads the format files; must not write to tracefs.
//!
//! Every payload starts with the common fields (`common_type` u16 at 0, `common_flags` u8 at 2,
//! `common_pid` i32 at 4). A `__data_loc` field is a u32: the string's offset in the payload in
//! the low 16 bits, its length (with the NUL) in the high 16 bits (include/trace/stages).

use std::collections::HashMap;
use std::path::Path;

use crate::TraceError;

/// `TRACE_FLAG_HARDIRQ | TRACE_FLAG_SOFTIRQ | TRACE_FLAG_NMI` in `common_flags`
/// (kernel/trace/trace.h `enum trace_flag_type`): the event came from interrupt context.
const IRQ_FLAGS: u8 = 0x08 | 0x10 | 0x40;

/// `field:TYPE NAME;\toffset:N;\tsize:N;...` -> (NAME, offset, size). Arrays lose their `[n]`.
pub(crate) fn field_line(line: &str) -> Option<(&str, usize, usize)> {
    let mut parts = line.trim().split(';').map(str::trim);
    let decl = parts.next()?.strip_prefix("field:")?;
    let name = decl.rsplit(' ').next()?;
    let name = name.split('[').next()?;
    let mut offset = None;
    let mut size = None;
    for p in parts {
        if let Some(v) = p.strip_prefix("offset:") {
            offset = v.parse().ok();
        } else if let Some(v) = p.strip_prefix("size:") {
            size = v.parse().ok();
        }
    }
    Some((name, offset?, size?))
}

/// One event's `format` file: its id and field offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Format {
    pub id: u16,
    fields: HashMap<String, (usize, usize)>,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        let mut f = Format::default();
        let mut id = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("ID:") {
                id = v.trim().parse().ok();
            } else if let Some((name, off, size)) = field_line(line) {
                f.fields.insert(name.to_string(), (off, size));
            }
        }
        f.id = id?;
        Some(f)
    }

    fn field(&self, name: &str, size: usize) -> Option<usize> {
        self.fields
            .get(name)
            .filter(|(_, s)| *s == size)
            .map(|(o, _)| *o)
    }

    /// The offset of an array field, such as `caller` of kernel_stack.
    fn array(&self, name: &str) -> Option<usize> {
        self.fields.get(name).map(|(o, _)| *o)
    }
}

/// An event decoded from a payload. Stacks are raw kernel addresses, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    Check {
        pid: i32,
        interrupt: bool,
        cap: i32,
        ret: i32,
    },
    Stack(Vec<u64>),
    Exec {
        pid: i32,
        filename: String,
    },
    /// `pid` is the parent (the fork event is written by the parent).
    Fork {
        pid: i32,
        child_pid: i32,
        child_comm: String,
    },
    ExecFailed {
        pid: i32,
        ret: i64,
    },
}

/// Field offsets of the events we decode, read once per recording.
#[derive(Debug, Clone)]
pub struct Decoder {
    cap: (u16, usize, usize),
    stack: Option<(u16, usize, usize)>,
    exec: Option<(u16, usize, usize)>,
    fork: Option<(u16, usize, usize)>,
    exit_execve: Option<(u16, usize)>,
}

fn read_format(events: &Path, name: &str) -> Result<Option<Format>, TraceError> {
    let path = events.join(name).join("format");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Format::parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TraceError::io("read", &path, e)),
    }
}

impl Decoder {
    /// Reads the format files under `events` (the instance's or the top-level `events/`).
    pub fn load(events: &Path) -> Result<Decoder, TraceError> {
        let cap = read_format(events, "capability/cap_capable")?;
        let f = |n: &str| read_format(events, n);
        Decoder::from_formats(
            cap.as_ref(),
            f("ftrace/kernel_stack")?.as_ref(),
            f("sched/sched_process_exec")?.as_ref(),
            f("sched/sched_process_fork")?.as_ref(),
            f("syscalls/sys_exit_execve")?.as_ref(),
        )
        .ok_or_else(|| TraceError::Format {
            path: events.join("capability/cap_capable/format"),
        })
    }

    /// Builds the decoder; `None` if cap_capable lacks the `cap` or `ret` int fields.
    pub fn from_formats(
        cap: Option<&Format>,
        stack: Option<&Format>,
        exec: Option<&Format>,
        fork: Option<&Format>,
        exit_execve: Option<&Format>,
    ) -> Option<Decoder> {
        let c = cap?;
        Some(Decoder {
            cap: (c.id, c.field("cap", 4)?, c.field("ret", 4)?),
            stack: stack.and_then(|s| Some((s.id, s.field("size", 4)?, s.array("caller")?))),
            exec: exec.and_then(|e| Some((e.id, e.field("filename", 4)?, e.field("pid", 4)?))),
            fork: fork
                .and_then(|f| Some((f.id, f.field("child_comm", 4)?, f.field("child_pid", 4)?))),
            exit_execve: exit_execve.and_then(|x| Some((x.id, x.field("ret", 8)?))),
        })
    }

    /// Decodes one payload; `None` for events we did not ask for or that are cut short.
    pub fn decode(&self, p: &[u8]) -> Option<RawEvent> {
        let id = u16::from_le_bytes(p.get(0..2)?.try_into().ok()?);
        let pid = i32_at(p, 4)?;
        if id == self.cap.0 {
            return Some(RawEvent::Check {
                pid,
                interrupt: p.get(2)? & IRQ_FLAGS != 0,
                cap: i32_at(p, self.cap.1)?,
                ret: i32_at(p, self.cap.2)?,
            });
        }
        if let Some((sid, size, caller)) = self.stack
            && id == sid
        {
            // `size` is the number of entries the kernel saved (`entry->size = nr_entries` in
            // __ftrace_trace_stack); the event length bounds it.
            let n = usize::try_from(i32_at(p, size)?).ok()?;
            let room = p.len().saturating_sub(caller) / 8;
            let addrs = (0..n.min(room))
                .filter_map(|i| u64_at(p, caller + 8 * i))
                .filter(|&a| a != 0)
                .collect();
            return Some(RawEvent::Stack(addrs));
        }
        if let Some((eid, filename, epid)) = self.exec
            && id == eid
        {
            return Some(RawEvent::Exec {
                pid: i32_at(p, epid)?,
                filename: data_loc(p, filename)?,
            });
        }
        if let Some((fid, comm, child)) = self.fork
            && id == fid
        {
            return Some(RawEvent::Fork {
                pid,
                child_pid: i32_at(p, child)?,
                child_comm: data_loc(p, comm)?,
            });
        }
        if let Some((xid, ret)) = self.exit_execve
            && id == xid
        {
            return Some(RawEvent::ExecFailed {
                pid,
                ret: i64::from_le_bytes(p.get(ret..ret + 8)?.try_into().ok()?),
            });
        }
        None
    }
}

fn i32_at(p: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(p: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(p.get(at..at + 8)?.try_into().ok()?))
}

/// A `__data_loc char[]` string: offset in the low 16 bits, length in the high 16.
fn data_loc(p: &[u8], at: usize) -> Option<String> {
    let loc = u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?);
    let (off, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
    let bytes = p.get(off..off + len)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The format files of Linux 6.18 (cap-tracing.md §2-3), trimmed to what we read.
    const CAP: &str = "name: cap_capable\nID: 2073\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\
        \tfield:const struct cred * cred;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:int cap;\toffset:32;\tsize:4;\tsigned:1;\n\
        \tfield:int ret;\toffset:36;\tsize:4;\tsigned:1;\n";
    const STACK: &str = "name: kernel_stack\nID: 4\nformat:\n\
        \tfield:int size;\toffset:8;\tsize:4;\tsigned:1;\n\
        \tfield:unsigned long caller[8];\toffset:16;\tsize:64;\tsigned:0;\n";
    const EXEC: &str = "name: sched_process_exec\nID: 365\nformat:\n\
        \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n";
    const FORK: &str = "name: sched_process_fork\nID: 366\nformat:\n\
        \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
        \tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
        \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
    const EXIT: &str = "name: sys_exit_execve\nID: 861\nformat:\n\
        \tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\
        \tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\n";

    fn decoder() -> Decoder {
        let f = |t: &str| Format::parse(t).unwrap_or_else(|| panic!("format"));
        Decoder::from_formats(
            Some(&f(CAP)),
            Some(&f(STACK)),
            Some(&f(EXEC)),
            Some(&f(FORK)),
            Some(&f(EXIT)),
        )
        .unwrap_or_else(|| panic!("decoder"))
    }

    fn common(id: u16, flags: u8, pid: i32, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0..2].copy_from_slice(&id.to_le_bytes());
        p[2] = flags;
        p[4..8].copy_from_slice(&pid.to_le_bytes());
        p
    }

    #[test]
    fn cap_and_stack() {
        let d = decoder();
        let mut p = common(2073, 0x10, 7, 40);
        p[32..36].copy_from_slice(&21i32.to_le_bytes());
        p[36..40].copy_from_slice(&(-1i32).to_le_bytes());
        let want = RawEvent::Check {
            pid: 7,
            interrupt: true,
            cap: 21,
            ret: -1,
        };
        assert_eq!(d.decode(&p), Some(want));
        // 3 entries saved, the size field says 3; the flexible array is longer than caller[8].
        let mut s = common(4, 0, 7, 16 + 3 * 8);
        s[8..12].copy_from_slice(&3i32.to_le_bytes());
        for (i, a) in [0xffff_ffff_8100_0010u64, 0xffff_ffff_8100_0020, 0x30]
            .iter()
            .enumerate()
        {
            s[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let RawEvent::Stack(addrs) = d.decode(&s).unwrap_or_else(|| panic!("stack")) else {
            panic!("not a stack");
        };
        assert_eq!(
            addrs,
            vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020, 0x30]
        );
        // A size larger than the event is cut to the event.
        s[8..12].copy_from_slice(&50i32.to_le_bytes());
        assert!(matches!(d.decode(&s), Some(RawEvent::Stack(a)) if a.len() == 3));
    }

    #[test]
    fn exec_fork_exit() {
        let d = decoder();
        let name = b"/usr/bin/my prog\0";
        let mut p = common(365, 0, 9, 20);
        p[8..12].copy_from_slice(&(20u32 | (name.len() as u32) << 16).to_le_bytes());
        p[12..16].copy_from_slice(&9i32.to_le_bytes());
        p.extend_from_slice(name);
        let want = RawEvent::Exec {
            pid: 9,
            filename: "/usr/bin/my prog".into(),
        };
        assert_eq!(d.decode(&p), Some(want));
        let mut p = common(366, 0, 9, 24);
        p[16..20].copy_from_slice(&(24u32 | 5 << 16).to_le_bytes());
        p[20..24].copy_from_slice(&10i32.to_le_bytes());
        p.extend_from_slice(b"ping\0");
        let want = RawEvent::Fork {
            pid: 9,
            child_pid: 10,
            child_comm: "ping".into(),
        };
        assert_eq!(d.decode(&p), Some(want));
        let mut p = common(861, 0, 9, 24);
        p[16..24].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(d.decode(&p), Some(RawEvent::ExecFailed { pid: 9, ret: -1 }));
        assert_eq!(d.decode(&common(999, 0, 9, 24)), None);
    }
}
