//! Detached lifecycle: `run -d`, `logs`, `exec`, `stop`, exit codes, `wait`, `rm`, `ps` after
//! the container is killed from outside, and cleanup: `--rm` and `rm -f` leave no mount,
//! cgroup or state behind.

#[path = "run_support/mod.rs"]
mod support;

use std::time::Duration;
use support::*;

fn ps_status(env: &Env, name: &str) -> String {
    let out = env.ok(&["ps", "-a", "--format", "{{.Names}}|{{.Status}}"]);
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}|")))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn detached_logs_exec_stop_rm() {
    let Some(env) = env() else { return };
    let n = name("life");
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            &n,
            IMAGE,
            "sh",
            "-c",
            "echo started; trap 'echo bye; exit 3' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert!(ps_status(&env, &n).starts_with("Up "));
    assert!(env.ok(&["ps", "--format", "{{.Names}}"]).contains(&n));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.ok(&["logs", &n]), "started\n");
    assert_eq!(env.ok(&["exec", &n, "hostname"]).trim(), &id[..12]);
    let out = env.capsa(&["exec", &n, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    env.ok(&["stop", "-t", "5", &n]);
    assert!(
        ps_status(&env, &n).starts_with("Exited (3)"),
        "{}",
        ps_status(&env, &n)
    );
    assert_eq!(env.ok(&["wait", &n]).trim(), "3");
    assert_eq!(env.ok(&["logs", &n]), "started\nbye\n");
    let v = env.inspect(&n);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert!(v["Capsa"]["Live"].is_null());
    // A stopped container starts again.
    env.ok(&["start", &n]);
    assert!(ps_status(&env, &n).starts_with("Up "));
    env.ok(&["rm", "-f", &n]);
    env.assert_gone(&id);
}

#[test]
fn killed_from_outside_shows_in_ps() {
    let Some(env) = env() else { return };
    let n = name("victim");
    let id = env
        .ok(&["run", "-d", "--name", &n, IMAGE, "sleep", "600"])
        .trim()
        .to_string();
    let pid = env.pid(&n);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::Signal::KILL,
    )
    .expect("kill");
    let mut status = String::new();
    for _ in 0..100 {
        status = ps_status(&env, &n);
        if status.starts_with("Exited (137)") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status.starts_with("Exited (137)"), "{status}");
    assert!(!env.ok(&["ps"]).contains(&n));
    env.ok(&["rm", &n]);
    env.assert_gone(&id);
}

#[test]
fn rm_refuses_running_and_rm_rf_cleans() {
    let Some(env) = env() else { return };
    let n = name("busy");
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            &n,
            "--memory",
            "64m",
            "--pids-limit",
            "20",
            IMAGE,
            "sleep",
            "600",
        ])
        .trim()
        .to_string();
    let out = env.capsa(&["rm", &n]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!(
        "cannot remove container \"/{n}\": container is running: stop the container before removing or force remove"
    )));
    env.ok(&["rm", "-f", &n]);
    env.assert_gone(&id);
}

