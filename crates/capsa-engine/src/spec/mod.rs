//! spec: one container's OCI `config.json`, generated from the image config plus the flags.
//!
//! The order of the steps matters and follows moby (`daemon/oci_linux.go`): the user is resolved
//! first (caps depend on root versus non-root), then the capabilities, and the seccomp profile
//! last, because Docker's default profile is keyed on the bounding set (`includes.caps`).
//! Everything here is pure apart from reading the image's /etc/passwd and /etc/group, the host's
//! /dev (for `--device` and `--privileged`) and /sys (which paths exist to mask).
//!
//! It must not create files or mounts: `ops` writes the result into the bundle.
//! capsa deliberately sets no `net.ipv4.ip_unprivileged_port_start` sysctl (Docker sets 0):
//! binding a port below 1024 needs CAP_NET_BIND_SERVICE, as the kernel intends.

mod linux;
mod mounts;
mod seccomp;

use crate::caps::{self, CapRequest, FiveSets};
use crate::error::{Error, Result};
use crate::options::{ContainerConfig, NetworkMode};
use crate::user::{self, ExecUser};
use capsa_caps::CapSet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

pub use mounts::{MASKED_PATHS, READONLY_PATHS};

/// The parts of an image's config that shape a container (OCI image-spec `config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// Everything `generate` reads.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub image: &'a ImageDefaults,
    /// The container's rootfs (the overlay mount point); its /etc is read for `--user`.
    pub rootfs: &'a Path,
    /// The container's record directory: `hostname` and `hosts` are bind-mounted from it.
    pub container_dir: &'a Path,
    /// What the host can grant (`caps::available()`).
    pub available: CapSet,
}

/// The generated spec and what was decided on the way (kept in the record for `inspect`).
#[derive(Debug, Clone)]
pub struct Generated {
    pub spec: oci_spec::runtime::Spec,
    pub caps: FiveSets,
    pub user: ExecUser,
    pub hostname: String,
    pub args: Vec<String>,
    /// Which seccomp profile the container got: "default", "unconfined" or the file's path.
    pub seccomp: String,
    pub warnings: Vec<String>,
}

/// Default PATH, as Docker's daemon sets it when the image has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Generates the spec: user, then caps, then process, mounts, Linux section, and seccomp last.
pub fn generate(input: &SpecInput<'_>) -> Result<Generated> {
    let cfg = input.config;
    let user_spec = cfg.user.clone().unwrap_or_else(|| input.image.user.clone());
    let user = user::resolve(input.rootfs, &user_spec)?;
    let resolved = caps::resolve(
        CapRequest {
            add: &cfg.cap_add,
            drop: &cfg.cap_drop,
            privileged: cfg.privileged,
            non_root: user.uid != 0,
            defaults: cfg.cap_defaults.as_deref(),
        },
        input.available,
    )?;
    let hostname = hostname_for(input.id, cfg);
    let args = command_line(cfg, input.image)?;
    let process = process_json(input, &user, &resolved.sets, &hostname, &args)?;
    let mut linux = linux::linux_json(cfg)?;
    let (seccomp_json, seccomp_name) = seccomp::profile(cfg, resolved.sets.bounding)?;
    if let Some(s) = seccomp_json {
        linux["seccomp"] = s;
    }
    let spec_json = json!({
        "ociVersion": "1.2.0",
        "process": process,
        "root": { "path": input.rootfs, "readonly": cfg.read_only },
        "hostname": hostname,
        "mounts": mounts::mounts_json(cfg, input.container_dir)?,
        "linux": linux,
        "annotations": annotations(cfg),
    });
    let spec = serde_json::from_value(spec_json).map_err(|e| Error::Json {
        path: PathBuf::from("config.json (generated)"),
        source: e,
    })?;
    let mut warnings = resolved.warnings;
    if cfg.privileged && cfg.security.unconfined_paths {
        warnings.push("systempaths=unconfined has no effect with --privileged".to_string());
    }
    Ok(Generated {
        spec,
        caps: resolved.sets,
        user,
        hostname,
        args,
        seccomp: seccomp_name,
        warnings,
    })
}

