//! The container side: the steps the init (and an `exec` tenant) runs, in order, between the
//! clone and execve. Each step is a named function with its own error text.
//!
//! Owns the step order (the comments cite the rule behind each ordering). Must not touch the
//! state store. Runs in a freshly cloned single-threaded process: no threads, no async.
//!
//! Order for the init (runc's standard init, with mounts done before pivot through fds):
//! non-dumpable → [join/unshare/fork] → join own v1 cgroups → wait GO → [wait JOINED, new cgroup namespace] → rslave,
//! root attached (host paths looked up with the host credentials) → [become root of a new user
//! namespace] → [overlay root] → setsid → keyring → mounts, devices, console, masked/readonly
//! paths → [wait JOINED: in our cgroups] → [HOOKS: the runtime runs prestart/createRuntime, we
//! wait for RESUME] → createContainer hooks → pivot_root → readonly root → hostname → sysctls →
//! oom_score_adj → rlimits → [no_new_privs] → [seccomp if !nnp] → fds CLOEXEC → chdir →
//! bounding → keepcaps → groups/gid/uid → keepcaps off → capset → ambient → verify cwd → look
//! up the executable and refuse our own binary → [seccomp if nnp] → READY → exec.fifo →
//! startContainer hooks → execve.

use std::cell::Cell;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::namespaces::NsPlan;
use super::sync::{Channel, Msg};
use super::{InitRequest, Step, StepError, exe_guard, namespaces, sys};
use crate::cgroups::SelfJoin;
use crate::{console, rootfs, security};

/// What both kinds of container process need after namespaces are set up.
pub struct Common<'a> {
    pub plan: security::ProcessPlan,
    /// Connected `--console-socket`, when a terminal is requested.
    pub console: Option<OwnedFd>,
    pub seccomp: Option<&'a crate::seccomp::SeccompFilter>,
    pub preserve_fds: u32,
    /// The host's /proc, opened before the clone: every procfs access of the child goes through
    /// it, so container mounts cannot redirect them (CVE-2025-52881).
    pub proc: OwnedFd,
    /// (dev, ino) of our own binary, refused as an exec target (CVE-2019-5736).
    pub self_exe: (u64, u64),
    /// The v1 `tasks` files the process writes `0` to, to join its cgroups itself (taken, used
    /// and closed by `join_own_cgroups`; `cgroups::SelfJoin` says why).
    pub cgroup_join: Cell<Option<SelfJoin>>,
    /// The container's cgroup2 directory (held open by the runtime), for the intermediate's
    /// clone of the container process (`become_container_process`).
    pub cgroup_v2: Option<BorrowedFd<'a>>,
}

impl<'a> Common<'a> {
    pub fn new(
        plan: security::ProcessPlan,
        console: Option<OwnedFd>,
        seccomp: Option<&'a crate::seccomp::SeccompFilter>,
        preserve_fds: u32,
        cgroup_join: Option<SelfJoin>,
        cgroup_v2: Option<BorrowedFd<'a>>,
    ) -> Step<Self> {
        let proc = rustix::fs::open(
            "/proc",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| StepError::sys("open", "/proc", e, "is procfs mounted on the host?"))?;
        let st = rustix::fs::statat(&proc, "self/exe", rustix::fs::AtFlags::empty())
            .map_err(|e| StepError::sys("stat", "/proc/self/exe", e, ""))?;
        Ok(Common {
            plan,
            console,
            seccomp,
            preserve_fds,
            proc,
            self_exe: (st.st_dev, st.st_ino),
            cgroup_join: Cell::new(cgroup_join),
            cgroup_v2,
        })
    }
}

/// The init's context.
pub struct InitCtx<'a> {
    pub req: &'a InitRequest<'a>,
    pub common: Common<'a>,
    pub ns: NsPlan,
    pub rootfs: rootfs::RootfsPlan,
    /// Detached mounts made on the host (user namespaces only).
    pub detached: rootfs::userns::Detached,
    /// O_PATH handle of exec.fifo, reopened for writing at the end.
    pub fifo_fd: OwnedFd,
    pub hostname: Option<Vec<u8>>,
}

/// An `exec` tenant's context.
pub struct TenantCtx<'a> {
    pub common: Common<'a>,
    pub ns: NsPlan,
}

/// Entry of the cloned init. Never returns: execs or exits after reporting the error.
pub fn init_main(ctx: &InitCtx, chan: &Channel, fast: bool) -> ! {
    let err = match run_init(ctx, chan, fast) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report_and_exit(chan, err)
}

