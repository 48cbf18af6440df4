//! File operations on cgroupfs: small reads and writes that name the file on error, directory
//! creation with the kernel's per-level requirements, removal with retries, stats parsing.
//!
//! Owns: nothing persistent. Must not decide which directories a container gets (`mod.rs` does).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};

use super::layout::{Controller, Version};
use super::{CgroupDir, CgroupError, CpuStats, MemoryStats, PidsStats};

pub fn io_err(
    op: &'static str,
    path: &Path,
    source: std::io::Error,
    hint: &'static str,
) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
        hint,
    }
}

fn errno_hint(e: rustix::io::Errno) -> &'static str {
    match e {
        rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => {
            " (cgroups need root, or a delegated subtree)"
        }
        rustix::io::Errno::INVAL => {
            " (value rejected by the kernel: out of range, or above a parent's limit)"
        }
        rustix::io::Errno::BUSY => " (the cgroup still has processes or children)",
        rustix::io::Errno::NOSPC => {
            " (v1 cpuset: cpus/mems empty; v2: controller not enabled in the parent)"
        }
        _ => "",
    }
}

/// Writes `value` with one open and one write. cgroupfs files must not be created or truncated.
pub fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let fd = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err("open", path, e.into(), errno_hint(e)))?;
    // cgroupfs takes each write as one value: a short write would be a kernel bug.
    rustix::io::write(&fd, value.as_bytes()).map_err(|e| {
        let hint = errno_hint(e);
        CgroupError::Io {
            op: "write",
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("{value:?}: {e}")),
            hint,
        }
    })?;
    Ok(())
}

pub fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| io_err("read", path, e, ""))
}

fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read_file(path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text,
    })
}

/// "max" (v2) or a v1 value near 2^63 (the page-rounded "unlimited") mean no limit.
fn read_limit(path: &Path) -> Result<Option<u64>, CgroupError> {
    let text = read_file(path)?;
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    let v: u64 = t.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: text.clone(),
    })?;
    Ok(if v >= 1 << 62 { None } else { Some(v) })
}

/// The value of `key` in a "key value" per line file (cgroup.events, cpu.stat).
pub fn keyed_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::trim))
}

/// Creates `d.dir` and any missing parents up to the mount, with the per-level steps the kernel
/// needs: on v1 cpuset, a new level starts with empty cpus/mems and refuses tasks until they
/// are copied from its parent; on v2, a controller must be enabled in every ancestor's
/// `cgroup.subtree_control` before the child has its files.
pub fn ensure_dir(d: &CgroupDir, needed: &[Controller]) -> Result<(), CgroupError> {
    let cpuset = d.version == Version::V1 && d.controllers.contains(&Controller::Cpuset);
    mkdir_levels(&d.dir, &d.mount, cpuset)?;
    if d.version == Version::V2 {
        let enable: Vec<String> = needed
            .iter()
            .filter(|c| d.controllers.contains(c))
            .map(|c| format!("+{}", v2_name(*c)))
            .collect();
        if !enable.is_empty() {
            enable_v2_controllers(&d.dir, &d.mount, &enable.join(" "))?;
        }
    }
    Ok(())
}

fn v2_name(c: Controller) -> &'static str {
    if c == Controller::Blkio {
        "io"
    } else {
        c.kernel_name()
    }
}

fn mkdir_levels(dir: &Path, mount: &Path, cpuset: bool) -> Result<(), CgroupError> {
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => return Ok(()),
        Err(rustix::io::Errno::NOENT) if dir != mount => {
            let parent = dir
                .parent()
                .ok_or_else(|| io_err("mkdir", dir, ErrorKind::NotFound.into(), ""))?;
            mkdir_levels(parent, mount, cpuset)?;
            match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io_err("mkdir", dir, e.into(), errno_hint(e))),
            }
        }
        Err(e) => return Err(io_err("mkdir", dir, e.into(), errno_hint(e))),
    }
    if cpuset {
        copy_cpuset_from_parent(dir)?;
    }
    Ok(())
}

