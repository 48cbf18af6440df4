//! Kernel address -> function name, from `/proc/kallsyms`, for the raw stack entries.
//!
//! Owns the symbol table and the per-stack cache. Reads only `/proc/kallsyms` (and the per-boot
//! cache through [`crate::symcache`]); must not touch tracefs.
//!
//! /proc/kallsyms lines are `ADDR TYPE NAME [MODULE]`. Root with CAP_SYSLOG sees real addresses
//! unless `kernel.kptr_restrict` is 2; otherwise every address reads as 0 (kallsyms_show_value,
//! kernel/ksyms_common.c), and the table is [`Symbols::usable`] == false.

use std::collections::HashMap;
use std::sync::Arc;

pub const KALLSYMS: &str = "/proc/kallsyms";

/// Whether /proc/kallsyms shows real addresses to us: its first line is enough (all lines are
/// zero or none are, kallsyms_show_value is decided per reader).
pub fn addresses_visible() -> bool {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open(KALLSYMS) else {
        return false;
    };
    let mut line = String::new();
    if std::io::BufReader::new(f).read_line(&mut line).is_err() {
        return false;
    }
    line.split_ascii_whitespace()
        .next()
        .and_then(|a| u64::from_str_radix(a, 16).ok())
        .is_some_and(|a| a != 0)
}

/// A sorted table of text symbols and a cache of the stacks already named.
#[derive(Debug, Default)]
pub struct Symbols {
    /// (start address, name offset, name length) into `names`, sorted by address: one arena
    /// instead of ~60,000 small allocations.
    table: Vec<(u64, u32, u32)>,
    names: String,
    /// `[_stext, _etext)` when the table holds only the core kernel text (from the per-boot
    /// cache, [`crate::symcache`]); `None` when it holds all of /proc/kallsyms.
    core_only: Option<(u64, u64)>,
    /// `_stext` and `_etext` as seen while loading (kept apart: dedup of aliases may drop them).
    text_bounds: (Option<u64>, Option<u64>),
    /// Stacks seen before, by their addresses: a workload repeats a few dozen call paths.
    stacks: HashMap<Vec<u64>, Arc<[String]>>,
}

impl Symbols {
    /// The symbols for this recording: the per-boot cache of the core kernel text when it is
    /// there, else all of /proc/kallsyms (and the cache is written for the next recording).
    pub fn load() -> std::io::Result<Symbols> {
        if let Some(s) = crate::symcache::read() {
            return Ok(s);
        }
        let s = Symbols::load_kallsyms()?;
        crate::symcache::write(&s);
        Ok(s)
    }

    /// Loads all of `/proc/kallsyms` (~90 ms of kernel time on Linux 6.18: the kernel expands
    /// and formats every symbol).
    pub fn load_kallsyms() -> std::io::Result<Symbols> {
        use std::io::BufRead;
        let f = std::fs::File::open(KALLSYMS)?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        let mut s = Symbols::default();
        let mut line = String::new();
        while r.read_line(&mut line)? > 0 {
            s.add_line(&line);
            line.clear();
        }
        s.sort();
        Ok(s)
    }

    /// Parses kallsyms text (`ADDR TYPE NAME [MODULE]` lines).
    pub fn parse(text: &str) -> Symbols {
        let mut s = Symbols::default();
        for line in text.lines() {
            s.add_line(line);
        }
        s.sort();
        s
    }

