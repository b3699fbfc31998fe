"""uprobes on executables (PIE and not) built at test time, pid filtering, and the
symbol -> file offset resolution they rely on."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawprobe import link as L
from rawprobe.errors import NotFoundError, NotSupportedError, ObjectFormatError, RawprobeError
from rawprobe.link.uprobe import resolve_binary_path, symbol_file_offset

from test_link import no_leaks  # noqa: F401  (a fixture)
from test_link import UPROBE, UPROBE_AUTO, URETPROBE, counts, libc_path, load_counters, reset

TARGET_C = r"""
#include <stdlib.h>
#include <unistd.h>

volatile int sink;

__attribute__((noinline)) int rp_target(int x)
{
	sink += x;
	/* A global label inside the function: an instruction boundary that
	 * every call passes, at a non-zero offset the test reads from .symtab. */
	__asm__ volatile(".globl rp_target_mid\nrp_target_mid:\n\tnop");
	return x * 3 + 1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0;
	char go;

	if (argc > 2 && read(0, &go, 1) != 1)	/* wait until the probe is attached */
		return 2;
	for (int i = 0; i < n; i++)
		sink += rp_target(i);
	return 0;
}
"""


def compiler(what: str = "the uprobe target") -> str:
    """A C compiler to build ``what`` with at test time; skips, saying so, without one."""
    for cc in ("cc", "gcc", "clang", "clang-19"):
        path = shutil.which(cc)
        if path:
            return path
    pytest.skip(f"needs a C compiler (cc, gcc or clang) to build {what}")


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """{"pie": path, "nopie": path} of the target built both ways."""
    d = tmp_path_factory.mktemp("uprobe-target")
    src = d / "target.c"
    src.write_text(TARGET_C)
    out = {}
    for name, flags in (("pie", ["-fPIE", "-pie"]), ("nopie", ["-fno-pie", "-no-pie"])):
        exe = d / name
        subprocess.run([compiler(), "-O1", "-g0", *flags, "-o", str(exe), str(src)],
                       check=True, capture_output=True)
        out[name] = str(exe)
    return out


LIB_C = r"""
volatile int lib_sink;

