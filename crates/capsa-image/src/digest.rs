//! Content digests (`sha256:<hex>`) and the hashing readers and writers that compute them.
//!
//! Owns the digest syntax and hashing only; it never touches the store.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::reference::ReferenceError;

/// A sha256 content digest, the key of every blob and layer in the store.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; other algorithms are refused for now
    /// (OCI image-spec descriptor.md: sha256 is the one every implementation must support).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(ReferenceError::new(
                s,
                "invalid digest format: want sha256:<64 hex digits>",
            ));
        };
        if algo != "sha256" {
            return Err(ReferenceError::new(
                s,
                "unsupported digest algorithm: only sha256 is supported",
            ));
        }
        Self::from_hex(hex).ok_or_else(|| {
            ReferenceError::new(
                s,
                "invalid checksum digest format: want 64 lowercase hex digits",
            )
        })
    }

    /// Builds a digest from its 64 hex digits, or None when they are malformed.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Digest {
            hex: hex.to_string(),
        })
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` shows IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The digest of a byte slice.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Digest {
            hex: to_hex(&hasher.finalize()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// A reader that hashes and counts what passes through it and copies it to a sink
/// (the blob's temp file), so one pass over the input yields the layer, the blob and the digest.
pub struct TeeDigest<R, W> {
    inner: R,
    sink: W,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read, W: Write> TeeDigest<R, W> {
    pub fn new(inner: R, sink: W) -> Self {
        TeeDigest {
            inner,
            sink,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads the rest of the input (tar's end-of-archive padding) so the digest covers it all,
    /// then returns the digest, the byte count and the sink.
    pub fn finish(mut self) -> io::Result<(Digest, u64, W)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.bytes, self.sink))
    }
}

impl<R: Read, W: Write> Read for TeeDigest<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.sink.write_all(&buf[..n])?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Hashes a whole reader.
pub fn digest_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Digest::from_hasher(hasher), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest_is_the_well_known_one() {
        assert_eq!(
            Digest::of_bytes(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_refuses_bad_digests() {
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(
            Digest::parse("md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .is_err()
        );
        assert!(
            Digest::parse(
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
            )
            .is_err()
        );
        assert!(
            Digest::parse(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
            .is_ok()
        );
    }

    #[test]
    fn tee_hashes_everything() {
        let mut out = Vec::new();
        let mut tee = TeeDigest::new(&b"hello world"[..], &mut out);
        let mut first = [0u8; 5];
        tee.read_exact(&mut first).ok();
        let (d, n, _) = tee.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of_bytes(b"hello world"));
        assert_eq!(out, b"hello world");
    }
}
