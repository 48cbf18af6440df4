//! Raw bpf(2) calls: map creation, program loading with the verifier log, raw tracepoint
//! attachment, map updates, and the ring buffer's shared mappings.
//!
//! Owns every `unsafe` of the BPF side, each in a small wrapper with its SAFETY argument. Must
//! not pin anything in bpffs: every object lives only as long as its file descriptor, so a
//! killed recorder leaves nothing behind (the kernel frees programs, links and maps on the last
//! close).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::BpfError;

// Commands (`enum bpf_cmd`).
const MAP_CREATE: i32 = 0;
const MAP_LOOKUP_ELEM: i32 = 1;
const MAP_UPDATE_ELEM: i32 = 2;
const PROG_LOAD: i32 = 5;
const PROG_GET_NEXT_ID: i32 = 11;
const MAP_GET_NEXT_ID: i32 = 12;
const PROG_GET_FD_BY_ID: i32 = 13;
const MAP_GET_FD_BY_ID: i32 = 14;
const OBJ_GET_INFO_BY_FD: i32 = 15;
const RAW_TRACEPOINT_OPEN: i32 = 17;

/// `BPF_PROG_TYPE_RAW_TRACEPOINT`.
const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
/// Map types.
pub const MAP_TYPE_HASH: u32 = 1;
pub const MAP_TYPE_ARRAY: u32 = 2;
pub const MAP_TYPE_RINGBUF: u32 = 27;

/// `union bpf_attr` is 144+ bytes today; the kernel checks that bytes past what it knows are 0.
const ATTR_SIZE: usize = 128;

