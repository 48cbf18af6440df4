//! A real engine drives the runtime (root): the test starts its own containerd on private
//! sockets and dirs (shared/reference/engines.md §2), imports a hand-made busybox OCI
//! image, and runs it with `ctr run --runc-binary <dir>/capsa-runc`, expecting ctr's
//! default capabilities (CapEff 00000000a80425fb). The same run with runc is the baseline.
//! Owns: its containerd (stopped by PID), a unique containerd namespace, and the
//! `/run/containerd/runc/<namespace>` dir that containerd 1.6 hard-codes for it.

#[path = "common/mod.rs"]
#[macro_use]
mod common;

use common::{Out, Runner, Runtime, find_in_path, run_cmd, temp_dir, unique_id, wait_until};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private containerd: killed (SIGTERM, then SIGKILL) by its PID on drop, its mounts
/// under the temp dir unmounted, its namespace's runc root removed.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    ns: String,
}

impl Containerd {
    /// Starts containerd; `Err(reason)` when it cannot start here.
    fn start() -> Result<Containerd, String> {
        let bin = find_in_path("containerd").ok_or("containerd is not installed")?;
        find_in_path("ctr").ok_or("ctr is not installed")?;
        let dir = temp_dir("containerd");
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n"
        );
        let cfg = dir.path().join("config.toml");
        fs::write(&cfg, config).map_err(|e| format!("write {cfg:?}: {e}"))?;
        let log = fs::File::create(dir.path().join("containerd.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn containerd: {e}"))?;
        let c = Containerd {
            dir,
            child,
            ns: unique_id("ns"),
        };
        let sock = c.socket();
        if !wait_until(Duration::from_secs(15), || c.ctr(&["version"]).ok()) {
            let log = fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default();
            return Err(format!("containerd did not answer on {sock:?}:\n{log}"));
        }
        Ok(c)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr --address S --namespace NS args...`.
    fn ctr(&self, args: &[&str]) -> Out {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.socket())
            .args(["--namespace", &self.ns]);
        c.args(args);
        run_cmd(c, self.dir.path(), None, Duration::from_secs(60))
    }

    fn unmount_all_under(dir: &Path) {
        let prefix = dir.to_string_lossy().into_owned();
        let mut points: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|mp| mp.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Best effort, newest first: task, container, image, namespace.
        let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", "e2e"]);
        let _ = self.ctr(&["containers", "rm", "e2e"]);
        let _ = self.ctr(&["images", "rm", IMAGE]);
        let _ = self.ctr(&["namespaces", "rm", &self.ns]);
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the PID of the child we spawned and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let stopped = wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        Containerd::unmount_all_under(self.dir.path());
        let _ = fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.ns));
        // ctr's cgroupsPath is /<namespace>/<id>: the runtime removes the leaf, the parent
        // named after our unique namespace is ours to remove.
        common::proc::remove_cgroups_named(&self.ns);
    }
}

const IMAGE: &str = "localhost/capsa-e2e:latest";

fn ctr_run_shows_default_caps(rt: Runtime) {
    require_root!();
    let Some(r) = Runner::new(rt) else { return };
    let engine = match Containerd::start() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("SKIP: containerd cannot start here: {why}");
            return;
        }
    };
    let work = temp_dir("image");
    let rootfs = work.path().join("rootfs");
    common::build_rootfs(&rootfs);
    let archive = common::oci_image::build_archive(&rootfs, work.path(), IMAGE);
    engine
        .ctr(&["images", "import", &archive.to_string_lossy()])
        .assert_ok("ctr images import");

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
