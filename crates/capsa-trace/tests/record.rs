//! Root tests on the real kernel: record real processes (no containers) through the
//! capability:cap_capable tracepoint and assert the classified proposal.
//!
//! Each workload is a child of this test gated in a shell `read` before its exec. Only the PIDs
//! these tests start are ever killed. The tests run one at a time (a lock) so that each can
//! check that its tracefs instance is gone afterwards.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use capsa_caps::{Cap, CapSet};
use capsa_trace::{Format, Proposal, Recorder, RecorderOptions};

static SERIAL: Mutex<()> = Mutex::new(());

fn cap(name: &str) -> Cap {
    Cap::from_oci_name(&format!("CAP_{name}")).unwrap_or_else(|| panic!("unknown cap {name}"))
}

fn caps(names: &[&str]) -> CapSet {
    names.iter().map(|n| cap(n)).collect()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `cmd` gated before its exec, starts the recorder, releases the child.
fn start(cmd: &[&str]) -> (Child, Recorder) {
    start_with(cmd, RecorderOptions::default())
}

fn start_with(cmd: &[&str], opts: RecorderOptions) -> (Child, Recorder) {
    let mut child = Command::new("/bin/sh")
        .args(["-c", "read -r gate; exec \"$@\"", "sh"])
        .args(cmd)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let rec = match Recorder::start_with(child.id() as i32, opts) {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Recorder::start: {e}");
        }
    };
    if let Some(mut gate) = child.stdin.take() {
        gate.write_all(b"go\n")
            .unwrap_or_else(|e| panic!("release gate: {e}"));
    }
    (child, rec)
}

/// Stops the recording, checks that the instance is gone, and proposes.
fn finish(rec: Recorder) -> Proposal {
    let dir = rec.instance().to_path_buf();
    assert!(dir.exists());
    let recording = rec.stop().unwrap_or_else(|e| panic!("stop: {e}"));
    assert!(!dir.exists(), "instance {} left behind", dir.display());
    assert_eq!(recording.lost_events, 0, "events were lost");
    let p = Proposal::from_recording(&recording);
    eprintln!("{}", p.render(Format::Text));
    assert!(p.complete);
    // Never proposed: the overcommit SYS_ADMIN and the capset SETPCAP probes.
    assert!(!p.caps.contains(cap("SYS_ADMIN")), "SYS_ADMIN proposed");
    for probe in &p.probes {
        assert!(!p.needs.iter().any(|n| {
            n.cap == probe.cap
                && n.evidence
                    .iter()
                    .any(|e| e.path.contains("vm_enough") || e.path == "cap_capset")
        }));
    }
    p
}

fn record(cmd: &[&str]) -> (Proposal, ExitStatus) {
    let (mut child, rec) = start(cmd);
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    (finish(rec), status)
}

/// A unique loopback address so that parallel tests and host services never collide.
fn loopback() -> Ipv4Addr {
    let n = std::process::id();
    Ipv4Addr::new(127, 77, (n >> 8) as u8, (n as u8).max(2))
}

