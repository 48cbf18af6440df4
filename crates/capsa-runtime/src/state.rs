//! state: the on-disk store of containers, `<root>/<id>/state.json`, and the runc-compatible
//! `state` JSON derived from it.
//!
//! Owns: the state root layout, per-container locking, atomic writes, the live status
//! (created/running/paused/stopped) and RFC 3339 timestamps.
//! Must not touch: processes (beyond reading /proc/PID/stat) or cgroups.
//!
//! Locking uses POSIX record locks (`F_SETLKW`) on `<root>/<id>/lock`, not flock(2): the init
//! process is forked from the `create` process, and a flock (like an OFD lock) belongs to the
//! open file description that fork shares, so an init blocked on exec.fifo would hold the lock
//! and `start` would wait forever. POSIX record locks are owned by the process and are not
//! inherited across fork (fcntl(2), "Record locks are not inherited by a child").

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;

/// The spec version reported in `state` output and by `--version`.
pub const STATE_OCI_VERSION: &str = "1.2.0";
/// The name of the fifo the init blocks on until `start` (runc and crun use the same name).
pub const EXEC_FIFO: &str = "exec.fifo";

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container does not exist: no state for {id:?} in {root}")]
    NotExist { id: String, root: PathBuf },
    #[error("container with id exists: {id}")]
    Exists { id: String },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt state file {path}: {source} (delete the directory to forget the container)")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A container's status, as runtime-spec runtime.md and runc print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runtime remembers about one container (state.json). Private format: only capsa
/// reads it; engines see [`OciState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Host pid of the container init.
    pub init_pid: i32,
    /// Field 22 of /proc/PID/stat at create time: tells our init from a recycled pid.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 with nanoseconds, UTC.
    pub created: String,
    /// Set by `pause`, cleared by `resume`.
    #[serde(default)]
    pub paused: bool,
    pub cgroup: Option<Cgroup>,
    /// The processed spec the container was created from (exec and hooks use it; the bundle
    /// may change after create).
    pub config: oci_spec::runtime::Spec,
}

/// runc's `state` JSON (runc state.go / list.go `containerState`; go-runc container.go).
#[derive(Debug, Clone, Serialize)]
pub struct OciState {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
    pub owner: String,
}

/// The process-level facts read from /proc/PID/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// Reads /proc/PID/stat; `None` if the process is gone.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// proc(5): `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so fields are
/// counted after the last `)`. state is field 3, starttime field 22.
fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

impl ContainerRecord {
    /// Whether the init recorded here is still alive (not a zombie, not a recycled pid).
    pub fn init_alive(&self) -> bool {
        self.init_pid > 0
            && proc_stat(self.init_pid).is_some_and(|s| {
                s.start_time == self.init_start_time && s.state != b'Z' && s.state != b'X'
            })
    }

    /// The live status: derived from the init process, the exec fifo and the pause flag.
    pub fn status(&self, state_dir: &Path) -> Status {
        if !self.init_alive() {
            Status::Stopped
        } else if state_dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else if self.paused {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The `state` JSON for this record; `pid` is 0 once stopped (as runc reports it).
    pub fn oci_state(&self, status: Status) -> OciState {
        let annotations = self
            .config
            .annotations()
            .as_ref()
            .filter(|a| !a.is_empty())
            .cloned();
        OciState {
            oci_version: STATE_OCI_VERSION.to_owned(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.init_pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            annotations,
            owner: String::new(),
        }
    }
}

/// The state root (`--root`), holding one directory per container.
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

/// A container's state directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct LockedDir {
    pub id: String,
    pub path: PathBuf,
    _lock: File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Readers (`state`, `ps`) share it.
    Shared,
    /// Every command that changes the container.
    Exclusive,
}

impl StateRoot {
    pub fn new(root: impl Into<PathBuf>) -> StateRoot {
        StateRoot { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Makes `<root>/<id>` for a new container and locks it. mkdir(2) is atomic, so two
    /// concurrent creates of one id cannot both succeed.
    pub fn create(&self, id: &str) -> Result<LockedDir, StateError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o711).recursive(true);
        builder
            .create(&self.root)
            .map_err(io_err("create state root", &self.root))?;
        let path = self.dir(id);
        builder.recursive(false).mode(0o700);
        match builder.create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists { id: id.to_owned() });
            }
            Err(e) => return Err(io_err("create state directory", &path)(e)),
        }
        match lock_dir(&path, LockMode::Exclusive) {
            Ok(lock) => Ok(LockedDir {
                id: id.to_owned(),
                path,
                _lock: lock,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }

    /// Opens and locks an existing container's directory.
    pub fn open(&self, id: &str, mode: LockMode) -> Result<LockedDir, StateError> {
        let path = self.dir(id);
        let not_exist = || StateError::NotExist {
            id: id.to_owned(),
            root: self.root.clone(),
        };
        let lock = match lock_dir(&path, mode) {
            Ok(lock) => lock,
            Err(StateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_exist());
            }
            Err(e) => return Err(e),
        };
        // A concurrent delete may have removed the directory while we waited for the lock,
        // and a create that failed leaves no state.json: both mean "does not exist".
        if !path.join(STATE_FILE).exists() {
            return Err(not_exist());
        }
        Ok(LockedDir {
            id: id.to_owned(),
            path,
            _lock: lock,
        })
    }

    /// The ids of every container under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read state root", &self.root)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Reads a record without locking (`list`): state.json is replaced atomically, so a
    /// reader sees either the old or the new file.
    pub fn read_unlocked(&self, id: &str) -> Result<ContainerRecord, StateError> {
        read_record(&self.dir(id).join(STATE_FILE))
    }
}

impl LockedDir {
    pub fn load(&self) -> Result<ContainerRecord, StateError> {
        read_record(&self.path.join(STATE_FILE))
    }

