//! record: the on-disk record of one container, `<root>/containers/<id>/container.json`, and the
//! store operations over all of them (save, load, lookup by name or unique id prefix, update,
//! remove).
//!
//! Every write is atomic (a temp file in the same directory, fsync, rename), and every
//! read-modify-write holds an exclusive flock on `<root>/containers/.lock`, so two `capsa`
//! processes (a monitor recording an exit while a user runs `rm`) never lose an update.
//! The record's `state` is what was last written; `status::observe` turns it into the truth by
//! checking the recorded pids against /proc. Must not touch the image snapshot or the runtime
//! state: those belong to capsa-image and capsa-runtime.

use crate::caps::FiveSets;
use crate::error::{Error, Result};
use crate::options::ContainerConfig;
use crate::paths::Paths;
use capsa_caps::CapSet;
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const RECORD_FILE: &str = "container.json";
pub const LOG_FILE: &str = "container.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// The lifecycle state as last recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Host pid of the container's init while running.
    pub pid: i32,
    /// Its start time (field 22 of /proc/PID/stat): tells a recycled pid from ours.
    pub pid_start: u64,
    /// The monitor's pid and start time, while it runs.
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: i32,
    pub started_at: i128,
    pub finished_at: i128,
    pub error: String,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            monitor_pid: 0,
            monitor_start: 0,
            exit_code: 0,
            started_at: 0,
            finished_at: 0,
            error: String::new(),
        }
    }
}

/// The five configured sets as masks (stable JSON; `inspect` prints names from them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapMasks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl From<FiveSets> for CapMasks {
    fn from(s: FiveSets) -> Self {
        CapMasks {
            bounding: s.bounding.bits(),
            effective: s.effective.bits(),
            permitted: s.permitted.bits(),
            inheritable: s.inheritable.bits(),
            ambient: s.ambient.bits(),
        }
    }
}

impl CapMasks {
    pub fn sets(&self) -> FiveSets {
        FiveSets {
            bounding: CapSet::from_bits(self.bounding),
            effective: CapSet::from_bits(self.effective),
            permitted: CapSet::from_bits(self.permitted),
            inheritable: CapSet::from_bits(self.inheritable),
            ambient: CapSet::from_bits(self.ambient),
        }
    }
}

/// One container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: i128,
    /// The image reference as the user typed it, and the image id it resolved to.
    pub image: String,
    pub image_id: String,
    pub config: ContainerConfig,
    /// The process the container runs (entrypoint + cmd, after `--init`).
    pub args: Vec<String>,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    pub caps: CapMasks,
    pub seccomp: String,
    pub warnings: Vec<String>,
    pub state: State,
}

/// The store: all records under `<root>/containers`.
#[derive(Debug, Clone)]
pub struct Store {
    pub paths: Paths,
}

/// An exclusive lock over the store, released on drop (flock is tied to the open file).
pub struct StoreLock {
    _file: File,
}

impl Store {
    pub fn new(paths: Paths) -> Store {
        Store { paths }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.paths.container_dir(id)
    }

    /// Takes the store lock (creating the directory on first use).
    pub fn lock(&self) -> Result<StoreLock> {
        let dir = self.paths.containers();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let path = dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| Error::io("flock", &path, e.into()))?;
        Ok(StoreLock { _file: file })
    }

    /// Every record, oldest first. Directories without a readable record are skipped (a
    /// half-created container is invisible until its record exists).
    pub fn list(&self) -> Result<Vec<Record>> {
        let dir = self.paths.containers();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read directory", &dir, e)),
        };
        let mut out = Vec::new();
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let Some(id) = name.to_str().filter(|n| n.len() == 64) else {
                continue;
            };
            if let Ok(r) = self.load(id) {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    pub fn load(&self, id: &str) -> Result<Record> {
        let path = self.dir(id).join(RECORD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoSuchContainer(id.to_string()),
            _ => Error::io("read", &path, e),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::Json { path, source: e })
    }

    /// Finds a container by full id, exact name, or unique id prefix (Docker's order).
    pub fn find(&self, key: &str) -> Result<Record> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if key.is_empty() {
            return Err(Error::NoSuchContainer(key.to_string()));
        }
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.id == key || r.name == key) {
            return Ok(r.clone());
        }
        let mut matches = all.into_iter().filter(|r| r.id.starts_with(key));
        match (matches.next(), matches.next()) {
            (Some(r), None) => Ok(r),
            (Some(_), Some(_)) => Err(Error::AmbiguousPrefix(key.to_string())),
            _ => Err(Error::NoSuchContainer(key.to_string())),
        }
    }

    /// Writes a record atomically (the caller holds the lock when it read-modify-writes).
    pub fn save(&self, r: &Record) -> Result<()> {
        let dir = self.dir(&r.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let data = serde_json::to_vec_pretty(r).map_err(|e| Error::Json {
            path: dir.join(RECORD_FILE),
            source: e,
        })?;
        write_atomic(&dir.join(RECORD_FILE), &data)
    }

    /// Loads, changes and saves one record under the store lock.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Record)) -> Result<Record> {
        let _lock = self.lock()?;
        let mut r = self.load(id)?;
        f(&mut r);
        self.save(&r)?;
        Ok(r)
    }

    /// Docker's name rule: unique among all records (the caller holds the lock).
    pub fn check_name_free(&self, name: &str) -> Result<()> {
        match self.list()?.into_iter().find(|r| r.name == name) {
            Some(r) => Err(Error::NameInUse {
                name: name.to_string(),
                id: r.id,
            }),
            None => Ok(()),
        }
    }

    /// Removes the container's directory (record, log, bundle files).
    pub fn remove_dir(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &dir, e)),
        }
    }
}

/// Writes `data` to `path` via a temp file and rename (atomic for readers).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> Record {
        Record {
            id: id.to_string(),
            name: name.to_string(),
            created: crate::time::now_nanos(),
            image: "img".into(),
            image_id: String::new(),
            config: ContainerConfig::default(),
            args: vec!["sh".into()],
            hostname: "h".into(),
            uid: 0,
            gid: 0,
            caps: CapMasks::default(),
            seccomp: "default".into(),
            warnings: vec![],
            state: State::default(),
        }
    }

    #[test]
    fn lookup_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(Paths::new(Some(dir.path().into()), None));
        let a = format!("abc1{}", "0".repeat(60));
        let b = format!("abc2{}", "0".repeat(60));
        store.save(&record(&a, "web")).unwrap();
        store.save(&record(&b, "db")).unwrap();
        assert_eq!(store.find("web").unwrap().id, a);
        assert_eq!(store.find("abc2").unwrap().name, "db");
        assert_eq!(store.find(&a).unwrap().name, "web");
        assert_eq!(
            store.find("abc").unwrap_err().to_string(),
            "multiple containers found with provided prefix: abc"
        );
        assert_eq!(
            store.find("zzz").unwrap_err().to_string(),
            "No such container: zzz"
        );
        let e = store.check_name_free("web").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "Conflict. The container name \"/web\" is already in use by container \""
            ),
            "{e}"
        );
        store.update(&a, |r| r.state.exit_code = 3).unwrap();
        assert_eq!(store.load(&a).unwrap().state.exit_code, 3);
        store.remove_dir(&a).unwrap();
        assert!(store.find("web").is_err());
    }
}