__attribute__((noinline)) int rp_lib_target(int x)
{
	lib_sink += x;
	return x + 1;
}
"""


@pytest.fixture(scope="module")
def test_library(tmp_path_factory):
    """Directory holding librawprobe_link_test.so, built for this test run."""
    d = tmp_path_factory.mktemp("uprobe-lib")
    (d / "lib.c").write_text(LIB_C)
    subprocess.run([compiler(), "-O1", "-shared", "-fPIC", "-o",
                    str(d / "librawprobe_link_test.so"), str(d / "lib.c")],
                   check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def any_process():
    """Counters that count hits from every process: the targets are built by the
    test, so only this process and its children run them."""
    coll = load_counters(["on_uprobe", "on_uretprobe", "on_uprobe_auto"], tgid=0)
    yield coll
    coll.close()



def run(exe: str, n: int) -> None:
    subprocess.run([exe, str(n)], check=True)


def elf_symbol(path: str, name: str) -> int:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        (sym,) = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
        return sym["st_value"]


@pytest.mark.usefixtures("bpf_privileges")
@pytest.mark.parametrize("kind", ["pie", "nopie"])
@pytest.mark.parametrize("retprobe", [False, True])
def test_uprobe_executable(any_process, targets, kind, retprobe, no_leaks):
    slot = URETPROBE if retprobe else UPROBE
    prog = any_process.programs["on_uretprobe" if retprobe else "on_uprobe"]
    reset(any_process)
    with L.attach_uprobe(prog, targets[kind], "rp_target", retprobe=retprobe) as link:
        run(targets[kind], 7)
        assert counts(any_process)[slot] == 7
    run(targets[kind], 3)
    assert counts(any_process)[slot] == 7, "fires after close()"
    assert link.closed


@pytest.mark.usefixtures("bpf_privileges")
@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_uprobe_symbol_plus_offset(any_process, targets, kind, no_leaks):
    exe = targets[kind]
    delta = elf_symbol(exe, "rp_target_mid") - elf_symbol(exe, "rp_target")
    assert delta > 0
    reset(any_process)
    with L.attach_uprobe(any_process.programs["on_uprobe"], exe, "rp_target", delta) as link:
        assert link.target == f"{exe}:rp_target+{delta:#x}"
        run(exe, 4)
        assert counts(any_process)[UPROBE] == 4


@pytest.mark.usefixtures("bpf_privileges")
def test_uprobe_file_offset_without_symbol(any_process, targets, no_leaks):
    exe = targets["pie"]
    off = symbol_file_offset(exe, "rp_target")
    reset(any_process)
    with L.attach_uprobe(any_process.programs["on_uprobe"], exe, offset=off):
        run(exe, 2)
    assert counts(any_process)[UPROBE] == 2


@pytest.mark.usefixtures("bpf_privileges")
@pytest.mark.parametrize("via", ["pmu", "tracefs"])
def test_uprobe_pid_filter(any_process, targets, via, no_leaks):
    exe = targets["pie"]
    procs = [subprocess.Popen([exe, str(n), "wait"], stdin=subprocess.PIPE)
             for n in (5, 11)]
    try:
        reset(any_process)
        with L.attach_uprobe(any_process.programs["on_uprobe"], exe, "rp_target",
                             pid=procs[0].pid, via=via):
            for p in procs:
                p.stdin.write(b"g")
                p.stdin.close()
            assert [p.wait(30) for p in procs] == [0, 0]
            assert counts(any_process)[UPROBE] == 5      # only the first child's calls
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.usefixtures("bpf_privileges")
def test_uprobe_by_section_in_a_library_on_ld_library_path(any_process, test_library,
                                                           monkeypatch, no_leaks):
    # SEC("uprobe/librawprobe_link_test.so:rp_lib_target"): a bare library name
    # is searched in LD_LIBRARY_PATH, then the standard directories.
    import ctypes
    monkeypatch.setenv("LD_LIBRARY_PATH", str(test_library))
    lib = ctypes.CDLL(str(test_library / "librawprobe_link_test.so"))
    reset(any_process)
    with any_process.programs["on_uprobe_auto"].attach() as link:
        assert link.target == f"{test_library}/librawprobe_link_test.so:rp_lib_target"
        for i in range(6):
            assert lib.rp_lib_target(i) == i + 1
        assert counts(any_process)[UPROBE_AUTO] == 6
    lib.rp_lib_target(0)
    assert counts(any_process)[UPROBE_AUTO] == 6


# -------------------------------------------------- symbol -> file offset --

def test_file_offsets_match_the_segments(targets):
    from elftools.elf.elffile import ELFFile
    for exe in targets.values():
        vaddr = elf_symbol(exe, "rp_target")
        with open(exe, "rb") as f:
            seg = next(s for s in ELFFile(f).iter_segments()
                       if s["p_type"] == "PT_LOAD" and s["p_flags"] & 1
                       and s["p_vaddr"] <= vaddr < s["p_vaddr"] + s["p_filesz"])
            want = vaddr - seg["p_vaddr"] + seg["p_offset"]
            # The bytes at that offset are the function's code.
            f.seek(want)
            code = f.read(16)
        assert symbol_file_offset(exe, "rp_target") == want
        assert code != bytes(16)


def test_versioned_and_ifunc_symbols_in_libc():
    path = libc_path()
    plain = symbol_file_offset(path, "labs")
    assert plain > 0
    try:
        default = symbol_file_offset(path, "labs@@GLIBC_2.2.5")
    except NotFoundError:
        pytest.skip("this libc does not version labs as GLIBC_2.2.5")
    assert default == plain
    with pytest.raises(NotFoundError, match="labs@@GLIBC_0.0"):
        symbol_file_offset(path, "labs@@GLIBC_0.0")
    with pytest.raises(NotSupportedError, match="IFUNC"):
        symbol_file_offset(path, "strlen")     # glibc picks strlen's implementation at load


def test_binary_path_search(monkeypatch, tmp_path):
    assert os.path.samefile(resolve_binary_path("libc.so.6"), libc_path())
    assert resolve_binary_path(sys.executable) == os.path.abspath(sys.executable)
    sh = resolve_binary_path("sh")
    assert os.path.isabs(sh) and os.access(sh, os.X_OK)
    (tmp_path / "libmine.so.1").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert resolve_binary_path("libmine.so.1") == str(tmp_path / "libmine.so.1")
    with pytest.raises(NotFoundError):
        resolve_binary_path("")
    with pytest.raises(NotFoundError):
        resolve_binary_path(str(tmp_path))          # a directory


def test_non_elf_files_are_format_errors(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ObjectFormatError):
        symbol_file_offset(str(script), "main")
    obj = Path(__file__).parent / "bpf" / "link_count.bpf.o"     # ET_REL
    with pytest.raises(ObjectFormatError, match="not an executable"):
        symbol_file_offset(str(obj), "on_uprobe")


_HEAD: list[bytes] = []


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512), cut=st.integers(0, 4096))
def test_garbage_raises_only_rawprobe_errors(tmp_path, data, cut):
    # A real ELF cut short or with garbage spliced in, and pure garbage.
    if not _HEAD:
        with open(libc_path(), "rb") as f:
            _HEAD.append(f.read(8192))
    real = _HEAD[0]
    for i, blob in enumerate((data, real[:cut] + data, b"\x7fELF" + data)):
        f = tmp_path / f"blob{i}"
        f.write_bytes(blob)
        try:
            symbol_file_offset(str(f), "labs")
        except RawprobeError:
            pass
