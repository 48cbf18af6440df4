//! `capsa-trace-record [--format F] [--no-stacks] [--text] [--no-bpf] [-o FILE] -- CMD [ARGS...]`: records the
//! capability checks of one command (without a container) and prints the proposal.
//!
//! A helper for the overhead benchmark (bench/trace_overhead.sh) and the tests. It owns no
//! policy: the library does the work. Exits with the command's exit code.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

use capsa_trace::{Format, Proposal, Recorder, RecorderOptions};

struct Args {
    format: Format,
    stacks: bool,
    text: bool,
    bpf: bool,
    output: Option<String>,
    cmd: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        format: Format::Text,
        stacks: true,
        text: false,
        bpf: RecorderOptions::default().bpf,
        output: None,
        cmd: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--format" => {
                let v = it.next().ok_or("--format needs a value")?;
                args.format = Format::parse(&v).ok_or(format!(
                    "unknown format {v:?}; use one of {:?}",
                    Format::NAMES
                ))?;
            }
            "--no-stacks" => args.stacks = false,
            "--text" => args.text = true,
            "--no-bpf" => args.bpf = false,
            "-o" => args.output = Some(it.next().ok_or("-o needs a file")?),
            "--" => {
                args.cmd = it.collect();
                break;
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if args.cmd.is_empty() {
        return Err(
            "usage: capsa-trace-record [--format F] [--no-stacks] [--text] [--no-bpf] [-o FILE] -- CMD [ARGS...]"
                .into(),
        );
    }
    Ok(args)
}

fn run(args: Args) -> Result<i32, String> {
    let _ = capsa_trace::cleanup_stale();
    capsa_trace::cleanup_on_signals().map_err(|e| e.to_string())?;
    // The child is gated in a shell `read` before it execs the command: the recorder's pid
    // filter must be in place before the first interesting event (cap-tracing.md §3).
    let mut child = Command::new("/bin/sh")
        .args(["-c", "read -r gate; exec \"$@\"", "sh"])
        .args(&args.cmd)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh for {:?}: {e}", args.cmd[0]))?;
    let pid = child.id() as i32;
    let opts = RecorderOptions {
        stacks: args.stacks,
        text: args.text,
        bpf: args.bpf,
        ..RecorderOptions::default()
    };
    let recorder = match Recorder::start_with(pid, opts) {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.to_string());
        }
    };
    if let Some(mut gate) = child.stdin.take() {
        let _ = gate.write_all(b"go\n");
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for pid {pid}: {e}"))?;
    let recording = recorder.stop().map_err(|e| e.to_string())?;
    let out = Proposal::from_recording(&recording).render(args.format);
    match &args.output {
        Some(path) => std::fs::write(path, out).map_err(|e| format!("cannot write {path}: {e}"))?,
        None => print!("{out}"),
    }
    Ok(status.code().unwrap_or(128))
}

fn main() -> ExitCode {
    // The library's warnings (such as the BPF fallback) go to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("capsa-trace-record: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("capsa-trace-record: {e}");
            ExitCode::from(125)
        }
    }
}
