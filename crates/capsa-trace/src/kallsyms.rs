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

/// Whether /proc/kallsyms shows real addresses to us: its first line is enough (all lines are
/// zero or none are, kallsyms_show_value is decided per reader).
pub fn addresses_visible() -> bool {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open("/proc/kallsyms") else {
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

/// A sorted table of text symbols and a cache of the addresses already resolved.
#[derive(Debug, Default)]
pub struct Symbols {
    /// (start address, name), sorted by address.
    table: Vec<(u64, Arc<str>)>,
    cache: HashMap<u64, Arc<str>>,
}

impl Symbols {
    /// Loads `/proc/kallsyms`. A table with no non-zero address is returned as it is: check
    /// [`Symbols::usable`].
    pub fn load() -> std::io::Result<Symbols> {
        Ok(Symbols::parse(&std::fs::read_to_string("/proc/kallsyms")?))
    }

    /// Parses kallsyms text, keeping the code symbols (`t`/`T`/`w`/`W`): stack entries are
    /// return addresses in code.
    pub fn parse(text: &str) -> Symbols {
        let mut table: Vec<(u64, Arc<str>)> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                matches!(kind, "t" | "T" | "w" | "W")
                    .then(|| (addr, Arc::from(name)))
                    .filter(|_| addr != 0)
            })
            .collect();
        table.sort_by_key(|e| e.0);
        Symbols {
            table,
            cache: HashMap::new(),
        }
    }

    /// Whether the table holds real addresses (kptr_restrict lets us see them).
    pub fn usable(&self) -> bool {
        !self.table.is_empty()
    }

    /// The function containing `addr`: the symbol with the greatest start <= addr. Addresses
    /// below the first symbol print as hex, as the kernel prints unknown ones.
    pub fn name(&mut self, addr: u64) -> Arc<str> {
        if let Some(n) = self.cache.get(&addr) {
            return n.clone();
        }
        let i = self.table.partition_point(|e| e.0 <= addr);
        let name = match i.checked_sub(1) {
            Some(i) => self.table[i].1.clone(),
            None => Arc::from(format!("0x{addr:x}")),
        };
        self.cache.insert(addr, name.clone());
        name
    }

    /// Names a whole stack, innermost first.
    pub fn stack(&mut self, addrs: &[u64]) -> Vec<String> {
        addrs.iter().map(|&a| self.name(a).to_string()).collect()
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
        assert_eq!(&*s.name(0xffff_ffff_8100_0150), "cap_capable");
        assert_eq!(&*s.name(0xffff_ffff_8100_0250), "cap_capable");
        assert_eq!(&*s.name(0xffff_ffff_8100_0300), "inet_create");
        assert_eq!(&*s.name(0x10), "0x10");
        assert_eq!(
            s.stack(&[0xffff_ffff_8100_0001]),
            vec!["_stext".to_string()]
        );
    }

    #[test]
    fn hidden_addresses_are_unusable() {
        let s = Symbols::parse("0000000000000000 T cap_capable\n0000000000000000 T x\n");
        assert!(!s.usable());
    }
}
