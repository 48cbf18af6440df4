//! The runtime side of the create and exec paths: prepare everything that can be prepared before
//! the clone, clone, drive the sync protocol, and clean up on failure.
//!
//! Owns the exec.fifo lifecycle (create in `spawn`, consume in `start`). Must not write the state
//! store: `container` does that with the pid we return.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use super::child::{self, InitCtx, TenantCtx};
use super::namespaces::{self, NsPlan};
use super::sync::{self, Channel, Msg};
use super::{ExecRequest, InitError, InitRequest, Spawned, Step, StepError};
use crate::{console, rootfs, security};

/// Name of the create/start handshake fifo inside the state directory (runc's name).
pub const EXEC_FIFO: &str = "exec.fifo";

/// Start the container init; returns once it is set up and blocked on `<state_dir>/exec.fifo`.
pub fn spawn(req: &InitRequest) -> Result<Spawned, InitError> {
    let fifo = req.state_dir.join(EXEC_FIFO);
    let result = spawn_init(req, &fifo);
    if result.is_err() {
        let _ = std::fs::remove_file(&fifo);
    }
    result
}

fn spawn_init(req: &InitRequest, fifo: &Path) -> Result<Spawned, InitError> {
    let (join, v2_dir) = open_cgroup_join(req.cgroup)?;
    let ctx = prepare_init(req, fifo, join, v2_dir.as_ref().map(|d| d.as_fd()))?;
    let (ours, theirs) = sync::pair()?;
    let fast = ctx.ns.joins.is_empty();
    let flags = if fast { ctx.ns.new_flags } else { 0 };
    // The fast path's clone makes the init itself, so it can be born in the v2 cgroup.
    let (first, in_v2) = clone_init(flags, v2_dir.as_ref().filter(|_| fast))?;
    if first == 0 {
        drop(ours);
        child::init_main(&ctx, &theirs, fast)
    }
    drop(theirs);
    let cgroup = req.cgroup.map(|cg| (cg, in_v2));
    let pid = drive(&ours, first, &ctx.ns, fast, cgroup)?;
    let mut got = ours.recv();
    if let (Some(hooks), Ok(Msg::Hooks)) = (req.runtime_hooks, &got) {
        run_runtime_hooks(&ours, pid, hooks)?;
        got = ours.recv();
    }
    match got {
        Ok(Msg::Ready) => Ok(Spawned { pid }),
        other => Err(fail_child(other, pid, None)),
    }
}

/// The init stopped before pivot_root (child.rs `pause_for_runtime_hooks`): run prestart and
/// createRuntime here, in the runtime namespace, then let it go on. A failure kills it.
fn run_runtime_hooks(
    chan: &Channel,
    pid: i32,
    hooks: &super::RuntimeHooks<'_>,
) -> Result<(), InitError> {
    hooks(pid).map_err(|e| kill_reap(pid, None, StepError::msg(e)))?;
    chan.send(&Msg::Resume).map_err(|e| kill_reap(pid, None, e))
}

/// Opens the handles of the cgroup join (`cgroups::SelfJoin`): the v1 part goes to the child,
/// the v2 directory (if any) is used by `clone_init`.
fn open_cgroup_join(
    cgroup: Option<&crate::cgroups::Cgroup>,
) -> Step<(Option<crate::cgroups::SelfJoin>, Option<OwnedFd>)> {
    let Some(cg) = cgroup else {
        return Ok((None, None));
    };
    let mut join = cg
        .open_self_join()
        .map_err(|e| StepError::msg(format!("cannot join the cgroup: {e}")))?;
    let v2 = join.v2_dir.take();
    Ok((Some(join), v2))
}

/// Clones the init; with a cgroup2 directory, into it (`clone3`). Returns the pid (0 in the
/// child) and whether the child is already in the v2 cgroup. A kernel without clone3 or
/// CLONE_INTO_CGROUP (before 5.7) gets a plain clone, and `drive` moves the child.
fn clone_init(flags: u64, v2_dir: Option<&OwnedFd>) -> Step<(i32, bool)> {
    let err = |e| StepError::sys("clone", "the container init", e, clone_hint(flags));
    if let Some(dir) = v2_dir {
        match super::sys::clone_fork_into(flags, dir.as_fd()) {
            Ok(pid) => return Ok((pid, true)),
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::TOOBIG) => {}
            Err(e) => return Err(err(e)),
        }
    }
    super::sys::clone_fork(flags)
        .map(|pid| (pid, false))
        .map_err(err)
}

fn clone_hint(flags: u64) -> &'static str {
    if flags & libc::CLONE_NEWUSER as u64 != 0 {
        "are user namespaces enabled (user.max_user_namespaces)?"
    } else {
        "does the caller hold CAP_SYS_ADMIN?"
    }
}

