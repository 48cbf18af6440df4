//! Shared harness for the end-to-end tests (root): bundles, runtimes, cleanup.
//!
//! Owns: building throw-away OCI bundles (a busybox-static rootfs plus a config.json),
//! running a runc-compatible runtime (runc 1.1.5 as the baseline, `capsa-runc` as the
//! system under test) with a private `--root`, reading back what the kernel reports
//! (/proc, /sys/fs/cgroup), and cleaning up everything a test made.
//! Must not touch: anything the test did not create. Containers are deleted by the ids
//! this harness registered, processes are killed only by the PIDs it recorded (checked
//! against their start time so a recycled PID is never hit), cgroup directories are
//! removed only when their name holds one of our unique ids.
//!
//! Every test gets its own temp dirs and unique ids, so tests run in parallel.
//!
//! `CAPSA_E2E_CAPSA_BIN=/usr/sbin/runc` makes `Runtime::Capsa` run another binary under the
//! `capsa-runc` name. It exists to validate the tests themselves against runc (a test that
//! fails there is a broken test); it is never set in CI.
#![allow(dead_code)]

pub mod containerd;
pub mod oci_image;
pub mod proc;

use rustix::fd::OwnedFd;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use serde_json::{Value, json};
use std::fs;
use std::io::IoSliceMut;
use std::io::Write;
use std::mem::MaybeUninit;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any single runtime command may take before the harness kills it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Busybox applets linked into every rootfs.
const APPLETS: &[&str] = &[
    "sh",
    "true",
    "false",
    "id",
    "cat",
    "grep",
    "sleep",
    "ls",
    "echo",
    "ps",
    "hostname",
    "mount",
    "httpd",
    "wget",
    "readlink",
    "stat",
    "printf",
    "test",
    "mkfifo",
    "sha256sum",
    "head",
    "wc",
    "tr",
    "sed",
    "kill",
    "touch",
    "rm",
    "mkdir",
    "pwd",
    "env",
    "uname",
    "ln",
    "dd",
    "awk",
];

/// The 14 capabilities Docker (moby oci/caps/defaults.go) and ctr give a container.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability name the kernel knows today (0..=40), in number order.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

// ---------------------------------------------------------------------------------------
// Skips, ids, temp dirs
// ---------------------------------------------------------------------------------------

/// True when the test runs as root (every end-to-end test needs it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Returns early from a test, with a printed reason, when it cannot run here.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            eprintln!("SKIP: this end-to-end test needs root");
            return;
        }
    };
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A container id unique across parallel tests and test processes: tag, pid, counter, time.
pub fn unique_id(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("ce2e-{tag}-{}-{n}-{t:x}", std::process::id())
}

/// A fresh temp dir under /tmp that is removed (recursively) on drop.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("capsa-e2e-{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir in /tmp: {e}"))
}

// ---------------------------------------------------------------------------------------
// Running commands with a deadline
// ---------------------------------------------------------------------------------------

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Out {
    /// The exit code; `None` when killed by a signal or by the harness timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Panics with the command's output unless it exited 0.
    #[track_caller]
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(self.ok(), "{what} failed: {self}");
        self
    }
    /// stdout and stderr together, lower-cased, for key-word assertions.
    pub fn text_lower(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr).to_lowercase()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit={:?} timed_out={}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.timed_out, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with stdout/stderr going to files in `scratch` (never pipes: a detached
/// container inherits them and would keep a pipe open forever), optional stdin bytes, and a
/// deadline after which the child (only that PID) is killed.
pub fn run_cmd(mut cmd: Command, scratch: &Path, stdin: Option<&[u8]>, timeout: Duration) -> Out {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = scratch.join(format!("cmd-{n}.out"));
    let err_path = scratch.join(format!("cmd-{n}.err"));
    let out_f = fs::File::create(&out_path).unwrap_or_else(|e| panic!("create {out_path:?}: {e}"));
    let err_f = fs::File::create(&err_path).unwrap_or_else(|e| panic!("create {err_path:?}: {e}"));
    cmd.stdout(out_f).stderr(err_f);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(data);
    }
    let deadline = Instant::now() + timeout;
    let (code, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(st)) => break (st.code(), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("wait for {cmd:?}: {e}"),
        }
    };
    Out {
        code,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        timed_out,
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------------------

/// The five capability sets of `process.capabilities`.
#[derive(Debug, Clone, Default)]
pub struct Caps<'a> {
    pub bounding: &'a [&'a str],
    pub effective: &'a [&'a str],
    pub permitted: &'a [&'a str],
    pub inheritable: &'a [&'a str],
    pub ambient: &'a [&'a str],
}

