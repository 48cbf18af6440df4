//! `capsa profile [--from docker|all] [--duration S] [--probe CMD] [--format F] [-o FILE]
//! [run flags] IMAGE [CMD...]`: records the capability checks of a workload run with a
//! superset of capabilities, proposes the minimal set, and verifies it with a second run that
//! has exactly that set plus no_new_privs (trying the recorded alternatives when it fails).
//!
//! Owns the order of the two runs, when a run stops (exit, deadline, probe), the verdict and
//! the output. Must not classify checks or build the proposal (capsa-trace does), nor start
//! processes itself (capsa-engine's gated start does; the recorder attaches in its gate).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use capsa_engine::sysconfig::SystemConfig;
use capsa_engine::{Engine, Paths, RunOptions};
use capsa_trace::{Format, Proposal, Recorder, RecorderOptions, Recording};
use clap::Args;
use serde::Serialize;

/// How long a probe may take to pass when no `--duration` is given.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two probe attempts, and between two looks at the workload.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
const POLL: Duration = Duration::from_millis(20);

#[derive(Args)]
pub struct ProfileArgs {
    /// The superset to record with: docker (Docker's 14 default capabilities plus any
    /// --cap-add) or all (every capability this host can grant).
    #[arg(long, default_value = "docker", value_parser = ["docker", "all"])]
    from: String,
    /// Stop the workload after this many seconds (with --probe: give up on the probe then).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// A shell command run in the container with `capsa exec` until it succeeds; the workload
    /// is stopped then (for servers).
    #[arg(long, value_name = "CMD")]
    probe: Option<String>,
    /// text, json, docker (flags for docker/capsa run), compose, kubernetes, oci.
    #[arg(long, default_value = "text")]
    format: String,
    /// Write the rendering to FILE instead of stdout (the JSON is what `run --cap-profile` reads).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Record and propose only; skip the verification run.
    #[arg(long)]
    no_verify: bool,
    #[command(flatten)]
    run: crate::container_cmd::RunArgs,
}

/// When a run ends.
#[derive(Debug, Clone)]
enum StopRule {
    Exit,
    Deadline(Duration),
    Probe { cmd: String, timeout: Duration },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
enum Outcome {
    Exited(i32),
    /// Still running when the deadline came (it was stopped then).
    RanUntilDeadline,
    ProbePassed,
    /// The probe never passed (the workload exited or the deadline came first).
    ProbeFailed,
}

impl Outcome {
    fn describe(self) -> String {
        match self {
            Outcome::Exited(c) => format!("exited with code {c}"),
            Outcome::RanUntilDeadline => "was still running at the deadline".into(),
            Outcome::ProbePassed => "passed the probe".into(),
            Outcome::ProbeFailed => "never passed the probe".into(),
        }
    }

