//! A tiny eBPF instruction encoder with forward and backward labels: enough to write the
//! recorder's three programs in Rust without a clang/LLVM toolchain.
//!
//! Owns the instruction encoding only (include/uapi/linux/bpf.h, bpf_common.h,
//! Documentation/bpf/standardization/instruction-set.rst). Pure: must not make syscalls.

use std::collections::HashMap;

/// One 8-byte instruction: opcode, dst (low nibble) and src (high nibble), offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The little-endian bytes the kernel reads (`struct bpf_insn`).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// Registers: R0 return value, R1-R5 arguments (clobbered by calls), R6-R9 callee-saved, R10
/// the read-only frame pointer.
pub type Reg = u8;
pub const R0: Reg = 0;
pub const R1: Reg = 1;
pub const R2: Reg = 2;
pub const R3: Reg = 3;
pub const R4: Reg = 4;
pub const R6: Reg = 6;
pub const R7: Reg = 7;
pub const R8: Reg = 8;
pub const R9: Reg = 9;
pub const FP: Reg = 10;

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
// Sizes and modes.
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const ATOMIC: u8 = 0xc0;
/// `BPF_K` (immediate operand) and `BPF_X` (register operand).
const K: u8 = 0x00;
const X: u8 = 0x08;
/// `BPF_PSEUDO_MAP_FD`: the immediate of a 64-bit load is a map fd.
const PSEUDO_MAP_FD: u8 = 1;

/// Memory access sizes.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    W = 0x00,
    H = 0x08,
    B = 0x10,
    DW = 0x18,
}

/// ALU operations.
#[derive(Debug, Clone, Copy)]
pub enum Alu {
    Add = 0x00,
    And = 0x50,
    Mov = 0xb0,
}

/// Jump conditions (unsigned unless named signed).
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Ne = 0x50,
    Sgt = 0x60,
    Lt = 0xa0,
}

/// Kernel helper functions (`enum bpf_func_id`).
#[derive(Debug, Clone, Copy)]
pub enum Helper {
    MapLookupElem = 1,
    MapUpdateElem = 2,
    MapDeleteElem = 3,
    KtimeGetNs = 5,
    GetCurrentPidTgid = 14,
    GetStack = 67,
    ProbeReadKernel = 113,
    RingbufReserve = 131,
    RingbufSubmit = 132,
    RingbufDiscard = 133,
}

/// A jump target, resolved when the program is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label(u32);

/// A program being assembled.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<Label, usize>,
    fixups: Vec<(usize, Label)>,
    next_label: u32,
}

/// An assembly mistake: a jump to a label never placed or too far away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    #[error("jump at instruction {0} to a label that was never placed")]
    Unplaced(usize),
    #[error("jump at instruction {0} is out of the 16-bit offset range")]
    TooFar(usize),
}

