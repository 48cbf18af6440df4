//! The runc-compatible personality (`capsa-runc`): runc 1.1.5's command line, flags, output
//! and error text, as containerd (go-runc), Docker and Podman call it.
//!
//! Owns: argument parsing, the global flags, logging errors the runc way and exit codes.
//! Must not touch: container policy; every operation is a call into `capsa_runtime`.

mod commands;
mod info;
mod log;
mod tty;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The default state root (runc uses /run/runc; capsa keeps its state under /run/capsa).
pub const DEFAULT_ROOT: &str = "/run/capsa/runc";

#[derive(Parser)]
#[command(
    name = "runc",
    about = "capsa's runc-compatible OCI runtime",
    disable_version_flag = true,
    subcommand_required = false
)]
struct Runc {
    /// Enable debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Log file (default: stderr).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Root directory for container state (should be on tmpfs).
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Use the systemd cgroup driver (not supported: rejected).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto. Not global (it goes before the subcommand, as
    /// go-runc passes it): `spec --rootless` is a different, boolean flag.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start(IdArg),
    /// Create and start a container.
    Run(RunArgs),
    /// Print a container's state as JSON.
    State(IdArg),
    /// Send a signal to a container's init (default SIGTERM).
    Kill(KillArgs),
    /// Delete a container and what it holds.
    Delete(DeleteArgs),
    /// List containers.
    List(ListArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Run a process inside a running container.
    Exec(ExecArgs),
    /// Write a default config.json.
    Spec(SpecArgs),
    /// Print the features of this runtime as JSON.
    Features,
    /// Suspend every process in a container.
    Pause(IdArg),
    /// Resume a paused container.
    Resume(IdArg),
    /// Update a container's resource limits.
    Update(UpdateArgs),
}

#[derive(Args)]
struct IdArg {
    /// Container id.
    id: String,
}

#[derive(Args)]
struct CreateArgs {
    /// Bundle directory (holds config.json).
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Keep the caller's session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Detach from the container's process.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep the container's state after it exits (accepted, ignored: state is removed).
    #[arg(long)]
    keep: bool,
    /// Do not become a subreaper (accepted).
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
}

#[derive(Args)]
struct KillArgs {
    /// Send the signal to every process in the container.
    #[arg(short = 'a', long)]
    all: bool,
    id: String,
    /// Signal: a number, KILL or SIGKILL.
    #[arg(default_value = "SIGTERM")]
    signal: String,
}

#[derive(Args)]
struct DeleteArgs {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    force: bool,
    id: String,
}

#[derive(Args)]
struct ListArgs {
    /// table or json.
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Print only the ids.
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args)]
struct PsArgs {
    /// table or json.
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    id: String,
    /// Arguments for ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Args)]
struct ExecArgs {
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<String>,
    /// Extra environment (KEY=VALUE), repeatable.
    #[arg(short = 'e', long)]
    env: Vec<String>,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// uid[:gid].
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// A process.json to run instead of the arguments.
    #[arg(short = 'p', long)]
    process: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short = 'd', long)]
    detach: bool,
    /// File to write the process pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Add a capability (bounding, effective and permitted; never inheritable), repeatable.
    #[arg(short = 'c', long)]
    cap: Vec<String>,
    /// Pass N extra fds to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct SpecArgs {
    /// Directory to write config.json into.
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// A spec for a rootless container.
    #[arg(long)]
    rootless: bool,
}

#[derive(Args)]
struct UpdateArgs {
    /// LinuxResources JSON: a file, or `-` for stdin.
    #[arg(short = 'r', long)]
    resources: Option<String>,
    id: String,
}

/// Parses runc's command line and runs it; returns the process exit code (1 on error, as
/// runc does; a foreground `run`/`exec` returns the container's code).
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Runc::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
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

    fn parse(args: &[&str]) -> Runc {
        Runc::try_parse_from(args.iter().map(OsString::from)).expect("parses")
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
    fn command_definition_is_consistent() {
        use clap::CommandFactory;
        Runc::command().debug_assert();
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
