//! Reading what the kernel reports: /proc/PID/{stat,status,mountinfo,limits} and
//! /sys/fs/cgroup. Owns parsing and normalising those texts for comparison.
//! Must not touch: any process or cgroup it did not get an id or PID for.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Field 22 of /proc/PID/stat (start time in clock ticks), the PID-reuse guard.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The one-letter state of a process (R, S, D, Z, T...), from /proc/PID/stat.
pub fn state_letter(pid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

/// True when PID no longer exists or is a zombie waiting for its (foreign) reaper.
pub fn gone_or_zombie(pid: i32) -> bool {
    matches!(state_letter(pid), None | Some('Z') | Some('X'))
}

/// `Key:\tvalue` lines of a /proc/PID/status text.
pub fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A capability mask as /proc prints it (hex), parsed.
pub fn cap_mask(fields: &BTreeMap<String, String>, key: &str) -> Option<u64> {
    u64::from_str_radix(fields.get(key)?, 16).ok()
}

/// The test process's own bounding set: what this host can grant.
pub fn host_cap_bnd() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    cap_mask(&status_fields(&s), "CapBnd").unwrap_or(0)
}

/// The mount shape of a mountinfo text: one `mountpoint fstype mount-opts super-opts`
/// line per mount, option lists sorted, sorted by mountpoint (then the rest). Mount ids,
/// device numbers, roots and sources are dropped: they name host objects that differ
/// between any two containers.
pub fn mount_shape(mountinfo: &str) -> Vec<String> {
    let mut v: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let post: Vec<&str> = post.split_whitespace().collect();
            let (mp, opts) = (pre.get(4)?, pre.get(5)?);
            let (fstype, sup) = (post.first()?, post.get(2).copied().unwrap_or(""));
            Some(format!(
                "{mp} {fstype} {} {}",
                sorted_opts(opts),
                sorted_opts(sup)
            ))
        })
        .collect();
    v.sort();
    v
}

fn sorted_opts(s: &str) -> String {
    let mut o: Vec<&str> = s.split(',').filter(|x| !x.is_empty()).collect();
    o.sort_unstable();
    o.join(",")
}

/// Every directory under /sys/fs/cgroup (depth <= 5) whose name contains `id`.
pub fn cgroup_dirs_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk_cgroups(Path::new("/sys/fs/cgroup"), id, 0, &mut found);
    found
}

fn walk_cgroups(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > 5 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let p = e.path();
        if e.file_name().to_string_lossy().contains(id) {
            found.push(p.clone());
        }
        walk_cgroups(&p, id, depth + 1, found);
    }
}

/// rmdir (deepest first) the cgroup dirs whose name holds our unique `id`; a cgroup
/// still holding tasks stays (rmdir fails with EBUSY), which is the safe outcome.
pub fn remove_cgroups_named(id: &str) {
    let mut dirs = cgroup_dirs_named(id);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = fs::remove_dir(&d);
    }
}

/// The sha256 of a file (via sha256sum, which coreutils always has).
pub fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("sha256sum {path:?}: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// (st_dev, st_ino) of a path, following symlinks (so /proc/PID/exe gives the executable).
pub fn dev_ino(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}
