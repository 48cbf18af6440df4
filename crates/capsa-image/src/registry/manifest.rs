//! Manifests, indexes and descriptors as the OCI image-spec and Docker's schema 2 define them,
//! platform selection from an index, and layer compression by media type.
//!
//! Owns parsing and validation only; it performs no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{RegistryError, Result};
use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The most bytes a manifest, index or config may have (containerd uses 4 MiB too).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// An OCI descriptor (image-spec descriptor.md); Docker's schema 2 uses the same shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A platform: `linux/amd64`, `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]` as `--platform` takes it.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            RegistryError::Protocol(format!(
                "invalid platform {s:?}: want os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
            ))
        };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalise_arch(parts[1]).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The platform this capsa runs on, in Go's GOOS/GOARCH names as images use them.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: normalise_arch(std::env::consts::ARCH).to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's platform fits this request; a missing variant matches any
    /// (arm64's `v8` is the default variant, so it also matches an entry without one).
    fn matches(&self, other: &Platform) -> bool {
        let default_variant = |p: &Platform| {
            p.variant
                .clone()
                .or_else(|| (p.architecture == "arm64").then(|| "v8".to_string()))
        };
        self.os == other.os
            && self.architecture == normalise_arch(&other.architecture)
            && (self.variant.is_none() || default_variant(self) == default_variant(other))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalise_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" | "x86" => "386",
        other => other,
    }
}

/// A fetched document: an index to choose from, or an image manifest.
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

/// Parses manifest bytes; the kind comes from the body's `mediaType`, then the HTTP
/// Content-Type, then the shape (an index has `manifests`).
pub fn parse_document(bytes: &[u8], content_type: Option<&str>, what: &str) -> Result<Document> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Protocol(format!("{what}: not valid JSON: {e}")))?;
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()));
    let is_index = match mt.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(m) if m.contains("schema1") || m.contains("prettyjws") => {
            return Err(RegistryError::Protocol(format!(
                "{what}: Docker schema 1 manifests are not supported (deprecated since 2019); push the image again with a current tool"
            )));
        }
        _ => v.get("manifests").is_some(),
    };
    let bad = |e: serde_json::Error| RegistryError::Protocol(format!("{what}: {e}"));
    if is_index {
        Ok(Document::Index(serde_json::from_value(v).map_err(bad)?))
    } else {
        let m: Manifest = serde_json::from_value(v).map_err(bad)?;
        if m.schema_version != 2 {
            return Err(RegistryError::Protocol(format!(
                "{what}: schemaVersion {} is not supported (want 2)",
                m.schema_version
            )));
        }
        Ok(Document::Manifest(m))
    }
}

/// Picks the manifest for `want` from an index, naming the available platforms otherwise.
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    let found = index
        .manifests
        .iter()
        .filter(|d| d.media_type == OCI_MANIFEST || d.media_type == DOCKER_MANIFEST)
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)));
    found.ok_or_else(|| {
        let have: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
            .filter(|p| p != "unknown/unknown")
            .collect();
        RegistryError::Protocol(format!(
            "{what}: no manifest for platform {want} (the index has: {})",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ))
    })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type declares (OCI image-spec layer.md and Docker's
/// `rootfs.diff.tar[.gzip]`), or an error for non-layer media types.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    let mt = media_type.trim();
    if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
        Ok(Compression::Gzip)
    } else if mt.ends_with("+zstd") || mt.ends_with(".tar.zstd") {
        Ok(Compression::Zstd)
    } else if mt.ends_with(".tar") || mt.ends_with("layer.v1.tar") {
        Ok(Compression::None)
    } else {
        Err(RegistryError::Protocol(format!(
            "unsupported layer media type {media_type:?} (want an OCI or Docker tar layer, plain, gzip or zstd)"
        )))
    }
}

/// Checks a manifest's own shape: a config descriptor of a config type and layers only.
pub fn check_manifest(m: &Manifest, what: &str) -> Result<()> {
    if m.config.size > MAX_DOCUMENT {
        return Err(RegistryError::Verify(format!(
            "{what}: the config claims {} bytes, over the {} byte limit",
            m.config.size, MAX_DOCUMENT
        )));
    }
    for l in &m.layers {
        layer_compression(&l.media_type)
            .map_err(|e| RegistryError::Protocol(format!("{what}: layer {}: {e}", l.digest)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(p: &str) -> Descriptor {
        let plat = Platform::parse(p).unwrap_or_else(|e| panic!("{e}"));
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of_bytes(p.as_bytes()),
            size: 1,
            platform: Some(plat),
            annotations: None,
            urls: None,
        }
    }

    #[test]
    fn picks_the_requested_platform() {
        let idx = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![d("linux/arm/v7"), d("linux/arm64/v8"), d("linux/amd64")],
            annotations: None,
        };
        let pick = |p: &str| {
            select_platform(
                &idx,
                &Platform::parse(p).unwrap_or_else(|e| panic!("{e}")),
                "x",
            )
            .map(|d| d.platform.clone().map(|p| p.to_string()))
        };
        assert_eq!(
            pick("linux/amd64").ok().flatten().as_deref(),
            Some("linux/amd64")
        );
        assert_eq!(
            pick("linux/arm64").ok().flatten().as_deref(),
            Some("linux/arm64/v8")
        );
        assert_eq!(
            pick("linux/arm/v7").ok().flatten().as_deref(),
            Some("linux/arm/v7")
        );
        assert!(pick("linux/s390x").is_err());
        assert!(pick("linux/arm/v6").is_err());
    }

    #[test]
    fn compression_by_media_type() {
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip").ok(),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd").ok(),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar").ok(),
            Some(Compression::None)
        );
        assert!(layer_compression("application/json").is_err());
    }
}
