//! The container commands of `capsa-runc`: each maps its flags onto one `capsa_runtime`
//! operation and prints the result the way runc 1.1.5 does.
//!
//! Owns: output formats (state JSON, list/ps tables), reading `--process`/`--resources`
//! files, and logging the warnings the runtime returns.
//! Must not touch: container policy (it lives in `capsa_runtime::container`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use capsa_caps::CapSet;
use capsa_runtime::container::{self, CreateOptions, ExecOptions, ExecOverrides, foreground};
use capsa_runtime::spec;
use capsa_runtime::state::{OciState, StateRoot};

use super::log::Log;
use super::tty;

/// What every command needs: the state root and the log.
pub struct Ctx<'a> {
    pub root: StateRoot,
    pub log: &'a Log,
}

impl<'a> Ctx<'a> {
    pub fn new(root: &Path, log: &'a Log) -> Ctx<'a> {
        Ctx {
            root: StateRoot::new(root),
            log,
        }
    }

    fn warn_all(&self, warnings: &[String]) {
        for w in warnings {
            self.log.warn(w);
        }
    }
}

/// What the host lets us grant: our own bounding set (a child can never gain more).
fn grantable() -> Result<CapSet> {
    spec::own_bounding_set().context("cannot read CapBnd from /proc/self/status")
}

pub fn create_opts(a: &super::CreateArgs, foreground: bool) -> CreateOptions {
    CreateOptions {
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        foreground,
        // Engines (containerd's shim) read usage from the container's cgroups themselves.
        stats_cgroups: true,
    }
}

pub fn create(ctx: &Ctx, id: &str, opts: &CreateOptions, bundle: &Path) -> Result<i32> {
    let loaded = load(ctx, bundle)?;
    create_loaded(ctx, id, opts, &loaded)
}

fn load(ctx: &Ctx, bundle: &Path) -> Result<spec::BundleSpec> {
    let loaded = spec::load_bundle(bundle, grantable()?)?;
    ctx.warn_all(&loaded.warnings);
    Ok(loaded)
}

fn create_loaded(
    ctx: &Ctx,
    id: &str,
    opts: &CreateOptions,
    loaded: &spec::BundleSpec,
) -> Result<i32> {
    let pid = container::create(&ctx.root, id, loaded, opts)?;
    ctx.log
        .debug(&format!("container {id} created, init pid {pid}"));
    Ok(pid)
}

/// `run`: create and start; in the foreground, wait for the init while forwarding signals
/// (relaying the terminal when `process.terminal` is set), then delete the container and
/// return its exit code.
pub fn run(ctx: &Ctx, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<i32> {
    let loaded = load(ctx, bundle)?;
    let terminal = loaded
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let console = if opts.foreground && terminal {
        if opts.console_socket.is_some() {
            anyhow::bail!("cannot use console socket if runc will not detach or allocate tty");
        }
        Some(tty::ConsoleSocket::bind(ctx.root.path(), id)?)
    } else {
        None
    };
    let mut opts = opts.clone();
    if let Some(c) = &console {
        // We are the console socket's receiver: to the runtime this is a detached terminal.
        opts.console_socket = Some(c.path().to_path_buf());
        opts.foreground = false;
    }
    if opts.foreground || console.is_some() {
        // The init may be re-parented (a double fork, or joined namespaces): as subreaper
        // we still get its exit status (prctl(2) PR_SET_CHILD_SUBREAPER).
        let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    }
    let pid = create_loaded(ctx, id, &opts, &loaded)?;
    let master = match &console {
        Some(c) => Some(c.receive_master().inspect_err(|_| {
            let _ = container::delete(&ctx.root, id, true);
        })?),
        None => None,
    };
    if !opts.foreground && master.is_none() {
        if let Err(e) = start(ctx, id) {
            let _ = container::delete(&ctx.root, id, true);
            return Err(e);
        }
        return Ok(0);
    }
    // Blocked only now: the init was forked before and must not inherit the mask.
    foreground::block_signals().context("cannot block signals for forwarding")?;
    if let Err(e) = start(ctx, id) {
        let _ = container::delete(&ctx.root, id, true);
        return Err(e);
    }
    let code = match &master {
        Some(m) => tty::relay(m, pid)?,
        None => foreground::wait(pid).context("waiting for the container failed")?,
    };
    let warnings = container::remove_stopped(&ctx.root, id)?;
    ctx.warn_all(&warnings);
    Ok(code)
}

pub fn start(ctx: &Ctx, id: &str) -> Result<()> {
    let warnings = container::start(&ctx.root, id)?;
    ctx.warn_all(&warnings);
    Ok(())
}

pub fn state(ctx: &Ctx, id: &str) -> Result<()> {
    let st = container::state(&ctx.root, id)?;
    println!("{}", serde_json::to_string_pretty(&st)?);
    Ok(())
}

pub fn kill(ctx: &Ctx, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = container::parse_signal(signal)?;
    Ok(container::kill(&ctx.root, id, sig, all)?)
}

pub fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<()> {
    let warnings = container::delete(&ctx.root, id, force)?;
    ctx.warn_all(&warnings);
    Ok(())
}

pub fn list(ctx: &Ctx, json: bool, quiet: bool) -> Result<()> {
    let all = container::list(&ctx.root)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in &all {
            writeln!(out, "{}", s.id)?;
        }
    } else if json {
        // runc encodes a nil slice: `null` when there is nothing.
        if all.is_empty() {
            writeln!(out, "null")?;
        } else {
            writeln!(out, "{}", serde_json::to_string(&all)?)?;
        }
    } else {
        out.write_all(list_table(&all).as_bytes())?;
    }
    Ok(())
}

/// runc's table: Go tabwriter with minwidth 12, padding 3, the last column unpadded.
fn list_table(all: &[OciState]) -> String {
    let mut rows: Vec<[String; 6]> =
        vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for s in all {
        rows.push([
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.display().to_string(),
            s.created.clone(),
            s.owner.clone(),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len() + 3).max(12);
        }
    }
    let mut text = String::new();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            if i == 5 {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        text.push('\n');
    }
    text
}

pub fn ps(ctx: &Ctx, id: &str, json: bool, ps_args: &[String]) -> Result<()> {
    let pids = container::pids(&ctx.root, id)?;
    if json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<&str> = if ps_args.is_empty() {
        vec!["-ef"]
    } else {
        ps_args.iter().map(String::as_str).collect()
    };
    let output = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("cannot run ps")?;
    if !output.status.success() {
        anyhow::bail!(
            "ps {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    print!(
        "{}",
        filter_ps(&String::from_utf8_lossy(&output.stdout), &pids)?
    );
    Ok(())
}

/// Keeps the header and the rows whose PID column is one of `pids`.
fn filter_ps(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column (add -o pid to the ps arguments)")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

pub fn exec(ctx: &Ctx, a: &super::ExecArgs) -> Result<i32> {
    let grantable = grantable()?;
    let (process, warnings) = match &a.process {
        Some(path) => spec::load_process(path, grantable)?,
        None => {
            let config = container::config(&ctx.root, &a.id)?;
            let overrides = ExecOverrides {
                args: a.command.clone(),
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.as_deref().map(parse_user).transpose()?,
                caps: a.cap.clone(),
                tty: a.tty,
                no_new_privs: a.no_new_privs,
            };
            let p = container::exec_process(config.process().as_ref(), &overrides)?;
            spec::filter_process(&p, grantable).context("cannot rebuild the exec process")?
        }
    };
    ctx.warn_all(&warnings);
    let opts = ExecOptions {
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        detach: a.detach,
    };
    let terminal = process.terminal().unwrap_or(false);
    let console = if terminal && !a.detach && a.console_socket.is_none() {
        Some(tty::ConsoleSocket::bind(ctx.root.path(), &a.id)?)
    } else {
        None
    };
    let mut opts = opts;
    if let Some(c) = &console {
        opts.console_socket = Some(c.path().to_path_buf());
        opts.detach = true;
    }
    let pid = container::exec(&ctx.root, &a.id, &process, &opts)?;
    if a.detach {
        return Ok(0);
    }
    let master = console
        .as_ref()
        .map(tty::ConsoleSocket::receive_master)
        .transpose()?;
    foreground::block_signals().context("cannot block signals for forwarding")?;
    match &master {
        Some(m) => tty::relay(m, pid),
        None => Ok(foreground::wait(pid).context("waiting for the exec process failed")?),
    }
}

/// `--user uid[:gid]` (numbers only, as runc accepts them).
fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let num = |v: &str| {
        v.parse::<u32>()
            .with_context(|| format!("invalid --user {s:?}: want uid[:gid]"))
    };
    Ok((num(uid)?, gid.map(num).transpose()?))
}

pub fn features() -> Result<()> {
    let f = super::info::features(grantable()?);
    println!("{}", serde_json::to_string_pretty(&f)?);
    Ok(())
}

pub fn set_paused(ctx: &Ctx, id: &str, pause: bool) -> Result<()> {
    Ok(container::set_paused(&ctx.root, id, pause)?)
}

pub fn update(ctx: &Ctx, id: &str, resources: Option<&str>) -> Result<()> {
    let Some(src) = resources else {
        anyhow::bail!(
            "update needs --resources FILE (or - for stdin): other flags are not supported yet"
        );
    };
    let mut text = Vec::new();
    if src == "-" {
        std::io::stdin()
            .read_to_end(&mut text)
            .context("cannot read resources from stdin")?;
    } else {
        text = std::fs::read(src).with_context(|| format!("cannot read {src}"))?;
    }
    // Through a Value, as every spec type is read (one deserializer instantiation in the binary).
    let value: serde_json::Value =
        serde_json::from_slice(&text).context("invalid JSON for --resources")?;
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_value(value).context("invalid LinuxResources JSON for --resources")?;
    Ok(container::update(&ctx.root, id, &res)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").ok(), Some((1000, None)));
        assert_eq!(parse_user("1000:100").ok(), Some((1000, Some(100))));
        assert!(parse_user("bob").is_err());
        assert!(parse_user("1:x").is_err());
    }

    #[test]
    fn ps_filtering_keeps_header_and_matching_rows() {
        let text = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 00:00 ? 00:00:01 init\n\
                    root 42 1 0 00:00 ? 00:00:00 sh\n";
        let out = filter_ps(text, &[42]).expect("filters");
        assert_eq!(
            out,
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 00:00 ? 00:00:00 sh\n"
        );
    }

    #[test]
    fn list_table_shape() {
        let t = list_table(&[]);
        assert_eq!(
            t,
            "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
        );
    }
}
