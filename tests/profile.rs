//! `capsa profile` end to end (root, Linux 6.14+ with the capability:cap_capable tracepoint):
//! each workload runs in a container of the busybox-static test image under the recorder, and
//! the test asserts the exact proposed set and a passing verification run (exactly the
//! proposal plus no_new_privs). Also: probes are never proposed, a cap the superset lacks is
//! reported as denied, `run --cap-profile` applies a saved proposal, and no tracefs instance
//! is left behind.

#[path = "run_support/mod.rs"]
mod support;

use serde_json::Value;
use support::*;

const INSTANCES: &str = "/sys/kernel/tracing/instances";

/// Linux 6.14 added the tracepoint; tracefs may not be mounted yet (the recorder mounts it).
fn supported() -> bool {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut nums = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    let ok = (major, minor) >= (6, 14);
    if !ok {
        eprintln!("skipped: Linux {release} has no capability:cap_capable tracepoint (6.14+)");
    }
    ok
}

/// Runs `capsa profile --format json -o FILE [extra] IMAGE cmd...`; asserts it exited 0 (a
/// passing verification) and left no tracefs instance; returns the JSON report.
fn profile(env: &Env, extra: &[&str], cmd: &[&str]) -> Value {
    let out = env.root.path().join(format!("profile-{}.json", rand_tag()));
    let out_s = out.to_str().expect("utf8").to_string();
    let mut args = vec!["profile", "--format", "json", "-o", &out_s];
    args.extend_from_slice(extra);
    args.push(IMAGE);
    args.extend_from_slice(cmd);
    let child = env
        .cmd(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn capsa profile");
    let pid = child.id();
    let res = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_no_instance_of(pid);
    let v: Value = match std::fs::read_to_string(&out) {
        Ok(t) => serde_json::from_str(&t).expect("report json"),
        Err(e) => panic!("no report ({e}); capsa profile {args:?}: {stderr}"),
    };
    assert!(
        res.status.success(),
        "capsa profile {cmd:?} exited {:?}: {stderr}\n{v:#}",
        res.status.code()
    );
    assert_eq!(v["verification"]["passed"], true, "{v:#}");
    assert_eq!(v["complete"], true);
    assert_eq!(v["lost_events"], 0);
    let caps = proposed(&v);
    assert!(
        !caps
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN" || c == "CAP_SETPCAP"),
        "a probe was proposed: {caps:?}"
    );
    // Every container of both runs is gone.
    assert!(env.ids().is_empty(), "containers left: {:?}", env.ids());
    v
}

fn rand_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn assert_no_instance_of(pid: u32) {
    let prefix = format!("capsa-{pid}-");
    let left: Vec<String> = std::fs::read_dir(INSTANCES)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "tracefs instances left behind: {left:?}");
}

fn proposed(v: &Value) -> Vec<String> {
    v["caps"]
        .as_array()
        .expect("caps")
        .iter()
        .map(|c| c.as_str().expect("name").to_string())
        .collect()
}

fn setup() -> Option<Env> {
    if !supported() {
        return None;
    }
    env()
}

#[test]
fn ping_needs_net_raw() {
    let Some(env) = setup() else { return };
    let v = profile(&env, &[], &["busybox", "ping", "-c1", "127.0.0.1"]);
    assert_eq!(proposed(&v), ["CAP_NET_RAW"], "{v:#}");
}

#[test]
fn chown_needs_chown() {
    let Some(env) = setup() else { return };
    let v = profile(
        &env,
        &[],
        &["sh", "-c", "touch /tmp/f && chown 1000 /tmp/f"],
    );
    assert_eq!(proposed(&v), ["CAP_CHOWN"], "{v:#}");
}

