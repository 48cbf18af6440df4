//! engine: the container lifecycle over capsa-runtime's library API (no runtime binary is
//! exec'd): start (foreground or under a monitor), stop, kill, rm and wait.
//!
//! Who reaps whom: the process that calls `capsa_runtime::container::create` becomes the
//! parent of the container's init. For a foreground `run` that is the CLI itself; for `-d` and
//! `start` it is the monitor, a child forked and `setsid`'d by the CLI, which outlives it,
//! reaps the init, records the exit code and finish time, and tears down the runtime state.
//! Must not generate specs (that is `create`) or print anything (that is the binary).

use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::record::{LOG_FILE, Record, Status, Store};
use crate::status;
use crate::sys::{self, Forked};
use capsa_runtime::container as rt;
use capsa_runtime::state::StateRoot;
use rustix::fd::{AsFd, OwnedFd};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Engine {
    pub paths: Paths,
    pub store: Store,
}

fn rt_err(e: rt::ContainerError) -> Error {
    Error::Runtime(e.to_string())
}

impl Engine {
    pub fn new(paths: Paths) -> Engine {
        Engine {
            store: Store::new(paths.clone()),
            paths,
        }
    }

    pub(crate) fn runtime(&self) -> StateRoot {
        StateRoot::new(self.paths.runtime_root())
    }

    pub(crate) fn image_store(&self) -> Result<capsa_image::ImageStore> {
        capsa_image::ImageStore::open(self.paths.root.clone())
            .map_err(|e| Error::Image(format!("cannot open the image store: {e}")))
    }

    /// Runtime create + start of a created or exited container; records it as running.
    /// The caller becomes the init's parent.
    fn launch(&self, r: &Record, monitor: bool) -> Result<(i32, Option<OwnedFd>)> {
        self.launch_gated(r, monitor, &mut |_| Ok(()))
    }

    /// [`Engine::launch`] with a gate: `gate` gets the init's host pid after the runtime's
    /// create, while the init is blocked on exec.fifo before its exec, and before start.
    fn launch_gated(
        &self,
        r: &Record,
        monitor: bool,
        gate: &mut dyn FnMut(i32) -> Result<()>,
    ) -> Result<(i32, Option<OwnedFd>)> {
        let dir = self.store.dir(&r.id);
        self.remount_rootfs(&r.id)?;
        let root = self.runtime();
        // A leftover runtime state (a crashed monitor) would make create fail: clear it.
        let _ = rt::delete(&root, &r.id, true);
        let bundle = capsa_runtime::spec::load_bundle(&dir, crate::caps::available())
            .map_err(|e| Error::Runtime(e.to_string()))?;
        // With a terminal the runtime sends the pty master to our console socket; it then treats
        // the create as detached (we, not it, relay the terminal).
        let console = if r.config.tty {
            Some(crate::tty::listen()?)
        } else {
            None
        };
        let opts = rt::CreateOptions {
            console_socket: console.as_ref().map(|c| c.path.clone()),
            ..rt::CreateOptions::default()
        };
        let pid = rt::create(&root, &r.id, &bundle, &opts).map_err(rt_err)?;
        let master = match console.as_ref().map(|c| c.receive_master()).transpose() {
            Ok(m) => m,
            Err(e) => {
                let _ = rt::delete(&root, &r.id, true);
                return Err(e);
            }
        };
        if let Err(e) = gate(pid) {
            let _ = rt::delete(&root, &r.id, true);
            return Err(e);
        }
        let lo = match r.config.network {
            crate::options::NetworkMode::None => crate::netns::loopback_up(pid),
            crate::options::NetworkMode::Host => Ok(()),
        };
        if let Err(e) = lo
            .map_err(|e| e.to_string())
            .and_then(|()| rt::start(&root, &r.id).map_err(|e| e.to_string()))
        {
            let _ = rt::delete(&root, &r.id, true);
            return Err(Error::Runtime(e));
        }
        let start = status::proc_start(pid).unwrap_or(0);
        let me = std::process::id() as i32;
        let my_start = status::proc_start(me).unwrap_or(0);
        self.store.update(&r.id, |rec| {
            rec.state.status = Status::Running;
            rec.state.pid = pid;
            rec.state.pid_start = start;
            rec.state.started_at = crate::time::now_nanos();
            rec.state.finished_at = 0;
            rec.state.exit_code = 0;
            rec.state.error.clear();
            (rec.state.monitor_pid, rec.state.monitor_start) =
                if monitor { (me, my_start) } else { (0, 0) };
        })?;
        Ok((pid, master))
    }

