//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): the byte offset of a
//! struct member (`task_struct.pid`) and the parameter names of a raw tracepoint
//! (`btf_trace_<name>`), so that the programs read the right fields on this kernel.
//!
//! Owns the BTF format knowledge (include/uapi/linux/btf.h, Documentation/bpf/btf.rst). Pure
//! apart from [`Btf::vmlinux`], which reads the file.

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;

/// One type: its kind, name, the `size_or_type` word and where its trailing data starts.
#[derive(Debug, Clone, Copy)]
struct Type {
    kind: u32,
    name: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    extra: usize,
}

/// A parsed BTF blob.
#[derive(Debug)]
pub struct Btf {
    data: Vec<u8>,
    strings: usize,
    strings_len: usize,
    /// Index i holds type id i + 1 (id 0 is void). Names are compared in place when looked
    /// up: vmlinux has ~150,000 types and a recording needs four of them.
    types: Vec<Type>,
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

/// The size of the data that follows a type's 12-byte header.
fn trailing(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
        3 => 12,                   // ARRAY
        4 | 5 => 12 * vlen,        // STRUCT, UNION: btf_member
        6 | 13 => 8 * vlen,        // ENUM, FUNC_PROTO: btf_enum, btf_param
        15 | 19 => 12 * vlen,      // DATASEC, ENUM64
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
        _ => return None,
    })
}