#[test]
fn httpd_on_port_80_needs_net_bind_service() {
    let Some(env) = setup() else { return };
    let probe = "wget -qO- http://127.0.0.1:80/ | grep -q hello";
    let v = profile(
        &env,
        &["--probe", probe],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    assert_eq!(proposed(&v), ["CAP_NET_BIND_SERVICE"], "{v:#}");
    assert_eq!(v["recorded_outcome"]["kind"], "probe_passed");
}

#[test]
fn httpd_on_port_8080_needs_nothing() {
    let Some(env) = setup() else { return };
    let probe = "wget -qO- http://127.0.0.1:8080/ | grep -q hello";
    let v = profile(
        &env,
        &["--probe", probe],
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
    );
    assert!(proposed(&v).is_empty(), "{v:#}");
}

#[test]
fn ls_needs_nothing_and_overcommit_is_a_probe() {
    let Some(env) = setup() else { return };
    let v = profile(&env, &["--from", "all"], &["ls", "/"]);
    assert!(proposed(&v).is_empty(), "{v:#}");
    let probes = v["probes"].as_array().expect("probes");
    assert!(
        probes
            .iter()
            .any(|p| p["cap"] == "CAP_SYS_ADMIN" && p["reason"] == "overcommit"),
        "the granted overcommit SYS_ADMIN check is listed as a probe: {v:#}"
    );
}

#[test]
fn capset_setpcap_is_a_probe() {
    let Some(env) = setup() else { return };
    let v = profile(
        &env,
        &["--from", "all"],
        &["busybox", "setpriv", "--inh-caps=-net_raw", "true"],
    );
    assert!(proposed(&v).is_empty(), "{v:#}");
    assert!(
        v["probes"]
            .as_array()
            .expect("probes")
            .iter()
            .any(|p| p["cap"] == "CAP_SETPCAP" && p["reason"] == "capset"),
        "{v:#}"
    );
}

#[test]
fn reading_a_foreign_0600_file_needs_a_dac_cap() {
    let Some(env) = setup() else { return };
    // The workload makes the file itself (0600, owned by uid 1000: the chown needs CHOWN) and
    // reads it back as root, which needs DAC_OVERRIDE or DAC_READ_SEARCH.
    let v = profile(
        &env,
        &[],
        &[
            "sh",
            "-c",
            "echo secret > /tmp/s && chmod 600 /tmp/s && chown 1000:1000 /tmp/s && cat /tmp/s",
        ],
    );
    assert_eq!(proposed(&v), ["CAP_CHOWN", "CAP_DAC_OVERRIDE"], "{v:#}");
    let dac = v["needs"]
        .as_array()
        .expect("needs")
        .iter()
        .find(|n| n["cap"] == "CAP_DAC_OVERRIDE")
        .expect("DAC_OVERRIDE need");
    assert_eq!(
        dac["alternatives"],
        serde_json::json!(["CAP_DAC_READ_SEARCH"])
    );
    // With every cap, the kernel asks DAC_READ_SEARCH first: the same alternative group.
    let v = profile(
        &env,
        &["--from", "all"],
        &[
            "sh",
            "-c",
            "echo secret > /tmp/s && chmod 600 /tmp/s && chown 1000:1000 /tmp/s && cat /tmp/s",
        ],
    );
    assert_eq!(proposed(&v), ["CAP_CHOWN", "CAP_DAC_OVERRIDE"], "{v:#}");
}

#[test]
fn su_needs_setuid_and_setgid() {
    let Some(env) = setup() else { return };
    // nobody's shell is /bin/false in the image: -s picks sh. busybox su needs no setuid bit
    // when it already runs as root.
    let v = profile(
        &env,
        &[],
        &["busybox", "su", "-s", "/bin/sh", "nobody", "-c", "id"],
    );
    assert_eq!(proposed(&v), ["CAP_SETGID", "CAP_SETUID"], "{v:#}");
}

#[test]
fn chown_and_port_80_need_both() {
    let Some(env) = setup() else { return };
    let probe = "wget -qO- http://127.0.0.1:80/ | grep -q hello";
    let v = profile(
        &env,
        &["--probe", probe],
        &[
            "sh",
            "-c",
            "touch /tmp/f && chown 1000 /tmp/f && exec httpd -f -p 80 -h /www",
        ],
    );
    assert_eq!(proposed(&v), ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"], "{v:#}");
}

#[test]
fn a_cap_the_superset_lacks_is_denied_not_proposed() {
    let Some(env) = setup() else { return };
    let v = profile(
        &env,
        &[],
        &["busybox", "ip", "link", "add", "capsa0", "type", "dummy"],
    );
    assert!(proposed(&v).is_empty(), "{v:#}");
    let denied: Vec<&Value> = v["denials"]
        .as_array()
        .expect("denials")
        .iter()
        .filter(|d| d["caps"] == serde_json::json!(["CAP_NET_ADMIN"]))
        .collect();
    assert!(!denied.is_empty(), "NET_ADMIN is reported as denied: {v:#}");
    // Same failure (exit code) with the empty proposal: the verification passes.
    assert_eq!(v["recorded_outcome"]["kind"], "exited");
    assert_ne!(v["recorded_outcome"]["code"], 0);
}

#[test]
fn run_with_a_saved_profile() {
    let Some(env) = setup() else { return };
    let saved = env.root.path().join("ping.json");
    let saved_s = saved.to_str().expect("utf8");
    let out = env.capsa(&[
        "profile",
        "--format",
        "json",
        "-o",
        saved_s,
        IMAGE,
        "busybox",
        "ping",
        "-c1",
        "127.0.0.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = name("capprof");
    let status = env.ok(&[
        "run",
        "--rm",
        "--name",
        &name,
        "--cap-profile",
        saved_s,
        IMAGE,
        "grep",
        "-E",
        "^(CapEff|NoNewPrivs)",
        "/proc/self/status",
    ]);
    assert!(status.contains("CapEff:\t0000000000002000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let refused = env.capsa(&[
        "run",
        "--rm",
        "--cap-profile",
        saved_s,
        "--cap-add",
        "KILL",
        IMAGE,
        "true",
    ]);
    assert_eq!(refused.status.code(), Some(125));
}
