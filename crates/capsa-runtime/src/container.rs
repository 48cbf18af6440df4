//! container: the lifecycle operations of runtime-spec runtime.md, runc-compatible.
//!
//! Owns: create/start/run/state/kill/delete/list/ps/pause/resume/update/exec as operations on
//! the state store, the order of the runtime-namespace hooks, rollback of a failed create,
//! waiting for a foreground container and forwarding signals to it.
//! Must not touch: what happens inside the container processes (`init`), cgroup files
//! (`cgroups`) or filter building (`seccomp`); it calls them through [`deps`].
//!
//! Hook timing (runtime-spec config.md). `prestart` and `createRuntime` run here, in the
//! runtime namespace, while the init waits after making its namespaces and mounts and before
//! its pivot_root (`InitRequest::runtime_hooks`); `createContainer` and `startContainer` run
//! inside the init (`init`); `poststart` after `start` released the init, `poststop` after
//! `delete` removed what the container held.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hook, LinuxResources, Process, Spec};

use crate::hooks::{self, HookError};
use crate::spec::{BundleSpec, SpecError};
use crate::state::{
    ContainerRecord, EXEC_FIFO, LockMode, LockedDir, OciState, StateError, StateRoot, Status,
};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{kind} hook failed: {source}")]
    Hook {
        kind: &'static str,
        source: HookError,
    },
    #[error("container not running: {id} is {status}")]
    NotRunning { id: String, status: Status },
    #[error("cannot {op} container {id}: it is {status} ({hint})")]
    WrongStatus {
        op: &'static str,
        id: String,
        status: Status,
        hint: &'static str,
    },
    #[error(
        "cannot delete container {id} that is not stopped: {status} (use --force to kill it first)"
    )]
    NotStopped { id: String, status: Status },
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("container init: {0}")]
    Init(String),
    #[error("{0}")]
    Usage(String),
    #[error("{op} for pid {pid} failed: {source}")]
    Process {
        op: &'static str,
        pid: i32,
        source: std::io::Error,
    },
    #[error("init process {pid} exited before create finished (see the log for its error)")]
    InitGone { pid: i32 },
}

/// The flags of `create`/`run` that shape the init.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// `run` without `--detach`: the caller stays and relays the terminal, if any.
    pub foreground: bool,
    /// Also join the cgroup hierarchies engines read usage from themselves
    /// (`cgroups::STATS_CONTROLLERS`), even without limits: the runc personality sets it,
    /// because containerd's shim reads the container's cgroups itself (see `cgroups`).
    pub stats_cgroups: bool,
}

