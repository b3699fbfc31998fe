"""rawprobe.insn: struct bpf_insn encoding, ld_imm64, in-place patching, disassembly."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawprobe import insn as I
from rawprobe.errors import ObjectFormatError, RawprobeError

regs = st.integers(0, 15)
s16 = st.integers(-(1 << 15), (1 << 15) - 1)
s32 = st.integers(-(1 << 31), (1 << 31) - 1)


def test_opcode_values_match_uapi():
    # uapi/linux/bpf.h and bpf_common.h
    assert (I.BPF_LD, I.BPF_LDX, I.BPF_ST, I.BPF_STX) == (0, 1, 2, 3)
    assert (I.BPF_ALU, I.BPF_JMP, I.BPF_JMP32, I.BPF_ALU64) == (4, 5, 6, 7)
    assert (I.BPF_W, I.BPF_H, I.BPF_B, I.BPF_DW) == (0x00, 0x08, 0x10, 0x18)
    assert (I.BPF_IMM, I.BPF_MEM, I.BPF_ATOMIC) == (0x00, 0x60, 0xC0)
    assert (I.BPF_CALL, I.BPF_EXIT, I.BPF_JSLE) == (0x80, 0x90, 0xD0)
    assert (I.BPF_PSEUDO_MAP_FD, I.BPF_PSEUDO_MAP_VALUE, I.BPF_PSEUDO_BTF_ID,
            I.BPF_PSEUDO_FUNC) == (1, 2, 3, 4)
    assert (I.BPF_PSEUDO_CALL, I.BPF_PSEUDO_KFUNC_CALL) == (1, 2)
    assert I.LD_IMM64 == 0x18 and I.CALL == 0x85 and I.EXIT == 0x95


def test_encode_layout():
    # r1 = *(u32 *)(r2 - 4): code 0x61, dst 1 in the low nibble, src 2 in the high one
    raw = I.encode(I.BPF_LDX | I.BPF_W | I.BPF_MEM, dst_reg=1, src_reg=2, off=-4)
    assert raw == bytes([0x61, 0x21, 0xFC, 0xFF, 0, 0, 0, 0])
    assert I.decode(raw) == I.Insn(0x61, 1, 2, -4, 0)


@settings(max_examples=100)
@given(st.integers(0, 255), regs, regs, s16, s32)
def test_roundtrip(code, dst, src, off, imm):
    ins = I.Insn(code, dst, src, off, imm)
    raw = ins.encode()
    assert len(raw) == I.INSN_SIZE
    assert I.decode(raw) == ins
    assert list(I.iter_insns(raw * 3)) == [(0, ins), (1, ins), (2, ins)]


@settings(max_examples=100)
@given(regs, st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, 2, 4]))
def test_ld_imm64(dst, value, src):
    raw = I.ld_imm64(dst, value, src)
    assert len(raw) == 16
    first = I.decode(raw, 0)
    assert first.is_ld_imm64() and first.dst_reg == dst and first.src_reg == src
    assert I.decode(raw, 1).code == 0
    assert I.ld_imm64_value(raw, 0) == value


def test_ld_imm64_negative_wraps():
    assert I.ld_imm64_value(I.ld_imm64(0, -1), 0) == (1 << 64) - 1


def test_patching_in_place():
    buf = bytearray(I.ld_imm64(1, 0) + I.encode(I.CALL, src_reg=I.BPF_PSEUDO_CALL, imm=-1))
    I.set_src_reg(buf, 0, I.BPF_PSEUDO_MAP_FD)
    I.set_imm(buf, 0, 7)
    I.set_imm(buf, 1, 0xFFFFFFFF)        # unsigned input is stored as s32
    I.set_imm(buf, 2, 5)
    a, b, c = (I.decode(buf, i) for i in range(3))
    assert (a.src_reg, a.dst_reg, a.imm) == (I.BPF_PSEUDO_MAP_FD, 1, 7)
    assert b.imm == -1
    assert c.is_subprog_call() and c.imm == 5


def test_predicates():
    assert I.Insn(I.CALL, 0, I.BPF_PSEUDO_CALL, 0, 3).is_subprog_call()
    assert not I.Insn(I.CALL, 0, 0, 0, 14).is_subprog_call()          # helper call
    assert I.Insn(I.LD_IMM64, 2, I.BPF_PSEUDO_FUNC, 0, 0).is_pseudo_func()
    assert I.Insn(I.BPF_ALU64 | I.BPF_ADD | I.BPF_K, 0, 0, 0, 1).cls == I.BPF_ALU64


@pytest.mark.parametrize("raw, text", [
    (I.encode(I.BPF_ALU64 | I.BPF_MOV | I.BPF_K, 0, imm=0), "(b7) r0 = 0"),
    (I.encode(I.BPF_ALU64 | I.BPF_ADD | I.BPF_X, 1, 2), "(0f) r1 += r2"),
    (I.encode(I.BPF_ALU | I.BPF_RSH | I.BPF_K, 3, imm=4), "(74) w3 >>= 4"),
    (I.encode(I.BPF_ALU64 | I.BPF_NEG, 5), "(87) r5 = -r5"),
    (I.encode(I.BPF_LDX | I.BPF_DW | I.BPF_MEM, 1, 10, -8), "(79) r1 = *(u64 *)(r10 -8)"),
    (I.encode(I.BPF_STX | I.BPF_W | I.BPF_MEM, 10, 1, -4), "(63) *(u32 *)(r10 -4) = r1"),
    (I.encode(I.BPF_ST | I.BPF_B | I.BPF_MEM, 10, 0, -1, 7), "(72) *(u8 *)(r10 -1) = 7"),
    (I.encode(I.BPF_JMP | I.BPF_JEQ | I.BPF_K, 0, 0, 3, 0), "(15) if r0 == 0x0 goto pc+3"),
    (I.encode(I.BPF_JMP32 | I.BPF_JSGT | I.BPF_X, 1, 2, -2), "(6e) if w1 s> w2 goto pc-2"),
    (I.encode(I.BPF_JMP | I.BPF_JA, off=5), "(05) goto pc+5"),
    (I.encode(I.CALL, imm=14), "(85) call #14"),
    (I.encode(I.CALL, src_reg=I.BPF_PSEUDO_CALL, imm=9), "(85) call pc+9"),
    (I.encode(I.EXIT), "(95) exit"),
    (I.ld_imm64(1, 0x24, I.BPF_PSEUDO_MAP_VALUE), "(18) r1 = map_value[0x24] ll"),
    (I.ld_imm64(2, 0x1122334455667788), "(18) r2 = 0x1122334455667788 ll"),
])
def test_disasm(raw, text):
    assert I.disasm(raw, 0) == "0: " + text


@settings(max_examples=100)
@given(st.binary(min_size=0, max_size=64), st.integers(-2, 10))
def test_disasm_never_raises(data, index):
    assert isinstance(I.disasm(data, index), str)


def test_decode_out_of_range():
    with pytest.raises(ObjectFormatError):
        I.decode(b"\0" * 8, 1)
    with pytest.raises(ObjectFormatError):
        I.decode(b"\0" * 8, -1)
    with pytest.raises(RawprobeError, match="whole number"):
        list(I.iter_insns(b"\0" * 12))
