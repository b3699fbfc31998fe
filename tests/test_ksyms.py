"""``__ksym`` externs and kfuncs: parsed, resolved against the running kernel,
run -- and loaded side by side by libbpf (`bpftool prog loadall`), whose
programs are run too and must compute the same."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import rawprobe
from rawprobe import insn as I
from rawprobe import kallsyms
from rawprobe._sys import bpf as _bpf
from rawprobe.btf import types as T
from rawprobe.errors import NotFoundError, VerifierError

from libbpf_oracle import btf_text, libbpf_version, loadall, map_table, prog_info

BPF = Path(__file__).parent / "bpf"
KSYMS = BPF / "ksyms.bpf.o"
RESULTS = ("sum", "stext", "no_such_symbol", "no_such_variable", "no_such_kfunc_exists",
           "no_such_kfunc_called", "flavour_exists", "flavour_called",
           "wrong_proto_exists", "task_tgid", "current_tgid")
_RESULTS = struct.Struct(f"<{len(RESULTS)}Q")

CT_KFUNC = BPF / "ct_kfunc.bpf.o"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")


def _results(raw: bytes) -> dict[str, int]:
    return dict(zip(RESULTS, _RESULTS.unpack(raw[:_RESULTS.size])))


def _run(prog_fd, n: int = 0) -> None:
    assert _bpf.prog_test_run(prog_fd, ctx_in=struct.pack("<Q", n), repeat=0) == 0


def _kallsyms_address(name: str) -> int:
    with open("/proc/kallsyms") as f:
        addrs = {int(line.split()[0], 16) for line in f if line.split()[2:3] == [name]}
    assert len(addrs) == 1, addrs
    return addrs.pop()


# -- parsing (no kernel) -------------------------------------------------------------

def test_ksyms_are_parsed_by_kind():
    spec = rawprobe.ObjectSpec.from_file(KSYMS)
    kinds = {n: (k.kind, k.weak) for n, k in spec.ksyms.items()}
    assert kinds == {
        "bpf_iter_num_new": ("kfunc", False), "bpf_iter_num_next": ("kfunc", False),
        "bpf_iter_num_destroy": ("kfunc", False), "bpf_task_from_pid": ("kfunc", False),
        "bpf_task_acquire": ("kfunc", False), "bpf_task_release": ("kfunc", False),
        "bpf_rawprobe_no_such_kfunc": ("kfunc", True),
        "rawprobe_no_such_variable": ("typed", True),
        "rawprobe_no_such_symbol": ("typeless", True), "_stext": ("typeless", False),
        "bpf_rcu_read_lock___compat": ("kfunc", True), "bpf_rcu_read_unlock": ("kfunc", True),
        "bpf_iter_num_new___wrong_proto": ("kfunc", True)}
    # libbpf's extern order (no __kconfig ones here): by name
    assert sorted(spec.ksyms, key=lambda n: spec.ksyms[n].index) == sorted(spec.ksyms)
    assert spec.ksyms["bpf_rcu_read_lock___compat"].essential_name == "bpf_rcu_read_lock"


def test_kfunc_calls_are_marked_and_listed():
    spec = rawprobe.ObjectSpec.from_file(KSYMS)
    prog = spec.programs["sum_iter"]
    calls = {r.name for r in prog.ksym_relocs if r.call}
    loads = {r.name for r in prog.ksym_relocs if not r.call}
    assert calls == {"bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy",
                     "bpf_rawprobe_no_such_kfunc"}
    assert loads == {"_stext", "rawprobe_no_such_symbol", "rawprobe_no_such_variable",
                     "bpf_rawprobe_no_such_kfunc"}
    for r in prog.ksym_relocs:
        ins = I.decode(prog.insns, r.insn)
        if r.call:
            assert (ins.code, ins.src_reg, ins.imm) == (I.CALL, I.BPF_PSEUDO_KFUNC_CALL, 0)
        else:
            assert ins.is_ld_imm64() and ins.src_reg == 0


def test_ksyms_btf_is_rewritten_as_libbpf_does():
    """Each .ksyms entry: 4 bytes at 4 * its place; variables allocated ints,
    functions global and represented by one added VAR dummy_ksym, whose name
    their prototypes' unnamed parameters take (test_ksyms_match_libbpf
    compares the whole BTF with libbpf's)."""
    spec = rawprobe.ObjectSpec.from_file(KSYMS)
    btf = spec.btf
    (ds_id,) = [i for i in btf.types_by_name(".ksyms")]
    ds = btf.types[ds_id]
    assert [(v.offset, v.size) for v in ds.vars] == [(4 * i, 4) for i in range(len(ds.vars))]
    assert ds.size == 4 * len(ds.vars)
    (dummy_id,) = btf.types_by_name("dummy_ksym")
    dummy = btf.types[dummy_id]
    assert dummy_id == len(btf.types) - 1
    assert isinstance(dummy, T.Var) and dummy.linkage == T.BTF_VAR_GLOBAL_ALLOCATED
    int32 = btf.types[dummy.type]
    assert isinstance(int32, T.Int) and int32.bits == 32
    for v in ds.vars:
        assert v.type == dummy_id or (isinstance(btf.types[v.type], T.Var) and
                                      btf.types[v.type].type == dummy.type)
    funcs = [btf.types[btf.types_by_name(n)[0]] for n, k in spec.ksyms.items()
             if k.kind == "kfunc"]
    assert all(f.linkage == T.BTF_FUNC_GLOBAL for f in funcs)
    # clang names no parameter of an extern function
    assert {p.name for f in funcs for p in btf.types[f.type].params} == {"dummy_ksym"}
    assert btf.load_blob() is None      # re-encoded, not patched in place