/// Checks the terminal/console-socket combinations runc accepts (runc utils_linux.go): a
/// detached container with a terminal needs somewhere to send the pty master, and a console
/// socket is only meaningful with a terminal.
pub fn check_console(
    terminal: bool,
    console_socket: bool,
    detach: bool,
) -> Result<(), ContainerError> {
    match (terminal, console_socket, detach) {
        (true, false, true) => Err(ContainerError::Usage(
            "cannot allocate tty if runc will detach without setting console socket \
             (pass --console-socket, or set process.terminal to false)"
                .into(),
        )),
        (false, true, _) | (true, true, false) => Err(ContainerError::Usage(
            "cannot use console socket if runc will not detach or allocate tty".into(),
        )),
        (true, false, false) => Err(ContainerError::Usage(
            "a foreground terminal is not supported by capsa-runc yet: set process.terminal \
             to false, or use --detach with --console-socket"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// `create`: validates, prepares cgroup and seccomp, spawns the init (blocked on exec.fifo),
/// records the state, writes the pid file and runs the prestart/createRuntime hooks. On any
/// failure nothing is left: no init, no cgroup, no state directory (mounts live only in the
/// init's mount namespace and go with it). Returns the init pid.
pub fn create(
    root: &StateRoot,
    id: &str,
    bundle: &BundleSpec,
    opts: &CreateOptions,
) -> Result<i32, ContainerError> {
    crate::spec::validate_id(id)?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    check_console(terminal, opts.console_socket.is_some(), !opts.foreground)?;
    let dir = root.create(id)?;
    let mut undo = Rollback {
        dir: Some(dir),
        cgroup: None,
        pid: None,
        pid_file: None,
    };
    match create_steps(&mut undo, id, bundle, opts) {
        Ok(pid) => {
            undo.dir = None;
            Ok(pid)
        }
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

fn create_steps(
    undo: &mut Rollback,
    id: &str,
    bundle: &BundleSpec,
    opts: &CreateOptions,
) -> Result<i32, ContainerError> {
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref();
    let filter = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(deps::seccomp_compile(s, root_of(undo))?),
        None => None,
    };
    let cgroups_path = linux.and_then(|l| l.cgroups_path().as_deref());
    let cgroup = deps::cgroup_for(cgroups_path, id)?;
    let extra = if opts.stats_cgroups {
        crate::cgroups::STATS_CONTROLLERS
    } else {
        &[]
    };
    deps::cgroup_create(&cgroup, linux.and_then(|l| l.resources().as_ref()), extra)?;
    let state_dir = undo.dir_path();
    let cgroup = &*undo.cgroup.insert(cgroup);
    // A hook failure travels through `init` as text; the typed error is kept here.
    let hook_error = std::cell::RefCell::new(None);
    let run_hooks = |pid: i32| -> Result<(), String> {
        runtime_ns_hooks(id, pid, bundle).map_err(|e| {
            let text = e.to_string();
            *hook_error.borrow_mut() = Some(e);
            text
        })
    };
    let has_hooks = [HookKind::Prestart, HookKind::CreateRuntime]
        .iter()
        .any(|&k| !hook_list(spec, k).is_empty());
    let req = crate::init::InitRequest {
        id,
        spec,
        bundle: &bundle.bundle,
        rootfs: &bundle.rootfs,
        state_dir: &state_dir,
        console_socket: opts.console_socket.as_deref(),
        preserve_fds: opts.preserve_fds,
        no_pivot: opts.no_pivot,
        no_new_keyring: opts.no_new_keyring,
        cgroup: Some(cgroup),
        seccomp: filter.as_ref(),
        runtime_hooks: if has_hooks { Some(&run_hooks) } else { None },
    };
    let pid = match deps::init_spawn(&req) {
        Ok(s) => s.pid,
        Err(e) => return Err(hook_error.take().unwrap_or(e)),
    };
    undo.pid = Some(pid);
    let stat = crate::state::proc_stat(pid).ok_or(ContainerError::InitGone { pid })?;
    let record = ContainerRecord {
        id: id.to_owned(),
        init_pid: pid,
        init_start_time: stat.start_time,
        bundle: bundle.bundle.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::state::rfc3339_nano(std::time::SystemTime::now()),
        paused: false,
        cgroup: Some(cgroup.clone()),
        config: spec.clone(),
    };
    if let Some(dir) = &undo.dir {
        dir.save(&record)?;
    }
    if let Some(path) = &opts.pid_file {
        let path = absolute(path);
        crate::state::write_atomic(&path, pid.to_string().as_bytes())?;
        undo.pid_file = Some(path);
    }
    Ok(pid)
}

/// prestart (deprecated) then createRuntime, for the init `pid` that waits before its
/// pivot_root; runc hands them the state with status `creating`. A failure fails the create.
fn runtime_ns_hooks(id: &str, pid: i32, bundle: &BundleSpec) -> Result<(), ContainerError> {
    let spec = &bundle.spec;
    let json = hook_state_json(id, pid, &bundle.bundle, spec, Status::Creating);
    for kind in [HookKind::Prestart, HookKind::CreateRuntime] {
        hooks::run_all(hook_list(spec, kind), &json).map_err(|source| ContainerError::Hook {
            kind: kind.name(),
            source,
        })?;
    }
    Ok(())
}

/// The state root of the container being made (the parent of its state directory).
fn root_of(undo: &Rollback) -> &Path {
    undo.dir
        .as_ref()
        .and_then(|d| d.path.parent())
        .unwrap_or(Path::new("/"))
}

/// What a half-made container holds, released in reverse order on failure.
struct Rollback {
    dir: Option<LockedDir>,
    cgroup: Option<crate::cgroups::Cgroup>,
    pid: Option<i32>,
    /// A pid file we wrote: it would name a dead (and later recycled) pid.
    pid_file: Option<PathBuf>,
}

impl Rollback {
    fn dir_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path.clone())
            .unwrap_or_default()
    }

    fn run(self) {
        if let Some(pid) = self.pid {
            kill_and_wait(pid);
        }
        if let Some(cg) = &self.cgroup {
            let _ = deps::cgroup_signal_all(cg, libc::SIGKILL);
            let _ = deps::cgroup_destroy(cg);
        }
        if let Some(dir) = self.dir {
            let _ = dir.remove();
        }
        if let Some(path) = self.pid_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `start`: releases the init from exec.fifo, then runs the poststart hooks. Returns the
/// poststart failures as warnings (config.md: the runtime MUST log a warning and continue).
pub fn start(root: &StateRoot, id: &str) -> Result<Vec<String>, ContainerError> {
    let dir = root.open(id, LockMode::Exclusive)?;
    let record = dir.load()?;
    match record.status(&dir.path) {
        Status::Created => {}
        Status::Stopped => {
            return Err(wrong(
                "start",
                id,
                Status::Stopped,
                "cannot start a container that has stopped",
            ));
        }
        s => {
            return Err(wrong(
                "start",
                id,
                s,
                "cannot start an already running container",
            ));
        }
    }
    deps::init_start(&dir.path)?;
    // The fifo marks "created": once the init has passed it, the container is running.
    match std::fs::remove_file(dir.path.join(EXEC_FIFO)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StateError::Io {
                op: "remove",
                path: dir.path.join(EXEC_FIFO),
                source,
            }
            .into());
        }
    }
    let json = state_json(&record, Status::Created);
    Ok(warn_hooks(&record.config, HookKind::Poststart, &json))
}

fn wrong(op: &'static str, id: &str, status: Status, hint: &'static str) -> ContainerError {
    ContainerError::WrongStatus {
        op,
        id: id.to_owned(),
        status,
        hint,
    }
}

/// `state`: the runc-compatible state of one container.
pub fn state(root: &StateRoot, id: &str) -> Result<OciState, ContainerError> {
    let dir = root.open(id, LockMode::Shared)?;
    let record = dir.load()?;
    Ok(record.oci_state(record.status(&dir.path)))
}

/// The spec a container was created from (as stored at create time, capabilities filtered).
pub fn config(root: &StateRoot, id: &str) -> Result<Spec, ContainerError> {
    let dir = root.open(id, LockMode::Shared)?;
    Ok(dir.load()?.config)
}

/// `list`: every container under the root; entries that vanish meanwhile are skipped.
pub fn list(root: &StateRoot) -> Result<Vec<OciState>, ContainerError> {
    let mut out = Vec::new();
    for id in root.ids()? {
        if let Ok(record) = root.read_unlocked(&id) {
            let dir = root.dir(&id);
            let mut st = record.oci_state(record.status(&dir));
            // runc's list shows who owns the state directory; `state` leaves owner empty.
            st.owner = crate::state::owner_name(&dir);
            out.push(st);
        }
    }
    Ok(out)
}

/// `kill`: sends `signal` to the init, or with `all` to every process in the cgroup.
pub fn kill(root: &StateRoot, id: &str, signal: i32, all: bool) -> Result<(), ContainerError> {
    let dir = root.open(id, LockMode::Shared)?;
    let record = dir.load()?;
    let status = record.status(&dir.path);
    if status == Status::Stopped {
        return Err(ContainerError::NotRunning {
            id: id.to_owned(),
            status,
        });
    }
    match (&record.cgroup, all) {
        (Some(cg), true) => deps::cgroup_signal_all(cg, signal),
        _ => send_signal(record.init_pid, signal).map_err(|source| ContainerError::Process {
            op: "kill",
            pid: record.init_pid,
            source,
        }),
    }
}

/// `delete`: removes a stopped or created container; with `force`, kills a running or paused
/// one first. Returns the poststop hook failures as warnings.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<Vec<String>, ContainerError> {
    let dir = root.open(id, LockMode::Exclusive)?;
    let record = dir.load()?;
    let status = record.status(&dir.path);
    match status {
        Status::Stopped => {}
        // runc deletes a created container without --force: its process never ran.
        Status::Created | Status::Creating => kill_container(&record),
        Status::Running | Status::Paused if force => kill_container(&record),
        Status::Running | Status::Paused => {
            return Err(ContainerError::NotStopped {
                id: id.to_owned(),
                status,
            });
        }
    }
    destroy(dir, &record)
}

/// Removes what a stopped container still holds: cgroup, state directory; then poststop hooks.
fn destroy(dir: LockedDir, record: &ContainerRecord) -> Result<Vec<String>, ContainerError> {
    if let Some(cg) = &record.cgroup {
        deps::cgroup_destroy(cg)?;
    }
    dir.remove()?;
    let json = state_json(record, Status::Stopped);
    Ok(warn_hooks(&record.config, HookKind::Poststop, &json))
}

/// SIGKILL to the init and the whole cgroup (a shared pid namespace leaves other processes
/// that the init's death would not take down), thawing a frozen cgroup so that the signal is
/// delivered, then waits for the init to be gone.
fn kill_container(record: &ContainerRecord) {
    if let Some(cg) = &record.cgroup {
        let _ = deps::cgroup_signal_all(cg, libc::SIGKILL);
        if record.paused {
            let _ = deps::cgroup_thaw(cg);
        }
    }
    if record.init_alive() {
        kill_and_wait(record.init_pid);
    }
}

/// `ps`: the host pids in the container's cgroup.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>, ContainerError> {
    let dir = root.open(id, LockMode::Shared)?;
    let record = dir.load()?;
    match &record.cgroup {
        Some(cg) => deps::cgroup_pids(cg),
        None if record.init_alive() => Ok(vec![record.init_pid]),
        None => Ok(Vec::new()),
    }
}

/// `pause` (`true`) or `resume` (`false`) through the freezer.
pub fn set_paused(root: &StateRoot, id: &str, pause: bool) -> Result<(), ContainerError> {
    let dir = root.open(id, LockMode::Exclusive)?;
    let mut record = dir.load()?;
    let status = record.status(&dir.path);
    let (op, want) = if pause {
        ("pause", Status::Running)
    } else {
        ("resume", Status::Paused)
    };
    if status != want {
        if status == Status::Stopped || status == Status::Created {
            return Err(ContainerError::NotRunning {
                id: id.to_owned(),
                status,
            });
        }
        let hint = if pause {
            "container already paused"
        } else {
            "container not paused"
        };
        return Err(wrong(op, id, status, hint));
    }
    let cg = record
        .cgroup
        .as_ref()
        .ok_or_else(|| ContainerError::Cgroup(format!("container {id} has no cgroup to freeze")))?;
    if pause {
        deps::cgroup_freeze(cg)?
    } else {
        deps::cgroup_thaw(cg)?
    }
    record.paused = pause;
    dir.save(&record)?;
    Ok(())
}

/// `update --resources`: applies new limits to a live container's cgroup and remembers them.
pub fn update(
    root: &StateRoot,
    id: &str,
    resources: &LinuxResources,
) -> Result<(), ContainerError> {
    let dir = root.open(id, LockMode::Exclusive)?;
    let mut record = dir.load()?;
    let status = record.status(&dir.path);
    if status == Status::Stopped {
        return Err(ContainerError::NotRunning {
            id: id.to_owned(),
            status,
        });
    }
    let cg = record
        .cgroup
        .as_ref()
        .ok_or_else(|| ContainerError::Cgroup(format!("container {id} has no cgroup to update")))?;
    deps::cgroup_update(cg, resources)?;
    if let Some(linux) = record.config.linux_mut() {
        linux.set_resources(Some(resources.clone()));
    }
    dir.save(&record)?;
    Ok(())
}

/// How `exec` changes the container's own process into the one to run (runc exec flags).
#[derive(Debug, Default, Clone)]
pub struct ExecOverrides {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// `uid[:gid]`.
    pub user: Option<(u32, Option<u32>)>,
    pub caps: Vec<String>,
    pub tty: bool,
    pub no_new_privs: bool,
}

/// Builds the exec process from the container's `process`, as runc does without `--process`.
/// `--cap` adds to bounding, effective and permitted only, never to inheritable or ambient:
/// with inheritable filled, file capabilities could grant the exec'd program more than the
/// container has (CVE-2022-29162).
pub fn exec_process(base: Option<&Process>, o: &ExecOverrides) -> Result<Process, ContainerError> {
    let mut p = base.cloned().unwrap_or_else(|| {
        // Process::default() carries oci-spec's default capabilities (inheritable too).
        let mut p = Process::default();
        p.set_capabilities(None);
        p
    });
    if o.args.is_empty() {
        return Err(ContainerError::Usage(
            "exec needs a command (or --process FILE)".into(),
        ));
    }
    p.set_args(Some(o.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(o.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    if let Some((uid, gid)) = o.user {
        let user = p.user_mut();
        user.set_uid(uid);
        user.set_gid(gid.unwrap_or(0));
    }
    p.set_terminal(Some(o.tty));
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !o.caps.is_empty() {
        add_exec_caps(&mut p, &o.caps)?;
    }
    Ok(p)
}

fn add_exec_caps(p: &mut Process, names: &[String]) -> Result<(), ContainerError> {
    let mut parsed = Vec::with_capacity(names.len());
    for name in names {
        let cap: oci_spec::runtime::Capability = serde_json::from_value(name.clone().into())
            .map_err(|_| ContainerError::Usage(format!("unknown capability {name:?} for --cap")))?;
        parsed.push(cap);
    }
    let mut caps = p.capabilities().clone().unwrap_or_else(empty_caps);
    let add = |set: Option<&oci_spec::runtime::Capabilities>| {
        let mut s = set.cloned().unwrap_or_default();
        s.extend(parsed.iter().copied());
        Some(s)
    };
    let (b, e, pm) = (
        add(caps.bounding().as_ref()),
        add(caps.effective().as_ref()),
        add(caps.permitted().as_ref()),
    );
    caps.set_bounding(b);
    caps.set_effective(e);
    caps.set_permitted(pm);
    p.set_capabilities(Some(caps));
    Ok(())
}

/// Empty capability sets. Not `LinuxCapabilities::default()`: oci-spec fills inheritable and
/// ambient there (CVE-2022-29162 class).
fn empty_caps() -> oci_spec::runtime::LinuxCapabilities {
    let mut c = oci_spec::runtime::LinuxCapabilities::default();
    c.set_bounding(Some(Default::default()))
        .set_effective(Some(Default::default()))
        .set_permitted(Some(Default::default()))
        .set_inheritable(Some(Default::default()))
        .set_ambient(Some(Default::default()));
    c
}

/// The flags of `exec` besides the process.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub detach: bool,
}

/// `exec`: starts `process` inside a running container; returns its host pid (a child of the
/// caller, so a foreground exec can wait for it).
pub fn exec(
    root: &StateRoot,
    id: &str,
    process: &Process,
    opts: &ExecOptions,
) -> Result<i32, ContainerError> {
    let dir = root.open(id, LockMode::Shared)?;
    let record = dir.load()?;
    match record.status(&dir.path) {
        Status::Stopped => {
            return Err(wrong(
                "exec in",
                id,
                Status::Stopped,
                "start a new container",
            ));
        }
        Status::Paused => return Err(wrong("exec in", id, Status::Paused, "resume it first")),
        _ => {}
    }
    check_console(
        process.terminal().unwrap_or(false),
        opts.console_socket.is_some(),
        opts.detach,
    )?;
    let pid = deps::spawn_tenant(root.path(), &record, process, opts)?;
    if let Some(path) = &opts.pid_file {
        crate::state::write_atomic(&absolute(path), pid.to_string().as_bytes())?;
    }
    Ok(pid)
}

/// Tears down a container whose process has exited (foreground `run`): same as `delete`.
pub fn remove_stopped(root: &StateRoot, id: &str) -> Result<Vec<String>, ContainerError> {
    delete(root, id, true)
}

#[derive(Clone, Copy)]
enum HookKind {
    Prestart,
    CreateRuntime,
    Poststart,
    Poststop,
}

impl HookKind {
    fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }
}

/// Runs hooks whose failures are warnings (poststart, poststop), naming the kind.
fn warn_hooks(spec: &Spec, kind: HookKind, json: &[u8]) -> Vec<String> {
    let mut warnings = hooks::run_all_warn(hook_list(spec, kind), json);
    for w in &mut warnings {
        *w = format!("{} hook failed: {w}", kind.name());
    }
    warnings
}

fn hook_list(spec: &Spec, kind: HookKind) -> &[Hook] {
    let Some(h) = spec.hooks().as_ref() else {
        return &[];
    };
    #[allow(deprecated)] // prestart is deprecated in the spec but still run by every runtime
    let list = match kind {
        HookKind::Prestart => h.prestart(),
        HookKind::CreateRuntime => h.create_runtime(),
        HookKind::Poststart => h.poststart(),
        HookKind::Poststop => h.poststop(),
    };
    list.as_deref().unwrap_or(&[])
}

/// The state handed to hooks on stdin: runtime-spec's `State` (runtime.md), in runc's shape:
/// `pid` is left out once the process is gone and `annotations` when empty.
#[derive(serde::Serialize)]
struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'static str,
    id: &'a str,
    status: Status,
    #[serde(skip_serializing_if = "is_zero")]
    pid: i32,
    bundle: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a std::collections::HashMap<String, String>>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// runc passes `creating` to prestart/createRuntime, `created` to poststart (the state is
/// taken before the fifo is released) and `stopped` without a pid to poststop.
fn state_json(record: &ContainerRecord, status: Status) -> Vec<u8> {
    hook_state_json(
        &record.id,
        record.init_pid,
        &record.bundle,
        &record.config,
        status,
    )
}

fn hook_state_json(id: &str, pid: i32, bundle: &Path, spec: &Spec, status: Status) -> Vec<u8> {
    let state = HookState {
        oci_version: crate::state::STATE_OCI_VERSION,
        id,
        status,
        pid: if status == Status::Stopped { 0 } else { pid },
        bundle,
        annotations: spec.annotations().as_ref().filter(|a| !a.is_empty()),
    };
    serde_json::to_vec(&state).unwrap_or_default()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// kill(2) with any signal number (rustix's `Signal` does not name the real-time ones).
pub fn send_signal(pid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGKILL and wait (up to 10 s) until the process is gone, reaping it if it is our child.
/// A pidfd becomes readable when the process exits, child or not (pidfd_open(2)).
fn kill_and_wait(pid: i32) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    let pidfd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok();
    let _ = send_signal(pid, libc::SIGKILL);
    if let Some(fd) = &pidfd {
        let ts = Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let _ = poll(&mut fds, Some(&ts));
    }
    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
}

/// Signal numbers by name for x86_64 (signal(7)); `kill` accepts `KILL`, `SIGKILL`, `kill`
/// and numbers, as runc's parseSignal does.
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
];

/// Parses a signal for `kill`: a number 1..=64, or a name with or without `SIG`, any case,
/// including `RTMIN+n`/`RTMAX-n`.
pub fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    let bad = || ContainerError::Usage(format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    // SIGRTMIN is 34 for programs on glibc (32 and 33 are taken by the thread library).
    let rt = |base: i32, off: &str, sign: i32| {
        let k: i32 = if off.is_empty() {
            0
        } else {
            off.parse().map_err(|_| bad())?
        };
        let n = base + sign * k;
        if (34..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some(off) = name.strip_prefix("RTMIN") {
        return rt(34, off.trim_start_matches('+'), 1);
    }
    if let Some(off) = name.strip_prefix("RTMAX") {
        return rt(64, off.trim_start_matches('-'), -1);
    }
    Err(bad())
}

/// Foreground waiting: forwards signals to `pid` and returns its exit code (128+N when a
/// signal N killed it, as shells report it).
pub mod foreground {
    use super::send_signal;

    /// Signals relayed to the container (all the catchable ones a terminal or supervisor
    /// sends); SIGCHLD is only used to wake up.
    const FORWARDED: [i32; 10] = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGCONT,
        libc::SIGWINCH,
        libc::SIGPIPE,
    ];

    /// Blocks the forwarded signals and SIGCHLD in this process so that they queue for
    /// sigwaitinfo(2). Call after the container process exists: a forked child inherits
    /// the mask.
    pub fn block_signals() -> std::io::Result<()> {
        let set = blocked_set();
        // SAFETY: `set` is a valid, initialized sigset_t; the old mask is not requested.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    }

    /// The forwarded signals plus SIGCHLD (for a signalfd over the same set).
    pub fn blocked_set() -> libc::sigset_t {
        // SAFETY: sigemptyset initializes the set before any other use; sigaddset only gets
        // valid signal numbers.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
                libc::sigaddset(&mut set, *s);
            }
            set
        }
    }

    /// Waits for `pid` (our child, or an orphan we reap as subreaper), relaying signals.
    pub fn wait(pid: i32) -> std::io::Result<i32> {
        let set = blocked_set();
        loop {
            // Check before every wait: a SIGCHLD that came before the mask was set is lost.
            if let Some(code) = reap(pid)? {
                return Ok(code);
            }
            // SAFETY: `set` is a valid sigset_t; no siginfo is requested.
            let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
            if sig < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if sig != libc::SIGCHLD {
                let _ = send_signal(pid, sig);
            }
        }
    }

    /// Reaps every exited child; returns the exit code if `pid` was one of them.
    pub fn reap(pid: i32) -> std::io::Result<Option<i32>> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes one int into `status`, which outlives the call.
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r == 0 {
                return Ok(None);
            }
            if r < 0 {
                let e = std::io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // No children left: the process is not ours to wait for.
                    Some(libc::ECHILD) => Ok(Some(super::foreign_exit(pid))),
                    _ => Err(e),
                };
            }
            if r == pid {
                return Ok(Some(exit_code(status)));
            }
        }
    }

    pub fn exit_code(status: i32) -> i32 {
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            255
        }
    }
}

