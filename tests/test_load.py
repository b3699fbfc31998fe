"""The loader on the running kernel: real objects, real programs, checked results."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from bpffs import private_bpffs
from fdcheck import open_fds

import rawprobe
from rawprobe.maps import possible_cpus
from rawprobe.uapi import UpdateFlags

BPF = Path(__file__).parent / "bpf"
BASIC = BPF / "load_basic.bpf.o"
MAPS = BPF / "spec_maps.bpf.o"
CORE = BPF / "core_read.bpf.o"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")



@pytest.fixture
def basic():
    spec = rawprobe.ObjectSpec.from_file(BASIC)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load(programs=["count_getppid"]) as coll:
        yield coll


def test_global_data_subprograms_and_bpf_loop(basic):
    basic.programs["count_getppid"].attach()
    for _ in range(3):
        os.getppid()
    v = basic.variables
    assert v["target_tgid"].get_int() == os.getpid()        # set on the spec
    assert v["multiplier"].get_int() == 3                     # .rodata default
    assert v["hits"].get_int() == 3                           # .bss written by the program
    assert v["loop_sum"].get_int() == sum(range(10))          # bpf_loop callback
    assert v["static_result"].get_int() == 3 * 3              # static subprogram
    assert v["global_result"].get_int() == 3 + 5              # global subprogram + .data
    # .data is writable after load and the program sees it
    v["base_value"].set(100)
    os.getppid()
    assert v["hits"].get_int() == 4
    assert v["global_result"].get_int() == 4 + 100
    assert basic.maps["per_tgid"].lookup(os.getpid()) == struct.pack("<Q", 4)
    per_cpu = basic.maps["percpu_hits"].lookup_percpu(0)
    assert len(per_cpu) == possible_cpus()
    assert sum(struct.unpack("<Q", x)[0] for x in per_cpu) == 4


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        return ""


def test_map_and_program_own_their_fd():
    """Map and Program share one fd-owner interface: .fd, fileno(), closed,
    close() (idempotent), with; the kernel object goes when its fd is closed."""
    spec = rawprobe.ObjectSpec.from_file(BASIC)
    with spec.load(programs=["count_getppid"]) as coll:
        objs = [coll.programs["count_getppid"], coll.maps["per_tgid"]]
        for obj in objs:
            fd = obj.fd
            assert isinstance(fd, int) and fd >= 3 and obj.fileno() == fd
            assert not obj.closed and f"fd={fd}" in repr(obj)
            assert _fd_target(fd).startswith("anon_inode:bpf-")
            with obj as same:
                assert same is obj
            assert obj.closed and "closed" in repr(obj)
            assert not _fd_target(fd).startswith("anon_inode:bpf-")
            with pytest.raises(rawprobe.ClosedError):
                obj.fileno()
            obj.close()                                  # idempotent
    assert all(obj.closed for obj in objs)               # and the Collection's close too


def test_variable_set_after_load_is_checked_like_before_load(basic):
    v = basic.variables["base_value"]                        # __u32 in .data
    for bad in (-1, 1 << 32, b"\0" * 5, "5"):
        with pytest.raises(rawprobe.RawprobeError, match="base_value"):
            v.set(bad)
    v.set((1 << 32) - 1)
    assert v.get_int() == (1 << 32) - 1


def test_const_variable_not_settable_after_load(basic):
    with pytest.raises(rawprobe.RawprobeError, match="const"):
        basic.variables["multiplier"].set(7)


def test_other_processes_filtered_by_rodata(basic):
    basic.programs["count_getppid"].attach()
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", "import os; [os.getppid() for _ in range(5)]"],
                   check=True)
    assert basic.variables["hits"].get_int() == 0


def test_detached_program_runs_no_more(basic):
    link = basic.programs["count_getppid"].attach()
    os.getppid()
    link.close()
    os.getppid()
    assert basic.variables["hits"].get_int() == 1


def test_verifier_error_keeps_log():
    with pytest.raises(rawprobe.VerifierError) as ei:
        rawprobe.load(BASIC, programs=["bad_deref"])
    err = ei.value
    assert err.program == "bad_deref"
    assert "invalid mem access" in err.log
    assert "processed" in err.log
    assert "invalid mem access" in str(err)          # the summary shows the tail


def test_failed_load_closes_everything():
    before = open_fds()
    for _ in range(3):
        with pytest.raises(rawprobe.VerifierError):
            rawprobe.load(BASIC)                        # maps and BTF made, then failure
    assert open_fds() == before


def test_load_and_close_leave_no_fds():
    before = open_fds()
    coll = rawprobe.load(BASIC, variables={"target_tgid": 1}, programs=["count_getppid"])
    coll.programs["count_getppid"].attach()
    assert open_fds() != before
    coll.close()
    coll.close()                                        # idempotent
    assert open_fds() == before


def test_unknown_names_are_clear_errors():
    with pytest.raises(rawprobe.NotFoundError, match="no global variable 'nope'"):
        rawprobe.load(BASIC, variables={"nope": 1})
    with pytest.raises(rawprobe.NotFoundError, match="no program 'nope'"):
        rawprobe.load(BASIC, programs=["nope"])


@pytest.fixture(scope="module")
def maps_coll():
    # spec_maps pins array_map by name: into a bpffs of this module's own, never
    # /sys/fs/bpf (a pin there would outlive the run and be reused by the next)
    with private_bpffs() as pins, rawprobe.load(MAPS, pin_path=pins) as coll:
        yield coll


@pytest.mark.parametrize("name", ["hash_map", "array_map", "lru_hash", "percpu_hash",
                                  "percpu_array"])
def test_map_element_operations(maps_coll, name):
    m = maps_coll.maps[name]
    vs = m.value_size
    if m.percpu:
        value = b"".join(bytes([i + 1]) * vs + bytes(-vs % 8) for i in range(possible_cpus()))
    else:
        value = b"\x07" * vs
    count = min(3, m.max_entries)
    keys = [k.to_bytes(m.key_size, "little") for k in range(count)]
    for k in keys:
        m.update(k, value)
    assert m.lookup(keys[0]) == value
    if m.percpu:
        assert m.lookup_percpu(keys[0])[-1] == bytes([possible_cpus()]) * vs
    got = dict(m.items())
    for k in keys:
        assert got[k] == value
    if "array" in name:
        assert len(list(m.keys())) == m.max_entries             # arrays: every slot
    else:
        assert sorted(m.keys()) == sorted(keys)
        assert len(keys) == 3
        assert m.delete(keys[1]) is True
        assert m.delete(keys[1]) is False
        assert m.lookup(keys[1]) is None
        assert keys[1] not in m


def _contents(m) -> dict[bytes, bytes]:
    return dict(m.items())


@pytest.mark.parametrize("name", ["hash_map", "lru_hash", "percpu_hash"])
def test_wrong_key_size_is_refused_before_the_kernel(maps_coll, name):
    """The kernel reads key_size bytes whatever the buffer holds: a short key would
    have it read past it, a long one would be cut to another key.  Both are refused
    and the map is left as it was."""
    m = maps_coll.maps[name]
    ks = m.key_size
    key = bytes(range(1, ks + 1))
    value = 5 if m.percpu else bytes(m.value_size)
    before = _contents(m)
    for bad in (b"", key[:-1], key + b"\0", bytearray(key[:-1]), memoryview(key + b"\0")):
        for op in (lambda: m.update(bad, value), lambda: m.lookup(bad), lambda: m.delete(bad),
                   lambda: bad in m):
            with pytest.raises(rawprobe.InvalidValueError,
                               match=rf"map '{name}': key is {len(bad)} bytes, the map's "
                                     rf"key_size is {ks}$"):
                op()
    with pytest.raises(rawprobe.InvalidValueError, match=f"does not fit in {ks} bytes"):
        m.update(1 << 8 * ks, value)
    with pytest.raises(rawprobe.InvalidValueError, match=f"does not fit in {ks} bytes"):
        m.lookup(-(1 << 8 * ks))
    with pytest.raises(rawprobe.InvalidValueError,
                       match=f"map '{name}': a key is bytes or an int, not str"):
        m.lookup("k" * ks)
    assert _contents(m) == before
    # The largest keys that fit are taken, little-endian, signed when negative.
    try:
        m.update((1 << 8 * ks) - 1, value)
        m.update(-2, value)
        assert {b"\xff" * ks, b"\xfe" + b"\xff" * (ks - 1)} <= set(m.keys())
    finally:
        for k in (b"\xff" * ks, b"\xfe" + b"\xff" * (ks - 1)):
            m.delete(k)


@pytest.mark.parametrize("name", ["hash_map", "array_map", "percpu_hash", "percpu_array"])
def test_wrong_value_size_is_refused_before_the_kernel(maps_coll, name):
    m = maps_coll.maps[name]
    vs = m.value_size
    slot = (vs + 7) & ~7
    want = possible_cpus() * slot if m.percpu else vs
    key = bytes(m.key_size)                  # key 0: in range for the arrays too
    before = _contents(m)
    bad_sizes = {0, want - 1, want + 1, vs if m.percpu else want + 8} - {want}
    wants = (f"{possible_cpus()} per-CPU slots of {slot} bytes" if m.percpu
             else f"value_size {vs}")
    for n in sorted(bad_sizes):
        with pytest.raises(rawprobe.InvalidValueError,
                           match=rf"map '{name}': value is {n} bytes, the map wants {wants}$"):
            m.update(key, b"\x01" * n)
    with pytest.raises(rawprobe.InvalidValueError, match=f"does not fit in {vs} bytes"):
        m.update(key, 1 << 8 * vs)
    with pytest.raises(rawprobe.InvalidValueError,
                       match=f"map '{name}': a value is bytes or an int, not list"):
        m.update(key, [0] * want)
    assert _contents(m) == before
    # An int value is encoded in value_size bytes, the same on every CPU; the
    # largest unsigned one fits.
    m.update(key, (1 << 8 * vs) - 1)
    assert m.lookup_percpu(key)[-1] == b"\xff" * vs
    m.update(key, -2)
    expect = b"\xfe" + b"\xff" * (vs - 1)
    assert m.lookup_percpu(key) == [expect] * (possible_cpus() if m.percpu else 1)
    raw = (expect + bytes(slot - vs)) * possible_cpus() if m.percpu else expect
    assert m.lookup(key) == raw


def test_item_access_flags_and_spec(maps_coll):
    m = maps_coll.maps["hash_map"]
    assert m.spec is not None and m.spec.name == "hash_map"
    assert (m.spec.key_size, m.spec.value_size) == (m.key_size, m.value_size)
    k, v = (77).to_bytes(m.key_size, "little"), b"\x05" * m.value_size
    with pytest.raises(KeyError) as ei:
        m[k]
    assert ei.value.args == (k,)
    m[k] = v
    try:
        assert m[k] == v
        # BPF_NOEXIST on a present key, BPF_EXIST on an absent one: the kernel says no
        with pytest.raises(rawprobe.SyscallError, match="EEXIST"):
            m.update(k, v, UpdateFlags.NOEXIST)
        m.update(k, b"\x06" * m.value_size, UpdateFlags.EXIST)
        assert m[k] == b"\x06" * m.value_size
    finally:
        m.delete(k)
    with pytest.raises(rawprobe.SyscallError, match="ENOENT"):
        m.update(k, v, UpdateFlags.EXIST)
    assert k not in m


def test_frozen_map_refuses_writes_from_user_space():
    with private_bpffs() as pins, rawprobe.load(MAPS, pin_path=pins) as coll:
        m = coll.maps["array_map"]
        m.update(0, b"\x01" * m.value_size)
        m.freeze()
        with pytest.raises(rawprobe.SyscallError, match="EPERM"):
            m.update(0, b"\x02" * m.value_size)
        assert m.lookup(0) == b"\x01" * m.value_size


def _kernel_possible_cpus(maps_coll) -> int:
    """How many per-CPU values the kernel writes for one lookup: its possible CPUs,
    asked of the kernel itself with a buffer far larger than needed."""
    from rawprobe._sys import bpf
    m = maps_coll.maps["percpu_array"]
    m.update(0, (1 << 8 * m.value_size) - 1)         # every CPU's value all ones
    slot = (m.value_size + 7) & ~7
    raw = bpf.map_lookup_elem(m.fd, bytes(m.key_size), slot * 1024)
    return sum(1 for i in range(0, len(raw), slot) if raw[i:i + slot] != bytes(slot))


def test_possible_cpus_are_the_kernels(maps_coll, monkeypatch):
    from rawprobe import maps
    want = _kernel_possible_cpus(maps_coll)
    assert want >= 1
    monkeypatch.setattr(maps, "_possible_cpus", 0)           # not the cached answer
    monkeypatch.setattr(os, "cpu_count", lambda: want + 1000)   # nor the online count
    assert maps.possible_cpus() == want
    assert maps._possible_cpus == want
    monkeypatch.setattr(maps, "_read_possible_cpus", lambda: pytest.fail("read twice"))
    assert maps.possible_cpus() == want


@pytest.mark.parametrize("text, n", [("0\n", 1), ("0-3\n", 4), ("0,2\n", 3),
                                     ("0-3,8-11\n", 12), ("0-1,5,7-9\n", 10)])
def test_possible_cpus_list_format(monkeypatch, text, n):
    """/sys/devices/system/cpu/possible is a cpulist (ranges and single CPUs); the
    kernel's nr_cpu_ids is the highest possible CPU + 1."""
    import io
    from rawprobe import maps
    monkeypatch.setattr(maps, "open", lambda *a, **kw: io.StringIO(text), raising=False)
    assert maps._read_possible_cpus() == n