/// Runs busybox httpd on addr:port until it accepts a connection, then kills it (our child).
fn httpd(port: u16) -> Proposal {
    let addr = loopback();
    let bind = format!("{addr}:{port}");
    let www = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let www = www.path().to_string_lossy().into_owned();
    let (mut child, rec) = start(&["busybox", "httpd", "-f", "-p", &bind, "-h", &www]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut up = false;
    while Instant::now() < deadline && !up {
        up = TcpStream::connect_timeout(
            &SocketAddrV4::new(addr, port).into(),
            Duration::from_millis(200),
        )
        .is_ok();
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("httpd exited early: {s}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "httpd never listened on {bind}");
    finish(rec)
}

#[test]
fn ping_needs_net_raw() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !have("ping") {
        eprintln!("SKIP: ping is not installed (iputils-ping, scripts/install-deps.sh)");
        return;
    }
    let (p, status) = record(&["ping", "-c1", "-W2", "127.0.0.1"]);
    assert!(status.success());
    assert_eq!(p.caps, caps(&["NET_RAW"]));
    let need = &p.needs[0];
    assert!(
        need.evidence.iter().any(|e| e.path == "inet_create"),
        "{:?}",
        need.evidence
    );
}

#[test]
fn chown_needs_chown() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap_or_else(|e| panic!("write: {e}"));
    let (p, status) = record(&["chown", "1234", &f.to_string_lossy()]);
    assert!(status.success());
    assert_eq!(p.caps, caps(&["CHOWN"]));
    assert_eq!(p.needs[0].evidence[0].path, "setattr_prepare");
}

/// The binary reader (trace_pipe_raw) and the text fallback (trace_pipe) see the same checks
/// with the same kernel paths, over a burst of short processes.
#[test]
fn raw_and_text_readers_agree() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap_or_else(|e| panic!("write: {e}"));
    let script = format!(
        "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; chown 1234 {}",
        f.display()
    );
    let mut seen = Vec::new();
    let mut events = Vec::new();
    for text in [false, true] {
        let opts = RecorderOptions {
            text,
            ..RecorderOptions::default()
        };
        let (mut child, rec) = start_with(&["sh", "-c", &script], opts);
        assert!(child.wait().is_ok_and(|s| s.success()));
        let dir = rec.instance().to_path_buf();
        let r = rec.stop().unwrap_or_else(|e| panic!("stop: {e}"));
        assert!(!dir.exists(), "instance {} left behind", dir.display());
        assert_eq!(r.lost_events, 0, "events were lost (text: {text})");
        let mut checks: Vec<(String, String, bool)> = r
            .checks
            .iter()
            .map(|c| (c.cap.oci_name(), c.path.clone(), c.granted))
            .collect();
        checks.sort();
        checks.dedup();
        // 200 execs of true make about 8 overcommit probes each.
        assert!(r.events >= 1600, "only {} events (text: {text})", r.events);
        events.push(r.events);
        seen.push(checks);
    }
    assert_eq!(seen[0], seen[1], "raw (left) and text (right) differ");
    // Separate runs of the same loop: the counts may differ by a few stack-growth checks.
    assert!(
        events[0].abs_diff(events[1]) * 50 <= events[0],
        "{events:?}"
    );
    assert!(
        seen[0]
            .iter()
            .any(|c| c.0 == "CAP_CHOWN" && c.1 == "setattr_prepare"),
        "{:?}",
        seen[0]
    );
}

#[test]
fn port_80_needs_net_bind_service() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(httpd(80).caps, caps(&["NET_BIND_SERVICE"]));
}

#[test]
fn port_8080_needs_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(httpd(8080).caps, CapSet::EMPTY);
}

#[test]
fn ls_needs_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (p, status) = record(&["ls", "/"]);
    assert!(status.success());
    assert_eq!(p.caps, CapSet::EMPTY);
    assert!(
        p.probes.iter().any(|pr| pr.cap == cap("SYS_ADMIN")),
        "the overcommit probe is seen and ignored"
    );
}

#[test]
fn reading_another_users_file_gives_dac_alternatives() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let f = dir.path().join("secret");
    std::fs::write(&f, b"s").unwrap_or_else(|e| panic!("write: {e}"));
    let path = f.to_string_lossy().into_owned();
    let ok = Command::new("sh")
        .args([
            "-c",
            &format!("chown 1234:1234 '{path}' && chmod 0600 '{path}'"),
        ])
        .status();
    assert!(ok.is_ok_and(|s| s.success()));
    let (p, status) = record(&["cat", &path]);
    assert!(status.success());
    assert_eq!(p.caps.len(), 1);
    assert_eq!(
        p.alternatives(),
        vec![(cap("DAC_OVERRIDE"), vec![cap("DAC_READ_SEARCH")])]
    );
}

#[test]
fn setuid_needs_setuid() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (p, status) = record(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "id",
    ]);
    assert!(status.success());
    assert!(p.caps.contains(cap("SETUID")), "{:?}", p.caps);
    assert!(p.caps.contains(cap("SETGID")), "{:?}", p.caps);
    assert!(!p.caps.contains(cap("SETPCAP")), "{:?}", p.caps);
}

#[test]
fn denials_under_a_reduced_bounding_set_are_reported_not_proposed() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap_or_else(|e| panic!("write: {e}"));
    let (p, status) = record(&[
        "setpriv",
        "--bounding-set=-all",
        "chown",
        "1234",
        &f.to_string_lossy(),
    ]);
    assert!(!status.success());
    assert!(!p.caps.contains(cap("CHOWN")));
    assert!(
        p.denials
            .iter()
            .any(|d| d.caps.contains(cap("CHOWN")) && d.path == "setattr_prepare"),
        "{:?}",
        p.denials
    );
}

