//! Parsing of tracefs `trace_pipe` text lines into typed events: the fallback reader, used only
//! when /proc/kallsyms hides kernel addresses (`kernel.kptr_restrict=2`), so that the raw
//! stacks of `trace_pipe_raw` could not be named (the kernel names them in text itself).
//!
//! Owns the text format of the events we enable (`cap_capable`, `sched_process_exec`,
//! `sched_process_fork`, `sys_enter_execve`, `sys_exit_execve`) and of stacktrace-trigger entries.
//! Pure: must not touch tracefs or any file.
//!
//! A line looks like `<comm>-<pid> [<cpu>] <flags> <ts>: <event>: <body>`. The comm is looked up at
//! read time from saved_cmdlines and can be stale or contain spaces and dashes, so the pid is the
//! digits after the last dash before the ` [cpu]` column, and the comm is only used as a label.

/// The common header of one trace line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub comm: String,
    pub pid: i32,
    pub cpu: u32,
    /// The event came from interrupt context (hardirq, softirq or NMI), where `current` is not
    /// the one asking.
    pub interrupt: bool,
}

impl Header {
    /// Whether the event came from interrupt context.
    pub fn in_interrupt(&self) -> bool {
        self.interrupt
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `cap_capable: cred ..., cap N, ret R`.
    CapCheck { header: Header, cap: i32, ret: i32 },
    /// The `<stack trace>` entry written by the trigger right after a cap check on the same CPU.
    StackStart { header: Header },
    /// One ` => function` line of the preceding stack entry.
    Frame(String),
    /// `sched_process_exec: filename=F pid=P old_pid=O`.
    Exec {
        header: Header,
        filename: String,
        pid: i32,
    },
    /// `sched_process_fork: comm=C pid=P child_comm=CC child_pid=CP`.
    Fork {
        header: Header,
        child_pid: i32,
        child_comm: String,
    },
    /// `sys_execve(filename: 0xADDR, ...)`: the user pointer of the path being executed.
    ExecEnter { header: Header, filename_ptr: u64 },
    /// `sys_execve -> 0xRET`: an execve that returned an error.
    ExecFailed { header: Header, errno: i32 },
    /// Any other line (headers, other events): ignored.
    Other,
}

/// Parses one line of `trace_pipe` output.
pub fn parse_line(line: &str) -> Line {
    if let Some(f) = line.trim_start().strip_prefix("=> ") {
        return Line::Frame(strip_offset(f.trim()).to_string());
    }
    let Some((header, rest)) = split_header(line) else {
        return Line::Other;
    };
    if rest.starts_with("<stack trace>") {
        return Line::StackStart { header };
    }
    if let Some(body) = rest.strip_prefix("cap_capable: ") {
        return parse_cap(header, body);
    }
    if let Some(body) = rest.strip_prefix("sched_process_exec: ") {
        return parse_exec(header, body);
    }
    if let Some(body) = rest.strip_prefix("sched_process_fork: ") {
        return parse_fork(header, body);
    }
    if let Some(body) = rest
        .strip_prefix("sys_execve(")
        .or_else(|| rest.strip_prefix("sys_execveat("))
    {
        return parse_exec_enter(header, body);
    }
    if let Some(body) = rest
        .strip_prefix("sys_execve -> ")
        .or_else(|| rest.strip_prefix("sys_execveat -> "))
    {
        return match parse_hex(body.trim()) {
            // The syscall return is a long printed in hex: -1 is 0xffff...ffff.
            Some(v) => Line::ExecFailed {
                header,
                errno: -(v as i64) as i32,
            },
            None => Line::Other,
        };
    }
    Line::Other
}

/// Splits `comm-pid [cpu] flags ts: rest` into the header and `rest`.
fn split_header(line: &str) -> Option<(Header, &str)> {
    let open = find_cpu_column(line)?;
    let close = open + line[open..].find(']')?;
    let cpu: u32 = line[open + 1..close].trim().parse().ok()?;
    let task = line[..open].trim();
    let dash = task.rfind('-')?;
    let pid: i32 = task[dash + 1..].parse().ok()?;
    let comm = task[..dash].to_string();
    let after = line[close + 1..].trim_start();
    let (flags, after) = after.split_once(' ')?;
    let after = after.trim_start();
    let (ts, rest) = after.split_once(": ")?;
    ts.parse::<f64>().ok()?;
    Some((
        Header {
            comm,
            pid,
            cpu,
            // The third latency flag: hardirq (`h`/`H`), softirq (`s`), NMI (`z`/`Z`).
            interrupt: matches!(
                flags.as_bytes().get(2),
                Some(b'h' | b'H' | b's' | b'z' | b'Z')
            ),
        },
        rest,
    ))
}

/// The byte index of the `[` that opens the CPU column: the first ` [digits]`.
fn find_cpu_column(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(i) = line[from..].find(" [") {
        let start = from + i + 1;
        let digits = bytes[start + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 && bytes.get(start + 1 + digits) == Some(&b']') {
            return Some(start);
        }
        from = start;
    }
    None
}

/// `func+0x1a/0x40` (with the sym-offset option) becomes `func`.
fn strip_offset(frame: &str) -> &str {
    frame.split('+').next().unwrap_or(frame)
}

fn parse_cap(header: Header, body: &str) -> Line {
    let mut cap = None;
    let mut ret = None;
    for part in body.split(", ") {
        if let Some(v) = part.strip_prefix("cap ") {
            cap = v.trim().parse().ok();
        } else if let Some(v) = part.strip_prefix("ret ") {
            ret = v.trim().parse().ok();
        }
    }
    match (cap, ret) {
        (Some(cap), Some(ret)) => Line::CapCheck { header, cap, ret },
        _ => Line::Other,
    }
}

fn parse_exec(header: Header, body: &str) -> Line {
    // The filename may contain spaces: it runs up to the last ` pid=`.
    let Some(body) = body.strip_prefix("filename=") else {
        return Line::Other;
    };
    let Some(at) = body.rfind(" pid=") else {
        return Line::Other;
    };
    let filename = body[..at].to_string();
    let pid = body[at + 5..]
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok());
    match pid {
        Some(pid) => Line::Exec {
            header,
            filename,
            pid,
        },
        None => Line::Other,
    }
}

fn parse_fork(header: Header, body: &str) -> Line {
    let Some(at) = body.rfind(" child_pid=") else {
        return Line::Other;
    };
    let child_pid = body[at + 11..].trim().parse().ok();
    let child_comm = body[..at]
        .rsplit_once("child_comm=")
        .map(|(_, c)| c.to_string());
    match (child_pid, child_comm) {
        (Some(child_pid), Some(child_comm)) => Line::Fork {
            header,
            child_pid,
            child_comm,
        },
        _ => Line::Other,
    }
}

fn parse_exec_enter(header: Header, body: &str) -> Line {
    // execve prints `filename: 0x...`; execveat prints `fd: ..., filename: 0x...`.
    let ptr = body
        .split(", ")
        .find_map(|p| p.trim().strip_prefix("filename: "))
        .and_then(|v| parse_hex(v.trim()));
    match ptr {
        Some(filename_ptr) => Line::ExecEnter {
            header,
            filename_ptr,
        },
        None => Line::Other,
    }
}

fn parse_hex(v: &str) -> Option<u64> {
    u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_line() {
        let l = "              sh-9825    [001] .....   444.123748: cap_capable: cred 0000000009f7a58a, target_ns 00000000192e6c04, capable_ns 00000000192e6c04, cap 21, ret 0";
        match parse_line(l) {
            Line::CapCheck { header, cap, ret } => {
                assert_eq!((header.pid, header.cpu, cap, ret), (9825, 1, 21, 0));
                assert_eq!(header.comm, "sh");
                assert!(!header.in_interrupt());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comm_with_dash_and_space() {
        let l = " my-prog x-12 [000] ..s..   1.5: cap_capable: cred 0, target_ns 0, capable_ns 0000000000000000, cap 7, ret -1";
        match parse_line(l) {
            Line::CapCheck { header, cap, ret } => {
                assert_eq!((header.pid, cap, ret), (12, 7, -1));
                assert_eq!(header.comm, "my-prog x");
                assert!(header.in_interrupt());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stack_lines() {
        let l = "              sh-9825    [001] .....   444.123885: <stack trace>";
        assert!(matches!(parse_line(l), Line::StackStart { header } if header.cpu == 1));
        assert_eq!(
            parse_line(" => security_vm_enough_memory_mm"),
            Line::Frame("security_vm_enough_memory_mm".into())
        );
        assert_eq!(
            parse_line(" => inet_create+0x1a/0x40"),
            Line::Frame("inet_create".into())
        );
    }

    #[test]
    fn exec_fork_and_syscalls() {
        let l = "  sh-10921   [000] .....   532.762251: sched_process_exec: filename=/usr/bin/my prog pid=10921 old_pid=10921";
        assert!(
            matches!(parse_line(l), Line::Exec { filename, pid: 10921, .. } if filename == "/usr/bin/my prog")
        );
        let l = "  sh-1 [000] .....   1.0: sched_process_fork: comm=sh pid=1 child_comm=ping child_pid=22";
        assert!(
            matches!(parse_line(l), Line::Fork { child_pid: 22, child_comm, .. } if child_comm == "ping")
        );
        let l = "  sh-5 [001] .....   532.765148: sys_execve(filename: 0x7ffd150aba20, argv: 0x7ffd150abda8, envp: 0x7ffd150abdc8)";
        assert!(matches!(
            parse_line(l),
            Line::ExecEnter {
                filename_ptr: 0x7ffd150aba20,
                ..
            }
        ));
        let l = "  sh-5 [001] .....   532.765156: sys_execve -> 0xffffffffffffffff";
        assert!(matches!(parse_line(l), Line::ExecFailed { errno: 1, .. }));
        assert_eq!(parse_line("# tracer: nop"), Line::Other);
    }
}
