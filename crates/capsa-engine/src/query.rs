//! query: read-only views of containers: `ps` rows, `inspect` documents and `logs`.
//!
//! `inspect` shows what Docker shows (HostConfig.CapAdd/CapDrop normalized, sorted, deduped or
//! null; Privileged) plus capsa's `Capsa` section: the five sets as configured and, while the
//! container runs, the five sets its init really holds (from /proc/PID/status), each with
//! names and hex, plus the seccomp mode and no_new_privs. Must not change any state.

use crate::caps::{FiveSets, inspect_list};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::names::short_id;
use crate::record::{LOG_FILE, Record, Status};
use crate::status;
use crate::time::{human_duration, now_nanos, rfc3339};
use capsa_caps::{CapSet, CapState};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

/// One `ps` row, already formatted the way Docker prints it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PsRow {
    #[serde(rename = "ID")]
    pub id: String,
    pub image: String,
    pub command: String,
    pub created_at: String,
    pub running_for: String,
    pub status: String,
    pub state: String,
    pub names: String,
}

impl Engine {
    /// `ps` (`all` = `-a`): running containers, or all; newest first, as Docker lists them.
    pub fn ps(&self, all: bool) -> Result<Vec<PsRow>> {
        let mut rows = Vec::new();
        for r in self.store.list()?.into_iter().rev() {
            let st = status::observe(&r);
            if !all && st != Status::Running {
                continue;
            }
            rows.push(ps_row(&r, st));
        }
        Ok(rows)
    }

    /// `inspect` of one container, as a JSON object (the CLI prints an array of them).
    pub fn inspect(&self, key: &str) -> Result<Value> {
        let r = self.store.find(key)?;
        Ok(inspect_json(&r, status::observe(&r)))
    }