def test_kallsyms_entries():
    text = (b"ffffffff81000000 T _stext\n"
            b"ffffffff81000010 t dup\n"
            b"ffffffff81000020 t dup\n"
            b"ffffffffa0000000 t in_module\t[mod]\n"
            b"ffffffff82000000 d counter.llvm.123\n"
            b"ffffffff82000008 t helper.llvm.456\n"
            b"ffffffff83000000 D x_stext\n")
    assert kallsyms.entries(text, "_stext") == [(0xffffffff81000000, "T")]
    assert kallsyms.entries(text, "dup") == [(0xffffffff81000010, "t"),
                                             (0xffffffff81000020, "t")]
    assert kallsyms.entries(text, "in_module") == [(0xffffffffa0000000, "t")]
    assert kallsyms.entries(text, "counter") == []
    assert kallsyms.entries(text, "counter", llvm_data=True) == [(0xffffffff82000000, "d")]
    assert kallsyms.entries(text, "helper", llvm_data=True) == []     # text: not data
    assert kallsyms.functions(text, ["_stext", "x_stext", "in_module", "nope"]) == \
        {"_stext", "in_module"}


# -- loading and running -------------------------------------------------------------

@root_only
def test_kfuncs_and_typeless_ksyms_run():
    """Iterator kfuncs compute; a typeless ksym is its kallsyms address; absent
    weak externs read 0 and the call of an absent weak kfunc, guarded by
    bpf_ksym_exists(), is never made."""
    with rawprobe.load(KSYMS, programs="sum_iter") as coll:
        for n in (0, 5, 100):
            _run(coll.programs["sum_iter"].fd, n)
            r = _results(coll.variables["results"].get())
            assert r["sum"] == n * (n - 1) // 2
        assert r["stext"] == _kallsyms_address("_stext") != 0
        assert (r["no_such_symbol"], r["no_such_variable"], r["no_such_kfunc_exists"],
                r["no_such_kfunc_called"]) == (0, 0, 0, 0)


@root_only
def test_flavoured_kfuncs():
    """bpf_rcu_read_lock___compat is the kernel's bpf_rcu_read_lock; a weak
    flavour whose prototype is not the kernel's counts as absent."""
    with rawprobe.load(KSYMS, programs="flavours") as coll:
        _run(coll.programs["flavours"].fd)
        r = _results(coll.variables["results"].get())
    assert (r["flavour_exists"], r["flavour_called"], r["wrong_proto_exists"]) == (1, 1, 0)


@root_only
def test_tracing_kfuncs_in_tracepoint_and_tp_btf():
    """bpf_task_from_pid / bpf_task_acquire / bpf_task_release, which this
    kernel allows in tracepoint and tp_btf programs, give back our task."""
    spec = rawprobe.ObjectSpec.from_file(KSYMS)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load(programs=["task_by_pid", "current_task"]) as coll:
        coll.programs["task_by_pid"].attach()
        coll.programs["current_task"].attach()
        os.getppid()
        r = _results(coll.variables["results"].get())
    assert (r["task_tgid"], r["current_tgid"]) == (os.getpid(), os.getpid())


