//! Stable JSON shapes (`--format json`) and `pscap`-like rows for capability states.
//!
//! Owns the field names of capsa's capability JSON; changing them breaks scripts. Must not do I/O.

use serde::Serialize;

use crate::cap::CapSet;
use crate::knowledge::{CapInfo, Risk};
use crate::state::{CapMode, CapState, Ids, ProcStatus};

/// One set: its mask and its member names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetView {
    /// `0x00000000a80425fb`.
    pub hex: String,
    /// OCI names in number order (`CAP_CHOWN`, ..., `CAP_41` for unnamed bits).
    pub caps: Vec<String>,
}

impl From<CapSet> for SetView {
    fn from(s: CapSet) -> Self {
        SetView {
            hex: s.hex(),
            caps: s.oci_names(),
        }
    }
}

/// A process's capability state for JSON output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateView {
    pub pid: u32,
    /// cap_to_text(3) of E/P/I, as getpcaps prints it.
    pub text: String,
    /// The IAB text (inheritable, ambient, bounding), as `capsh --print` prints it.
    pub iab: String,
    pub effective: SetView,
    pub permitted: SetView,
    pub inheritable: SetView,
    pub bounding: SetView,
    pub ambient: SetView,
    pub no_new_privs: bool,
    /// Only present for the calling process (`caps print`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub securebits: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<CapMode>,
    pub uid: Ids,
    pub gid: Ids,
    pub groups: Vec<u32>,
}

impl StateView {
    pub fn new(pid: u32, st: &CapState, last_cap: u8) -> StateView {
        StateView {
            pid,
            text: st.to_text(last_cap),
            iab: st.iab(last_cap),
            effective: st.effective.into(),
            permitted: st.permitted.into(),
            inheritable: st.inheritable.into(),
            bounding: st.bounding.into(),
            ambient: st.ambient.into(),
            no_new_privs: st.no_new_privs,
            securebits: st.securebits,
            mode: st.securebits.map(|_| st.guess_mode()),
            uid: st.uid,
            gid: st.gid,
            groups: st.groups.clone(),
        }
    }
}

/// One capability's facts for JSON output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CapView {
    pub number: u8,
    pub name: String,
    pub meaning: &'static str,
    pub risk: Risk,
    pub reason: &'static str,
    pub docker_default: bool,
    pub podman_default: bool,
}

impl From<CapInfo> for CapView {
    fn from(i: CapInfo) -> Self {
        CapView {
            number: i.cap.index(),
            name: i.cap.oci_name(),
            meaning: i.meaning,
            risk: i.risk,
            reason: i.reason,
            docker_default: i.in_docker_default(),
            podman_default: i.in_podman_default(),
        }
    }
}

/// One `pscap`-like row: a process that holds capabilities.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PsRow {
    pub ppid: u32,
    pub pid: u32,
    /// The effective uid's name, or the number.
    pub user: String,
    pub command: String,
    /// Permitted caps as pscap writes them: `chown, net_bind_service`, or `full`.
    pub capabilities: String,
    /// Ambient caps are set (pscap's `@`).
    pub ambient: bool,
    /// The bounding set is not empty, so an exec of a setuid or file-cap binary could gain caps
    /// (pscap's `+`).
    pub open_bounding: bool,
    pub effective: String,
    pub permitted: String,
    pub bounding: String,
}

impl PsRow {
    /// The row for a process, or `None` when it holds no capabilities (pscap omits those).
    pub fn new(st: &ProcStatus, user: String, last_cap: u8) -> Option<PsRow> {
        let c = &st.caps;
        if c.effective
            .union(c.permitted)
            .union(c.inheritable)
            .union(c.ambient)
            .is_empty()
        {
            return None;
        }
        let all = CapSet::up_to(last_cap);
        let capabilities = if all.is_subset(c.permitted) {
            "full".to_string()
        } else {
            c.permitted
                .iter()
                .map(|x| x.short_lower_name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(PsRow {
            ppid: st.ppid,
            pid: st.pid,
            user,
            command: st.name.clone(),
            capabilities,
            ambient: !c.ambient.is_empty(),
            open_bounding: !c.bounding.is_empty(),
            effective: c.effective.hex(),
            permitted: c.permitted.hex(),
            bounding: c.bounding.hex(),
        })
    }

    /// The capability column with pscap's markers: `chown, kill @ +`.
    pub fn capabilities_marked(&self) -> String {
        let mut s = self.capabilities.clone();
        if self.ambient {
            s.push_str(" @");
        }
        if self.open_bounding {
            s.push_str(" +");
        }
        s
    }
}
