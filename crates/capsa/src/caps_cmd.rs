//! `capsa caps ...`: capability inspection commands (print, pid, decode, ps, list, explain,
//! resolve), each with `--format text|json`.
//!
//! Owns argument parsing and output of these commands only; every rule and format lives in
//! capsa-caps. Must not change any process state. Exit codes: 0 success, 2 bad input (unknown
//! names, bad masks, PIDs that do not exist or have exited), 1 anything else.

use std::io::Write;

use capsa_caps::report::{CapView, PsRow, SetView, StateView};
use capsa_caps::text::{self, GetpcapsStyle};
use capsa_caps::{CapSet, CapState, ProcError, Profile, knowledge, parse, proc, resolve};
use capsa_engine::userns_caps::{self, ProcUserns};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

#[derive(clap::Args)]
pub struct CapsArgs {
    /// Output for people (text, the libcap tools' exact layout where one exists) or programs (json).
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    format: Format,
    #[command(subcommand)]
    command: CapsCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum CapsCommand {
    /// Show this process's capability state, exactly like `capsh --print`.
    Print,
    /// Show the capabilities of processes, exactly like `getpcaps PID...`.
    Pid {
        /// `Capabilities for 'PID': ...`, like `getpcaps --verbose`.
        #[arg(long)]
        verbose: bool,
        /// Also show the IAB tuple, like `getpcaps --iab`.
        #[arg(long)]
        iab: bool,
        /// Also say which user namespace the caps are scoped to, and its uid/gid maps (one more
        /// line per PID; JSON gets a `user_namespace` field). Off by default, so the text stays
        /// byte-identical to getpcaps.
        #[arg(long)]
        userns: bool,
        /// Process IDs.
        #[arg(required = true, value_name = "PID")]
        pids: Vec<String>,
    },
    /// Decode a capability mask (as in /proc/PID/status), exactly like `capsh --decode=HEX`.
    Decode {
        /// Hexadecimal mask, with or without 0x (e.g. a80425fb).
        #[arg(value_name = "HEX", allow_hyphen_values = true)]
        hex: String,
    },
    /// List every process that holds capabilities, like `pscap -a`.
    Ps,
    /// List all capabilities with their meaning, risk and default membership.
    List,
    /// Explain one capability (name such as net_admin / CAP_NET_ADMIN, or its number).
    Explain {
        #[arg(value_name = "CAP", allow_hyphen_values = true)]
        cap: String,
    },
    /// Dry run of what `run` will grant: Docker's precedence of profile, adds, drops, privileged.
    Resolve {
        /// All capabilities the host can grant; --cap-add and --cap-drop are then ignored.
        #[arg(long)]
        privileged: bool,
        /// Add a capability (any spelling, or ALL). Repeatable.
        #[arg(long = "cap-add", value_name = "CAP", allow_hyphen_values = true)]
        cap_add: Vec<String>,
        /// Drop a capability (any spelling, or ALL). Repeatable.
        #[arg(long = "cap-drop", value_name = "CAP", allow_hyphen_values = true)]
        cap_drop: Vec<String>,
        /// The default set to start from: docker (14 caps), podman (11) or none.
        #[arg(long, default_value = "docker", value_name = "docker|podman|none")]
        profile: String,
    },
}

/// How a command failed: bad input (exit 2) or an environment failure (exit 1).
enum Failure {
    BadInput(String),
    Other(String),
}

impl From<ProcError> for Failure {
    fn from(e: ProcError) -> Self {
        match e {
            ProcError::NoSuchProcess { .. } | ProcError::Exited { .. } => {
                Failure::BadInput(e.to_string())
            }
            other => Failure::Other(other.to_string()),
        }
    }
}

pub fn run(args: CapsArgs) -> i32 {
    let f = args.format;
    let result = match args.command {
        CapsCommand::Print => print(f),
        CapsCommand::Pid {
            verbose,
            iab,
            userns,
            pids,
        } => pid(f, GetpcapsStyle { verbose, iab }, userns, &pids),
        CapsCommand::Decode { hex } => decode(f, &hex),
        CapsCommand::Ps => ps(f),
        CapsCommand::List => list(f),
        CapsCommand::Explain { cap } => explain(f, &cap),
        CapsCommand::Resolve {
            privileged,
            cap_add,
            cap_drop,
            profile,
        } => resolve_cmd(f, privileged, &cap_add, &cap_drop, &profile),
    };
    match result {
        Ok(code) => code,
        Err(Failure::BadInput(msg)) => {
            eprintln!("capsa: {msg}");
            2
        }
        Err(Failure::Other(msg)) => {
            eprintln!("capsa: {msg}");
            1
        }
    }
}

fn emit(out: &str) -> Result<i32, Failure> {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    Ok(0)
}

fn json<T: Serialize>(value: &T) -> Result<i32, Failure> {
    let s = serde_json::to_string_pretty(value).map_err(|e| Failure::Other(e.to_string()))?;
    emit(&format!("{s}\n"))
}

fn last_cap() -> Result<u8, Failure> {
    proc::cap_last_cap().map_err(Failure::from)
}

fn print(f: Format) -> Result<i32, Failure> {
    let st = CapState::current()?;
    let last = last_cap()?;
    match f {
        Format::Text => emit(&text::capsh_print(&st, &proc::accounts(), last)),
        Format::Json => json(&StateView::new(std::process::id(), &st, last)),
    }
}

/// Parses a PID argument: a positive decimal number.
fn parse_pid(s: &str) -> Result<u32, Failure> {
    s.parse::<u32>()
        .ok()
        .filter(|p| *p > 0 && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| Failure::BadInput(format!("invalid PID {s:?}: expected a positive number")))
}

/// `caps pid --format json --userns`: the usual view plus the namespace.
#[derive(Serialize)]
struct PidNsView {
    #[serde(flatten)]
    caps: StateView,
    user_namespace: Option<ProcUserns>,
}

/// The `--userns` line (or the JSON field) of one PID.
fn userns_of(p: u32) -> Option<ProcUserns> {
    ProcUserns::read(p)
        .map_err(|e| eprintln!("capsa: cannot read the user namespace of {p}: {e}"))
        .ok()
}

fn pid(f: Format, style: GetpcapsStyle, userns: bool, args: &[String]) -> Result<i32, Failure> {
    let pids = args
        .iter()
        .map(|a| parse_pid(a))
        .collect::<Result<Vec<_>, _>>()?;
    let last = last_cap()?;
    let mut out = String::new();
    let mut views = Vec::new();
    let mut code = 0;
    // Like getpcaps: report every PID, print the failures on stderr, fail at the end.
    for p in pids {
        match CapState::from_pid(p) {
            Ok(st) => match f {
                Format::Text => {
                    out.push_str(&text::getpcaps_line(p, &st, last, style));
                    out.push('\n');
                    if let Some(ns) = userns.then(|| userns_of(p)).flatten() {
                        out.push_str(&format!("  {}\n", ns.text()));
                    }
                }
                Format::Json => views.push(PidNsView {
                    caps: StateView::new(p, &st, last),
                    user_namespace: userns.then(|| userns_of(p)).flatten(),
                }),
            },
            Err(e) => {
                code = match Failure::from(e) {
                    Failure::BadInput(m) | Failure::Other(m) => {
                        eprintln!("capsa: {m}");
                        code.max(2)
                    }
                };
            }
        }
    }
    match f {
        Format::Text => emit(&out)?,
        Format::Json => json(&views)?,
    };
    Ok(code)
}

/// Parses a mask the way `capsh --decode` reads it (hexadecimal, optional 0x), but refuses
/// what capsh silently turns into 0: empty strings, non-hex digits and more than 64 bits.
fn parse_mask(s: &str) -> Result<CapSet, Failure> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::BadInput(format!(
            "invalid capability mask {s:?}: expected a hexadecimal number such as 0xa80425fb"
        )));
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 16 {
        return Err(Failure::BadInput(format!(
            "capability mask out of range: {s:?} has more than 64 bits"
        )));
    }
    u64::from_str_radix(
        if significant.is_empty() {
            "0"
        } else {
            significant
        },
        16,
    )
    .map(CapSet::from_bits)
    .map_err(|e| Failure::BadInput(format!("invalid capability mask {s:?}: {e}")))
}