#[test]
fn failed_exec_of_file_cap_binary_is_a_denial() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let bin = dir.path().join("fcap-true");
    std::fs::copy("/bin/true", &bin).unwrap_or_else(|e| panic!("copy: {e}"));
    let bin = bin.to_string_lossy().into_owned();
    if !Command::new("setcap")
        .args(["cap_net_raw=ep", &bin])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIP: setcap failed");
        return;
    }
    // A shell under an empty bounding set runs the file-cap binary: execve fails with EPERM and
    // the kernel emits no cap_capable event; the sys_exit_execve event reports it.
    let script = format!("'{bin}'; exit 0");
    let (p, _) = record(&["setpriv", "--bounding-set=-all", "sh", "-c", &script]);
    assert!(
        p.denials.iter().any(|d| d.path.starts_with("execve EPERM")),
        "{:?}",
        p.denials
    );
    assert!(!p.caps.contains(cap("NET_RAW")));
}

#[test]
fn panic_in_the_recording_thread_removes_the_instance() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let (mut child, rec) = start(&["true"]);
        let _ = child.wait();
        let _ = tx.send(rec.instance().to_path_buf());
        panic!("deliberate panic while recording");
    });
    assert!(t.join().is_err());
    let dir = rx
        .recv()
        .unwrap_or_else(|e| panic!("no instance path: {e}"));
    assert!(!dir.exists(), "{} left behind after a panic", dir.display());
}

