//! spec: a bundle's config.json, loaded into the `oci-spec` types and validated.
//!
//! Owns: reading config.json, the pre-processing of capability names (oci-spec's `Capability`
//! is a closed enum, so one unknown name would fail the whole config), version, rootfs,
//! namespace and container-id checks, and the error text for each.
//! Must not touch: any process, mount or cgroup (that is `init`, `rootfs`, `cgroups`).

use std::path::{Path, PathBuf};

use capsa_caps::{Cap, CapSet};
use oci_spec::runtime::Spec;
use serde_json::Value;

/// The spec versions this runtime implements (runtime-spec 1.0.x to 1.2.x).
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.2.1";

/// The namespace types of runtime-spec config-linux.md, as config.json spells them.
pub const NAMESPACE_TYPES: [&str; 8] = [
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
];

/// The five capability sets of `process.capabilities`.
const CAP_SET_KEYS: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "cannot read {path}: {source} (does --bundle name the directory that holds config.json?)"
    )]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot resolve bundle directory {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} does not follow the OCI runtime spec: {source}")]
    Schema {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "unsupported ociVersion {found:?} in config.json: capsa implements runtime-spec \
         {OCI_VERSION_MIN} to {OCI_VERSION_MAX} (set \"ociVersion\" to e.g. \"1.0.2\")"
    )]
    Version { found: String },
    #[error(
        "config.json has no \"root\": set root.path to the rootfs directory (usually \"rootfs\")"
    )]
    NoRoot,
    #[error(
        "rootfs {path} does not exist: {source} (root.path in config.json is relative to the bundle)"
    )]
    Rootfs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rootfs {path} is not a directory")]
    RootfsNotDir { path: PathBuf },
    #[error(
        "unknown namespace type {found:?} in linux.namespaces (known: pid, network, mount, ipc, \
         uts, user, cgroup, time)"
    )]
    UnknownNamespace { found: String },
    #[error("config.json has no \"process\": create needs the process to run (process.args)")]
    NoProcess,
    #[error("process.args is empty in config.json: give the program to run")]
    NoArgs,
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
}

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct BundleSpec {
    /// The spec, with capability names the runtime cannot apply already removed.
    pub spec: Spec,
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
    /// Warnings for the caller to log (runc logs them at level "warning").
    pub warnings: Vec<String>,
}

/// Loads `<bundle>/config.json` for `create`/`run`.
///
/// `grantable` is what the host lets us grant (our own bounding set): a known capability
/// outside it is dropped with a warning, where runc fails with EPERM at capset time.
pub fn load_bundle(bundle: &Path, grantable: CapSet) -> Result<BundleSpec, SpecError> {
    let bundle = std::path::absolute(bundle).map_err(|source| SpecError::Bundle {
        path: bundle.to_path_buf(),
        source,
    })?;
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| SpecError::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let mut value: Value = serde_json::from_slice(&text).map_err(|source| SpecError::Json {
        path: path.clone(),
        source,
    })?;
    check_version(&value)?;
    check_namespaces(&value)?;
    let warnings = filter_capabilities(&mut value, grantable);
    let spec: Spec =
        serde_json::from_value(value).map_err(|source| SpecError::Schema { path, source })?;
    let rootfs = resolve_rootfs(&spec, &bundle)?;
    match spec.process() {
        None => return Err(SpecError::NoProcess),
        Some(p) if p.args().as_ref().is_none_or(|a| a.is_empty()) => {
            return Err(SpecError::NoArgs);
        }
        Some(_) => {}
    }
    Ok(BundleSpec {
        spec,
        bundle,
        rootfs,
        warnings,
    })
}