fn put_u32(a: &mut [u8; ATTR_SIZE], at: usize, v: u32) {
    a[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut [u8; ATTR_SIZE], at: usize, v: u64) {
    a[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn put_name(a: &mut [u8; ATTR_SIZE], at: usize, name: &str) {
    // BPF_OBJ_NAME_LEN is 16 with the NUL; the kernel accepts [A-Za-z0-9_.].
    let n = name.len().min(15);
    a[at..at + n].copy_from_slice(&name.as_bytes()[..n]);
}

/// bpf(cmd, attr): the raw syscall, its non-negative result or the errno.
fn bpf_raw(cmd: i32, attr: &mut [u8; ATTR_SIZE]) -> Result<i64, rustix::io::Errno> {
    // SAFETY: attr is a valid, writable buffer of ATTR_SIZE bytes that outlives the call; every
    // pointer stored in it (insns, license, log, names, keys, values, info buffers) points to
    // memory the caller keeps alive across this call. The kernel copies at most ATTR_SIZE bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr().cast::<libc::c_void>(),
            ATTR_SIZE as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    Ok(r)
}

/// bpf(cmd, attr) returning a new file descriptor.
fn bpf_fd(cmd: i32, attr: &mut [u8; ATTR_SIZE]) -> Result<OwnedFd, rustix::io::Errno> {
    let r = bpf_raw(cmd, attr)?;
    let fd = i32::try_from(r).map_err(|_| rustix::io::Errno::BADF)?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a map (no flags: hash maps are preallocated, safe in any tracing context).
pub fn map_create(
    name: &str,
    kind: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<OwnedFd, BpfError> {
    let mut a = [0u8; ATTR_SIZE];
    put_u32(&mut a, 0, kind);
    put_u32(&mut a, 4, key_size);
    put_u32(&mut a, 8, value_size);
    put_u32(&mut a, 12, max_entries);
    put_name(&mut a, 28, name);
    bpf_fd(MAP_CREATE, &mut a).map_err(|errno| BpfError::Syscall {
        op: "BPF_MAP_CREATE",
        what: name.to_string(),
        errno,
    })
}

/// A map element command: `key` is read, `value` read (update) or written (lookup).
fn map_elem(cmd: i32, map: &OwnedFd, key: &[u8], value: *mut u8) -> Result<(), rustix::io::Errno> {
    let mut a = [0u8; ATTR_SIZE];
    put_u32(&mut a, 0, map.as_raw_fd() as u32);
    put_u64(&mut a, 8, key.as_ptr() as u64);
    put_u64(&mut a, 16, value as u64);
    // key and value point to live buffers of the map's key and value sizes (the callers pass
    // exactly those), used by the kernel during the call only.
    bpf_cmd(cmd, &mut a)
}

/// Sets `map[key] = value` (`BPF_ANY`); `value` must be the map's value size.
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    map_elem(MAP_UPDATE_ELEM, map, key, value.as_ptr().cast_mut()).map_err(|errno| {
        BpfError::Syscall {
            op: "BPF_MAP_UPDATE_ELEM",
            what: "the traced pid map".into(),
            errno,
        }
    })
}

/// Reads the u64 value at `key` of a map whose values are 8 bytes.
pub fn map_lookup_u64(map: &OwnedFd, key: &[u8]) -> Result<u64, BpfError> {
    let mut v = [0u8; 8];
    map_elem(MAP_LOOKUP_ELEM, map, key, v.as_mut_ptr()).map_err(|errno| BpfError::Syscall {
        op: "BPF_MAP_LOOKUP_ELEM",
        what: "the lost-record counter".into(),
        errno,
    })?;
    Ok(u64::from_ne_bytes(v))
}

/// Loads a raw tracepoint program; on failure the error carries the verifier's log.
pub fn prog_load(name: &str, code: &[u8]) -> Result<OwnedFd, BpfError> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 1 << 16];
    let mut a = [0u8; ATTR_SIZE];
    put_u32(&mut a, 0, PROG_TYPE_RAW_TRACEPOINT);
    put_u32(&mut a, 4, (code.len() / 8) as u32);
    put_u64(&mut a, 8, code.as_ptr() as u64);
    put_u64(&mut a, 16, license.as_ptr() as u64);
    // log_level 1: the log is written only when the load fails.
    put_u32(&mut a, 24, 1);
    put_u32(&mut a, 28, log.len() as u32);
    put_u64(&mut a, 32, log.as_mut_ptr() as u64);
    put_name(&mut a, 48, name);
    bpf_fd(PROG_LOAD, &mut a).map_err(|errno| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        // The end of the log names the failing instruction and the reason.
        let tail: String = text.lines().rev().take(12).collect::<Vec<_>>().join(" | ");
        BpfError::Load {
            prog: name.to_string(),
            errno,
            log: tail,
        }
    })
}

/// Attaches a raw tracepoint program; the link lives as long as the returned descriptor.
pub fn raw_tracepoint_open(tracepoint: &str, prog: &OwnedFd) -> Result<OwnedFd, BpfError> {
    let name = std::ffi::CString::new(tracepoint).map_err(|_| BpfError::Syscall {
        op: "BPF_RAW_TRACEPOINT_OPEN",
        what: tracepoint.to_string(),
        errno: rustix::io::Errno::INVAL,
    })?;
    let mut a = [0u8; ATTR_SIZE];
    put_u64(&mut a, 0, name.as_ptr() as u64);
    put_u32(&mut a, 8, prog.as_raw_fd() as u32);
    bpf_fd(RAW_TRACEPOINT_OPEN, &mut a).map_err(|errno| BpfError::Syscall {
        op: "BPF_RAW_TRACEPOINT_OPEN",
        what: tracepoint.to_string(),
        errno,
    })
}

/// bpf(cmd, attr) for commands that return 0 or an error.
fn bpf_cmd(cmd: i32, attr: &mut [u8; ATTR_SIZE]) -> Result<(), rustix::io::Errno> {
    bpf_raw(cmd, attr).map(|_| ())
}

/// The names of the BPF programs (`maps` false) or maps (`maps` true) loaded on the host, for
/// checks that a recording left nothing behind. Objects that go away meanwhile are skipped.
pub fn loaded_names(maps: bool) -> Result<Vec<String>, BpfError> {
    let (next, by_id, name_at) = if maps {
        (MAP_GET_NEXT_ID, MAP_GET_FD_BY_ID, 24)
    } else {
        (PROG_GET_NEXT_ID, PROG_GET_FD_BY_ID, 64)
    };
    let err = |op, errno| BpfError::Syscall {
        op,
        what: "the loaded BPF objects".into(),
        errno,
    };
    let mut names = Vec::new();
    let mut id = 0u32;
    loop {
        let mut a = [0u8; ATTR_SIZE];
        put_u32(&mut a, 0, id);
        match bpf_cmd(next, &mut a) {
            Ok(()) => id = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
            Err(rustix::io::Errno::NOENT) => return Ok(names),
            Err(e) => return Err(err("BPF_*_GET_NEXT_ID", e)),
        }
        let mut a = [0u8; ATTR_SIZE];
        put_u32(&mut a, 0, id);
        let Ok(fd) = bpf_fd(by_id, &mut a) else {
            continue;
        };
        let mut info = [0u8; 256];
        let mut a = [0u8; ATTR_SIZE];
        put_u32(&mut a, 0, fd.as_raw_fd() as u32);
        put_u32(&mut a, 4, info.len() as u32);
        put_u64(&mut a, 8, info.as_mut_ptr() as u64);
        if bpf_cmd(OBJ_GET_INFO_BY_FD, &mut a).is_ok() {
            let raw = &info[name_at..name_at + 16];
            let n = raw.iter().position(|&b| b == 0).unwrap_or(16);
            names.push(String::from_utf8_lossy(&raw[..n]).into_owned());
        }
    }
}

/// Makes one overcommit check in this thread: maps and unmaps one private writable anonymous
/// page, which is charged against the commit limit (no MAP_NORESERVE).
pub fn charged_mapping() -> Result<(), BpfError> {
    use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous, munmap};
    let page = rustix::param::page_size();
    // SAFETY: a fresh anonymous mapping (null hint, no fixed address): nothing is replaced.
    let p = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            page,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }
    .map_err(|errno| BpfError::Syscall {
        op: "mmap",
        what: "a calibration page".into(),
        errno,
    })?;
    // SAFETY: unmapping the page mapped just above, which nothing references.
    let _ = unsafe { munmap(p, page) };
    Ok(())
}