    /// Whether `self` (verification) reproduces `recorded` (the superset run).
    fn matches(self, recorded: Outcome) -> bool {
        match (recorded, self) {
            (Outcome::ProbeFailed, _) => false,
            (Outcome::RanUntilDeadline, Outcome::Exited(_)) => false,
            (Outcome::Exited(a), Outcome::RanUntilDeadline) => a == 0,
            (a, b) => a == b,
        }
    }
}

/// One verification attempt.
#[derive(Debug, Clone, Serialize)]
struct Attempt {
    caps: Vec<String>,
    /// What was changed from the previous attempt (an alternative swapped in).
    change: Option<String>,
    outcome: Outcome,
    new_denials: Vec<String>,
    passed: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Verification {
    passed: bool,
    verdict: String,
    attempts: Vec<Attempt>,
}

/// What both runs share.
struct Ctx {
    engine: Engine,
    global: Vec<String>,
    stop: StopRule,
}

pub fn run(
    root: Option<&Path>,
    config_path: Option<&Path>,
    config: &SystemConfig,
    a: ProfileArgs,
) -> i32 {
    match profile(root, config_path, config, a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capsa profile: {e:#}");
            125
        }
    }
}

fn profile(
    root: Option<&Path>,
    config_path: Option<&Path>,
    config: &SystemConfig,
    a: ProfileArgs,
) -> anyhow::Result<i32> {
    let format = Format::parse(&a.format).ok_or_else(|| {
        anyhow!(
            "unknown --format {:?}; use one of {:?}",
            a.format,
            Format::NAMES
        )
    })?;
    let stop = stop_rule(a.duration, a.probe.clone())?;
    // A recorder killed earlier left its instance behind; SIGINT/SIGTERM now removes ours.
    if let Ok(removed) = capsa_trace::cleanup_stale()
        && !removed.is_empty()
    {
        eprintln!("capsa profile: removed stale tracefs instances {removed:?}");
    }
    capsa_trace::cleanup_on_signals().context("cannot install the signal cleanup")?;
    let superset = superset_options(config, a.run, &a.from)?;
    let state_root = std::env::var_os("CAPSA_STATE_ROOT").map(PathBuf::from);
    let ctx = Ctx {
        engine: Engine::new(Paths::new(root.map(Path::to_path_buf), state_root)),
        global: global_flags(root, config_path),
        stop,
    };
    eprintln!("capsa profile: recording with the {} superset...", a.from);
    let (recorded, recording) = recorded_run(&ctx, &superset)?;
    eprintln!("capsa profile: the workload {}", recorded.describe());
    let mut proposal = Proposal::from_recording(&recording);
    let verification = if a.no_verify {
        None
    } else {
        Some(verify(&ctx, &superset, recorded, &mut proposal)?)
    };
    emit(
        &proposal,
        verification.as_ref(),
        recorded,
        format,
        a.output.as_deref(),
    )?;
    Ok(match verification {
        Some(v) if !v.passed => 1,
        _ => 0,
    })
}

fn stop_rule(duration: Option<f64>, probe: Option<String>) -> anyhow::Result<StopRule> {
    let duration = duration
        .map(|s| Duration::try_from_secs_f64(s).map_err(|_| anyhow!("invalid --duration {s}")))
        .transpose()?;
    Ok(match (probe, duration) {
        (Some(cmd), d) => StopRule::Probe {
            cmd,
            timeout: d.unwrap_or(PROBE_TIMEOUT),
        },
        (None, Some(d)) => StopRule::Deadline(d),
        (None, None) => StopRule::Exit,
    })
}

/// The run flags plus the superset: Docker's 14 defaults (whatever the system profile says)
/// or every capability the host can grant.
fn superset_options(
    config: &SystemConfig,
    run: crate::container_cmd::RunArgs,
    from: &str,
) -> anyhow::Result<RunOptions> {
    let mut o = run.options();
    if o.detach || o.tty || o.rm {
        bail!(
            "-d, -t and --rm do not apply: capsa profile runs the workload in the foreground and removes its containers"
        );
    }
    config.apply(&mut o);
    o.cap_defaults = None;
    o.name = None;
    if from == "all" {
        o.cap_add.push("ALL".into());
    }
    Ok(o)
}

/// `--root`/`--config` for the `capsa exec` that runs the probe.
fn global_flags(root: Option<&Path>, config_path: Option<&Path>) -> Vec<String> {
    let mut g = Vec::new();
    if let Some(r) = root {
        g.extend(["--root".to_string(), r.to_string_lossy().into_owned()]);
    }
    if let Some(c) = config_path {
        g.extend(["--config".to_string(), c.to_string_lossy().into_owned()]);
    }
    g
}

/// Removes a container whatever happens to the run that made it.
struct Remove<'a> {
    engine: &'a Engine,
    id: String,
}

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.engine.remove(&self.id, true) {
            eprintln!("capsa profile: cannot remove container {}: {e}", self.id);
        }
    }
}

/// One recorded run: create, gated start with the recorder attached before the entrypoint's
/// exec, watch until the stop rule says so, then stop the recorder and remove the container.
fn recorded_run(ctx: &Ctx, opts: &RunOptions) -> anyhow::Result<(Outcome, Recording)> {
    let created = ctx.engine.create(opts)?;
    let _remove = Remove {
        engine: &ctx.engine,
        id: created.id.clone(),
    };
    let rootfs = ctx.engine.store.dir(&created.id).join("rootfs");
    let mut recorder: Option<Recorder> = None;
    let mut trace_error = None;
    let mut gate = |pid: i32| {
        let opts = RecorderOptions {
            rootfs: Some(rootfs.clone()),
            ..RecorderOptions::default()
        };
        match Recorder::start_with(pid, opts) {
            Ok(r) => {
                recorder = Some(r);
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                trace_error = Some(e);
                Err(capsa_engine::Error::Runtime(msg))
            }
        }
    };
    let _ = std::io::stdout().flush();
    let started = ctx.engine.start_gated(&created.id, &mut gate);
    let pid = match (started, trace_error) {
        (Ok(pid), _) => pid,
        (Err(_), Some(e)) => return Err(e.into()),
        (Err(e), None) => return Err(e.into()),
    };
    let watched = watch(ctx, &created.id, pid);
    let recording = match recorder {
        Some(r) => r.stop()?,
        None => bail!("the recorder was not started"),
    };
    Ok((watched?, recording))
}