fn regs(dst: Reg, src: Reg) -> u8 {
    (src << 4) | (dst & 0x0f)
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
        self
    }

    /// A fresh label, placed later with [`Asm::place`].
    pub fn label(&mut self) -> Label {
        self.next_label += 1;
        Label(self.next_label)
    }

    /// Places `l` at the next instruction.
    pub fn place(&mut self, l: Label) -> &mut Self {
        self.labels.insert(l, self.insns.len());
        self
    }

    /// `dst = imm` (64-bit, sign-extended) or `dst op= imm`.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | op as u8 | K, dst, 0, 0, imm)
    }

    /// `dst op= src` (64-bit).
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | op as u8 | X, dst, src, 0, 0)
    }

    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu_imm(Alu::Mov, dst, imm)
    }

    pub fn mov_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_reg(Alu::Mov, dst, src)
    }

    /// `dst = imm64`: the two-slot `BPF_LD | BPF_DW | BPF_IMM`.
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.push(LD | Size::DW as u8 | IMM, dst, 0, 0, imm as u32 as i32);
        self.push(0, 0, 0, 0, (imm >> 32) as u32 as i32)
    }

    /// `dst = &map` for the map with file descriptor `fd`.
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.push(LD | Size::DW as u8 | IMM, dst, PSEUDO_MAP_FD, 0, fd);
        self.push(0, 0, 0, 0, 0)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | size as u8 | MEM, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | size as u8 | MEM, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(ST | size as u8 | MEM, dst, 0, off, imm)
    }

    /// `lock *(u64 *)(dst + off) += src` (`BPF_ATOMIC` with `BPF_ADD`).
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | Size::DW as u8 | ATOMIC, dst, src, off, 0)
    }

    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(code, dst, src, 0, imm)
    }

    /// `if dst cond imm goto to` comparing all 64 bits (imm sign-extended).
    pub fn jmp_imm(&mut self, cond: Cond, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(JMP | cond as u8 | K, dst, 0, imm, to)
    }

    /// `if (u32)dst cond imm goto to`.
    pub fn jmp32_imm(&mut self, cond: Cond, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(JMP32 | cond as u8 | K, dst, 0, imm, to)
    }

    /// `if dst cond src goto to` (64-bit).
    pub fn jmp_reg(&mut self, cond: Cond, dst: Reg, src: Reg, to: Label) -> &mut Self {
        self.jump(JMP | cond as u8 | X, dst, src, 0, to)
    }

    /// `goto to`.
    pub fn ja(&mut self, to: Label) -> &mut Self {
        self.jump(JMP, 0, 0, 0, to)
    }

    pub fn call(&mut self, h: Helper) -> &mut Self {
        self.push(JMP | 0x80, 0, 0, 0, h as i32)
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(JMP | 0x90, 0, 0, 0, 0)
    }

    /// Resolves the jumps: the offset counts instructions from the one after the jump.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, l) in &self.fixups {
            let to = *self.labels.get(&l).ok_or(AsmError::Unplaced(at))?;
            let off = to as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).map_err(|_| AsmError::TooFar(at))?;
        }
        Ok(self.insns)
    }
}

/// The program as the kernel takes it: the instructions back to back.
pub fn bytes(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodings checked against the byte values the kernel's own macros produce
    /// (BPF_MOV64_IMM, BPF_LD_MAP_FD, BPF_LDX_MEM, BPF_JMP32_IMM, BPF_ATOMIC_OP, ...).
    #[test]
    fn encodings() {
        let mut a = Asm::new();
        let out = a.label();
        a.mov_imm(R0, 0) // b7 00 0000 00000000
            .ld_map_fd(R1, 5) // 18 11 0000 05000000 / 00 ...
            .load(Size::DW, R7, R6, 24) // 79 67 1800 00000000
            .jmp32_imm(Cond::Ne, R7, 21, out) // 56 07 off 15000000
            .store(Size::W, FP, -4, R0) // 63 0a fcff 00000000
            .atomic_add64(R0, 0, R1) // db 10 0000 00000000
            .call(Helper::GetStack) // 85 00 0000 43000000
            .place(out)
            .exit(); // 95 00 0000 00000000
        let insns = a.finish().unwrap_or_else(|e| panic!("{e}"));
        let hex: Vec<String> = insns
            .iter()
            .map(|i| {
                i.to_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            })
            .collect();
        assert_eq!(
            hex,
            [
                "b700000000000000",
                "1811000005000000",
                "0000000000000000",
                "7967180000000000",
                "5607030015000000",
                "630afcff00000000",
                "db10000000000000",
                "8500000043000000",
                "9500000000000000",
            ]
        );
    }

    #[test]
    fn imm64_and_backward_jumps() {
        let mut a = Asm::new();
        let top = a.label();
        a.place(top)
            .ld_imm64(R2, 0xffff_ffff_8100_0010)
            .jmp_reg(Cond::Ge, R1, R2, top);
        let insns = a.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(insns[0].imm as u32, 0x8100_0010);
        assert_eq!(insns[1].imm as u32, 0xffff_ffff);
        assert_eq!(
            (insns[2].code, insns[2].regs, insns[2].off),
            (0x3d, 0x21, -3)
        );
        assert_eq!(bytes(&insns).len(), 24);
    }

    #[test]
    fn unplaced_label_is_an_error() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(a.finish(), Err(AsmError::Unplaced(0)));
    }
}
