//! caps: from `--cap-add/--cap-drop/--privileged/--user` to the five sets of a container's
//! process, plus the warnings a user should see when a request will have no effect.
//!
//! Docker's precedence and error texts come from `capsa_caps::resolve`; this module only
//! decides how the result is spread over the five sets:
//! - B = E = P = the resolved set (Docker v25+, for root and non-root alike);
//! - A = the caps the user *named* in `--cap-add`, for a non-root user only (Podman's rule,
//!   moby#8460); never the defaults and never `ALL`;
//! - I = A. The kernel makes this necessary: PR_CAP_AMBIENT_RAISE requires the cap to be in both
//!   P and I, and lowering I clears it from A (capabilities(7), "Ambient capability set"). I
//!   then grants nothing beyond A, so CVE-2022-24769 (an I wider than what the process already
//!   holds) cannot recur. For root, and for non-root users without adds, I is empty.
//!
//! It must not read /proc itself: `available` comes from `capsa_caps::host_available`.

use crate::error::{Error, Result};
use capsa_caps::{Cap, CapSet, Profile};

/// The five sets configured for a container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FiveSets {
    pub bounding: CapSet,
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub ambient: CapSet,
}

/// What the user asked for.
#[derive(Debug, Clone, Copy)]
pub struct CapRequest<'a> {
    pub add: &'a [String],
    pub drop: &'a [String],
    pub privileged: bool,
    /// The container's process runs with a uid other than 0.
    pub non_root: bool,
    /// The default set before adds and drops (the system config's profile); `None`: Docker's.
    pub defaults: Option<&'a [String]>,
}

/// The outcome: the five sets and the warnings for requests that change nothing.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub sets: FiveSets,
    pub warnings: Vec<String>,
}

/// Docker's 14 defaults (mask 0xa80425fb).
pub fn docker_defaults() -> CapSet {
    Profile::Docker.set()
}

/// What this host lets capsa grant (its own bounding set); all known caps if /proc is unreadable.
pub fn available() -> CapSet {
    capsa_caps::host_available().unwrap_or(CapSet::up_to(capsa_caps::LAST_KNOWN))
}

/// Resolves a request against `available`; Docker's error texts on bad names.
pub fn resolve(req: CapRequest<'_>, available: CapSet) -> Result<Resolved> {
    let defaults = match req.defaults {
        Some(names) => named(names),
        None => docker_defaults(),
    };
    let result = capsa_caps::resolve(defaults, req.add, req.drop, req.privileged, available)
        .map_err(|e| Error::Capability(e.to_string()))?;
    let ambient = if req.non_root {
        named(req.add).intersection(result)
    } else {
        CapSet::EMPTY
    };
    let sets = FiveSets {
        bounding: result,
        effective: result,
        permitted: result,
        inheritable: ambient,
        ambient,
    };
    Ok(Resolved {
        sets,
        warnings: warnings(req),
    })
}

/// The caps named explicitly (not `ALL`); names were validated by `resolve` already.
fn named(list: &[String]) -> CapSet {
    let mut set = CapSet::EMPTY;
    for n in list {
        if let Ok(capsa_caps::CapName::Cap(c)) = capsa_caps::parse_name(n) {
            set.insert(c);
        }
    }
    set
}

/// Docker's normalization for one name: upper-case, keep `ALL`, add `CAP_`.
pub fn normalize(name: &str) -> String {
    capsa_caps::normalize(name)
}

/// Docker's inspect form of CapAdd/CapDrop: normalized, deduplicated, sorted; `None` (JSON
/// `null`) when the list is empty (moby v28 client behaviour).
pub fn inspect_list(list: &[String]) -> Option<Vec<String>> {
    if list.is_empty() {
        return None;
    }
    let mut v: Vec<String> = list.iter().map(|n| normalize(n)).collect();
    v.sort();
    v.dedup();
    Some(v)
}

fn has_all(list: &[String]) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case("ALL"))
}