/// Waits for the workload according to the stop rule; always reaps it and records its exit.
fn watch(ctx: &Ctx, id: &str, pid: i32) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let mut next_probe = start;
    let result = loop {
        if let Some(code) = ctx.engine.try_reap(pid)? {
            ctx.engine.record_exit(id, code);
            return Ok(match ctx.stop {
                StopRule::Probe { .. } => Outcome::ProbeFailed,
                _ => Outcome::Exited(code),
            });
        }
        match &ctx.stop {
            StopRule::Exit => {}
            StopRule::Deadline(d) if start.elapsed() >= *d => break Outcome::RanUntilDeadline,
            StopRule::Deadline(_) => {}
            StopRule::Probe { timeout, .. } if start.elapsed() >= *timeout => {
                break Outcome::ProbeFailed;
            }
            StopRule::Probe { cmd, .. } if Instant::now() >= next_probe => {
                if probe_passes(ctx, id, cmd)? {
                    break Outcome::ProbePassed;
                }
                next_probe = Instant::now() + PROBE_INTERVAL;
            }
            StopRule::Probe { .. } => {}
        }
        std::thread::sleep(POLL);
    };
    // PID 1 of a pid namespace ignores SIGTERM without a handler (busybox httpd has none), so
    // the deadline and the probe end the workload with SIGKILL.
    let _ = ctx.engine.kill(id, libc::SIGKILL);
    let code = ctx.engine.reap(pid)?;
    ctx.engine.record_exit(id, code);
    Ok(result)
}