/// Waits for the helper's instance to appear; returns its path.
fn helper_instance(helper: u32) -> std::path::PathBuf {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(d) = std::fs::read_dir("/sys/kernel/tracing/instances") {
            for e in d.flatten() {
                if capsa_trace::tracefs::owner_pid(&e.file_name().to_string_lossy()) == Some(helper)
                {
                    return e.path();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("helper {helper} made no instance");
}

/// The helper's child (the workload), read before the helper dies so we only kill our own.
fn helper_child(helper: u32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn kill(pid: i32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Runs the helper recorder on `sleep 30`, and sends it `sig` once its instance exists (and,
/// with `bpf`, once its 6 BPF objects are loaded). Returns the instance and the helper's pid.
fn run_helper_and(sig: rustix::process::Signal, bpf: bool) -> (std::path::PathBuf, u32) {
    let mut helper = Command::new(env!("CARGO_BIN_EXE_capsa-trace-record"))
        .args(["--", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn helper: {e}"));
    let dir = helper_instance(helper.id());
    if bpf {
        let deadline = Instant::now() + Duration::from_secs(10);
        while capsa_bpf_objects(helper.id(), false) < 6 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            capsa_bpf_objects(helper.id(), false),
            6,
            "the helper's BPF objects"
        );
    }
    let workload = helper_child(helper.id());
    kill(helper.id() as i32, sig);
    let _ = helper.wait();
    if let Some(w) = workload {
        kill(w, rustix::process::Signal::KILL);
    }
    (dir, helper.id())
}

#[test]
fn sigterm_removes_the_instance() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, _) = run_helper_and(rustix::process::Signal::TERM, false);
    assert!(!dir.exists(), "{} left behind after SIGTERM", dir.display());
}

/// How many BPF programs and maps of recorder process `pid` are loaded on the host now (their
/// names are `capsa<pid>_<role>`). The calibration program (`k`) is counted only with `all`:
/// the kernel frees it a grace period after its link closes.
fn capsa_bpf_objects(pid: u32, all: bool) -> usize {
    let prefix = format!("capsa{pid}_");
    let count = |maps| {
        capsa_trace::bpf::sys::loaded_names(maps)
            .unwrap_or_else(|e| panic!("list BPF objects: {e}"))
            .iter()
            .filter(|n| n.strip_prefix(&prefix).is_some_and(|r| all || r != "k"))
            .count()
    };
    count(false) + count(true)
}

/// Waits (the kernel frees programs and maps after a grace period) until none of `pid`'s are
/// left; returns how many are.
fn wait_bpf_objects_gone(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = capsa_bpf_objects(pid, true);
        if now == 0 || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_leaves_a_stale_instance_that_cleanup_removes() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (dir, helper) = run_helper_and(rustix::process::Signal::KILL, bpf_available());
    // Nothing is pinned: the killed recorder's programs and maps die with its descriptors.
    assert_eq!(
        wait_bpf_objects_gone(helper),
        0,
        "BPF objects left after SIGKILL"
    );
    assert!(dir.exists(), "a SIGKILLed recorder cannot clean up");
    let removed = capsa_trace::cleanup_stale().unwrap_or_else(|e| panic!("cleanup_stale: {e}"));
    assert!(
        !dir.exists(),
        "{} still there; cleanup removed {removed:?}",
        dir.display()
    );
}

#[test]
fn missing_pid_fails_cleanly() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // pid_max is at most 4194304 (2^22): this pid cannot exist, and nothing must be left.
    let before: Vec<_> = list_instances();
    assert!(Recorder::start(4_194_305).is_err());
    assert_eq!(list_instances(), before);
}

fn list_instances() -> Vec<String> {
    let own = std::process::id();
    std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| capsa_trace::tracefs::owner_pid(n) == Some(own))
                .collect()
        })
        .unwrap_or_default()
}

/// What one recording says about CAP_SYS_ADMIN.
#[derive(Debug)]
struct SysAdmin {
    via_bpf: bool,
    /// Overcommit probes the BPF program recognized without a stack walk.
    fast_probes: u64,
    /// Required checks: (exe, kernel path, syscall, count).
    required: Vec<(Option<String>, String, Option<String>, u64)>,
    /// Denials: (exe, kernel path, count).
    denied: Vec<(Option<String>, String, u64)>,
    /// The overcommit probe: granted and denied counts.
    overcommit: (u64, u64),
}

/// Records `cmd` with the BPF side on or forced off and extracts the CAP_SYS_ADMIN results.
fn record_sys_admin(cmd: &[&str], bpf: bool) -> (SysAdmin, ExitStatus) {
    let opts = RecorderOptions {
        bpf,
        ..RecorderOptions::default()
    };
    let (mut child, rec) = start_with(cmd, opts);
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    let dir = rec.instance().to_path_buf();
    let r = rec.stop().unwrap_or_else(|e| panic!("stop: {e}"));
    assert!(!dir.exists(), "instance {} left behind", dir.display());
    assert_eq!(r.lost_events, 0, "events were lost (bpf: {bpf})");
    let p = Proposal::from_recording(&r);
    eprintln!(
        "bpf: {bpf}, via bpf: {}\n{}",
        r.sys_admin_via_bpf,
        p.render(Format::Text)
    );
    let admin = cap("SYS_ADMIN");
    let mut s = SysAdmin {
        via_bpf: r.sys_admin_via_bpf,
        fast_probes: r.bpf_fast_probes,
        required: Vec::new(),
        denied: Vec::new(),
        overcommit: (0, 0),
    };
    for n in p.needs.iter().filter(|n| n.cap == admin) {
        for e in &n.evidence {
            assert!(!e.path.contains("vm_enough"), "overcommit proposed: {e:?}");
            s.required
                .push((e.exe.clone(), e.path.clone(), e.syscall.clone(), e.count));
        }
    }
    for d in p.denials.iter().filter(|d| d.caps.contains(admin)) {
        s.denied.push((d.exe.clone(), d.path.clone(), d.count));
    }
    for pr in &p.probes {
        if pr.cap == admin && pr.reason == capsa_trace::ProbeReason::Overcommit {
            s.overcommit = (pr.granted, pr.denied);
        }
    }
    s.required.sort();
    s.denied.sort();
    (s, status)
}

/// Whether the BPF side can be loaded here (root with BPF and BTF); the tests that compare it
/// with the fallback need it.
fn bpf_available() -> bool {
    std::path::Path::new(capsa_trace::bpf::btf::VMLINUX).exists()
}

/// Overcommit counts of two separate runs of one workload differ by a few stack-growth checks.
fn close(a: u64, b: u64) -> bool {
    a.abs_diff(b) * 50 <= a.max(b)
}

/// A real CAP_SYS_ADMIN need (mounting a tmpfs) is required with its kernel path, the overcommit
/// probe is counted and never proposed, and the BPF path gives what the trigger gives.
#[test]
fn sys_admin_mount_is_required_and_bpf_matches_the_trigger() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !bpf_available() {
        eprintln!("SKIP: no {}", capsa_trace::bpf::btf::VMLINUX);
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = dir.path().to_string_lossy().into_owned();
    let script = format!(
        "mount -t tmpfs capsa-trace-test '{d}' && umount '{d}'; \
         i=0; while [ $i -lt 50 ]; do /bin/true; i=$((i+1)); done"
    );
    let (with_bpf, status) = record_sys_admin(&["sh", "-c", &script], true);
    assert!(status.success());
    let (fallback, status) = record_sys_admin(&["sh", "-c", &script], false);
    assert!(status.success());
    assert!(with_bpf.via_bpf, "the BPF side did not load");
    assert!(!fallback.via_bpf);
    // On this kernel every probe is recognized without a walk (the calibrated fast path); the
    // count includes the probes of the gated exec itself, which the phase gate drops.
    assert!(
        with_bpf.fast_probes >= with_bpf.overcommit.0,
        "{with_bpf:?}"
    );
    assert!(
        with_bpf.required.iter().any(|(exe, path, sys, _)| {
            exe.as_deref().is_some_and(|e| e.ends_with("/mount"))
                && path == "path_mount"
                && sys.as_deref() == Some("__x64_sys_mount")
        }),
        "{:?}",
        with_bpf.required
    );
    assert!(with_bpf.denied.is_empty(), "{:?}", with_bpf.denied);
    // 50 execs of true and a few more processes: about 8 probes each, all granted (root).
    assert!(with_bpf.overcommit.0 >= 400, "{:?}", with_bpf.overcommit);
    assert_eq!(with_bpf.required, fallback.required);
    assert_eq!(with_bpf.denied, fallback.denied);
    assert_eq!(with_bpf.overcommit.1, fallback.overcommit.1);
    assert!(
        close(with_bpf.overcommit.0, fallback.overcommit.0),
        "{:?} vs {:?}",
        with_bpf.overcommit,
        fallback.overcommit
    );
}

/// A superset without CAP_SYS_ADMIN: `unshare -m` is refused and shows as a denial (not a
/// need), its overcommit probes are denied probes, with BPF as with the trigger.
#[test]
fn denied_sys_admin_is_reported_alike_with_bpf_and_the_trigger() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !bpf_available() {
        eprintln!("SKIP: no {}", capsa_trace::bpf::btf::VMLINUX);
        return;
    }
    let cmd = [
        "setpriv",
        "--bounding-set=-sys_admin",
        "unshare",
        "-m",
        "true",
    ];
    let (with_bpf, status) = record_sys_admin(&cmd, true);
    assert!(
        !status.success(),
        "unshare -m without CAP_SYS_ADMIN succeeded"
    );
    let (fallback, _) = record_sys_admin(&cmd, false);
    assert!(with_bpf.via_bpf && !fallback.via_bpf);
    assert!(with_bpf.required.is_empty(), "{:?}", with_bpf.required);
    assert!(
        with_bpf
            .denied
            .iter()
            .any(|(_, path, _)| path == "unshare_nsproxy_namespaces"),
        "{:?}",
        with_bpf.denied
    );
    assert!(with_bpf.overcommit.1 > 0, "{:?}", with_bpf.overcommit);
    assert_eq!(with_bpf.denied, fallback.denied);
    assert_eq!(with_bpf.required, fallback.required);
    assert!(close(with_bpf.overcommit.1, fallback.overcommit.1));
    assert!(close(with_bpf.overcommit.0, fallback.overcommit.0));
}

