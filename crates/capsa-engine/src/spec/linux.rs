//! linux: the `linux` section of config.json: namespaces, masked and read-only paths, devices
//! and the device cgroup, resources (`--memory`, `--cpus`, `--pids-limit`) and sysctls.

use super::mounts::{masked_paths, readonly_paths};
use crate::error::{Error, Result};
use crate::options::{ContainerConfig, DeviceMapping, NetworkMode};
use rustix::fs::FileType;
use serde_json::{Value, json};
use std::path::Path;

/// The device cgroup rules of a non-privileged container: deny everything, then allow `mknod`
/// of any node and the standard devices (null, zero, full, random, urandom, tty, ptmx, pts,
/// tun): the list Docker inherited from runc.
fn default_device_rules() -> Vec<Value> {
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 2),
        (10, 200),
    ] {
        rules.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    rules.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    rules
}

/// Devices every runtime creates itself (runtime-spec "Default Devices"); never listed twice.
const RUNTIME_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/console",
];

pub fn linux_json(cfg: &ContainerConfig) -> Result<Value> {
    let (mut devices, mut device_rules) = if cfg.privileged {
        (
            host_devices(),
            vec![json!({"allow": true, "access": "rwm"})],
        )
    } else {
        (Vec::new(), default_device_rules())
    };
    for d in &cfg.devices {
        if cfg.privileged && d.host.to_string_lossy() == d.container {
            continue; // already there, as in moby's WithDevices
        }
        let (dev, rule) = mapped_device(d)?;
        devices.push(dev);
        if !cfg.privileged {
            device_rules.push(rule);
        }
    }
    let mut resources = json!({"devices": device_rules});
    if let Some(m) = cfg.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(n) = cfg.nano_cpus {
        // Docker: a 100 ms period and quota = cpus * period.
        resources["cpu"] = json!({"period": 100_000u64, "quota": n / 10_000});
    }
    if let Some(p) = cfg.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    Ok(json!({
        "namespaces": namespaces(cfg),
        "maskedPaths": masked_paths(cfg),
        "readonlyPaths": readonly_paths(cfg),
        "devices": devices,
        "resources": resources,
        "sysctl": sysctls(cfg)?,
    }))
}

/// pid, ipc, uts and mount always; network unless `--network host`; cgroup only on a unified
/// (v2) host, as Docker defaults to the host cgroup namespace on v1 and hybrid layouts.
fn namespaces(cfg: &ContainerConfig) -> Vec<Value> {
    let mut ns = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if cfg.network != NetworkMode::Host {
        ns.push(json!({"type": "network"}));
    }
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        ns.push(json!({"type": "cgroup"}));
    }
    ns
}

/// Only namespaced sysctls are allowed (the rule runc enforces): IPC ones, `fs.mqueue.*`, and
/// `net.*` when the container has its own network namespace.
fn sysctls(cfg: &ContainerConfig) -> Result<Value> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let mut map = serde_json::Map::new();
    for (k, v) in &cfg.sysctls {
        let ok = IPC.contains(&k.as_str())
            || k.starts_with("fs.mqueue.")
            || k == "kernel.domainname"
            || (k.starts_with("net.") && cfg.network != NetworkMode::Host);
        if !ok {
            let why = if k.starts_with("net.") {
                "is not allowed in the host network namespace"
            } else {
                "is not in a separate kernel namespace"
            };
            return Err(Error::InvalidFlag(format!("sysctl {k:?} {why}")));
        }
        map.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(Value::Object(map))
}

fn device_kind(mode: u32) -> Option<&'static str> {
    match FileType::from_raw_mode(mode) {
        FileType::CharacterDevice => Some("c"),
        FileType::BlockDevice => Some("b"),
        _ => None,
    }
}

/// A `--device` mapping: the node's type and numbers from the host, and its cgroup rule.
fn mapped_device(d: &DeviceMapping) -> Result<(Value, Value)> {
    let st = rustix::fs::stat(&d.host).map_err(|e| {
        Error::InvalidFlag(format!(
            "error gathering device information while adding custom device {:?}: {}",
            d.host.display(),
            std::io::Error::from(e)
        ))
    })?;
    let kind = device_kind(st.st_mode)
        .ok_or_else(|| Error::InvalidFlag(format!("{} is not a device node", d.host.display())))?;
    let (major, minor) = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
    let dev = json!({
        "path": d.container, "type": kind, "major": major, "minor": minor,
        "fileMode": st.st_mode & 0o777, "uid": st.st_uid, "gid": st.st_gid,
    });
    let rule = json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": d.permissions});
    Ok((dev, rule))
}

/// Every character and block device under the host's /dev (for `--privileged`), skipping the
/// directories the container gets fresh instances of (pts, shm, mqueue) and the nodes every
/// runtime creates anyway.
fn host_devices() -> Vec<Value> {
    let mut out = Vec::new();
    walk_dev(Path::new("/dev"), &mut out);
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

fn walk_dev(dir: &Path, out: &mut Vec<Value>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let skip = matches!(
                e.file_name().to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            );
            if !skip {
                walk_dev(&path, out);
            }
            continue;
        }
        if RUNTIME_DEVICES.iter().any(|d| Path::new(d) == path) {
            continue;
        }
        let Ok(st) = rustix::fs::lstat(&path) else {
            continue;
        };
        let Some(kind) = device_kind(st.st_mode) else {
            continue;
        };
        out.push(json!({
            "path": path, "type": kind,
            "major": rustix::fs::major(st.st_rdev), "minor": rustix::fs::minor(st.st_rdev),
            "fileMode": st.st_mode & 0o777, "uid": st.st_uid, "gid": st.st_gid,
        }));
    }
}
