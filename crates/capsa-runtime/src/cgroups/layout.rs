//! Which cgroup hierarchies this host has, and where a container's directories go in each.
//!
//! Owns: reading /proc/self/mountinfo and /proc/self/cgroup (once per process) and the pure
//! path computation. Must not create, write or remove anything.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// A resource controller capsa knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Cpu,
    Cpuacct,
    Cpuset,
    Memory,
    Devices,
    Freezer,
    Blkio,
    Pids,
    Hugetlb,
}

impl Controller {
    /// The kernel's name for the controller (the mount option on v1, the
    /// `cgroup.controllers` word on v2).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
            Controller::Blkio => "blkio",
            Controller::Pids => "pids",
            Controller::Hugetlb => "hugetlb",
        }
    }

    fn from_v1_option(opt: &str) -> Option<Controller> {
        Some(match opt {
            "cpu" => Controller::Cpu,
            "cpuacct" => Controller::Cpuacct,
            "cpuset" => Controller::Cpuset,
            "memory" => Controller::Memory,
            "devices" => Controller::Devices,
            "freezer" => Controller::Freezer,
            "blkio" => Controller::Blkio,
            "pids" => Controller::Pids,
            "hugetlb" => Controller::Hugetlb,
            _ => return None,
        })
    }

    /// v2 names; `io` is the v2 successor of blkio.
    fn from_v2_name(name: &str) -> Option<Controller> {
        match name {
            "io" => Some(Controller::Blkio),
            "freezer" | "cpuacct" => None,
            other => Controller::from_v1_option(other),
        }
    }
}

/// The kind of one mounted hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// One mounted hierarchy: its mount point, its kind and the controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// The path inside the hierarchy that the mount shows (field 4 of mountinfo); `/` normally.
    pub mount_root: String,
    pub version: Version,
    pub controllers: Vec<Controller>,
}

/// The host's cgroup layout: every hierarchy capsa can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// True when /sys/fs/cgroup itself is cgroup2 (no v1 controllers at all).
    pub fn is_unified(&self) -> bool {
        self.hierarchies.iter().all(|h| h.version == Version::V2)
    }
}

static HOST_LAYOUT: OnceLock<Result<Layout, String>> = OnceLock::new();

/// The layout of this host, read once per process from /proc/self/mountinfo.
pub fn host_layout() -> Result<&'static Layout, CgroupError> {
    let cached = HOST_LAYOUT.get_or_init(|| {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mut layout = parse_mountinfo(&mountinfo);
        for h in layout.hierarchies.iter_mut() {
            if h.version == Version::V2 {
                let file = h.mount.join("cgroup.controllers");
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                h.controllers = parse_v2_controllers(&text);
            }
        }
        // A v2 controller that is also bound to a v1 hierarchy stays unusable on v2
        // (kernel: a controller lives in one hierarchy at a time); drop duplicates.
        let v1: Vec<Controller> = layout
            .hierarchies
            .iter()
            .filter(|h| h.version == Version::V1)
            .flat_map(|h| h.controllers.clone())
            .collect();
        for h in layout.hierarchies.iter_mut() {
            if h.version == Version::V2 {
                h.controllers.retain(|c| !v1.contains(c));
            }
        }
        if layout.hierarchies.is_empty() {
            return Err("no cgroup or cgroup2 mount found in /proc/self/mountinfo".to_string());
        }
        Ok(layout)
    });
    cached.as_ref().map_err(|e| CgroupError::Layout(e.clone()))
}

/// Parses the cgroup and cgroup2 lines of a mountinfo text. A hierarchy mounted twice is kept
/// once (the first mount, as the kernel lists mounts in mount order).
pub fn parse_mountinfo(text: &str) -> Layout {
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        // Fields: id parent major:minor root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right_fields = right.split_whitespace();
        let fstype = right_fields.next().unwrap_or("");
        let _source = right_fields.next();
        let superopts = right_fields.next().unwrap_or("");
        let fields: Vec<&str> = left.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        let mount = PathBuf::from(unescape_mountinfo(fields[4]));
        let mount_root = unescape_mountinfo(fields[3]);
        let h = match fstype {
            "cgroup2" => Hierarchy {
                mount,
                mount_root,
                version: Version::V2,
                controllers: vec![],
            },
            "cgroup" => {
                let controllers: Vec<Controller> = superopts
                    .split(',')
                    .filter_map(Controller::from_v1_option)
                    .collect();
                if controllers.is_empty() {
                    continue; // name=systemd and friends: nothing we drive
                }
                Hierarchy {
                    mount,
                    mount_root,
                    version: Version::V1,
                    controllers,
                }
            }
            _ => continue,
        };
        let duplicate = hierarchies.iter().any(|o| {
            o.version == h.version && (h.version == Version::V2 || o.controllers == h.controllers)
        });
        if !duplicate {
            hierarchies.push(h);
        }
    }
    Layout { hierarchies }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_v2_controllers(text: &str) -> Vec<Controller> {
    text.split_whitespace()
        .filter_map(Controller::from_v2_name)
        .collect()
}

/// Our own cgroup in each hierarchy, from a /proc/self/cgroup text. Returns `(controllers
/// or "" for v2, path)` pairs, as the kernel lists them.
pub fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?;
            let path = parts.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// The caller's cgroup path in hierarchy `h`, from the parsed /proc/self/cgroup.
