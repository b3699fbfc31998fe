"""kprobe.multi / kretprobe.multi / kprobe.session and uprobe.multi / uretprobe.multi:
one BPF link on many functions.

Where each runs: uprobe.multi (6.6+) on this machine and in the 6.12 VM;
kprobe.multi (5.18+ with CONFIG_FPROBE) and kprobe.session (6.10+) in the 6.12
VM only (this machine and Debian's 6.1 have no fprobe); the refusals where the
kernel lacks them (here for kprobe.multi, the 6.1 VM for both).  .ci/run runs
this file under 6.1 (`make vmtest`) and 6.12.
"""
from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rawprobe
from rawprobe import features, kallsyms
from rawprobe import link as L
from rawprobe.errors import InvalidValueError, NotFoundError, NotSupportedError, ObjectFormatError
from rawprobe.link.kprobe_multi import resolve_kprobe_pattern
from rawprobe.link.uprobe import symbol_file_offset, symbol_file_offsets
from rawprobe.names import glob_match
from rawprobe.sections import parse_uprobe_multi_target

from rawprobe._sys import bpf as _bpf

from libbpf_oracle import bpftool, loadall, prog_info
from test_link_uprobe import compiler

HERE = Path(__file__).parent / "bpf"
KMULTI, KSESSION, UMULTI = (HERE / f"{n}.bpf.o" for n in
                            ("kprobe_multi", "kprobe_session", "uprobe_multi"))
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")


def u64(b: bytes) -> int:
    return int.from_bytes(b, "little")


def s64(b: bytes) -> int:
    return int.from_bytes(b, "little", signed=True)


def load(obj: Path, tgid: int | None = None) -> rawprobe.Collection:
    spec = rawprobe.ObjectSpec.from_file(obj)
    spec.variables["target_tgid"].set(os.getpid() if tgid is None else tgid)
    return spec.load()


# ------------------------------------------------------------------ parsing --

@given(st.text("ab*?", max_size=8), st.text("ab", max_size=8))
def test_glob_is_fnmatch_without_classes(pattern, name):
    """libbpf's glob: `*` and `?` over the whole name, as fnmatch does them."""
    assert glob_match(name, pattern) == fnmatch.fnmatchcase(name, pattern)


def test_glob_takes_brackets_literally():
    assert glob_match("a[b]", "a[b]") and not glob_match("ab", "a[b]")


def test_sections_parse():
    progs = rawprobe.ObjectSpec.from_file(KMULTI).programs
    assert {n: (p.attach_kind, p.attach_to, p.retprobe) for n, p in progs.items()} == {
        "on_entry": ("kprobe_multi", "__x64_sys_getp?i*", False),
        "on_return": ("kprobe_multi", "__x64_sys_getp?i*", True),
        "by_cookie": ("kprobe_multi", "", False)}
    progs = rawprobe.ObjectSpec.from_file(UMULTI).programs
    assert parse_uprobe_multi_target(progs["on_return"].attach_to) == ("libc.so.6", "getp?id")
    with pytest.raises(ObjectFormatError, match="<binary path>:<function pattern>"):
        parse_uprobe_multi_target("libc.so.6")


def test_kprobe_pattern_resolves_to_the_functions_addresses(monkeypatch):
    """Without ftrace's lists: every kallsyms function the glob matches."""
    from rawprobe.link import tracefs
    monkeypatch.setattr(tracefs, "traceable_functions", lambda mount=True: None)
    pattern = kallsyms.syscall_prefix() + "sys_getp*id"
    text = kallsyms.read("test")
    want = {a for n in ("getpid", "getppid", "getpgid")
            for a, k in kallsyms.entries(text, kallsyms.syscall_prefix() + "sys_" + n)
            if k in kallsyms.FUNCTION_TYPES}
    if not all(want):
        pytest.skip("kallsyms hides addresses from this process (kptr_restrict)")
    assert set(resolve_kprobe_pattern(pattern)) == want