/// Runs the probe with `capsa exec`. Its own checks are not recorded: it is the client that
/// exercises the workload, not part of it (its pid is not added to the recorder).
fn probe_passes(ctx: &Ctx, id: &str, cmd: &str) -> anyhow::Result<bool> {
    let exe = std::env::current_exe().context("cannot find the capsa binary for the probe")?;
    let status = Command::new(&exe)
        .args(&ctx.global)
        .args(["exec", id, "/bin/sh", "-c", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {} exec for the probe", exe.display()))?;
    Ok(status.success())
}

/// The verification: exactly the proposal plus no_new_privs; on failure, each recorded
/// alternative in turn. Nothing is verified from an incomplete recording.
fn verify(
    ctx: &Ctx,
    superset: &RunOptions,
    recorded: Outcome,
    proposal: &mut Proposal,
) -> anyhow::Result<Verification> {
    if !proposal.complete {
        return Ok(Verification {
            passed: false,
            verdict: "not verified: the recording is incomplete (lost events, or no exec seen)"
                .into(),
            attempts: Vec::new(),
        });
    }
    if matches!(recorded, Outcome::ProbeFailed) {
        return Ok(Verification {
            passed: false,
            verdict: "not verified: the probe never passed with the superset".into(),
            attempts: Vec::new(),
        });
    }
    let recorded_denials = denial_keys(proposal);
    let mut attempts = Vec::new();
    let first = attempt(ctx, superset, recorded, proposal, &recorded_denials, None)?;
    let mut passed = first.passed;
    attempts.push(first);
    if !passed {
        for (chosen, alts) in proposal.alternatives() {
            for alt in alts {
                let mut candidate = proposal.clone();
                if !candidate.use_alternative(chosen, alt) {
                    continue;
                }
                let change = format!("{} instead of {}", alt.oci_name(), chosen.oci_name());
                eprintln!("capsa profile: verification failed; trying {change}");
                let a = attempt(
                    ctx,
                    superset,
                    recorded,
                    &candidate,
                    &recorded_denials,
                    Some(change),
                )?;
                let ok = a.passed;
                attempts.push(a);
                if ok {
                    *proposal = candidate;
                    passed = true;
                    break;
                }
            }
            if passed {
                break;
            }
        }
    }
    let verdict = verdict_text(passed, &attempts);
    Ok(Verification {
        passed,
        verdict,
        attempts,
    })
}

fn verdict_text(passed: bool, attempts: &[Attempt]) -> String {
    let last = attempts.last();
    match (passed, last) {
        (true, Some(a)) => match &a.change {
            Some(c) => format!(
                "PASSED after {} attempts, with {c}: {}, no new denials",
                attempts.len(),
                a.outcome.describe()
            ),
            None => format!("PASSED: {}, no new denials", a.outcome.describe()),
        },
        (false, Some(a)) => format!(
            "FAILED after {} attempt(s): {}{}",
            attempts.len(),
            a.outcome.describe(),
            if a.new_denials.is_empty() {
                String::new()
            } else {
                format!("; new denials: {}", a.new_denials.join("; "))
            }
        ),
        _ => "not verified".into(),
    }
}

/// One verification run with exactly `p.caps` and no_new_privs.
fn attempt(
    ctx: &Ctx,
    superset: &RunOptions,
    recorded: Outcome,
    p: &Proposal,
    recorded_denials: &[String],
    change: Option<String>,
) -> anyhow::Result<Attempt> {
    let caps: Vec<String> = p.caps.iter().map(|c| c.oci_name()).collect();
    let mut o = superset.clone();
    o.cap_drop = vec!["ALL".into()];
    o.cap_add = caps.clone();
    o.privileged = false;
    o.cap_defaults = None;
    if !o
        .security_opt
        .iter()
        .any(|s| s.starts_with("no-new-privileges"))
    {
        o.security_opt.push("no-new-privileges".into());
    }
    eprintln!(
        "capsa profile: verifying with exactly [{}] and no_new_privs...",
        caps.join(", ")
    );
    let (outcome, rec) = recorded_run(ctx, &o)?;
    let seen = Proposal::from_recording(&rec);
    let new_denials: Vec<String> = denial_keys(&seen)
        .into_iter()
        .filter(|d| !recorded_denials.contains(d))
        .filter(|d| !kernel_fallback(d, p))
        .collect();
    let passed = outcome.matches(recorded) && new_denials.is_empty();
    Ok(Attempt {
        caps,
        change,
        outcome,
        new_denials,
        passed,
    })
}

/// `CAP_X at path (comm)`-style keys of a proposal's denials, without pids.
fn denial_keys(p: &Proposal) -> Vec<String> {
    let mut keys: Vec<String> = p
        .denials
        .iter()
        .map(|d| {
            let caps: Vec<String> = d.caps.iter().map(|c| c.oci_name()).collect();
            let caps = if caps.is_empty() {
                "?".to_string()
            } else {
                caps.join("+")
            };
            format!("{caps} at {}", d.path)
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// generic_permission (fs/namei.c) asks DAC_READ_SEARCH before DAC_OVERRIDE for a read or a
/// directory search: with only DAC_OVERRIDE held, the refused first question is expected.
fn kernel_fallback(key: &str, p: &Proposal) -> bool {
    let holds_override = p.caps.iter().any(|c| c.oci_name() == "CAP_DAC_OVERRIDE");
    holds_override && key == "CAP_DAC_READ_SEARCH at generic_permission"
}

/// Writes the rendering (stdout or -o) and the verdict. The text and JSON renderings carry
/// the verdict; with the snippet formats it goes to stderr.
fn emit(
    p: &Proposal,
    v: Option<&Verification>,
    recorded: Outcome,
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let body = match format {
        Format::Text => {
            let mut t = p.render(Format::Text);
            t.push_str(&format!(
                "\nRecording run: the workload {}.\n",
                recorded.describe()
            ));
            t.push_str(&verification_text(v));
            t
        }
        Format::Json => {
            let mut j = serde_json::to_value(p).context("cannot serialize the proposal")?;
            if let Some(obj) = j.as_object_mut() {
                obj.insert("recorded_outcome".into(), serde_json::to_value(recorded)?);
                obj.insert("verification".into(), serde_json::to_value(v)?);
            }
            serde_json::to_string_pretty(&j)? + "\n"
        }
        other => {
            eprint!("{}", verification_text(v));
            p.render(other)
        }
    };
    match output {
        Some(path) => std::fs::write(path, body)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let _ = std::io::stdout().write_all(body.as_bytes());
        }
    }
    Ok(())
}

fn verification_text(v: Option<&Verification>) -> String {
    let Some(v) = v else {
        return "Verification: skipped (--no-verify).\n".into();
    };
    let mut t = format!("Verification: {}\n", v.verdict);
    for (i, a) in v.attempts.iter().enumerate() {
        t.push_str(&format!(
            "  {}. [{}]{}: {}{}\n",
            i + 1,
            a.caps.join(", "),
            a.change
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            a.outcome.describe(),
            if a.passed { ", passed" } else { ", failed" }
        ));
    }
    t
}