@root_only
def test_ksyms_match_libbpf():
    """libbpf's load of the same object: the same maps, the same BTF for each
    program, the same programs (bpf_prog_info), and run, the same results.
    Where bpftool's libbpf is older than the libbpf rawprobe follows, what
    changed since is left out: a call to an absent weak kfunc became an
    invalid helper call in 1.2 (before: a kfunc call of id 0; the program's
    tag differs, nothing else), and ___flavour kfuncs resolve since 1.3."""
    version = libbpf_version()
    spec = rawprobe.ObjectSpec.from_file(KSYMS)
    with spec.load() as coll, loadall(KSYMS) as libbpf:
        assert libbpf.ok, libbpf.output
        assert map_table({n: m.fd for n, m in coll.maps.items()}) == map_table(libbpf.maps)
        assert sorted(coll.programs) == sorted(libbpf.progs)
        for name, prog in coll.programs.items():
            theirs = libbpf.progs[name]
            assert btf_text(prog.fd) == btf_text(theirs), name
            if name == "flavours" and version < (1, 3):
                continue
            mine, their_info = prog_info(prog.fd), prog_info(theirs)
            if name in ("sum_iter", "flavours") and version < (1, 2):
                mine.pop("tag"), their_info.pop("tag")
            assert mine == their_info, name
        _run(coll.programs["sum_iter"].fd, 7)
        _run(libbpf.progs["sum_iter"], 7)
        mine = _results(coll.variables["results"].get())
        size = coll.maps[".bss"].value_size
        theirs = _results(_bpf.map_lookup_elem(libbpf.maps["ksyms_bss"], b"\0" * 4, size))
    assert mine["sum"] == 21
    assert mine == theirs


def _refused_by_both(obj: Path, error: type, match: str, libbpf_names: str) -> None:
    """rawprobe refuses ``obj`` with ``error`` matching ``match``; libbpf
    refuses it too, naming ``libbpf_names``."""
    with pytest.raises(error, match=match):
        rawprobe.load(obj)
    with loadall(obj) as libbpf:
        assert not libbpf.ok and libbpf_names in libbpf.output


@root_only
def test_strong_kfunc_missing():
    _refused_by_both(BPF / "ksyms_missing.bpf.o", NotFoundError,
                     r"extern 'bpf_rawprobe_no_such_kfunc' \(__ksym\): the kernel has no "
                     r"kfunc .* declare it __weak", "bpf_rawprobe_no_such_kfunc")


@root_only
def test_unresolved_ksyms_of_programs_not_loaded_do_not_matter():
    """rawprobe resolves only the externs of the programs it loads (libbpf:
    every extern of the object)."""
    with rawprobe.load(BPF / "ksyms_missing.bpf.o", programs=[]) as coll:
        assert coll.programs == {}


@root_only
def test_strong_typeless_ksym_missing():
    spec = rawprobe.ObjectSpec.from_file(KSYMS)
    ks = spec.ksyms["rawprobe_no_such_symbol"]
    spec.ksyms["rawprobe_no_such_symbol"] = ks._replace(weak=False)
    with pytest.raises(NotFoundError, match=r"'rawprobe_no_such_symbol' \(__ksym\): the "
                                            r"kernel has no symbol .* in /proc/kallsyms"):
        spec.load(programs="sum_iter")


@root_only
def test_strong_kfunc_with_another_prototype():
    _refused_by_both(BPF / "ksyms_bad_proto.bpf.o", NotFoundError,
                     r"kernel's kfunc 'bpf_iter_num_new' \(vmlinux BTF \[\d+\]\) takes or "
                     r"returns other types", "bpf_iter_num_new")


@root_only
def test_unguarded_call_of_absent_weak_kfunc():
    _refused_by_both(BPF / "ksyms_unguarded.bpf.o", VerifierError,
                     r"calls kfunc 'bpf_rawprobe_no_such_kfunc', which this kernel lacks "
                     r".*bpf_ksym_exists", "bpf_rawprobe_no_such_kfunc")


# -- typed ksyms: the kernel must list data symbols (CONFIG_KALLSYMS_ALL) -------------

TYPED = BPF / "ksyms_typed.bpf.o"


def _kallsyms_has(name: str) -> bool:
    with open("/proc/kallsyms", "rb") as f:
        return bool(kallsyms.entries(f.read(), name))


@root_only
def test_typed_ksym_without_kallsyms_all():
    """Where kallsyms lists no data symbols, the kernel cannot place a typed
    ksym: a VerifierError that says why."""
    if _kallsyms_has("runqueues"):
        pytest.skip("this kernel lists data symbols in kallsyms (CONFIG_KALLSYMS_ALL)")
    with pytest.raises(VerifierError, match="CONFIG_KALLSYMS_ALL"):
        rawprobe.load(TYPED)


