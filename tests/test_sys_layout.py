"""Every struct/union declared in rawprobe/_sys/_cdefs.py against the running
kernel's BTF, read by rawprobe's own BTF code: same size, and every declared
field (nested and anonymous members included, bitfields to the bit) at the
kernel's offset with the kernel's size."""
from __future__ import annotations

import os

import pytest

from rawprobe._sys._cdefs import LAYOUT_KERNEL
from rawprobe._sys._native import ffi

try:
    from rawprobe.btf.kernel import KernelBTF
    from rawprobe.btf.types import Int, Kind, Struct, Union
except ImportError as exc:  # pragma: no cover - until the BTF layer lands
    pytest.skip(f"the BTF layer (rawprobe.btf.kernel) is missing: {exc}",
                allow_module_level=True)

# Declared for the C library, not the kernel: no BTF to compare with.
LIBC_TYPES = {"timespec", "itimerspec"}


def declared_types() -> list[tuple[str, str]]:
    _typedefs, structs, unions = ffi.list_types()
    out = [("struct", n) for n in structs] + [("union", n) for n in unions]
    return sorted((k, n) for k, n in out if n not in LIBC_TYPES and not n.startswith("$"))


def kernel_release() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


# A field: (bit offset from the outermost type, bitfield width or 0,
#           byte size or None for bitfields)
Layout = dict[str, tuple[int, int, "int | None"]]


def cffi_layout(ctype, prefix: str = "", base: int = 0, out: Layout | None = None) -> Layout:
    """cffi lists anonymous members' fields inline already (offsets relative
    to the type that lists them); named struct/union members are recursed."""
    out = {} if out is None else out
    for name, f in ctype.fields:
        path = prefix + name
        byte_off = base + f.offset
        if f.bitsize >= 0:
            out[path] = (byte_off * 8 + f.bitshift, f.bitsize, None)
            continue
        out[path] = (byte_off * 8, 0, ffi.sizeof(f.type))
        if f.type.kind in ("struct", "union"):
            cffi_layout(f.type, path + ".", byte_off, out)
    return out


def btf_layout(k, type_id: int, prefix: str = "", base: int = 0,
               out: Layout | None = None) -> Layout:
    out = {} if out is None else out
    t = k.type_by_id(k.resolve(type_id))
    for m in t.members:
        bit = base + m.offset
        mid = k.resolve(m.type)
        mt = k.type_by_id(mid)
        if not m.name:                      # anonymous struct/union: inline
            btf_layout(k, mid, prefix, bit, out)
            continue
        path = prefix + m.name
        width = m.bitfield_size
        if not width and isinstance(mt, Int) and mt.bits != mt.size * 8:
            width, bit = mt.bits, bit + mt.offset   # bitfield without kind_flag
        if width:
            out[path] = (bit, width, None)
            continue
        out[path] = (bit, 0, k.size_of(m.type))
        if isinstance(mt, (Struct, Union)):
            btf_layout(k, mid, path + ".", bit, out)
    return out


@pytest.fixture(scope="module")
def kernel_btf():
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("this kernel has no BTF (/sys/kernel/btf/vmlinux)")
    return KernelBTF.load()


def test_declares_the_kernel_structs():
    names = {n for _, n in declared_types()}
    assert {"bpf_attr", "perf_event_attr", "bpf_prog_info", "bpf_map_info",
            "bpf_link_info", "perf_event_mmap_page", "perf_event_header"} <= names


@pytest.mark.parametrize("kind,name", declared_types())
def test_layout_matches_kernel_btf(kernel_btf, kind, name):
    k = kernel_btf
    type_id, kt = k.type_by_name(name, Kind.UNION if kind == "union" else Kind.STRUCT)
    ctype = ffi.typeof(f"{kind} {name}")
    ours = cffi_layout(ctype)
    theirs = btf_layout(k, type_id)

    older = kernel_release() < LAYOUT_KERNEL
    wrong = {p: (ours[p], theirs[p]) for p in ours
             if p in theirs and ours[p] != theirs[p] and not (older and grew(p, ours, theirs))}
    assert not wrong, f"{kind} {name}: (ours, kernel's) (bit offset, bit width, size) differ: {wrong}"

    missing = sorted(p for p in ours if p not in theirs)
    if not older:
        assert not missing, f"{kind} {name}: fields the kernel does not have: {missing}"
        if all(p in ours for p in theirs):
            assert ffi.sizeof(ctype) == kt.size
        else:   # a newer kernel grew the type; we declare a prefix of it
            assert ffi.sizeof(ctype) <= kt.size
    else:       # an older kernel: our newer fields lie past what it knows
        assert ffi.sizeof(ctype) >= kt.size


def grew(path: str, ours: Layout, theirs: Layout) -> bool:
    """What an older kernel may legitimately have differently: a nested
    struct/union that later kernels extended at its end, or a ``__reserved``
    placeholder that later kernels carved fields out of."""
    (o_bit, o_width, o_size), (t_bit, t_width, t_size) = ours[path], theirs[path]
    if path.rsplit(".", 1)[-1].startswith("__reserved"):
        return True
    nested = any(p.startswith(path + ".") for p in ours)
    return (nested and o_bit == t_bit and o_width == t_width == 0
            and o_size is not None and t_size is not None and o_size >= t_size)