#[derive(Serialize)]
struct DecodeView {
    hex: String,
    text: String,
    caps: Vec<String>,
}

fn decode(f: Format, hex: &str) -> Result<i32, Failure> {
    let mask = parse_mask(hex)?;
    match f {
        Format::Text => emit(&format!("{}\n", text::decode_line(mask))),
        Format::Json => json(&DecodeView {
            hex: mask.hex(),
            text: text::name_list(mask, 64),
            caps: mask.oci_names(),
        }),
    }
}

fn ps(f: Format) -> Result<i32, Failure> {
    let last = last_cap()?;
    let accounts = proc::accounts();
    let rows: Vec<PsRow> = proc::all_pids()?
        .into_iter()
        // Processes come and go while we walk /proc; a vanished one is simply not listed.
        .filter_map(|p| proc::read_status(p).ok())
        .filter_map(|st| {
            let uid = st.caps.uid.effective;
            let user = accounts
                .user(uid)
                .map_or_else(|| uid.to_string(), str::to_string);
            PsRow::new(&st, user, last)
        })
        .collect();
    match f {
        Format::Json => json(&rows),
        Format::Text => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let (ppid, pid) = (r.ppid.to_string(), r.pid.to_string());
                    vec![
                        ppid,
                        pid,
                        r.user.clone(),
                        r.command.clone(),
                        r.capabilities_marked(),
                    ]
                })
                .collect();
            let head = ["PPID", "PID", "USER", "COMMAND", "CAPABILITIES"];
            let legend =
                "\n@ = ambient caps set, + = bounding set not empty (an exec could gain caps)\n";
            emit(&format!("{}{legend}", table(&head, &body)))
        }
    }
}

