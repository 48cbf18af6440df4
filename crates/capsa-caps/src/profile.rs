//! Named default capability profiles: what a container gets before `--cap-add`/`--cap-drop`.
//!
//! Owns the default lists and their order. Must not touch /proc.
//!
//! - `docker`: moby `daemon/pkg/oci/caps/defaults.go` `DefaultCapabilities()`, 14 caps, mask
//!   0xa80425fb, kept in Docker's order (also containerd's `defaultUnixCaps()`).
//! - `podman`: containers/common `pkg/config/default.go`, 11 caps (Docker's minus MKNOD, NET_RAW,
//!   AUDIT_WRITE), mask 0x800405fb.
//! - `none`: nothing; the user adds what the workload needs.

use std::fmt;
use std::str::FromStr;

use crate::cap::{Cap, CapSet};

/// A named default set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// Docker's and containerd's 14 defaults.
    #[default]
    Docker,
    /// Podman's and CRI-O's 11 defaults.
    Podman,
    /// No capabilities at all.
    None,
}

// Kernel numbers (include/uapi/linux/capability.h), in Docker's listing order.
const DOCKER_ORDER: [u8; 14] = [0, 1, 4, 3, 27, 13, 6, 7, 31, 8, 10, 18, 5, 29];
// Podman's list (containers/common `DefaultCapabilities`), alphabetical as upstream keeps it.
const PODMAN_ORDER: [u8; 11] = [0, 1, 3, 4, 5, 10, 31, 6, 8, 7, 18];

impl Profile {
    /// Every profile, for `--help` and listings.
    pub const ALL: [Profile; 3] = [Profile::Docker, Profile::Podman, Profile::None];

    /// The profile's name as the CLI spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::Docker => "docker",
            Profile::Podman => "podman",
            Profile::None => "none",
        }
    }

    /// The default caps in the order the upstream project lists them.
    pub fn caps(self) -> Vec<Cap> {
        let order: &[u8] = match self {
            Profile::Docker => &DOCKER_ORDER,
            Profile::Podman => &PODMAN_ORDER,
            Profile::None => &[],
        };
        order.iter().filter_map(|&n| Cap::from_index(n)).collect()
    }

    /// The default caps as a set.
    pub fn set(self) -> CapSet {
        self.caps().into_iter().collect()
    }

    /// Lists `set` for people: members of this profile first, in the profile's order, then the
    /// others in number order (Docker's own result order: defaults, then adds).
    pub fn ordered(self, set: CapSet) -> Vec<Cap> {
        let mut out: Vec<Cap> = self
            .caps()
            .into_iter()
            .filter(|c| set.contains(*c))
            .collect();
        out.extend(set.difference(self.set()).iter());
        out
    }
}

/// An unknown profile name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability profile: {0:?} (known: docker, podman, none)")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.to_string()))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_upstream() {
        assert_eq!(Profile::Docker.set().bits(), 0xa804_25fb);
        assert_eq!(Profile::Docker.caps().len(), 14);
        assert_eq!(Profile::Podman.set().bits(), 0x8004_05fb);
        assert_eq!(Profile::Podman.caps().len(), 11);
        assert!(Profile::None.set().is_empty());
    }

    #[test]
    fn docker_order_is_kept() {
        let names: Vec<String> = Profile::Docker
            .caps()
            .iter()
            .map(|c| c.oci_name())
            .collect();
        assert_eq!(
            names.join(","),
            "CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_FSETID,CAP_FOWNER,CAP_MKNOD,CAP_NET_RAW,CAP_SETGID,\
             CAP_SETUID,CAP_SETFCAP,CAP_SETPCAP,CAP_NET_BIND_SERVICE,CAP_SYS_CHROOT,CAP_KILL,\
             CAP_AUDIT_WRITE"
        );
        assert_eq!("podman".parse::<Profile>(), Ok(Profile::Podman));
        assert!("Docker".parse::<Profile>().is_err());
    }
}
