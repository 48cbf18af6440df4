//! The three raw tracepoint programs, assembled at load time with this kernel's argument
//! positions (from BTF), `task_struct.pid` offset and overcommit function ranges.
//!
//! Owns what runs in the kernel: which checks get a short stack, which a full one, and how the
//! traced-pid map follows forks. Pure: returns instructions; [`super::sys`] loads them.

use super::insn::{Alu, Asm, AsmError, Cond, Helper, Insn, R0, R1, R2, R3, R4, R6, R7, R8, R9};
use super::insn::{FP, Size};
use super::record::{CAL_FRAMES, CAL_WINDOW, HEADER, KIND_FULL, KIND_SHORT};

/// CAP_SYS_ADMIN: the only capability the BPF side handles; tracefs keeps the others.
pub const CAP_SYS_ADMIN: i32 = 21;
/// Frames of the short stack. The walk starts in the BPF glue (the program, `bpf_trace_run5`,
/// `__bpf_trace_cap_capable`), then `cap_capable` and its caller: the overcommit caller
/// (`security_vm_enough_memory_mm`) is the 5th-6th frame on Linux 6.18. A few spare frames
/// cost little: the unwinder stops when the buffer is full.
pub const SHORT_FRAMES: usize = 6;
/// Frames of a full stack (the `stacktrace` trigger has no limit; real paths are 10-30 deep).
pub const FULL_FRAMES: usize = 64;

/// Where things are: argument indexes in the raw tracepoint's `u64 args[]`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub cap_arg: usize,
    pub ret_arg: usize,
    pub fork_child_arg: usize,
    pub free_task_arg: usize,
    /// Byte offset of `pid` in `struct task_struct`.
    pub pid_offset: i32,
    /// `[start, end)` of the functions whose presence makes a check an overcommit probe.
    pub probe_ranges: Vec<(u64, u64)>,
    /// Where cap_capable's frame sits above the program's, measured at start ([`Fast`]).
    pub fast: Option<Fast>,
}

/// The kernel stack seen from the program's frame pointer (R10), measured once per recording
/// with a probe of our own ([`super::Capture::start`]): the word at `r10 + y` is `ret_in_cap`,
/// the return address into cap_capable after its tracepoint call, and the word at `r10 + x` is
/// the return address into cap_capable's caller. Frame sizes are fixed per call site (ORC), so
/// while the glue between cap_capable and the program is the same, both slots hold return
/// addresses, and a caller slot inside an overcommit function is that probe, with no unwind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fast {
    pub x: i32,
    pub y: i32,
    pub ret_in_cap: u64,
}

/// Map file descriptors the programs refer to.
#[derive(Debug, Clone, Copy)]
pub struct Maps {
    pub pids: i32,
    pub events: i32,
    pub lost: i32,
}

fn arg_off(i: usize) -> i16 {
    (8 * i) as i16
}

// Stack slots of the cap program.
const PID_SLOT: i16 = -8;
const TS_SLOT: i16 = -16;
const LOST_KEY_SLOT: i16 = -24;
const WORD_SLOT: i16 = -32;

/// Bumps the lost-record counter (`lost[0] += 1`) and jumps to `out`. Clobbers R0-R5.
fn count_lost(a: &mut Asm, maps: Maps, out: super::insn::Label) {
    a.store_imm(Size::W, FP, LOST_KEY_SLOT, 0)
        .ld_map_fd(R1, maps.lost)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, LOST_KEY_SLOT as i32)
        .call(Helper::MapLookupElem)
        .jmp_imm(Cond::Eq, R0, 0, out)
        .mov_imm(R1, 1)
        .atomic_add64(R0, 0, R1)
        .ja(out);
}

/// Writes the record header at R9: timestamp, pid, cap, ret, kind. Uses R1.
fn header(a: &mut Asm, l: &Layout, kind: i32) {
    a.load(Size::DW, R1, FP, TS_SLOT)
        .store(Size::DW, R9, 0, R1)
        .load(Size::W, R1, FP, PID_SLOT)
        .store(Size::W, R9, 8, R1)
        .store(Size::W, R9, 12, R7)
        .load(Size::DW, R1, R6, arg_off(l.ret_arg))
        .store(Size::W, R9, 16, R1)
        .store_imm(Size::W, R9, 24, kind)
        .store_imm(Size::W, R9, 28, 0);
}

