//! Commands that describe the runtime rather than a container: `--version`, `spec`, `features`.
//!
//! Owns: the version text go-runc parses, the default config.json of `spec`, and the
//! `features` JSON.
//! Must not touch: containers or the state root.

use std::path::Path;

use anyhow::{Context, Result, bail};
use capsa_caps::{Cap, CapSet};
use serde_json::{Value, json};

/// The runc release whose CLI contract capsa-runc follows.
pub const RUNC_COMPAT: &str = "1.1.5";

/// `--version`. go-runc's parseVersion reads the `runc version `, `commit: ` and `spec: ` lines.
pub fn version_text() -> String {
    format!(
        "runc version {RUNC_COMPAT}-capsa\ncommit: capsa-{}\nspec: {}\ncapsa: {}\n",
        env!("CARGO_PKG_VERSION"),
        capsa_runtime::state::STATE_OCI_VERSION,
        env!("CARGO_PKG_VERSION"),
    )
}

/// The capabilities in the default spec: bounding, effective and permitted only. No
/// inheritable and no ambient (CVE-2022-29162; runc dropped both from `runc spec`).
const DEFAULT_CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// The default config.json of `spec` (runc's shape).
pub fn default_spec(rootless: bool) -> Value {
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if rootless {
        make_rootless(&mut spec);
    }
    spec
}

fn default_mounts() -> Value {
    json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
    ])
}

/// The rootless variant: a user namespace mapping the caller, no network namespace, /sys as a
/// read-only bind (sysfs cannot be mounted without CAP_SYS_ADMIN over the netns), no cgroup
/// mount or limits, and a devpts without gid=5 (the group is not mapped).
fn make_rootless(spec: &mut Value) {
    let (uid, gid) = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let linux = &mut spec["linux"];
    linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
    linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    linux["namespaces"] = json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}]);
    if let Some(obj) = linux.as_object_mut() {
        obj.remove("resources");
    }
    let mut mounts = default_mounts();
    if let Some(list) = mounts.as_array_mut() {
        list.retain(|m| m["type"] != "cgroup");
        for m in list.iter_mut() {
            if m["type"] == "sysfs" {
                *m = json!({"destination": "/sys", "type": "none", "source": "/sys",
                            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            } else if m["type"] == "devpts"
                && let Some(opts) = m["options"].as_array_mut()
            {
                opts.retain(|o| o != "gid=5");
            }
        }
    }
    spec["mounts"] = mounts;
}

/// `spec`: writes the default config.json into the bundle directory (never over an existing
/// one, as runc refuses too).
pub fn write_spec(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let text = serde_json::to_string_pretty(&default_spec(rootless))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `features` (runtime-spec features.md; runc 1.1.5's layout). `linux.capabilities` lists
/// what this host lets us grant, not every name we know: the point of the list is to tell an
/// engine what will work.
pub fn features(grantable: CapSet) -> Value {
    let caps: Vec<String> = Cap::all_known()
        .filter(|c| grantable.contains(*c))
        .map(Cap::oci_name)
        .collect();
    json!({
        "ociVersionMin": capsa_runtime::spec::OCI_VERSION_MIN,
        "ociVersionMax": capsa_runtime::spec::OCI_VERSION_MAX,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            // runtime-spec features.md: idmapped bind mounts (mount uidMappings/gidMappings).
            "mountExtensions": {"idmap": {"enabled": idmap_supported()}}
        },
        "annotations": {
            "org.opencontainers.runc.version": format!("{RUNC_COMPAT}-capsa"),
            "io.capsa.version": env!("CARGO_PKG_VERSION"),
            "io.capsa.userns.rootfs": "org.capsa.rootfs.idmap, org.capsa.rootfs.overlay (docs/userns.md)"
        }
    })
}

/// Whether this kernel idmaps a mount of the root filesystem (one helper process and a clone).
fn idmap_supported() -> bool {
    capsa_runtime::idmap::probe(Path::new("/")).is_ok()
}

/// runc 1.1.5's list (mount options are passed to mount(2) flags or data by `rootfs`).
const MOUNT_OPTIONS: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noacl",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_parse_like_go_runc() {
        let v = version_text();
        let mut lines = v.lines();
        let first = lines.next().expect("line 1");
        let ver = first.strip_prefix("runc version ").expect("prefix");
        assert!(ver.starts_with("1.1.5"), "{ver}");
        assert!(lines.next().expect("line 2").starts_with("commit: "));
        let spec = lines
            .next()
            .expect("line 3")
            .strip_prefix("spec: ")
            .expect("spec prefix");
        assert!(
            spec.split('.').take(3).all(|p| p.parse::<u32>().is_ok()),
            "{spec}"
        );
    }

    #[test]
    fn default_spec_has_no_inheritable_or_ambient() {
        for rootless in [false, true] {
            let s = default_spec(rootless);
            let caps = &s["process"]["capabilities"];
            assert!(
                caps.get("inheritable").is_none() && caps.get("ambient").is_none(),
                "{caps}"
            );
            assert_eq!(caps["bounding"], json!(DEFAULT_CAPS));
            let parsed: oci_spec::runtime::Spec = serde_json::from_value(s).expect("valid spec");
            assert!(parsed.process().is_some());
        }
    }

    #[test]
    fn features_lists_only_grantable_caps() {
        let f = features(CapSet::from_bits(0x1fffeffffff));
        let caps = f["linux"]["capabilities"].as_array().expect("caps");
        assert!(!caps.iter().any(|c| c == "CAP_SYS_RESOURCE"));
        assert!(caps.iter().any(|c| c == "CAP_CHECKPOINT_RESTORE"));
        assert_eq!(caps.len(), 40);
    }
}
