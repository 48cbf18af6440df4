//! Root tests of `capsa_runtime::cgroups` on this host's real hierarchies: a real `sleep` child
//! is put in a uniquely named cgroup; assertions read what the kernel reports. Every test
//! removes its cgroups and kills its child through drop guards, even when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use capsa_runtime::cgroups::{Cgroup, Controller, Version};
use oci_spec::runtime::LinuxResources;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// Kills the child and destroys the cgroup when dropped.
struct Guard {
    cg: Cgroup,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = self.cg.thaw();
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup failed: {e}");
        }
    }
}

fn unique(tag: &str) -> String {
    format!("capsa-test-{tag}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad resources {json}: {e}"))
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap_or_else(|e| panic!("spawn sleep: {e}"))
}

fn dir_of(cg: &Cgroup, c: Controller) -> Option<PathBuf> {
    cg.dirs
        .iter()
        .find(|d| d.controllers.contains(&c))
        .map(|d| d.dir.clone())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn tracking_dir(cg: &Cgroup) -> PathBuf {
    cg.dirs
        .iter()
        .find(|d| d.tracking)
        .map(|d| d.dir.clone())
        .unwrap_or_default()
}

/// Starts a guarded cgroup with these resources and a sleep child in it.
fn start(tag: &str, resources: &str) -> Guard {
    start_with(tag, resources, sleeper)
}

fn start_with(tag: &str, resources: &str, spawn: fn() -> Child) -> Guard {
    let id = unique(tag);
    let cg = Cgroup::for_container(Some(Path::new(&format!("/{id}"))), &id)
        .unwrap_or_else(|e| panic!("for_container: {e}"));
    let mut g = Guard { cg, child: None };
    g.cg.create(Some(&res(resources)))
        .unwrap_or_else(|e| panic!("create: {e}"));
    let child = spawn();
    let pid = child.id() as i32;
    g.child = Some(child);
    g.cg.add_task(pid)
        .unwrap_or_else(|e| panic!("add_task: {e}"));
    g
}

fn child_pid(g: &Guard) -> i32 {
    g.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
}

#[test]
fn limits_reach_the_kernel_and_only_needed_hierarchies_are_made() {
    require_root!();
    let g = start(
        "limits",
        r#"{"memory":{"limit":67108864},"pids":{"limit":17},"cpu":{"shares":512,"quota":20000,"period":100000},
            "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#,
    );
    let pid = child_pid(&g);
    let on_v1 =
        g.cg.dirs
            .iter()
            .any(|d| d.version == Version::V1 && d.controllers.contains(&Controller::Memory));
    if on_v1 {
        let mem = dir_of(&g.cg, Controller::Memory).unwrap_or_default();
        assert_eq!(read(&mem.join("memory.limit_in_bytes")).trim(), "67108864");
        let cpu = dir_of(&g.cg, Controller::Cpu).unwrap_or_default();
        assert_eq!(read(&cpu.join("cpu.shares")).trim(), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")).trim(), "20000");
        let dev = dir_of(&g.cg, Controller::Devices).unwrap_or_default();
        let list = read(&dev.join("devices.list"));
        assert!(list.contains("c 1:3 rwm"), "devices.list: {list}");
        assert!(!list.contains("a *:* rwm"), "deny-all not applied: {list}");
        // Not asked for: no blkio or cpuset directory.
        for c in [Controller::Blkio, Controller::Cpuset] {
            if let Some(d) = dir_of(&g.cg, c) {
                assert!(!d.exists(), "{} was created without a limit", d.display());
            }
        }
    } else {
        let dir = tracking_dir(&g.cg);
        assert_eq!(read(&dir.join("memory.max")).trim(), "67108864");
    }
    let pids_dir = dir_of(&g.cg, Controller::Pids).unwrap_or_default();
    assert_eq!(read(&pids_dir.join("pids.max")).trim(), "17");
    // The kernel places the child in every created hierarchy.
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    let name = g.cg.path.trim_start_matches('/');
    assert!(
        own.lines().filter(|l| l.ends_with(name)).count() >= 4,
        "/proc/{pid}/cgroup:\n{own}"
    );
    assert_eq!(g.cg.pids().unwrap_or_default(), vec![pid]);
}

#[test]
fn freeze_thaw_and_state() {
    require_root!();
    let g = start("freeze", "{}");
    let pid = child_pid(&g);
    assert!(!g.cg.is_frozen().unwrap_or(true));
    g.cg.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
    assert!(g.cg.is_frozen().unwrap_or(false));
    let t = g.cg.dirs.iter().find(|d| d.tracking).map(|d| d.version);
    if t == Some(Version::V1) {
        let state = read(&tracking_dir(&g.cg).join("freezer.state"));
        assert_eq!(state.trim(), "FROZEN");
    } else {
        let events = read(&tracking_dir(&g.cg).join("cgroup.events"));
        assert!(events.contains("frozen 1"), "{events}");
    }
    g.cg.thaw().unwrap_or_else(|e| panic!("thaw: {e}"));
    assert!(!g.cg.is_frozen().unwrap_or(true));
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    // Thawed: running or sleeping again (not stopped, not in the freezer's D state).
    assert!(
        status.contains("State:\tS") || status.contains("State:\tR"),
        "{status}"
    );
}

#[test]
fn stats_report_usage_and_limits() {
    require_root!();
    let late_exec = || {
        Command::new("sh")
            .args(["-c", "sleep 0.1; exec sleep 60"])
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sh: {e}"))
    };
    let g = start_with(
        "stats",
        r#"{"memory":{"limit":33554432},"pids":{"limit":9}}"#,
        late_exec,
    );
    // v1 does not move old charges with a task (memory.move_charge_at_immigrate is 0), so
    // the child execs a new sleep after the join: its new pages are charged here.
    let mut s = g.cg.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    for _ in 0..100 {
        if s.memory.as_ref().is_some_and(|m| m.usage_bytes > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        s = g.cg.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    }
    let mem = s.memory.unwrap_or_default();
    assert_eq!(mem.limit_bytes, Some(33_554_432));
    assert!(mem.usage_bytes > 0, "{mem:?}");
    let pids = s.pids.unwrap_or_default();
    assert!(pids.current >= 1 && pids.limit == Some(9), "{pids:?}");
    assert!(s.cpu.is_some(), "cpu usage from the tracking hierarchy");
    let json = serde_json::to_string(&g.cg.stats().unwrap_or_default()).unwrap_or_default();
    assert!(json.contains("\"usage_bytes\""), "{json}");
}

#[test]
fn update_adds_a_new_hierarchy_and_moves_tasks() {
    require_root!();
    let g = start("update", "{}");
    let pid = child_pid(&g);
    g.cg.update(&res(r#"{"pids":{"limit":5}}"#))
        .unwrap_or_else(|e| panic!("update: {e}"));
    let pids_dir = dir_of(&g.cg, Controller::Pids).unwrap_or_default();
    assert_eq!(read(&pids_dir.join("pids.max")).trim(), "5");
    let procs = read(&pids_dir.join("cgroup.procs"));
    assert_eq!(procs.trim(), pid.to_string());
    assert!(
        !g.cg.is_frozen().unwrap_or(true),
        "update must leave it thawed"
    );
}

#[test]
fn signal_all_kills_every_task_and_destroy_is_idempotent() {
    require_root!();
    let mut g = start("kill", "{}");
    let mut second = sleeper();
    g.cg.add_task(second.id() as i32)
        .unwrap_or_else(|e| panic!("add second: {e}"));
    assert_eq!(g.cg.pids().unwrap_or_default().len(), 2);
    g.cg.signal_all(libc::SIGKILL)
        .unwrap_or_else(|e| panic!("signal_all: {e}"));
    let status = second.wait().map(|s| s.to_string()).unwrap_or_default();
    assert!(status.contains("signal: 9"), "{status}");
    if let Some(c) = g.child.as_mut() {
        let st = c.wait().map(|s| s.to_string()).unwrap_or_default();
        assert!(st.contains("signal: 9"), "{st}");
    }
    g.child = None;
    g.cg.destroy().unwrap_or_else(|e| panic!("destroy: {e}"));
    for d in &g.cg.dirs {
        assert!(!d.dir.exists(), "{} left behind", d.dir.display());
    }
    g.cg.destroy()
        .unwrap_or_else(|e| panic!("second destroy: {e}"));
}

#[test]
fn destroy_refuses_while_a_task_lives_and_never_kills() {
    require_root!();
    let g = start("busy", "{}");
    let err =
        g.cg.destroy()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
    assert!(err.contains("processes are still in it"), "{err}");
    let pid = child_pid(&g);
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "destroy must not kill"
    );
}

#[test]
fn bad_limit_names_the_file_and_leaves_nothing() {
    require_root!();
    let id = unique("bad");
    let cg = Cgroup::for_container(Some(Path::new(&format!("/{id}"))), &id)
        .unwrap_or_else(|e| panic!("{e}"));
    let err = cg
        .create(Some(&res(r#"{"cpu":{"cpus":"4096-4097"}}"#)))
        .err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("cpuset.cpus"), "{msg}");
    for d in &cg.dirs {
        assert!(!d.dir.exists(), "{} left behind", d.dir.display());
    }
    // For a relative default path the directory sits below our own cgroup.
    let rel = Cgroup::for_container(None, &id).unwrap_or_else(|e| panic!("{e}"));
    assert!(rel.dirs.iter().all(|d| d.dir.ends_with(&id)));
    std::thread::sleep(Duration::from_millis(1));
}
