"""Parity with libbpf on objects written the way third-party tools write them.

Each object here is loaded by rawprobe and, side by side, by libbpf (`bpftool
prog loadall`, tests/libbpf_oracle.py); what the kernel then reports about the
two loads must agree, and rawprobe's programs must do what their source says.
"""
from __future__ import annotations

import errno
import gzip
import os
import re
import struct
from pathlib import Path

import pytest

import rawprobe
from rawprobe import collection
from rawprobe._sys import bpf as _bpf
from rawprobe.errors import ENOTSUPP, NotFoundError, NotSupportedError, SyscallError
from rawprobe.uapi import MAP_TYPES_WITHOUT_BTF, MapType

from libbpf_oracle import btf_func_linkage, btf_text, loadall, map_table, prog_info

BPF = Path(__file__).parent / "bpf"
MAPS_BTF = BPF / "maps_btf.bpf.o"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")


def _declared_btf_maps(spec: rawprobe.ObjectSpec) -> dict[str, int]:
    """.maps maps declared with __type(...): name -> map type."""
    return {n: m.type for n, m in spec.maps.items()
            if not m.is_global_data and (m.btf_key_type_id or m.btf_value_type_id)}


# -- BTF key/value type ids per map type ---------------------------------------------

@pytest.mark.parametrize("obj", ["maps_btf", "spec_basic", "hidden_subprog", "kconfig"])
def test_load_matches_libbpf(obj):
    """The kernel reports what rawprobe made exactly as what libbpf made from
    the same object: each map (name, global-data and .kconfig maps too, type,
    sizes, flags, frozen, BTF type ids), each program (bpf_prog_info: tag,
    sizes, instructions verified, func/line info counts...) and the BTF it
    holds for them (bpftool's dump, byte for byte)."""
    path = BPF / f"{obj}.bpf.o"
    with rawprobe.ObjectSpec.from_file(path).load() as coll, loadall(path) as libbpf:
        assert libbpf.ok, libbpf.output
        assert map_table({n: m.fd for n, m in coll.maps.items()}) == map_table(libbpf.maps)
        assert sorted(coll.programs) == sorted(libbpf.progs)
        for name, prog in coll.programs.items():
            assert prog_info(prog.fd) == prog_info(libbpf.progs[name]), name
            assert btf_text(prog.fd) == btf_text(libbpf.progs[name]), name


def test_map_btf_ids_per_map_type():
    """Maps declared with __type(key/value) on every map type that takes no BTF
    ids (perf-event and cgroup arrays, stack traces, queues, device/CPU/XDP/socket
    maps) are created without them -- not first tried with them -- and the
    others keep theirs; the running kernel agrees with the table, type by type."""
    spec = rawprobe.ObjectSpec.from_file(MAPS_BTF)
    declared = _declared_btf_maps(spec)
    without = {n for n, t in declared.items() if t in MAP_TYPES_WITHOUT_BTF}
    assert len(without) >= 10 and len(declared) > len(without)   # both kinds present
    with _bpf.btf_load(spec.btf.load_blob()) as btf_fd:
        for name in declared:
            m = spec.maps[name]
            try:
                _bpf.map_create(m.type, m.key_size, m.value_size, m.max_entries or 1,
                                btf_fd=btf_fd.fileno(), btf_key_type_id=m.btf_key_type_id,
                                btf_value_type_id=m.btf_value_type_id).close()
                refused = 0
            except SyscallError as e:
                refused = e.errno
            assert refused in ((errno.EINVAL, ENOTSUPP) if name in without else (0,)), name
            assert collection._map_btf_ids(m) == \
                ((0, 0) if name in without else (m.btf_key_type_id, m.btf_value_type_id)), name
    with spec.load() as coll:
        for name in declared:
            info = _bpf.map_get_info(coll.maps[name].fd)
            assert (info["btf_id"] != 0) == (name not in without), name


def test_maps_btf_program_uses_its_maps():
    spec = rawprobe.ObjectSpec.from_file(MAPS_BTF)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load() as coll:
        coll.programs["on_getppid"].attach()
        for _ in range(3):
            os.getppid()
        queue, lifo = coll.maps["queue"], coll.maps["lifo"]
        popped = [_bpf.map_lookup_and_delete_elem(queue.fd, None, queue.value_size)
                  for _ in range(4)]
        assert popped == [struct.pack("<II", os.getpid(), i) for i in range(3)] + [None]
        assert [_bpf.map_lookup_and_delete_elem(lifo.fd, None, 8) for _ in range(4)] == \
            [struct.pack("<Q", 1)] * 3 + [None]
        assert coll.maps["by_tgid"].lookup(os.getpid()) == struct.pack("<II", os.getpid(), 2)


