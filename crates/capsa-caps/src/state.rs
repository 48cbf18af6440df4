//! `CapState`: the capability state of one process (five sets, securebits, no_new_privs and the
//! credentials that decide how they evolve), parsed from the text of `/proc/PID/status`.
//!
//! Owns the parsing of that text. Must not do I/O itself: `proc` reads the files.

use serde::Serialize;

use crate::cap::CapSet;

/// The securebits (include/uapi/linux/securebits.h): each flag and its lock bit.
pub mod securebits {
    pub const NOROOT: u32 = 1 << 0;
    pub const NOROOT_LOCKED: u32 = 1 << 1;
    pub const NO_SETUID_FIXUP: u32 = 1 << 2;
    pub const NO_SETUID_FIXUP_LOCKED: u32 = 1 << 3;
    pub const KEEP_CAPS: u32 = 1 << 4;
    pub const KEEP_CAPS_LOCKED: u32 = 1 << 5;
    pub const NO_CAP_AMBIENT_RAISE: u32 = 1 << 6;
    pub const NO_CAP_AMBIENT_RAISE_LOCKED: u32 = 1 << 7;
    /// The bits a "pure capability" (no root magic) process sets (libcap's SECURED_BITS_BASIC).
    pub const BASIC_SECURED: u32 =
        NOROOT | NOROOT_LOCKED | NO_SETUID_FIXUP | NO_SETUID_FIXUP_LOCKED | KEEP_CAPS_LOCKED;
    /// `BASIC_SECURED` plus a locked ban on raising ambient caps.
    pub const AMBIENT_SECURED: u32 =
        BASIC_SECURED | NO_CAP_AMBIENT_RAISE | NO_CAP_AMBIENT_RAISE_LOCKED;
}

/// Real, effective, saved and filesystem ids, as in the `Uid:`/`Gid:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
    pub fs: u32,
}

/// The capability state of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapState {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
    pub bounding: CapSet,
    pub ambient: CapSet,
    /// `NoNewPrivs:` (prctl PR_SET_NO_NEW_PRIVS).
    pub no_new_privs: bool,
    /// Only known for the calling process (prctl PR_GET_SECUREBITS); /proc does not show them.
    pub securebits: Option<u32>,
    pub uid: Ids,
    pub gid: Ids,
    /// Supplementary groups (`Groups:`).
    pub groups: Vec<u32>,
}

/// Process facts from the same status file, for `ps`-style listings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub pid: u32,
    pub ppid: u32,
    /// `Name:` (the comm, at most 15 bytes).
    pub name: String,
    /// The state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    pub caps: CapState,
}

/// A malformed status file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("status file has no {0} line")]
    Missing(&'static str),
    #[error("status file has a malformed {field} line: {value:?}")]
    Malformed { field: &'static str, value: String },
}

impl ProcStatus {
    /// Parses the text of `/proc/PID/status` (proc(5)).
    pub fn parse(pid: u32, text: &str) -> Result<ProcStatus, StatusError> {
        let field = |name: &'static str| -> Result<&str, StatusError> {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
                .ok_or(StatusError::Missing(name))
        };
        let set = |name: &'static str| -> Result<CapSet, StatusError> {
            let v = field(name)?;
            u64::from_str_radix(v, 16)
                .map(CapSet::from_bits)
                .map_err(|_| malformed(name, v))
        };
        let caps = CapState {
            effective: set("CapEff")?,
            permitted: set("CapPrm")?,
            inheritable: set("CapInh")?,
            bounding: set("CapBnd")?,
            ambient: set("CapAmb")?,
            no_new_privs: field("NoNewPrivs").map(|v| v == "1").unwrap_or(false),
            securebits: None,
            uid: ids("Uid", field("Uid")?)?,
            gid: ids("Gid", field("Gid")?)?,
            groups: numbers("Groups", field("Groups").unwrap_or(""))?,
        };
        let ppid = field("PPid")?;
        Ok(ProcStatus {
            pid,
            ppid: ppid.parse().map_err(|_| malformed("PPid", ppid))?,
            name: field("Name")?.to_string(),
            state: field("State")?.chars().next().unwrap_or('?'),
            caps,
        })
    }

    /// Whether the process has exited and waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

