//! The runc-compatible personality (`capsa-runc`): runc 1.1.5's command line, flags, output
//! and error text, as containerd (go-runc), Docker and Podman call it.
//!
//! Owns: argument parsing, the global flags, logging errors the runc way and exit codes.
//! Must not touch: container policy; every operation is a call into `capsa_runtime`.

mod args;
mod commands;
mod info;
mod log;
mod tty;

use std::ffi::OsString;
use std::path::PathBuf;

/// The default state root (runc uses /run/runc; capsa keeps its state under /run/capsa).
pub const DEFAULT_ROOT: &str = "/run/capsa/runc";

/// A parsed command line (see `args` for the syntax and the flag table).
struct Runc {
    /// `--debug`: debug logging.
    debug: bool,
    /// `--log FILE` (default: stderr).
    log: Option<PathBuf>,
    /// `--log-format text|json`.
    log_format: String,
    /// `--root DIR`: the state root.
    root: PathBuf,
    /// `--systemd-cgroup` (not supported: rejected).
    systemd_cgroup: bool,
    /// `--rootless[=true|false|auto]`, before the subcommand only (`spec --rootless` is a
    /// different, boolean flag).
    rootless: Option<String>,
    /// `-v`/`--version`.
    version: bool,
    command: Option<Command>,
}

enum Command {
    Create(CreateArgs),
    Start(IdArg),
    Run(RunArgs),
    State(IdArg),
    Kill(KillArgs),
    Delete(DeleteArgs),
    List(ListArgs),
    Ps(PsArgs),
    Exec(ExecArgs),
    Spec(SpecArgs),
    Features,
    Pause(IdArg),
    Resume(IdArg),
    Update(UpdateArgs),
}

struct IdArg {
    id: String,
}

struct CreateArgs {
    bundle: PathBuf,
    console_socket: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: u32,
    id: String,
}

struct RunArgs {
    create: CreateArgs,
    detach: bool,
    /// Accepted, ignored: the state is removed after a foreground run.
    #[allow(dead_code)]
    keep: bool,
    /// Accepted, ignored.
    #[allow(dead_code)]
    no_subreaper: bool,
}

struct KillArgs {
    all: bool,
    id: String,
    signal: String,
}

struct DeleteArgs {
    force: bool,
    id: String,
}

struct ListArgs {
    format: String,
    quiet: bool,
}

struct PsArgs {
    format: String,
    id: String,
    ps_args: Vec<String>,
}

struct ExecArgs {
    console_socket: Option<PathBuf>,
    cwd: Option<String>,
    env: Vec<String>,
    tty: bool,
    user: Option<String>,
    process: Option<PathBuf>,
    detach: bool,
    pid_file: Option<PathBuf>,
    no_new_privs: bool,
    cap: Vec<String>,
    preserve_fds: u32,
    id: String,
    command: Vec<String>,
}

struct SpecArgs {
    bundle: PathBuf,
    rootless: bool,
}

struct UpdateArgs {
    resources: Option<String>,
    id: String,
}

/// Parses runc's command line and runs it; returns the process exit code (1 on error, as
/// runc does; a foreground `run`/`exec` returns the container's code).
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match args::parse(args) {
        Ok(cli) => cli,
        Err(args::ArgsError::Help(text)) => {
            print!("{text}");
            return 0;
        }
        Err(args::ArgsError::Usage(text)) => {
            log::Log::stderr().error(&text);
            return 1;
        }
    };
    if cli.version {
        print!("{}", info::version_text());
        return 0;
    }
    let format = if cli.log_format == "json" {
        log::Format::Json
    } else {
        log::Format::Text
    };
    let log = match log::Log::open(cli.log.as_deref(), format, cli.debug) {
        Ok(l) => l,
        Err(e) => {
            log::Log::stderr().error(&format!("cannot open log file: {e}"));
            return 1;
        }
    };
    match dispatch(&cli, &log) {
        Ok(code) => code,
        Err(e) => {
            log.error(&error_text(&e));
            1
        }
    }
}