    /// The snapshot is mounted at create; after a reboot (or an unmount) mount it again.
    fn remount_rootfs(&self, id: &str) -> Result<()> {
        let snap = capsa_image::Snapshot::load(id, &self.store.dir(id))
            .map_err(|e| Error::Image(e.to_string()))?;
        if !snap.is_mounted() {
            snap.mount().map_err(|e| Error::Image(e.to_string()))?;
        }
        Ok(())
    }

    /// Waits for the init (relaying signals), then records the exit and cleans up.
    fn supervise(&self, id: &str, pid: i32) -> i32 {
        let code = rt::foreground::wait(pid).unwrap_or(255);
        self.finish(id, code);
        code
    }

    /// Records an exit and releases the runtime state (cgroup, state dir); with `--rm`, removes
    /// the whole container.
    pub(crate) fn finish(&self, id: &str, code: i32) {
        let _ = rt::delete(&self.runtime(), id, true);
        let updated = self.store.update(id, |rec| {
            rec.state.status = Status::Exited;
            rec.state.exit_code = code;
            rec.state.finished_at = crate::time::now_nanos();
            rec.state.pid = 0;
            rec.state.monitor_pid = 0;
        });
        if updated.is_ok_and(|r| r.config.auto_remove) {
            self.notify_waiters(id, code);
            let _ = self.remove_everything(id);
        }
    }

    /// Foreground `run`/`start -a`: the container shares our stdio; returns its exit code.
    pub fn run_foreground(&self, id: &str) -> Result<i32> {
        let r = self.store.load(id)?;
        if !r.config.interactive {
            redirect_stdin_to_null()?;
        }
        let (pid, master) = match self.launch(&r, false) {
            Ok(l) => l,
            Err(e) => {
                self.record_failure(id, &e);
                return Err(e);
            }
        };
        rt::foreground::block_signals().map_err(|e| Error::io("sigprocmask", "/", e))?;
        let terminal = master
            .map(|m| crate::tty::relay(m, r.config.interactive))
            .transpose()?;
        let code = self.supervise(id, pid);
        drop(terminal);
        Ok(code)
    }

    fn record_failure(&self, id: &str, e: &Error) {
        let _ = self.store.update(id, |rec| {
            rec.state.status = Status::Exited;
            rec.state.exit_code = e.exit_code();
            rec.state.error = e.to_string();
        });
        let auto_remove = self.store.load(id).is_ok_and(|r| r.config.auto_remove);
        if auto_remove {
            let _ = self.remove_everything(id);
        }
    }

    /// `start` / `run -d`: forks the monitor, which launches and supervises the container; we
    /// return once it reports the container running (or why it is not).
    pub fn start_detached(&self, key: &str) -> Result<String> {
        let r = self.store.find(key)?;
        if status::observe(&r) == Status::Running {
            return Ok(r.id);
        }
        let (read_end, write_end) =
            rustix::pipe::pipe().map_err(|e| Error::io("pipe", "/", e.into()))?;
        match sys::fork().map_err(|e| Error::io("fork", "/", e))? {
            Forked::Child => {
                drop(read_end);
                let code = self.monitor_main(&r.id, write_end);
                std::process::exit(code);
            }
            Forked::Parent => {
                drop(write_end);
                let mut msg = String::new();
                let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
                match msg.strip_prefix("ok") {
                    Some(_) => Ok(r.id),
                    None if msg.is_empty() => Err(Error::Runtime(
                        "the monitor exited before the container started".into(),
                    )),
                    None => Err(Error::Runtime(msg)),
                }
            }
        }
    }

    /// The monitor: its own session, stdio on the log file, then launch and supervise.
    fn monitor_main(&self, id: &str, report: OwnedFd) -> i32 {
        let mut report = std::fs::File::from(report);
        let launched = self
            .monitor_stdio(id)
            .and_then(|()| self.launch(&self.store.load(id)?, true));
        match launched {
            Ok((pid, master)) => {
                let _ = rt::foreground::block_signals();
                // -dt: the pty's output goes to our stdout, which is the log file.
                let _terminal = master.map(|m| crate::tty::relay(m, false));
                let _ = report.write_all(b"ok");
                drop(report);
                self.supervise(id, pid)
            }
            Err(e) => {
                self.record_failure(id, &e);
                let _ = report.write_all(e.to_string().as_bytes());
                125
            }
        }
    }

