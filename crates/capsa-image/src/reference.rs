//! Image references with Docker's normalisation: `busybox` is `docker.io/library/busybox:latest`.
//!
//! Owns the reference grammar (distribution/reference's `reference.go` and `normalize.go`
//! rules, re-implemented) and its error texts. Pure: no I/O.

use std::fmt;

use crate::digest::Digest;

/// The registry that names without a domain belong to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
/// distribution/reference: a name is at most 255 characters.
const NAME_MAX: usize = 255;

/// A reference that does not parse; the message follows Docker's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl ReferenceError {
    pub(crate) fn new(input: &str, reason: impl Into<String>) -> Self {
        ReferenceError {
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

/// A normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference; a reference without tag or digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_name_only(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses without adding the default tag (for `capsa tag`'s and `import`'s targets the
    /// caller adds it; for lookups by name both behave the same).
    pub fn parse_name_only(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::new(input, "empty reference"));
        }
        if Digest::from_hex(input).is_some() {
            return Err(ReferenceError::new(
                input,
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| ReferenceError::new(input, e.reason))?),
            ),
            None => (input, None),
        };
        let (name, tag) = split_tag(name_tag);
        if let Some(t) = tag {
            check_tag(input, t)?;
        }
        let (domain, path) = split_domain(name);
        check_domain(input, &domain)?;
        check_path(input, &path)?;
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(ReferenceError::new(
                input,
                "repository name must not be more than 255 characters",
            ));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Returns the same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        check_tag(tag, tag)?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The full repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `busybox`, `user/app`, `localhost:5000/x/y`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference in familiar form: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// A tag is what follows the last `:` when no `/` comes after it (so `host:5000/x` has none).
fn split_tag(name_tag: &str) -> (&str, Option<&str>) {
    match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    }
}

/// normalize.go splitDockerDomain: the first component is a domain only when it contains
/// `.` or `:`, is `localhost`, or has an uppercase letter; otherwise the name is on Docker Hub,
/// and a single-component name is an official image under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

/// reference.go tag: `[\w][\w.-]{0,127}`.
fn check_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let ok = tag.len() <= 128
        && chars.next().is_some_and(word)
        && chars.all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::new(input, format!("invalid tag {tag:?}")))
    }
}

/// reference.go domain: dot-separated labels of `[a-zA-Z0-9-]` not starting or ending in `-`,
/// or a bracketed IPv6 address, then an optional `:port`.
fn check_domain(input: &str, domain: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::new(input, format!("invalid registry domain {domain:?}"));
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad());
        }
        (None, after.strip_prefix(':'))
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    match port {
        Some(p) if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) => Err(bad()),
        _ => Ok(()),
    }
}

/// reference.go path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, components joined by `/`.
fn check_path(input: &str, path: &str) -> Result<(), ReferenceError> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceError::new(
            input,
            format!("repository name ({path}) must be lowercase"),
        ));
    }
    for comp in path.split('/') {
        if !path_component_ok(comp) {
            return Err(ReferenceError::new(
                input,
                format!("invalid repository name component {comp:?}"),
            ));
        }
    }
    Ok(())
}

fn path_component_ok(comp: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = comp.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", followed by an alphanumeric.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s)
            .map(|r| r.to_string())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn docker_normalisation() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            full("index.docker.io/library/nginx:1.27"),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(full("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("localhost:5000/x/y:tag"), "localhost:5000/x/y:tag");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(full("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        assert_eq!(full("[::1]:5000/x"), "[::1]:5000/x:latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            full(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            full(&format!("localhost:5000/x/y:t@{d}")),
            format!("localhost:5000/x/y:t@{d}")
        );
    }

    #[test]
    fn familiar_forms() {
        let f = |s: &str| {
            Reference::parse(s)
                .map(|r| r.familiar())
                .unwrap_or_default()
        };
        assert_eq!(f("busybox"), "busybox:latest");
        assert_eq!(f("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(f("docker.io/user/app"), "user/app:latest");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b:latest");
        assert_eq!(f("localhost:5000/x/y:tag"), "localhost:5000/x/y:tag");
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a//b",
            "a/b/",
            "/a",
            "a..b",
            "a-/b",
            "-a",
            "localhost:port/x",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = "a".repeat(256);
        assert!(Reference::parse(&long).is_err());
    }

    #[test]
    fn separators_in_components() {
        for good in ["a.b", "a_b", "a__b", "a---b", "a-b.c_d"] {
            assert!(path_component_ok(good), "{good}");
        }
        for bad in ["a___b", "a._b", "a.", "_a", "a..b"] {
            assert!(!path_component_ok(bad), "{bad}");
        }
    }

    #[test]
    fn errors_say_why() {
        let e = Reference::parse("Busybox")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("must be lowercase"), "{e}");
    }
}
