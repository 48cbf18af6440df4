//! Root-only end-to-end checks of `init::spawn`/`start`/`spawn_tenant` without the CLI:
//! a busybox bundle is started and what the kernel reports inside is compared with the config.
//! Skipped (with a message) when not root or when busybox-static is missing.

use std::path::{Path, PathBuf};

use capsa_runtime::init::{self, ExecRequest, InitRequest};
use oci_spec::runtime::Spec;

const BUSYBOX: &str = "/bin/busybox";

fn can_run() -> bool {
    let ok = rustix::process::geteuid().is_root() && Path::new(BUSYBOX).exists();
    if !ok {
        eprintln!("skipped: needs root and {BUSYBOX}");
    }
    ok
}

/// A bundle with a busybox rootfs and an /out bind mount; returns (bundle, out dir).
fn bundle(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for app in [
        "sh", "cat", "grep", "hostname", "id", "sleep", "ls", "true", "readlink", "stat",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Writable by the exec test's uid 1000.
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (root, out)
}

fn spec(out: &Path, script: &str, extra: impl FnOnce(&mut serde_json::Value)) -> Spec {
    let mut v = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", script],
            "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1000}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "capsa-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/sys"]
        }
    });
    extra(&mut v);
    serde_json::from_value(v).unwrap()
}

fn wait(pid: i32) -> i32 {
    let p = rustix::process::Pid::from_raw(pid).unwrap();
    let (_, st) = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty())
        .unwrap()
        .unwrap();
    st.exit_status().unwrap_or(-1)
}

fn run(dir: &Path, spec: &Spec, root: &Path) -> Result<i32, init::InitError> {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let req = InitRequest {
        id: "t1",
        spec,
        bundle: dir,
        rootfs: root,
        state_dir: &state,
        console_socket: None,
        preserve_fds: 0,
        no_pivot: false,
        no_new_keyring: false,
        cgroup: None,
        seccomp: None,
        runtime_hooks: None,
    };
    let s = init::spawn(&req)?;
    assert!(state.join("exec.fifo").exists());
    init::start(&state)?;
    assert!(!state.join("exec.fifo").exists());
    Ok(wait(s.pid))
}

#[test]
fn container_sees_what_the_config_says() {
    if !can_run() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (root, out) = bundle(t.path());
    let script = "grep -E '^(Cap|NoNewPrivs|Uid|Gid)' /proc/self/status > /out/status; hostname > /out/hostname; \
                  echo $$ > /out/pid; cat /proc/self/limits | grep 'open files' > /out/limits; \
                  ls /dev > /out/dev; readlink /dev/ptmx > /out/ptmx; \
                  touch /x 2> /out/rofs; cat /proc/keys > /out/kcore 2>&1; echo ok > /out/done";
    let s = spec(&out, script, |_| {});
    assert_eq!(run(t.path(), &s, &root).unwrap(), 0);
    let status = std::fs::read_to_string(out.join("status")).unwrap();
    let bits = (1u64 << 29) | (1 << 5) | (1 << 10);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            status.contains(&format!("{key}:\t{bits:016x}")),
            "{key} in {status}"
        );
    }
    assert!(
        status.contains("CapInh:\t0000000000000000")
            && status.contains("CapAmb:\t0000000000000000"),
        "{status}"
    );
    assert!(status.contains("NoNewPrivs:\t1"));
    assert_eq!(
        std::fs::read_to_string(out.join("hostname"))
            .unwrap()
            .trim(),
        "capsa-test"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("pid")).unwrap().trim(),
        "1"
    );
    let limits = std::fs::read_to_string(out.join("limits")).unwrap();
    assert!(
        limits.contains("1000") && limits.contains("1024"),
        "{limits}"
    );
    let dev = std::fs::read_to_string(out.join("dev")).unwrap();
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "fd", "stdin",
    ] {
        assert!(
            dev.split_whitespace().any(|x| x == d),
            "/dev/{d} missing: {dev}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(out.join("ptmx")).unwrap().trim(),
        "pts/ptmx"
    );
    assert!(
        std::fs::read_to_string(out.join("rofs"))
            .unwrap()
            .contains("Read-only")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("kcore")).unwrap().trim(),
        "",
        "/proc/keys is masked by /dev/null"
    );
}

#[test]
fn errors_come_back_from_the_child_and_nothing_is_left() {
    if !can_run() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (root, out) = bundle(t.path());
    // /proc as a symlink in the image: refused (CVE-2023-27561).
    std::fs::remove_dir(root.join("proc")).unwrap();
    std::os::unix::fs::symlink("/tmp", root.join("proc")).unwrap();
    let s = spec(&out, "true", |_| {});
    let err = run(t.path(), &s, &root).unwrap_err().to_string();
    assert!(err.contains("CVE-2023-27561"), "{err}");
    assert!(!t.path().join("state/exec.fifo").exists());
    // A missing executable is reported with runc's text.
    std::fs::remove_file(root.join("proc")).unwrap();
    std::fs::create_dir(root.join("proc")).unwrap();
    let s = spec(&out, "true", |v| {
        v["process"]["args"] = serde_json::json!(["nosuchprog"])
    });
    let err = run(t.path(), &s, &root).unwrap_err().to_string();
    assert!(err.contains("executable file not found in $PATH"), "{err}");
}

#[test]
fn exec_joins_a_running_container() {
    if !can_run() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (root, out) = bundle(t.path());
    let s = spec(&out, "sleep 30", |_| {});
    let state = t.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let req = InitRequest {
        id: "t3",
        spec: &s,
        bundle: t.path(),
        rootfs: &root,
        state_dir: &state,
        console_socket: None,
        preserve_fds: 0,
        no_pivot: false,
        no_new_keyring: false,
        cgroup: None,
        seccomp: None,
        runtime_hooks: None,
    };
    let init_proc = init::spawn(&req).unwrap();
    init::start(&state).unwrap();
    let process: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
        "user": {"uid": 1000, "gid": 1000}, "cwd": "/tmp", "env": ["PATH=/bin"],
        "args": ["/bin/sh", "-c", "hostname > /out/exec_host; id -u > /out/exec_uid; echo $$ > /out/exec_pid; grep CapEff /proc/self/status > /out/exec_caps"],
        "capabilities": {"bounding": ["CAP_KILL"]}
    }))
    .unwrap();
    let ereq = ExecRequest {
        id: "t3",
        init_pid: init_proc.pid,
        spec: &s,
        process: &process,
        console_socket: None,
        preserve_fds: 0,
        cgroup: None,
        seccomp: None,
    };
    let tenant = init::spawn_tenant(&ereq).unwrap();
    assert_eq!(wait(tenant.pid), 0);
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(init_proc.pid).unwrap(),
        rustix::process::Signal::KILL,
    );
    wait(init_proc.pid);
    assert_eq!(
        std::fs::read_to_string(out.join("exec_host"))
            .unwrap()
            .trim(),
        "capsa-test"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("exec_uid"))
            .unwrap()
            .trim(),
        "1000"
    );
    let pid: i32 = std::fs::read_to_string(out.join("exec_pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        pid > 1 && pid < 100,
        "pid in the container's namespace: {pid}"
    );
    assert!(
        std::fs::read_to_string(out.join("exec_caps"))
            .unwrap()
            .contains("0000000000000000")
    );
}
