//! Images from the world: registry pulls and pushes (Registry HTTP API v2 / OCI
//! distribution-spec), and the ingestion path that pulls and archive loads share.
//!
//! Owns the registry conversation (client.rs), manifest and index parsing with platform
//! selection (manifest.rs), resumable verified layer downloads (pull.rs), uploads (push.rs)
//! and the commit of a fetched image into the store (ingest.rs). It writes only into the
//! store's `tmp/` and, under the store lock, renames finished blobs and layers into place; it
//! never edits `images.json` except through the store's own index helpers.

pub mod client;
pub mod ingest;
pub mod manifest;
pub mod pull;
pub mod push;

pub use client::{Client, ClientOptions};
pub use manifest::Platform;
pub use pull::{PullOptions, pull};
pub use push::{PushOptions, push};

use crate::digest::Digest;
use crate::error::ImageError;

/// What a pull, push or load can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store refused or failed (including refused layer entries).
    #[error(transparent)]
    Store(#[from] ImageError),
    /// The registry could not be reached or the connection broke.
    #[error("cannot {what} ({registry}): {source}")]
    Network {
        what: String,
        registry: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry answered with an error status.
    #[error("cannot {what}: {registry} answered {status}: {message}")]
    Status {
        what: String,
        registry: String,
        status: u16,
        message: String,
    },
    /// Authentication failed or is missing.
    #[error("{0}")]
    Auth(String),
    /// Content did not match its descriptor: digest or size (a lying or damaged source).
    #[error("{0}")]
    Verify(String),
    /// A manifest, index or archive that does not follow the specs.
    #[error("{0}")]
    Protocol(String),
    /// A layer download broke off; the partial blob is kept for the next pull to resume.
    #[error(
        "layer {digest}: the download broke off after {done} of {size} bytes: {reason} (the partial download is kept: pull again to resume)"
    )]
    Interrupted {
        digest: Digest,
        done: u64,
        size: u64,
        reason: String,
    },
}

/// Shorthand for this module.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// What a pull reports while it works; the binary draws bars or prints lines.
pub trait Progress: Send + Sync {
    /// A layer starts downloading (`resumed_from` > 0 when a partial download is reused).
    fn layer_start(&self, digest: &Digest, size: u64, resumed_from: u64);
    /// `n` more bytes of that layer arrived.
    fn layer_bytes(&self, digest: &Digest, n: u64);
    /// The layer is verified and unpacked (`cached` when the store already had it).
    fn layer_done(&self, digest: &Digest, cached: bool);
    /// A one-line status message (`Pulling from ...`, `Digest: ...`).
    fn message(&self, msg: &str);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn layer_start(&self, _: &Digest, _: u64, _: u64) {}
    fn layer_bytes(&self, _: &Digest, _: u64) {}
    fn layer_done(&self, _: &Digest, _: bool) {}
    fn message(&self, _: &str) {}
}
