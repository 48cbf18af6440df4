//! cgroups of one container on cgroup v1, v2 and the hybrid layout (v1 controllers plus a
//! cgroup2 mount at /sys/fs/cgroup/unified). Used by `container` (create, add_task, pause,
//! kill --all, ps, update, stats, delete) and recorded in the container state.
//!
//! Owns: the container's directories in every hierarchy and the files in them. Must not touch
//! any other cgroup (except enabling controllers in ancestors' `cgroup.subtree_control` on v2
//! and copying `cpuset.cpus`/`cpuset.mems` into new v1 cpuset levels, both kernel requirements),
//! and never kills a process unless `signal_all` is called.
//!
//! Which hierarchies a container joins (the start path is hot; each hierarchy costs a mkdir,
//! a join and a rmdir, 50-200 us measured here; the join is done by the new process itself, see
//! [`SelfJoin`]):
//! - always one *tracking* hierarchy, which lists every process for `ps`, `kill --all` and
//!   `delete`, and freezes them for `pause`: the cgroup2 directory when a cgroup2 mount exists
//!   (pure v2, or the hybrid's `unified` mount, whose core files give `cgroup.freeze`,
//!   `cgroup.kill` and `cpu.stat` usage without any controller), else the v1 freezer;
//! - a v1 controller's hierarchy (or a v2 controller) only when `linux.resources` sets a limit
//!   for it (memory, pids, cpu, cpuset, devices, blkio weight, hugetlb). `update` that sets a
//!   new kind of limit later creates that hierarchy and moves the frozen tasks into it;
//! - plus, when the caller asks (`create_with`, the runc personality under an engine), the
//!   hierarchies engines read usage from themselves ([`STATS_CONTROLLERS`]).
//!
//! Why the engine case differs: containerd's shim does not ask the runtime for stats. It loads
//! the container's cgroups from `/proc/<pid>/cgroup` (containerd/cgroups `Load(V1,
//! PidPath(pid))` on v1 and hybrid hosts) and reads memory, cpu, cpuacct, pids, blkio and
//! hugetlb files there. A container left in its caller's v1 memory cgroup would report the
//! caller's usage (the host's, at the root), so those hierarchies are joined as runc joins
//! every hierarchy.
//!
//! Paths follow runc: an absolute `cgroupsPath` is relative to each hierarchy's root, a
//! relative one to our own cgroup (v1) or its parent (v2), and an empty one means `<id>`
//! relative, so that by default containers nest inside the caller's cgroup (and its limits).

mod fsio;
pub mod layout;
pub mod limits;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

pub use layout::{Controller, Version};
use layout::{Hierarchy, Layout};

/// Errors of the cgroup code. Each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot detect the cgroup layout: {0}")]
    Layout(String),
    #[error("cannot {op} {path}: {source}{hint}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("unexpected content in {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("cgroup {path} did not reach state {state} within {waited_ms} ms")]
    Timeout {
        path: PathBuf,
        state: &'static str,
        waited_ms: u128,
    },
}

/// One directory of the container in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    pub dir: PathBuf,
    pub mount: PathBuf,
    pub version: Version,
    pub controllers: Vec<Controller>,
    /// The directory that tracks (and freezes) every process of the container.
    pub tracking: bool,
}

impl CgroupDir {
    fn carries(&self, c: Controller) -> bool {
        self.controllers.contains(&c)
    }
}

/// The cgroup(s) of one container. Serializable: it is kept in the container's state so that
/// `delete`, `pause`, `ps` and `update` find the same directories later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {
    /// The cleaned `cgroupsPath` (or the id), as given; for messages.
    pub path: String,
    pub dirs: Vec<CgroupDir>,
}

/// The controllers whose usage engines read from the container's own cgroups (containerd's
/// v1 metrics: memory, cpu throttling, cpuacct usage, pids, blkio, hugetlb).
pub const STATS_CONTROLLERS: &[Controller] = &[
    Controller::Memory,
    Controller::Cpu,
    Controller::Cpuacct,
    Controller::Pids,
    Controller::Blkio,
    Controller::Hugetlb,
];

