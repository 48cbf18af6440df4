//! The runc lifecycle end to end (root): create, state, start, kill, delete, run, exec,
//! ps, pause/resume, delete --force, and the console socket. Every test runs against runc
//! 1.1.5 (the baseline that proves the test right on this host) and against capsa-runc.
//! Assertions read the kernel (/proc, the freezer cgroup), not only the runtime's words.

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::{Bundle, Runner, Runtime, proc, unique_id, wait_until};
use std::fs;
use std::path::Path;
use std::time::Duration;

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// create → created → start → running → kill 9 → stopped → delete → does not exist.
fn create_start_kill_delete(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let id = unique_id("life");

    let (out, pid) = r.create(&b, &id, &[]);
    out.assert_ok("create");
    assert!(pid > 0, "create wrote no pid file");
    let st = r
        .state(&id)
        .unwrap_or_else(|o| panic!("state after create: {o}"));
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"], pid, "state pid vs --pid-file: {st}");
    assert_eq!(st["id"], id.as_str(), "{st}");
    assert_eq!(st["bundle"], b.path_str().as_str(), "{st}");
    assert!(
        st["ociVersion"].is_string() && st["created"].is_string(),
        "{st}"
    );
    assert!(
        proc::state_letter(pid).is_some(),
        "init {pid} is not alive after create"
    );
    assert!(
        !cmdline(pid).starts_with("sleep"),
        "user process ran before start"
    );

    r.cmd(&["start", &id]).assert_ok("start");
    assert!(r.wait_status(&id, "running"), "not running after start");
    assert!(
        wait_until(Duration::from_secs(5), || cmdline(pid) == "sleep 1000 "),
        "init did not exec the user process: cmdline {:?}",
        cmdline(pid)
    );

    r.cmd(&["kill", &id, "9"]).assert_ok("kill 9");
    assert!(r.wait_status(&id, "stopped"), "not stopped after kill");
    let st = r
        .state(&id)
        .unwrap_or_else(|o| panic!("state after kill: {o}"));
    assert_eq!(st["pid"], 0, "a stopped container reports pid 0: {st}");
    assert!(wait_until(Duration::from_secs(5), || proc::gone_or_zombie(
        pid
    )));

    r.cmd(&["delete", &id]).assert_ok("delete");
    let gone = r.cmd(&["state", &id]);
    assert_eq!(gone.code, Some(1), "state after delete must exit 1: {gone}");
    assert!(gone.stderr.contains("container does not exist"), "{gone}");
    let left = common::leftovers(&r, &id, b.path());
    assert!(left.is_empty(), "left behind after delete: {left:?}");
}
e2e!(
    create_start_kill_delete,
    runc_create_start_kill_delete,
    capsa_create_start_kill_delete
);

/// `run` in the foreground passes the container's output and exit code through.
fn run_foreground(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.hostname("lifecycle-host")
        .sh("echo out-from-$(hostname); echo err-line >&2; exit 3");
    let id = unique_id("run");
    let out = r.run(&b, &id);
    assert_eq!(
        out.code,
        Some(3),
        "run must return the container's exit code: {out}"
    );
    assert!(out.stdout.contains("out-from-lifecycle-host"), "{out}");
    assert!(out.stderr.contains("err-line"), "{out}");
    // A finished `run` deletes its container.
    let gone = r.cmd(&["state", &id]);
    assert!(gone.stderr.contains("container does not exist"), "{gone}");
    let left = common::leftovers(&r, &id, b.path());
    assert!(left.is_empty(), "left behind after run: {left:?}");
}
e2e!(run_foreground, runc_run_foreground, capsa_run_foreground);

/// `exec` into a running container: output and exit code, then the engines' form
/// (`exec --process F --detach --pid-file P`).
fn exec_into_running(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let id = unique_id("exec");
    r.create_and_start(&b, &id);

    let out = r.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); exit 4",
    ]);
    assert_eq!(
        out.code,
        Some(4),
        "exec must return the process's exit code: {out}"
    );
    assert!(
        out.stdout.contains("pid1=sleep 1000"),
        "exec did not run in the container's pid ns: {out}"
    );

    let process = serde_json::json!({
        "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
        "args": ["sh", "-c", "echo detached-$$ > /tmp/exec-detached"],
        "env": ["PATH=/bin"],
    });
    let pf = r.scratch().join("process.json");
    fs::write(&pf, process.to_string()).unwrap_or_else(|e| panic!("write {pf:?}: {e}"));
    let pid_file = r.scratch().join("exec.pid");
    let (pf_s, pid_s) = (pf.to_string_lossy(), pid_file.to_string_lossy());
    let out = r.cmd(&[
        "exec",
        "--process",
        &pf_s,
        "--detach",
        "--pid-file",
        &pid_s,
        &id,
    ]);
    out.assert_ok("exec --process --detach");
    let pid: i32 = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(pid > 0, "exec --pid-file wrote no pid");
    let marker = b.rootfs().join("tmp/exec-detached");
    assert!(
        wait_until(Duration::from_secs(5), || fs::read_to_string(&marker)
            .is_ok_and(|s| s.starts_with("detached-"))),
        "the detached exec process did not run"
    );
}
e2e!(
    exec_into_running,
    runc_exec_into_running,
    capsa_exec_into_running
);