/// A process that is not our child (no status to read): 0 once it is gone.
fn foreign_exit(pid: i32) -> i32 {
    while crate::state::proc_stat(pid).is_some_and(|s| s.state != b'Z') {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    0
}

/// The other modules' interfaces, wrapped once so that their error types map onto
/// `ContainerError`. Each wrapper names the function of the agreed interface it calls.
mod deps {
    use super::ContainerError;
    use crate::cgroups::Cgroup;
    use crate::init::{ExecRequest, InitRequest, Spawned};
    use crate::seccomp::SeccompFilter;
    use crate::state::ContainerRecord;
    use oci_spec::runtime::{LinuxResources, LinuxSeccomp, Process};
    use std::path::Path;

    /// Inside the state root; never a container (it has no state.json).
    const SECCOMP_CACHE_DIR: &str = ".capsa-seccomp-cache";

    fn cg(e: impl std::fmt::Display) -> ContainerError {
        ContainerError::Cgroup(e.to_string())
    }
    fn init(e: impl std::fmt::Display) -> ContainerError {
        ContainerError::Init(e.to_string())
    }

    /// Through the on-disk cache in the state root (tmpfs): compiling a Docker-sized profile
    /// with libseccomp costs milliseconds on every start, loading a cached program microseconds.
    pub fn seccomp_compile(s: &LinuxSeccomp, root: &Path) -> Result<SeccompFilter, ContainerError> {
        crate::seccomp::compile_cached(s, &root.join(SECCOMP_CACHE_DIR))
            .map_err(|e| ContainerError::Seccomp(e.to_string()))
    }
    pub fn cgroup_for(path: Option<&Path>, id: &str) -> Result<Cgroup, ContainerError> {
        Cgroup::for_container(path, id).map_err(cg)
    }
    pub fn cgroup_create(
        c: &Cgroup,
        r: Option<&LinuxResources>,
        extra: &[crate::cgroups::Controller],
    ) -> Result<(), ContainerError> {
        c.create_with(r, extra).map_err(cg)
    }
    pub fn cgroup_signal_all(c: &Cgroup, sig: i32) -> Result<(), ContainerError> {
        c.signal_all(sig).map_err(cg)
    }
    pub fn cgroup_destroy(c: &Cgroup) -> Result<(), ContainerError> {
        c.destroy().map_err(cg)
    }
    pub fn cgroup_freeze(c: &Cgroup) -> Result<(), ContainerError> {
        c.freeze().map_err(cg)
    }
    pub fn cgroup_thaw(c: &Cgroup) -> Result<(), ContainerError> {
        c.thaw().map_err(cg)
    }
    pub fn cgroup_update(c: &Cgroup, r: &LinuxResources) -> Result<(), ContainerError> {
        c.update(r).map_err(cg)
    }
    pub fn cgroup_pids(c: &Cgroup) -> Result<Vec<i32>, ContainerError> {
        c.pids().map_err(cg)
    }
    pub fn init_spawn(req: &InitRequest<'_>) -> Result<Spawned, ContainerError> {
        crate::init::spawn(req).map_err(init)
    }
    pub fn init_start(state_dir: &Path) -> Result<(), ContainerError> {
        crate::init::start(state_dir).map_err(init)
    }
    /// The tenant joins the container's cgroup and gets the container's seccomp filter
    /// (recompiled from the stored spec: a filter cannot be kept across processes).
    pub fn spawn_tenant(
        root: &Path,
        record: &ContainerRecord,
        process: &Process,
        opts: &super::ExecOptions,
    ) -> Result<i32, ContainerError> {
        let seccomp = record
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref());
        let filter = seccomp.map(|s| seccomp_compile(s, root)).transpose()?;
        let req = ExecRequest {
            id: &record.id,
            init_pid: record.init_pid,
            spec: &record.config,
            process,
            console_socket: opts.console_socket.as_deref(),
            preserve_fds: opts.preserve_fds,
            cgroup: record.cgroup.as_ref(),
            seccomp: filter.as_ref(),
        };
        crate::init::spawn_tenant(&req).map(|s| s.pid).map_err(init)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").ok(), Some(9));
        assert_eq!(parse_signal("KILL").ok(), Some(9));
        assert_eq!(parse_signal("SIGKILL").ok(), Some(9));
        assert_eq!(parse_signal("sigterm").ok(), Some(15));
        assert_eq!(parse_signal("RTMIN+2").ok(), Some(36));
        assert_eq!(parse_signal("SIGRTMAX").ok(), Some(64));
        for bad in ["0", "65", "-1", "FOO", "SIG", "RTMIN+40", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exec_cap_never_fills_inheritable_or_ambient() {
        let base: Process = serde_json::from_value(serde_json::json!({
            "cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sh"], "env": ["A=1"],
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]}
        }))
        .expect("process");
        let o = ExecOverrides {
            args: vec!["id".into()],
            env: vec!["B=2".into()],
            caps: vec!["CAP_NET_ADMIN".into()],
            user: Some((1000, None)),
            ..Default::default()
        };
        let p = exec_process(Some(&base), &o).expect("exec process");
        let v = serde_json::to_value(&p).expect("json");
        let caps = &v["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            let list = caps[set].as_array().expect(set);
            assert!(list.iter().any(|c| c == "CAP_NET_ADMIN"), "{set}: {v}");
        }
        assert!(
            caps["inheritable"].as_array().is_none_or(|l| l.is_empty()),
            "{v}"
        );
        assert!(
            caps["ambient"].as_array().is_none_or(|l| l.is_empty()),
            "{v}"
        );
        assert_eq!(v["env"], serde_json::json!(["A=1", "B=2"]));
        assert_eq!(v["user"]["uid"], 1000);
        assert_eq!(v["args"], serde_json::json!(["id"]));
    }

    #[test]
    fn exec_cap_on_process_without_caps_starts_empty() {
        let o = ExecOverrides {
            args: vec!["id".into()],
            caps: vec!["CAP_KILL".into()],
            ..Default::default()
        };
        let p = exec_process(None, &o).expect("exec process");
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(
            v["capabilities"]["bounding"],
            serde_json::json!(["CAP_KILL"])
        );
        assert!(
            v["capabilities"]["inheritable"]
                .as_array()
                .is_none_or(|l| l.is_empty()),
            "{v}"
        );
        assert!(
            exec_process(
                None,
                &ExecOverrides {
                    caps: vec!["CAP_NOPE".into()],
                    args: vec!["x".into()],
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn hook_state_shape_matches_runc() {
        let record = ContainerRecord {
            id: "c1".into(),
            init_pid: 42,
            init_start_time: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "T".into(),
            paused: false,
            cgroup: None,
            config: serde_json::from_str(r#"{"ociVersion":"1.0.2"}"#).expect("spec"),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&state_json(&record, Status::Creating)).expect("json");
        assert_eq!(v["status"], "creating");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["bundle"], "/b");
        assert!(
            v.get("annotations").is_none() && v.get("rootfs").is_none(),
            "{v}"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&state_json(&record, Status::Stopped)).expect("json");
        assert!(v.get("pid").is_none(), "poststop gets no pid: {v}");
    }

    #[test]
    fn console_rules() {
        assert!(check_console(false, false, true).is_ok());
        assert!(check_console(true, true, true).is_ok());
        assert!(check_console(true, false, true).is_err());
        assert!(check_console(false, true, true).is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(foreground::exit_code(3 << 8), 3);
        assert_eq!(foreground::exit_code(9), 137);
    }
}
