//! Docker's capability precedence: defaults, `--cap-add`, `--cap-drop`, `--privileged`.
//!
//! Owns the resolution rule only. Must not touch /proc: the caller passes `available`
//! (see `proc::host_available`).
//!
//! The rule is moby's `TweakCapabilities` plus the create-time validation in `daemon/container.go`
//! (shared/reference/docker-caps.md, "Summary"):
//! 1. both lists are validated, adds first, even when privileged (`invalid CapAdd: ...`);
//! 2. privileged: every available cap; add and drop are ignored;
//! 3. add contains `ALL`: every available cap minus the individually dropped ones;
//! 4. else drop contains `ALL`: exactly the adds;
//! 5. else defaults minus drops, plus adds (so a cap in both lists is present).
//!
//! "Available" is what the host can grant, limited to the 41 caps Docker knows, never more.

use crate::cap::{CapSet, LAST_KNOWN};
use crate::parse::{CapError, CapName, parse_available};

/// A refused `--cap-add` or `--cap-drop` entry, with Docker's prefixes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid CapAdd: {0}")]
    InvalidCapAdd(CapError),
    #[error("invalid CapDrop: {0}")]
    InvalidCapDrop(CapError),
}

impl ResolveError {
    /// The name-level error without Docker's list prefix.
    pub fn cap_error(&self) -> &CapError {
        match self {
            ResolveError::InvalidCapAdd(e) | ResolveError::InvalidCapDrop(e) => e,
        }
    }
}

/// One validated list: the `ALL` keyword seen, and the individually named caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapList {
    pub all: bool,
    pub caps: CapSet,
}

/// Validates a `--cap-add`/`--cap-drop` list against the available set.
pub fn validate_list<S: AsRef<str>>(names: &[S], available: CapSet) -> Result<CapList, CapError> {
    let mut list = CapList::default();
    for name in names {
        match parse_available(name.as_ref(), available)? {
            CapName::All => list.all = true,
            CapName::Cap(c) => list.caps.insert(c),
        }
    }
    Ok(list)
}

/// Resolves the effective capability list the way Docker does (see the module comment).
///
/// `defaults` is the profile (e.g. `Profile::Docker.set()`); it is used as given, as Docker does.
/// `available` is what the host can grant (`proc::host_available()`).
pub fn resolve<S: AsRef<str>>(
    defaults: CapSet,
    add: &[S],
    drop: &[S],
    privileged: bool,
    available: CapSet,
) -> Result<CapSet, ResolveError> {
    let add = validate_list(add, available).map_err(ResolveError::InvalidCapAdd)?;
    let drop = validate_list(drop, available).map_err(ResolveError::InvalidCapDrop)?;
    Ok(resolve_validated(
        defaults, add, drop, privileged, available,
    ))
}