pub fn own_path(h: &Hierarchy, own: &[(String, String)]) -> Option<String> {
    own.iter()
        .find(|(ctrls, _)| match h.version {
            Version::V2 => ctrls.is_empty(),
            Version::V1 => {
                let names: Vec<&str> = ctrls.split(',').collect();
                h.controllers
                    .iter()
                    .all(|c| names.contains(&c.kernel_name()))
            }
        })
        .map(|(_, p)| p.clone())
}

/// Lexically cleans a cgroup path so that it can never leave the hierarchy: `..` at the top is
/// dropped, as if the path were rooted at `/` (the same rule as runc's CleanPath). Returns the
/// cleaned path and whether it was absolute.
pub fn clean_cgroup_path(path: &Path) -> (PathBuf, bool) {
    let absolute = path.is_absolute();
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    (parts.iter().collect(), absolute)
}

/// The directory of a container in hierarchy `h`.
///
/// - absolute `cgroupsPath`: relative to the hierarchy root (runc: `filepath.Join(root, mnt, inner)`);
/// - relative: below our own cgroup on v1 and below the *parent* of our own cgroup on v2, where
///   the kernel's no-internal-process rule forbids enabling controllers in a cgroup that has
///   processes (runc's fs and fs2 managers do the same).
///
/// `own` is our path in this hierarchy (`None` = the root). `h.mount_root` is subtracted, as the
/// mount may show a sub-tree (inside a cgroup namespace or a bind mount).
pub fn container_dir(h: &Hierarchy, inner: &Path, absolute: bool, own: Option<&str>) -> PathBuf {
    let base: PathBuf = if absolute {
        PathBuf::new()
    } else {
        let own = own.unwrap_or("/");
        let own = Path::new(own);
        let own = match h.version {
            Version::V1 => own.to_path_buf(),
            Version::V2 => own.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let (clean, _) = clean_cgroup_path(&own);
        clean
    };
    let full = base.join(inner);
    let (mount_root, _) = clean_cgroup_path(Path::new(&h.mount_root));
    let rel = full.strip_prefix(&mount_root).unwrap_or(&full);
    h.mount.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let l = parse_mountinfo(HYBRID);
        assert_eq!(l.hierarchies.len(), 5, "name=systemd is skipped: {l:?}");
        assert_eq!(l.hierarchies[0].controllers, vec![Controller::Cpu]);
        assert_eq!(l.hierarchies[4].version, Version::V2);
        assert_eq!(
            l.hierarchies[4].mount,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert!(!l.is_unified());
    }

    #[test]
    fn parses_comounted_and_unified() {
        let text = "1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let l = parse_mountinfo(text);
        assert_eq!(
            l.hierarchies[0].controllers,
            vec![Controller::Cpu, Controller::Cpuacct]
        );
        let v2 = parse_mountinfo("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n");
        assert!(v2.is_unified());
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn v2_controllers_map_io_to_blkio() {
        assert_eq!(
            parse_v2_controllers("cpuset cpu io memory hugetlb pids rdma misc\n"),
            vec![
                Controller::Cpuset,
                Controller::Cpu,
                Controller::Blkio,
                Controller::Memory,
                Controller::Hugetlb,
                Controller::Pids
            ]
        );
    }

    #[test]
    fn cleans_paths_without_escape() {
        assert_eq!(
            clean_cgroup_path(Path::new("/a/../../b")),
            (PathBuf::from("b"), true)
        );
        assert_eq!(
            clean_cgroup_path(Path::new("../../x/./y")),
            (PathBuf::from("x/y"), false)
        );
        assert_eq!(clean_cgroup_path(Path::new("/")), (PathBuf::new(), true));
    }

    #[test]
    fn own_path_matches_by_controllers() {
        let own = parse_proc_cgroup("4:memory:/process_api/x\n1:cpu:/\n0::/user.slice/a\n");
        let l = parse_mountinfo(HYBRID);
        assert_eq!(
            own_path(&l.hierarchies[2], &own).as_deref(),
            Some("/process_api/x")
        );
        assert_eq!(
            own_path(&l.hierarchies[4], &own).as_deref(),
            Some("/user.slice/a")
        );
        assert_eq!(own_path(&l.hierarchies[3], &own), None);
    }

    #[test]
    fn container_dirs_follow_runc_rules() {
        let l = parse_mountinfo(HYBRID);
        let mem = &l.hierarchies[2];
        let unified = &l.hierarchies[4];
        // absolute: from the hierarchy root
        assert_eq!(
            container_dir(mem, Path::new("default/web"), true, Some("/process_api/x")),
            PathBuf::from("/sys/fs/cgroup/memory/default/web")
        );
        // relative on v1: below our own cgroup
        assert_eq!(
            container_dir(mem, Path::new("web"), false, Some("/process_api/x")),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/x/web")
        );
        // relative on v2: below the parent of our own cgroup
        assert_eq!(
            container_dir(unified, Path::new("web"), false, Some("/user.slice/a")),
            PathBuf::from("/sys/fs/cgroup/unified/user.slice/web")
        );
        // a mount that shows a sub-tree (cgroup namespace)
        let ns = Hierarchy {
            mount_root: "/process_api/x".into(),
            ..mem.clone()
        };
        assert_eq!(
            container_dir(&ns, Path::new("web"), false, Some("/process_api/x")),
            PathBuf::from("/sys/fs/cgroup/memory/web")
        );
    }
}
