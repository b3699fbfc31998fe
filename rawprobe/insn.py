"""eBPF instructions: opcode constants, the 8-byte ``struct bpf_insn``, a tiny disassembler.

An instruction is ``u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm`` in the
target's byte order (rawprobe handles little-endian objects only).  ``code`` is
class | size | mode for loads and stores, class | op | source for ALU and jumps
(include/uapi/linux/bpf_common.h, bpf.h; Documentation/bpf/standardization).

``BPF_LD | BPF_DW | BPF_IMM`` (``ld_imm64``) is the one 16-byte instruction: the
second slot has code 0 and carries the upper 32 bits of the constant in its imm.
Loaders rewrite it in place to refer to maps (src_reg = BPF_PSEUDO_MAP_FD / _VALUE),
kernel objects (BPF_PSEUDO_BTF_ID) or subprograms (BPF_PSEUDO_FUNC).
"""
from __future__ import annotations

import struct

from ._records import RecordTuple
from .errors import ObjectFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Iterator

INSN_SIZE = 8
_INSN = struct.Struct("<BBhi")
_IMM = struct.Struct("<i")

# instruction classes: BPF_CLASS(code) = code & 0x07
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)

# load/store size: code & 0x18
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
SIZE_MASK = 0x18
SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}      # size code -> bytes
SIZE_CODE = {n: code for code, n in SIZE_BYTES.items()}     # bytes -> size code
# load/store mode: code & 0xe0
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_MEMSX, BPF_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

# ALU operations: code & 0xf0
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV = 0x00, 0x10, 0x20, 0x30
BPF_OR, BPF_AND, BPF_LSH, BPF_RSH = 0x40, 0x50, 0x60, 0x70
BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV = 0x80, 0x90, 0xA0, 0xB0
BPF_ARSH, BPF_END = 0xC0, 0xD0

# jump operations: code & 0xf0
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE = 0x00, 0x10, 0x20, 0x30
BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE = 0x40, 0x50, 0x60, 0x70
BPF_CALL, BPF_EXIT = 0x80, 0x90
BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE = 0xA0, 0xB0, 0xC0, 0xD0

# operand source: code & 0x08 (BPF_TO_LE/BPF_TO_BE for BPF_END share the bit)
BPF_K, BPF_X = 0x00, 0x08

# atomic operations (imm of a BPF_STX | BPF_ATOMIC instruction)
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH

# src_reg of ld_imm64
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
# src_reg of BPF_JMP | BPF_CALL
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

LD_IMM64 = BPF_LD | BPF_DW | BPF_IMM      # 0x18
CALL = BPF_JMP | BPF_CALL                  # 0x85
EXIT = BPF_JMP | BPF_EXIT                  # 0x95


class Insn(RecordTuple):
    """One decoded ``struct bpf_insn``: ``(code, dst_reg, src_reg, off, imm)``
    (a named tuple; :mod:`rawprobe._records` says why not typing.NamedTuple)."""
    __slots__ = ()
    _fields = ("code", "dst_reg", "src_reg", "off", "imm")
    if TYPE_CHECKING:  # pragma: no cover
        code: int
        dst_reg: int
        src_reg: int
        off: int
        imm: int

    def encode(self) -> bytes:
        return _INSN.pack(self.code, (self.src_reg << 4) | (self.dst_reg & 0xF),
                          self.off, self.imm)

    @property
    def cls(self) -> int:
        return self.code & 0x07

    def is_ld_imm64(self) -> bool:
        return self.code == LD_IMM64

    def is_call(self) -> bool:
        return self.code == CALL

    def is_subprog_call(self) -> bool:
        """A bpf-to-bpf call (``call pc+N``), not a helper or kfunc call."""
        return self.code == CALL and self.src_reg == BPF_PSEUDO_CALL

    def is_pseudo_func(self) -> bool:
        """``ld_imm64 rX, <subprogram>``: a callback pointer (bpf_loop etc.)."""
        return self.code == LD_IMM64 and self.src_reg == BPF_PSEUDO_FUNC


def decode(data: bytes | bytearray | memoryview, index: int = 0) -> Insn:
    """Decode the instruction at ``index`` (in instructions, not bytes)."""
    pos = index * INSN_SIZE
    if index < 0 or pos + INSN_SIZE > len(data):
        raise ObjectFormatError(f"instruction {index} is past the end of "
                                f"{len(data) // INSN_SIZE} instructions")
    code, regs, off, imm = _INSN.unpack_from(data, pos)
    return Insn(code, regs & 0xF, regs >> 4, off, imm)


def iter_insns(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, Insn]]:
    """Yield ``(index, Insn)`` for every 8-byte slot (both halves of ld_imm64)."""
    if len(data) % INSN_SIZE:
        raise ObjectFormatError(f"{len(data)} bytes of code is not a whole number "
                                f"of {INSN_SIZE}-byte instructions")
    for i, (code, regs, off, imm) in enumerate(_INSN.iter_unpack(data)):
        yield i, Insn(code, regs & 0xF, regs >> 4, off, imm)