impl<'a> Caps<'a> {
    /// bounding = effective = permitted = `caps`; inheritable and ambient empty.
    pub fn bep(caps: &'a [&'a str]) -> Self {
        Caps {
            bounding: caps,
            effective: caps,
            permitted: caps,
            inheritable: &[],
            ambient: &[],
        }
    }
}

/// An OCI bundle in its own temp dir: `rootfs/` (busybox-static) and `config.json`.
pub struct Bundle {
    dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// A bundle whose config matches `runc spec` (1.1.5) except: no terminal, a writable
    /// root, Docker's 14 default capabilities in B/E/P with I/A empty, and `true` as args.
    pub fn new() -> Bundle {
        let dir = temp_dir("bundle");
        build_rootfs(&dir.path().join("rootfs"));
        let b = Bundle {
            dir,
            config: default_config(),
        };
        b.save();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
    pub fn path_str(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// Writes config.json (tests call this after changing `config`; runners call it too).
    pub fn save(&self) {
        let text = serde_json::to_string_pretty(&self.config).unwrap_or_default();
        let p = self.dir.path().join("config.json");
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {p:?}: {e}"));
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }
    /// `sh -c script`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }
    pub fn caps(&mut self, c: &Caps) -> &mut Self {
        self.config["process"]["capabilities"] = json!({
            "bounding": c.bounding, "effective": c.effective, "permitted": c.permitted,
            "inheritable": c.inheritable, "ambient": c.ambient,
        });
        self
    }
    pub fn user(&mut self, uid: u32, gid: u32, additional_gids: &[u32]) -> &mut Self {
        let mut u = json!({"uid": uid, "gid": gid});
        if !additional_gids.is_empty() {
            u["additionalGids"] = json!(additional_gids);
        }
        self.config["process"]["user"] = u;
        self
    }
    pub fn hostname(&mut self, name: &str) -> &mut Self {
        self.config["hostname"] = json!(name);
        self
    }
    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.config["process"]["terminal"] = json!(on);
        self
    }
    pub fn no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.config["process"]["noNewPrivileges"] = json!(on);
        self
    }
    pub fn readonly_root(&mut self, on: bool) -> &mut Self {
        self.config["root"]["readonly"] = json!(on);
        self
    }
    /// Replaces the namespace list: `["pid", "mount", ...]`.
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let v: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        self.config["linux"]["namespaces"] = Value::Array(v);
        self
    }
    pub fn add_namespace(&mut self, ns: Value) -> &mut Self {
        if let Some(a) = self.config["linux"]["namespaces"].as_array_mut() {
            a.push(ns);
        }
        self
    }
    pub fn add_mount(&mut self, m: Value) -> &mut Self {
        if let Some(a) = self.config["mounts"].as_array_mut() {
            a.push(m);
        }
        self
    }
    /// Removes the mount whose destination is `dest`.
    pub fn remove_mount(&mut self, dest: &str) -> &mut Self {
        if let Some(a) = self.config["mounts"].as_array_mut() {
            a.retain(|m| m["destination"] != dest);
        }
        self
    }
    /// `[(type, soft, hard)]`, e.g. `("RLIMIT_NOFILE", 1024, 2048)`.
    pub fn rlimits(&mut self, limits: &[(&str, u64, u64)]) -> &mut Self {
        let v: Vec<Value> = limits
            .iter()
            .map(|(t, s, h)| json!({"type": t, "soft": s, "hard": h}))
            .collect();
        self.config["process"]["rlimits"] = Value::Array(v);
        self
    }
    pub fn env(&mut self, vars: &[&str]) -> &mut Self {
        self.config["process"]["env"] = json!(vars);
        self
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle::new()
    }
}