/// Entry of the cloned `exec` intermediate.
pub fn tenant_main(ctx: &TenantCtx, chan: &Channel) -> ! {
    let err = match run_tenant(ctx, chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report_and_exit(chan, err)
}

fn report_and_exit(chan: &Channel, err: StepError) -> ! {
    if chan.send(&Msg::Err(err.0.clone())).is_err() {
        eprintln!("capsa: {err}");
    }
    sys::exit_now(1)
}

fn run_init(ctx: &InitCtx, chan: &Channel, fast: bool) -> Step<Infallible> {
    first_steps()?;
    if !fast {
        become_container_process(&ctx.ns, ctx.common.cgroup_v2, chan)?;
    }
    join_own_cgroups(&ctx.common)?;
    wait_go(chan)?;
    if ctx.ns.cgroup_ns_after_join {
        // The new cgroup namespace is rooted at our cgroups once we are in them, and the
        // cgroup mounts below show its root.
        wait_joined(chan)?;
        sys::unshare_namespaces(libc::CLONE_NEWCGROUP as u64).map_err(|e| {
            StepError::sys("unshare", "a cgroup namespace", e, "is CONFIG_CGROUPS set?")
        })?;
    }
    // Host paths are looked up before we become root of our user namespace (rootfs::userns).
    rootfs::make_rslave()?;
    let early =
        rootfs::userns::attach_early(&ctx.rootfs.root_source, &ctx.rootfs.rootfs, &ctx.detached)?;
    enter_new_userns_as_root(&ctx.ns)?;
    let root = rootfs::userns::finish_root(early)?;
    new_session()?;
    if !ctx.req.no_new_keyring {
        new_keyring(ctx.req.id)?;
    }
    let root = rootfs::prepare(&ctx.rootfs, root, &ctx.detached)?;
    if ctx.common.plan.terminal {
        console::setup_in_rootfs(&root, ctx.common.console.as_ref(), true)?;
    }
    rootfs::protect_paths(&ctx.rootfs, &root)?;
    if !ctx.ns.cgroup_ns_after_join {
        // Hooks run as our children and the container after us: both inside the cgroups.
        wait_joined(chan)?;
    }
    if ctx.req.runtime_hooks.is_some() {
        pause_for_runtime_hooks(chan)?;
    }
    run_hooks(ctx, Hook::CreateContainer)?;
    rootfs::enter(&ctx.rootfs, root)?;
    set_hostname(ctx.hostname.as_deref())?;
    security::write_sysctls(&ctx.rootfs.sysctls, &ctx.common.proc)?;
    security::apply_oom_score_adj(&ctx.common.plan, &ctx.common.proc)?;
    security::apply_rlimits(&ctx.common.plan)?;
    finish(&ctx.common, chan, Some(ctx))
}

fn run_tenant(ctx: &TenantCtx, chan: &Channel) -> Step<Infallible> {
    first_steps()?;
    become_container_process(&ctx.ns, ctx.common.cgroup_v2, chan)?;
    join_own_cgroups(&ctx.common)?;
    wait_go(chan)?;
    wait_joined(chan)?;
    new_session()?;
    if ctx.common.plan.terminal {
        let root = rootfs::open_root_dir("/")?;
        console::setup_in_rootfs(&root, ctx.common.console.as_ref(), false)?;
    }
    security::apply_oom_score_adj(&ctx.common.plan, &ctx.common.proc)?;
    security::apply_rlimits(&ctx.common.plan)?;
    finish(&ctx.common, chan, None)
}

/// Non-dumpable before anything of the container exists: /proc/<pid>/{exe,fd,mem} of a
/// non-dumpable task need CAP_SYS_PTRACE over the mm's user namespace (ptrace_may_access), so a
/// container process cannot reach our binary or our host fds through them (CVE-2019-5736).
/// umask 0 while we create device nodes and mount points: modes come from the spec.
fn first_steps() -> Step {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| StepError::sys("set", "PR_SET_DUMPABLE=0", e, ""))?;
    rustix::process::umask(Mode::empty());
    Ok(())
}

/// Slow path: join the namespaces given by path, unshare the new ones, and fork the real
/// container process with CLONE_PARENT (so the runtime can wait for it; setns/unshare of a pid
/// namespace only applies to children, pid_namespaces(7)). The intermediate reports and exits.
fn become_container_process(ns: &NsPlan, v2: Option<BorrowedFd<'_>>, chan: &Channel) -> Step {
    namespaces::join_all(ns)?;
    if ns.new_flags != 0 {
        sys::unshare_namespaces(ns.new_flags)
            .map_err(|e| StepError::sys("unshare", "the container namespaces", e, "unshare(2)"))?;
    }
    if ns.new_flags & libc::CLONE_NEWUSER as u64 != 0 {
        chan.send(&Msg::Maps)?;
        match chan.recv()? {
            Msg::MapsDone => {}
            m => return Err(StepError::msg(format!("expected MapsDone, got {m:?}"))),
        }
    }
    let (pid, in_v2) = clone_container_process(ns, v2)?;
    if pid == 0 {
        return first_steps();
    }
    let _ = chan.send(&if in_v2 {
        Msg::PidInCgroup(pid)
    } else {
        Msg::Pid(pid)
    });
    sys::exit_now(0)
}

