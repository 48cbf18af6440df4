//! The one error type of capsa-image. Owns the wording of every message; touches nothing on disk.
//!
//! Messages name the operation, the path (or the layer and the tar entry) and, where it helps,
//! a hint, so the binary can print them as they are.

use std::path::{Path, PathBuf};

use crate::reference::ReferenceError;

/// Everything capsa-image can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem or system call failed on a store path.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syscall failed; `hint` says what usually causes it.
    #[error("{call} {}: {errno}{}", path.display(), hint_suffix(hint))]
    Sys {
        call: &'static str,
        path: PathBuf,
        errno: rustix::io::Errno,
        hint: &'static str,
    },
    /// An image reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A layer entry was refused or could not be written.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Unpack {
        layer: String,
        entry: String,
        reason: String,
    },
    /// A stored blob does not hash to its name: the store is damaged.
    #[error("blob {} is corrupt: its content hashes to {actual} (remove it and import or pull again)", path.display())]
    DigestMismatch { path: PathBuf, actual: String },
    /// No image matches the name or ID.
    #[error("No such image: {0}")]
    NotFound(String),
    /// An ID prefix matches more than one image.
    #[error("ambiguous image ID prefix {0}: it matches several images, give more characters")]
    Ambiguous(String),
    /// The operation conflicts with the store's state (Docker's "conflict: ..." errors).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A `--change` instruction is malformed or unsupported.
    #[error("invalid --change {change:?}: {reason}")]
    Change { change: String, reason: String },
    /// A JSON document in the store does not parse.
    #[error("cannot parse {}: {source} (the store may be damaged)", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Input that is not a (compressed) tar archive.
    #[error("{0}")]
    Format(String),
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn sys(call: &'static str, path: &Path, errno: rustix::io::Errno) -> Self {
        ImageError::Sys {
            call,
            path: path.to_path_buf(),
            errno,
            hint: "",
        }
    }
}
