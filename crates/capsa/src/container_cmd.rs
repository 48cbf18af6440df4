//! The container commands (`run`, `create`, `start`, `stop`, `kill`, `rm`, `ps`, `inspect`,
//! `logs`, `exec`, `wait`): flags in Docker's shape, parsed here and handed to capsa-engine;
//! output and exit codes as Docker's CLI has them (125 for capsa's own errors, otherwise the
//! container's code). No policy lives here.

use capsa_engine::sysconfig::SystemConfig;
use capsa_engine::{Engine, ExecOptions, Paths, RunOptions};

/// `println!` that ignores a closed stdout (`capsa ps | head`): no panic, as Docker's CLI.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Create and start a container from an image.
    Run(Box<RunArgs>),
    /// Create a container without starting it.
    Create(Box<RunArgs>),
    /// Start one or more created or stopped containers.
    Start(StartArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after --time seconds).
    Stop(StopArgs),
    /// Send a signal to running containers (default SIGKILL).
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// List containers.
    Ps(PsArgs),
    /// Show a container's configuration, state and live capability sets as JSON.
    Inspect(InspectArgs),
    /// Show a container's output.
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(WaitArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// Assign a name to the container.
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    user: Option<String>,
    /// Container host name (default: the first 12 digits of the ID).
    #[arg(long)]
    hostname: Option<String>,
    /// Overwrite the image's ENTRYPOINT ("" clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Bind mount a host path: HOST:CONTAINER[:ro].
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS].
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Add Linux capabilities (names with or without CAP_, or ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities (names with or without CAP_, or ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Every capability the host can grant, all host devices, no seccomp, no masked paths.
    #[arg(long)]
    privileged: bool,
    /// no-new-privileges | seccomp=unconfined | seccomp=FILE | systempaths=unconfined.
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
    /// Add a host device: HOST[:CONTAINER[:rwm]].
    #[arg(long)]
    device: Vec<String>,
    /// Memory limit (e.g. 512m, 1g).
    #[arg(short, long)]
    memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// none (default: a private network namespace with only lo) or host.
    #[arg(long = "network", alias = "net")]
    network: Option<String>,
    /// Namespaced kernel parameters (K=V).
    #[arg(long)]
    sysctl: Vec<String>,
    /// Resource limits: NAME=SOFT[:HARD].
    #[arg(long)]
    ulimit: Vec<String>,
    /// Run capsa's small reaper as PID 1 (needs a glibc-based image, see docs/run.md).
    #[arg(long)]
    init: bool,
    /// User namespace: host (no remapping), auto or auto:size=N (a range of its own).
    #[arg(long, value_name = "host|auto[:size=N]")]
    userns: Option<String>,
    /// Remap container root to the subordinate ids of a user (/etc/subuid, /etc/subgid).
    #[arg(long = "userns-remap", value_name = "default|USER[:GROUP]")]
    userns_remap: Option<String>,
    /// Apply a saved `capsa profile` proposal (its JSON, or the OCI rendering): exactly its
    /// capabilities, plus no-new-privileges.
    #[arg(long = "cap-profile", value_name = "FILE")]
    cap_profile: Option<PathBuf>,
    /// The image to run.
    image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    pub(crate) fn options(self) -> RunOptions {
        RunOptions {
            name: self.name,
            rm: self.rm,
            detach: self.detach,
            interactive: self.interactive,
            tty: self.tty,
            env: self.env,
            env_file: self.env_file,
            workdir: self.workdir,
            user: self.user,
            hostname: self.hostname,
            entrypoint: self.entrypoint,
            volumes: self.volume,
            tmpfs: self.tmpfs,
            read_only: self.read_only,
            cap_add: self.cap_add,
            cap_drop: self.cap_drop,
            privileged: self.privileged,
            security_opt: self.security_opt,
            devices: self.device,
            memory: self.memory,
            pids_limit: self.pids_limit,
            cpus: self.cpus,
            network: self.network,
            sysctl: self.sysctl,
            ulimit: self.ulimit,
            init: self.init,
            userns: self.userns,
            userns_remap: self.userns_remap,
            cap_defaults: None,
            image: self.image,
            command: self.command,
        }
    }
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it (foreground).
    #[arg(short, long)]
    attach: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal name or number.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default: only running ones).
    #[arg(short, long)]
    all: bool,
    /// Only print IDs.
    #[arg(short, long)]
    quiet: bool,
    /// `table`, `json`, or a template such as `{{.Names}} {{.Status}}`.
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// A template such as `{{.State.Pid}}` or `{{json .HostConfig.CapAdd}}`.
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow the output until the container stops.
    #[arg(short, long)]
    follow: bool,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    user: Option<String>,
    /// Every capability the host can grant (bounding, effective, permitted).
    #[arg(long)]
    privileged: bool,
    #[arg(short, long)]
    workdir: Option<String>,
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs one container command; returns the exit code.
pub fn main(root: Option<&Path>, config: &SystemConfig, cmd: ContainerCommand) -> i32 {
    let state_root = std::env::var_os("CAPSA_STATE_ROOT").map(PathBuf::from);
    let engine = Engine::new(Paths::new(root.map(Path::to_path_buf), state_root));
    let result = match cmd {
        ContainerCommand::Run(a) => run(&engine, config, *a, true),
        ContainerCommand::Create(a) => run(&engine, config, *a, false),
        ContainerCommand::Start(a) => start(&engine, a),
        ContainerCommand::Stop(a) => each(&a.containers, |c| {
            engine
                .stop(c, Duration::from_secs(a.time))
                .map(|_| out!("{c}"))
        }),
        ContainerCommand::Kill(a) => kill(&engine, a),
        ContainerCommand::Rm(a) => each(&a.containers, |c| {
            engine.remove(c, a.force).map(|_| out!("{c}"))
        }),
        ContainerCommand::Ps(a) => ps(&engine, a),
        ContainerCommand::Inspect(a) => inspect(&engine, a),
        ContainerCommand::Logs(a) => {
            let mut out = std::io::stdout().lock();
            engine.logs(&a.container, a.follow, &mut out).map(|()| 0)
        }
        ContainerCommand::Exec(a) => exec(&engine, a),
        ContainerCommand::Wait(a) => {
            each(&a.containers, |c| engine.wait(c).map(|code| out!("{code}")))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capsa: {e}");
            e.exit_code()
        }
    }
}

type CmdResult = Result<i32, capsa_engine::Error>;

/// Applies `f` to each container; like Docker, reports each failure and goes on (exit 1).
fn each(list: &[String], mut f: impl FnMut(&str) -> Result<(), capsa_engine::Error>) -> CmdResult {
    let mut code = 0;
    for c in list {
        if let Err(e) = f(c) {
            eprintln!("capsa: {e}");
            code = 1;
        }
    }
    Ok(code)
}

fn run(engine: &Engine, config: &SystemConfig, a: RunArgs, start: bool) -> CmdResult {
    let detach = a.detach;
    let cap_profile = a.cap_profile.clone();
    let mut options = a.options();
    config.apply(&mut options);
    if let Some(path) = &cap_profile {
        let profile = capsa_engine::cap_profile::load(path)?;
        capsa_engine::cap_profile::apply(&mut options, &profile)?;
    }
    let created = engine.create(&options)?;
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    if !start {
        out!("{}", created.id);
        return Ok(0);
    }
    if detach {
        let id = engine.start_detached(&created.id)?;
        out!("{id}");
        return Ok(0);
    }
    let _ = std::io::stdout().flush();
    engine.run_foreground(&created.id)
}

fn start(engine: &Engine, a: StartArgs) -> CmdResult {
    if a.attach {
        let [one] = a.containers.as_slice() else {
            return Err(capsa_engine::Error::InvalidFlag(
                "you cannot start and attach multiple containers at once".into(),
            ));
        };
        let r = engine.store.find(one)?;
        return engine.run_foreground(&r.id);
    }
    each(&a.containers, |c| {
        engine.start_detached(c).map(|_| out!("{c}"))
    })
}

fn kill(engine: &Engine, a: KillArgs) -> CmdResult {
    let name = a.signal.trim_start_matches("SIG");
    let signal = capsa_runtime::container::parse_signal(name)
        .map_err(|e| capsa_engine::Error::InvalidFlag(e.to_string()))?;
    each(&a.containers, |c| {
        engine.kill(c, signal).map(|_| out!("{c}"))
    })
}

fn ps(engine: &Engine, a: PsArgs) -> CmdResult {
    let rows = engine.ps(a.all)?;
    if a.quiet {
        for r in &rows {
            out!("{}", r.id);
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => {
            for r in &rows {
                out!("{}", serde_json::to_string(r).unwrap_or_default());
            }
        }
        Some(t) if t != "table" => {
            for r in &rows {
                out!("{}", template(t, r));
            }
        }
        _ => print_table(&rows),
    }
    Ok(0)
}

/// Docker's `--format` Go-template subset: `{{.Field}}` placeholders, `\t` for tabs.
fn template(t: &str, r: &capsa_engine::PsRow) -> String {
    let t = t.strip_prefix("table ").unwrap_or(t);
    let fields = [
        ("ID", &r.id),
        ("Image", &r.image),
        ("Command", &r.command),
        ("CreatedAt", &r.created_at),
        ("RunningFor", &r.running_for),
        ("Status", &r.status),
        ("State", &r.state),
        ("Names", &r.names),
    ];
    let mut out = t.replace("\\t", "\t");
    for (k, v) in fields {
        out = out
            .replace(&format!("{{{{.{k}}}}}"), v)
            .replace(&format!("{{{{ .{k} }}}}"), v);
    }
    out
}

fn print_table(rows: &[capsa_engine::PsRow]) {
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "NAMES",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.image.clone(),
                r.command.clone(),
                r.running_for.clone(),
                r.status.clone(),
                r.names.clone(),
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for c in &cells {
        for (i, v) in c.iter().enumerate() {
            width[i] = width[i].max(v.chars().count());
        }
    }
    let line = |vals: Vec<&str>| {
        let mut s = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                s.push_str(v);
            } else {
                s.push_str(&format!("{v:<w$}   ", w = width[i]));
            }
        }
        out!("{s}");
    };
    line(header.to_vec());
    for c in &cells {
        line(c.iter().map(String::as_str).collect());
    }
}