def test_kernel_refusing_btf_ids_gets_the_map_without(monkeypatch):
    """A kernel that refuses a map's BTF ids with ENOTSUPP (a map type the
    table does not know: here, with the table emptied) or with EINVAL (a value
    type id without a key type id on a hash) still gets the map, without BTF."""
    monkeypatch.setattr(collection, "MAP_TYPES_WITHOUT_BTF", frozenset())
    spec = rawprobe.ObjectSpec.from_file(MAPS_BTF)
    spec.maps["by_tgid"].btf_key_type_id = 0
    with spec.load() as coll:
        for name in ("events", "cgroup_filter", "by_tgid"):     # ENOTSUPP, ENOTSUPP, EINVAL
            info = _bpf.map_get_info(coll.maps[name].fd)
            assert (info["btf_id"], info["btf_key_type_id"], info["btf_value_type_id"]) \
                == (0, 0, 0), name
        assert _bpf.map_get_info(coll.maps["jumps"].fd)["btf_value_type_id"] != 0


def test_map_create_errors_name_the_map():
    spec = rawprobe.ObjectSpec.from_file(MAPS_BTF)
    spec.maps["by_tgid"].max_entries = 0
    with pytest.raises(NotSupportedError, match=r"map 'by_tgid' \(type HASH.*\(EINVAL\)"):
        spec.load()
    spec = rawprobe.ObjectSpec.from_file(MAPS_BTF)
    spec.maps["by_tgid"].value_size = 1 << 30
    with pytest.raises(SyscallError, match=r"BPF_MAP_CREATE of map 'by_tgid' failed: E2BIG"):
        spec.load()


def test_enotsupp_is_named():
    """errno 524, which the C library cannot name, reads ENOTSUPP: here the
    kernel's own answer to BTF ids on a perf-event array."""
    spec = rawprobe.ObjectSpec.from_file(MAPS_BTF)
    m = spec.maps["events"]
    assert m.type == MapType.PERF_EVENT_ARRAY
    with _bpf.btf_load(spec.btf.load_blob()) as btf_fd:
        with pytest.raises(SyscallError) as e:
            _bpf.map_create(m.type, 4, 4, 1, btf_fd=btf_fd.fileno(),
                            btf_key_type_id=m.btf_key_type_id,
                            btf_value_type_id=m.btf_value_type_id)
    assert e.value.errno == ENOTSUPP == 524
    assert "failed: ENOTSUPP (Operation not supported)" in str(e.value)
    assert "Unknown error" not in str(e.value)


# -- __hidden global subprograms -----------------------------------------------------

HIDDEN = BPF / "hidden_subprog.bpf.o"


def test_hidden_subprogram_is_verified_in_context():
    """read_pair() is __hidden and dereferences its pointer argument unchecked:
    valid only where its caller passes a stack pointer.  It loads, and runs;
    checked_sum(), an ordinary global function, is still verified on its own."""
    spec = rawprobe.ObjectSpec.from_file(HIDDEN)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load(log_level=1) as coll:
        # the verifier's word for a call to a function it verified alone
        log = coll.programs["on_getppid"].log
        assert "('checked_sum') is safe for any args" in log
        assert "('read_pair')" not in log
        coll.programs["on_getppid"].attach()
        v = coll.variables
        os.getppid()
        assert (v["hidden_result"].get_int(), v["global_result"].get_int()) == (4 * 10 + 2, 4 + 2)
        os.getppid()
        assert (v["hidden_result"].get_int(), v["global_result"].get_int()) == (4 * 10 + 3, 4 + 3)


def test_hidden_subprogram_btf_is_static():
    """The BTF the kernel holds (as libbpf's load also has it, see
    test_load_matches_libbpf): read_pair static, checked_sum and the program
    global."""
    with rawprobe.ObjectSpec.from_file(HIDDEN).load() as coll:
        linkage = btf_func_linkage(coll.programs["on_getppid"].fd)
    assert linkage == {"read_pair": "static", "checked_sum": "global", "on_getppid": "global"}


# -- __kconfig externs ---------------------------------------------------------------

KCONFIG = BPF / "kconfig.bpf.o"
COPY = struct.Struct("<QQQQQQQQQqqQq16s8s4s4x")   # struct kconfig_copy, padded to 8


