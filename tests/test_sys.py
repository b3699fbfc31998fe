"""rawprobe._sys against the running kernel: maps, programs, BTF, pinning,
ids, attaching, FD ownership.  Nothing is mocked: every call is a real bpf(2)."""
from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from fdcheck import open_fds

from rawprobe.errors import ClosedError, NotSupportedError, PermissionDeniedError, SyscallError
from rawprobe._sys import bpf
from rawprobe._sys.consts import AttachType, LinkType, MapType, ProgType, UpdateFlags
from rawprobe._sys.fd import FD

# Inside the test VM (vmrun.sh / make vmtest) Python runs ~12x slower.
EMULATED = os.environ.get("VMRUN_GUEST") == "1" or os.environ.get("RAWPROBE_VM") == "1"

# r0 = 7; exit  /  r0 = 0; exit  /  exit (r0 never written: the verifier says no)
RET7 = bytes.fromhex("b700000007000000" "9500000000000000")
RET0 = bytes.fromhex("b700000000000000" "9500000000000000")
EXIT_ONLY = bytes.fromhex("9500000000000000")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


@pytest.fixture(scope="module", autouse=True)
def bpf_allowed():
    try:
        bpf.map_create(MapType.ARRAY, 4, 4, 1).close()
    except PermissionDeniedError as exc:
        pytest.skip(f"bpf(2) is not allowed here: {exc}")


def kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)