/// The intermediate's clone (CLONE_PARENT), straight into the cgroup2 directory when it can:
/// the runtime's `cgroup.procs` write would otherwise wait for an RCU grace period
/// (`cgroups::SelfJoin`). Not from inside a user namespace: CLONE_INTO_CGROUP checks write access
/// to the cgroup with our credentials, which there are not host root's.
fn clone_container_process(ns: &NsPlan, v2: Option<BorrowedFd<'_>>) -> Step<(i32, bool)> {
    let flags = libc::CLONE_PARENT as u64;
    let in_userns = ns.new_flags & libc::CLONE_NEWUSER as u64 != 0
        || ns
            .joins
            .iter()
            .any(|(t, _, _)| *t == oci_spec::runtime::LinuxNamespaceType::User);
    // If refused (old kernel, permissions, a cgroup namespace), the runtime moves it by
    // cgroup.procs.
    if let (Some(dir), false) = (v2, in_userns)
        && let Ok(pid) = sys::clone_fork_into(flags, dir)
    {
        return Ok((pid, true));
    }
    sys::clone_fork(flags)
        .map(|pid| (pid, false))
        .map_err(|e| StepError::sys("clone", "the container process", e, "CLONE_PARENT"))
}

/// Joins the container's v1 cgroups from inside, before any container code can run or fork
/// (the runtime adds the v2 part: by CLONE_INTO_CGROUP, or by `cgroup.procs`), and closes the
/// host cgroupfs handles. We are single-threaded, so moving this thread moves the process.
fn join_own_cgroups(c: &Common) -> Step {
    if let Some(join) = c.cgroup_join.take() {
        join.join_v1_self().map_err(|e| {
            StepError::sys(
                "join",
                "the container's v1 cgroups (writing 0 to their tasks files)",
                e,
                "cgroups need root",
            )
        })?;
    }
    Ok(())
}

fn wait_joined(chan: &Channel) -> Step {
    match chan.recv()? {
        Msg::Joined => Ok(()),
        Msg::Eof => sys::exit_now(1),
        m => Err(StepError::msg(format!(
            "expected Joined from the runtime, got {m:?}"
        ))),
    }
}

fn wait_go(chan: &Channel) -> Step {
    match chan.recv()? {
        Msg::Go => Ok(()),
        Msg::Eof => sys::exit_now(1),
        m => Err(StepError::msg(format!(
            "expected Go from the runtime, got {m:?}"
        ))),
    }
}

/// runtime-spec config.md: createRuntime (and the deprecated prestart) run in the runtime
/// namespace "after the runtime environment has been created" and before pivot_root, then
/// createContainer in ours, also before pivot_root (runc's order too: the parent runs them on
/// its procHooks message, after the mounts are made). We stop here until the runtime has run
/// them; a failed hook arrives as EOF (the runtime kills us).
fn pause_for_runtime_hooks(chan: &Channel) -> Step {
    chan.send(&Msg::Hooks)?;
    match chan.recv()? {
        Msg::Resume => Ok(()),
        Msg::Eof => sys::exit_now(1),
        m => Err(StepError::msg(format!(
            "expected Resume from the runtime after its hooks, got {m:?}"
        ))),
    }
}

/// In a user namespace we created, become its root: the maps are written, and our host uid 0
/// is usually not mapped, so we would act as the overflow uid (user_namespaces(7)).
fn enter_new_userns_as_root(ns: &NsPlan) -> Step {
    if ns.new_flags & libc::CLONE_NEWUSER as u64 == 0 {
        return Ok(());
    }
    let root_g = rustix::process::Gid::ROOT;
    let root_u = rustix::process::Uid::ROOT;
    rustix::thread::set_thread_res_gid(root_g, root_g, root_g).map_err(|e| {
        StepError::sys(
            "setresgid",
            "0 in the user namespace",
            e,
            "is gid 0 mapped?",
        )
    })?;
    rustix::thread::set_thread_res_uid(root_u, root_u, root_u).map_err(|e| {
        StepError::sys(
            "setresuid",
            "0 in the user namespace",
            e,
            "is uid 0 mapped?",
        )
    })?;
    Ok(())
}