def test_kprobe_pattern_matching_nothing_says_so():
    with pytest.raises(NotFoundError, match="'rawprobe_no_such_\\*' matches no traceable"):
        resolve_kprobe_pattern("rawprobe_no_such_*")


TARGET_C = r"""
#include <stdlib.h>
volatile int sink;
__attribute__((noinline)) void rp_multi_a(void) { sink += 1; }
__attribute__((noinline)) void rp_multi_b(void) { sink += 2; }
__attribute__((noinline)) void rp_multi_c(void) { sink += 3; }
__attribute__((noinline)) void rp_other(void) { sink += 4; }
int main(int argc, char **argv)
{
	for (int i = 0; i < atoi(argv[1]); i++) rp_multi_a();
	for (int i = 0; i < atoi(argv[2]); i++) rp_multi_b();
	rp_other();
	return 0;
}
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("uprobe-multi")
    (d / "t.c").write_text(TARGET_C)
    subprocess.run([compiler(), "-O1", "-o", str(d / "t"), str(d / "t.c")], check=True,
                   capture_output=True)
    return str(d / "t")


def test_uprobe_pattern_offsets_are_the_symbols(target):
    """The glob's functions, each at the offset the one-symbol rule gives."""
    found = symbol_file_offsets(target, "rp_multi_*")
    assert [n for n, _ in sorted(found)] == ["rp_multi_a", "rp_multi_b", "rp_multi_c"]
    assert all(off == symbol_file_offset(target, n) for n, off in found)
    assert symbol_file_offsets(target, "rp_none_*") == []
    assert symbol_file_offsets(target, "strtol") == [], "an import is no function of the file"


# -------------------------------------------------------------- uprobe.multi --

@pytest.mark.vm("uprobe_multi")
@root_only
def test_uprobe_multi_by_section_counts_calls():
    """SEC("uprobe.multi/libc.so.6:getp?id") and its uretprobe twin: getppid()
    and getpgid() of this process, 3 + 4 calls, each seen at entry and return."""
    with load(UMULTI) as coll:
        entry = coll.programs["on_entry"].attach()
        ret = coll.programs["on_return"].attach()
        assert (entry.kind, ret.kind) == ("uprobe_multi", "uretprobe_multi")
        assert entry.target.endswith("libc.so.6:getp?id") and entry.mechanism == "bpf_link"
        for _ in range(3):
            os.getppid()
        for _ in range(4):
            pgid = os.getpgid(0)
        assert u64(coll.variables["entries"].get()) == 7
        assert u64(coll.variables["returns"].get()) == 7
        # at the return: what the call returned (at entry that register is not it)
        assert s64(coll.variables["last_ret"].get()) == pgid
        entry.close()
        os.getppid()
        assert u64(coll.variables["entries"].get()) == 7, "fires after close()"
        assert u64(coll.variables["returns"].get()) == 8


def cookie_counts(coll) -> list[int]:
    return [u64(coll.maps["cookies"].lookup(i)) for i in range(8)]


@pytest.mark.vm("uprobe_multi")
@root_only
def test_uprobe_multi_cookies_by_function(target):
    """Explicit functions with a cookie each: the program counts per cookie."""
    with load(UMULTI) as coll:
        prog = coll.programs["by_cookie"]
        with prog.attach_uprobe_multi(target, syms=["rp_multi_a", "rp_multi_b", "rp_other"],
                                      cookies=[1, 2, 3]):
            subprocess.run([target, "5", "2"], check=True)
        assert cookie_counts(coll) == [0, 5, 2, 1, 0, 0, 0, 0]
        offsets = [symbol_file_offset(target, n) for n in ("rp_multi_b", "rp_multi_a")]
        with prog.attach_uprobe_multi(target, offsets=offsets, cookies=[6, 7]):
            subprocess.run([target, "1", "3"], check=True)
        assert cookie_counts(coll) == [0, 5, 2, 1, 0, 0, 3, 1]


