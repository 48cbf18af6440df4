//! A real engine drives the runtime (root): the test starts its own containerd on private
//! sockets and dirs (shared/reference/engines.md §2), imports a hand-made busybox OCI
//! image, and runs it with `ctr run --runc-binary <dir>/capsa-runc`, expecting ctr's
//! default capabilities (CapEff 00000000a80425fb). The same run with runc is the baseline.
//! `ctr task metrics` reads the container's own cgroups (the shim loads them from
//! /proc/<pid>/cgroup), so the runtime must have put the container into the v1 memory, cpu,
//! cpuacct and pids hierarchies even without limits.
//! Owns: its containerd (tests/common/containerd.rs: stopped by PID, a unique containerd
//! namespace, and the `/run/containerd/runc/<namespace>` dir that containerd 1.6 hard-codes
//! for it).

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::containerd::Containerd;
use common::{Runner, Runtime, temp_dir};
use std::fs;
use std::path::Path;

const IMAGE: &str = "localhost/capsa-e2e:latest";

/// A private containerd with the test image imported; `None` (with a printed reason) when
/// containerd cannot start on this host.
fn engine_with_image() -> Option<Containerd> {
    let engine = match Containerd::start() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("SKIP: containerd cannot start here: {why}");
            return None;
        }
    };
    let work = temp_dir("image");
    let rootfs = work.path().join("rootfs");
    common::build_rootfs(&rootfs);
    let archive = common::oci_image::build_archive(&rootfs, work.path(), IMAGE);
    engine
        .ctr(&["images", "import", &archive.to_string_lossy()])
        .assert_ok("ctr images import");
    Some(engine)
}

fn ctr_run_shows_default_caps(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let Some(engine) = engine_with_image() else {
        return;
    };

    let bin = r.bin.to_string_lossy().into_owned();
    let out = engine.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        &bin,
        IMAGE,
        "e2e",
        "cat",
        "/proc/self/status",
    ]);
    out.assert_ok(&format!("ctr run --runc-binary {bin}"));
    let f = common::proc::status_fields(&out.stdout);
    assert_eq!(
        f.get("CapEff").map(String::as_str),
        Some("00000000a80425fb"),
        "{out}"
    );
    assert_eq!(
        f.get("CapPrm").map(String::as_str),
        Some("00000000a80425fb"),
        "{out}"
    );
    assert_eq!(
        f.get("CapInh").map(String::as_str),
        Some("0000000000000000"),
        "{out}"
    );
    assert_eq!(
        f.get("CapAmb").map(String::as_str),
        Some("0000000000000000"),
        "{out}"
    );
    // `--rm` removed the container: the runtime's state root for our namespace is empty.
    let root = Path::new("/run/containerd/runc").join(&engine.ns);
    let left: Vec<_> = fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime state left in {root:?}: {left:?}");
}
e2e!(
    ctr_run_shows_default_caps,
    runc_ctr_run_shows_default_caps,
    capsa_ctr_run_shows_default_caps
);

/// Waits (up to 10 s) for `ctr task metrics --format json id` to satisfy `ok`; returns the last
/// metrics seen.
fn metrics_until(
    engine: &Containerd,
    id: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    common::wait_until(std::time::Duration::from_secs(10), || {
        let out = engine.ctr(&["task", "metrics", "--format", "json", id]);
        last = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|_| serde_json::json!({"ctr_failed": format!("{out}")}));
        ok(&last)
    });
    last
}

fn ctr_task_metrics_are_the_containers(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let Some(engine) = engine_with_image() else {
        return;
    };
    let bin = r.bin.to_string_lossy().into_owned();
    // 3 processes, and 24 MiB of tmpfs pages charged to the container's memory cgroup.
    engine
        .ctr(&[
            "run",
            "-d",
            "--runc-binary",
            &bin,
            IMAGE,
            "metrics",
            "sh",
            "-c",
            "head -c 25165824 /dev/zero > /dev/shm/fill; sleep 1000 & sleep 1000 & wait",
        ])
        .assert_ok(&format!("ctr run -d --runc-binary {bin}"));
    let m = metrics_until(&engine, "metrics", |m| {
        m["pids"]["current"] == 3 && m["memory"]["usage"]["usage"].as_u64().unwrap_or(0) >= 24 << 20
    });
    let _ = engine.ctr(&["task", "kill", "-s", "SIGKILL", "metrics"]);
    let _ = common::wait_until(std::time::Duration::from_secs(10), || {
        engine.ctr(&["task", "delete", "metrics"]).ok()
    });
    let _ = engine.ctr(&["container", "delete", "metrics"]);
    assert_eq!(m["pids"]["current"], 3, "pids are not the container's: {m}");
    let usage = m["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    // The container's own memory cgroup: its 24 MiB of tmpfs and little else (the caller's
    // cgroup, or the host's root, would hold far more or far less).
    assert!(
        (24 << 20..200 << 20).contains(&usage),
        "memory usage {usage} is not the container's: {m}"
    );
    assert!(
        m["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "no cpuacct usage: {m}"
    );
}
e2e!(
    ctr_task_metrics_are_the_containers,
    runc_ctr_task_metrics_are_the_containers,
    capsa_ctr_task_metrics_are_the_containers
);