def is_cloexec(fd) -> bool:
    return bool(fcntl.fcntl(fd.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


# ---- maps -----------------------------------------------------------------------

def test_array_map_update_lookup_iterate():
    with bpf.map_create(MapType.ARRAY, 4, 8, 4, map_name=b"t_array") as m:
        assert is_cloexec(m)
        for i in range(4):
            assert bpf.map_lookup_elem(m, U32.pack(i), 8) == bytes(8)   # arrays start zeroed
            bpf.map_update_elem(m, U32.pack(i), U64.pack(i * 100))
        assert [U64.unpack(bpf.map_lookup_elem(m, U32.pack(i), 8))[0]
                for i in range(4)] == [0, 100, 200, 300]
        assert bpf.map_lookup_elem(m, U32.pack(4), 8) is None         # out of range: ENOENT
        keys, key = [], None
        while (key := bpf.map_get_next_key(m, key, 4)) is not None:
            keys.append(U32.unpack(key)[0])
        assert keys == [0, 1, 2, 3]
        with pytest.raises(SyscallError) as ei:                       # array elements always exist
            bpf.map_delete_elem(m, U32.pack(0))
        assert ei.value.errno == errno.EINVAL
        info = bpf.map_get_info(m)
        assert (info["type"], info["key_size"], info["value_size"], info["max_entries"],
                info["name"]) == (MapType.ARRAY, 4, 8, 4, "t_array")


def test_hash_map_update_lookup_delete_iterate():
    with bpf.map_create(MapType.HASH, 8, 4, 16, map_flags=0) as m:
        for k in (5, 6, 7):
            bpf.map_update_elem(m, U64.pack(k), U32.pack(k * k), UpdateFlags.NOEXIST)
        with pytest.raises(SyscallError) as ei:
            bpf.map_update_elem(m, U64.pack(5), U32.pack(0), UpdateFlags.NOEXIST)
        assert ei.value.errno == errno.EEXIST and not isinstance(ei.value, PermissionDeniedError)
        with pytest.raises(SyscallError) as ei:
            bpf.map_update_elem(m, U64.pack(9), U32.pack(0), UpdateFlags.EXIST)
        assert ei.value.errno == errno.ENOENT
        assert bpf.map_lookup_elem(m, U64.pack(6), 4) == U32.pack(36)
        assert bpf.map_lookup_elem(m, U64.pack(8), 4) is None
        keys, key = set(), None
        while (key := bpf.map_get_next_key(m, key, 8)) is not None:
            keys.add(U64.unpack(key)[0])
        assert keys == {5, 6, 7}
        assert bpf.map_delete_elem(m, U64.pack(6)) is True
        assert bpf.map_delete_elem(m, U64.pack(6)) is False
        assert bpf.map_lookup_elem(m, U64.pack(6), 4) is None


def test_queue_pop_and_long_name_is_cut():
    with bpf.map_create(MapType.QUEUE, 0, 4, 8, map_name=b"a_name_longer_than_15") as q:
        assert bpf.map_get_info(q)["name"] == "a_name_longer_t"
        bpf.map_update_elem(q, None, U32.pack(1))
        bpf.map_update_elem(q, b"", U32.pack(2))
        assert bpf.map_lookup_elem(q, None, 4) == U32.pack(1)           # peek
        assert bpf.map_lookup_and_delete_elem(q, None, 4) == U32.pack(1)
        assert bpf.map_lookup_and_delete_elem(q, None, 4) == U32.pack(2)
        assert bpf.map_lookup_and_delete_elem(q, None, 4) is None


def test_frozen_map_refuses_writes_without_blaming_privileges():
    with bpf.map_create(MapType.ARRAY, 4, 4, 1) as m:
        bpf.map_update_elem(m, U32.pack(0), U32.pack(42))
        bpf.map_freeze(m)
        with pytest.raises(SyscallError) as ei:
            bpf.map_update_elem(m, U32.pack(0), U32.pack(1))
        assert ei.value.errno == errno.EPERM
        assert not isinstance(ei.value, PermissionDeniedError)
        assert "frozen" in str(ei.value)
        assert bpf.map_lookup_elem(m, U32.pack(0), 4) == U32.pack(42)


def test_bad_map_gives_syscall_error():
    with pytest.raises(SyscallError) as ei:
        bpf.map_create(MapType.HASH, 0, 4, 1)          # hash keys cannot be empty
    assert ei.value.errno == errno.EINVAL
    assert ei.value.call == "BPF_MAP_CREATE"


# ---- programs -----------------------------------------------------------------

def test_prog_load_and_test_run():
    with bpf.prog_load(ProgType.SOCKET_FILTER, RET7, b"GPL", prog_name=b"ret7") as p:
        assert is_cloexec(p)
        out = bytearray(128)
        assert bpf.prog_test_run(p, data_in=bytes(64), repeat=3, data_out=out) == 7
        assert bytes(out) == bytes(64)                 # cut to what the kernel wrote
        info = bpf.prog_get_info(p)
        assert (info["name"], info["type"], info["xlated_prog_len"]) == ("ret7", ProgType.SOCKET_FILTER, 16)
        assert len(info["tag"]) == 8 and info["tag"] != bytes(8)


def test_verifier_rejection_fills_log_buf():
    log = bytearray(64 * 1024)
    with pytest.raises(SyscallError) as ei:
        bpf.prog_load(ProgType.SOCKET_FILTER, EXIT_ONLY, b"GPL", log_buf=log)
    exc = ei.value
    assert exc.errno == errno.EACCES and not isinstance(exc, PermissionDeniedError)
    text = bytes(log).split(b"\0", 1)[0].decode()
    assert "R0 !read_ok" in text
    if kernel_version() >= (6, 4):                        # log_true_size is 6.4+
        assert exc.log_true_size == len(text) + 1


def test_too_small_log_reports_true_size():
    log = bytearray(128)
    with pytest.raises(SyscallError) as ei:
        bpf.prog_load(ProgType.SOCKET_FILTER, RET0, b"GPL", log_level=2, log_buf=log)
    assert ei.value.errno == errno.ENOSPC
    need = ei.value.log_true_size
    if kernel_version() >= (6, 4):
        assert need > len(log)
        log.extend(bytes(need - len(log)))                # growable: no export left
        bpf.prog_load(ProgType.SOCKET_FILTER, RET0, b"GPL", log_level=2, log_buf=log).close()
        assert b"processed 2 insns" in log


def test_prog_load_with_fd_array():
    """r1 = map at fd_array[0] (ld_imm64, BPF_PSEUDO_MAP_IDX: 5.14); r0 = 0; exit."""
    insns = bytes.fromhex("1851000000000000" "0000000000000000") + RET0
    with bpf.map_create(MapType.ARRAY, 4, 4, 1) as m, \
            bpf.prog_load(ProgType.SOCKET_FILTER, insns, b"GPL", fd_array=[m]) as p:
        assert bpf.prog_get_info(p)["nr_map_ids"] == 1


def test_prog_load_rejects_bad_insns_length():
    with pytest.raises(ValueError):
        bpf.prog_load(ProgType.SOCKET_FILTER, RET0[:-1], b"GPL")


# ---- BTF ------------------------------------------------------------------------

def btf_blob(magic: int = 0xEB9F) -> bytes:
    """A BTF blob with one type: INT 'int', 4 bytes, signed, 32 bits."""
    strings = b"\0int\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", 1 << 24 | 32)
    header = struct.pack("<HBBIIIII", magic, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_btf_load_and_info():
    blob = btf_blob()
    with bpf.btf_load(blob) as b:
        assert is_cloexec(b)
        info = bpf.btf_get_info(b)
        assert info["btf_size"] == len(blob) and info["id"] > 0 and not info["kernel_btf"]


def test_btf_info_names_kernel_btf():
    """With a name buffer, btf_get_info names the kernel's own BTF object
    "vmlinux" (how module BTF fds are found by module name)."""
    names = {}
    next_id = 0
    while (next_id := bpf.get_next_id("btf", next_id)) is not None:
        try:
            fd = bpf.get_fd_by_id("btf", next_id)
        except SyscallError:
            continue
        with fd:
            info = bpf.btf_get_info(fd, 64)
        if info["kernel_btf"]:
            names[info["name"]] = info["id"]
    assert "vmlinux" in names
    with bpf.get_fd_by_id("btf", names["vmlinux"]) as fd:
        with pytest.raises(SyscallError, match="ENOSPC"):    # no room for "vmlinux\0"
            bpf.btf_get_info(fd, 4)


def test_btf_load_error_has_log():
    log = bytearray(4096)
    with pytest.raises(SyscallError) as ei:
        bpf.btf_load(btf_blob(magic=0x1234), log_buf=log)
    assert ei.value.errno == errno.EINVAL
    assert b"magic" in bytes(log).split(b"\0", 1)[0].lower()


# ---- pinning and ids ---------------------------------------------------------------

def test_obj_pin_get_and_ids(tmp_path):
    if not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("bpffs is not mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
    path = f"/sys/fs/bpf/rawprobe-test-{uuid.uuid4().hex}"
    with bpf.map_create(MapType.ARRAY, 4, 4, 1) as m:
        map_id = bpf.map_get_info(m)["id"]
        bpf.obj_pin(m, path)
        try:
            with bpf.obj_get(path) as again:
                assert is_cloexec(again)
                assert bpf.map_get_info(again)["id"] == map_id
        finally:
            os.unlink(path)
        ids, i = [], 0
        while (i := bpf.get_next_id("map", i)) is not None:
            ids.append(i)
        assert map_id in ids
        with bpf.get_fd_by_id("map", map_id) as by_id:
            assert bpf.map_get_info(by_id)["id"] == map_id


# ---- attaching --------------------------------------------------------------------

def run_count(prog) -> int:
    return bpf.prog_get_info(prog)["run_cnt"]


def test_raw_tracepoint_open_runs_program():
    with bpf.enable_stats() as stats, \
            bpf.prog_load(ProgType.RAW_TRACEPOINT, RET0, b"GPL") as p, \
            bpf.raw_tracepoint_open(b"sys_enter", p) as link:
        assert is_cloexec(stats) and is_cloexec(link)
        before = run_count(p)
        for _ in range(5):
            os.getppid()
        assert run_count(p) >= before + 5
        info = bpf.link_get_info(link)
        assert info["type"] == LinkType.RAW_TRACEPOINT
        assert info["prog_id"] == bpf.prog_get_info(p)["id"]
        with pytest.raises(NotSupportedError):
            bpf.link_detach(link)                       # raw_tp links detach on close
        link.close()
        after = run_count(p)
        os.getppid()
        assert run_count(p) == after


def cgroup2_mount() -> str | None:
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                return parts[1]
    return None


def test_link_detach_cgroup_link():
    root = cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup2 mount to attach a cgroup_skb program to")
    cg = os.path.join(root, f"rawprobe-test-{uuid.uuid4().hex[:8]}")   # empty: no traffic
    os.mkdir(cg)
    try:
        cg_fd = FD(os.open(cg, os.O_RDONLY | os.O_DIRECTORY))
        ret1 = bytes.fromhex("b700000001000000" "9500000000000000")     # 1: let packets pass
        with cg_fd, bpf.prog_load(ProgType.CGROUP_SKB, ret1, b"GPL",
                                  expected_attach_type=AttachType.CGROUP_INET_INGRESS) as p, \
                bpf.link_create(p, cg_fd, AttachType.CGROUP_INET_INGRESS) as link:
            info = bpf.link_get_info(link)
            assert info["type"] == LinkType.CGROUP and info["cgroup"]["cgroup_id"] != 0
            bpf.link_detach(link)
            assert bpf.link_get_info(link)["cgroup"]["cgroup_id"] == 0
    finally:
        os.rmdir(cg)


def test_link_create_on_tracepoint_perf_event():
    from rawprobe._sys import perf
    from rawprobe._sys.consts import PerfType
    from rawprobe.link.tracefs import tracepoint_id
    tp = tracepoint_id("syscalls", "sys_enter_getppid")
    with bpf.enable_stats(), \
            bpf.prog_load(ProgType.TRACEPOINT, RET0, b"GPL") as p, \
            perf.perf_event_open({"type": PerfType.TRACEPOINT, "config": tp}) as ev, \
            bpf.link_create(p, ev, AttachType.PERF_EVENT, bpf_cookie=0x1234) as link:
        before = run_count(p)
        for _ in range(3):
            os.getppid()
        assert run_count(p) >= before + 3
        assert bpf.link_get_info(link)["type"] == LinkType.PERF_EVENT


# ---- FD ownership -----------------------------------------------------------------

def test_fd_semantics():
    raw = os.dup(sys.stdout.fileno() if sys.stdout else 1)
    fd = FD(raw)
    assert fd.fileno() == raw and repr(fd) == f"FD({raw})" and not fd.closed
    fd.close()
    fd.close()                                          # idempotent
    assert fd.closed and repr(fd) == "FD(closed)"
    with pytest.raises(ClosedError):              # a RawprobeError and a ValueError
        fd.fileno()
    with pytest.raises(OSError):
        os.fstat(raw)

    raw = os.dup(1)
    fd = FD(raw)
    del fd                                              # collected -> closed
    with pytest.raises(OSError):
        os.fstat(raw)

    with FD(os.dup(1)) as fd:
        raw = fd.fileno()
        twin = fd.dup()
        assert twin.fileno() >= 3 and is_cloexec(twin)
        twin.close()
    assert fd.closed
    raw = FD(os.dup(1)).detach()
    os.fstat(raw)                                       # still open: we own it now
    os.close(raw)
    with pytest.raises(ValueError):
        FD(-1)


def test_fd_never_lands_on_stdio():
    """With fds 0-2 closed, the kernel hands out 0 first: FD must move it."""
    script = textwrap.dedent("""
        import fcntl, os, sys
        out = os.dup(1)
        os.close(0); os.close(1); os.close(2)
        from rawprobe._sys import bpf
        from rawprobe._sys.consts import MapType
        m = bpf.map_create(MapType.ARRAY, 4, 4, 1)
        p = bpf.prog_load(1, bytes.fromhex("b7000000000000009500000000000000"), b"GPL")
        res = [m.fileno(), p.fileno(),
               bool(fcntl.fcntl(m.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)]
        for low in (0, 1, 2):
            try:
                os.fstat(low)
                res.append(low)          # a low fd left open: wrong
            except OSError:
                pass
        os.write(out, repr(res).encode())
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=root, timeout=60)
    assert r.returncode == 0, r.stderr
    mfd, pfd, cloexec, *low_open = eval(r.stdout)
    assert mfd >= 3 and pfd >= 3 and cloexec and low_open == []


def test_no_fd_leaks():
    before = open_fds()
    for _ in range(3):
        with bpf.map_create(MapType.HASH, 4, 4, 4) as m:
            bpf.map_update_elem(m, U32.pack(1), U32.pack(2))
        with bpf.prog_load(ProgType.SOCKET_FILTER, RET0, b"GPL") as p:
            bpf.prog_test_run(p, data_in=bytes(64))
            bpf.prog_get_info(p)
        with pytest.raises(SyscallError):
            bpf.prog_load(ProgType.SOCKET_FILTER, EXIT_ONLY, b"GPL")
        with pytest.raises(SyscallError):
            bpf.map_create(MapType.HASH, 0, 4, 1)
        bpf.btf_load(btf_blob())                      # dropped: closed when collected
    assert open_fds() == before


@pytest.mark.skipif(EMULATED, reason="timings mean nothing under qemu's TCG emulation")
def test_lookup_overhead_is_small():
    """A lookup is one syscall plus a few cffi calls (a few microseconds)."""
    with bpf.map_create(MapType.ARRAY, 4, 8, 1) as m:
        key = U32.pack(0)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(1000):
                bpf.map_lookup_elem(m, key, 8)
            best = min(best, (time.perf_counter() - t) / 1000)
        print(f"map_lookup_elem: {best * 1e6:.1f} us")
        assert best < 200e-6