fn malformed(field: &'static str, value: &str) -> StatusError {
    StatusError::Malformed {
        field,
        value: value.to_string(),
    }
}

fn numbers(field: &'static str, value: &str) -> Result<Vec<u32>, StatusError> {
    value
        .split_whitespace()
        .map(|n| n.parse().map_err(|_| malformed(field, value)))
        .collect()
}

fn ids(field: &'static str, value: &str) -> Result<Ids, StatusError> {
    match numbers(field, value)?.as_slice() {
        [real, effective, saved, fs] => Ok(Ids {
            real: *real,
            effective: *effective,
            saved: *saved,
            fs: *fs,
        }),
        _ => Err(malformed(field, value)),
    }
}

/// libcap's guess of the process's capability mode (cap_get_mode(3)), as `capsh --print` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CapMode {
    Uncertain = 0,
    Nopriv = 1,
    Pure1eInit = 2,
    Pure1e = 3,
    Hybrid = 4,
}

impl CapMode {
    /// libcap's name (cap_mode_name(3)).
    pub fn name(self) -> &'static str {
        match self {
            CapMode::Uncertain => "UNCERTAIN",
            CapMode::Nopriv => "NOPRIV",
            CapMode::Pure1eInit => "PURE1E_INIT",
            CapMode::Pure1e => "PURE1E",
            CapMode::Hybrid => "HYBRID",
        }
    }
}

impl CapState {
    /// Guesses the mode from the state, following cap_get_mode(3)'s documented meaning:
    /// without the basic secure bits root is still special (HYBRID); ambient caps, or no locked
    /// ban on raising them, make the mode UNCERTAIN; then inheritable caps mean PURE1E, and any
    /// other cap (E, P or bounding) means PURE1E_INIT; nothing at all is NOPRIV.
    /// Needs `securebits`; without them the guess is HYBRID, the kernel's default.
    pub fn guess_mode(&self) -> CapMode {
        use securebits::{AMBIENT_SECURED, BASIC_SECURED};
        let bits = self.securebits.unwrap_or(0);
        if bits & BASIC_SECURED != BASIC_SECURED {
            return CapMode::Hybrid;
        }
        if !self.ambient.is_empty() || bits & AMBIENT_SECURED != AMBIENT_SECURED {
            return CapMode::Uncertain;
        }
        if !self.inheritable.is_empty() {
            return CapMode::Pure1e;
        }
        if !self.permitted.is_empty() || !self.effective.is_empty() || !self.bounding.is_empty() {
            return CapMode::Pure1eInit;
        }
        CapMode::Nopriv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\n\
        PPid:\t7\nUid:\t0\t0\t0\t0\nGid:\t0\t5\t0\t0\nGroups:\t1 2 \nCapInh:\t0000000000000000\n\
        CapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n\
        CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n";

    #[test]
    fn parses_status() {
        let s = ProcStatus::parse(42, SAMPLE).unwrap_or_default();
        assert_eq!(s.ppid, 7);
        assert_eq!(s.name, "sleep");
        assert_eq!(s.state, 'S');
        assert_eq!(s.caps.effective.bits(), 0x01ff_feff_ffff);
        assert!(s.caps.no_new_privs);
        assert_eq!(s.caps.gid.effective, 5);
        assert_eq!(s.caps.groups, vec![1, 2]);
    }

    #[test]
    fn missing_lines_are_errors() {
        assert_eq!(
            ProcStatus::parse(1, "Name:\tx\n"),
            Err(StatusError::Missing("CapEff"))
        );
    }

    #[test]
    fn modes() {
        let mut s = CapState {
            securebits: Some(0),
            ..CapState::default()
        };
        assert_eq!(s.guess_mode(), CapMode::Hybrid);
        s.securebits = Some(0x2f);
        assert_eq!(s.guess_mode(), CapMode::Uncertain);
        s.securebits = Some(0xff);
        assert_eq!(s.guess_mode(), CapMode::Nopriv);
        s.bounding = CapSet::from_bits(1);
        assert_eq!(s.guess_mode(), CapMode::Pure1eInit);
        s.inheritable = CapSet::from_bits(1);
        assert_eq!(s.guess_mode(), CapMode::Pure1e);
    }
}