/// `--hostname`, else the host's name with `--network host`, else the 12-digit short id.
fn hostname_for(id: &str, cfg: &ContainerConfig) -> String {
    if let Some(h) = cfg.hostname.as_ref().filter(|h| !h.is_empty()) {
        return h.clone();
    }
    if cfg.network == NetworkMode::Host {
        let uts = rustix::system::uname();
        return uts.nodename().to_string_lossy().into_owned();
    }
    crate::names::short_id(id).to_string()
}

/// Docker's rules: `--entrypoint` replaces the image's entrypoint *and* clears its CMD; a
/// command given on the line replaces CMD. The result must not be empty.
pub fn command_line(cfg: &ContainerConfig, image: &ImageDefaults) -> Result<Vec<String>> {
    let entrypoint = cfg
        .entrypoint
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let cmd = if !cfg.command.is_empty() {
        cfg.command.clone()
    } else if cfg.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone()
    };
    let mut args = entrypoint;
    args.extend(cmd);
    if args.is_empty() {
        return Err(Error::InvalidFlag("No command specified".to_string()));
    }
    if cfg.init {
        return Ok(crate::reaper::wrap(args));
    }
    Ok(args)
}

/// The environment: Docker's daemon defaults (PATH, HOSTNAME, TERM with a tty), then the image's
/// env, then `--env-file` and `-e` in order (a later `NAME=` replaces an earlier one), then HOME
/// from passwd if still unset.
pub fn environment(
    cfg: &ContainerConfig,
    image: &ImageDefaults,
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if cfg.tty {
        env.push("TERM=xterm".to_string());
    }
    for e in image.env.iter().chain(cfg.env.iter()) {
        merge_env(&mut env, e);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

fn merge_env(env: &mut Vec<String>, entry: &str) {
    match env.iter_mut().find(|e| env_key(e) == env_key(entry)) {
        Some(slot) => *slot = entry.to_string(),
        None => env.push(entry.to_string()),
    }
}

fn process_json(
    input: &SpecInput<'_>,
    user: &ExecUser,
    sets: &FiveSets,
    hostname: &str,
    args: &[String],
) -> Result<Value> {
    let cfg = input.config;
    let cwd = [
        cfg.workdir.clone().unwrap_or_default(),
        input.image.working_dir.clone(),
    ]
    .into_iter()
    .find(|w| !w.is_empty())
    .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(Error::InvalidFlag(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    let rlimits: Vec<Value> = cfg
        .ulimits
        .iter()
        .map(|u| json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard}))
        .collect();
    let mut process = json!({
        "terminal": cfg.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": environment(cfg, input.image, hostname, &user.home),
        "cwd": cwd,
        "capabilities": capabilities_json(sets),
        "noNewPrivileges": cfg.security.no_new_privileges,
    });
    if !rlimits.is_empty() {
        process["rlimits"] = Value::Array(rlimits);
    }
    Ok(process)
}

/// The five sets as config.json names them.
pub fn capabilities_json(sets: &FiveSets) -> Value {
    let names = |s: CapSet| -> Vec<String> {
        s.iter()
            .filter(|c| c.is_known())
            .map(|c| c.oci_name())
            .collect()
    };
    json!({
        "bounding": names(sets.bounding),
        "effective": names(sets.effective),
        "permitted": names(sets.permitted),
        "inheritable": names(sets.inheritable),
        "ambient": names(sets.ambient),
    })
}

fn annotations(cfg: &ContainerConfig) -> Value {
    let mut a = serde_json::Map::new();
    a.insert("org.capsa.image".into(), Value::String(cfg.image.clone()));
    if cfg.init {
        a.insert(
            "org.capsa.init".into(),
            Value::String(crate::reaper::DIR.into()),
        );
    }
    Value::Object(a)
}

#[cfg(test)]
mod tests;