@pytest.mark.vm("uprobe_multi")
@root_only
def test_uprobe_multi_pid_filter(target):
    """pid=N: only that process; pid=-1 (the default): every process."""
    with load(UMULTI) as coll:
        prog = coll.programs["by_cookie"]
        with prog.attach_uprobe_multi(target, "rp_multi_a", pid=os.getpid()):
            subprocess.run([target, "4", "0"], check=True)
        assert cookie_counts(coll)[0] == 0
        with prog.attach_uprobe_multi(target, "rp_multi_a"):
            subprocess.run([target, "4", "0"], check=True)
        assert cookie_counts(coll)[0] == 4


@root_only
def test_uprobe_multi_bad_requests(target):
    with load(UMULTI) as coll:
        prog = coll.programs["by_cookie"]
        with pytest.raises(NotFoundError, match="'rp_none_\\*' matches no function"):
            prog.attach_uprobe_multi(target, "rp_none_*")
        with pytest.raises(InvalidValueError, match="exactly one of"):
            prog.attach_uprobe_multi(target, "rp_*", syms=["rp_other"])
        with pytest.raises(InvalidValueError, match="2 cookies for 1 functions"):
            prog.attach_uprobe_multi(target, syms=["rp_other"], cookies=[1, 2])
        with pytest.raises(InvalidValueError, match="cookies .* go with syms or offsets"):
            prog.attach_uprobe_multi(target, "rp_*", cookies=[1])


@pytest.mark.vm()
@root_only
def test_uprobe_multi_refused_before_6_6():
    """Kernels without BPF_TRACE_UPROBE_MULTI: one NotSupportedError naming it."""
    if features.uprobe_multi().supported:
        pytest.skip("this kernel has uprobe.multi; the refusal runs in the 6.1 VM "
                    "(make vmtest)")
    with load(UMULTI) as coll:
        with pytest.raises(NotSupportedError, match="uprobe.multi needs Linux 6.6"):
            coll.programs["on_entry"].attach()


# -------------------------------------------------------------- kprobe.multi --

def sys_addr(name: str) -> int:
    ((addr, _),) = [e for e in kallsyms.entries(kallsyms.read("test"),
                                                kallsyms.syscall_prefix() + "sys_" + name)
                    if e[1] in kallsyms.FUNCTION_TYPES]
    return addr


@pytest.mark.vm("kprobe_multi")
@root_only
def test_kprobe_multi_by_section_counts_per_function():
    """The glob's syscall entry points (getpgid, getpriority; getppid too where
    ftrace lists it: 6.12 does not), one link each way; the programs count by
    bpf_get_func_ip, which is the function's kallsyms address."""
    with load(KMULTI) as coll:
        entry = coll.programs["on_entry"].attach()
        ret = coll.programs["on_return"].attach()
        assert (entry.kind, entry.target) == ("kprobe_multi", "__x64_sys_getp?i*")
        assert ret.kind == "kretprobe_multi"
        for _ in range(3):
            os.getpriority(os.PRIO_PROCESS, 0)
        for _ in range(4):
            pgid = os.getpgid(0)
        assert s64(coll.variables["last_ret"].get()) == pgid     # seen at the return
        prio, pg = sys_addr("getpriority"), sys_addr("getpgid")
        for m in ("entries", "returns"):
            seen = {u64(k): u64(v) for k, v in coll.maps[m].items()}
            assert seen == {prio: 3, pg: 4}, m


@pytest.mark.vm("kprobe_multi")
@root_only
def test_kprobe_multi_cookies_by_symbol_and_address():
    with load(KMULTI) as coll:
        prog = coll.programs["by_cookie"]
        names = [kallsyms.syscall_prefix() + "sys_" + n for n in ("getppid", "getpgid")]
        with prog.attach_kprobe_multi(syms=names, cookies=[1, 2]) as link:
            assert link.kind == "kprobe_multi"
            for _ in range(2):
                os.getppid()
            for _ in range(5):
                os.getpgid(0)
        assert cookie_counts(coll)[:3] == [0, 2, 5]
        with prog.attach_kprobe_multi(addrs=[sys_addr("getpgid"), sys_addr("getppid")],
                                      cookies=[3, 4]):
            os.getppid()
            os.getpgid(0)
            os.getpgid(0)
        assert cookie_counts(coll)[:5] == [0, 2, 5, 2, 1]