/// `cap_capable(cred, target_ns, capable_ns, cap, ret)`: for CAP_SYS_ADMIN checks of traced
/// pids, the overcommit probe without an unwind ([`Fast`]), else a short stack (a record with it
/// if a frame lies in an overcommit function), else a record with the full stack.
///
/// The program keeps its own stack under 64 bytes (BPF_PRIV_STACK_MIN_SIZE): a larger one runs
/// on the JIT's per-CPU private stack (Linux 6.14+), and R10 would no longer sit on the kernel
/// stack that [`Fast`] reads. Stacks are taken straight into ring buffer records instead.
pub fn cap_capable(l: &Layout, maps: Maps) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let (out, full, lost) = (a.label(), a.label(), a.label());
    a.mov_reg(R6, R1)
        .load(Size::DW, R7, R6, arg_off(l.cap_arg))
        .jmp32_imm(Cond::Ne, R7, CAP_SYS_ADMIN, out)
        .call(Helper::GetCurrentPidTgid)
        .store(Size::W, FP, PID_SLOT, R0)
        .ld_map_fd(R1, maps.pids)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, PID_SLOT as i32)
        .call(Helper::MapLookupElem)
        .jmp_imm(Cond::Eq, R0, 0, out)
        .call(Helper::KtimeGetNs)
        .store(Size::DW, FP, TS_SLOT, R0);
    if let Some(fast) = l.fast {
        fast_probe(&mut a, l, maps, fast, out, lost);
    }
    short_walk(&mut a, l, maps, out, full, lost);
    // Full: a second, deep walk straight into the record.
    a.place(full)
        .ld_map_fd(R1, maps.events)
        .mov_imm(R2, (HEADER + 8 * FULL_FRAMES) as i32)
        .mov_imm(R3, 0)
        .call(Helper::RingbufReserve)
        .jmp_imm(Cond::Eq, R0, 0, lost)
        .mov_reg(R9, R0);
    header(&mut a, l, KIND_FULL);
    a.mov_reg(R1, R6)
        .mov_reg(R2, R9)
        .alu_imm(Alu::Add, R2, HEADER as i32)
        .mov_imm(R3, 8 * FULL_FRAMES as i32)
        .mov_imm(R4, 0)
        .call(Helper::GetStack)
        .store(Size::W, R9, 20, R0)
        .mov_reg(R1, R9)
        .mov_imm(R2, 0)
        .call(Helper::RingbufSubmit)
        .ja(out);
    a.place(lost);
    count_lost(&mut a, maps, out);
    a.place(out).mov_imm(R0, 0).exit();
    a.finish()
}

/// The short walk into a reserved record: submitted if a frame lies in an overcommit function,
/// else discarded and on to `full`.
fn short_walk(
    a: &mut Asm,
    l: &Layout,
    maps: Maps,
    out: super::insn::Label,
    full: super::insn::Label,
    lost: super::insn::Label,
) {
    let hit = a.label();
    a.ld_map_fd(R1, maps.events)
        .mov_imm(R2, (HEADER + 8 * SHORT_FRAMES) as i32)
        .mov_imm(R3, 0)
        .call(Helper::RingbufReserve)
        .jmp_imm(Cond::Eq, R0, 0, lost)
        .mov_reg(R9, R0)
        .mov_reg(R1, R6)
        .mov_reg(R2, R9)
        .alu_imm(Alu::Add, R2, HEADER as i32)
        .mov_imm(R3, 8 * SHORT_FRAMES as i32)
        .mov_imm(R4, 0)
        .call(Helper::GetStack)
        .mov_reg(R8, R0);
    // Unrolled scan: any frame in any probe range is a hit.
    for i in 0..SHORT_FRAMES {
        a.load(Size::DW, R1, R9, (HEADER + 8 * i) as i16);
        for &(lo, hi) in &l.probe_ranges {
            let next = a.label();
            a.ld_imm64(R2, lo)
                .jmp_reg(Cond::Lt, R1, R2, next)
                .ld_imm64(R2, hi)
                .jmp_reg(Cond::Lt, R1, R2, hit)
                .place(next);
        }
    }
    a.mov_reg(R1, R9)
        .mov_imm(R2, 0)
        .call(Helper::RingbufDiscard)
        .ja(full);
    a.place(hit);
    header(a, l, KIND_SHORT);
    a.store(Size::W, R9, 20, R8)
        .mov_reg(R1, R9)
        .mov_imm(R2, 0)
        .call(Helper::RingbufSubmit)
        .ja(out);
}