/// The error and its causes joined with ": ", skipping a cause whose text the message
/// already carries (library errors embed their errno text, and thiserror also reports it as
/// the source).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn dispatch(cli: &Runc, log: &log::Log) -> anyhow::Result<i32> {
    if cli.systemd_cgroup {
        anyhow::bail!(
            "systemd cgroup driver is not supported by capsa yet (drop --systemd-cgroup; \
             cgroupsPath is then a cgroupfs path)"
        );
    }
    if let Some(r) = cli.rootless.as_deref() {
        match r {
            "auto" | "false" => {}
            "true" => {
                anyhow::bail!("rootless mode is not supported by capsa yet (use --rootless=false)")
            }
            other => anyhow::bail!("invalid --rootless value {other:?}: use true, false or auto"),
        }
    }
    let Some(command) = &cli.command else {
        anyhow::bail!("no command given: see `capsa-runc --help`");
    };
    let ctx = commands::Ctx::new(&cli.root, log);
    use commands as c;
    match command {
        Command::Create(a) => {
            c::create(&ctx, &a.id, &c::create_opts(a, false), &a.bundle).map(|_| 0)
        }
        Command::Run(a) => c::run(
            &ctx,
            &a.create.id,
            &a.create.bundle,
            &c::create_opts(&a.create, !a.detach),
        ),
        Command::Start(a) => c::start(&ctx, &a.id).map(|_| 0),
        Command::State(a) => c::state(&ctx, &a.id).map(|_| 0),
        Command::Kill(a) => c::kill(&ctx, &a.id, &a.signal, a.all).map(|_| 0),
        Command::Delete(a) => c::delete(&ctx, &a.id, a.force).map(|_| 0),
        Command::List(a) => c::list(&ctx, a.format == "json", a.quiet).map(|_| 0),
        Command::Ps(a) => c::ps(&ctx, &a.id, a.format == "json", &a.ps_args).map(|_| 0),
        Command::Exec(a) => c::exec(&ctx, a),
        Command::Spec(a) => info::write_spec(&a.bundle, a.rootless).map(|_| 0),
        Command::Features => c::features().map(|_| 0),
        Command::Pause(a) => c::set_paused(&ctx, &a.id, true).map(|_| 0),
        Command::Resume(a) => c::set_paused(&ctx, &a.id, false).map(|_| 0),
        Command::Update(a) => c::update(&ctx, &a.id, a.resources.as_deref()).map(|_| 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(args: &[&str]) -> Runc {
        args::parse(args.iter().map(OsString::from).collect()).expect("parses")
    }

    fn usage_error(args: &[&str]) -> String {
        match args::parse(args.iter().map(OsString::from).collect()) {
            Err(args::ArgsError::Usage(t)) => t,
            Err(args::ArgsError::Help(_)) => panic!("{args:?}: help, not an error"),
            Ok(_) => panic!("{args:?} parsed"),
        }
    }

    #[test]
    fn go_runc_command_lines_parse() {
        let c = parse(&[
            "runc",
            "--root",
            "/run/x",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "c1",
        ]);
        assert_eq!(c.root, PathBuf::from("/run/x"));
        assert!(matches!(c.command, Some(Command::Create(ref a)) if a.id == "c1"));
        let c = parse(&["runc", "kill", "--all", "c1", "9"]);
        assert!(matches!(c.command, Some(Command::Kill(ref a)) if a.all && a.signal == "9"));
        let c = parse(&[
            "runc",
            "exec",
            "--process",
            "/tmp/p.json",
            "--detach",
            "--pid-file",
            "/p",
            "c1",
        ]);
        assert!(
            matches!(c.command, Some(Command::Exec(ref a)) if a.detach && a.command.is_empty())
        );
        let c = parse(&["runc", "exec", "-t", "c1", "sh", "-c", "echo hi"]);
        assert!(
            matches!(c.command, Some(Command::Exec(ref a)) if a.command == ["sh", "-c", "echo hi"])
        );
        let c = parse(&["runc", "update", "--resources=-", "c1"]);
        assert!(
            matches!(c.command, Some(Command::Update(ref a)) if a.resources.as_deref() == Some("-"))
        );
        let c = parse(&["runc", "ps", "--format", "json", "c1"]);
        assert!(matches!(c.command, Some(Command::Ps(ref a)) if a.format == "json"));
        let c = parse(&["runc", "list", "--format=json"]);
        assert!(matches!(c.command, Some(Command::List(ref a)) if a.format == "json"));
        let c = parse(&[
            "runc",
            "--rootless=false",
            "run",
            "-d",
            "--bundle",
            "/b",
            "c1",
        ]);
        assert!(matches!(c.command, Some(Command::Run(ref a)) if a.detach));
        assert!(parse(&["runc", "--version"]).version);
    }

    #[test]
    fn error_text_skips_repeated_causes() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(capsa_runtime::spec::SpecError::ReadConfig {
            path: "/b/config.json".into(),
            source: io,
        })
        .context("create failed");
        let t = error_text(&e);
        assert_eq!(t.matches("No such file or directory").count(), 1, "{t}");
        assert!(
            t.starts_with("create failed: cannot read /b/config.json"),
            "{t}"
        );
    }

    #[test]
    fn flag_forms_and_errors() {
        let c = parse(&[
            "runc",
            "--root=/r",
            "--log-format=json",
            "delete",
            "-f",
            "c1",
        ]);
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.log_format, "json");
        assert!(matches!(c.command, Some(Command::Delete(ref a)) if a.force && a.id == "c1"));
        // Globals after the subcommand, `-bDIR`, `--flag=false`.
        let c = parse(&[
            "runc",
            "create",
            "-b/b",
            "--no-pivot=false",
            "c1",
            "--root",
            "/x",
        ]);
        assert_eq!(c.root, PathBuf::from("/x"));
        assert!(
            matches!(c.command, Some(Command::Create(ref a)) if a.bundle == Path::new("/b") && !a.no_pivot)
        );
        let c = parse(&["runc", "ps", "c1", "-eo", "pid"]);
        assert!(matches!(c.command, Some(Command::Ps(ref a)) if a.ps_args == ["-eo", "pid"]));
        let c = parse(&[
            "runc",
            "exec",
            "-e",
            "A=1",
            "--env=B=2",
            "c1",
            "--",
            "ls",
            "-l",
        ]);
        assert!(
            matches!(c.command, Some(Command::Exec(ref a)) if a.env == ["A=1", "B=2"] && a.command == ["ls", "-l"])
        );
        let c = parse(&["runc", "kill", "c1"]);
        assert!(matches!(c.command, Some(Command::Kill(ref a)) if a.signal == "SIGTERM"));
        assert_eq!(parse(&["runc"]).root, PathBuf::from(DEFAULT_ROOT));
        assert!(usage_error(&["runc", "start"]).contains("requires 1 argument"));
        assert!(usage_error(&["runc", "start", "a", "b"]).contains("requires 1 argument"));
        assert!(usage_error(&["runc", "create", "--bogus", "c1"]).contains("--bogus"));
        assert!(usage_error(&["runc", "create", "--preserve-fds", "x", "c1"]).contains("number"));
        assert!(usage_error(&["runc", "--log-format", "xml", "list"]).contains("text or json"));
        assert!(usage_error(&["runc", "frobnicate"]).contains("no such command"));
        assert!(usage_error(&["runc", "state", "--root"]).contains("needs a value"));
        assert!(matches!(
            args::parse(vec!["runc".into(), "exec".into(), "--help".into()]),
            Err(args::ArgsError::Help(t)) if t.contains("--process")
        ));
    }

    #[test]
    fn rootless_is_a_global_and_a_spec_flag() {
        let c = parse(&["runc", "spec", "--rootless", "--bundle", "/b"]);
        assert!(matches!(c.command, Some(Command::Spec(ref a)) if a.rootless));
        assert_eq!(
            parse(&["runc", "--rootless=auto", "features"])
                .rootless
                .as_deref(),
            Some("auto")
        );
    }

    #[test]
    fn systemd_cgroup_is_rejected_clearly() {
        let c = parse(&["runc", "--systemd-cgroup", "state", "x"]);
        let e = dispatch(&c, &log::Log::stderr()).expect_err("rejected");
        assert!(
            e.to_string()
                .contains("systemd cgroup driver is not supported by capsa yet")
        );
    }
}