/// The config of `runc spec` (runc 1.1.5), adjusted as `Bundle::new` documents.
pub fn default_config() -> Value {
    let mut c = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["true"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    c["process"]["capabilities"] = json!({
        "bounding": DOCKER_DEFAULT_CAPS, "effective": DOCKER_DEFAULT_CAPS,
        "permitted": DOCKER_DEFAULT_CAPS, "inheritable": [], "ambient": [],
    });
    c
}

/// A busybox-static rootfs: /bin/busybox (a copy, never a hard link: a container writing
/// to it must not reach the host's), applet symlinks, /etc/passwd and /etc/group with
/// root, nobody and a uid-1000 user, and the usual empty mount points.
pub fn build_rootfs(rootfs: &Path) {
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "www",
        "home/user",
    ] {
        let p = rootfs.join(d);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {p:?}: {e}"));
    }
    let bb = rootfs.join("bin/busybox");
    fs::copy("/bin/busybox", &bb)
        .unwrap_or_else(|e| panic!("copy /bin/busybox: {e} (install busybox-static)"));
    for a in APPLETS {
        let _ = symlink("busybox", rootfs.join("bin").join(a));
    }
    let _ = fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777));
    let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                  user:x:1000:1000:user:/home/user:/bin/sh\n\
                  nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let group = "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n";
    let _ = fs::write(rootfs.join("etc/passwd"), passwd);
    let _ = fs::write(rootfs.join("etc/group"), group);
    let _ = fs::write(rootfs.join("www/index.html"), "hello\n");
}

// ---------------------------------------------------------------------------------------
// Runtimes
// ---------------------------------------------------------------------------------------

/// Which runc-compatible runtime a test drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// runc 1.1.5 from Debian: the behaviour we must match.
    Runc,
    /// `capsa-runc`: a link named capsa-runc to the capsa binary under test.
    Capsa,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Capsa => "capsa-runc",
        }
    }
}

/// The runc binary: /usr/sbin/runc, or the first `runc` on PATH.
pub fn runc_path() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/sbin/runc");
    if fixed.exists() {
        return Some(fixed);
    }
    find_in_path("runc")
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The capsa binary built by cargo for this test run (or the validation override).
pub fn capsa_bin() -> PathBuf {
    match std::env::var_os("CAPSA_E2E_CAPSA_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_capsa")),
    }
}

/// A process a test started (directly or as a container init), with its start time so
/// that cleanup never signals a recycled PID.
#[derive(Debug, Clone, Copy)]
struct OwnedPid {
    pid: i32,
    start_time: u64,
}

/// One runtime with a private state root, its scratch dir and everything to clean up.
pub struct Runner {
    pub kind: Runtime,
    /// The executable invoked (a symlink or copy named `capsa-runc`, or runc).
    pub bin: PathBuf,
    /// The `--root` state directory.
    pub root: PathBuf,
    scratch: tempfile::TempDir,
    ids: Mutex<Vec<String>>,
    pids: Mutex<Vec<OwnedPid>>,
}

impl Runner {
    /// A runner for `kind`, or `None` (with a printed reason) when it is not installed.
    pub fn new(kind: Runtime) -> Option<Runner> {
        Runner::build(kind, false)
    }

    /// Like `new`, but the binary is a private copy: for attacks that try to overwrite it.
    pub fn with_binary_copy(kind: Runtime) -> Option<Runner> {
        Runner::build(kind, true)
    }