/// Reads the kernel stack word at `r10 + off` into WORD_SLOT and R1; jumps to `fail` if the
/// read faults. `probe_read_kernel` takes the address as a plain value (root only: passing a
/// stack address to a helper is a pointer leak the verifier allows with CAP_PERFMON).
fn stack_word(a: &mut Asm, off: i32, fail: super::insn::Label) {
    a.mov_reg(R1, FP)
        .alu_imm(Alu::Add, R1, WORD_SLOT as i32)
        .mov_imm(R2, 8)
        .mov_reg(R3, FP)
        .alu_imm(Alu::Add, R3, off)
        .call(Helper::ProbeReadKernel)
        .jmp_imm(Cond::Ne, R0, 0, fail)
        .load(Size::DW, R1, FP, WORD_SLOT);
}

/// The overcommit probe without an unwind ([`Fast`]): if the glue slot holds `ret_in_cap` and
/// the caller slot lies in an overcommit function, the record gets those two frames (what the
/// short walk would give after the glue). Anything else falls through to the walk.
fn fast_probe(
    a: &mut Asm,
    l: &Layout,
    maps: Maps,
    fast: Fast,
    out: super::insn::Label,
    lost: super::insn::Label,
) {
    let (walk, hit) = (a.label(), a.label());
    stack_word(a, fast.y, walk);
    a.ld_imm64(R2, fast.ret_in_cap)
        .jmp_reg(Cond::Ne, R1, R2, walk);
    stack_word(a, fast.x, walk);
    a.mov_reg(R8, R1);
    for &(lo, hi) in &l.probe_ranges {
        let next = a.label();
        a.ld_imm64(R2, lo)
            .jmp_reg(Cond::Lt, R8, R2, next)
            .ld_imm64(R2, hi)
            .jmp_reg(Cond::Lt, R8, R2, hit)
            .place(next);
    }
    a.ja(walk);
    a.place(hit)
        .ld_map_fd(R1, maps.events)
        .mov_imm(R2, (HEADER + 16) as i32)
        .mov_imm(R3, 0)
        .call(Helper::RingbufReserve)
        .jmp_imm(Cond::Eq, R0, 0, lost)
        .mov_reg(R9, R0);
    header(a, l, KIND_SHORT);
    a.store_imm(Size::W, R9, 20, 16)
        .ld_imm64(R1, fast.ret_in_cap)
        .store(Size::DW, R9, HEADER as i16, R1)
        .store(Size::DW, R9, HEADER as i16 + 8, R8)
        .mov_reg(R1, R9)
        .mov_imm(R2, 0)
        .call(Helper::RingbufSubmit)
        .ja(out)
        .place(walk);
}

/// The calibration program: for CAP_SYS_ADMIN checks of thread `tid` (the recorder's own, which
/// then makes one overcommit probe), the raw stack and the kernel stack words above R10.
pub fn calibrate(l: &Layout, maps: Maps, tid: i32) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let out = a.label();
    a.mov_reg(R6, R1)
        .load(Size::DW, R7, R6, arg_off(l.cap_arg))
        .jmp32_imm(Cond::Ne, R7, CAP_SYS_ADMIN, out)
        .call(Helper::GetCurrentPidTgid)
        .jmp32_imm(Cond::Ne, R0, tid, out)
        .ld_map_fd(R1, maps.events)
        .mov_imm(R2, (8 * CAL_FRAMES + CAL_WINDOW) as i32)
        .mov_imm(R3, 0)
        .call(Helper::RingbufReserve)
        .jmp_imm(Cond::Eq, R0, 0, out)
        .mov_reg(R9, R0)
        .mov_reg(R1, R6)
        .mov_reg(R2, R9)
        .mov_imm(R3, 8 * CAL_FRAMES as i32)
        .mov_imm(R4, 0)
        .call(Helper::GetStack)
        .mov_reg(R1, R9)
        .alu_imm(Alu::Add, R1, 8 * CAL_FRAMES as i32)
        .mov_imm(R2, CAL_WINDOW as i32)
        .mov_reg(R3, FP)
        .call(Helper::ProbeReadKernel)
        .mov_reg(R1, R9)
        .mov_imm(R2, 0)
        .call(Helper::RingbufSubmit)
        .place(out)
        .mov_imm(R0, 0)
        .exit();
    a.finish()
}