/// The precedence rule on already validated lists.
pub fn resolve_validated(
    defaults: CapSet,
    add: CapList,
    drop: CapList,
    privileged: bool,
    available: CapSet,
) -> CapSet {
    let all = available.intersection(CapSet::up_to(LAST_KNOWN));
    if privileged {
        return all;
    }
    if add.all {
        return all.difference(drop.caps);
    }
    if drop.all {
        return add.caps;
    }
    defaults.difference(drop.caps).union(add.caps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::Cap;
    use crate::profile::Profile;
    use proptest::prelude::*;

    const NONE: [&str; 0] = [];
    // This host's shape: everything but CAP_SYS_RESOURCE (24).
    const AVAIL: CapSet = CapSet::from_bits(0x1ff_ffff_ffff & !(1 << 24));

    fn docker(add: &[&str], drop: &[&str], privileged: bool) -> Result<CapSet, ResolveError> {
        resolve(Profile::Docker.set(), add, drop, privileged, AVAIL)
    }

    fn bit(name: &str) -> u64 {
        Cap::from_oci_name(name)
            .map(|c| 1u64 << c.index())
            .unwrap_or(0)
    }

    #[test]
    fn moby_drop_all_add_sys_time() {
        assert_eq!(
            docker(&["SYS_TIME"], &["ALL"], false).map(|s| s.bits()),
            Ok(0x0200_0000)
        );
    }

    #[test]
    fn moby_add_all_drop_net_admin() {
        let got = docker(&["ALL"], &["NET_ADMIN"], false);
        assert_eq!(
            got.map(|s| s.bits()),
            Ok(AVAIL.bits() & !bit("CAP_NET_ADMIN"))
        );
    }

    #[test]
    fn moby_add_all_drop_all_is_everything() {
        assert_eq!(docker(&["ALL"], &["ALL"], false), Ok(AVAIL));
    }

    #[test]
    fn added_and_dropped_is_present() {
        let got = docker(&["NET_ADMIN", "chown"], &["net_admin", "CAP_CHOWN"], false);
        let want = Profile::Docker.set().bits() | bit("CAP_NET_ADMIN");
        assert_eq!(got.map(|s| s.bits()), Ok(want));
    }

    #[test]
    fn add_all_beats_a_named_add_of_a_dropped_cap() {
        let got = docker(&["ALL", "NET_ADMIN"], &["NET_ADMIN"], false);
        assert_eq!(
            got.map(|s| s.bits()),
            Ok(AVAIL.bits() & !bit("CAP_NET_ADMIN"))
        );
    }

    #[test]
    fn privileged_ignores_drops() {
        assert_eq!(docker(&NONE, &["CHOWN", "ALL"], true), Ok(AVAIL));
    }

    #[test]
    fn privileged_still_validates() {
        let e = docker(&NONE, &["CAP_FOO"], true)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(r#"invalid CapDrop: unknown capability: "CAP_FOO""#)
        );
        let e = docker(&["sys_resource"], &NONE, true)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "invalid CapAdd: capability not supported by your kernel or not available in \
                 the current environment: \"CAP_SYS_RESOURCE\""
            )
        );
    }

    #[test]
    fn adds_are_validated_before_drops() {
        let e = docker(&["CAP_ALL"], &[""], false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(r#"invalid CapAdd: unknown capability: "CAP_ALL""#)
        );
    }

    #[test]
    fn empty_lists_give_defaults_and_duplicates_collapse() {
        assert_eq!(docker(&NONE, &NONE, false), Ok(Profile::Docker.set()));
        assert_eq!(
            docker(&["chown", "CHOWN", "cap_chown"], &NONE, false),
            Ok(Profile::Docker.set())
        );
        assert_eq!(docker(&NONE, &["ALL"], false), Ok(CapSet::EMPTY));
    }

    fn names() -> impl Strategy<Value = Vec<String>> {
        let one = prop_oneof![
            4 => (0u8..=40).prop_filter("available", |n| *n != 24)
                .prop_map(|n| Cap::from_index(n).map(|c| c.oci_name()).unwrap_or_default()),
            1 => Just("ALL".to_string()),
        ];
        proptest::collection::vec(one, 0..6)
    }

    proptest! {
        #[test]
        fn result_never_exceeds_available_plus_defaults(add in names(), drop in names(), p in any::<bool>()) {
            let got = docker(&add.iter().map(String::as_str).collect::<Vec<_>>(),
                             &drop.iter().map(String::as_str).collect::<Vec<_>>(), p);
            let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(got.is_subset(AVAIL.union(Profile::Docker.set())));
            if p { prop_assert_eq!(got, AVAIL); }
        }

        #[test]
        fn explicit_adds_are_present_unless_add_all(add in names(), drop in names()) {
            let a: Vec<&str> = add.iter().map(String::as_str).collect();
            let d: Vec<&str> = drop.iter().map(String::as_str).collect();
            let got = docker(&a, &d, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let add_all = add.iter().any(|n| n == "ALL");
            // Docker's add-ALL branch keeps "all minus drops": `--cap-add ALL,X --cap-drop X`
            // drops X. Otherwise a named add always wins.
            for n in add.iter().filter(|n| *n != "ALL") {
                let c = Cap::from_oci_name(n).unwrap_or_else(|| unreachable!());
                prop_assert_eq!(got.contains(c), !add_all || !drop.contains(n));
            }
            // A drop that is not also added, with no ALL in add, is absent.
            if !add_all {
                for n in drop.iter().filter(|n| *n != "ALL" && !add.contains(n)) {
                    prop_assert!(!got.contains(Cap::from_oci_name(n).unwrap_or_else(|| unreachable!())));
                }
            }
        }

        #[test]
        fn spelling_does_not_matter(n in 0u8..=40, style in 0usize..4) {
            prop_assume!(n != 24);
            let c = Cap::from_index(n).unwrap_or_else(|| unreachable!());
            let short = c.short_name().unwrap_or_default().to_string();
            let spelled = match style {
                0 => short.to_lowercase(),
                1 => short.clone(),
                2 => format!("cap_{}", short.to_lowercase()),
                _ => format!("CAP_{short}"),
            };
            prop_assert_eq!(docker(&[spelled.as_str()], &["ALL"], false), Ok(CapSet::from_bits(1 << n)));
        }
    }
}
