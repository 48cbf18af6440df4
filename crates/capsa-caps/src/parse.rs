//! Capability names as users type them (`chown`, `CAP_CHOWN`, `ALL`), with Docker's normalisation
//! and Docker's exact error texts.
//!
//! Owns name parsing and validation against what the host can grant. Must not read /proc: the
//! caller passes the available set (see `proc::host_available`).
//!
//! Docker's rule (moby `daemon/pkg/oci/caps/utils.go`, `NormalizeLegacyCapabilities`): upper-case
//! the whole entry; `ALL` is a keyword; otherwise prepend `CAP_` unless present. No trimming, so
//! `""` becomes `CAP_` and `"CAP_ALL"` stays `CAP_ALL`: both are unknown. Errors quote the
//! *normalised* name with Go's `%q`.

use std::fmt;

use crate::cap::{Cap, CapSet};

/// A parsed entry of a `--cap-add` / `--cap-drop` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapName {
    /// The keyword `ALL` (any case).
    All,
    /// One named capability.
    Cap(Cap),
}

/// Why a capability name was refused. The `Display` texts are Docker's, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// Not one of the 41 names of Linux 5.9+ (holds the normalised name, e.g. `CAP_FOO`).
    #[error("unknown capability: {}", go_quote(.0))]
    Unknown(String),
    /// A known name that the host cannot grant (not in our bounding set, or above cap_last_cap).
    #[error(
        "capability not supported by your kernel or not available in the current environment: {}",
        go_quote(.0)
    )]
    Unavailable(String),
}

/// Docker's normalisation of one entry: upper case, `ALL` kept, else `CAP_` prepended if missing.
pub fn normalize(name: &str) -> String {
    let upper = name.to_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Parses one name without looking at the host: `chown`, `CHOWN`, `cap_chown`, `CAP_CHOWN`, `all`.
pub fn parse_name(name: &str) -> Result<CapName, CapError> {
    let norm = normalize(name);
    if norm == "ALL" {
        return Ok(CapName::All);
    }
    Cap::from_oci_name(&norm)
        .map(CapName::Cap)
        .ok_or(CapError::Unknown(norm))
}

/// Parses one name and checks that the host can grant it (Docker's create-time validation).
/// `ALL` is always valid.
pub fn parse_available(name: &str, available: CapSet) -> Result<CapName, CapError> {
    match parse_name(name)? {
        CapName::Cap(c) if !available.contains(c) => Err(CapError::Unavailable(c.oci_name())),
        parsed => Ok(parsed),
    }
}

/// Parses a capability for display purposes (`capsa caps explain`): any name `parse_name`
/// accepts, or a kernel number `0..=63`. `ALL` is refused as unknown, as it names no single cap.
pub fn parse_single(name: &str) -> Result<Cap, CapError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name
            .parse::<u8>()
            .ok()
            .and_then(Cap::from_index)
            .ok_or_else(|| CapError::Unknown(normalize(name)));
    }
    match parse_name(name)? {
        CapName::Cap(c) => Ok(c),
        CapName::All => Err(CapError::Unknown(normalize(name))),
    }
}

/// Quotes like Go's `%q` (strconv.Quote), which Docker's messages use: printable characters stay,
/// `"` and `\` are escaped, control characters become `\n`, `\t`, `\x00`, ... .
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for CapName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapName::All => f.write_str("ALL"),
            CapName::Cap(c) => write!(f, "{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(n: u8) -> Cap {
        Cap::from_index(n).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn spellings_of_one_cap() {
        for s in ["chown", "CHOWN", "cap_chown", "CAP_CHOWN", "Cap_Chown"] {
            assert_eq!(parse_name(s), Ok(CapName::Cap(cap(0))), "{s}");
        }
        for s in ["all", "ALL", "All"] {
            assert_eq!(parse_name(s), Ok(CapName::All));
        }
    }

    #[test]
    fn docker_error_texts() {
        let e = |s: &str| parse_name(s).err().map(|e| e.to_string());
        assert_eq!(
            e("foo").as_deref(),
            Some(r#"unknown capability: "CAP_FOO""#)
        );
        assert_eq!(
            e("CAP_ALL").as_deref(),
            Some(r#"unknown capability: "CAP_ALL""#)
        );
        assert_eq!(e("").as_deref(), Some(r#"unknown capability: "CAP_""#));
        assert_eq!(
            e(" chown").as_deref(),
            Some(r#"unknown capability: "CAP_ CHOWN""#)
        );
        assert_eq!(
            e("cap_41").as_deref(),
            Some(r#"unknown capability: "CAP_41""#)
        );
        assert_eq!(
            e("a\"\n").as_deref(),
            Some(r#"unknown capability: "CAP_A\"\n""#)
        );
        let avail = CapSet::up_to(40).difference(CapSet::from_bits(1 << 24));
        assert_eq!(
            parse_available("sys_resource", avail)
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some(
                r#"capability not supported by your kernel or not available in the current environment: "CAP_SYS_RESOURCE""#
            )
        );
        assert_eq!(parse_available("all", CapSet::EMPTY), Ok(CapName::All));
    }

    #[test]
    fn single_cap_accepts_numbers() {
        assert_eq!(parse_single("21"), Ok(cap(21)));
        assert_eq!(parse_single("sys_admin"), Ok(cap(21)));
        assert!(parse_single("64").is_err());
        assert!(parse_single("ALL").is_err());
    }
}