def encode(code: int, dst_reg: int = 0, src_reg: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return Insn(code, dst_reg, src_reg, off, imm).encode()


def ld_imm64(dst_reg: int, value: int, src_reg: int = 0) -> bytes:
    """The two slots of ``dst_reg = value ll`` (value taken modulo 2**64)."""
    value &= (1 << 64) - 1
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return (encode(LD_IMM64, dst_reg, src_reg, 0, _s32(lo))
            + encode(0, 0, 0, 0, _s32(hi)))


def ld_imm64_value(data: bytes | bytearray | memoryview, index: int) -> int:
    """The unsigned 64-bit constant of the ld_imm64 at ``index``."""
    lo = decode(data, index).imm & 0xFFFFFFFF
    hi = decode(data, index + 1).imm & 0xFFFFFFFF
    return (hi << 32) | lo


def write(buf: bytearray, index: int, ins: Insn) -> None:
    """Overwrite instruction ``index`` in place."""
    _INSN.pack_into(buf, index * INSN_SIZE, ins.code, (ins.src_reg << 4) | (ins.dst_reg & 0xF),
                    ins.off, ins.imm)


def set_imm(buf: bytearray, index: int, imm: int) -> None:
    """Overwrite the imm field of instruction ``index`` in place."""
    _IMM.pack_into(buf, index * INSN_SIZE + 4, _s32(imm))


def set_src_reg(buf: bytearray, index: int, src_reg: int) -> None:
    pos = index * INSN_SIZE + 1
    buf[pos] = (buf[pos] & 0x0F) | ((src_reg & 0xF) << 4)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# --- a tiny disassembler, for error messages -----------------------------------

_ALU_SYM = {BPF_ADD: "+=", BPF_SUB: "-=", BPF_MUL: "*=", BPF_DIV: "/=", BPF_OR: "|=",
            BPF_AND: "&=", BPF_LSH: "<<=", BPF_RSH: ">>=", BPF_MOD: "%=", BPF_XOR: "^=",
            BPF_MOV: "=", BPF_ARSH: "s>>="}
_JMP_SYM = {BPF_JEQ: "==", BPF_JGT: ">", BPF_JGE: ">=", BPF_JSET: "&", BPF_JNE: "!=",
            BPF_JSGT: "s>", BPF_JSGE: "s>=", BPF_JLT: "<", BPF_JLE: "<=",
            BPF_JSLT: "s<", BPF_JSLE: "s<="}
_SIZE = {BPF_W: "u32", BPF_H: "u16", BPF_B: "u8", BPF_DW: "u64"}
_PSEUDO_LD = {BPF_PSEUDO_MAP_FD: "map_fd", BPF_PSEUDO_MAP_VALUE: "map_value",
              BPF_PSEUDO_BTF_ID: "btf_id", BPF_PSEUDO_FUNC: "func",
              BPF_PSEUDO_MAP_IDX: "map_idx", BPF_PSEUDO_MAP_IDX_VALUE: "map_idx_value"}


def _mem(reg: int, off: int) -> str:
    return f"(r{reg} {'+' if off >= 0 else '-'}{abs(off)})"


def disasm(data: bytes | bytearray | memoryview, index: int) -> str:
    """One line in the verifier log's style, e.g. ``"5: (85) call pc+3"``."""
    try:
        ins = decode(data, index)
    except ObjectFormatError:
        return f"{index}: <out of range>"
    code, dst, src, off, imm = ins
    cls, op = code & 0x07, code & 0xF0
    if cls in (BPF_ALU, BPF_ALU64):
        w = "r" if cls == BPF_ALU64 else "w"
        if op == BPF_NEG:
            text = f"{w}{dst} = -{w}{dst}"
        elif op == BPF_END:
            text = f"{w}{dst} = {'be' if code & BPF_X else 'le'}{imm} {w}{dst}"
        elif op in _ALU_SYM:
            rhs = f"{w}{src}" if code & BPF_X else str(imm)
            text = f"{w}{dst} {_ALU_SYM[op]} {rhs}"
        else:
            text = f"<bad alu op {op:#x}>"
    elif cls in (BPF_JMP, BPF_JMP32):
        if code == CALL:
            if src == BPF_PSEUDO_CALL:
                text = f"call pc{imm:+d}"
            elif src == BPF_PSEUDO_KFUNC_CALL:
                text = f"call kfunc#{imm}"
            else:
                text = f"call #{imm}"
        elif code == EXIT:
            text = "exit"
        elif op == BPF_JA:
            text = f"goto pc{(imm if cls == BPF_JMP32 else off):+d}"
        elif op in _JMP_SYM:
            w = "r" if cls == BPF_JMP else "w"
            rhs = f"{w}{src}" if code & BPF_X else hex(imm)
            text = f"if {w}{dst} {_JMP_SYM[op]} {rhs} goto pc{off:+d}"
        else:
            text = f"<bad jump op {op:#x}>"
    elif code == LD_IMM64:
        try:
            value = hex(ld_imm64_value(data, index))
        except ObjectFormatError:
            value = "<truncated>"
        kind = _PSEUDO_LD.get(src)
        text = f"r{dst} = {kind}[{value}] ll" if kind else f"r{dst} = {value} ll"
    elif cls == BPF_LDX:
        text = f"r{dst} = *({_SIZE[code & 0x18]} *){_mem(src, off)}"
    elif cls == BPF_ST:
        text = f"*({_SIZE[code & 0x18]} *){_mem(dst, off)} = {imm}"
    elif cls == BPF_STX and code & 0xE0 == BPF_ATOMIC:
        text = f"atomic{'_fetch' if imm & BPF_FETCH else ''} {imm:#x} " \
               f"*({_SIZE[code & 0x18]} *){_mem(dst, off)}, r{src}"
    elif cls == BPF_STX:
        text = f"*({_SIZE[code & 0x18]} *){_mem(dst, off)} = r{src}"
    elif code == 0:
        text = f"<imm {imm:#x}: second half of ld_imm64?>"
    else:
        text = f"<code {code:#04x}>"
    return f"{index}: ({code:02x}) {text}"