/// Checks a container id: the id names a directory under the state root, so it must not be
/// able to climb out of it (`/`, `..`) or be empty. The character set is runc's
/// (`^[\w+\-.]+$`).
pub fn validate_id(id: &str) -> Result<(), SpecError> {
    let bad = |reason| {
        Err(SpecError::InvalidId {
            id: id.to_owned(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.contains('/') {
        return bad("it contains '/' (ids name a directory in the state root)");
    }
    if id.contains("..") || id == "." {
        return bad("it contains '..' or is '.' (ids name a directory in the state root)");
    }
    if id.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    {
        return bad("use only letters, digits, '_', '+', '-' and '.'");
    }
    Ok(())
}

/// Whether `version` is within 1.0.x..=1.2.x (a `-dev`/`-rc` suffix is allowed).
pub fn version_supported(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.');
    let (Some(major), Some(minor), Some(patch), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    num(major) && num(minor) && num(patch) && major == "1" && matches!(minor, "0" | "1" | "2")
}

fn check_version(value: &Value) -> Result<(), SpecError> {
    let found = value
        .get("ociVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if version_supported(found) {
        Ok(())
    } else {
        Err(SpecError::Version {
            found: found.to_owned(),
        })
    }
}

fn check_namespaces(value: &Value) -> Result<(), SpecError> {
    let Some(list) = value.pointer("/linux/namespaces").and_then(Value::as_array) else {
        return Ok(());
    };
    for ns in list {
        let found = ns.get("type").and_then(Value::as_str).unwrap_or("");
        if !NAMESPACE_TYPES.contains(&found) {
            return Err(SpecError::UnknownNamespace {
                found: found.to_owned(),
            });
        }
    }
    Ok(())
}

/// Removes from the five capability sets every name this runtime cannot apply, and returns
/// the warnings. Unknown names: ignored with runc's warning (runtime-spec config.md advises
/// runtimes to tolerate them). Known names outside `grantable`: capset(2) would fail with
/// EPERM (a process can never gain a capability missing from its bounding set), so they are
/// left out with a warning instead of failing the container.
pub fn filter_capabilities(value: &mut Value, grantable: CapSet) -> Vec<String> {
    match value.pointer_mut("/process/capabilities") {
        Some(caps) => filter_capability_sets(caps, grantable),
        None => Vec::new(),
    }
}

/// [`filter_capabilities`] on one `capabilities` object (of a config or of an exec process).
pub fn filter_capability_sets(caps: &mut Value, grantable: CapSet) -> Vec<String> {
    let mut unknown: Vec<String> = Vec::new();
    let mut unavailable: Vec<String> = Vec::new();
    let Some(caps) = caps.as_object_mut() else {
        return Vec::new();
    };
    for key in CAP_SET_KEYS {
        let Some(list) = caps.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        list.retain(|entry| {
            let name = entry.as_str().unwrap_or("");
            let bucket = match Cap::from_oci_name(name) {
                Some(cap) if grantable.contains(cap) => return true,
                Some(_) => &mut unavailable,
                None => &mut unknown,
            };
            if !bucket.iter().any(|n| n == name) {
                bucket.push(name.to_owned());
            }
            false
        });
    }
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        warnings.push(format!(
            "ignoring unknown or unavailable capabilities: [{}]",
            unknown.join(" ")
        ));
    }
    if !unavailable.is_empty() {
        warnings.push(format!(
            "ignoring capabilities the host cannot grant (not in the runtime's bounding set): [{}]",
            unavailable.join(" ")
        ));
    }
    warnings
}

/// Loads an `exec --process FILE` (a runtime-spec `process` object), with the same
/// capability filtering as config.json.
pub fn load_process(
    path: &Path,
    grantable: CapSet,
) -> Result<(oci_spec::runtime::Process, Vec<String>), SpecError> {
    let text = std::fs::read(path).map_err(|source| SpecError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&text).map_err(|source| SpecError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    filter_process_value(value, grantable).map_err(|source| SpecError::Schema {
        path: path.to_path_buf(),
        source,
    })
}

/// Drops capabilities the runtime cannot apply from an exec process (`--cap` included).
pub fn filter_process(
    process: &oci_spec::runtime::Process,
    grantable: CapSet,
) -> Result<(oci_spec::runtime::Process, Vec<String>), serde_json::Error> {
    filter_process_value(serde_json::to_value(process)?, grantable)
}

fn filter_process_value(
    mut value: Value,
    grantable: CapSet,
) -> Result<(oci_spec::runtime::Process, Vec<String>), serde_json::Error> {
    let warnings = match value.get_mut("capabilities") {
        Some(caps) => filter_capability_sets(caps, grantable),
        None => Vec::new(),
    };
    Ok((serde_json::from_value(value)?, warnings))
}

fn resolve_rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    let root = spec.root().as_ref().ok_or(SpecError::NoRoot)?;
    let path = bundle.join(root.path());
    let meta = std::fs::metadata(&path).map_err(|source| SpecError::Rootfs {
        path: path.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SpecError::RootfsNotDir { path });
    }
    Ok(path)
}

/// Our own bounding set: the capabilities this process can still grant to a child
/// (capabilities(7): a process can never add a capability outside its bounding set).
pub fn own_bounding_set() -> std::io::Result<CapSet> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    parse_cap_line(&status, "CapBnd:").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no CapBnd line in /proc/self/status",
        )
    })
}