/// Everything the init needs, computed before the clone so that config errors never cost a fork
/// and the child allocates little.
fn prepare_init<'a>(
    req: &'a InitRequest<'a>,
    fifo: &Path,
    join: Option<crate::cgroups::SelfJoin>,
    v2_dir: Option<std::os::fd::BorrowedFd<'a>>,
) -> Step<InitCtx<'a>> {
    let process = req
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| StepError::msg("config.json has no process"))?;
    let plan = security::ProcessPlan::new(process)?;
    let rootfs = rootfs::RootfsPlan::new(req.spec, req.bundle, req.rootfs, req.no_pivot)?;
    let ns = namespaces::plan_create(req.spec)?;
    let detached = detach_sources(&rootfs, &ns)?;
    let console = open_console(req.console_socket, plan.terminal)?;
    make_fifo(fifo)?;
    let fifo_fd = rustix::fs::open(fifo, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| StepError::sys("open", fifo.display(), e, ""))?;
    let hostname = req.spec.hostname().as_ref().map(|h| h.as_bytes().to_vec());
    Ok(InitCtx {
        req,
        common: child::Common::new(plan, console, req.seccomp, req.preserve_fds, join, v2_dir)?,
        ns,
        rootfs,
        detached,
        fifo_fd,
        hostname,
    })
}

/// In a user namespace, bind sources (and an idmapped root) are cloned here, on the host, before
/// the clone (see `rootfs::userns` for why the init cannot look them up itself).
fn detach_sources(plan: &rootfs::RootfsPlan, ns: &NsPlan) -> Step<rootfs::userns::Detached> {
    if !plan.userns {
        return Ok(rootfs::userns::Detached::default());
    }
    let rootfs = Path::new(std::ffi::OsStr::from_bytes(plan.rootfs.as_bytes()));
    rootfs::userns::detach_sources(
        &plan.root_source,
        rootfs,
        &plan.mounts,
        (&ns.uid_map, &ns.gid_map),
    )
}

fn open_console(socket: Option<&Path>, terminal: bool) -> Step<Option<OwnedFd>> {
    match (socket, terminal) {
        (Some(path), true) => console::connect(path).map(Some),
        (None, true) => Err(StepError::msg(
            "process.terminal is true but no --console-socket was given (runc needs one when detached)",
        )),
        (Some(_), false) => Err(StepError::msg(
            "--console-socket was given but process.terminal is false; set terminal to true",
        )),
        (None, false) => Ok(None),
    }
}

fn make_fifo(fifo: &Path) -> Step {
    let _ = std::fs::remove_file(fifo);
    // 0622 as runc: only root reads (starts), the container user may write.
    let c = CString::new(fifo.as_os_str().as_encoded_bytes())
        .map_err(|_| StepError::msg(format!("fifo path {} contains NUL", fifo.display())))?;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        c.as_c_str(),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o622),
        0,
    )
    .map_err(|e| {
        StepError::sys(
            "mkfifo",
            fifo.display(),
            e,
            "is the state directory writable?",
        )
    })?;
    // mknod applies our umask; the container user (a non-root uid, or root of a user namespace
    // that maps to an unprivileged host uid) must be able to open it for writing.
    rustix::fs::chmod(fifo, Mode::from_raw_mode(0o622))
        .map_err(|e| StepError::sys("chmod", fifo.display(), e, ""))
}

/// Drive the protocol up to `Joined`: write maps, learn the final pid, `Go`, join the v2 cgroup
/// unless the child was cloned into it (`cgroup` = the cgroup and that flag; the child joins
/// its v1 hierarchies itself).
fn drive(
    chan: &Channel,
    first: i32,
    ns: &NsPlan,
    fast: bool,
    mut cgroup: Option<(&crate::cgroups::Cgroup, bool)>,
) -> Result<i32, InitError> {
    let mut pid = first;
    if fast {
        if ns.new_flags & libc::CLONE_NEWUSER as u64 != 0 {
            namespaces::write_maps(first, ns).map_err(|e| kill_reap(first, None, e))?;
        }
    } else {
        loop {
            match chan.recv() {
                Ok(Msg::Maps) => {
                    namespaces::write_maps(first, ns).map_err(|e| kill_reap(first, None, e))?;
                    chan.send(&Msg::MapsDone)
                        .map_err(|e| kill_reap(first, None, e))?;
                }
                Ok(Msg::Pid(n)) => {
                    reap(first);
                    pid = n;
                    break;
                }
                Ok(Msg::PidInCgroup(n)) => {
                    reap(first);
                    pid = n;
                    if let Some((_, in_v2)) = cgroup.as_mut() {
                        *in_v2 = true;
                    }
                    break;
                }
                other => return Err(fail_child(other, first, None)),
            }
        }
    }
    // GO before a v2 cgroup.procs write: the first such write after a quiet period waits for an
    // RCU grace period (the writer side of cgroup_threadgroup_rwsem; 7-20 ms measured here;
    // cgroups::SelfJoin), and the init's rootfs work needs no cgroup. It waits for JOINED
    // before anything that must run inside its cgroups (child.rs `wait_joined`).
    chan.send(&Msg::Go).map_err(|e| kill_reap(pid, None, e))?;
    if let Some((cg, false)) = cgroup {
        cg.add_task_version(pid, crate::cgroups::Version::V2)
            .map_err(|e| {
                kill_reap(
                    pid,
                    None,
                    StepError::msg(format!("cannot join the cgroup: {e}")),
                )
            })?;
    }
    if chan.send(&Msg::Joined).is_err() {
        // The child failed meanwhile: its error is still queued on our end.
        return Err(fail_child(chan.recv(), pid, None));
    }
    Ok(pid)
}

