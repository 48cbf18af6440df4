//! mounts: the container's mount list (Docker's defaults, then `/etc/hostname` and `/etc/hosts`,
//! then `-v` and `--tmpfs`) and Docker's masked and read-only paths.

use crate::error::Result;
use crate::options::{ContainerConfig, NetworkMode};
use serde_json::{Value, json};
use std::path::Path;

/// Docker's masked paths (moby `daemon/pkg/oci/defaults.go`); the per-CPU `thermal_throttle`
/// directories are added by `masked_paths` from what the host has.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The masked paths for this container: none when privileged or `systempaths=unconfined`.
pub fn masked_paths(cfg: &ContainerConfig) -> Vec<String> {
    if cfg.privileged || cfg.security.unconfined_paths {
        return Vec::new();
    }
    let mut paths: Vec<String> = MASKED_PATHS.iter().map(|p| p.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu") {
        let mut cpus: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("thermal_throttle"))
            .filter(|p| p.is_dir())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        cpus.sort();
        paths.extend(cpus);
    }
    paths
}

pub fn readonly_paths(cfg: &ContainerConfig) -> Vec<String> {
    if cfg.privileged || cfg.security.unconfined_paths {
        return Vec::new();
    }
    READONLY_PATHS.iter().map(|p| p.to_string()).collect()
}

/// Docker's default mounts, in its order. `/sys` and the cgroup mount are read-only unless the
/// container is privileged (moby `clearReadOnly`, `writableCgroups`).
fn default_mounts(cfg: &ContainerConfig) -> Vec<Value> {
    let sys_mode = if cfg.privileged { "rw" } else { "ro" };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_mode]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ]
}

fn bind(destination: &str, source: &Path, ro: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if ro {
        options.push("ro");
    }
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// The full mount list. `container_dir` holds the `hostname` and `hosts` files that `ops`
/// writes (Docker bind-mounts the same two from its container directory).
pub fn mounts_json(cfg: &ContainerConfig, container_dir: &Path) -> Result<Value> {
    let mut mounts = default_mounts(cfg);
    mounts.push(bind(
        "/etc/hostname",
        &container_dir.join("hostname"),
        cfg.read_only,
    ));
    mounts.push(bind(
        "/etc/hosts",
        &container_dir.join("hosts"),
        cfg.read_only,
    ));
    if cfg.network == NetworkMode::Host {
        mounts.push(bind(
            "/etc/resolv.conf",
            &container_dir.join("resolv.conf"),
            cfg.read_only,
        ));
    }
    for v in &cfg.volumes {
        mounts.push(bind(&v.destination, &v.source, v.read_only));
    }
    for t in &cfg.tmpfs {
        let mut opts: Vec<String> = vec!["nosuid".into(), "nodev".into()];
        if !t.options.iter().any(|o| o == "exec") {
            opts.push("noexec".into());
        }
        opts.extend(t.options.iter().filter(|o| *o != "exec").cloned());
        mounts.push(json!({"destination": t.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}));
    }
    if cfg.init {
        for b in crate::reaper::binds(container_dir)? {
            mounts.push(json!({
                "destination": b.container, "type": "bind", "source": b.host,
                "options": ["bind", "ro", "nosuid", "nodev"],
            }));
        }
    }
    Ok(Value::Array(mounts))
}