/// A new session, so the container does not share the caller's controlling terminal.
fn new_session() -> Step {
    // EPERM only if we already lead a process group, which a fresh clone never does.
    let _ = rustix::process::setsid();
    Ok(())
}

/// A fresh session keyring (runc names it after the container id); ENOSYS when keys are off.
fn new_keyring(id: &str) -> Step {
    let name = CString::new(id).map_err(|_| StepError::msg("container id contains NUL"))?;
    match sys::join_session_keyring(&name) {
        Ok(()) | Err(rustix::io::Errno::NOSYS) => Ok(()),
        Err(e) => Err(StepError::sys(
            "join",
            "a new session keyring",
            e,
            "use --no-new-keyring",
        )),
    }
}

fn set_hostname(name: Option<&[u8]>) -> Step {
    if let Some(name) = name {
        rustix::system::sethostname(name).map_err(|e| {
            StepError::sys(
                "sethostname",
                String::from_utf8_lossy(name),
                e,
                "is there a uts namespace?",
            )
        })?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Hook {
    CreateContainer,
    StartContainer,
}

fn run_hooks(ctx: &InitCtx, which: Hook) -> Step {
    let hooks = ctx.req.spec.hooks().as_ref().and_then(|h| match which {
        Hook::CreateContainer => h.create_container().as_ref(),
        Hook::StartContainer => h.start_container().as_ref(),
    });
    let Some(hooks) = hooks.filter(|h| !h.is_empty()) else {
        return Ok(());
    };
    let status = match which {
        Hook::CreateContainer => "creating",
        Hook::StartContainer => "created",
    };
    let state = serde_json::json!({
        "ociVersion": ctx.req.spec.version(),
        "id": ctx.req.id,
        "status": status,
        "pid": rustix::process::getpid().as_raw_nonzero().get(),
        "bundle": ctx.req.bundle,
        "annotations": ctx.req.spec.annotations().clone().unwrap_or_default(),
    });
    crate::hooks::run_all(hooks, state.to_string().as_bytes())
        .map_err(|e| StepError::msg(format!("hook failed: {e}")))
}

/// The tail shared by the init and tenants: security settings in runc's order, then exec.
fn finish(c: &Common, chan: &Channel, init: Option<&InitCtx>) -> Step<Infallible> {
    let p = &c.plan;
    if p.no_new_privs {
        security::set_no_new_privs()?;
    } else {
        // Loading a filter without no_new_privs needs CAP_SYS_ADMIN (seccomp(2)): before caps drop.
        load_seccomp(c)?;
    }
    security::close_fds_on_exec(c.preserve_fds)?;
    let early_cwd = security::chdir(&p.cwd);
    security::apply_identity(p)?;
    if early_cwd.is_err() {
        // Retried as the container user: a 0700 directory of that user is not searchable by root
        // without CAP_DAC_OVERRIDE in user namespaces.
        security::chdir(&p.cwd)?;
    }
    security::verify_cwd(&p.cwd)?;
    let exe = security::look_path(p)?;
    exe_guard::refuse_self(&exe, c.self_exe)?;
    if p.no_new_privs {
        // As late as possible, so the filter need not allow our own setup syscalls (runc).
        load_seccomp(c)?;
    }
    if let Some(ctx) = init {
        chan.send(&Msg::Ready)?;
        wait_for_start(ctx, &c.proc)?;
        run_hooks(ctx, Hook::StartContainer)?;
    }
    let err = sys::execve(&exe, &p.args, &p.env);
    Err(StepError::sys(
        "exec",
        exe.to_string_lossy(),
        err,
        "is it an executable for this architecture?",
    ))
}

fn load_seccomp(c: &Common) -> Step {
    if let Some(f) = c.seccomp {
        f.load()
            .map_err(|e| StepError::msg(format!("cannot load the seccomp filter: {e}")))?;
    }
    Ok(())
}

/// Block until `start`: reopen exec.fifo for writing through the trusted /proc (open blocks until
/// the reader arrives, fifo(7)) and write one byte.
fn wait_for_start(ctx: &InitCtx, proc: &OwnedFd) -> Step {
    let path = format!("self/fd/{}", ctx.fifo_fd.as_raw_fd());
    let fd = rustix::fs::openat(
        proc.as_fd(),
        path.as_str(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::sys("open", "exec.fifo", e, "was the state directory removed?"))?;
    rustix::io::write(&fd, b"0").map_err(|e| StepError::sys("write", "exec.fifo", e, ""))?;
    Ok(())
}