    /// `logs`: copies the log to `out`; with `follow`, keeps copying until the container stops.
    pub fn logs(&self, key: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
        let r = self.store.find(key)?;
        let path = self.store.dir(&r.id).join(LOG_FILE);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(()),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let mut buf = Vec::new();
        loop {
            buf.clear();
            file.read_to_end(&mut buf)
                .map_err(|e| Error::io("read", &path, e))?;
            out.write_all(&buf)
                .and_then(|()| out.flush())
                .map_err(|e| Error::io("write", "stdout", e))?;
            let running = self
                .store
                .load(&r.id)
                .is_ok_and(|x| status::observe(&x) == Status::Running);
            if !follow || (!running && buf.is_empty()) {
                return Ok(());
            }
            if buf.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Docker's STATUS column: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created".
fn status_text(r: &Record, st: Status) -> String {
    let now = now_nanos();
    match st {
        Status::Running => format!("Up {}", human_duration(now - r.state.started_at)),
        Status::Exited if r.state.finished_at == 0 => format!("Exited ({})", r.state.exit_code),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            human_duration(now - r.state.finished_at)
        ),
        Status::Created => "Created".to_string(),
        Status::Dead => "Dead".to_string(),
    }
}

fn ps_row(r: &Record, st: Status) -> PsRow {
    let mut command = r.args.join(" ");
    if command.len() > 20 {
        command.truncate(19);
        command.push('…');
    }
    PsRow {
        id: short_id(&r.id).to_string(),
        image: r.image.clone(),
        command: format!("\"{command}\""),
        created_at: rfc3339(r.created),
        running_for: format!("{} ago", human_duration(now_nanos() - r.created)),
        status: status_text(r, st),
        state: st.as_str().to_string(),
        names: r.name.clone(),
    }
}

/// A set as names plus its kernel hex mask (the form /proc/PID/status prints).
pub fn set_json(s: CapSet) -> Value {
    json!({ "Names": s.iter().map(|c| c.libcap_name()).collect::<Vec<_>>(), "Hex": format!("{:016x}", s.bits()) })
}

fn five_json(s: &FiveSets) -> Value {
    json!({
        "Bounding": set_json(s.bounding),
        "Effective": set_json(s.effective),
        "Permitted": set_json(s.permitted),
        "Inheritable": set_json(s.inheritable),
        "Ambient": set_json(s.ambient),
    })
}

/// The init's live state from /proc: five sets, no_new_privs and seccomp mode.
fn live_json(pid: i32) -> Value {
    let Ok(state) = CapState::from_pid(pid as u32) else {
        return Value::Null;
    };
    let sets = FiveSets {
        bounding: state.bounding,
        effective: state.effective,
        permitted: state.permitted,
        inheritable: state.inheritable,
        ambient: state.ambient,
    };
    json!({
        "Pid": pid,
        "Capabilities": five_json(&sets),
        "NoNewPrivs": state.no_new_privs,
        "Seccomp": seccomp_mode(pid),
    })
}

/// `Seccomp:` of /proc/PID/status: 0 disabled, 1 strict, 2 filter (proc(5)).
fn seccomp_mode(pid: i32) -> &'static str {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    match text
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
    {
        Some("0") => "disabled",
        Some("1") => "strict",
        Some("2") => "filter",
        _ => "unknown",
    }
}

fn inspect_json(r: &Record, st: Status) -> Value {
    let c = &r.config;
    let running = st == Status::Running;
    let live = if running {
        live_json(r.state.pid)
    } else {
        Value::Null
    };
    json!({
        "Id": r.id,
        "Created": rfc3339(r.created),
        "Path": r.args.first().cloned().unwrap_or_default(),
        "Args": r.args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.as_str(),
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": st == Status::Dead,
            "Pid": if running { r.state.pid } else { 0 },
            "ExitCode": r.state.exit_code,
            "Error": r.state.error,
            "StartedAt": rfc3339(r.state.started_at),
            "FinishedAt": rfc3339(r.state.finished_at),
        },
        "Image": r.image_id,
        "Name": format!("/{}", r.name),
        "HostConfig": {
            "CapAdd": inspect_list(&c.cap_add),
            "CapDrop": inspect_list(&c.cap_drop),
            "Privileged": c.privileged,
            "SecurityOpt": if c.security.raw.is_empty() { Value::Null } else { json!(c.security.raw) },
            "ReadonlyRootfs": c.read_only,
            "NetworkMode": match c.network { crate::options::NetworkMode::Host => "host", crate::options::NetworkMode::None => "none" },
            "AutoRemove": c.auto_remove,
            "Init": c.init,
            "Memory": c.memory.unwrap_or(0),
            "NanoCpus": c.nano_cpus.unwrap_or(0),
            "PidsLimit": c.pids_limit,
            "UsernsMode": match &c.userns { crate::userns::UsernsMode::Host => "host".to_string(), crate::userns::UsernsMode::Remap { user, group } => format!("remap:{user}:{group}"), crate::userns::UsernsMode::Auto { size } => format!("auto:size={size}") },
            "Binds": c.volumes.iter().map(|v| format!("{}:{}{}", v.source.display(), v.destination, if v.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
        },
        "Config": {
            "Hostname": r.hostname,
            "User": c.user.clone().unwrap_or_default(),
            "Env": c.env,
            "Cmd": c.command,
            "Entrypoint": c.entrypoint,
            "Image": r.image,
            "WorkingDir": c.workdir.clone().unwrap_or_default(),
            "Tty": c.tty,
            "OpenStdin": c.interactive,
        },
        "Capsa": {
            "User": { "Uid": r.uid, "Gid": r.gid },
            "MonitorPid": if running && status::monitor_alive(r) { r.state.monitor_pid } else { 0 },
            "Configured": {
                "Capabilities": five_json(&r.caps.sets()),
                "Seccomp": r.seccomp,
                "NoNewPrivs": c.security.no_new_privileges,
            },
            "Live": live,
            // Which user namespace the live capabilities are scoped to (docs/userns.md).
            "UserNamespace": if running { crate::userns_caps::ProcUserns::read(r.state.pid as u32).map_or(Value::Null, |n| json!(n)) } else { Value::Null },
            "Warnings": r.warnings,
        },
    })
}
