//! runc's command line, parsed from a flag table (no argument-parser crate).
//!
//! Owns: the flags of every subcommand (runc 1.1.5's names, as go-runc, Podman and Docker
//! pass them), `--help`, and usage errors. Must not touch: what a command does (`commands`).
//!
//! Why by hand: capsa-runc is exec'd several times per container, and clap's builder (about
//! 210 KiB of code, plus a command tree built on the heap at every start) was the largest
//! piece of it that ran on every call (docs/decisions.md, docs/performance.md).
//!
//! Syntax accepted: `--flag`, `--flag=V`, `--flag V`, `-f`, `-f V`, `-fV`; a boolean also takes
//! `--flag=true|false` (urfave/cli's form). Global flags go before the subcommand and, as a
//! convenience, after it too (except `--rootless`, whose `spec --rootless` is a different,
//! boolean flag). For `exec` and `ps`, everything after the container id is the command
//! (hyphens included), as in runc.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{
    Command, CreateArgs, DeleteArgs, ExecArgs, IdArg, KillArgs, ListArgs, PsArgs, RunArgs, Runc,
    SpecArgs, UpdateArgs,
};

/// A parse failure, or a request for help (printed on stdout, exit 0).
#[derive(Debug)]
pub enum ArgsError {
    Help(String),
    Usage(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
    /// Repeatable value.
    Multi,
}

struct Flag {
    long: &'static str,
    short: Option<char>,
    kind: Kind,
    help: &'static str,
}

const fn flag(long: &'static str, short: Option<char>, kind: Kind, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        kind,
        help,
    }
}

use Kind::{Bool, Multi, Value};

const GLOBAL: &[Flag] = &[
    flag("debug", None, Bool, "enable debug logging"),
    flag("log", None, Value, "log file (default: stderr)"),
    flag("log-format", None, Value, "log format: text or json"),
    flag("root", None, Value, "root directory for container state"),
    flag(
        "systemd-cgroup",
        None,
        Bool,
        "use the systemd cgroup driver (not supported)",
    ),
];

const CREATE: &[Flag] = &[
    flag(
        "bundle",
        Some('b'),
        Value,
        "bundle directory (holds config.json)",
    ),
    flag(
        "console-socket",
        None,
        Value,
        "unix socket that receives the pty master",
    ),
    flag("pid-file", None, Value, "file to write the init pid to"),
    flag(
        "no-pivot",
        None,
        Bool,
        "use MS_MOVE and chroot instead of pivot_root",
    ),
    flag(
        "no-new-keyring",
        None,
        Bool,
        "keep the caller's session keyring",
    ),
    flag(
        "preserve-fds",
        None,
        Value,
        "pass N extra fds (3..3+N) to the container",
    ),
];

const RUN_EXTRA: &[Flag] = &[
    flag(
        "detach",
        Some('d'),
        Bool,
        "detach from the container's process",
    ),
    flag(
        "keep",
        None,
        Bool,
        "keep the state after exit (accepted, ignored)",
    ),
    flag(
        "no-subreaper",
        None,
        Bool,
        "do not become a subreaper (accepted)",
    ),
];

const KILL: &[Flag] = &[flag(
    "all",
    Some('a'),
    Bool,
    "signal every process of the container",
)];
const DELETE: &[Flag] = &[flag(
    "force",
    Some('f'),
    Bool,
    "kill a running container first",
)];
const LIST: &[Flag] = &[
    flag("format", Some('f'), Value, "table or json"),
    flag("quiet", Some('q'), Bool, "print only the ids"),
];
const PS: &[Flag] = &[flag("format", Some('f'), Value, "table or json")];
const EXEC: &[Flag] = &[
    flag(
        "console-socket",
        None,
        Value,
        "unix socket that receives the pty master",
    ),
    flag("cwd", None, Value, "working directory in the container"),
    flag(
        "env",
        Some('e'),
        Multi,
        "extra environment KEY=VALUE (repeatable)",
    ),
    flag("tty", Some('t'), Bool, "allocate a terminal"),
    flag("user", Some('u'), Value, "uid[:gid]"),
    flag(
        "process",
        Some('p'),
        Value,
        "a process.json to run instead of the arguments",
    ),
    flag("detach", Some('d'), Bool, "do not wait for the process"),
    flag("pid-file", None, Value, "file to write the process pid to"),
    flag(
        "no-new-privs",
        None,
        Bool,
        "set no_new_privs for the process",
    ),
    flag("cap", Some('c'), Multi, "add a capability (repeatable)"),
    flag(
        "preserve-fds",
        None,
        Value,
        "pass N extra fds to the process",
    ),
];
const SPEC: &[Flag] = &[
    flag(
        "bundle",
        Some('b'),
        Value,
        "directory to write config.json into",
    ),
    flag("rootless", None, Bool, "a spec for a rootless container"),
];
const UPDATE: &[Flag] = &[flag(
    "resources",
    Some('r'),
    Value,
    "LinuxResources JSON: a file, or - for stdin",
)];