def _config_file() -> dict[str, str]:
    """The running kernel's configuration, read here without rawprobe."""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                return dict(line.rstrip("\n").split("=", 1) for line in f
                            if line.startswith("CONFIG_"))
        except OSError:
            continue
    pytest.skip("no kernel configuration (/proc/config.gz, /boot/config-*) to compare with")


def _copy_kconfig() -> tuple:
    spec = rawprobe.ObjectSpec.from_file(KCONFIG)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load() as coll:
        coll.programs["copy_kconfig"].attach()
        os.getppid()
        return COPY.unpack(coll.variables["copy"].get())


def test_kconfig_values_are_the_kernels():
    """What the program reads from each __kconfig extern is what the kernel's
    configuration file, uname and kallsyms say (each read here directly)."""
    cfg = _config_file()
    (version, cookie, wrapper, not_virtual, bpf_syscall, kprobes, bpf_jit, no_tri, bpf, hz,
     log_buf_shift, nr_cpus, no_int, hostname, cc_version, no_string) = _copy_kconfig()
    a, b, c = (int(x) for x in re.match(r"(\d+)\.(\d+)\.(\d+)", os.uname().release).groups())
    assert version == (a << 16) + (b << 8) + min(c, 255)
    with open("/proc/kallsyms") as f:
        assert wrapper == int(" __x64_sys_bpf\n" in f.read())
    assert cookie in (0, 1) and not_virtual == 0
    tri = {"y": 1, "m": 2}
    assert bpf_syscall == int(cfg.get("CONFIG_BPF_SYSCALL") == "y")
    assert kprobes == int(cfg.get("CONFIG_KPROBES") == "y")
    assert bpf_jit == tri.get(cfg.get("CONFIG_BPF_JIT", "n"), 0)
    assert bpf == ord(cfg["CONFIG_BPF"])
    assert (hz, log_buf_shift, nr_cpus) == \
        (int(cfg["CONFIG_HZ"]), int(cfg["CONFIG_LOG_BUF_SHIFT"]), int(cfg["CONFIG_NR_CPUS"]))
    assert hostname == cfg["CONFIG_DEFAULT_HOSTNAME"].strip('"').encode()[:15].ljust(16, b"\0")
    assert cc_version == cfg["CONFIG_CC_VERSION_TEXT"].strip('"').encode()[:7].ljust(8, b"\0")
    assert (no_tri, no_int, no_string) == (0, 0, b"\0" * 4)


def test_kconfig_matches_libbpf():
    """libbpf fills its .kconfig map (the same map and BTF layout: see
    test_load_matches_libbpf) with the same bytes -- but LINUX_HAS_SYSCALL_WRAPPER
    where kprobes are missing: libbpf asks by creating a kprobe, rawprobe reads
    kallsyms."""
    spec = rawprobe.ObjectSpec.from_file(KCONFIG)
    wrapper = spec.kconfig["LINUX_HAS_SYSCALL_WRAPPER"].offset
    with spec.load() as coll, loadall(KCONFIG) as libbpf:
        assert libbpf.ok, libbpf.output
        ours = map_table({n: m.fd for n, m in coll.maps.items()})
        assert ours == map_table(libbpf.maps)
        size = coll.maps[".kconfig"].value_size
        mine = coll.maps[".kconfig"].lookup(0)
        theirs = _bpf.map_lookup_elem(libbpf.maps["kconfig_kconfig"], b"\0" * 4, size)
    kprobes = os.path.exists("/sys/bus/event_source/devices/kprobe/type")
    assert mine[:wrapper] + mine[wrapper + 1:] == theirs[:wrapper] + theirs[wrapper + 1:]
    assert theirs[wrapper] == (mine[wrapper] if kprobes else 0)


def test_strong_kconfig_extern_missing():
    """A strong extern the configuration lacks fails the load, saying so and
    what to do; libbpf refuses the object too."""
    obj = BPF / "kconfig_strong_missing.bpf.o"
    _config_file()
    with pytest.raises(NotFoundError, match=r"extern 'CONFIG_RAWPROBE_NO_SUCH_OPTION' "
                                            r"\(__kconfig\) is not set in /.*; declare it "
                                            r"__weak"):
        rawprobe.ObjectSpec.from_file(obj).load()
    with loadall(obj) as libbpf:
        assert not libbpf.ok and "CONFIG_RAWPROBE_NO_SUCH_OPTION" in libbpf.output
