//! `capsa caps` against libcap 2.66 on real processes (root).
//!
//! Differential: `capsa caps pid` == `getpcaps` (default, --verbose, --iab), `capsa caps decode` ==
//! `capsh --decode`, and `capsa caps print` == `capsh --print` when both run under the same
//! setpriv/capsh wrapper. Also every bad input's exact text and exit code 2, and the moby
//! resolution vectors through the CLI. Each test kills and reaps only the processes it started.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// The binary under test, plus a private world-readable temp dir for helper programs
/// (non-root wrappers must be able to exec them).
struct Bin {
    dir: tempfile::TempDir,
}

impl Bin {
    fn new() -> Bin {
        let dir = tempfile::Builder::new()
            .prefix("capsa-caps-cli-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Bin { dir }
    }
    fn capsa(&self) -> String {
        env!("CARGO_BIN_EXE_capsa").to_string()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Spawns, retrying on ETXTBSY: a program copied by one test thread can still be open for
/// writing in a child another thread is forking at that moment.
fn spawn_retrying<T>(argv: &[&str], mut f: impl FnMut(&mut Command) -> std::io::Result<T>) -> T {
    let mut tries = 0;
    loop {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        match f(&mut cmd) {
            Err(e) if e.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{argv:?}: {e}"),
            Ok(v) => return v,
        }
    }
}

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A process we started; killed (by its PID) and reaped on drop.
struct Proc {
    child: Child,
}

impl Proc {
    /// Runs `argv`, which must end by exec'ing a program whose comm is `comm`, and waits for it.
    fn start(argv: &[&str], comm: &str) -> Proc {
        let child = spawn_retrying(argv, |c| {
            c.stdin(Stdio::null()).stdout(Stdio::null()).spawn()
        });
        let p = Proc { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now =
                std::fs::read_to_string(format!("/proc/{}/comm", p.pid())).unwrap_or_default();
            if now.trim_end() == comm {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "{argv:?} never became {comm} (now {now:?})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sleeper_wrappers(bin: &Bin) -> Vec<(Vec<String>, &'static str)> {
    let fcaps = bin.path("sleep-fcaps").display().to_string();
    let nobody = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
    ];
    let v = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut cases = vec![
        (v(&["sleep", "300"]), "sleep"),
        (
            v(&[
                "setpriv",
                "--inh-caps",
                "+chown,+kill",
                "--",
                "sleep",
                "300",
            ]),
            "sleep",
        ),
        (
            v(&[
                "setpriv",
                "--bounding-set",
                "-all,+net_bind_service,+chown",
                "--",
                "sleep",
                "300",
            ]),
            "sleep",
        ),
        (
            v(&["setpriv", "--bounding-set", "-all", "--", "sleep", "300"]),
            "sleep",
        ),
        (
            v(&[
                "capsh",
                "--inh=cap_sys_time",
                "--drop=cap_chown",
                "--",
                "-c",
                "exec sleep 300",
            ]),
            "sleep",
        ),
        (
            v(&[
                "capsh",
                "--secbits=0x2f",
                "--inh=cap_net_admin,cap_kill",
                "--",
                "-c",
                "exec sleep 300",
            ]),
            "sleep",
        ),
        (
            v(&[
                "capsh",
                "--inh=cap_chown,cap_kill",
                "--addamb=cap_kill",
                "--drop=cap_chown,cap_kill",
                "--",
                "-c",
                "exec sleep 300",
            ]),
            "sleep",
        ),
    ];
    let mut with_nobody = |rest: &[&str], comm: &'static str| {
        let mut a = v(&nobody);
        a.extend(v(rest));
        cases.push((a, comm));
    };
    with_nobody(&["--", "sleep", "300"], "sleep");
    with_nobody(
        &[
            "--inh-caps",
            "+net_bind_service",
            "--ambient-caps",
            "+net_bind_service",
            "--",
            "sleep",
            "300",
        ],
        "sleep",
    );
    with_nobody(
        &[
            "--inh-caps",
            "+kill,+net_raw,+sys_time",
            "--ambient-caps",
            "+kill,+net_raw",
            "--",
            "sleep",
            "300",
        ],
        "sleep",
    );
    // File caps without the effective bit: P = {chown, net_raw}, E = 0, I = {kill}.
    with_nobody(&["--inh-caps", "+kill", "--", &fcaps, "300"], "sleep-fcaps");
    cases
}

fn install_fcaps_sleep(bin: &Bin) {
    let dst = bin.path("sleep-fcaps");
    std::fs::copy("/bin/sleep", &dst).expect("copy sleep");
    let o = run(&[
        "setcap",
        "cap_chown,cap_net_raw+p",
        &dst.display().to_string(),
    ]);
    assert!(o.status.success(), "setcap: {}", stderr(&o));
}

#[test]
fn pid_matches_getpcaps_on_varied_processes() {
    require_root!();
    let bin = Bin::new();
    install_fcaps_sleep(&bin);
    let mut all = Vec::new();
    for (argv, comm) in sleeper_wrappers(&bin) {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let p = Proc::start(&argv, comm);
        let pid = p.pid().to_string();
        for flags in [&[][..], &["--verbose"][..], &["--iab"][..]] {
            let mut theirs = vec!["getpcaps"];
            theirs.extend(flags);
            theirs.push(&pid);
            let mut ours = vec![bin.capsa(), "caps".into(), "pid".into()];
            ours.extend(flags.iter().map(|s| s.to_string()));
            ours.push(pid.clone());
            let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
            let (t, o) = (run(&theirs), run(&ours));
            assert!(
                t.status.success() && o.status.success(),
                "{argv:?}: {}",
                stderr(&o)
            );
            assert_eq!(stdout(&o), stdout(&t), "{argv:?} {flags:?}");
        }
        all.push(p);
    }
    // Several PIDs in one call, as getpcaps takes them.
    let pids: Vec<String> = all.iter().map(|p| p.pid().to_string()).collect();
    let mut theirs = vec!["getpcaps".to_string()];
    theirs.extend(pids.iter().cloned());
    let mut ours = vec![bin.capsa(), "caps".into(), "pid".into()];
    ours.extend(pids.iter().cloned());
    let t = run(&theirs.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(&ours.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(stdout(&o), stdout(&t));
}

fn print_wrappers() -> Vec<Vec<&'static str>> {
    let nobody = ["setpriv", "--reuid", "65534", "--regid", "65534"];
    let mut out = vec![
        vec![],
        vec![
            "setpriv",
            "--no-new-privs",
            "--bounding-set",
            "-all,+chown,+kill,+net_raw",
            "--inh-caps",
            "+chown",
            "--",
        ],
        vec![
            "setpriv", "--reuid", "12345", "--regid", "23456", "--groups", "1,2,777", "--",
        ],
        vec![
            "setpriv",
            "--ruid",
            "1",
            "--euid",
            "2",
            "--rgid",
            "5",
            "--egid",
            "7",
            "--keep-groups",
            "--",
        ],
        vec!["setpriv", "--ruid", "1", "--euid", "12345", "--"],
        vec!["setpriv", "--ruid", "12345", "--euid", "2", "--"],
    ];
    let mut n = nobody.to_vec();
    n.extend([
        "--init-groups",
        "--inh-caps",
        "+net_bind_service,+kill",
        "--ambient-caps",
        "+net_bind_service,+kill",
        "--",
    ]);
    out.push(n);
    let mut n = nobody.to_vec();
    n.extend(["--clear-groups", "--no-new-privs", "--"]);
    out.push(n);
    out
}

fn capsh_print_wrappers() -> Vec<Vec<&'static str>> {
    vec![
        vec!["capsh", "--secbits=0x2f"],
        vec!["capsh", "--secbits=0xef"],
        vec!["capsh", "--secbits=0xff"],
        vec!["capsh", "--secbits=0xef", "--inh=cap_chown"],
        vec!["capsh", "--mode=NOPRIV"],
        vec!["capsh", "--mode=PURE1E"],
        vec![
            "capsh",
            "--inh=cap_chown,cap_kill",
            "--addamb=cap_kill",
            "--drop=cap_chown,cap_kill",
        ],
        vec![
            "capsh",
            "--inh=cap_net_admin,cap_sys_time",
            "--drop=cap_net_admin,cap_sys_admin",
        ],
    ]
}

#[test]
fn print_matches_capsh_print_under_the_same_wrapper() {
    require_root!();
    let bin = Bin::new();
    let capsa = bin.capsa();
    for wrapper in print_wrappers() {
        let mut theirs = wrapper.clone();
        theirs.extend(["capsh", "--print"]);
        let mut ours = wrapper.clone();
        ours.extend([capsa.as_str(), "caps", "print"]);
        let (t, o) = (run(&theirs), run(&ours));
        assert!(t.status.success(), "{theirs:?}: {}", stderr(&t));
        assert!(o.status.success(), "{ours:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&t), "{wrapper:?}");
    }
    // capsh wrappers hand the rest of the line to bash, which then execs the program.
    for wrapper in capsh_print_wrappers() {
        let script = r#"exec "$0" "$@""#;
        let mut theirs = wrapper.clone();
        theirs.extend(["--", "-c", script, "capsh", "--print"]);
        let mut ours = wrapper.clone();
        ours.extend(["--", "-c", script, capsa.as_str(), "caps", "print"]);
        let (t, o) = (run(&theirs), run(&ours));
        assert!(
            t.status.success() && o.status.success(),
            "{wrapper:?}: {}",
            stderr(&o)
        );
        assert_eq!(stdout(&o), stdout(&t), "{wrapper:?}");
    }
}

#[test]
fn decode_matches_capsh_decode() {
    let bin = Bin::new();
    let mut masks: Vec<String> = [
        "0",
        "1",
        "10",
        "a80425fb",
        "0xa80425fb",
        "0XA80425FB",
        "800405fb",
        "0x1fffeffffff",
        "0x1ffffffffff",
        "ffffffffffffffff",
        "0x8000000000000000",
        "0x0000020000000000",
        "00000000000000000001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        masks.push(format!("{:#x}", x & (x >> 3)));
    }
    for m in &masks {
        let t = run(&["capsh", &format!("--decode={m}")]);
        let o = run(&[&bin.capsa(), "caps", "decode", m]);
        assert!(o.status.success(), "{m}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&t), "{m}");
    }
}

fn expect_bad(argv: &[&str], text: &str) {
    let o = run(argv);
    assert_eq!(o.status.code(), Some(2), "{argv:?}: {}", stderr(&o));
    assert_eq!(stderr(&o), format!("capsa: {text}\n"), "{argv:?}");
    assert_eq!(stdout(&o), "", "{argv:?}");
}

#[test]
fn bad_inputs_exit_2_with_exact_texts() {
    let bin = Bin::new();
    let c = bin.capsa();
    let r = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![c.clone(), "caps".into(), "resolve".into()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            r(&["--cap-add", "foo"]),
            r#"invalid CapAdd: unknown capability: "CAP_FOO""#,
        ),
        (
            r(&["--cap-add", "CAP_ALL"]),
            r#"invalid CapAdd: unknown capability: "CAP_ALL""#,
        ),
        (
            r(&["--cap-drop", ""]),
            r#"invalid CapDrop: unknown capability: "CAP_""#,
        ),
        (
            r(&["--cap-drop", "cap_41"]),
            r#"invalid CapDrop: unknown capability: "CAP_41""#,
        ),
        (
            r(&["--privileged", "--cap-drop", "nope"]),
            r#"invalid CapDrop: unknown capability: "CAP_NOPE""#,
        ),
        (
            r(&["--cap-add", "bad", "--cap-drop", "worse"]),
            r#"invalid CapAdd: unknown capability: "CAP_BAD""#,
        ),
        (
            r(&["--profile", "strict"]),
            r#"unknown capability profile: "strict" (known: docker, podman, none)"#,
        ),
    ];
    for (argv, text) in &cases {
        expect_bad(&argv.iter().map(String::as_str).collect::<Vec<_>>(), text);
    }
    expect_bad(
        &[&c, "caps", "explain", "CAP_ALL"],
        r#"unknown capability: "CAP_ALL""#,
    );
    expect_bad(
        &[&c, "caps", "explain", ""],
        r#"unknown capability: "CAP_""#,
    );
    expect_bad(
        &[&c, "caps", "explain", "ALL"],
        r#"unknown capability: "ALL""#,
    );
    expect_bad(
        &[&c, "caps", "decode", "0x1ffffffffffffffff"],
        r#"capability mask out of range: "0x1ffffffffffffffff" has more than 64 bits"#,
    );
    let hint = "expected a hexadecimal number such as 0xa80425fb";
    expect_bad(
        &[&c, "caps", "decode", ""],
        &format!(r#"invalid capability mask "": {hint}"#),
    );
    expect_bad(
        &[&c, "caps", "decode", "0x"],
        &format!(r#"invalid capability mask "0x": {hint}"#),
    );
    expect_bad(
        &[&c, "caps", "decode", "zz"],
        &format!(r#"invalid capability mask "zz": {hint}"#),
    );
    expect_bad(
        &[&c, "caps", "decode", "-1"],
        &format!(r#"invalid capability mask "-1": {hint}"#),
    );
    expect_bad(
        &[&c, "caps", "pid", "abc"],
        r#"invalid PID "abc": expected a positive number"#,
    );
    expect_bad(
        &[&c, "caps", "pid", "0"],
        r#"invalid PID "0": expected a positive number"#,
    );
    expect_bad(
        &[&c, "caps", "pid", ""],
        r#"invalid PID "": expected a positive number"#,
    );
    expect_bad(
        &[&c, "caps", "pid", "4294967295"],
        "no such process: 4294967295 (cannot read /proc/4294967295/status: ENOENT)",
    );
}

#[test]
fn unavailable_cap_is_refused_with_dockers_text() {
    require_root!();
    let bin = Bin::new();
    let c = bin.capsa();
    let pre = [
        "setpriv",
        "--bounding-set",
        "-sys_time",
        "--",
        c.as_str(),
        "caps",
        "resolve",
    ];
    let text = "capability not supported by your kernel or not available in the current environment: \"CAP_SYS_TIME\"";
    let mut add = pre.to_vec();
    add.extend(["--cap-add", "sys_time"]);
    expect_bad(&add, &format!("invalid CapAdd: {text}"));
    let mut drop = pre.to_vec();
    drop.extend(["--cap-drop", "CAP_SYS_TIME"]);
    expect_bad(&drop, &format!("invalid CapDrop: {text}"));
    // ALL under the smaller bounding set never includes the missing cap.
    let mut all = pre.to_vec();
    all.extend(["--privileged", "--format", "json"]);
    let o = run(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let caps = v["result"]["caps"].as_array().expect("caps");
    assert!(!caps.iter().any(|c| c == "CAP_SYS_TIME"));
    assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
}

#[test]
fn exited_and_zombie_pids_exit_2() {
    let bin = Bin::new();
    let c = bin.capsa();
    // Exited and reaped.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    expect_bad(
        &[&c, "caps", "pid", &pid.to_string()],
        &format!("no such process: {pid} (cannot read /proc/{pid}/status: ENOENT)"),
    );
    // Exited but not yet reaped: a zombie.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z ")
    {
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(10));
    }
    expect_bad(
        &[&c, "caps", "pid", &pid.to_string()],
        &format!("process {pid} has exited (it is a zombie waiting to be reaped)"),
    );
    child.wait().expect("wait");
    // A good PID next to a bad one: the good one is printed, the exit code is still 2.
    let me = std::process::id().to_string();
    let o = run(&[&c, "caps", "pid", &me, "4294967295"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).starts_with(&format!("{me}: ")));
}

fn resolve_json(bin: &Bin, extra: &[&str]) -> serde_json::Value {
    let mut argv = vec![
        bin.capsa(),
        "caps".into(),
        "resolve".into(),
        "--format".into(),
        "json".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let o = run(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("json")
}

fn own_bounding() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("status");
    let hex = s
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex")
}

#[test]
fn resolve_follows_mobys_vectors() {
    let bin = Bin::new();
    let avail = own_bounding() & 0x1ff_ffff_ffff;
    let hex = |v: &serde_json::Value| v["result"]["hex"].as_str().map(str::to_string);
    let x = |n: u64| Some(format!("{n:#018x}"));
    assert_eq!(hex(&resolve_json(&bin, &[])), x(0xa804_25fb));
    assert_eq!(
        hex(&resolve_json(&bin, &["--profile", "podman"])),
        x(0x8004_05fb)
    );
    assert_eq!(hex(&resolve_json(&bin, &["--profile", "none"])), x(0));
    assert_eq!(
        hex(&resolve_json(
            &bin,
            &["--cap-drop=ALL", "--cap-add=SYS_TIME"]
        )),
        x(0x0200_0000)
    );
    let net_admin = 1u64 << 12;
    assert_eq!(
        hex(&resolve_json(
            &bin,
            &["--cap-add=ALL", "--cap-drop=NET_ADMIN"]
        )),
        x(avail & !net_admin)
    );
    assert_eq!(
        hex(&resolve_json(&bin, &["--cap-add=ALL", "--cap-drop=ALL"])),
        x(avail)
    );
    let both = resolve_json(&bin, &["--cap-add=net_admin", "--cap-drop=CAP_NET_ADMIN"]);
    assert_eq!(hex(&both), x(0xa804_25fb | net_admin));
    assert_eq!(both["added"], serde_json::json!(["CAP_NET_ADMIN"]));
    assert_eq!(
        hex(&resolve_json(&bin, &["--privileged", "--cap-drop=CHOWN"])),
        x(avail)
    );
    let dup = resolve_json(
        &bin,
        &["--cap-add=chown", "--cap-add=CAP_CHOWN", "--cap-drop=mknod"],
    );
    assert_eq!(hex(&dup), x(0xa804_25fb & !(1 << 27)));
    assert_eq!(dup["removed"], serde_json::json!(["CAP_MKNOD"]));
}

#[test]
fn json_formats_are_well_formed() {
    require_root!();
    let bin = Bin::new();
    let c = bin.capsa();
    let me = std::process::id().to_string();
    let json = |argv: &[&str]| -> serde_json::Value {
        let o = run(argv);
        assert!(o.status.success(), "{argv:?}: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    };
    let p = json(&[&c, "caps", "print", "--format", "json"]);
    assert_eq!(p["securebits"], 0);
    assert_eq!(p["mode"], "HYBRID");
    let pid = json(&[&c, "caps", "--format", "json", "pid", &me]);
    assert_eq!(pid[0]["pid"].as_u64(), Some(u64::from(std::process::id())));
    let want = format!("{:#018x}", own_bounding());
    assert_eq!(pid[0]["bounding"]["hex"].as_str(), Some(want.as_str()));
    let d = json(&[&c, "caps", "decode", "a80425fb", "--format", "json"]);
    assert_eq!(d["caps"].as_array().map(Vec::len), Some(14));
    let l = json(&[&c, "caps", "list", "--format", "json"]);
    assert_eq!(l.as_array().map(Vec::len), Some(41));
    let e = json(&[&c, "caps", "explain", "dac_read_search", "--format", "json"]);
    assert_eq!(e["risk"], "critical");
    assert!(e["reason"].as_str().is_some_and(|r| r.contains("shocker")));
    let ps = json(&[&c, "caps", "ps", "--format", "json"]);
    assert!(ps.as_array().is_some_and(|rows| !rows.is_empty()));
}

#[test]
fn ps_lists_a_process_we_started() {
    require_root!();
    let bin = Bin::new();
    let p = Proc::start(
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps",
            "+net_bind_service",
            "--ambient-caps",
            "+net_bind_service",
            "--",
            "sleep",
            "300",
        ],
        "sleep",
    );
    let o = run(&[&bin.capsa(), "caps", "ps"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(p.pid().to_string().as_str()))
        .unwrap_or_else(|| panic!("no row for {} in\n{text}", p.pid()));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2..], ["nobody", "sleep", "net_bind_service", "@", "+"]);
    // Columns are aligned: every row starts its PID column at the same offset.
    let header = text.lines().next().unwrap_or_default();
    let pid_col = header.find(" PID").map_or(0, |i| i + 1);
    assert_eq!(
        row[pid_col..].split_whitespace().next(),
        Some(p.pid().to_string().as_str())
    );
    drop(p);
}
