//! paths: where the engine keeps things. Images and container records live under the data
//! root (`/var/lib/capsa`, or `--root`/`CAPSA_ROOT`); the runtime's state (pids, fifos) lives
//! under the state root (`/run/capsa`, or `CAPSA_STATE_ROOT`, or `<root>/run` when only the data
//! root was moved, so that tests never touch the host's `/run/capsa`).

use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/var/lib/capsa";
pub const DEFAULT_STATE_ROOT: &str = "/run/capsa";

#[derive(Debug, Clone)]
pub struct Paths {
    /// Data root: `images/`, `containers/<id>/` (snapshot + record).
    pub root: PathBuf,
    /// Runtime state root handed to capsa-runtime (per-container `state.json`, `exec.fifo`).
    pub state_root: PathBuf,
}

impl Paths {
    /// `root` and `state_root` as given on the command line or in the environment.
    pub fn new(root: Option<PathBuf>, state_root: Option<PathBuf>) -> Paths {
        let moved = root.is_some();
        let root = root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        let state_root = match state_root {
            Some(s) => s,
            None if moved => root.join("run"),
            None => PathBuf::from(DEFAULT_STATE_ROOT),
        };
        Paths { root, state_root }
    }

    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// The runtime state root for containers of the front end (kept apart from `capsa-runc`'s).
    pub fn runtime_root(&self) -> PathBuf {
        self.state_root.join("engine")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
