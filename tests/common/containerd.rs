//! A private containerd for end-to-end tests (root): its own config, sockets, root and state
//! under a temp dir (shared/reference/engines.md §2), and a unique containerd namespace.
//! Shared by tests/containerd.rs (ctr run --runc-binary) and tests/archives.rs (ctr image
//! import of a `capsa save` archive).
//!
//! Owns: the containerd process (stopped by its PID), everything in its namespace (tasks,
//! containers, images: the namespace is unique, so all of it is the test's), its mounts under
//! the temp dir, the `/run/containerd/runc/<namespace>` dir that containerd 1.6 hard-codes
//! for it, and the cgroup directories named after the namespace.
//! Must not touch: any other containerd, namespace or cgroup.

use super::{Out, find_in_path, run_cmd, temp_dir, unique_id, wait_until};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private containerd: killed (SIGTERM, then SIGKILL) by its PID on drop, its mounts
/// under the temp dir unmounted, its namespace's runc root removed.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub ns: String,
}

impl Containerd {
    /// Starts containerd; `Err(reason)` when it cannot start here.
    pub fn start() -> Result<Containerd, String> {
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

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr --address S --namespace NS args...`.
    pub fn ctr(&self, args: &[&str]) -> Out {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.socket())
            .args(["--namespace", &self.ns]);
        c.args(args);
        run_cmd(c, self.dir.path(), None, Duration::from_secs(60))
    }

    /// The first column of `ctr <kind> ls -q`: what our namespace holds.
    fn list(&self, kind: &str) -> Vec<String> {
        self.ctr(&[kind, "ls", "-q"])
            .stdout
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
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
        // Best effort, newest first: tasks, containers, images, then the namespace. All of
        // them live in our unique namespace, so all of them are ours.
        for c in self.list("containers") {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", &c]);
            let _ = self.ctr(&["tasks", "rm", "-f", &c]);
            let _ = self.ctr(&["containers", "rm", &c]);
        }
        for i in self.list("images") {
            let _ = self.ctr(&["images", "rm", &i]);
        }
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
        super::proc::remove_cgroups_named(&self.ns);
    }
}