    /// setsid (no controlling terminal: a closing shell must not SIGHUP the container), stdin
    /// from /dev/null, stdout and stderr appended to the container's log file.
    fn monitor_stdio(&self, id: &str) -> Result<()> {
        rustix::process::setsid().map_err(|e| Error::io("setsid", "/", e.into()))?;
        redirect_stdin_to_null()?;
        let path = self.store.dir(id).join(LOG_FILE);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        for fd in [1, 2] {
            sys::dup_onto(&log.as_fd(), fd).map_err(|e| Error::io("dup2", &path, e))?;
        }
        Ok(())
    }

    /// `kill`: a signal to the container's init (Docker's default is SIGKILL).
    pub fn kill(&self, key: &str, signal: i32) -> Result<String> {
        let r = self.store.find(key)?;
        if status::observe(&r) != Status::Running {
            return Err(Error::NotRunning(r.id));
        }
        rt::kill(&self.runtime(), &r.id, signal, false).map_err(rt_err)?;
        Ok(r.id)
    }

    /// `stop`: SIGTERM, then SIGKILL to the whole cgroup after `timeout`; waits until the exit
    /// is recorded (by the monitor, or here when the monitor is gone).
    pub fn stop(&self, key: &str, timeout: Duration) -> Result<String> {
        let r = self.store.find(key)?;
        if status::observe(&r) != Status::Running {
            return Ok(r.id);
        }
        let root = self.runtime();
        let _ = rt::kill(&root, &r.id, libc::SIGTERM, false);
        let mut sent = libc::SIGTERM;
        if !wait_until(timeout, || {
            !status::same_process(r.state.pid, r.state.pid_start)
        }) {
            let _ = rt::kill(&root, &r.id, libc::SIGKILL, true);
            sent = libc::SIGKILL;
            wait_until(Duration::from_secs(10), || {
                !status::same_process(r.state.pid, r.state.pid_start)
            });
        }
        self.await_recorded_exit(&r, 128 + sent);
        Ok(r.id)
    }

    /// Gives the monitor a moment to write the exit; records it itself if the monitor is dead.
    fn await_recorded_exit(&self, r: &Record, fallback_code: i32) {
        let recorded = || {
            self.store
                .load(&r.id)
                .map_or(true, |x| x.state.status != Status::Running)
        };
        if status::monitor_alive(r) && wait_until(Duration::from_secs(5), recorded) {
            return;
        }
        if !recorded() {
            self.finish(&r.id, fallback_code);
        }
    }

    /// `rm`: refuses a running container unless `force`; then removes runtime state, the
    /// snapshot (unmount, dirs, image lease) and the record.
    pub fn remove(&self, key: &str, force: bool) -> Result<String> {
        let r = self.store.find(key)?;
        if status::observe(&r) == Status::Running {
            if !force {
                return Err(Error::RemoveRunning {
                    name: r.name.clone(),
                    state: "running".into(),
                });
            }
            let _ = rt::kill(&self.runtime(), &r.id, libc::SIGKILL, true);
            wait_until(Duration::from_secs(10), || {
                !status::same_process(r.state.pid, r.state.pid_start)
            });
            let recorded = || {
                self.store
                    .load(&r.id)
                    .map_or(true, |x| x.state.status != Status::Running)
            };
            if status::monitor_alive(&r) {
                wait_until(Duration::from_secs(5), recorded);
            }
        }
        self.remove_everything(&r.id)?;
        Ok(r.id)
    }

    fn remove_everything(&self, id: &str) -> Result<()> {
        let _ = rt::delete(&self.runtime(), id, true);
        let dir = self.store.dir(id);
        // Detach the overlay first: a plain umount(2) waits for the overlay superblock's final
        // sync and teardown (~400 ms here); MNT_DETACH takes it off the tree at once and the
        // kernel finishes in the background. Nothing uses the rootfs any more: the init and
        // every process of the container are gone, and so is their mount namespace.
        let _ = rustix::mount::unmount(dir.join("rootfs"), rustix::mount::UnmountFlags::DETACH);
        let images = self.image_store()?;
        capsa_image::Snapshot::remove(&images, id, &dir)
            .map_err(|e| Error::Image(format!("cannot remove the rootfs of {id}: {e}")))?;
        self.store.remove_dir(id)?;
        // A `--userns=auto` range is free again once the container is gone.
        crate::userns::release(self.store.paths.root(), id)
    }