def test_possible_cpus_without_sysfs(monkeypatch):
    from rawprobe import maps

    def no_file(path, *a, **kw):
        raise FileNotFoundError(path)
    monkeypatch.setattr(maps, "open", no_file, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert maps._read_possible_cpus() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert maps._read_possible_cpus() == 1


def test_special_maps(maps_coll):
    rb = maps_coll.maps["ringbuf"]
    with pytest.raises(rawprobe.NotSupportedError, match="RingBuffer"):
        rb.lookup(0)
    assert maps_coll.maps["perf_events"].max_entries == possible_cpus()
    # the program array slot declared in the object holds tail_target
    jt = maps_coll.maps["jump_table"]
    prog_id = maps_coll.programs["tail_target"].info()["id"]
    slots = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in jt.items()}
    assert slots == {2: prog_id}
    # the map-in-map slot holds inner_a: its id as the kernel reports it for our fd
    outer = maps_coll.maps["outer"]
    inner_id = _fdinfo(maps_coll.maps["inner_a"].fd)["map_id"]
    slots = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in outer.items()}
    assert slots == {1: int(inner_id)}


def _fdinfo(fd: int) -> dict[str, str]:
    """/proc/self/fdinfo/FD: what the kernel says about a BPF object fd (not rawprobe)."""
    lines = Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_core_task_fields_match_python():
    """pid, tgid, parent tgid and comm read from task_struct through CO-RE."""
    spec = rawprobe.ObjectSpec.from_file(CORE)
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load(programs=["core_probe_read"]) as coll:
        coll.programs["core_probe_read"].attach()
        os.getppid()
        out = coll.variables["out"].get()
    pid, tgid, ppid = struct.unpack_from("<III", out)
    comm = out[12:28].split(b"\0", 1)[0]
    assert (pid, tgid, ppid) == (os.getpid(), os.getpid(), os.getppid())
    assert comm == Path("/proc/self/comm").read_bytes().strip()


