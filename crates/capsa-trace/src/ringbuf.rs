//! The binary layout of one ring-buffer sub-buffer as `per_cpu/cpuN/trace_pipe_raw` returns it:
//! the sub-buffer header, the compressed event headers, and the event timestamps.
//!
//! Owns the decoding of sub-buffer bytes into (timestamp, payload) pairs. Pure: must not open
//! files nor know what any payload means (that is `rawevent`).
//!
//! Layout facts (kernel/trace/ring_buffer.c, and `events/header_page` / `events/header_event` on
//! Linux 6.18, cap-tracing.md §3):
//! * header_page: `u64 timestamp` at 0, `local_t commit` at 8 (8 bytes), data at 16. The commit
//!   field holds the number of data bytes; bit 31 (`RB_MISSED_EVENTS`) says events were lost
//!   before this sub-buffer, and bit 30 (`RB_MISSED_STORED`) that their count is stored as an
//!   `unsigned long` right after the data.
//! * header_event: a `u32` with `type_len:5` in the low bits and `time_delta:27` above it, then
//!   `array[]`. type_len 1..=28: payload of `type_len * 4` bytes at +4. type_len 0: payload length
//!   `array[0] - 4` at +8. 29 = padding (`time_delta == 0`: the rest of the sub-buffer is empty;
//!   else `array[0] + 4` bytes to skip), 30 = time extend, 31 = absolute time stamp; both 8 bytes
//!   with the value `array[0] << 27 | time_delta`.

/// `RB_MISSED_EVENTS`: events were dropped between the previous sub-buffer and this one.
const MISSED_EVENTS: u64 = 1 << 31;
/// `RB_MISSED_STORED`: the number of dropped events follows the data.
const MISSED_STORED: u64 = 1 << 30;
/// The data length bits of `commit` (the flags live above them).
const COMMIT_MASK: u64 = (1 << 30) - 1;
const TYPE_PADDING: u32 = 29;
const TYPE_TIME_EXTEND: u32 = 30;
const TYPE_TIME_STAMP: u32 = 31;
/// `TS_SHIFT`: the upper part of a time extend or stamp sits in array[0] above 27 bits.
const TS_SHIFT: u32 = 27;
/// `TS_MSB`: the top 5 bits an absolute time stamp does not carry (`rb_fix_abs_ts`).
const TS_MSB: u64 = 0xf8 << 56;

/// Where the header fields sit, as `events/header_page` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    pub commit_offset: usize,
    pub commit_size: usize,
    pub data_offset: usize,
    /// The data bytes of one sub-buffer (4080 for the default 4 KiB).
    pub data_size: usize,
}

impl Default for PageLayout {
    fn default() -> Self {
        PageLayout {
            commit_offset: 8,
            commit_size: 8,
            data_offset: 16,
            data_size: 4080,
        }
    }
}

impl PageLayout {
    /// Reads `events/header_page` text: the `commit` and `data` field lines.
    pub fn parse(header_page: &str) -> Option<PageLayout> {
        let mut layout = PageLayout::default();
        let (mut commit, mut data) = (false, false);
        for line in header_page.lines() {
            let Some((name, offset, size)) = crate::rawevent::field_line(line) else {
                continue;
            };
            if name == "commit" {
                (layout.commit_offset, layout.commit_size, commit) = (offset, size, true);
            } else if name == "data" {
                (layout.data_offset, layout.data_size, data) = (offset, size, true);
            }
        }
        (commit && data && matches!(layout.commit_size, 4 | 8)).then_some(layout)
    }
}

/// One decoded sub-buffer.
#[derive(Debug)]
pub struct Page<'a> {
    /// The data events in order, each with its absolute timestamp.
    pub events: Vec<(u64, &'a [u8])>,
    /// Events the kernel dropped before this sub-buffer: `Some(0)` if it set the flag without
    /// storing the count (at least one was lost).
    pub missed: Option<u64>,
}

/// Errors in a sub-buffer: the kernel wrote something this decoder does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("sub-buffer of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("sub-buffer commit {commit} exceeds its {room} data bytes")]
    Commit { commit: usize, room: usize },
    #[error("event at data offset {0} runs past the committed data")]
    Truncated(usize),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes one sub-buffer read from `trace_pipe_raw`.
pub fn parse_page<'a>(page: &'a [u8], layout: &PageLayout) -> Result<Page<'a>, PageError> {
    let short = PageError::Short(page.len());
    let base_ts = u64_at(page, 0).ok_or(short.clone())?;
    let commit = match layout.commit_size {
        4 => u32_at(page, layout.commit_offset).map(u64::from),
        _ => u64_at(page, layout.commit_offset),
    }
    .ok_or(short.clone())?;
    let data = page.get(layout.data_offset..).ok_or(short)?;
    let len = (commit & COMMIT_MASK) as usize;
    if len > data.len() {
        return Err(PageError::Commit {
            commit: len,
            room: data.len(),
        });
    }
    let missed = (commit & MISSED_EVENTS != 0).then(|| {
        if commit & MISSED_STORED != 0 {
            u64_at(data, len).unwrap_or(0)
        } else {
            0
        }
    });
    let events = parse_events(&data[..len], base_ts)?;
    Ok(Page { events, missed })
}