fn copy_cpuset_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_file(&dir.join(file))?.trim().is_empty() {
            let value = read_file(&parent.join(file))?;
            write_file(&dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

fn enable_v2_controllers(dir: &Path, mount: &Path, enable: &str) -> Result<(), CgroupError> {
    let Ok(rel) = dir.strip_prefix(mount) else {
        return Ok(());
    };
    let mut level = mount.to_path_buf();
    for part in rel.parent().into_iter().flat_map(Path::components) {
        write_file(&level.join("cgroup.subtree_control"), enable)?;
        level.push(part);
    }
    write_file(&level.join("cgroup.subtree_control"), enable)
}

/// Removes `dir` and nested cgroups under it. Missing is fine. While processes are still
/// exiting the kernel answers EBUSY; retry until `patience` has passed.
pub fn remove_dir(dir: &Path, patience: Duration) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        match rustix::fs::rmdir(dir) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e @ (rustix::io::Errno::BUSY | rustix::io::Errno::NOTEMPTY)) => {
                for child in child_dirs(dir)? {
                    remove_dir(&child, patience)?;
                }
                if start.elapsed() >= patience {
                    return Err(io_err(
                        "remove",
                        dir,
                        e.into(),
                        " (processes are still in it: kill them first, e.g. delete --force)",
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(io_err("remove", dir, e.into(), errno_hint(e))),
        }
    }
}

fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err("list", dir, e, "")),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

/// Appends the pids of `dir/cgroup.procs` and of every nested cgroup.
pub fn collect_procs(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = read_file(&path)?;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
            path: path.clone(),
            content: line.to_string(),
        })?;
        out.push(pid);
    }
    for child in child_dirs(dir)? {
        collect_procs(&child, out)?;
    }
    Ok(())
}

/// v1 memory.limit_in_bytes and memory.memsw.limit_in_bytes. The kernel keeps
/// limit <= memsw at all times (mem_cgroup_resize_max returns EINVAL otherwise): raising
/// both needs memsw first, lowering needs the limit first. Try the limit first, and on
/// EINVAL write memsw and retry.
pub fn set_v1_memory(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<(), CgroupError> {
    let lim = dir.join("memory.limit_in_bytes");
    let sw = dir.join("memory.memsw.limit_in_bytes");
    let swap = match swap {
        Some(s) if !sw.exists() => {
            tracing::debug!(
                "swap limit {s} ignored: swap accounting is off ({} missing)",
                sw.display()
            );
            None
        }
        other => other,
    };
    match (limit, swap) {
        (None, None) => Ok(()),
        (Some(l), None) => write_file(&lim, &l.to_string()),
        (None, Some(s)) => write_file(&sw, &s.to_string()),
        (Some(l), Some(s)) => match write_file(&lim, &l.to_string()) {
            Ok(()) => write_file(&sw, &s.to_string()),
            Err(_) => {
                write_file(&sw, &s.to_string())?;
                write_file(&lim, &l.to_string())
            }
        },
    }
}

pub fn memory_stats(d: &CgroupDir) -> Result<MemoryStats, CgroupError> {
    let f = |name: &str| d.dir.join(name);
    match d.version {
        Version::V1 => Ok(MemoryStats {
            usage_bytes: read_u64(&f("memory.usage_in_bytes"))?,
            limit_bytes: read_limit(&f("memory.limit_in_bytes"))?,
            max_usage_bytes: Some(read_u64(&f("memory.max_usage_in_bytes"))?),
        }),
        Version::V2 => Ok(MemoryStats {
            usage_bytes: read_u64(&f("memory.current"))?,
            limit_bytes: read_limit(&f("memory.max"))?,
            max_usage_bytes: read_u64(&f("memory.peak")).ok(),
        }),
    }
}

pub fn pids_stats(d: &CgroupDir) -> Result<PidsStats, CgroupError> {
    Ok(PidsStats {
        current: read_u64(&d.dir.join("pids.current"))?,
        limit: read_limit(&d.dir.join("pids.max"))?,
    })
}

/// cpu.stat's usage_usec is a core v2 file: present without the cpu controller.
pub fn v2_cpu_stats(d: &CgroupDir) -> Result<CpuStats, CgroupError> {
    let path = d.dir.join("cpu.stat");
    let text = read_file(&path)?;
    let usec: u64 = keyed_value(&text, "usage_usec")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| CgroupError::Parse {
            path,
            content: text.clone(),
        })?;
    Ok(CpuStats {
        usage_ns: usec.saturating_mul(1000),
    })
}

pub fn v1_cpu_stats(d: &CgroupDir) -> Result<CpuStats, CgroupError> {
    Ok(CpuStats {
        usage_ns: read_u64(&d.dir.join("cpuacct.usage"))?,
    })
}

/// kill(2) with any signal number (rustix's `Signal` has no real-time signals). A process
/// that exited meanwhile (ESRCH) is not an error.
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        tracing::debug!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values() {
        let t = "populated 1\nfrozen 0\n";
        assert_eq!(keyed_value(t, "frozen"), Some("0"));
        assert_eq!(keyed_value(t, "froze"), None);
        assert_eq!(
            keyed_value("usage_usec 42\nuser_usec 1\n", "usage_usec"),
            Some("42")
        );
    }
}