    /// `wait`: blocks until the container is not running; returns its exit code. For a `--rm`
    /// container, whose record disappears with it, the waiter registers a result file that the
    /// monitor fills in before it removes the container (as Docker's daemon notifies waiters
    /// before the removal).
    pub fn wait(&self, key: &str) -> Result<i32> {
        let r = self.store.find(key)?;
        let result = if r.config.auto_remove {
            self.register_waiter(&r.id)?
        } else {
            None
        };
        let outcome = self.wait_loop(&r, result.as_deref());
        if let Some(path) = &result {
            let _ = std::fs::remove_file(path);
        }
        outcome
    }

    fn wait_loop(&self, r: &Record, result: Option<&std::path::Path>) -> Result<i32> {
        let from_result = || {
            let text = std::fs::read_to_string(result?).ok()?;
            text.trim().parse::<i32>().ok()
        };
        loop {
            if let Some(code) = from_result() {
                return Ok(code);
            }
            let now = match self.store.load(&r.id) {
                Ok(now) => now,
                // Removed: the monitor wrote our result file first, unless it had none.
                Err(e) => return from_result().ok_or(e),
            };
            if status::observe(&now) != Status::Running {
                return self.recorded_exit(&r.id, from_result);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The container's process is gone: its monitor reaps it and records the exit code. Waits
    /// for that record for as long as the monitor lives (a fixed grace period loses the code on a
    /// loaded machine); a dead monitor can no longer record, so the state is finished here.
    fn recorded_exit(&self, id: &str, from_result: impl Fn() -> Option<i32>) -> Result<i32> {
        loop {
            if let Some(code) = from_result() {
                return Ok(code);
            }
            let now = match self.store.load(id) {
                Ok(now) => now,
                // Removed: the monitor wrote our result file first, unless it had none.
                Err(e) => return from_result().ok_or(e),
            };
            if now.state.status != Status::Running {
                return Ok(now.state.exit_code);
            }
            if !status::monitor_alive(&now) {
                self.finish(id, now.state.exit_code);
                return Ok(from_result().unwrap_or(now.state.exit_code));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates an empty 0600 result file and records its path in `<dir>/waiters/`, under the
    /// store lock so that `finish` either sees the registration or has already recorded the exit.
    fn register_waiter(&self, id: &str) -> Result<Option<PathBuf>> {
        let _lock = self.store.lock()?;
        let r = self.store.load(id)?;
        if r.state.status != Status::Running {
            return Ok(None);
        }
        let token = crate::names::new_id()?;
        let path = std::env::temp_dir().join(format!("capsa-wait-{}", &token[..16]));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        let waiters = self.store.dir(id).join(WAITERS);
        std::fs::create_dir_all(&waiters)
            .map_err(|e| Error::io("create directory", &waiters, e))?;
        let entry = waiters.join(&token[..16]);
        std::fs::write(&entry, path.as_os_str().as_encoded_bytes())
            .map_err(|e| Error::io("write", &entry, e))?;
        Ok(Some(path))
    }

    /// Hands the exit code to every registered waiter (before a `--rm` removal).
    fn notify_waiters(&self, id: &str, code: i32) {
        let Ok(entries) = std::fs::read_dir(self.store.dir(id).join(WAITERS)) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            if let Ok(target) = std::fs::read_to_string(e.path()) {
                let target = PathBuf::from(target);
                // Only our own result files: never follow a path somewhere else.
                let ours = target
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("capsa-wait-"));
                if ours {
                    let _ = std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&target)
                        .and_then(|mut f| f.write_all(code.to_string().as_bytes()));
                }
            }
        }
    }
}

/// `<container dir>/waiters/`: one file per `wait` of a `--rm` container, holding the path of
/// its result file.
const WAITERS: &str = "waiters";

mod gated;

fn redirect_stdin_to_null() -> Result<()> {
    let null = std::fs::File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
    sys::dup_onto(&null.as_fd(), 0).map_err(|e| Error::io("dup2", "/dev/null", e))
}

/// Polls `done` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
