//! The records the cap_capable program writes into the BPF ring buffer, and their decoding.
//!
//! Owns the record layout (shared with [`super::progs`]) and the ring buffer's consumer protocol
//! (kernel/bpf/ringbuf.c: an 8-byte header per record, `len` with the busy and discard bits,
//! records 8-aligned). Decoding is pure; the ring walk reads the shared mapping only.

use super::sys::RingMap;

/// Record header size; the stack follows it.
pub const HEADER: usize = 32;
/// A record with the full stack.
pub const KIND_FULL: i32 = 0;
/// A record with the short stack of an overcommit probe.
pub const KIND_SHORT: i32 = 1;
/// Calibration records: this many raw frames, then this many bytes of kernel stack above R10.
pub const CAL_FRAMES: usize = 16;
pub const CAL_WINDOW: usize = 512;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const RINGBUF_HDR: u64 = 8;

/// One CAP_SYS_ADMIN check seen by the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// CLOCK_MONOTONIC (`bpf_ktime_get_ns`), the clock the instance's `mono` trace_clock uses.
    pub ts: u64,
    pub pid: i32,
    pub cap: i32,
    pub ret: i32,
    /// Whether only the short stack was taken (an overcommit probe).
    pub short: bool,
    /// Raw return addresses, innermost first, starting in the BPF glue.
    pub stack: Vec<u64>,
}

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(p: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(p.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes one record payload; `None` if it is cut short.
pub fn decode(p: &[u8]) -> Option<Record> {
    let ts = u64_at(p, 0)?;
    let pid = u32_at(p, 8)? as i32;
    let cap = u32_at(p, 12)? as i32;
    let ret = u32_at(p, 16)? as i32;
    // bpf_get_stack returns the bytes written, or a negative errno (then no frames).
    let bytes = u32_at(p, 20)? as i32;
    let kind = u32_at(p, 24)? as i32;
    let room = p.len().saturating_sub(HEADER) / 8;
    let n = usize::try_from(bytes)
        .map(|b| (b / 8).min(room))
        .unwrap_or(0);
    let stack = (0..n)
        .filter_map(|i| u64_at(p, HEADER + 8 * i))
        .filter(|&a| a != 0)
        .collect();
    Some(Record {
        ts,
        pid,
        cap,
        ret,
        short: kind == KIND_SHORT,
        stack,
    })
}

/// Consumes every committed record; stops at the first one still being written.
pub fn drain(ring: &RingMap, mut each: impl FnMut(&[u8])) -> usize {
    let mut cons = ring.consumer_pos();
    let prod = ring.producer_pos();
    let mut n = 0;
    while cons < prod {
        let hdr = ring.header(cons);
        if hdr & BUSY_BIT != 0 {
            break;
        }
        let len = (hdr & !(BUSY_BIT | DISCARD_BIT)) as u64;
        if hdr & DISCARD_BIT == 0 {
            each(ring.payload(cons, len as usize));
            n += 1;
        }
        cons += (len + RINGBUF_HDR + 7) & !7;
    }
    ring.set_consumer_pos(cons);
    n
}

/// Finds [`super::progs::Fast`] in a calibration record: the raw frames, then the stack words
/// from R10 up. `ret_in_cap` is the first frame inside cap_capable; the next frame must lie in
/// an overcommit function; their first occurrences upward from R10, in that order, are the
/// slots. `None` when the record does not look like that (no fast path then).
pub fn calibration(
    p: &[u8],
    cap_capable: (u64, u64),
    probe_ranges: &[(u64, u64)],
) -> Option<super::progs::Fast> {
    let frames: Vec<u64> = (0..CAL_FRAMES).filter_map(|i| u64_at(p, 8 * i)).collect();
    let words: Vec<u64> = (0..CAL_WINDOW / 8)
        .filter_map(|i| u64_at(p, 8 * CAL_FRAMES + 8 * i))
        .collect();
    let i = frames
        .iter()
        .position(|a| (cap_capable.0..cap_capable.1).contains(a))?;
    let (ret_in_cap, caller) = (frames[i], *frames.get(i + 1)?);
    if !probe_ranges.iter().any(|r| (r.0..r.1).contains(&caller)) {
        return None;
    }
    let y = words.iter().position(|&w| w == ret_in_cap)?;
    let x = y + 1 + words[y + 1..].iter().position(|&w| w == caller)?;
    Some(super::progs::Fast {
        x: i32::try_from(8 * x).ok()?,
        y: i32::try_from(8 * y).ok()?,
        ret_in_cap,
    })
}

/// Drops the BPF glue at the top of a stack: everything before the first frame inside
/// `cap_capable` (`[start, end)`), so that the stack reads like the `stacktrace` trigger's.
pub fn strip_glue(stack: &mut Vec<u64>, cap_capable: (u64, u64)) {
    if let Some(i) = stack
        .iter()
        .position(|a| (cap_capable.0..cap_capable.1).contains(a))
    {
        stack.drain(..i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: i32, bytes: i32, frames: &[u64]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(123_456_789u64.to_le_bytes());
        p.extend(42u32.to_le_bytes());
        p.extend(21u32.to_le_bytes());
        p.extend((-1i32).to_le_bytes());
        p.extend(bytes.to_le_bytes());
        p.extend(kind.to_le_bytes());
        p.extend(0u32.to_le_bytes());
        for f in frames {
            p.extend(f.to_le_bytes());
        }
        p
    }

    #[test]
    fn decodes_short_and_full_records() {
        let frames = [0xffff_ffff_a000_0010u64, 0xffff_ffff_8100_0110, 0, 0];
        let r = decode(&record(KIND_SHORT, 16, &frames)).unwrap_or_else(|| panic!("decode"));
        assert_eq!(
            r,
            Record {
                ts: 123_456_789,
                pid: 42,
                cap: 21,
                ret: -1,
                short: true,
                stack: vec![0xffff_ffff_a000_0010, 0xffff_ffff_8100_0110],
            }
        );
        // A failed walk (negative return) gives no frames; a byte count past the record is
        // bounded by the record.
        let r = decode(&record(KIND_FULL, -14, &frames)).unwrap_or_else(|| panic!("decode"));
        assert!(!r.short && r.stack.is_empty());
        let r = decode(&record(KIND_FULL, 4096, &frames)).unwrap_or_else(|| panic!("decode"));
        assert_eq!(r.stack.len(), 2);
        assert!(decode(&[0u8; 20]).is_none());
    }

    #[test]
    fn calibration_finds_the_two_slots() {
        let cap = (0xffff_ffff_8100_0100, 0xffff_ffff_8100_0200);
        let probe = [(0xffff_ffff_8100_0300, 0xffff_ffff_8100_0400)];
        let frames = [
            0xffff_ffff_a000_0010u64,
            0xffff_ffff_8100_0150,
            0xffff_ffff_8100_0310,
        ];
        let mut p = vec![0u8; 8 * CAL_FRAMES + CAL_WINDOW];
        for (i, f) in frames.iter().enumerate() {
            p[8 * i..8 * i + 8].copy_from_slice(&f.to_le_bytes());
        }
        let word = |p: &mut Vec<u8>, i: usize, v: u64| {
            let at = 8 * CAL_FRAMES + 8 * i;
            p[at..at + 8].copy_from_slice(&v.to_le_bytes());
        };
        // A stale caller address below the glue slot is skipped: the caller slot is above it.
        word(&mut p, 2, 0xffff_ffff_8100_0310);
        word(&mut p, 5, 0xffff_ffff_8100_0150);
        word(&mut p, 9, 0xffff_ffff_8100_0310);
        let fast = calibration(&p, cap, &probe);
        assert_eq!(
            fast,
            Some(super::super::progs::Fast {
                x: 72,
                y: 40,
                ret_in_cap: 0xffff_ffff_8100_0150
            })
        );
        // A caller outside the overcommit functions: no fast path.
        assert_eq!(calibration(&p, cap, &[(1, 2)]), None);
    }

    #[test]
    fn glue_is_stripped_up_to_cap_capable() {
        let mut s = vec![
            0xffff_ffff_a000_0010,
            0xffff_ffff_8100_0050,
            0xffff_ffff_8100_0110,
        ];
        strip_glue(&mut s, (0xffff_ffff_8100_0100, 0xffff_ffff_8100_0200));
        assert_eq!(s, [0xffff_ffff_8100_0110]);
        let mut s = vec![1, 2];
        strip_glue(&mut s, (0x100, 0x200));
        assert_eq!(s, [1, 2], "no cap_capable frame: kept as is");
    }
}