    /// Writes state.json atomically: a temporary file in the same directory, then rename(2),
    /// which replaces the target in one step.
    pub fn save(&self, record: &ContainerRecord) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StateError::Corrupt {
            path: self.path.join(STATE_FILE),
            source,
        })?;
        write_atomic(&self.path.join(STATE_FILE), &bytes)
    }

    /// Removes the directory (and, with it, the lock file; the lock itself is released when
    /// `self` drops).
    pub fn remove(self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove state directory", &self.path)(e)),
        }
    }
}

/// Through a `serde_json::Value`, as `spec::load_bundle` reads config.json: the spec types'
/// deserializers then exist once in the binary (for the Value deserializer) instead of twice
/// (also for the byte-slice one). They are most of capsa-runc's code, and `run` used both
/// (docs/performance.md: peak RSS).
fn read_record(path: &Path) -> Result<ContainerRecord, StateError> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    let corrupt = |source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(corrupt)?;
    serde_json::from_value(value).map_err(corrupt)
}

/// Writes `bytes` to `path` through a temporary sibling and rename(2) (atomic within one
/// filesystem). Used for state.json and for `--pid-file`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("write", path)(e)
    })
}

fn lock_dir(dir: &Path, mode: LockMode) -> Result<File, StateError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    posix_lock_wait(&file, mode).map_err(io_err("lock (fcntl F_SETLKW)", &path))?;
    Ok(file)
}

/// Takes a POSIX record lock on the whole file, waiting for it (fcntl(2) F_SETLKW).
fn posix_lock_wait(file: &File, mode: LockMode) -> std::io::Result<()> {
    let kind = match mode {
        LockMode::Shared => libc::F_RDLCK,
        LockMode::Exclusive => libc::F_WRLCK,
    };
    // SAFETY: `flock` is a plain C struct for which all-zeroes is valid (l_start = l_len = 0
    // means "the whole file").
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: the fd is open for as long as `file` is borrowed, and `fl` is a valid
        // `struct flock` that the kernel only reads for F_SETLKW.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &mut fl) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The user name owning `path` (from /etc/passwd), or `#uid` when it has no entry.
pub fn owner_name(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(path).map(|m| m.uid()) else {
        return String::new();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid.to_string()).then(|| name.to_owned())
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

/// Formats a time as Go's RFC3339 in UTC, whole seconds (logrus' log timestamps).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    rfc3339_nano(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Formats a time as Go's RFC3339Nano in UTC (`2006-01-02T15:04:05.999999999Z`): trailing
/// zeros of the fraction are trimmed, and a whole second has no fraction. runc prints
/// `created` and log times this way.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): the standard
/// era-based conversion (400-year eras of 146097 days). Also used by capsa-engine's Docker-style
/// timestamps.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_matches_go() {
        let t = |s, n| SystemTime::UNIX_EPOCH + Duration::new(s, n);
        assert_eq!(rfc3339_nano(t(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(t(1_700_000_000, 5_000_000)),
            "2023-11-14T22:13:20.005Z"
        );
        assert_eq!(
            rfc3339_nano(t(951_782_400, 123_456_789)),
            "2000-02-29T00:00:00.123456789Z"
        );
        assert_eq!(
            rfc3339_nano(t(4_102_444_799, 100)),
            "2099-12-31T23:59:59.0000001Z"
        );
    }

    #[test]
    fn proc_stat_with_odd_comm() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 100 18446744073709551615";
        assert_eq!(
            parse_proc_stat(line),
            Some(ProcStat {
                state: b'S',
                start_time: 987_654
            })
        );
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let st = proc_stat(me).expect("own stat");
        assert_ne!(st.state, b'Z');
    }

    fn record() -> ContainerRecord {
        ContainerRecord {
            id: "c1".into(),
            init_pid: 0,
            init_start_time: 0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2023-11-14T22:13:20.005Z".into(),
            paused: false,
            cgroup: None,
            config: serde_json::from_str(r#"{"ociVersion":"1.0.2"}"#).expect("minimal spec"),
        }
    }

    #[test]
    fn state_json_shape() {
        let r = record();
        let v = serde_json::to_value(r.oci_state(r.status(Path::new("/nonexistent"))))
            .expect("serializes");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner",
        ] {
            assert!(keys.contains(&k), "{k} missing in {v}");
        }
        assert!(
            !keys.contains(&"annotations"),
            "empty annotations are omitted: {v}"
        );
        assert_eq!(v["status"], "stopped");
        assert_eq!(v["pid"], 0);
        assert_eq!(v["owner"], "");
    }

    #[test]
    fn store_roundtrip_and_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = StateRoot::new(tmp.path().join("root"));
        assert!(matches!(
            root.open("c1", LockMode::Shared),
            Err(StateError::NotExist { .. })
        ));
        let dir = root.create("c1").expect("create");
        assert!(matches!(root.create("c1"), Err(StateError::Exists { .. })));
        dir.save(&record()).expect("save");
        drop(dir);
        assert_eq!(root.ids().expect("ids"), vec!["c1".to_string()]);
        let dir = root.open("c1", LockMode::Exclusive).expect("open");
        assert_eq!(dir.load().expect("load").id, "c1");
        dir.remove().expect("remove");
        assert!(root.ids().expect("ids").is_empty());
        let e = root.open("c1", LockMode::Shared).expect_err("gone");
        assert!(e.to_string().contains("container does not exist"));
    }
}