/// Turn an unexpected message into an error, killing and reaping the child.
fn fail_child(got: Step<Msg>, pid: i32, other: Option<i32>) -> InitError {
    let err = match got {
        Ok(Msg::Err(m)) => InitError::Child(m),
        Ok(Msg::Eof) => InitError::ChildDied(exit_text(pid)),
        Ok(m) => InitError::Child(format!(
            "unexpected message from the container process: {m:?}"
        )),
        Err(e) => InitError::Parent(e),
    };
    let _ = kill_reap(pid, other, StepError::msg(""));
    err
}

/// Kill and reap the child (and a second one), returning `e` as an InitError.
fn kill_reap(pid: i32, other: Option<i32>, e: StepError) -> InitError {
    for p in std::iter::once(pid).chain(other) {
        if let Some(p) = Pid::from_raw(p) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
        }
        reap(p);
    }
    InitError::Parent(e)
}

fn reap(pid: i32) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
    }
}

/// How the child ended, without blocking long (it closed the channel, so it is exiting).
fn exit_text(pid: i32) -> String {
    let Some(p) = Pid::from_raw(pid) else {
        return "no pid".into();
    };
    match rustix::process::waitpid(Some(p), WaitOptions::empty()) {
        Ok(Some((_, st))) if st.exited() => {
            format!("exit status {}", st.exit_status().unwrap_or(-1))
        }
        Ok(Some((_, st))) if st.signaled() => {
            format!("killed by signal {}", st.terminating_signal().unwrap_or(0))
        }
        _ => "unknown status".into(),
    }
}

/// `start`: open exec.fifo for reading, read the byte the init writes, remove the fifo.
pub fn start(state_dir: &Path) -> Result<(), InitError> {
    let fifo = state_dir.join(EXEC_FIFO);
    // O_NONBLOCK: the open never waits, so a dead init cannot hang `start`; poll() waits for the
    // byte instead (fifo(7): a reader may open before the writer).
    let fd = rustix::fs::open(
        &fifo,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        StepError::sys(
            "open",
            fifo.display(),
            e,
            "was the container created and not started yet?",
        )
    })?;
    wait_byte(&fd, &fifo)?;
    std::fs::remove_file(&fifo).map_err(|e| {
        let errno = rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO);
        StepError::sys("remove", fifo.display(), errno, "")
    })?;
    Ok(())
}

fn wait_byte(fd: &OwnedFd, fifo: &Path) -> Step {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(fd, &mut byte) {
            Ok(1) => return Ok(()),
            // EOF: no writer yet (or the init died); EAGAIN: writer connected, byte not yet written.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(StepError::sys("read", fifo.display(), e, "")),
        }
        if Instant::now() > deadline {
            return Err(StepError::msg(format!(
                "cannot start: the container init did not open {} (did it die?)",
                fifo.display()
            )));
        }
        let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        let _ = rustix::event::poll(&mut pfd, Some(&ts));
    }
}

/// `exec`: start a process inside a running container; returns once it has exec'd.
pub fn spawn_tenant(req: &ExecRequest) -> Result<Spawned, InitError> {
    let plan = security::ProcessPlan::new(req.process)?;
    let console = open_console(req.console_socket, plan.terminal)?;
    let ns = namespaces::plan_tenant(req.spec, req.init_pid)?;
    // A tenant is made by the intermediate (after setns), which clones it into the cgroup2
    // directory when it can (child.rs `clone_container_process`); else `drive` moves it.
    let (join, v2_dir) = open_cgroup_join(req.cgroup)?;
    let ctx = TenantCtx {
        common: child::Common::new(
            plan,
            console,
            req.seccomp,
            req.preserve_fds,
            join,
            v2_dir.as_ref().map(|d| d.as_fd()),
        )?,
        ns,
    };
    let (ours, theirs) = sync::pair()?;
    let first = super::sys::clone_fork(0)
        .map_err(|e| StepError::sys("fork", "the exec intermediate", e, ""))?;
    if first == 0 {
        drop(ours);
        child::tenant_main(&ctx, &theirs)
    }
    drop(theirs);
    let pid = drive(
        &ours,
        first,
        &ctx.ns,
        false,
        req.cgroup.map(|cg| (cg, false)),
    )?;
    // The socket is CLOEXEC: EOF means the exec succeeded; an error arrives as a message.
    match ours.recv() {
        Ok(Msg::Eof) => Ok(Spawned { pid }),
        other => Err(fail_child(other, pid, None)),
    }
}