/// Walks the events of the committed data, keeping the running timestamp as the kernel's
/// `rb_update_read_stamp` does: data events add their delta, a time extend adds its value, a
/// time stamp replaces it, padding leaves it alone.
fn parse_events(data: &[u8], mut ts: u64) -> Result<Vec<(u64, &[u8])>, PageError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let word = u32_at(data, at).ok_or(PageError::Truncated(at))?;
        let (type_len, delta) = (word & 0x1f, u64::from(word >> 5));
        let array0 = || {
            u32_at(data, at + 4)
                .map(u64::from)
                .ok_or(PageError::Truncated(at))
        };
        let size = match type_len {
            TYPE_PADDING if delta == 0 => break,
            TYPE_PADDING => 4 + array0()? as usize,
            TYPE_TIME_EXTEND => {
                ts = ts.wrapping_add(array0()? << TS_SHIFT | delta);
                8
            }
            TYPE_TIME_STAMP => {
                let mut abs = array0()? << TS_SHIFT | delta;
                if ts & TS_MSB != 0 {
                    abs |= ts & TS_MSB;
                }
                ts = abs;
                8
            }
            0 => {
                let n = array0()? as usize;
                ts = ts.wrapping_add(delta);
                let payload = n
                    .checked_sub(4)
                    .and_then(|p| data.get(at + 8..at + 8 + p))
                    .ok_or(PageError::Truncated(at))?;
                out.push((ts, payload));
                4 + n
            }
            n => {
                let n = n as usize * 4;
                ts = ts.wrapping_add(delta);
                out.push((
                    ts,
                    data.get(at + 4..at + 4 + n)
                        .ok_or(PageError::Truncated(at))?,
                ));
                4 + n
            }
        };
        if size < 4 {
            return Err(PageError::Truncated(at));
        }
        at += size;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a sub-buffer: header, then the given raw words, padded to `size` bytes.
    pub(crate) fn page(ts: u64, commit_flags: u64, data: &[u8], size: usize) -> Vec<u8> {
        let mut p = Vec::with_capacity(size);
        p.extend_from_slice(&ts.to_le_bytes());
        p.extend_from_slice(&(data.len() as u64 | commit_flags).to_le_bytes());
        p.extend_from_slice(data);
        p.resize(size, 0);
        p
    }

    pub(crate) fn header(type_len: u32, delta: u32) -> [u8; 4] {
        (type_len | delta << 5).to_le_bytes()
    }

    #[test]
    fn small_large_extend_stamp_and_padding() {
        let mut d = Vec::new();
        // A 8-byte event, delta 5.
        d.extend_from_slice(&header(2, 5));
        d.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        // A time extend of (1 << 27) + 3.
        d.extend_from_slice(&header(TYPE_TIME_EXTEND, 3));
        d.extend_from_slice(&1u32.to_le_bytes());
        // A type_len 0 event with 120 bytes of payload, delta 1.
        d.extend_from_slice(&header(0, 1));
        d.extend_from_slice(&124u32.to_le_bytes());
        d.extend_from_slice(&[9u8; 120]);
        // A discarded event turned into padding (delta != 0): skipped, time unchanged. array[0]
        // counts itself and the old data (rb_event_discard), so the whole is array[0] + 4.
        d.extend_from_slice(&header(TYPE_PADDING, 1));
        d.extend_from_slice(&8u32.to_le_bytes());
        d.extend_from_slice(&[0u8; 4]);
        // An absolute time stamp, then a 4-byte event at +2.
        d.extend_from_slice(&header(TYPE_TIME_STAMP, 7));
        d.extend_from_slice(&2u32.to_le_bytes());
        d.extend_from_slice(&header(1, 2));
        d.extend_from_slice(&[0xaa; 4]);
        let p = page(1000, 0, &d, 4096);
        let parsed = parse_page(&p, &PageLayout::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.missed, None);
        let ts: Vec<u64> = parsed.events.iter().map(|e| e.0).collect();
        let after_extend = 1005 + (1 << 27) + 3;
        assert_eq!(ts, vec![1005, after_extend + 1, (2 << 27) + 7 + 2]);
        assert_eq!(parsed.events[0].1, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parsed.events[1].1.len(), 120);
        assert_eq!(parsed.events[2].1, &[0xaa; 4]);
    }

    #[test]
    fn null_padding_ends_the_page_and_missed_flags_are_read() {
        let mut d = Vec::new();
        d.extend_from_slice(&header(1, 1));
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&header(TYPE_PADDING, 0));
        d.extend_from_slice(&[0; 8]);
        let mut p = page(0, MISSED_EVENTS | MISSED_STORED, &d, 4096);
        p[16 + d.len()..16 + d.len() + 8].copy_from_slice(&42u64.to_le_bytes());
        let parsed = parse_page(&p, &PageLayout::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((parsed.events.len(), parsed.missed), (1, Some(42)));
        let p = page(0, MISSED_EVENTS, &d, 4096);
        let parsed = parse_page(&p, &PageLayout::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.missed, Some(0));
    }

    #[test]
    fn corrupt_pages_are_errors() {
        assert_eq!(
            parse_page(&[0; 10], &PageLayout::default()).err(),
            Some(PageError::Short(10))
        );
        let mut p = page(0, 0, &[], 64);
        p[8..16].copy_from_slice(&100u64.to_le_bytes());
        assert!(matches!(
            parse_page(&p, &PageLayout::default()),
            Err(PageError::Commit { .. })
        ));
        let mut d = header(0, 0).to_vec();
        d.extend_from_slice(&200u32.to_le_bytes());
        assert!(matches!(
            parse_page(&page(0, 0, &d, 64), &PageLayout::default()),
            Err(PageError::Truncated(0))
        ));
    }

    #[test]
    fn header_page_of_linux_6_18() {
        let text = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
                    \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
                    \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
                    \tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
        assert_eq!(PageLayout::parse(text), Some(PageLayout::default()));
    }
}
