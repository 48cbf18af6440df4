//! seccomp: which syscall filter the container gets. Called after capabilities are resolved:
//! Docker's default profile allows extra syscalls per capability in the *bounding* set
//! (moby/profiles `includes.caps`), so `--cap-add=SYS_ADMIN` unlocks `unshare`, `mount`, ...
//!
//! - non-privileged, no `seccomp=` option: `capsa_runtime::seccomp::docker_default(bounding)`;
//! - `--privileged` without `seccomp=FILE`, or `seccomp=unconfined`: no filter;
//! - `seccomp=FILE`: the file, in Docker's profile format (or plain OCI `linux.seccomp`), with
//!   its `includes`/`excludes` conditions on caps evaluated against the bounding set here.

use crate::error::{Error, Result};
use crate::options::{ContainerConfig, SeccompChoice};
use capsa_caps::{Cap, CapSet};
use serde_json::Value;
use std::path::Path;

/// The `linux.seccomp` value (or none) and a short name for `inspect`.
pub fn profile(cfg: &ContainerConfig, bounding: CapSet) -> Result<(Option<Value>, String)> {
    match &cfg.security.seccomp {
        SeccompChoice::Unconfined => Ok((None, "unconfined".to_string())),
        SeccompChoice::Default if cfg.privileged => Ok((None, "unconfined".to_string())),
        SeccompChoice::Default => Ok((default_profile(bounding)?, "default".to_string())),
        SeccompChoice::File(path) => {
            Ok((Some(from_file(path, bounding)?), path.display().to_string()))
        }
    }
}

fn default_profile(bounding: CapSet) -> Result<Option<Value>> {
    let profile = capsa_runtime::seccomp::docker_default(bounding);
    serde_json::to_value(profile)
        .map(Some)
        .map_err(|e| Error::Runtime(format!("cannot serialize the default seccomp profile: {e}")))
}

/// Reads a profile file and turns Docker's format into OCI `linux.seccomp`.
fn from_file(path: &Path, bounding: CapSet) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidFlag(format!(
            "opening seccomp profile ({}) failed: {e}",
            path.display()
        ))
    })?;
    let profile: Value = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidFlag(format!("decoding seccomp profile failed: {e}")))?;
    Ok(docker_to_oci(profile, bounding))
}

/// Docker's format differs from OCI's in three places: `archMap` (arches plus sub-arches)
/// instead of `architectures`, per-rule `includes`/`excludes` conditions, and `comment`s.
fn docker_to_oci(mut p: Value, bounding: CapSet) -> Value {
    if let Some(map) = p.get("archMap").and_then(Value::as_array).cloned() {
        let mut arches = Vec::new();
        for entry in map {
            arches.extend(entry.get("architecture").cloned());
            if let Some(subs) = entry.get("subArchitectures").and_then(Value::as_array) {
                arches.extend(subs.iter().cloned());
            }
        }
        p["architectures"] = Value::Array(arches);
    }
    if let Some(obj) = p.as_object_mut() {
        obj.remove("archMap");
        obj.remove("defaultErrno");
    }
    if let Some(rules) = p.get_mut("syscalls").and_then(Value::as_array_mut) {
        rules.retain(|r| rule_applies(r, bounding));
        for r in rules.iter_mut() {
            if let Some(o) = r.as_object_mut() {
                o.remove("includes");
                o.remove("excludes");
                o.remove("comment");
            }
        }
    }
    p
}

/// A rule applies when every cap in `includes.caps` is in the bounding set and none of
/// `excludes.caps` is; arch and kernel-version conditions are left to the loader.
fn rule_applies(rule: &Value, bounding: CapSet) -> bool {
    let caps = |key: &str| -> Vec<Cap> {
        rule.get(key)
            .and_then(|c| c.get("caps"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(Cap::from_oci_name)
                    .collect()
            })
            .unwrap_or_default()
    };
    caps("includes").iter().all(|c| bounding.contains(*c))
        && !caps("excludes").iter().any(|c| bounding.contains(*c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_format_conditions() {
        let p = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["unshare"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "comment": "x"}
            ]
        });
        let sys_admin = CapSet::from_bits(1 << 21);
        let out = docker_to_oci(p.clone(), sys_admin);
        let names: Vec<&str> = out["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["names"][0].as_str().unwrap())
            .collect();
        assert_eq!(names, ["read", "unshare"]);
        assert_eq!(
            out["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        let out = docker_to_oci(p, CapSet::EMPTY);
        assert_eq!(out["syscalls"].as_array().unwrap().len(), 2);
        let _: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(out).unwrap();
    }
}