    fn build(kind: Runtime, copy: bool) -> Option<Runner> {
        let scratch = temp_dir(kind.name());
        let target = match kind {
            Runtime::Runc => match runc_path() {
                Some(p) => p,
                None => {
                    eprintln!("SKIP: runc is not installed");
                    return None;
                }
            },
            Runtime::Capsa => capsa_bin(),
        };
        let bin = match kind {
            Runtime::Runc if !copy => target.clone(),
            Runtime::Runc => scratch.path().join("bin/runc"),
            Runtime::Capsa => scratch.path().join("bin/capsa-runc"),
        };
        if bin.parent() == Some(&scratch.path().join("bin")) {
            let _ = fs::create_dir_all(scratch.path().join("bin"));
            let r = if copy {
                fs::copy(&target, &bin).map(|_| ())
            } else {
                symlink(&target, &bin)
            };
            r.unwrap_or_else(|e| panic!("cannot install {bin:?} -> {target:?}: {e}"));
        }
        let root = scratch.path().join("state/root");
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("mkdir {root:?}: {e}"));
        Some(Runner {
            kind,
            bin,
            root,
            scratch,
            ids: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
        })
    }

    /// The runner's private scratch dir (removed on drop).
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Remembers a container id so that drop runs `delete --force` on it.
    pub fn track(&self, id: &str) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.push(id.to_string());
        }
    }

    /// Remembers a PID this test started, so that drop can SIGKILL it if still alive.
    pub fn own_pid(&self, pid: i32) {
        if let Some(start_time) = proc::start_time(pid)
            && let Ok(mut pids) = self.pids.lock()
        {
            pids.push(OwnedPid { pid, start_time });
        }
    }

    /// A `Command` for the runtime with `--root` set, nothing else.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c
    }

    /// `<runtime> --root R args...`, stdin closed, with the default deadline.
    pub fn cmd(&self, args: &[&str]) -> Out {
        let mut c = self.command();
        c.args(args);
        run_cmd(c, self.scratch.path(), None, CMD_TIMEOUT)
    }

    /// Same as `cmd`, feeding `stdin`.
    pub fn cmd_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut c = self.command();
        c.args(args);
        run_cmd(c, self.scratch.path(), Some(stdin), CMD_TIMEOUT)
    }

    /// `run --bundle B id` in the foreground: the container's stdout/stderr are the result.
    pub fn run(&self, bundle: &Bundle, id: &str) -> Out {
        bundle.save();
        self.track(id);
        self.cmd(&["run", "--bundle", &bundle.path_str(), id])
    }

    /// `create --bundle B --pid-file P [extra] id`; returns the output and the PID from
    /// the pid file (0 when absent). The container's stdio go to `container_log(id)`.
    pub fn create(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> (Out, i32) {
        bundle.save();
        self.track(id);
        let pid_file = self.scratch.path().join(format!("{}.pid", file_safe(id)));
        let log = self.container_log(id);
        let mut c = self.command();
        c.arg("create").arg("--bundle").arg(bundle.path());
        c.arg("--pid-file").arg(&pid_file).args(extra).arg(id);
        let f = fs::File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        let f2 = f.try_clone().unwrap_or_else(|e| panic!("dup: {e}"));
        // The container inherits these: its output lands in the log, readable later.
        c.stdout(f).stderr(f2).stdin(Stdio::null());
        let out = run_cmd_keep_stdio(c, CMD_TIMEOUT);
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .unwrap_or(0);
        if pid > 0 {
            self.own_pid(pid);
        }
        (out, pid)
    }

    /// Where the stdout/stderr of a created container go.
    pub fn container_log(&self, id: &str) -> PathBuf {
        self.scratch.path().join(format!("{}.log", file_safe(id)))
    }
    pub fn read_container_log(&self, id: &str) -> String {
        fs::read_to_string(self.container_log(id)).unwrap_or_default()
    }

    /// create + start; panics unless both succeed. Returns the init PID.
    pub fn create_and_start(&self, bundle: &Bundle, id: &str) -> i32 {
        let (out, pid) = self.create(bundle, id, &[]);
        out.assert_ok(&format!("{} create {id}", self.kind.name()));
        self.cmd(&["start", id])
            .assert_ok(&format!("{} start {id}", self.kind.name()));
        pid
    }

    /// `state id` parsed as JSON; `Err(out)` when the runtime failed or printed no JSON.
    pub fn state(&self, id: &str) -> Result<Value, Out> {
        let out = self.cmd(&["state", id]);
        if !out.ok() {
            return Err(out);
        }
        serde_json::from_str(&out.stdout).map_err(|_| out)
    }

    /// The `status` field of `state id`, or "" when the runtime gives none.
    pub fn status(&self, id: &str) -> String {
        self.state(id)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits up to 10 s for `state id` to report `want`.
    pub fn wait_status(&self, id: &str, want: &str) -> bool {
        wait_until(Duration::from_secs(10), || self.status(id) == want)
    }

    pub fn exists_in_root(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }
}

/// An id made safe as one file name (ids under test may hold `/` or `..`).
fn file_safe(id: &str) -> String {
    id.replace(['/', '.'], "_")
}

/// `run_cmd` for a command whose stdio the caller already set (e.g. to a log file).
fn run_cmd_keep_stdio(mut cmd: Command, timeout: Duration) -> Out {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let (code, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(st)) => break (st.code(), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("wait for {cmd:?}: {e}"),
        }
    };
    Out {
        code,
        stdout: String::new(),
        stderr: String::new(),
        timed_out,
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let ids = self.ids.lock().map(|v| v.clone()).unwrap_or_default();
        for id in &ids {
            let mut c = self.command();
            c.args(["delete", "--force", id]);
            let _ = run_cmd(c, self.scratch.path(), None, Duration::from_secs(10));
        }
        let pids = self.pids.lock().map(|v| v.clone()).unwrap_or_default();
        for p in pids {
            if proc::start_time(p.pid) == Some(p.start_time) {
                // SAFETY: kill(2) has no memory effects; the PID is ours (start time checked).
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
        }
        for id in &ids {
            proc::remove_cgroups_named(id);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Leftovers: what a failed or deleted container must not leave behind
// ---------------------------------------------------------------------------------------

/// Everything the host still holds for container `id` of `bundle`: state dir, cgroup
/// dirs, mounts. Empty means clean.
pub fn leftovers(runner: &Runner, id: &str, bundle: &Path) -> Vec<String> {
    let mut found = Vec::new();
    // An id like `..` names no state dir of its own; callers check the root is empty.
    let plain = matches!(
        Path::new(id).components().collect::<Vec<_>>()[..],
        [std::path::Component::Normal(_)]
    );
    if plain && runner.exists_in_root(id) {
        found.push(format!("state dir {:?}", runner.root.join(id)));
    }
    for d in proc::cgroup_dirs_named(id) {
        found.push(format!("cgroup dir {d:?}"));
    }
    let b = bundle.to_string_lossy();
    for line in fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        if line.contains(b.as_ref()) {
            found.push(format!("mount {line}"));
        }
    }
    found
}

/// Declares one test body twice: against runc (the baseline that proves the test itself
/// is right on this host) and against capsa-runc, optionally ignored while pending.
#[macro_export]
macro_rules! e2e {
    ($body:ident, $runc:ident, $capsa:ident) => {
        #[test]
        fn $runc() {
            $body($crate::common::Runtime::Runc)
        }
        #[test]
        fn $capsa() {
            $body($crate::common::Runtime::Capsa)
        }
    };
    ($body:ident, $runc:ident, $capsa:ident, ignore_capsa = $why:literal) => {
        #[test]
        fn $runc() {
            $body($crate::common::Runtime::Runc)
        }
        #[test]
        #[ignore = $why]
        fn $capsa() {
            $body($crate::common::Runtime::Capsa)
        }
    };
}

/// The receiving end of `--console-socket` (runc docs/terminals.md): accepts one
/// connection on a non-blocking listener and receives exactly one fd by SCM_RIGHTS plus
/// the payload (the pty name).
pub fn receive_master(listener: &UnixListener) -> (OwnedFd, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("nobody connected to the console socket: {e}"),
        }
    };
    conn.set_nonblocking(false)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 4096];
    let n = recvmsg(
        &conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap_or_else(|e| panic!("recvmsg on the console socket: {e}"))
    .bytes;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = msg {
            fds.extend(it);
        }
    }
    assert_eq!(fds.len(), 1, "the console socket must carry exactly one fd");
    (
        fds.remove(0),
        String::from_utf8_lossy(&buf[..n]).into_owned(),
    )
}