@pytest.mark.vm("kprobe_multi")
@root_only
def test_kprobe_multi_unknown_symbol_is_not_found():
    with load(KMULTI) as coll:
        with pytest.raises(NotFoundError, match="not a kernel function"):
            coll.programs["by_cookie"].attach_kprobe_multi(syms=["rawprobe_no_such_fn"])


@root_only
def test_kprobe_multi_bad_requests():
    with load(KMULTI) as coll:
        prog = coll.programs["by_cookie"]
        with pytest.raises(InvalidValueError, match="exactly one of"):
            prog.attach_kprobe_multi("x*", addrs=[1])
        with pytest.raises(InvalidValueError, match="1 cookies for 2 functions"):
            prog.attach_kprobe_multi(syms=["a", "b"], cookies=[1])
        with pytest.raises(InvalidValueError, match="cookies go with syms or addrs"):
            prog.attach_kprobe_multi("x*", cookies=[1])
        with pytest.raises(ObjectFormatError, match="names no target; call attach_kprobe_multi"):
            prog.attach()


@root_only
def test_kprobe_multi_refuses_a_plain_kprobe_program():
    with rawprobe.load(HERE / "ksyscall.bpf.o") as coll:
        with pytest.raises(ObjectFormatError, match="BPF_TRACE_KPROBE_MULTI"):
            L.attach_kprobe_multi(coll.programs["on_kill"], syms=["a"])


@pytest.mark.vm()
@root_only
def test_kprobe_multi_refused_without_fprobe():
    """Kernels without fprobe (this machine, Debian's 6.1): one NotSupportedError
    naming CONFIG_FPROBE, on the section's pattern and on explicit symbols."""
    if features.kprobe_multi().supported:
        pytest.skip("this kernel has kprobe.multi; the refusal runs here on kernels "
                    "without CONFIG_FPROBE and in the 6.1 VM (make vmtest)")
    with load(KMULTI) as coll:
        with pytest.raises(NotSupportedError, match="CONFIG_FPROBE"):
            coll.programs["on_entry"].attach()
        with pytest.raises(NotSupportedError, match="CONFIG_FPROBE"):
            coll.programs["by_cookie"].attach_kprobe_multi(syms=["__x64_sys_getppid"])


@pytest.mark.vm("kprobe_session")
@root_only
def test_kprobe_session_runs_at_entry_and_return():
    """An entry run returning 0 asks for the return run: two per call."""
    with load(KSESSION) as coll:
        link = coll.programs["on_session"].attach()
        assert (link.kind, link.target) == ("kprobe_session", "__x64_sys_getpgid")
        for _ in range(3):
            os.getpgid(0)
        assert u64(coll.variables["runs"].get()) == 6


def xlated(fd) -> str:
    """The program as the kernel rewrote it, as bpftool prints it: helper calls
    by name (bpf_get_func_ip is a different helper per attach type)."""
    import re
    prog_id = _bpf.prog_get_info(fd)["id"]
    text = subprocess.run([bpftool(), "prog", "dump", "xlated", "id", str(prog_id)],
                          capture_output=True, text=True, check=True).stdout
    return re.sub(r"map\[id:\d+\]", "map[id:N]", text)    # ids differ between any two loads


@root_only
def test_kprobe_multi_load_matches_libbpf():
    """libbpf loads kprobe.multi programs the same, with the same expected
    attach type: the kernel picks bpf_get_func_ip's and bpf_get_attach_cookie's
    implementation by it, and the rewritten programs name them."""
    with load(KMULTI, tgid=0) as coll, loadall(KMULTI) as libbpf:
        assert libbpf.ok, libbpf.output
        for name, prog in coll.programs.items():
            assert prog_info(prog.fd) == prog_info(libbpf.progs[name]), name
            mine = xlated(prog.fd)
            assert mine == xlated(libbpf.progs[name]), name
            if name != "by_cookie":
                assert "kprobe_multi" in mine, mine