#[test]
fn rm_flag_leaves_nothing() {
    let Some(env) = env() else { return };
    let out = env.ok(&["run", "--rm", IMAGE, "echo", "hi"]);
    assert_eq!(out, "hi\n");
    assert!(env.ids().is_empty());
    let missing = env.capsa(&["run", "--rm", IMAGE, "no-such-program"]);
    assert_eq!(missing.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("executable file not found"));
    assert!(env.ids().is_empty());
    let n = name("auto");
    let id = env
        .ok(&[
            "run",
            "-d",
            "--rm",
            "--name",
            &n,
            IMAGE,
            "sh",
            "-c",
            "sleep 1; exit 4",
        ])
        .trim()
        .to_string();
    // The record goes with the container; `wait` still gets the code (from the monitor).
    assert_eq!(env.ok(&["wait", &n]).trim(), "4");
    for _ in 0..100 {
        if env.ids().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    env.assert_gone(&id);
    let code = env
        .capsa(&["run", "--rm", IMAGE, "sh", "-c", "exit 42"])
        .status
        .code();
    assert_eq!(code, Some(42));
    assert!(env.ids().is_empty());
}

#[test]
fn init_reaper_is_pid_1() {
    let Some(env) = env() else { return };
    let out = env.capsa(&[
        "run", "--rm", "--init", IMAGE, "sh", "-c",
        "echo $$; tr '\\0' ' ' </proc/1/cmdline; echo; (sleep 0.1 &); sleep 0.3; grep -l zombie /proc/[0-9]*/status; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("2"), "{text}");
    assert!(
        lines.next().is_some_and(|l| l.contains("capsa-init")),
        "{text}"
    );
    // The orphaned sleep was reaped by PID 1: no zombie is left.
    assert_eq!(lines.next(), None, "{text}");
    assert!(env.ids().is_empty());
}

/// `--init` runs capsa from binds of its binary, loader and libc. A container holding
/// CAP_SYS_ADMIN can remount a read-only bind read-write, so the binds must be per-container
/// copies: the host's capsa and libc (CVE-2019-5736 class) stay out of reach.
#[test]
fn init_binds_are_copies_not_host_files() {
    use std::os::unix::fs::MetadataExt;
    let Some(env) = env() else { return };
    let host_exe = std::fs::metadata(&env.bin).unwrap();
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    let host_libc = std::fs::metadata(&libc).unwrap();
    let before = std::fs::read(&env.bin).unwrap();
    // A container with CAP_SYS_ADMIN (and mount allowed by seccomp) behind `--init`.
    let run_admin = |script: &str| {
        env.capsa(&[
            "run",
            "--rm",
            "--init",
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
    };
    let out = run_admin("stat -c '%d %i' /.capsa-init/capsa /.capsa-init/lib/libc.so.6");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let seen: Vec<(u64, u64)> = text
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u64>().unwrap());
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    assert_eq!(seen.len(), 2, "{text}");
    assert_ne!(
        seen[0],
        (host_exe.dev(), host_exe.ino()),
        "the host binary is bound in"
    );
    assert_ne!(
        seen[1],
        (host_libc.dev(), host_libc.ino()),
        "the host libc is bound in"
    );
    // The attack itself: remount the bind read-write and write through it.
    let out = run_admin(
        "mount -o remount,bind,rw /.capsa-init/capsa && echo >> /.capsa-init/capsa && echo wrote",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wrote"),
        "the attack did not run"
    );
    assert_eq!(
        std::fs::read(&env.bin).unwrap(),
        before,
        "the host binary changed"
    );
    assert!(env.ids().is_empty());
}

/// Runs `capsa ARGS` under script(1), which gives capsa a terminal of its own as an interactive
/// shell would; returns what the terminal showed and the exit code.
fn under_script(env: &Env, args: &str) -> (String, Option<i32>) {
    let cmd = format!("{} {args}", env.bin.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("CAPSA_ROOT", env.root.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

#[test]
fn tty_gets_a_pty_and_logs_keep_detached_output() {
    let Some(env) = env() else { return };
    let (text, code) = under_script(&env, &format!("run --rm -it {IMAGE} sh -c 'tty; exit 3'"));
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert_eq!(code, Some(3), "{text}");
    let n = name("dt");
    env.ok(&[
        "run",
        "-dt",
        "--name",
        &n,
        IMAGE,
        "sh",
        "-c",
        "tty; echo detached; sleep 600",
    ]);
    let (text, code) = under_script(&env, &format!("exec -it {n} sh -c 'tty; exit 6'"));
    assert!(text.contains("/dev/pts/1"), "{text}");
    assert_eq!(code, Some(6), "{text}");
    env.ok(&["kill", &n]);
    assert_eq!(env.ok(&["wait", &n]).trim(), "137");
    let logs = env.ok(&["logs", &n]);
    assert!(
        logs.contains("/dev/pts/0") && logs.contains("detached"),
        "{logs}"
    );
    env.ok(&["rm", &n]);
    assert!(env.ids().is_empty());
}

#[test]
fn exec_user_and_privileged() {
    let Some(env) = env() else { return };
    let n = name("exec");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &n,
        "--cap-drop=ALL",
        IMAGE,
        "sleep",
        "600",
    ]);
    assert_eq!(
        env.ok(&["exec", "-u", "65534", &n, "id", "-u"]).trim(),
        "65534"
    );
    assert_eq!(
        env.ok(&["exec", "-u", "nobody", &n, "id", "-g"]).trim(),
        "65534"
    );
    // A plain exec inherits the container's (empty) sets; --privileged gets all the host's.
    let plain = parse_caps(&env.ok(&["exec", &n, "grep", "Cap", "/proc/self/status"]));
    assert_eq!((plain.eff, plain.bnd), (0, 0));
    let privileged = parse_caps(&env.ok(&[
        "exec",
        "--privileged",
        &n,
        "grep",
        "Cap",
        "/proc/self/status",
    ]));
    let host = host_bounding() & ((1u64 << 41) - 1);
    assert_eq!(
        (
            privileged.eff,
            privileged.bnd,
            privileged.inh,
            privileged.amb
        ),
        (host, host, 0, 0)
    );
    env.ok(&["rm", "-f", &n]);
}

#[test]
fn ps_and_inspect_survive_the_monitor() {
    let Some(env) = env() else { return };
    let n = name("orphan");
    let id = env
        .ok(&["run", "-d", "--name", &n, IMAGE, "sleep", "600"])
        .trim()
        .to_string();
    let monitor = env.inspect(&n)["Capsa"]["MonitorPid"]
        .as_i64()
        .expect("monitor pid") as i32;
    assert!(monitor > 0);
    let kill = |pid: i32| {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).expect("pid"),
            rustix::process::Signal::KILL,
        )
        .expect("kill");
    };
    kill(monitor);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        ps_status(&env, &n).starts_with("Up "),
        "{}",
        ps_status(&env, &n)
    );
    assert_eq!(env.inspect(&n)["State"]["Running"], true);
    kill(env.pid(&n));
    let mut status = String::new();
    for _ in 0..100 {
        status = ps_status(&env, &n);
        if status.starts_with("Exited") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status.starts_with("Exited"), "{status}");
    assert_eq!(env.inspect(&n)["State"]["Running"], false);
    env.ok(&["rm", &n]);
    env.assert_gone(&id);
}
