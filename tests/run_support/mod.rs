//! Shared by the `run_*` and `seed_walkthrough` tests: a private capsa root in a temp dir, a
//! small image built from busybox-static (httpd, wget, id, grep, ...) imported with
//! `capsa import`, a runner for the binary, and a guard that removes every container it made
//! and then checks that no mount, cgroup or state is left behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const IMAGE: &str = "capsa-test-web:1";

/// Docker's 14 defaults.
pub const DOCKER_DEFAULTS: u64 = 0xa804_25fb;
pub const NET_BIND_SERVICE: u64 = 1 << 10;

pub struct Env {
    pub root: tempfile::TempDir,
    pub bin: PathBuf,
}

/// Skips the test (returns None) when not root: containers need it.
pub fn env() -> Option<Env> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let root = tempfile::Builder::new()
        .prefix("capsa-run-test-")
        .tempdir()
        .expect("tempdir");
    let env = Env {
        root,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_capsa")),
    };
    env.import_image();
    Some(env)
}

impl Env {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("CAPSA_ROOT", self.root.path())
            .env_remove("CAPSA_STATE_ROOT");
        c
    }

    pub fn capsa(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run capsa")
    }

    /// Runs capsa and returns stdout; panics with stderr if it failed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.capsa(args);
        assert!(
            out.status.success(),
            "capsa {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn import_image(&self) {
        let rootfs = self.root.path().join("image-src");
        build_rootfs(&rootfs);
        let tar = self.root.path().join("web.tar");
        let st = Command::new("tar")
            .args(["-C"])
            .arg(&rootfs)
            .args(["-cf"])
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(st.success());
        self.ok(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            tar.to_str().expect("utf8"),
            IMAGE,
        ]);
        std::fs::remove_dir_all(&rootfs).expect("remove image source");
    }

    /// The host pid of a running container's init, from `capsa inspect`.
    pub fn pid(&self, name: &str) -> i32 {
        let v = self.inspect(name);
        v["State"]["Pid"].as_i64().expect("pid") as i32
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v[0].clone()
    }

    /// Every container id the store knows.
    pub fn ids(&self) -> Vec<String> {
        match std::fs::read_dir(self.root.path().join("containers")) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 64)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Asserts that nothing of container `id` is left: record dir, runtime state, mounts and
    /// cgroup directories.
    pub fn assert_gone(&self, id: &str) {
        assert!(
            !self.root.path().join("containers").join(id).exists(),
            "record of {id} left"
        );
        assert!(
            !self.root.path().join("run/engine").join(id).exists(),
            "runtime state of {id} left"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!mounts.contains(id), "a mount of {id} is left");
        assert!(
            find_cgroup(Path::new("/sys/fs/cgroup"), id, 0).is_none(),
            "a cgroup of {id} is left"
        );
    }
}

fn find_cgroup(dir: &Path, id: &str, depth: u32) -> Option<PathBuf> {
    if depth > 4 {
        return None;
    }
    for e in std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()) {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        if e.file_name().to_string_lossy().contains(id) {
            return Some(e.path());
        }
        if let Some(p) = find_cgroup(&e.path(), id, depth + 1) {
            return Some(p);
        }
    }
    None
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.capsa(&["rm", "-f", &id]);
        }
        // Anything still mounted under the root (a failed rm) must not survive the temp dir.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.path().to_string_lossy().into_owned();
        for line in mounts.lines() {
            if let Some(mp) = line.split(' ').nth(4).filter(|m| m.starts_with(&root)) {
                let _ = rustix::mount::unmount(mp, rustix::mount::UnmountFlags::DETACH);
            }
        }
    }
}

/// A minimal rootfs: busybox-static and the applets the tests use, passwd/group with root and
/// nobody, and a page for httpd.
pub fn build_rootfs(dir: &Path) {
    for d in ["bin", "etc", "www", "tmp", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    for a in [
        "sh", "httpd", "wget", "id", "grep", "sleep", "cat", "true", "false", "echo", "ls",
        "unshare", "hostname", "chown", "kill", "touch",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).expect("symlink");
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    std::fs::write(dir.join("www/index.html"), "hello from capsa\n").expect("index");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
}

/// The capability lines of /proc/PID/status as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub inh: u64,
    pub prm: u64,
    pub eff: u64,
    pub bnd: u64,
    pub amb: u64,
}

pub fn parse_caps(status: &str) -> Caps {
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
            .unwrap_or_else(|| panic!("{key} missing in {status}"))
    };
    Caps {
        inh: get("CapInh:"),
        prm: get("CapPrm:"),
        eff: get("CapEff:"),
        bnd: get("CapBnd:"),
        amb: get("CapAmb:"),
    }
}

pub fn caps_of(pid: i32) -> Caps {
    parse_caps(&std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status"))
}

/// What the host can grant: our own bounding set.
pub fn host_bounding() -> u64 {
    caps_of(std::process::id() as i32).bnd
}

/// A unique container name for this test process.
pub fn name(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}