/// `ps --format json` lists exactly the container's processes as host PIDs.
fn ps_lists_processes(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.sh("sleep 1001 & sleep 1002 & wait");
    let id = unique_id("ps");
    let init = r.create_and_start(&b, &id);
    let mut pids: Vec<i64> = Vec::new();
    let ok = wait_until(Duration::from_secs(5), || {
        let out = r.cmd(&["ps", "--format", "json", &id]);
        pids = serde_json::from_str(&out.stdout).unwrap_or_default();
        pids.len() == 3
    });
    assert!(ok, "ps --format json should list 3 pids, got {pids:?}");
    assert!(
        pids.contains(&i64::from(init)),
        "init {init} missing from {pids:?}"
    );
    let mut cmds: Vec<String> = pids.iter().map(|p| cmdline(*p as i32)).collect();
    cmds.sort();
    assert_eq!(
        cmds,
        [
            "sh -c sleep 1001 & sleep 1002 & wait ",
            "sleep 1001 ",
            "sleep 1002 "
        ],
        "ps pids are not the container's processes"
    );
}
e2e!(
    ps_lists_processes,
    runc_ps_lists_processes,
    capsa_ps_lists_processes
);

/// Whether PID is frozen by either freezer: the v1 `freezer.state` of its freezer cgroup, or the
/// v2 `cgroup.events` of its cgroup2 directory. On a hybrid host a runtime may use either one
/// (runc uses the v1 freezer; capsa freezes through the cgroup2 mount, which has `cgroup.freeze`
/// without any controller).
fn frozen(pid: i32) -> Option<bool> {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v1 = cg
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|x| x.1))
        .and_then(|path| {
            fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state")).ok()
        })
        .map(|s| s.trim() == "FROZEN");
    let v2 = cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .and_then(|path| {
            let unified = if Path::new("/sys/fs/cgroup/unified").is_dir() {
                "/sys/fs/cgroup/unified"
            } else {
                "/sys/fs/cgroup"
            };
            fs::read_to_string(format!("{unified}{path}/cgroup.events")).ok()
        });
    let v2 = v2.map(|ev| ev.lines().any(|l| l == "frozen 1"));
    match (v1, v2) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(false) || b.unwrap_or(false)),
    }
}

