//! Text formats byte-identical to libcap 2.66's tools: `cap_to_text(3)`, the IAB text,
//! `capsh --decode`, `getpcaps` and `capsh --print`.
//!
//! Owns formatting only; written from libcap's documented behaviour and checked against the real
//! tools (tests/caps_cli.rs). Must not do I/O: callers pass states, names and `cap_last_cap`.
//!
//! `cap_to_text` picks the shortest description. Every cap below `cap_last_cap + 1` has a state,
//! the subset of {e, i, p} that holds it. The most common state is written first as `=<flags>`
//! (ties go to the state with the fewest bits, e=1, p=2, i=4 in libcap's numbering, so the empty
//! state wins ties); every other state that occurs then adds a clause `names+<extra>-<missing>`,
//! in falling state order (7 = eip first). When the base state is empty the leading `=` is
//! folded into the first clause: `cap_chown,cap_kill=ep` rather than `= cap_chown,cap_kill+ep`.

use crate::cap::{Cap, CapSet};
use crate::names::Accounts;
use crate::state::{CapState, securebits as sb};

const EFF: u8 = 1;
const PER: u8 = 2;
const INH: u8 = 4;

fn flags(state: u8) -> String {
    [(EFF, 'e'), (INH, 'i'), (PER, 'p')]
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

fn width(nbits: u32, sets: &[CapSet]) -> u32 {
    let used = sets.iter().fold(0u64, |acc, s| acc | s.bits());
    nbits.min(64).max(64 - used.leading_zeros())
}

fn names_where(nbits: u32, mut pred: impl FnMut(Cap) -> bool) -> Vec<String> {
    (0..nbits)
        .filter_map(|n| Cap::from_index(n as u8))
        .filter(|c| pred(*c))
        .map(Cap::libcap_text_name)
        .collect()
}

/// `cap_to_text(3)` of (effective, permitted, inheritable). `nbits` is `cap_last_cap + 1`.
pub fn cap_to_text(
    effective: CapSet,
    permitted: CapSet,
    inheritable: CapSet,
    nbits: u32,
) -> String {
    let nbits = width(nbits, &[effective, permitted, inheritable]);
    let state_of = |c: Cap| -> u8 {
        u8::from(effective.contains(c)) * EFF
            + u8::from(permitted.contains(c)) * PER
            + u8::from(inheritable.contains(c)) * INH
    };
    let mut histogram = [0u32; 8];
    for c in (0..nbits).filter_map(|n| Cap::from_index(n as u8)) {
        histogram[state_of(c) as usize] += 1;
    }
    // The most common state; on a tie the smaller state number (fewer flags) wins.
    let base = (0u8..8).rev().fold(7u8, |best, t| {
        if histogram[t as usize] >= histogram[best as usize] {
            t
        } else {
            best
        }
    });
    let mut out = format!("={}", flags(base));
    for t in (0u8..8)
        .rev()
        .filter(|t| *t != base && histogram[*t as usize] > 0)
    {
        let mut clause = names_where(nbits, |c| state_of(c) == t).join(",");
        let (extra, missing) = (t & !base, base & !t);
        if extra != 0 {
            if out == "=" {
                // Fold an empty base into the first clause: `names=flags`.
                out.clear();
                clause.push('=');
            } else {
                clause.push('+');
            }
            clause.push_str(&flags(extra));
        }
        if missing != 0 {
            clause.push('-');
            clause.push_str(&flags(missing));
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&clause);
    }
    out
}

/// The IAB text (cap_iab_to_text(3)) of a process: for each cap in number order that is
/// inheritable, ambient or missing from the bounding set: `!` when not in bounding, then `^` when
/// ambient (which implies inheritable), else `%` for inheritable only when `!` precedes it (a bare
/// name already means inheritable).
pub fn iab_text(inheritable: CapSet, ambient: CapSet, bounding: CapSet, nbits: u32) -> String {
    let nbits = nbits.min(64);
    let mut parts = Vec::new();
    for c in (0..nbits).filter_map(|n| Cap::from_index(n as u8)) {
        let (i, a, nb) = (
            inheritable.contains(c),
            ambient.contains(c),
            !bounding.contains(c),
        );
        if !(i || a || nb) {
            continue;
        }
        let mut s = String::new();
        if nb {
            s.push('!');
        }
        if a {
            s.push('^');
        } else if i && nb {
            s.push('%');
        }
        s.push_str(&c.libcap_text_name());
        parts.push(s);
    }
    parts.join(",")
}

/// `capsh --decode=HEX`: `0x00000000a80425fb=cap_chown,...`; unnamed bits print as numbers.
pub fn decode_line(mask: CapSet) -> String {
    format!(
        "{}={}",
        mask.hex(),
        names_where(64, |c| mask.contains(c)).join(",")
    )
}

/// A bare comma list of libcap names (`capsh --print`'s `Bounding set =` and `Ambient set =`).
pub fn name_list(set: CapSet, nbits: u32) -> String {
    names_where(nbits.min(64), |c| set.contains(c)).join(",")
}

impl CapState {
    /// `cap_to_text(3)` of this state's E, P and I.
    pub fn to_text(&self, last_cap: u8) -> String {
        cap_to_text(
            self.effective,
            self.permitted,
            self.inheritable,
            u32::from(last_cap) + 1,
        )
    }

    /// The IAB text of this state.
    pub fn iab(&self, last_cap: u8) -> String {
        iab_text(
            self.inheritable,
            self.ambient,
            self.bounding,
            u32::from(last_cap) + 1,
        )
    }
}

/// How `getpcaps` prints one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetpcapsStyle {
    /// `--verbose`: `Capabilities for 'PID': ...`.
    pub verbose: bool,
    /// `--iab`: `PID: "text" [iab]`, or `PID: [iab]` when E, P and I are empty (takes
    /// precedence over verbose, as in getpcaps).
    pub iab: bool,
}