/// The BPF programs, links and maps live in this process's file descriptors only: they are
/// there while recording and all closed when the recording ends (nothing pinned).
#[test]
fn bpf_objects_are_released_when_the_recording_ends() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !bpf_available() {
        eprintln!("SKIP: no {}", capsa_trace::bpf::btf::VMLINUX);
        return;
    }
    let bpf_fds = || {
        std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .filter(|l| l.to_string_lossy().starts_with("anon_inode:bpf"))
                    .count()
            })
            .unwrap_or(0)
    };
    let before = bpf_fds();
    let own = std::process::id();
    let (mut child, rec) = start(&["true"]);
    let during = bpf_fds();
    // 3 programs and 3 maps (the calibration program's link is closed once the cap program is
    // attached).
    assert_eq!(
        capsa_bpf_objects(own, false),
        6,
        "BPF objects while recording"
    );
    let _ = child.wait();
    let r = rec.stop().unwrap_or_else(|e| panic!("stop: {e}"));
    assert!(r.sys_admin_via_bpf);
    // 3 maps, 3 programs, 3 links, and the recorder's second handle on the pid map.
    assert_eq!(during, before + 10, "bpf fds while recording");
    assert_eq!(bpf_fds(), before, "bpf fds left after stop");
    assert_eq!(wait_bpf_objects_gone(own), 0, "BPF objects left after stop");
}