/// The handles a new container process uses to join its cgroups itself, opened by the runtime
/// before the clone.
///
/// Why not the runtime writing the child's pid to `cgroup.procs`: moving a whole thread group
/// takes the global `cgroup_threadgroup_rwsem` for writing, and the first writer after a quiet
/// moment waits for an RCU grace period (`percpu_down_write` -> `rcu_sync_enter`): 7-20 ms
/// measured here, the largest single cost of starting a container. Two ways in avoid that lock:
/// - v1: a task writing `0` (itself) to a hierarchy's `tasks` file moves only itself, and the
///   kernel skips the threadgroup lock for that case (`cgroup_procs_write_start`: a single
///   thread that is `current` cannot exit or exec under us). The new process is single-threaded,
///   so it moves whole. The permission check uses the credentials the file was *opened* with
///   (`of->file->f_cred`, since the CVE-2021-4197 fix), so the runtime opens the files and the
///   child, even inside a new user namespace, may write them.
/// - v2: `clone3(CLONE_INTO_CGROUP)` creates the process in the directory (`cgroup_can_fork`
///   takes the rwsem for reading only).
///
/// The fds are O_CLOEXEC: nothing of the host's cgroupfs reaches the container's program.
#[derive(Debug, Default)]
pub struct SelfJoin {
    /// The `tasks` file of each v1 hierarchy the container is in.
    pub v1_tasks: Vec<OwnedFd>,
    /// The cgroup2 directory (pure v2, or the hybrid's `unified` mount), for CLONE_INTO_CGROUP.
    pub v2_dir: Option<OwnedFd>,
}

impl SelfJoin {
    /// In the new process: joins every v1 hierarchy by writing `0` to its `tasks` file.
    pub fn join_v1_self(&self) -> Result<(), rustix::io::Errno> {
        for fd in &self.v1_tasks {
            rustix::io::write(fd, b"0")?;
        }
        Ok(())
    }
}

/// Usage and limits, for `runc events --stats`, `capsa stats` and `update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupStats {
    pub memory: Option<MemoryStats>,
    pub pids: Option<PidsStats>,
    pub cpu: Option<CpuStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    pub usage_bytes: u64,
    /// `None` when unlimited.
    pub limit_bytes: Option<u64>,
    pub max_usage_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    pub current: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    pub usage_ns: u64,
}

impl Cgroup {
    /// Computes the container's directories; changes nothing on disk.
    pub fn for_container(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup, CgroupError> {
        let layout = layout::host_layout()?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| fsio::io_err("read", Path::new("/proc/self/cgroup"), e, ""))?;
        Ok(Cgroup::for_layout(
            layout,
            &layout::parse_proc_cgroup(&own),
            cgroups_path,
            id,
        ))
    }

    /// `for_container` with the layout and our own cgroups given (pure; unit-tested).
    pub fn for_layout(
        layout: &Layout,
        own: &[(String, String)],
        cgroups_path: Option<&Path>,
        id: &str,
    ) -> Cgroup {
        let requested = cgroups_path.filter(|p| !p.as_os_str().is_empty());
        let (inner, absolute) = match requested {
            Some(p) => layout::clean_cgroup_path(p),
            None => layout::clean_cgroup_path(Path::new(id)),
        };
        let tracking_idx = tracking_index(layout);
        let dirs = layout
            .hierarchies
            .iter()
            .enumerate()
            .map(|(i, h)| CgroupDir {
                dir: layout::container_dir(
                    h,
                    &inner,
                    absolute,
                    layout::own_path(h, own).as_deref(),
                ),
                mount: h.mount.clone(),
                version: h.version,
                controllers: h.controllers.clone(),
                tracking: Some(i) == tracking_idx,
            })
            .collect();
        let shown = if absolute {
            Path::new("/").join(&inner)
        } else {
            inner
        };
        Cgroup {
            path: shown.display().to_string(),
            dirs,
        }
    }

