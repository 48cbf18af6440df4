//! Kernel address -> function name, from `/proc/kallsyms`, for the raw stack entries.
//!
//! Owns the symbol table and the per-address cache. Reads only `/proc/kallsyms`; must not touch
//! tracefs.
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
    /// Stacks seen before, by their addresses: a workload repeats a few dozen call paths.
    stacks: HashMap<Vec<u64>, Arc<[String]>>,
}

impl Symbols {
    /// Loads `/proc/kallsyms`. A table with no non-zero address is returned as it is: check
    /// [`Symbols::usable`].
    pub fn load() -> std::io::Result<Symbols> {
        use std::io::BufRead;
        // Big reads: the kernel formats kallsyms one seq_file page at a time anyway, but a big
        // buffer keeps the copies and line splitting cheap.
        let f = std::fs::File::open(KALLSYMS)?;
        let mut r = std::io::BufReader::with_capacity(1 << 16, f);
        let mut s = Symbols::default();
        let mut line = String::new();
        while r.read_line(&mut line)? > 0 {
            s.add_line(&line);
            line.clear();
        }
        s.table.sort_unstable_by_key(|e| e.0);
        Ok(s)
    }

    /// Parses kallsyms text (for tests; [`Symbols::load`] streams the file).
    pub fn parse(text: &str) -> Symbols {
        let mut s = Symbols::default();
        for line in text.lines() {
            s.add_line(line);
        }
        s.table.sort_unstable_by_key(|e| e.0);
        s
    }

    /// Keeps the code symbols (`t`/`T`/`w`/`W`): stack entries are return addresses in code.
    fn add_line(&mut self, line: &str) {
        let mut it = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
            return;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") {
            return;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            return;
        };
        if addr == 0 {
            return;
        }
        let (Ok(off), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            return;
        };
        self.names.push_str(name);
        self.table.push((addr, off, len));
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

    /// Names a whole stack, innermost first; each distinct stack is named once.
    pub fn stack(&mut self, addrs: &[u64]) -> Arc<[String]> {
        if let Some(names) = self.stacks.get(addrs) {
            return names.clone();
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
        let want = ["_stext".to_string()];
        assert_eq!(&*s.stack(&[0xffff_ffff_8100_0001]), &want);
        // The second time from the cache.
        assert_eq!(&*s.stack(&[0xffff_ffff_8100_0001]), &want);
    }

    #[test]
    fn hidden_addresses_are_unusable() {
        let s = Symbols::parse("0000000000000000 T cap_capable\n0000000000000000 T x\n");
        assert!(!s.usable());
    }
}
