//! Entry-path checks for layer tars: which names may be written at all. Pure: no I/O.
//!
//! Owns the rule that an entry path is a sequence of plain components below the layer root.
//! It must not resolve anything on disk; `mod.rs` resolves the parents with openat2.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Why an entry path is refused before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// `/etc/passwd`: capsa refuses absolute names instead of stripping the `/` as GNU tar
    /// does, because an image builder never writes them and a hostile one would.
    Absolute,
    /// `a/../../x`: `..` could climb out of the layer, so any `..` component is refused.
    DotDot,
}

impl PathRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            PathRefusal::Absolute => "absolute paths are refused (layer entries must be relative)",
            PathRefusal::DotDot => {
                "paths with '..' components are refused (they could leave the layer)"
            }
        }
    }
}

/// Splits an entry path into its components, dropping empty and `.` components; the empty
/// result names the layer root itself (`./`).
pub fn components(raw: &[u8]) -> Result<Vec<&OsStr>, PathRefusal> {
    if raw.first() == Some(&b'/') {
        return Err(PathRefusal::Absolute);
    }
    let mut out = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(PathRefusal::DotDot),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Joins components back into a relative path for openat2 (`.` for the root).
pub fn join(comps: &[&OsStr]) -> Vec<u8> {
    if comps.is_empty() {
        return b".".to_vec();
    }
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Result<Vec<String>, PathRefusal> {
        components(s.as_bytes())
            .map(|v| v.iter().map(|c| c.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn plain_paths_split() {
        assert_eq!(comps("./bin/sh"), Ok(vec!["bin".into(), "sh".into()]));
        assert_eq!(comps("bin//sh/"), Ok(vec!["bin".into(), "sh".into()]));
        assert_eq!(comps("./"), Ok(vec![]));
        assert_eq!(
            comps("a/..b/c.."),
            Ok(vec!["a".into(), "..b".into(), "c..".into()])
        );
    }

    #[test]
    fn escapes_are_refused() {
        assert_eq!(comps("../x"), Err(PathRefusal::DotDot));
        assert_eq!(comps("a/../../x"), Err(PathRefusal::DotDot));
        assert_eq!(comps("a/.."), Err(PathRefusal::DotDot));
        assert_eq!(comps("/etc/passwd"), Err(PathRefusal::Absolute));
        assert_eq!(comps("//x"), Err(PathRefusal::Absolute));
    }

    #[test]
    fn join_round_trips() {
        let v = components(b"./a/b").unwrap_or_default();
        assert_eq!(join(&v), b"a/b");
        assert_eq!(join(&[]), b".");
    }
}