/// One line of `getpcaps` output, without the newline.
pub fn getpcaps_line(pid: u32, state: &CapState, last_cap: u8, style: GetpcapsStyle) -> String {
    let text = state.to_text(last_cap);
    if style.iab {
        // getpcaps leaves out the quoted text when the process holds no E/P/I caps at all.
        let quoted = if text == "=" {
            String::new()
        } else {
            format!(" \"{text}\"")
        };
        format!("{pid}:{quoted} [{}]", state.iab(last_cap))
    } else if style.verbose {
        format!("Capabilities for '{pid}': {text}")
    } else {
        format!("{pid}: {text}")
    }
}

/// The `Securebits:` line and the four flag lines of `capsh --print`.
fn securebits_lines(bits: u32, no_new_privs: bool) -> String {
    let binary_width = (32 - bits.leading_zeros()).max(1);
    let mut out = format!(
        "Securebits: 0{bits:o}/{bits:#x}/{binary_width}'b{bits:b} (no-new-privs={})\n",
        u8::from(no_new_privs)
    );
    let flag = |set: u32, lock: u32| {
        format!(
            "{} ({})",
            if bits & set != 0 { "yes" } else { "no" },
            if bits & lock != 0 {
                "locked"
            } else {
                "unlocked"
            }
        )
    };
    let rows = [
        ("noroot", sb::NOROOT, sb::NOROOT_LOCKED),
        (
            "no-suid-fixup",
            sb::NO_SETUID_FIXUP,
            sb::NO_SETUID_FIXUP_LOCKED,
        ),
        ("keep-caps", sb::KEEP_CAPS, sb::KEEP_CAPS_LOCKED),
        (
            "no-ambient-raise",
            sb::NO_CAP_AMBIENT_RAISE,
            sb::NO_CAP_AMBIENT_RAISE_LOCKED,
        ),
    ];
    for (name, set, lock) in rows {
        out.push_str(&format!(" secure-{name}: {}\n", flag(set, lock)));
    }
    out
}