impl Btf {
    /// Reads and parses the running kernel's BTF.
    pub fn vmlinux() -> std::io::Result<Btf> {
        let data = std::fs::read(VMLINUX)?;
        Btf::parse(data).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a BTF blob this reader knows",
            )
        })
    }

    /// Parses a little-endian BTF blob (`struct btf_header`, then types, then strings).
    pub fn parse(data: Vec<u8>) -> Option<Btf> {
        if u16::from_le_bytes(data.get(0..2)?.try_into().ok()?) != MAGIC {
            return None;
        }
        let hdr_len = u32_at(&data, 4)? as usize;
        let type_off = hdr_len + u32_at(&data, 8)? as usize;
        let type_len = u32_at(&data, 12)? as usize;
        let strings = hdr_len + u32_at(&data, 16)? as usize;
        let strings_len = u32_at(&data, 20)? as usize;
        if data.len() < strings + strings_len || data.len() < type_off + type_len {
            return None;
        }
        let mut btf = Btf {
            data,
            strings,
            strings_len,
            types: Vec::with_capacity(type_len / 16),
        };
        let mut at = type_off;
        while at < type_off + type_len {
            let name = u32_at(&btf.data, at)?;
            let info = u32_at(&btf.data, at + 4)?;
            let t = Type {
                kind: (info >> 24) & 0x1f,
                name,

                vlen: (info & 0xffff) as usize,
                kind_flag: info >> 31 == 1,
                size_or_type: u32_at(&btf.data, at + 8)?,
                extra: at + 12,
            };
            at += 12 + trailing(t.kind, t.vlen)?;
            btf.types.push(t);
        }
        Some(btf)
    }

    /// The ids of the types of `kind` named `name`.
    fn named(&self, kind: u32, name: &str) -> impl Iterator<Item = u32> {
        self.types.iter().enumerate().filter_map(move |(i, t)| {
            (t.kind == kind && t.name != 0 && self.string(t.name) == Some(name))
                .then_some(i as u32 + 1)
        })
    }

    fn string(&self, off: u32) -> Option<&str> {
        let start = self.strings + off as usize;
        let end = self.strings + self.strings_len;
        let bytes = self.data.get(start..end)?;
        let n = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..n]).ok()
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    /// The byte offset of `member` in `struct name`, looking into anonymous struct and union
    /// members (randomized or grouped layouts put fields there).
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        self.named(KIND_STRUCT, name)
            .filter(|&id| self.ty(id).is_some_and(|t| t.size_or_type > 0))
            .find_map(|id| self.find_member(id, member, 0))
    }

    fn find_member(&self, id: u32, member: &str, base_bits: u32) -> Option<u32> {
        let t = *self.ty(id)?;
        for i in 0..t.vlen {
            let at = t.extra + 12 * i;
            let (mname, mtype, moff) = (
                u32_at(&self.data, at)?,
                u32_at(&self.data, at + 4)?,
                u32_at(&self.data, at + 8)?,
            );
            // With kind_flag set, the low 24 bits are the bit offset (the top 8 a bitfield size).
            let bits = base_bits
                + if t.kind_flag {
                    moff & 0x00ff_ffff
                } else {
                    moff
                };
            if mname != 0 {
                if self.string(mname) == Some(member) {
                    return bits.is_multiple_of(8).then_some(bits / 8);
                }
                continue;
            }
            let inner = self.ty(mtype)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some(off) = self.find_member(mtype, member, bits)
            {
                return Some(off);
            }
        }
        None
    }

    /// The parameter names of raw tracepoint `tp` after the context pointer: the index of a
    /// name is the index of that argument in the raw tracepoint's `u64 args[]`. They come from
    /// the function `__traceiter_<tp>(void *__data, PROTO...)` that every tracepoint defines
    /// (include/linux/tracepoint.h); the `btf_trace_<tp>` typedef's parameters have no names.
    pub fn raw_tp_args(&self, tp: &str) -> Option<Vec<String>> {
        let id = self.named(KIND_FUNC, &format!("__traceiter_{tp}")).next()?;
        let func = self.ty(id)?;
        let proto = self
            .ty(func.size_or_type)
            .filter(|t| t.kind == KIND_FUNC_PROTO)?;
        let mut names = Vec::new();
        for i in 1..proto.vlen {
            let name = u32_at(&self.data, proto.extra + 8 * i)?;
            names.push(self.string(name)?.to_string());
        }
        Some(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built blob: `struct task_struct { int state; struct { int x; int pid; }; }` (the
    /// pid in an anonymous struct at bit offset 64, so at byte 8 + 4 = 12) and
    /// `void __traceiter_cap_capable(void *__data, int cap, int ret)`.
    fn blob() -> Vec<u8> {
        let strings =
            b"\0task_struct\0state\0pid\0int\0x\0__traceiter_cap_capable\0__data\0cap\0ret\0";
        let s = |name: &str| -> u32 {
            let hay = std::str::from_utf8(strings).unwrap_or("");
            hay.find(&format!("\0{name}\0"))
                .map(|i| i as u32 + 1)
                .unwrap_or(0)
        };
        let mut t: Vec<u32> = Vec::new();
        let info = |kind: u32, vlen: u32, kf: bool| (kind << 24) | vlen | ((kf as u32) << 31);
        // 1: int
        t.extend([s("int"), info(1, 0, false), 4, 32]);
        // 2: anonymous struct { int x; int pid; }
        t.extend([0, info(4, 2, false), 8]);
        t.extend([s("x"), 1, 0, s("pid"), 1, 32]);
        // 3: struct task_struct { int state; <anon> at bit 64 }, with kind_flag offsets
        t.extend([s("task_struct"), info(4, 2, true), 16]);
        t.extend([s("state"), 1, 0, 0, 2, 64]);
        // 4: void *, 5: func_proto(void *__data, int cap, int ret), 6: the func
        t.extend([0, info(2, 0, false), 0]);
        t.extend([0, info(13, 3, false), 0]);
        t.extend([s("__data"), 4, s("cap"), 1, s("ret"), 1]);
        t.extend([s("__traceiter_cap_capable"), info(12, 0, false), 5]);
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn member_offset_through_anonymous_struct() {
        let btf = Btf::parse(blob()).unwrap_or_else(|| panic!("parse"));
        assert_eq!(btf.member_offset("task_struct", "pid"), Some(12));
        assert_eq!(btf.member_offset("task_struct", "state"), Some(0));
        assert_eq!(btf.member_offset("task_struct", "tgid"), None);
        assert_eq!(btf.member_offset("mm_struct", "pid"), None);
    }

    #[test]
    fn raw_tracepoint_arguments() {
        let btf = Btf::parse(blob()).unwrap_or_else(|| panic!("parse"));
        assert_eq!(
            btf.raw_tp_args("cap_capable"),
            Some(vec!["cap".into(), "ret".into()])
        );
        assert_eq!(btf.raw_tp_args("nope"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(vec![0; 40]).is_none());
        let mut b = blob();
        b.truncate(30);
        assert!(Btf::parse(b).is_none());
    }
}
