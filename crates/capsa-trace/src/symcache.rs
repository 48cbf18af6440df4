//! A per-boot cache of the core kernel text symbols, so that a recording does not pay for
//! reading all of /proc/kallsyms (~90 ms of kernel time on Linux 6.18, on the reader thread
//! while the workload runs) more than once per boot.
//!
//! Owns `/run/capsa-trace/` (0700, root) and the files in it. Must not touch anything else.
//!
//! Why it is safe: the core kernel text (`[_stext, _etext)`) does not move during a boot (KASLR
//! picks its offset at boot), and the file is keyed by the boot id
//! (`/proc/sys/kernel/random/boot_id`). Addresses outside that range (modules, BPF programs,
//! trampolines) can change within a boot, so [`crate::kallsyms::Symbols::stack`] loads the
//! live table for them. A file not owned by root or writable by others is ignored: a planted
//! table could rename a real need into a probe.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::kallsyms::Symbols;

const DIR: &str = "/run/capsa-trace";
const MAGIC: &str = "capsa-trace kallsyms v1";

fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then(|| id.to_string())
}

fn path(boot: &str) -> PathBuf {
    Path::new(DIR).join(format!("kallsyms-{boot}"))
}

/// Root-owned and writable by root only.
fn trusted(meta: &fs::Metadata) -> bool {
    meta.uid() == 0 && meta.mode() & 0o022 == 0
}

/// The cached core table of this boot, if a trusted one is there.
pub fn read() -> Option<Symbols> {
    let boot = boot_id()?;
    if !trusted(&fs::metadata(DIR).ok()?) {
        return None;
    }
    let p = path(&boot);
    let f = fs::File::open(&p).ok()?;
    let meta = f.metadata().ok()?;
    if !trusted(&meta) {
        return None;
    }
    // One allocation of the right size: growing a 2.5 MB string costs page faults and munmaps
    // on the reader thread while the workload runs.
    let mut text = String::with_capacity(usize::try_from(meta.len()).ok()? + 1);
    let mut f = f;
    std::io::Read::read_to_string(&mut f, &mut text).ok()?;
    parse(&text, &boot)
}

/// `MAGIC BOOT STEXT ETEXT` then `ADDR NAME` lines in address order.
fn parse(text: &str, boot: &str) -> Option<Symbols> {
    let mut lines = text.lines();
    let head = lines.next()?.strip_prefix(MAGIC)?;
    let mut it = head.split_ascii_whitespace();
    if it.next()? != boot {
        return None;
    }
    let stext = u64::from_str_radix(it.next()?, 16).ok()?;
    let etext = u64::from_str_radix(it.next()?, 16).ok()?;
    // ~40 bytes per `ADDR NAME` line.
    let mut s = Symbols::with_capacity(text.len() / 40, text.len());
    for line in lines {
        let (a, name) = line.split_once(' ')?;
        s.push(u64::from_str_radix(a, 16).ok()?, name);
    }
    s.set_core_only(stext, etext);
    s.usable().then_some(s)
}

fn render(s: &Symbols, boot: &str, stext: u64, etext: u64) -> String {
    let mut out = format!("{MAGIC} {boot} {stext:x} {etext:x}\n");
    for (a, name) in s.iter().filter(|(a, _)| (stext..etext).contains(a)) {
        out.push_str(&format!("{a:x} {name}\n"));
    }
    out
}

/// Writes the core part of a full table for the next recordings of this boot. Best effort: a
/// read-only /run only costs the next recording the full read.
pub fn write(full: &Symbols) {
    let (Some(boot), Some((stext, etext))) = (boot_id(), full.core_text()) else {
        return;
    };
    if fs::DirBuilder::new().mode(0o700).create(DIR).is_err() && !Path::new(DIR).is_dir() {
        return;
    }
    let final_path = path(&boot);
    let tmp = final_path.with_extension(format!("tmp{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(render(full, &boot, stext, etext).as_bytes()));
    // rename is atomic: a concurrent recording reads the old file, the new one, or none.
    if written
        .and_then(|()| fs::rename(&tmp, &final_path))
        .is_err()
    {
        let _ = fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_parse_keep_the_core_text() {
        let full = Symbols::parse(
            "ffffffff81000000 T srso_alias_untrain_ret\n\
             ffffffff81000000 T _stext\n\
             ffffffff81000100 T cap_capable\n\
             ffffffff81000800 T _etext\n\
             ffffffffa0000000 t mod_fn\t[m]\n",
        );
        let (stext, etext) = full.core_text().unwrap_or_else(|| panic!("bounds"));
        let text = render(&full, "b-1", stext, etext);
        // The header, the first alias at _stext, cap_capable; _etext and the module are outside.
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains("ffffffff81000000 srso_alias_untrain_ret\n"),
            "{text}"
        );
        let s = parse(&text, "b-1").unwrap_or_else(|| panic!("parse"));
        assert_eq!(s.name(0xffff_ffff_8100_0180), "cap_capable");
        assert!(parse(&text, "other-boot").is_none());
        assert!(parse("garbage", "b-1").is_none());
    }
}