/// One subcommand: its flags (beyond the globals), its positional arguments (required ones
/// first) and whether the rest of the line after them is taken verbatim.
struct Sub {
    name: &'static str,
    about: &'static str,
    flags: &'static [&'static [Flag]],
    required: &'static [&'static str],
    optional: &'static [&'static str],
    trailing: bool,
}

const SUBS: &[Sub] = &[
    sub(
        "create",
        "create a container (its process waits for `start`)",
        &[CREATE],
        &["id"],
    ),
    sub("start", "start a created container", &[], &["id"]),
    sub(
        "run",
        "create and start a container",
        &[CREATE, RUN_EXTRA],
        &["id"],
    ),
    sub("state", "print a container's state as JSON", &[], &["id"]),
    Sub {
        optional: &["signal"],
        ..sub(
            "kill",
            "send a signal to a container's init (default SIGTERM)",
            &[KILL],
            &["id"],
        )
    },
    sub(
        "delete",
        "delete a container and what it holds",
        &[DELETE],
        &["id"],
    ),
    sub("list", "list containers", &[LIST], &[]),
    Sub {
        optional: &["ps-args"],
        trailing: true,
        ..sub("ps", "list the processes of a container", &[PS], &["id"])
    },
    Sub {
        optional: &["command"],
        trailing: true,
        ..sub(
            "exec",
            "run a process inside a running container",
            &[EXEC],
            &["id"],
        )
    },
    sub("spec", "write a default config.json", &[SPEC], &[]),
    sub(
        "features",
        "print the features of this runtime as JSON",
        &[],
        &[],
    ),
    sub(
        "pause",
        "suspend every process in a container",
        &[],
        &["id"],
    ),
    sub("resume", "resume a paused container", &[], &["id"]),
    sub(
        "update",
        "update a container's resource limits",
        &[UPDATE],
        &["id"],
    ),
];

const fn sub(
    name: &'static str,
    about: &'static str,
    flags: &'static [&'static [Flag]],
    required: &'static [&'static str],
) -> Sub {
    Sub {
        name,
        about,
        flags,
        required,
        optional: &[],
        trailing: false,
    }
}

/// What one command line held: flag values by long name (booleans as "true"/"false"), in
/// order, and the positional arguments.
#[derive(Default)]
struct Matches {
    values: Vec<(&'static str, String)>,
    positionals: Vec<String>,
}

impl Matches {
    fn last(&self, long: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(l, _)| *l == long)
            .map(|(_, v)| v.as_str())
    }
    fn string(&self, long: &str) -> Option<String> {
        self.last(long).map(str::to_owned)
    }
    fn path(&self, long: &str) -> Option<PathBuf> {
        self.last(long).map(PathBuf::from)
    }
    fn on(&self, long: &str) -> bool {
        self.last(long) == Some("true")
    }
    fn all(&self, long: &str) -> Vec<String> {
        let hit = |(l, v): &(&str, String)| (*l == long).then(|| v.clone());
        self.values.iter().filter_map(hit).collect()
    }
    fn number(&self, long: &str) -> Result<u32, ArgsError> {
        match self.last(long) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| {
                ArgsError::Usage(format!("invalid value {v:?} for --{long}: not a number"))
            }),
        }
    }
    fn choice(&self, long: &str, default: &str, allowed: &[&str]) -> Result<String, ArgsError> {
        let v = self.last(long).unwrap_or(default);
        if allowed.contains(&v) {
            Ok(v.to_owned())
        } else {
            Err(ArgsError::Usage(format!(
                "invalid value {v:?} for --{long}: use {}",
                allowed.join(" or ")
            )))
        }
    }
}