def test_closed_objects_raise_closed_error():
    """After close(), every map, program and variable operation raises
    ClosedError -- a RawprobeError (and a ValueError, as for a closed file)
    naming the object -- never a bare ValueError from deep inside."""
    spec = rawprobe.ObjectSpec.from_file(BASIC)
    coll = spec.load(programs="count_getppid")
    m, p, v = coll.maps["per_tgid"], coll.programs["count_getppid"], coll.variables["hits"]
    coll.close()
    ops = {
        "map 'per_tgid'": [lambda: m.lookup(1), lambda: m.update(1, 2), lambda: m.delete(1),
                           lambda: list(m.keys()), lambda: list(m.items()), m.freeze,
                           lambda: m.fd, m.fileno, lambda: m[1], lambda: 1 in m],
        "program 'count_getppid'": [p.attach, p.info, lambda: p.fd, p.fileno],
        "variable 'hits'": [v.get, lambda: v.set(1), v.get_int],
    }
    for what, calls in ops.items():
        for call in calls:
            with pytest.raises(rawprobe.ClosedError, match=f"{what}.* closed") as e:
                call()
            assert isinstance(e.value, rawprobe.RawprobeError) and \
                isinstance(e.value, ValueError)


def test_load_one_program_by_name():
    """programs= takes one name as well as several: not the name's letters."""
    with rawprobe.load(BASIC, programs="count_getppid") as coll:
        assert list(coll.programs) == ["count_getppid"]
    with pytest.raises(rawprobe.NotFoundError, match="no program 'nope'"):
        rawprobe.load(BASIC, programs="nope")


