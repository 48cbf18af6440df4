//! error: the one error type of the engine. Messages are what the user reads: Docker's exact
//! text where Docker has one (so scripts that match on it keep working), otherwise the syscall,
//! the path and a hint.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag value Docker would refuse; the text is Docker's where it has one.
    #[error("{0}")]
    InvalidFlag(String),

    /// `invalid CapAdd: ...` / `invalid CapDrop: ...` (Docker's texts, from capsa-caps).
    #[error("{0}")]
    Capability(String),

    #[error("No such container: {0}")]
    NoSuchContainer(String),

    #[error("multiple containers found with provided prefix: {0}")]
    AmbiguousPrefix(String),

    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    NameInUse { name: String, id: String },

    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),

    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),

    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),

    #[error("container {0} is not running")]
    NotRunning(String),

    #[error(
        "cannot remove container \"/{name}\": container is {state}: stop the container before removing or force remove"
    )]
    RemoveRunning { name: String, state: String },

    #[error("container {0} is already running")]
    AlreadyRunning(String),

    #[error("No such image: {0}")]
    NoSuchImage(String),

    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot parse {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{0}")]
    Runtime(String),

    #[error("{0}")]
    Image(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Docker's CLI exit codes: 127 when the command was not found, 126 when it could not be
    /// executed, 125 for every other failure of the engine itself (not of the container).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Runtime(m)
                if m.contains("executable file not found")
                    || m.contains("no such file or directory") =>
            {
                127
            }
            Error::Runtime(m) if m.contains("permission denied") || m.contains("EACCES") => 126,
            _ => 125,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