/// The two shared mappings of a BPF ring buffer (kernel/bpf/ringbuf.c): the consumer page
/// (read-write, holds consumer_pos) and the producer page followed by the data area mapped
/// twice in a row (read-only), so that a record that wraps reads as one piece.
pub struct RingMap {
    consumer: *mut u8,
    producer: *const u8,
    page: usize,
    size: usize,
}

// SAFETY: the mappings are plain shared memory owned by this value; access goes through
// atomics (positions) or reads of committed records, from one thread at a time (&mut self).
unsafe impl Send for RingMap {}

impl std::fmt::Debug for RingMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingMap").field("size", &self.size).finish()
    }
}

impl RingMap {
    /// Maps the ring buffer map `fd` of `size` data bytes (a power of two, page multiple).
    pub fn new(fd: &OwnedFd, size: usize) -> Result<RingMap, BpfError> {
        let page = rustix::param::page_size();
        let err = |errno| BpfError::Syscall {
            op: "mmap",
            what: "the BPF ring buffer".into(),
            errno,
        };
        use rustix::mm::{MapFlags, ProtFlags, mmap, munmap};
        // SAFETY: a fresh shared mapping of the map's consumer page at offset 0, as the
        // ringbuf mmap handler expects; no existing memory is replaced (null hint).
        let consumer = unsafe {
            mmap(
                std::ptr::null_mut(),
                page,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .map_err(err)?;
        // SAFETY: as above, the producer page and the doubly mapped data, read-only (the
        // kernel refuses a writable mapping past the consumer page).
        let producer = unsafe {
            mmap(
                std::ptr::null_mut(),
                page + 2 * size,
                ProtFlags::READ,
                MapFlags::SHARED,
                fd,
                page as u64,
            )
        };
        let producer = match producer {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above, which nothing else uses.
                let _ = unsafe { munmap(consumer, page) };
                return Err(err(e));
            }
        };
        Ok(RingMap {
            consumer: consumer.cast(),
            producer: producer.cast_const().cast(),
            page,
            size,
        })
    }

    fn pos(p: *const u8) -> &'static std::sync::atomic::AtomicU64 {
        // SAFETY: p points to the first, 8-aligned word of a live, page-aligned shared page
        // of this RingMap; the reference does not outlive it in practice (used within a call).
        unsafe { &*p.cast::<std::sync::atomic::AtomicU64>() }
    }

    pub fn consumer_pos(&self) -> u64 {
        Self::pos(self.consumer).load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set_consumer_pos(&self, v: u64) {
        Self::pos(self.consumer).store(v, std::sync::atomic::Ordering::Release)
    }

    pub fn producer_pos(&self) -> u64 {
        Self::pos(self.producer).load(std::sync::atomic::Ordering::Acquire)
    }

    /// The 32-bit record header at data position `pos` (read with acquire: the kernel clears
    /// the busy bit with a release store once the record is complete).
    pub fn header(&self, pos: u64) -> u32 {
        let at = (pos as usize) & (self.size - 1);
        // SAFETY: at < size, the header lies inside the first copy of the data area, which
        // starts one page after the producer page; record headers are 8-aligned.
        let p = unsafe { self.producer.add(self.page + at) };
        // SAFETY: as above; a u32 at an 8-aligned address of a live mapping.
        unsafe { &*p.cast::<std::sync::atomic::AtomicU32>() }
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The `len` bytes of a committed record's payload at data position `pos` (after the
    /// 8-byte header). The double mapping makes it contiguous even when it wraps.
    pub fn payload(&self, pos: u64, len: usize) -> &[u8] {
        let at = (pos as usize) & (self.size - 1);
        let len = len.min(self.size);
        // SAFETY: at + 8 + len <= 2 * size stays inside the doubly mapped data area; the
        // record is committed (busy bit clear) so the kernel no longer writes it until the
        // consumer position moves past it.
        unsafe { std::slice::from_raw_parts(self.producer.add(self.page + at + 8), len) }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        use rustix::mm::munmap;
        // SAFETY: both mappings were made in new() with these lengths and are unmapped once.
        unsafe {
            let _ = munmap(self.consumer.cast(), self.page);
            let _ = munmap(self.producer.cast_mut().cast(), self.page + 2 * self.size);
        }
    }
}