def _btf_the_kernel_refuses(spec: rawprobe.ObjectSpec) -> rawprobe.ObjectSpec:
    """``spec`` with a type no kernel accepts (an int of an unknown encoding)
    in its BTF."""
    from rawprobe.btf import types as T
    spec.btf.add_type(T.Int("rawprobe_bad_int", size=4, encoding=8, bits=32))
    return spec


def test_programs_load_without_btf_the_kernel_refuses():
    """As libbpf: when the kernel refuses the object's BTF, its maps are made
    without BTF and programs that need none load and run."""
    spec = _btf_the_kernel_refuses(rawprobe.ObjectSpec.from_file(BPF / "maps_btf.bpf.o"))
    spec.variables["target_tgid"].set(os.getpid())
    with spec.load() as coll:
        from rawprobe._sys import bpf
        assert bpf.map_get_info(coll.maps["by_tgid"].fd)["btf_id"] == 0
        coll.programs["on_getppid"].attach()
        os.getppid()
        assert coll.maps["by_tgid"].lookup(os.getpid()) is not None


def test_program_with_global_subprogram_needs_btf():
    """count_getppid calls the global add_base(), which the kernel verifies
    on its own from BTF: without BTF that program cannot load, and says so."""
    spec = _btf_the_kernel_refuses(rawprobe.ObjectSpec.from_file(BASIC))
    with pytest.raises(rawprobe.NotSupportedError, match=r"the kernel refused the object's "
                                                         r"BTF .* its programs need it"):
        spec.load(programs="count_getppid")
