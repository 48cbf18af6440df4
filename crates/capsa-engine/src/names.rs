//! names: container ids and names the way Docker makes them. Ids are 64 lowercase hex digits
//! from the kernel's CSPRNG; names are `adjective_surname` (a digit is appended on a clash);
//! user-given names must match Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
//!
//! The word lists are capsa's own. Must not touch the record store (uniqueness is checked by
//! the caller under the store's lock).

use crate::error::{Error, Result};
use std::io::Read;

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "bold", "brave", "bright", "calm", "careful", "clever", "cosmic", "crisp",
    "curious", "daring", "eager", "earnest", "fearless", "fluent", "frugal", "gentle", "glad",
    "graceful", "hardy", "honest", "humble", "keen", "kind", "lively", "loyal", "lucid", "mellow",
    "merry", "modest", "nimble", "noble", "patient", "plucky", "polite", "quiet", "rapid",
    "serene", "sharp", "silent", "sober", "steady", "stoic", "swift", "tidy", "vivid", "wary",
    "witty", "zesty",
];

const SURNAMES: &[&str] = &[
    "babbage",
    "backus",
    "bell",
    "bose",
    "boole",
    "carver",
    "cerf",
    "curie",
    "dijkstra",
    "easley",
    "engelbart",
    "euler",
    "faraday",
    "fermi",
    "feynman",
    "gauss",
    "goldberg",
    "hamilton",
    "hopper",
    "huffman",
    "jackson",
    "johnson",
    "kahn",
    "kay",
    "knuth",
    "lamarr",
    "lamport",
    "liskov",
    "lovelace",
    "maxwell",
    "mccarthy",
    "meitner",
    "minsky",
    "napier",
    "noether",
    "noyce",
    "pascal",
    "perlman",
    "raman",
    "ritchie",
    "shannon",
    "somerville",
    "stallman",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wirth",
    "wozniak",
    "yalow",
];

/// A fresh 64-hex-digit id. Like Docker, an id whose 12-digit short form is all decimal digits is
/// discarded, so that a short id can never be mistaken for a number.
pub fn new_id() -> Result<String> {
    loop {
        let bytes = random_bytes::<32>()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// A generated name; `attempt` > 0 appends a digit, as Docker does after a clash.
pub fn generate_name(attempt: u32) -> Result<String> {
    let r = random_bytes::<4>()?;
    let a = ADJECTIVES[usize::from(r[0]) % ADJECTIVES.len()];
    let s = SURNAMES[usize::from(r[1]) % SURNAMES.len()];
    Ok(if attempt == 0 {
        format!("{a}_{s}")
    } else {
        format!("{a}_{s}{}", r[2] % 10)
    })
}

/// Checks a `--name` value against Docker's rule; a leading `/` is accepted and removed.
pub fn validate_name(name: &str) -> Result<String> {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        n.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(n.to_string())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// The 12-digit short id shown by `ps`.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, new_id().unwrap());
    }

    #[test]
    fn names() {
        let n = generate_name(0).unwrap();
        assert!(validate_name(&n).is_ok(), "{n}");
        assert_eq!(validate_name("/web-1").unwrap(), "web-1");
        assert!(validate_name("a").is_err());
        assert!(validate_name("_x").is_err());
        assert_eq!(
            validate_name("bad name").unwrap_err().to_string(),
            "Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
    }
}
