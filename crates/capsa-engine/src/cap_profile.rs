//! cap_profile: `capsa run --cap-profile FILE` applies a saved capability proposal.
//!
//! The canonical file is the JSON proposal that `capsa profile --format json -o FILE` writes
//! (its `caps` list of `CAP_*` names and its `no_new_privs` flag; the other keys are evidence
//! and are ignored here). The OCI rendering (`--format oci`, `process.capabilities.bounding`
//! and `process.noNewPrivileges`) is accepted too. Owns reading that file and turning it into
//! `--cap-drop=ALL --cap-add=... --security-opt=no-new-privileges`; must not resolve
//! capabilities itself (`caps::resolve` still validates every name).

use crate::error::{Error, Result};
use crate::options::RunOptions;
use std::path::Path;

/// What a saved proposal grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapProfile {
    /// Capability names as written in the file (`CAP_NET_BIND_SERVICE`).
    pub caps: Vec<String>,
    pub no_new_privs: bool,
}

/// Reads a saved proposal (JSON proposal or OCI rendering).
pub fn load(path: &Path) -> Result<CapProfile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    parse(&text).map_err(|why| {
        Error::InvalidFlag(format!(
            "invalid --cap-profile {}: {why} (write one with `capsa profile --format json -o FILE`)",
            path.display()
        ))
    })
}

fn parse(text: &str) -> std::result::Result<CapProfile, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let (list, nnp) = if let Some(caps) = v.get("caps") {
        (caps, v.get("no_new_privs"))
    } else if let Some(p) = v.get("process") {
        let bounding = p
            .pointer("/capabilities/bounding")
            .ok_or("no process.capabilities.bounding")?;
        (bounding, p.get("noNewPrivileges"))
    } else {
        return Err(
            "neither a `caps` list (JSON proposal) nor `process.capabilities` (OCI)".into(),
        );
    };
    let caps = list
        .as_array()
        .ok_or("the capability list is not an array")?
        .iter()
        .map(|c| {
            c.as_str()
                .map(str::to_string)
                .ok_or("a capability is not a string")
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(CapProfile {
        caps,
        no_new_privs: nnp.and_then(serde_json::Value::as_bool).unwrap_or(true),
    })
}

/// Replaces the capability flags with exactly the profile: drop ALL, add each cap, and
/// no_new_privs when the profile sets it. Other capability flags would make the result depend
/// on precedence rules the user may not expect, so they are refused.
pub fn apply(opts: &mut RunOptions, profile: &CapProfile) -> Result<()> {
    if !opts.cap_add.is_empty() || !opts.cap_drop.is_empty() || opts.privileged {
        return Err(Error::InvalidFlag(
            "--cap-profile sets the capabilities itself: it cannot be combined with --cap-add, --cap-drop or --privileged".into(),
        ));
    }
    opts.cap_drop = vec!["ALL".into()];
    opts.cap_add = profile.caps.clone();
    if profile.no_new_privs
        && !opts
            .security_opt
            .iter()
            .any(|o| o.starts_with("no-new-privileges"))
    {
        opts.security_opt.push("no-new-privileges".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_proposal_and_oci() {
        let p = parse(
            r#"{"caps":["CAP_CHOWN","CAP_NET_BIND_SERVICE"],"no_new_privs":true,"needs":[]}"#,
        )
        .unwrap();
        assert_eq!(p.caps, ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
        assert!(p.no_new_privs);
        let p = parse(r#"{"process":{"noNewPrivileges":false,"capabilities":{"bounding":[]}}}"#)
            .unwrap();
        assert!(p.caps.is_empty());
        assert!(!p.no_new_privs);
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"caps":[1]}"#).is_err());
    }

    #[test]
    fn apply_replaces_caps() {
        let mut o = RunOptions::default();
        let p = CapProfile {
            caps: vec!["CAP_NET_RAW".into()],
            no_new_privs: true,
        };
        apply(&mut o, &p).unwrap();
        assert_eq!(
            (o.cap_drop.as_slice(), o.cap_add.as_slice()),
            (&["ALL".to_string()][..], &["CAP_NET_RAW".to_string()][..])
        );
        assert_eq!(o.security_opt, ["no-new-privileges"]);
        let mut o = RunOptions {
            cap_add: vec!["KILL".into()],
            ..RunOptions::default()
        };
        assert!(apply(&mut o, &p).is_err());
    }
}