/// The warnings: requests Docker silently ignores, or that cannot take effect.
fn warnings(req: CapRequest<'_>) -> Vec<String> {
    let mut w = Vec::new();
    if req.privileged && (!req.add.is_empty() || !req.drop.is_empty()) {
        w.push("--cap-add and --cap-drop have no effect with --privileged: the container gets every capability the host can grant".to_string());
        return w;
    }
    let (adds, drops, defaults) = (named(req.add), named(req.drop), docker_defaults());
    for c in adds.intersection(drops).iter() {
        w.push(format!(
            "{c} is both added and dropped: the add wins (Docker's rule)"
        ));
    }
    if req.non_root && has_all(req.add) {
        w.push("--cap-add=ALL makes no capability effective for a non-root user: name the ones it needs, e.g. --cap-add=NET_BIND_SERVICE".to_string());
    }
    if !req.non_root && !has_all(req.add) && !has_all(req.drop) {
        for c in adds.intersection(defaults).difference(drops).iter() {
            w.push(format!(
                "--cap-add={c} has no effect: it is one of the defaults"
            ));
        }
    }
    if !has_all(req.add) {
        for c in drops.difference(defaults).difference(adds).iter() {
            w.push(format!(
                "--cap-drop={c} has no effect: it is not granted by default"
            ));
        }
    }
    w
}

/// A cap by its OCI name (for callers that hold names from config.json).
pub fn cap(name: &str) -> Option<Cap> {
    Cap::from_oci_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn req<'a>(
        add: &'a [String],
        drop: &'a [String],
        privileged: bool,
        non_root: bool,
    ) -> CapRequest<'a> {
        CapRequest {
            add,
            drop,
            privileged,
            non_root,
            defaults: None,
        }
    }

    // This host's shape: 0..=40 minus SYS_RESOURCE (24).
    const HOST: CapSet = CapSet::from_bits(0x1ff_ffff_ffff & !(1 << 24));

    #[test]
    fn defaults_are_docker_14() {
        let r = resolve(req(&[], &[], false, false), HOST).unwrap();
        assert_eq!(r.sets.bounding.bits(), 0xa80425fb);
        assert_eq!(r.sets.effective, r.sets.bounding);
        assert!(r.sets.inheritable.is_empty() && r.sets.ambient.is_empty());
    }

    #[test]
    fn drop_all_add_one() {
        let (a, d) = (v(&["NET_BIND_SERVICE"]), v(&["ALL"]));
        let r = resolve(req(&a, &d, false, false), HOST).unwrap();
        assert_eq!(r.sets.bounding.bits(), 1 << 10);
        assert!(r.sets.ambient.is_empty());
        let r = resolve(req(&a, &d, false, true), HOST).unwrap();
        assert_eq!(r.sets.ambient.bits(), 1 << 10);
        assert_eq!(r.sets.inheritable.bits(), 1 << 10);
    }

    #[test]
    fn add_wins_and_all_rules() {
        let (a, d) = (v(&["chown"]), v(&["CAP_CHOWN"]));
        let r = resolve(req(&a, &d, false, false), HOST).unwrap();
        assert!(r.sets.bounding.contains(cap("CAP_CHOWN").unwrap()));
        assert!(!r.warnings.is_empty());
        let (a, d) = (v(&["all"]), v(&["ALL"]));
        assert_eq!(
            resolve(req(&a, &d, false, false), HOST)
                .unwrap()
                .sets
                .bounding,
            HOST
        );
        let (a, d) = (v(&["ALL"]), v(&["NET_RAW"]));
        let r = resolve(req(&a, &d, false, true), HOST).unwrap();
        assert_eq!(r.sets.bounding.bits(), HOST.bits() & !(1 << 13));
        assert!(r.sets.ambient.is_empty(), "ALL never becomes ambient");
    }

    #[test]
    fn privileged_ignores_lists_but_validates_them() {
        let d = v(&["CHOWN"]);
        let r = resolve(req(&[], &d, true, false), HOST).unwrap();
        assert_eq!(r.sets.bounding, HOST);
        assert_eq!(r.warnings.len(), 1);
        let bad = v(&["FOO"]);
        let e = resolve(req(&[], &bad, true, false), HOST).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid CapDrop: unknown capability: \"CAP_FOO\""
        );
    }

    #[test]
    fn docker_error_texts() {
        let bad = v(&["foo"]);
        let e = resolve(req(&bad, &[], false, false), HOST).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid CapAdd: unknown capability: \"CAP_FOO\""
        );
        let unavailable = v(&["SYS_RESOURCE"]);
        let e = resolve(req(&unavailable, &[], false, false), HOST).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid CapAdd: capability not supported by your kernel or not available in the current environment: \"CAP_SYS_RESOURCE\""
        );
    }

    #[test]
    fn inspect_lists() {
        assert_eq!(inspect_list(&[]), None);
        assert_eq!(
            inspect_list(&v(&["net_raw", "CAP_CHOWN", "NET_RAW"])),
            Some(v(&["CAP_CHOWN", "CAP_NET_RAW"]))
        );
    }
}