/// pause freezes every process (no progress, cgroup frozen), resume thaws them.
fn pause_resume(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.sh("i=0; while :; do i=$((i+1)); echo $i > /tmp/tick.new; mv /tmp/tick.new /tmp/tick 2>/dev/null || cat /tmp/tick.new > /tmp/tick; sleep 0.02; done");
    let id = unique_id("pause");
    let pid = r.create_and_start(&b, &id);
    let tick_file = b.rootfs().join("tmp/tick");
    let tick = || {
        fs::read_to_string(&tick_file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    assert!(
        wait_until(Duration::from_secs(5), || tick().is_some()),
        "container never ticked"
    );

    r.cmd(&["pause", &id]).assert_ok("pause");
    assert_eq!(r.status(&id), "paused");
    assert_eq!(
        frozen(pid),
        Some(true),
        "the container's cgroup is not frozen"
    );
    let t1 = tick();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(tick(), t1, "a paused container made progress");

    r.cmd(&["resume", &id]).assert_ok("resume");
    assert_eq!(r.status(&id), "running");
    assert_eq!(
        frozen(pid),
        Some(false),
        "the container's cgroup is still frozen"
    );
    assert!(
        wait_until(Duration::from_secs(5), || tick() > t1),
        "a resumed container made no progress"
    );
}
e2e!(pause_resume, runc_pause_resume, capsa_pause_resume);

/// `delete --force` on a running container kills it and removes everything.
fn delete_force_running(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let id = unique_id("force");
    let pid = r.create_and_start(&b, &id);
    assert_eq!(r.status(&id), "running");
    let refused = r.cmd(&["delete", &id]);
    assert!(
        !refused.ok(),
        "plain delete of a running container must fail: {refused}"
    );
    assert_eq!(
        r.status(&id),
        "running",
        "a refused delete must leave the container running"
    );

    r.cmd(&["delete", "--force", &id])
        .assert_ok("delete --force");
    assert!(
        wait_until(Duration::from_secs(5), || proc::gone_or_zombie(pid)),
        "init {pid} survived delete --force"
    );
    let gone = r.cmd(&["state", &id]);
    assert!(gone.stderr.contains("container does not exist"), "{gone}");
    let left = common::leftovers(&r, &id, b.path());
    assert!(
        left.is_empty(),
        "left behind after delete --force: {left:?}"
    );
}
e2e!(
    delete_force_running,
    runc_delete_force_running,
    capsa_delete_force_running
);

/// Named signals (`KILL`, `SIGKILL`) are accepted like numbers; a stopped container
/// refuses further signals with runc's `container not running`.
fn kill_named_signal(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let id = unique_id("sig");
    r.create_and_start(&b, &id);
    r.cmd(&["kill", &id, "SIGKILL"]).assert_ok("kill SIGKILL");
    assert!(r.wait_status(&id, "stopped"));
    let again = r.cmd(&["kill", &id, "KILL"]);
    assert!(
        !again.ok(),
        "killing a stopped container must fail: {again}"
    );
    assert!(again.stderr.contains("container not running"), "{again}");
}
e2e!(
    kill_named_signal,
    runc_kill_named_signal,
    capsa_kill_named_signal
);

mod console {
    use super::common::{Bundle, Runner, Runtime, receive_master, unique_id};
    use rustix::event::{PollFd, PollFlags, poll};
    use rustix::fd::AsFd;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};

    /// Reads from the master into `seen` until it holds `want` (or 10 s pass).
    fn read_until(master: &mut std::fs::File, seen: &mut String, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains(want) && Instant::now() < deadline {
            let mut pfd = [PollFd::new(master, PollFlags::IN)];
            let ts = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            if poll(&mut pfd, Some(&ts)).unwrap_or(0) == 0 {
                continue;
            }
            let mut buf = [0u8; 1024];
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    }

    /// `--console-socket` delivers a pty master (TIOCGPTN works on it) that talks to
    /// the container's shell.
    fn console_socket_pty(rt: Runtime) {
        require_root!();
        let Some(r) = Runner::new(rt) else { return };
        let mut b = Bundle::new();
        b.terminal(true).args(&["sh"]);
        let sock = r.scratch().join("console.sock");
        let listener = UnixListener::bind(&sock).unwrap_or_else(|e| panic!("bind {sock:?}: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let id = unique_id("tty");
        // The runtime connects during create; the kernel queues the connection, so
        // create can finish before we accept.
        let (out, _pid) = r.create(&b, &id, &["--console-socket", &sock.to_string_lossy()]);
        out.assert_ok("create --console-socket");
        let (master, payload) = receive_master(&listener);
        let pty_no = rustix::pty::ptsname(master.as_fd(), Vec::new()).unwrap_or_else(|e| {
            panic!("TIOCGPTN on the received fd failed ({e}): not a pty master")
        });
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            rustix::fd::AsRawFd::as_raw_fd(&master)
        ))
        .unwrap_or_default();
        assert!(
            link.to_string_lossy().ends_with("ptmx"),
            "fd is {link:?}, not a ptmx"
        );
        eprintln!("received {link:?} ({pty_no:?}), payload {payload:?}");

        r.cmd(&["start", &id]).assert_ok("start");
        let mut m = std::fs::File::from(master);
        // 6*7 is computed by the shell: "42-tty-ok" can only come from the container,
        // never from the terminal echoing our input back.
        m.write_all(b"echo $((6*7))-tty-ok; tty\n")
            .unwrap_or_else(|e| panic!("write master: {e}"));
        let mut seen = String::new();
        read_until(&mut m, &mut seen, "42-tty-ok");
        assert!(
            seen.contains("42-tty-ok"),
            "no answer from the shell through the pty: {seen:?}"
        );
        read_until(&mut m, &mut seen, "/dev/pts/");
        assert!(
            seen.contains("/dev/pts/"),
            "the shell's stdin is not a pts: {seen:?}"
        );
        let _ = m.write_all(b"exit 0\n");
        assert!(
            r.wait_status(&id, "stopped"),
            "shell did not exit on `exit`"
        );
    }
    e2e!(
        console_socket_pty,
        runc_console_socket_pty,
        capsa_console_socket_pty
    );
}

/// A new cgroup namespace is rooted at the container's own cgroups: every line of
/// /proc/self/cgroup inside shows `/` (cgroup_namespaces(7)), as under runc. Made before the
/// init joined its cgroups, the namespace would be rooted at the caller's and show `/<id>`.
fn cgroup_namespace_is_rooted_at_the_container(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.add_namespace(serde_json::json!({"type": "cgroup"}));
    b.args(&["cat", "/proc/self/cgroup"]);
    let id = unique_id("cgns");
    let out = r.run(&b, &id);
    out.assert_ok("run with a cgroup namespace");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(!lines.is_empty(), "no /proc/self/cgroup output: {out}");
    for l in lines {
        assert!(
            l.ends_with(":/"),
            "{l:?}: the cgroup namespace is not rooted at the container's cgroup\n{out}"
        );
    }
}
e2e!(
    cgroup_namespace_is_rooted_at_the_container,
    runc_cgroup_namespace_is_rooted_at_the_container,
    capsa_cgroup_namespace_is_rooted_at_the_container
);

/// The container's cgroup line for `controller` in /proc/PID/cgroup (`0::` for cgroup2).
fn cgroup_of(pid: i32, controller: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

/// The init (created, not started) and an `exec` process are each in the container's cgroup of
/// every hierarchy that has a limit (memory, pids, devices) and, on hosts with a cgroup2 mount,
/// in its cgroup2 directory, and the limit applies to that cgroup. capsa's init joins its v1
/// cgroups itself and is cloned into the cgroup2 one (cgroups::SelfJoin): this proves the join
/// really happened, per hierarchy, as the kernel reports it. A second container that joins the
/// first one's network namespace by path (a Kubernetes pod's shape: its init is made by an
/// intermediate process) is checked the same way.
fn every_process_joins_every_hierarchy(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    b.config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
    b.config["linux"]["resources"]["pids"] = serde_json::json!({"limit": 64});
    b.save();
    let id = unique_id("join");
    let (out, pid) = r.create(&b, &id, &[]);
    out.assert_ok("create");
    let mut controllers = vec!["memory", "pids", "devices"];
    if Path::new("/sys/fs/cgroup/unified").is_dir()
        || Path::new("/sys/fs/cgroup/cgroup.procs").exists()
    {
        controllers.push("");
    }
    let check = |pid: i32, who: &str, id: &str| {
        let want_suffix = format!("/{id}");
        for c in &controllers {
            let path = cgroup_of(pid, c)
                .unwrap_or_else(|| panic!("{who} {pid}: no {c:?} line in /proc/{pid}/cgroup"));
            assert!(
                path.ends_with(&want_suffix),
                "{who} {pid} is in {path:?} for {c:?}, not the container's cgroup"
            );
        }
    };
    check(pid, "init", &id);
    let mem = cgroup_of(pid, "memory").unwrap_or_default();
    if let Ok(limit) =
        fs::read_to_string(format!("/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes"))
    {
        assert_eq!(
            limit.trim(),
            "67108864",
            "memory limit of the init's cgroup {mem}"
        );
    }
    r.cmd(&["start", &id]).assert_ok("start");
    let pid_file = r.scratch().join("join-exec.pid");
    let out = r.cmd(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap_or_default(),
        &id,
        "sleep",
        "999",
    ]);
    out.assert_ok("exec --detach");
    let tenant: i32 = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("exec wrote no pid file: {out}"));
    r.own_pid(tenant);
    check(tenant, "exec process", &id);

    let mut pod = Bundle::new();
    pod.args(&["sleep", "998"]);
    pod.config["linux"]["namespaces"] = serde_json::json!([
        {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")}
    ]);
    pod.save();
    let pod_id = unique_id("joinpod");
    let (out, pod_pid) = r.create(&pod, &pod_id, &[]);
    out.assert_ok("create joining a network namespace by path");
    check(pod_pid, "init made by an intermediate", &pod_id);
    r.cmd(&["delete", "--force", &pod_id])
        .assert_ok("delete --force (pod)");
    r.cmd(&["delete", "--force", &id])
        .assert_ok("delete --force");
}
e2e!(
    every_process_joins_every_hierarchy,
    runc_every_process_joins_every_hierarchy,
    capsa_every_process_joins_every_hierarchy
);
