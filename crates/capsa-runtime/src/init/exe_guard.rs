//! CVE-2019-5736 guard: never let the container's execve run our own binary.
//!
//! Owns the check of the exec target, its `#!` interpreter chain and its ELF `PT_INTERP`. Must not
//! open anything outside the container root (it runs after pivot_root).
//!
//! Why this is enough for our design (docs/decisions.md has the measurement): the init is a clone
//! of the runtime, so until execve `/proc/self/exe` is the host binary. Another container process
//! cannot open it through `/proc/<pid>/exe` because the init is non-dumpable from its first
//! instruction. The init itself could only reach it by executing it: directly, as a script
//! interpreter (`#!/proc/self/exe`), or as an ELF interpreter. We resolve each of those names in
//! the container (the kernel resolves them the same way) and refuse any that is our binary.

use std::ffi::{CStr, CString};

use rustix::fs::{Mode, OFlags};

use super::{Step, StepError};

/// binfmt_script allows 4 levels of interpreter nesting (BINPRM_MAX_RECURSION); check 5.
const MAX_DEPTH: usize = 5;

/// Refuse `path` if it, or an interpreter it names, is the file `self_exe` (dev, ino).
pub fn refuse_self(path: &CStr, self_exe: (u64, u64)) -> Step {
    let mut next = Some(path.to_owned());
    for _ in 0..MAX_DEPTH {
        let Some(p) = next.take() else { return Ok(()) };
        next = check_one(&p, self_exe)?;
    }
    Ok(())
}

/// Check one file; return the interpreter it names, if any.
fn check_one(path: &CStr, self_exe: (u64, u64)) -> Step<Option<CString>> {
    let fd = match rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        // Not readable or missing: execve will report it; it cannot be our binary by an
        // unreadable path (we compare identities of files we can open).
        Err(_) => return Ok(None),
    };
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| StepError::sys("stat", path.to_string_lossy(), e, ""))?;
    if (st.st_dev, st.st_ino) == self_exe {
        return Err(StepError::msg(format!(
            "refusing to exec {}: it is the runtime's own binary (CVE-2019-5736 protection)",
            path.to_string_lossy()
        )));
    }
    let mut head = [0u8; 1024];
    let n = rustix::io::read(&fd, &mut head).unwrap_or(0);
    let head = &head[..n];
    // Program headers normally sit in the first KiB: serve them from `head`, pread otherwise.
    let read_at = |off: u64, buf: &mut [u8]| {
        let start = off as usize;
        match head.get(start..start.saturating_add(buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                buf.len()
            }
            None => rustix::io::pread(&fd, buf, off).unwrap_or(0),
        }
    };
    Ok(interpreter(head, read_at))
}

/// The interpreter a file names: `#!` line or ELF64 PT_INTERP. `read_at` reads more of the file.
fn interpreter(head: &[u8], read_at: impl Fn(u64, &mut [u8]) -> usize) -> Option<CString> {
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next()?;
        let word = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|w| !w.is_empty())?;
        return CString::new(word).ok();
    }
    elf_interp(head, read_at)
}

/// PT_INTERP of a little-endian ELF64 file.
fn elf_interp(head: &[u8], read_at: impl Fn(u64, &mut [u8]) -> usize) -> Option<CString> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as u64;
    let phoff = u64::from_le_bytes(head[32..40].try_into().ok()?);
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum.min(64) {
        let mut ph = [0u8; 56];
        if phentsize < 56 || read_at(phoff + i * phentsize, &mut ph) < 56 {
            return None;
        }
        if u32::from_le_bytes(ph[0..4].try_into().ok()?) == 3 {
            let off = u64::from_le_bytes(ph[8..16].try_into().ok()?);
            let len = u64::from_le_bytes(ph[32..40].try_into().ok()?).min(4096) as usize;
            let mut name = vec![0u8; len];
            let got = read_at(off, &mut name);
            name.truncate(got);
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            name.truncate(end);
            return CString::new(name).ok();
        }
    }
    None
}

/// Identity of a file by path (for tests).
#[cfg(test)]
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    let st = rustix::fs::stat(path).ok()?;
    Some((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_more(_: u64, _: &mut [u8]) -> usize {
        0
    }

    #[test]
    fn shebang_interpreter_is_found() {
        let i = interpreter(b"#! /proc/self/exe -x\necho", no_more);
        assert_eq!(i.as_deref(), Some(c"/proc/self/exe"));
        assert_eq!(interpreter(b"plain text", no_more), None);
    }

    #[test]
    fn elf_interp_of_a_real_binary() {
        let data = std::fs::read("/proc/self/exe").unwrap();
        let read_at = |off: u64, buf: &mut [u8]| {
            let off = off as usize;
            let n = buf.len().min(data.len().saturating_sub(off));
            buf[..n].copy_from_slice(&data[off..off + n]);
            n
        };
        let interp = elf_interp(&data[..1024], read_at).expect("test binary is dynamically linked");
        assert!(interp.to_bytes().starts_with(b"/lib"), "{interp:?}");
    }

    #[test]
    fn own_binary_is_refused() {
        let me = file_id(std::path::Path::new("/proc/self/exe")).unwrap();
        let err = refuse_self(c"/proc/self/exe", me).unwrap_err();
        assert!(err.0.contains("CVE-2019-5736"));
        assert!(refuse_self(c"/bin/sh", me).is_ok());
    }
}
