//! reaper: `--init`. capsa itself runs as the container's PID 1 when invoked as `capsa-init`:
//! it starts the real command, relays the signals PID 1 receives to it, reaps every orphan the
//! kernel reparents to it (pid_namespaces(7): PID 1 is the namespace's reaper), and exits with
//! the command's code. No busybox or tini is needed in the image.
//!
//! How it gets into the container: the spec bind-mounts, read-only under `/.capsa-init/`, the
//! capsa binary, the host's dynamic loader and exactly the shared libraries this process has
//! mapped (read from /proc/self/maps), and runs `ld.so --argv0 capsa-init --library-path ...`,
//! so it works in any image, with or without a libc. The sources of those binds are copies in
//! the container's own directory, never the host files: a container that holds CAP_SYS_ADMIN
//! can remount a read-only bind read-write, and must then only reach its own copy (the
//! CVE-2019-5736 class: a container writing the host's runtime binary, or here its libc).
//! Must not touch anything else in the image.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The directory inside the container that holds the reaper and its libraries.
pub const DIR: &str = "/.capsa-init";

/// One read-only bind mount: host path -> path in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub container: String,
}

/// The binds `--init` needs: the binary, the loader, the libraries, each copied first into
/// `<container_dir>/capsa-init/` (see the module comment for why a copy).
pub fn binds(container_dir: &Path) -> Result<Vec<Bind>> {
    let mut out = host_files()?;
    let copies = container_dir.join("capsa-init");
    for b in &mut out {
        let rel = b.container.trim_start_matches(DIR).trim_start_matches('/');
        let copy = copies.join(rel);
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", parent, e))?;
        }
        std::fs::copy(&b.host, &copy).map_err(|e| Error::io("copy to", &copy, e))?;
        b.host = copy;
    }
    Ok(out)
}

/// The host files `--init` runs from: the binary, the loader, the libraries.
fn host_files() -> Result<Vec<Bind>> {
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Error::io("readlink", "/proc/self/exe", e))?;
    let maps = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| Error::io("read", "/proc/self/maps", e))?;
    let mut out = vec![Bind {
        host: exe.clone(),
        container: format!("{DIR}/capsa"),
    }];
    let mut libs: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(PathBuf::from)
        .filter(|p| {
            p != &exe
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(".so"))
        })
        .collect();
    libs.sort();
    libs.dedup();
    for lib in libs {
        let name = lib
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let container = if name.starts_with("ld-linux") || name.starts_with("ld64") {
            format!("{DIR}/ld.so")
        } else {
            // maps shows the resolved file (libseccomp.so.2.5.4); the loader asks for the
            // soname (libseccomp.so.2).
            format!("{DIR}/lib/{}", soname(&name))
        };
        out.push(Bind {
            host: lib,
            container,
        });
    }
    if !out.iter().any(|b| b.container.ends_with("/ld.so")) {
        return Err(Error::InvalidFlag(
            "--init: cannot find the dynamic loader of capsa in /proc/self/maps".into(),
        ));
    }
    Ok(out)
}

/// `libx.so.2.5.4` -> `libx.so.2`; names without a version stay as they are.
fn soname(file: &str) -> &str {
    let Some(at) = file.find(".so.") else {
        return file;
    };
    let major_start = at + 4;
    match file[major_start..].find('.') {
        Some(dot) => &file[..major_start + dot],
        None => file,
    }
}

/// The command line that starts the reaper in front of `args`.
pub fn wrap(args: Vec<String>) -> Vec<String> {
    let mut v = vec![
        format!("{DIR}/ld.so"),
        "--argv0".into(),
        "capsa-init".into(),
        "--library-path".into(),
        format!("{DIR}/lib"),
        format!("{DIR}/capsa"),
        "--".into(),
    ];
    v.extend(args);
    v
}

/// Entry point of the `capsa-init` personality: `capsa-init -- CMD [ARGS...]`.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let mut rest = args.into_iter().skip(1).peekable();
    if rest.peek().is_some_and(|a| a == "--") {
        rest.next();
    }
    let Some(program) = rest.next() else {
        eprintln!("capsa-init: usage: capsa-init -- COMMAND [ARGS...]");
        return 127;
    };
    let child = match std::process::Command::new(&program).args(rest).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "capsa-init: cannot run {}: {e}",
                Path::new(&program).display()
            );
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    let pid = child.id() as i32;
    // Block the relayed signals only now: the command must start with a clean mask. A signal
    // in between hits PID 1, which the kernel ignores unless it has a handler.
    if let Err(e) = capsa_runtime::container::foreground::block_signals() {
        eprintln!("capsa-init: sigprocmask: {e}");
    }
    capsa_runtime::container::foreground::wait(pid).unwrap_or(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sonames() {
        assert_eq!(soname("libseccomp.so.2.5.4"), "libseccomp.so.2");
        assert_eq!(soname("libc.so.6"), "libc.so.6");
        assert_eq!(soname("libfoo.so"), "libfoo.so");
    }

    #[test]
    fn binds_hold_loader_and_libc_as_copies() {
        let dir = tempfile::tempdir().unwrap();
        let b = binds(dir.path()).unwrap();
        assert!(b.iter().any(|b| b.container == "/.capsa-init/ld.so"));
        assert!(
            b.iter()
                .any(|b| b.container == "/.capsa-init/lib/libc.so.6")
        );
        // Every source is a copy inside the container's directory, never a host file.
        for bind in &b {
            assert!(bind.host.starts_with(dir.path()), "{bind:?}");
            assert!(bind.host.is_file(), "{bind:?}");
        }
    }
}