fn parse_cap_line(status: &str, key: &str) -> Option<CapSet> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    u64::from_str_radix(line.trim(), 16)
        .ok()
        .map(CapSet::from_bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host_without_sys_resource() -> CapSet {
        CapSet::from_bits(0x1fffeffffff)
    }

    #[test]
    fn unknown_and_ungrantable_caps_are_dropped_with_warnings() {
        let mut v = json!({"process": {"capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_FOO", "CAP_SYS_RESOURCE"],
            "effective": ["CAP_FOO", "CAP_KILL", "CAP_BAR"],
            "ambient": ["CAP_SYS_RESOURCE"],
        }}});
        let w = filter_capabilities(&mut v, host_without_sys_resource());
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            json!(["CAP_CHOWN"])
        );
        assert_eq!(
            v["process"]["capabilities"]["effective"],
            json!(["CAP_KILL"])
        );
        assert_eq!(v["process"]["capabilities"]["ambient"], json!([]));
        assert_eq!(
            w[0],
            "ignoring unknown or unavailable capabilities: [CAP_FOO CAP_BAR]"
        );
        assert!(w[1].ends_with("[CAP_SYS_RESOURCE]"), "{w:?}");
    }

    #[test]
    fn filtered_caps_parse_as_oci_spec() {
        let mut v = json!({"process": {"capabilities": {"bounding": ["CAP_NOPE", "CAP_KILL"]}}});
        filter_capabilities(&mut v, CapSet::up_to(40));
        let caps: oci_spec::runtime::LinuxCapabilities =
            serde_json::from_value(v["process"]["capabilities"].clone()).expect("parses");
        assert_eq!(caps.bounding().as_ref().map(|b| b.len()), Some(1));
    }

    #[test]
    fn no_caps_no_warnings() {
        let mut v = json!({"process": {"args": ["sh"]}});
        assert!(filter_capabilities(&mut v, CapSet::EMPTY).is_empty());
    }

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "x_y.z+1", "0123456789abcdef"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "..", "a..b", ".", "/abs", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        for ok in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.1", "1.2.0-rc.1"] {
            assert!(version_supported(ok), "{ok}");
        }
        for bad in [
            "", "0.9.0", "1.3.0", "2.0.0", "1.0", "1.0.x", "1.0.0.0", "v1.0.0",
        ] {
            assert!(!version_supported(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_namespace_is_named() {
        let v = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "bogus"}]}});
        let e = check_namespaces(&v).expect_err("bogus");
        assert!(e.to_string().contains("\"bogus\""));
    }

    #[test]
    fn cap_bnd_line() {
        let s = "Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n";
        assert_eq!(
            parse_cap_line(s, "CapBnd:"),
            Some(CapSet::from_bits(0x1fffeffffff))
        );
    }
}
