"""SEC("ksyscall/<name>") / SEC("kretsyscall/<name>"): a kprobe on the syscall's
entry point, which libbpf names by its own rule; the programs read their
arguments through the wrapper (BPF_KSYSCALL).  Attaching needs kprobes: in
the VM."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import rawprobe
from rawprobe import features, kallsyms
from rawprobe._sys import bpf as _bpf
from rawprobe.link.kprobe import ksyscall_symbol

from libbpf_oracle import btf_text, loadall, map_table, prog_info

OBJ = Path(__file__).parent / "bpf" / "ksyscall.bpf.o"
SEEN = struct.Struct("<qqqq")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")


def test_ksyscall_sections_parse():
    progs = rawprobe.ObjectSpec.from_file(OBJ).programs
    assert [(p.attach_kind, p.attach_to, p.retprobe) for p in progs.values()] == \
        [("ksyscall", "kill", False), ("ksyscall", "getppid", True)]


def test_ksyscall_symbol_is_the_wrapper():
    """libbpf's rule: the architecture's wrapper when the kernel wraps syscalls
    (as kallsyms shows), else __se_sys_<name>; the symbol exists."""
    text = kallsyms.read("test")
    wrapped = features.syscall_wrapper().supported
    assert wrapped == bool(kallsyms.functions(text, [kallsyms.syscall_prefix() + "sys_bpf"]))
    sym = ksyscall_symbol("getppid")
    assert sym == (f"{kallsyms.syscall_prefix()}sys_getppid" if wrapped
                   else "__se_sys_getppid")
    assert kallsyms.functions(text, [sym]) == {sym}


def test_ksyscall_symbol_refuses_non_names():
    with pytest.raises(rawprobe.ObjectFormatError, match="not a syscall name"):
        ksyscall_symbol("get ppid")


@root_only
def test_ksyscall_load_matches_libbpf():
    """The same maps and BTF as libbpf's load.  The programs themselves differ
    where kprobes are missing: libbpf then says LINUX_HAS_SYSCALL_WRAPPER is
    0, and the verifier drops the other branch (in the VM they are the same)."""
    with rawprobe.load(OBJ) as coll, loadall(OBJ) as libbpf:
        assert libbpf.ok, libbpf.output
        assert map_table({n: m.fd for n, m in coll.maps.items()}) == map_table(libbpf.maps)
        for name, prog in coll.programs.items():
            assert btf_text(prog.fd) == btf_text(libbpf.progs[name]), name


@pytest.mark.vm("kprobes")
@root_only
def test_ksyscall_attaches_and_reads_arguments():
    """The kprobe sits on the wrapper and BPF_KSYSCALL reads kill()'s pid and
    signal through it; the kretsyscall sees getppid()'s result.  libbpf fills
    LINUX_HAS_SYSCALL_WRAPPER the same (it asks with a kprobe, which works
    here), so its programs are the same as rawprobe's."""
    spec = rawprobe.ObjectSpec.from_file(OBJ)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load() as coll, loadall(OBJ) as libbpf:
        kill = coll.programs["on_kill"].attach()
        ret = coll.programs["after_getppid"].attach()
        assert (kill.kind, kill.target) == ("kprobe", ksyscall_symbol("kill"))
        assert (ret.kind, ret.target) == ("kretprobe", ksyscall_symbol("getppid"))
        os.kill(os.getpid(), 0)
        ppid = os.getppid()
        pid, sig, calls, got = SEEN.unpack(coll.variables["seen"].get())
        assert (pid, sig, got) == (os.getpid(), 0, ppid) and calls >= 1
        mine = coll.maps[".kconfig"].lookup(0)
        theirs = _bpf.map_lookup_elem(libbpf.maps["ksyscal_kconfig"], b"\0" * 4, len(mine))
        assert mine == theirs == b"\x01"
        for name, prog in coll.programs.items():
            assert prog_info(prog.fd) == prog_info(libbpf.progs[name]), name