/// `capsh --print` of a process state (libcap 2.66 layout), ending with a newline.
/// Uses `state.securebits` (0 when unknown).
pub fn capsh_print(state: &CapState, accounts: &Accounts, last_cap: u8) -> String {
    let nbits = u32::from(last_cap) + 1;
    let mode = state.guess_mode();
    let mut out = String::new();
    out.push_str(&format!("Current: {}\n", state.to_text(last_cap)));
    out.push_str(&format!(
        "Bounding set ={}\n",
        name_list(state.bounding, nbits)
    ));
    out.push_str(&format!(
        "Ambient set ={}\n",
        name_list(state.ambient, nbits)
    ));
    out.push_str(&format!("Current IAB: {}\n", state.iab(last_cap)));
    out.push_str(&securebits_lines(
        state.securebits.unwrap_or(0),
        state.no_new_privs,
    ));
    out.push_str(&accounts.capsh_uid_line(state.uid.real, state.uid.effective));
    out.push('\n');
    out.push_str(&accounts.capsh_gid_line(state.gid.real));
    out.push('\n');
    out.push_str(&accounts.capsh_groups_line(&state.groups));
    out.push('\n');
    out.push_str(&format!("Guessed mode: {} ({})\n", mode.name(), mode as u8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: u64 = 0x1ff_ffff_ffff;
    const NO_RES: u64 = FULL & !(1 << 24);

    fn t(e: u64, p: u64, i: u64) -> String {
        cap_to_text(
            CapSet::from_bits(e),
            CapSet::from_bits(p),
            CapSet::from_bits(i),
            41,
        )
    }

    #[test]
    fn libcap_examples() {
        assert_eq!(t(0, 0, 0), "=");
        assert_eq!(t(FULL, FULL, 0), "=ep");
        assert_eq!(t(NO_RES, NO_RES, 0), "=ep cap_sys_resource-ep");
        assert_eq!(t(0x21, 0x21, 0), "cap_chown,cap_kill=ep");
        assert_eq!(t(1 << 10, 1 << 10, 1 << 10), "cap_net_bind_service=eip");
        assert_eq!(
            t(NO_RES, NO_RES, 0x21),
            "=ep cap_chown,cap_kill+i cap_sys_resource-ep"
        );
        assert_eq!(t(0, 0, 1), "cap_chown=i");
        assert_eq!(t(0, 1, 2), "cap_dac_override=i cap_chown+p");
    }

    #[test]
    fn decode_examples() {
        assert_eq!(decode_line(CapSet::from_bits(0)), "0x0000000000000000=");
        assert_eq!(
            decode_line(CapSet::from_bits(0x10)),
            "0x0000000000000010=cap_fsetid"
        );
        assert!(decode_line(CapSet::from_bits(u64::MAX)).ends_with(",cap_checkpoint_restore,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63"));
    }

    #[test]
    fn iab_examples() {
        let b = CapSet::from_bits(NO_RES);
        let s = |n: u64| CapSet::from_bits(n);
        assert_eq!(iab_text(s(0), s(0), b, 41), "!cap_sys_resource");
        assert_eq!(
            iab_text(s(0x420), s(0x420), b, 41),
            "^cap_kill,^cap_net_bind_service,!cap_sys_resource"
        );
        let b2 = s(NO_RES & !0x21);
        assert_eq!(
            iab_text(s(0x21), s(0x20), b2, 41),
            "!%cap_chown,!^cap_kill,!cap_sys_resource"
        );
    }

    #[test]
    fn securebits_layout() {
        assert!(
            securebits_lines(0, false).starts_with("Securebits: 00/0x0/1'b0 (no-new-privs=0)\n")
        );
        assert!(
            securebits_lines(0x2f, true)
                .starts_with("Securebits: 057/0x2f/6'b101111 (no-new-privs=1)\n")
        );
        assert!(securebits_lines(0x2f, true).contains(" secure-keep-caps: no (locked)\n"));
    }

    /// A minimal reader of libcap's text (cap_from_text(3) grammar) for round trips:
    /// clauses split by spaces, `names` (empty = all) followed by `=`/`+`/`-` and flags.
    fn from_text(text: &str, nbits: u32) -> (u64, u64, u64) {
        let mut sets = [0u64; 3]; // e, i, p
        let all = if nbits >= 64 {
            u64::MAX
        } else {
            (1u64 << nbits) - 1
        };
        for clause in text.split(' ') {
            let split = clause.find(['=', '+', '-']).unwrap_or(clause.len());
            let (names, mut ops) = clause.split_at(split);
            let mask = if names.is_empty() {
                all
            } else {
                names
                    .split(',')
                    .map(|n| {
                        (0u8..64).find(|i| {
                            Cap::from_index(*i).map(Cap::libcap_text_name).as_deref() == Some(n)
                        })
                    })
                    .map(|i| 1u64 << i.unwrap_or_else(|| unreachable!("bad name")))
                    .fold(0, |a, b| a | b)
            };
            while let Some(op) = ops.chars().next() {
                let rest = &ops[1..];
                let end = rest.find(['=', '+', '-']).unwrap_or(rest.len());
                let fl = &rest[..end];
                if op == '=' {
                    sets.iter_mut().for_each(|s| *s &= !mask);
                }
                for (k, c) in ['e', 'i', 'p'].iter().enumerate() {
                    if fl.contains(*c) {
                        if op == '-' {
                            sets[k] &= !mask
                        } else {
                            sets[k] |= mask
                        }
                    }
                }
                ops = &rest[end..];
            }
        }
        (sets[0], sets[2], sets[1])
    }

    proptest::proptest! {
        #[test]
        fn cap_to_text_round_trips(e in 0u64..(1 << 41), p in 0u64..(1 << 41), i in 0u64..(1 << 41),
                                   dense in proptest::bool::ANY) {
            // Dense masks exercise a non-empty base state (`=ep ...`).
            let (e, p, i) = if dense { (!e & FULL, !p & FULL, !i & FULL) } else { (e, p, i) };
            let text = t(e, p, i);
            proptest::prop_assert_eq!(from_text(&text, 41), (e, p, i), "{}", text);
        }

        #[test]
        fn decode_round_trips(mask in proptest::num::u64::ANY) {
            let line = decode_line(CapSet::from_bits(mask));
            let (hex, names) = line.split_once('=').unwrap_or_default();
            proptest::prop_assert_eq!(u64::from_str_radix(&hex[2..], 16).ok(), Some(mask));
            let back = if names.is_empty() { 0 } else { from_text(&format!("{names}=e"), 64).0 };
            proptest::prop_assert_eq!(back, mask);
        }
    }
}