@pytest.mark.vm
@root_only
def test_typed_ksym_per_cpu():
    """bpf_per_cpu_ptr(&runqueues, cpu)->cpu is cpu, for every possible CPU;
    bpf_this_cpu_ptr() is the CPU the program runs on; libbpf's load (same
    programs, same BTF) computes the same."""
    if not _kallsyms_has("runqueues"):
        pytest.skip("kallsyms lists no data symbols here (CONFIG_KALLSYMS_ALL off); "
                    "`make vmtest` runs it in a VM whose kernel does")
    from rawprobe.maps import possible_cpus
    res = struct.Struct("<qqq")
    with rawprobe.load(TYPED) as coll, loadall(TYPED) as libbpf:
        assert libbpf.ok, libbpf.output
        mine_fd, theirs_fd = coll.programs["get_cpus"].fd, libbpf.progs["get_cpus"]
        assert prog_info(mine_fd) == prog_info(theirs_fd)
        assert btf_text(mine_fd) == btf_text(theirs_fd)
        for cpu in range(possible_cpus()):
            _run(mine_fd, cpu)
            arg, this, on = res.unpack(coll.variables["results"].get())
            assert (arg, this) == (cpu, on)
        _run(theirs_fd, 0)
        theirs = _bpf.map_lookup_elem(libbpf.maps["ksyms_ty_bss"], b"\0" * 4, res.size)
        assert res.unpack(theirs)[0] == 0


@root_only
def test_typed_ksym_of_another_type():
    spec = rawprobe.ObjectSpec.from_file(TYPED)
    ks = spec.ksyms["runqueues"]
    (int_id,) = [i for i, t in enumerate(spec.btf.types)
                 if isinstance(t, T.Int) and t.name == "int"]
    spec.ksyms["runqueues"] = ks._replace(type_id=int_id)
    with pytest.raises(NotFoundError, match=r"'runqueues' \(__ksym\): the kernel's variable "
                                            r"is of another type"):
        spec.load()



@root_only
def test_ambiguous_typeless_ksym():
    """A name kallsyms lists at two addresses (static functions of one name)
    is refused, as libbpf refuses it."""
    seen: dict[str, int] = {}
    dup = None
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tT" and "." not in name and seen.setdefault(name, int(addr, 16)) \
                    != int(addr, 16):
                dup = name
                break
    if dup is None:
        pytest.skip("no name has two addresses in this kernel's kallsyms")
    spec = rawprobe.ObjectSpec.from_file(KSYMS)
    spec.ksyms["rawprobe_no_such_symbol"] = spec.ksyms["rawprobe_no_such_symbol"]._replace(
        name=dup)
    with pytest.raises(NotFoundError, match=rf"extern '{dup}' \(__ksym\): /proc/kallsyms has "
                                            r"several symbols of that name"):
        spec.load(programs="sum_iter")



@pytest.mark.vm("module_btf")
@root_only
def test_module_kfunc_call_through_fd_array():
    """nf_conntrack's bpf_xdp_ct_lookup, a kfunc whose BTF is the module's: the
    call loads (module BTF fd in fd_array) and runs, finding no connection
    (NULL, opts.error -ENOENT); libbpf's load of the same object is the same
    program and does the same."""
    import errno
    from conftest import load_test_module
    load_test_module("nf_conntrack")
    packet = bytes(64)
    with rawprobe.load(CT_KFUNC) as coll, loadall(CT_KFUNC) as libbpf:
        assert libbpf.ok, libbpf.output
        mine, theirs = coll.programs["ct_lookup"], libbpf.progs["ct_lookup"]
        assert prog_info(mine.fd) == prog_info(theirs)
        assert _bpf.prog_test_run(mine.fd, data_in=packet) == 2      # XDP_PASS
        assert _bpf.prog_test_run(theirs, data_in=packet) == 2
        got = coll.maps[".data"].lookup(0)
        assert (int.from_bytes(coll.variables["found"].get(), "little", signed=True),
                int.from_bytes(coll.variables["lookup_error"].get(), "little", signed=True)) \
            == (0, -errno.ENOENT)
        datas = [fd for n, fd in libbpf.maps.items() if n[-5:] in ("_data", ".data")]
        assert len(datas) == 1, sorted(libbpf.maps)
        data = datas[0]
        assert _bpf.map_lookup_elem(data, bytes(4), len(got)) == got