    /// Keeps the code symbols (`t`/`T`/`w`/`W`): stack entries are return addresses in code.
    /// `__pfx_*` symbols (the padding before each function, CONFIG_FUNCTION_PADDING_ALIGNMENT)
    /// hold no return address: dropping them halves the table.
    fn add_line(&mut self, line: &str) {
        let mut it = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
            return;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") || name.starts_with("__pfx_") {
            return;
        }
        if let Ok(addr) = u64::from_str_radix(addr, 16) {
            match name {
                "_stext" => self.text_bounds.0 = Some(addr),
                "_etext" => self.text_bounds.1 = Some(addr),
                _ => {}
            }
            self.push(addr, name);
        }
    }

    /// An empty table with room for `symbols` entries and `name_bytes` of names.
    pub(crate) fn with_capacity(symbols: usize, name_bytes: usize) -> Symbols {
        Symbols {
            table: Vec::with_capacity(symbols),
            names: String::with_capacity(name_bytes),
            ..Symbols::default()
        }
    }

    /// Appends one symbol; callers sort (or append in order).
    pub(crate) fn push(&mut self, addr: u64, name: &str) {
        let (Ok(off), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            return;
        };
        if addr != 0 {
            self.names.push_str(name);
            self.table.push((addr, off, len));
        }
    }

    /// Marks the table as holding only `[stext, etext)`, and sorts it.
    pub(crate) fn set_core_only(&mut self, stext: u64, etext: u64) {
        self.core_only = Some((stext, etext));
        self.sort();
    }

    /// Sorts by address and keeps the first of aliases (symbols at one address, such as
    /// `_stext` and `_text`), as the kernel's own lookup does (get_symbol_pos, kernel/kallsyms.c).
    fn sort(&mut self) {
        self.table.sort_by_key(|e| e.0);
        self.table.dedup_by_key(|e| e.0);
    }

    /// `[_stext, _etext)`: the core kernel text, if the loaded table named both.
    pub(crate) fn core_text(&self) -> Option<(u64, u64)> {
        match self.text_bounds {
            (Some(s), Some(e)) if s < e => Some((s, e)),
            _ => None,
        }
    }

    /// The symbols in address order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.table
            .iter()
            .map(|&(a, off, len)| (a, &self.names[off as usize..(off + len) as usize]))
    }

    /// `[start, end)` of function `name`: its address up to the next symbol's.
    pub fn range(&self, name: &str) -> Option<(u64, u64)> {
        let i = self.iter().position(|(_, n)| n == name)?;
        let start = self.table[i].0;
        let end = self.table.get(i + 1).map(|e| e.0).unwrap_or(start + 1);
        Some((start, end))
    }

    /// Whether the table holds real addresses (kptr_restrict lets us see them).
    pub fn usable(&self) -> bool {
        !self.table.is_empty()
    }

    /// The function containing `addr`: the symbol with the greatest start <= addr. Addresses
    /// below the first symbol print as hex, as the kernel prints unknown ones.
    pub fn name(&self, addr: u64) -> String {
        let i = self.table.partition_point(|e| e.0 <= addr);
        match i.checked_sub(1).map(|i| self.table[i]) {
            Some((_, off, len)) => self.names[off as usize..(off + len) as usize].to_string(),
            None => format!("0x{addr:x}"),
        }
    }

    /// Names a whole stack, innermost first; each distinct stack is named once. An address
    /// outside the core kernel text (a module, a BPF program, a trampoline) makes a core-only
    /// table load all of /proc/kallsyms first: those addresses change within a boot.
    pub fn stack(&mut self, addrs: &[u64]) -> Arc<[String]> {
        if let Some(names) = self.stacks.get(addrs) {
            return names.clone();
        }
        if let Some((stext, etext)) = self.core_only
            && addrs.iter().any(|a| !(stext..etext).contains(a))
            && let Ok(full) = Symbols::load_kallsyms()
        {
            (self.table, self.names, self.core_only) = (full.table, full.names, None);
        }
        let names: Arc<[String]> = addrs.iter().map(|&a| self.name(a)).collect();
        self.stacks.insert(addrs.to_vec(), names.clone());
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_range() {
        let mut s = Symbols::parse(
            "ffffffff81000100 T cap_capable\n\
             ffffffff81000000 T _stext\n\
             ffffffff81000200 d some_data\n\
             ffffffff81000300 t inet_create\t[ipv4]\n",
        );
        assert!(s.usable());
        assert_eq!(s.name(0xffff_ffff_8100_0150), "cap_capable");
        assert_eq!(s.name(0xffff_ffff_8100_0250), "cap_capable");
        assert_eq!(s.name(0xffff_ffff_8100_0300), "inet_create");
        assert_eq!(s.name(0x10), "0x10");
        assert_eq!(
            s.range("cap_capable"),
            Some((0xffff_ffff_8100_0100, 0xffff_ffff_8100_0300))
        );
        assert_eq!(s.range("nope"), None);
        let want = ["_stext".to_string()];
        assert_eq!(&*s.stack(&[0xffff_ffff_8100_0001]), &want);
        // The second time from the cache.
        assert_eq!(&*s.stack(&[0xffff_ffff_8100_0001]), &want);
    }

    #[test]
    fn pfx_symbols_are_dropped_and_core_only_tables_name_core_addresses() {
        let mut s = Symbols::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff810000f0 T __pfx_cap_capable\n\
             ffffffff81000100 T cap_capable\n\
             ffffffff81000800 T _etext\n",
        );
        assert_eq!(s.name(0xffff_ffff_8100_00f8), "_stext");
        assert_eq!(
            s.core_text(),
            Some((0xffff_ffff_8100_0000, 0xffff_ffff_8100_0800))
        );
        s.set_core_only(0xffff_ffff_8100_0000, 0xffff_ffff_8100_0800);
        let want = ["cap_capable".to_string()];
        assert_eq!(&*s.stack(&[0xffff_ffff_8100_0104]), &want);
    }

    #[test]
    fn hidden_addresses_are_unusable() {
        let s = Symbols::parse("0000000000000000 T cap_capable\n0000000000000000 T x\n");
        assert!(!s.usable());
    }
}