    /// Creates the directories that these resources need (plus the tracking one) and applies
    /// the limits. On error, the directories made here are removed again.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), CgroupError> {
        self.create_with(resources, &[])
    }

    /// `create`, also joining the hierarchies of `extra` controllers without any limit
    /// (e.g. [`STATS_CONTROLLERS`] for engines that read usage themselves).
    pub fn create_with(
        &self,
        resources: Option<&LinuxResources>,
        extra: &[Controller],
    ) -> Result<(), CgroupError> {
        let empty = LinuxResources::default();
        let r = resources.unwrap_or(&empty);
        let mut needed = limits::needed_controllers(r);
        for c in extra {
            if !needed.contains(c) {
                needed.push(*c);
            }
        }
        let mut made: Vec<&CgroupDir> = Vec::new();
        let result = self.needed_dirs(&needed).try_for_each(|d| {
            fsio::ensure_dir(d, &needed)?;
            made.push(d);
            Ok(())
        });
        let result = result.and_then(|()| self.apply(r));
        if result.is_err() {
            for d in made.iter().rev() {
                let _ = fsio::remove_dir(&d.dir, Duration::ZERO);
            }
        }
        result
    }

    fn needed_dirs<'a>(&'a self, needed: &'a [Controller]) -> impl Iterator<Item = &'a CgroupDir> {
        self.dirs
            .iter()
            .filter(|d| d.tracking || needed.iter().any(|c| d.carries(*c)))
    }

    fn tracking(&self) -> Result<&CgroupDir, CgroupError> {
        self.dirs.iter().find(|d| d.tracking).ok_or_else(|| {
            CgroupError::Unsupported(format!("cgroup {} has no tracking hierarchy", self.path))
        })
    }

    /// Moves `pid` (a whole thread group) into every directory that exists.
    pub fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        self.add_task_to(pid, |_| true)
    }

    fn add_task_to(&self, pid: i32, pick: impl Fn(&CgroupDir) -> bool) -> Result<(), CgroupError> {
        for d in self.dirs.iter().filter(|d| pick(d)) {
            match fsio::write_file(&d.dir.join("cgroup.procs"), &pid.to_string()) {
                Ok(()) => {}
                // Not created for this container (no limit of that kind).
                Err(CgroupError::Io { source, .. })
                    if !d.tracking && source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Opens what a new process needs to put *itself* into every directory that exists (the
    /// start path's join, see [`SelfJoin`]). Directories without a limit that were not created
    /// are skipped, as in [`Cgroup::add_task`].
    pub fn open_self_join(&self) -> Result<SelfJoin, CgroupError> {
        let mut join = SelfJoin::default();
        for d in &self.dirs {
            let (path, flags) = match d.version {
                Version::V1 => (d.dir.join("tasks"), OFlags::WRONLY),
                Version::V2 => (d.dir.clone(), OFlags::RDONLY | OFlags::DIRECTORY),
            };
            match rustix::fs::open(&path, flags | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) if d.version == Version::V1 => join.v1_tasks.push(fd),
                Ok(fd) => join.v2_dir = Some(fd),
                Err(rustix::io::Errno::NOENT) if !d.tracking => {}
                Err(e) => return Err(fsio::io_err("open", &path, e.into(), "")),
            }
        }
        Ok(join)
    }

    /// Moves `pid` into the directories of one cgroup version only (the part of a join that
    /// [`SelfJoin`] could not do, e.g. v2 where clone3 is missing).
    pub fn add_task_version(&self, pid: i32, version: Version) -> Result<(), CgroupError> {
        self.add_task_to(pid, |d| d.version == version)
    }

    /// Every process of the container, nested cgroups included, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let t = self.tracking()?;
        let mut out = Vec::new();
        fsio::collect_procs(&t.dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Freezes every process and waits until the kernel reports them frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let t = self.tracking()?;
        let (file, value) = freezer_file(t, frozen)?;
        let path = t.dir.join(file);
        let start = Instant::now();
        let mut delay = Duration::from_micros(100);
        loop {
            // v1 can stay in FREEZING while a task is in an uninterruptible sleep; writing
            // FROZEN again retries (kernel: freezer_change_state), as runc does.
            fsio::write_file(&path, value)?;
            if self.frozen_state(t)? == frozen {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(2) {
                let state = if frozen { "frozen" } else { "thawed" };
                return Err(CgroupError::Timeout {
                    path,
                    state,
                    waited_ms: 2000,
                });
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    /// True when the kernel reports every process frozen (v1 FROZEN, v2 `frozen 1`).
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.frozen_state(self.tracking()?)
    }

    fn frozen_state(&self, t: &CgroupDir) -> Result<bool, CgroupError> {
        match t.version {
            Version::V2 => {
                let path = t.dir.join("cgroup.events");
                let text = fsio::read_file(&path)?;
                Ok(fsio::keyed_value(&text, "frozen").is_some_and(|v| v == "1"))
            }
            Version::V1 => Ok(fsio::read_file(&t.dir.join("freezer.state"))?.trim() == "FROZEN"),
        }
    }

    /// Applies new limits. A limit kind the container had no hierarchy for gets one, and the
    /// container's processes are moved into it while frozen (so that no fork escapes).
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let needed = limits::needed_controllers(resources);
        let missing: Vec<&CgroupDir> = self
            .needed_dirs(&needed)
            .filter(|d| !d.dir.exists())
            .collect();
        if !missing.is_empty() {
            self.join_new_dirs(&missing, &needed)?;
        }
        self.apply(resources)
    }

    fn join_new_dirs(&self, dirs: &[&CgroupDir], needed: &[Controller]) -> Result<(), CgroupError> {
        let was_frozen = self.is_frozen().unwrap_or(false);
        if !was_frozen {
            self.freeze()?;
        }
        let result = (|| {
            let pids = self.pids()?;
            for d in dirs {
                fsio::ensure_dir(d, needed)?;
                for pid in &pids {
                    fsio::write_file(&d.dir.join("cgroup.procs"), &pid.to_string())?;
                }
            }
            Ok(())
        })();
        if !was_frozen {
            self.thaw()?;
        }
        result
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(m) = r.memory() {
            if m.kernel().is_some() {
                tracing::debug!(
                    "linux.resources.memory.kernel is ignored (obsolete since Linux 5.4)"
                );
            }
            if let Some(d) = self.dir_for(Controller::Memory, Version::V1) {
                fsio::set_v1_memory(&d.dir, m.limit(), m.swap())?;
            }
        }
        let writes = limits::v1_writes(r).into_iter().map(|w| (w, Version::V1));
        let writes = writes.chain(limits::v2_writes(r).into_iter().map(|w| (w, Version::V2)));
        for (w, version) in writes {
            if let Some(d) = self.dir_for(w.controller, version) {
                fsio::write_file(&d.dir.join(&w.file), &w.value)?;
            }
        }
        self.warn_unenforced(r);
        Ok(())
    }

    /// The directory that carries `c` in a hierarchy of `version`, if the host has one.
    fn dir_for(&self, c: Controller, version: Version) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|d| d.version == version && d.carries(c))
    }

    /// Limits that no hierarchy of this host can carry.
    fn warn_unenforced(&self, r: &LinuxResources) {
        for c in limits::needed_controllers(r) {
            if !self.dirs.iter().any(|d| d.carries(c)) {
                if c == Controller::Devices {
                    // cgroup v2 filters devices with an eBPF program (BPF_CGROUP_DEVICE), which
                    // capsa does not load yet. The container's /dev still holds only the nodes
                    // its config lists, and opening a node it mknods needs CAP_MKNOD.
                    tracing::warn!(
                        "device cgroup rules are not enforced on cgroup v2 (eBPF device filters \
                         are not supported yet); /dev holds only the configured devices"
                    );
                } else {
                    tracing::warn!(
                        "no {} controller on this host: limit ignored",
                        c.kernel_name()
                    );
                }
            }
        }
    }

    /// Usage and limits, from the hierarchies the container joined.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let existing = |c: Controller| self.dirs.iter().find(|d| d.carries(c) && d.dir.exists());
        let memory = existing(Controller::Memory)
            .map(fsio::memory_stats)
            .transpose()?;
        let pids = existing(Controller::Pids)
            .map(fsio::pids_stats)
            .transpose()?;
        let cpu = match self.tracking()? {
            t if t.version == Version::V2 => Some(fsio::v2_cpu_stats(t)?),
            _ => existing(Controller::Cpuacct)
                .map(fsio::v1_cpu_stats)
                .transpose()?,
        };
        Ok(CgroupStats { memory, pids, cpu })
    }

    /// Sends `sig` to every process. SIGKILL on v2 uses `cgroup.kill` (atomic, Linux 5.14);
    /// otherwise the tasks are frozen first so that none forks away, signalled, then thawed
    /// (a container paused before stays paused, except after SIGKILL, whose targets must run
    /// to die on v1).
    pub fn signal_all(&self, sig: i32) -> Result<(), CgroupError> {
        let t = self.tracking()?;
        if sig == libc::SIGKILL && t.version == Version::V2 {
            let kill = t.dir.join("cgroup.kill");
            if kill.exists() {
                return fsio::write_file(&kill, "1");
            }
        }
        let can_freeze = freezer_file(t, true).is_ok();
        let was_frozen = can_freeze && self.is_frozen()?;
        if can_freeze && !was_frozen {
            self.freeze()?;
        }
        let result = self.pids().map(|pids| {
            for pid in pids {
                fsio::send_signal(pid, sig);
            }
        });
        if can_freeze && (!was_frozen || sig == libc::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    /// Removes every directory (nested ones first). Idempotent. Retries for a short while
    /// when processes are still exiting; never kills.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for d in self.dirs.iter().rev() {
            if let Err(e) = fsio::remove_dir(&d.dir, Duration::from_millis(500)) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The tracking hierarchy: cgroup2 if mounted, else the v1 freezer, else the first v1 one.
fn tracking_index(layout: &Layout) -> Option<usize> {
    let hs: &[Hierarchy] = &layout.hierarchies;
    hs.iter()
        .position(|h| h.version == Version::V2)
        .or_else(|| {
            hs.iter()
                .position(|h| h.controllers.contains(&Controller::Freezer))
        })
        .or(if hs.is_empty() { None } else { Some(0) })
}

fn freezer_file(t: &CgroupDir, frozen: bool) -> Result<(&'static str, &'static str), CgroupError> {
    match t.version {
        Version::V2 => Ok(("cgroup.freeze", if frozen { "1" } else { "0" })),
        Version::V1 if t.carries(Controller::Freezer) => {
            Ok(("freezer.state", if frozen { "FROZEN" } else { "THAWED" }))
        }
        Version::V1 => Err(CgroupError::Unsupported(format!(
            "cannot pause: no freezer hierarchy is mounted (tracking cgroup {})",
            t.dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Layout {
        let mut l = layout::parse_mountinfo(
            "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        l.hierarchies[3].controllers = vec![Controller::Hugetlb];
        l
    }

    #[test]
    fn hybrid_tracks_in_unified() {
        let own = layout::parse_proc_cgroup("4:memory:/api/x\n0::/\n");
        let cg = Cgroup::for_layout(&hybrid(), &own, None, "web");
        let t: Vec<_> = cg.dirs.iter().filter(|d| d.tracking).collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].dir, PathBuf::from("/sys/fs/cgroup/unified/web"));
        assert_eq!(
            cg.dirs[1].dir,
            PathBuf::from("/sys/fs/cgroup/memory/api/x/web")
        );
        assert_eq!(cg.path, "web");
    }

    #[test]
    fn v1_only_tracks_in_freezer() {
        let mut l = hybrid();
        l.hierarchies.pop();
        let cg = Cgroup::for_layout(&l, &[], Some(Path::new("/capsa/../../web")), "id");
        let t = cg.dirs.iter().find(|d| d.tracking).map(|d| d.dir.clone());
        assert_eq!(t, Some(PathBuf::from("/sys/fs/cgroup/freezer/web")));
        assert_eq!(cg.path, "/web");
    }

    #[test]
    fn needed_dirs_skip_unlimited_controllers() {
        let cg = Cgroup::for_layout(&hybrid(), &[], None, "web");
        let r: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":1}}"#).unwrap_or_default();
        let needed = limits::needed_controllers(&r);
        let dirs: Vec<_> = cg.needed_dirs(&needed).map(|d| d.dir.clone()).collect();
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/web"),
                PathBuf::from("/sys/fs/cgroup/unified/web")
            ]
        );
    }

    #[test]
    fn state_round_trip() {
        let cg = Cgroup::for_layout(&hybrid(), &[], Some(Path::new("/a/b")), "web");
        let json = serde_json::to_string(&cg).unwrap_or_default();
        let back: Cgroup = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(back.dirs, cg.dirs);
    }
}