/// Parses a whole command line (argv[0] first).
pub fn parse(args: Vec<OsString>) -> Result<Runc, ArgsError> {
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut global = Matches::default();
    let mut rootless = None;
    let mut version = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-v" || a == "--version" {
            version = true;
        } else if a == "-h" || a == "--help" {
            return Err(ArgsError::Help(main_help()));
        } else if let Some(v) = a.strip_prefix("--rootless") {
            rootless = Some(match v.strip_prefix('=') {
                Some(v) => v.to_owned(),
                None if v.is_empty() => "true".to_owned(),
                None => return Err(unknown(a, None)),
            });
        } else if a.starts_with('-') && a != "-" {
            i = take_flag(&args, i, &[GLOBAL], &mut global, None)?;
        } else {
            break;
        }
        i += 1;
    }
    let command = match args.get(i) {
        None => None,
        Some(name) => Some(parse_sub(name, &args[i + 1..], &mut global)?),
    };
    Ok(Runc {
        debug: global.on("debug"),
        log: global.path("log"),
        log_format: global.choice("log-format", "text", &["text", "json"])?,
        root: global
            .path("root")
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_ROOT)),
        systemd_cgroup: global.on("systemd-cgroup"),
        rootless,
        version,
        command,
    })
}

fn parse_sub(name: &str, rest: &[String], global: &mut Matches) -> Result<Command, ArgsError> {
    let sub = SUBS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ArgsError::Usage(format!("no such command: {name} (see --help)")))?;
    let m = match_sub(sub, rest, global)?;
    build(sub.name, m)
}

/// Splits `rest` into flags and positionals for `sub` (globals land in `global`).
fn match_sub(sub: &Sub, rest: &[String], global: &mut Matches) -> Result<Matches, ArgsError> {
    let mut m = Matches::default();
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        if sub.trailing && m.positionals.len() >= sub.required.len() {
            let tail = if a == "--" {
                &rest[i + 1..]
            } else {
                &rest[i..]
            };
            m.positionals.extend(tail.iter().cloned());
            break;
        }
        if a == "--" {
            m.positionals.extend(rest[i + 1..].iter().cloned());
            break;
        }
        if a == "-h" || a == "--help" {
            return Err(ArgsError::Help(sub_help(sub)));
        }
        if a.starts_with('-') && a != "-" {
            i = take_flag(rest, i, sub.flags, &mut m, Some(global))?;
        } else {
            m.positionals.push(a.clone());
        }
        i += 1;
    }
    let max = if sub.trailing {
        usize::MAX
    } else {
        sub.required.len() + sub.optional.len()
    };
    if m.positionals.len() < sub.required.len() || m.positionals.len() > max {
        return Err(ArgsError::Usage(format!(
            "\"{}\" requires {} argument(s): {} (see `{} --help`)",
            sub.name,
            sub.required.len(),
            usage_line(sub),
            sub.name
        )));
    }
    Ok(m)
}

/// Consumes the flag at `args[i]` (and its value); returns the index of the last arg used.
fn take_flag(
    args: &[String],
    i: usize,
    tables: &[&'static [Flag]],
    into: &mut Matches,
    global: Option<&mut Matches>,
) -> Result<usize, ArgsError> {
    let a = &args[i];
    let (name, inline) = match a.strip_prefix("--") {
        Some(long) => match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (long, None),
        },
        // `-fV`: a short flag with its value attached.
        None => {
            let rest = &a[1..];
            let split = rest.char_indices().nth(1).map_or(rest.len(), |(n, _)| n);
            let v = (split < rest.len()).then(|| rest[split..].to_owned());
            (&rest[..split], v)
        }
    };
    let long_form = a.starts_with("--");
    let find = |t: &&'static [Flag]| -> Option<&'static Flag> {
        t.iter().find(|f| {
            if long_form {
                f.long == name
            } else {
                f.short
                    .is_some_and(|c| name.len() == c.len_utf8() && name.starts_with(c))
            }
        })
    };
    let (f, into) = match (tables.iter().find_map(find), global) {
        (Some(f), _) => (f, into),
        (None, Some(g)) => match [GLOBAL].iter().find_map(find) {
            Some(f) => (f, g),
            None => return Err(unknown(a, None)),
        },
        (None, None) => return Err(unknown(a, None)),
    };
    let (value, used) = match (f.kind, inline) {
        (Bool, None) => ("true".to_owned(), i),
        (Bool, Some(v)) if v == "true" || v == "false" => (v, i),
        (Bool, Some(v)) => {
            return Err(ArgsError::Usage(format!(
                "invalid value {v:?} for --{}: use true or false",
                f.long
            )));
        }
        (_, Some(v)) => (v, i),
        (_, None) => match args.get(i + 1) {
            Some(v) => (v.clone(), i + 1),
            None => return Err(unknown(a, Some("needs a value"))),
        },
    };
    into.values.push((f.long, value));
    Ok(used)
}

fn unknown(flag: &str, why: Option<&str>) -> ArgsError {
    ArgsError::Usage(match why {
        Some(why) => format!("flag {flag} {why}"),
        None => format!("flag provided but not defined: {flag} (see --help)"),
    })
}