/// `sched_process_fork(parent, child)`, run by the parent: a traced parent's child is traced
/// too (what the instance's `event-fork` option does for set_event_pid).
pub fn fork(l: &Layout, maps: Maps) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let (out, lost) = (a.label(), a.label());
    a.mov_reg(R6, R1)
        .call(Helper::GetCurrentPidTgid)
        .store(Size::W, FP, -8, R0)
        .ld_map_fd(R1, maps.pids)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, -8)
        .call(Helper::MapLookupElem)
        .jmp_imm(Cond::Eq, R0, 0, out)
        .load(Size::DW, R3, R6, arg_off(l.fork_child_arg))
        .alu_imm(Alu::Add, R3, l.pid_offset)
        .mov_reg(R1, FP)
        .alu_imm(Alu::Add, R1, -16)
        .mov_imm(R2, 4)
        .call(Helper::ProbeReadKernel)
        .jmp_imm(Cond::Ne, R0, 0, lost)
        .store_imm(Size::W, FP, -12, 1)
        .ld_map_fd(R1, maps.pids)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, -16)
        .mov_reg(R3, FP)
        .alu_imm(Alu::Add, R3, -12)
        .mov_imm(R4, 0)
        .call(Helper::MapUpdateElem)
        .jmp_imm(Cond::Ne, R0, 0, lost)
        .ja(out);
    a.place(lost);
    count_lost(&mut a, maps, out);
    a.place(out).mov_imm(R0, 0).exit();
    a.finish()
}

/// `sched_process_free(task)`: the pid leaves the map when the task is freed, as set_event_pid
/// drops it (the kernel's event_filter_pid_sched_process_exit runs on this tracepoint).
pub fn free(l: &Layout, maps: Maps) -> Result<Vec<Insn>, AsmError> {
    let mut a = Asm::new();
    let out = a.label();
    a.load(Size::DW, R3, R1, arg_off(l.free_task_arg))
        .alu_imm(Alu::Add, R3, l.pid_offset)
        .mov_reg(R1, FP)
        .alu_imm(Alu::Add, R1, -8)
        .mov_imm(R2, 4)
        .call(Helper::ProbeReadKernel)
        .jmp_imm(Cond::Ne, R0, 0, out)
        .ld_map_fd(R1, maps.pids)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, -8)
        .call(Helper::MapDeleteElem)
        .place(out)
        .mov_imm(R0, 0)
        .exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(fast: Option<Fast>) -> Layout {
        Layout {
            cap_arg: 3,
            ret_arg: 4,
            fork_child_arg: 1,
            free_task_arg: 0,
            pid_offset: 2480,
            probe_ranges: vec![(0xffff_ffff_81ac_26d0, 0xffff_ffff_81ac_2800)],
            fast,
        }
    }

    const MAPS: Maps = Maps {
        pids: 3,
        events: 4,
        lost: 5,
    };

    /// The lowest frame-pointer offset a program touches, directly or through `rX = r10 + imm`.
    fn lowest_stack_offset(insns: &[Insn]) -> i32 {
        let mut low = 0i32;
        let mut from_fp = [false; 11];
        for i in insns {
            let (dst, src) = ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize);
            match i.code {
                // mov64 rX, r10 / mov64 rX, imm
                0xbf => from_fp[dst] = src == 10,
                0xb7 => from_fp[dst] = false,
                // add64 rX, imm on a copy of r10
                0x07 if from_fp[dst] => low = low.min(i.imm),
                // loads and stores relative to r10
                0x61 | 0x69 | 0x71 | 0x79 if src == 10 => low = low.min(i.off.into()),
                0x62 | 0x6a | 0x72 | 0x7a | 0x63 | 0x6b | 0x73 | 0x7b if dst == 10 => {
                    low = low.min(i.off.into())
                }
                _ => {}
            }
        }
        low
    }

    /// The programs assemble, and each keeps its stack under BPF_PRIV_STACK_MIN_SIZE (64 bytes),
    /// so that R10 stays on the kernel stack that the fast path reads.
    #[test]
    fn programs_assemble_and_stay_off_the_private_stack() {
        let fast = Fast {
            x: 184,
            y: 168,
            ret_in_cap: 0xffff_ffff_81ab_d4f3,
        };
        let all = [
            cap_capable(&layout(Some(fast)), MAPS),
            cap_capable(&layout(None), MAPS),
            calibrate(&layout(None), MAPS, 1234),
            fork(&layout(None), MAPS),
            free(&layout(None), MAPS),
        ];
        for p in all {
            let insns = p.unwrap_or_else(|e| panic!("{e}"));
            assert!(insns.len() < 4096);
            assert!(lowest_stack_offset(&insns) > -64, "{insns:?}");
            assert_eq!(insns.last().map(|i| i.code), Some(0x95), "ends with exit");
        }
    }
}