/// An aligned table: columns padded to their widest cell, two spaces apart, the last column
/// unpadded. Small enough not to need a table crate (docs/decisions.md).
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let n = cells.len();
        let mut s = String::new();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn list(f: Format) -> Result<i32, Failure> {
    let infos: Vec<_> = knowledge::all().collect();
    match f {
        Format::Json => json(&infos.into_iter().map(CapView::from).collect::<Vec<_>>()),
        Format::Text => {
            let rows: Vec<Vec<String>> = infos
                .iter()
                .map(|i| {
                    vec![
                        i.cap.index().to_string(),
                        i.cap.oci_name(),
                        i.risk.name().to_string(),
                        yes_no(i.in_docker_default()),
                        yes_no(i.in_podman_default()),
                        i.meaning.to_string(),
                    ]
                })
                .collect();
            emit(&table(
                &["NR", "NAME", "RISK", "DOCKER", "PODMAN", "MEANING"],
                &rows,
            ))
        }
    }
}

/// `caps explain --format json`: the facts plus the user-namespace scope.
#[derive(Serialize)]
struct ExplainView {
    #[serde(flatten)]
    cap: CapView,
    in_user_namespace: Option<userns_caps::UsernsScope>,
}

fn explain(f: Format, name: &str) -> Result<i32, Failure> {
    let cap = parse::parse_single(name).map_err(|e| Failure::BadInput(e.to_string()))?;
    let Some(info) = knowledge::info(cap) else {
        return Err(Failure::BadInput(format!(
            "{} has no name in this build (known: 0..=40)",
            cap.oci_name()
        )));
    };
    let scope = userns_caps::scope(cap.index());
    match f {
        Format::Json => json(&ExplainView {
            cap: CapView::from(info),
            in_user_namespace: scope,
        }),
        Format::Text => emit(&format!(
            "{} ({}, libcap name {})\n  meaning: {}\n  risk:    {}: {}\n  default: docker {}, podman {}\n{}",
            cap.oci_name(),
            cap.index(),
            cap.libcap_text_name(),
            info.meaning,
            info.risk.name(),
            info.reason,
            yes_no(info.in_docker_default()),
            yes_no(info.in_podman_default()),
            scope.map_or(String::new(), |s| format!(
                "  in a user namespace (a remapped container):\n    can:    {}\n    cannot: {}\n",
                s.can, s.cannot
            )),
        )),
    }
}

#[derive(Serialize)]
struct ResolveView {
    profile: String,
    privileged: bool,
    cap_add: Vec<String>,
    cap_drop: Vec<String>,
    available: SetView,
    defaults: SetView,
    result: SetView,
    added: Vec<String>,
    removed: Vec<String>,
}

fn resolve_cmd(
    f: Format,
    privileged: bool,
    add: &[String],
    drop: &[String],
    profile: &str,
) -> Result<i32, Failure> {
    let profile: Profile = profile
        .parse()
        .map_err(|e| Failure::BadInput(format!("{e}")))?;
    let available = proc::host_available()?;
    let defaults = profile.set();
    let result = resolve(defaults, add, drop, privileged, available)
        .map_err(|e| Failure::BadInput(e.to_string()))?;
    if privileged && !(add.is_empty() && drop.is_empty()) {
        eprintln!(
            "capsa: warning: --privileged grants every available cap; --cap-add/--cap-drop are ignored (as in Docker)"
        );
    }
    let view = ResolveView {
        profile: profile.name().into(),
        privileged,
        cap_add: add.iter().map(|a| parse::normalize(a)).collect(),
        cap_drop: drop.iter().map(|d| parse::normalize(d)).collect(),
        available: available.into(),
        defaults: defaults.into(),
        result: result.into(),
        added: result.difference(defaults).oci_names(),
        removed: defaults.difference(result).oci_names(),
    };
    match f {
        Format::Json => json(&view),
        Format::Text => emit(&resolve_text(profile, defaults, result, &view)),
    }
}

fn resolve_text(profile: Profile, defaults: CapSet, result: CapSet, v: &ResolveView) -> String {
    let none = || "(none)".to_string();
    let list = |l: &[String]| if l.is_empty() { none() } else { l.join(", ") };
    let mut s = format!(
        "profile {}: {} caps ({})\nresult:  {} caps ({})\n",
        profile.name(),
        defaults.len(),
        defaults.hex(),
        result.len(),
        result.hex()
    );
    for cap in profile.ordered(result) {
        s.push_str(&format!("  {cap}\n"));
    }
    s.push_str(&format!("added vs profile:   {}\n", list(&v.added)));
    s.push_str(&format!("removed vs profile: {}\n", list(&v.removed)));
    s
}