/// Turns the matches of subcommand `name` into its typed arguments.
fn build(name: &str, m: Matches) -> Result<Command, ArgsError> {
    let id = m.positionals.first().cloned().unwrap_or_default();
    let id_arg = || IdArg { id: id.clone() };
    Ok(match name {
        "create" => Command::Create(create_args(&m, id)?),
        "run" => Command::Run(RunArgs {
            detach: m.on("detach"),
            keep: m.on("keep"),
            no_subreaper: m.on("no-subreaper"),
            create: create_args(&m, id)?,
        }),
        "start" => Command::Start(id_arg()),
        "state" => Command::State(id_arg()),
        "pause" => Command::Pause(id_arg()),
        "resume" => Command::Resume(id_arg()),
        "kill" => Command::Kill(KillArgs {
            all: m.on("all"),
            signal: m.positionals.get(1).cloned().unwrap_or("SIGTERM".into()),
            id,
        }),
        "delete" => Command::Delete(DeleteArgs {
            force: m.on("force"),
            id,
        }),
        "list" => Command::List(ListArgs {
            format: m.choice("format", "table", &["table", "json"])?,
            quiet: m.on("quiet"),
        }),
        "ps" => Command::Ps(PsArgs {
            format: m.choice("format", "table", &["table", "json"])?,
            ps_args: m.positionals[1..].to_vec(),
            id,
        }),
        "exec" => Command::Exec(exec_args(&m, id)?),
        "spec" => Command::Spec(SpecArgs {
            bundle: m.path("bundle").unwrap_or_else(|| ".".into()),
            rootless: m.on("rootless"),
        }),
        "features" => Command::Features,
        "update" => Command::Update(UpdateArgs {
            resources: m.string("resources"),
            id,
        }),
        other => return Err(ArgsError::Usage(format!("no such command: {other}"))),
    })
}

fn create_args(m: &Matches, id: String) -> Result<CreateArgs, ArgsError> {
    Ok(CreateArgs {
        bundle: m.path("bundle").unwrap_or_else(|| ".".into()),
        console_socket: m.path("console-socket"),
        pid_file: m.path("pid-file"),
        no_pivot: m.on("no-pivot"),
        no_new_keyring: m.on("no-new-keyring"),
        preserve_fds: m.number("preserve-fds")?,
        id,
    })
}

fn exec_args(m: &Matches, id: String) -> Result<ExecArgs, ArgsError> {
    Ok(ExecArgs {
        console_socket: m.path("console-socket"),
        cwd: m.string("cwd"),
        env: m.all("env"),
        tty: m.on("tty"),
        user: m.string("user"),
        process: m.path("process"),
        detach: m.on("detach"),
        pid_file: m.path("pid-file"),
        no_new_privs: m.on("no-new-privs"),
        cap: m.all("cap"),
        preserve_fds: m.number("preserve-fds")?,
        command: m.positionals[1..].to_vec(),
        id,
    })
}

fn usage_line(sub: &Sub) -> String {
    let mut s = String::new();
    for r in sub.required {
        s.push_str(&format!("<{r}> "));
    }
    for o in sub.optional {
        let dots = if sub.trailing { "..." } else { "" };
        s.push_str(&format!("[{o}{dots}] "));
    }
    s.trim_end().to_owned()
}

fn flag_lines(out: &mut String, flags: &[Flag]) {
    for f in flags {
        let short = f.short.map(|c| format!("-{c}, ")).unwrap_or_default();
        let val = if f.kind == Bool { "" } else { " VALUE" };
        out.push_str(&format!(
            "  {:<28}{}\n",
            format!("{short}--{}{val}", f.long),
            f.help
        ));
    }
}

fn main_help() -> String {
    let mut s = String::from(
        "capsa's runc-compatible OCI runtime\n\nUsage: capsa-runc [global flags] <command> [flags] [args]\n\nCommands:\n",
    );
    for sub in SUBS {
        s.push_str(&format!("  {:<10}{}\n", sub.name, sub.about));
    }
    s.push_str("\nGlobal flags:\n");
    flag_lines(&mut s, GLOBAL);
    s.push_str(
        "  --rootless[=true|false|auto]  rootless mode (only false and auto are supported)\n",
    );
    s.push_str("  -v, --version               print the version\n  -h, --help                  print help\n");
    s
}

fn sub_help(sub: &Sub) -> String {
    let mut s = format!(
        "{}\n\nUsage: capsa-runc {} [flags] {}\n",
        sub.about,
        sub.name,
        usage_line(sub)
    );
    if !sub.flags.is_empty() {
        s.push_str("\nFlags:\n");
        for t in sub.flags {
            flag_lines(&mut s, t);
        }
    }
    s
}