fn inspect(engine: &Engine, a: InspectArgs) -> CmdResult {
    let mut docs = Vec::new();
    let mut code = 0;
    for c in &a.containers {
        match engine.inspect(c) {
            Ok(d) if a.format.is_some() => {
                out!("{}", render(a.format.as_deref().unwrap_or_default(), &d))
            }
            Ok(d) => docs.push(d),
            Err(e) => {
                eprintln!("capsa: {e}");
                code = 1;
            }
        }
    }
    if a.format.is_none() {
        out!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
    }
    Ok(code)
}

/// Docker's `inspect --format` subset: `{{.A.B}}` (strings raw, other values as JSON) and
/// `{{json .A.B}}`; `{{.}}` is the whole document.
fn render(template: &str, doc: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let expr = rest[start + 2..start + len].trim();
        let (json, path) = match expr.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, expr),
        };
        let mut v = doc;
        for key in path
            .trim_start_matches('.')
            .split('.')
            .filter(|k| !k.is_empty())
        {
            v = v.get(key).unwrap_or(&serde_json::Value::Null);
        }
        match (json, v) {
            (false, serde_json::Value::String(s)) => out.push_str(s),
            (false, serde_json::Value::Null) => out.push_str("<no value>"),
            _ => out.push_str(&v.to_string()),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

fn exec(engine: &Engine, a: ExecArgs) -> CmdResult {
    let o = ExecOptions {
        interactive: a.interactive,
        tty: a.tty,
        user: a.user,
        privileged: a.privileged,
        workdir: a.workdir,
        env: a.env,
        command: a.command,
    };
    engine.exec(&a.container, &o)
}
