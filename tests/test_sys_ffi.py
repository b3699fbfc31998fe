"""The generated cffi module, import hygiene, constants and the errno
translation (no kernel objects needed)."""
from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys

import pytest

from rawprobe.errors import NotSupportedError, PermissionDeniedError, RawprobeError, SyscallError
from rawprobe._sys import consts
from rawprobe._sys.errno import ENOTSUPP, raise_errno, syscall_error

# Inside the test VM (vmrun.sh / make vmtest) Python runs ~12x slower.
EMULATED = os.environ.get("VMRUN_GUEST") == "1" or os.environ.get("RAWPROBE_VM") == "1"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_committed_ffi_module_is_current():
    pytest.importorskip("pycparser", reason="cffi's C parser is needed to regenerate _ffi.py")
    spec = importlib.util.spec_from_file_location("gen_ffi", os.path.join(ROOT, "tools", "gen_ffi.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    with open(os.path.join(ROOT, "rawprobe", "_sys", "_ffi.py"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == gen.generate(), "rawprobe/_sys/_ffi.py is stale: run python tools/gen_ffi.py"


def _modules_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return set(out.split())


def test_no_c_parser_at_run_time():
    mods = _modules_after("import rawprobe._sys.bpf, rawprobe._sys.perf, rawprobe._sys.fs")
    assert "_cffi_backend" in mods
    assert not {"cffi", "pycparser"} & mods


def _new_modules(stmt: str) -> set[str]:
    """The modules ``stmt`` imports, under ``python -S`` (site's .pth hooks may
    import typing, enum, re... at start-up and hide rawprobe's own imports)."""
    import _cffi_backend            # its directory is left off sys.path by -S
    code = (f"import sys; before = set(sys.modules); {stmt}; "
            f"print(' '.join(sorted(set(sys.modules) - before)))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.path.dirname(_cffi_backend.__file__)]))
    return set(subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, env=env,
                              check=True, capture_output=True, text=True).stdout.split())


def test_consts_load_neither_cffi_nor_enum_nor_typing():
    mods = _new_modules("from rawprobe._sys.consts import MapType, syscall_numbers")
    assert not {"_cffi_backend", "enum", "typing"} & mods


def test_syscall_layer_imports_nothing_heavy():
    """No typing/enum/re/collections at run time in _sys: each costs ms of start-up."""
    mods = _new_modules("import rawprobe._sys.bpf, rawprobe._sys.perf, "
                        "rawprobe._sys.fs, rawprobe._sys.fdevents, rawprobe._sys.fence")
    heavy = {"typing", "enum", "re", "collections", "functools", "contextlib", "cffi",
             "pycparser"}
    assert "_cffi_backend" in mods and not heavy & mods, sorted(heavy & mods)


def test_consts_reexport_the_uapi_classes():
    import pickle

    from rawprobe import uapi
    assert consts.MapType is uapi.MapType and consts.PerfFlag is uapi.PerfFlag
    assert consts.MapType.RINGBUF == 27 and consts.MapType(27).name == "RINGBUF"
    assert consts.ProgType.TRACEPOINT == 5 and consts.AttachType.PERF_EVENT == 41
    assert consts.BpfCmd.PROG_RUN is consts.BpfCmd.PROG_TEST_RUN
    assert consts.BpfFunc.send_signal == 109 and consts.BpfFunc.loop == 181
    assert consts.MapFlags.MMAPABLE == 1024 and consts.PerfSampleFormat.RAW == 1 << 10
    assert pickle.loads(pickle.dumps(consts.LinkType.PERF_EVENT)) is consts.LinkType.PERF_EVENT
    assert set(consts.__all__) <= set(dir(consts))
    assert all(getattr(consts, n) is getattr(uapi, n) for n in uapi.__all__)


def test_bpf_command_table_agrees_with_bpfcmd():
    from rawprobe._sys import bpf
    cmds = [v for v in vars(bpf).values() if isinstance(v, bpf._Cmd)]
    cmds += [c for pair in bpf._BY_ID.values() for c in pair]
    for c in cmds:
        assert consts.BpfCmd[c.name.removeprefix("BPF_")] == int(c.nr), c.name


def test_syscall_numbers():
    assert consts.syscall_numbers("x86_64")["bpf"] == 321
    assert consts.syscall_numbers("x86_64")["perf_event_open"] == 298
    assert consts.syscall_numbers("aarch64")["bpf"] == 280
    assert consts.syscall_numbers("aarch64")["perf_event_open"] == 241
    with pytest.raises(NotSupportedError, match="s390x"):
        consts.syscall_numbers("s390x")


def test_errno_translation():
    e = syscall_error("BPF_MAP_CREATE", errno.EPERM)
    assert isinstance(e, PermissionDeniedError) and e.errno == errno.EPERM
    assert "CAP_BPF" in str(e)
    assert isinstance(syscall_error("x", errno.EACCES), PermissionDeniedError)
    v = syscall_error("BPF_PROG_LOAD", errno.EACCES, verifier=True)
    assert type(v) is SyscallError and "verifier" in str(v)
    assert type(syscall_error("x", errno.EPERM, privilege=False)) is SyscallError
    m = syscall_error("mount", errno.EPERM, "extra", permission_hint="needs CAP_SYS_ADMIN")
    assert isinstance(m, PermissionDeniedError) and "CAP_BPF" not in str(m)
    assert str(m).endswith("; needs CAP_SYS_ADMIN; extra")
    assert isinstance(syscall_error("x", ENOTSUPP, not_supported="no such map type"),
                      NotSupportedError)
    assert type(syscall_error("x", ENOTSUPP)) is SyscallError
    gone = syscall_error("pidfd_send_signal", errno.ESRCH, "the process has exited")
    assert type(gone) is SyscallError and gone.errno == errno.ESRCH and gone.call == "pidfd_send_signal"
    with pytest.raises(SyscallError) as ei:
        raise_errno("BPF_MAP_UPDATE_ELEM", errno.E2BIG, "full")
    assert ei.value.errno == errno.E2BIG and "full" in str(ei.value)


def _failed(call: str, err: int) -> str:
    return f"{call} failed: {errno.errorcode[err]} ({os.strerror(err)})"


@pytest.mark.parametrize("caps, why", [
    (0, "this process lacks CAP_BPF and CAP_PERFMON"),
    (1 << 39, "this process lacks CAP_PERFMON"),
    ((1 << 39) | (1 << 38), "although this process has CAP_BPF + CAP_PERFMON"),
])
def test_permission_hint_says_what_this_process_lacks(monkeypatch, caps, why):
    """EPERM/EACCES name the capabilities lacking, else say the kernel (or a
    seccomp filter) refused although they are there; and what to do."""
    from rawprobe import caps as capsmod
    monkeypatch.setattr(capsmod, "effective", lambda: caps)
    monkeypatch.setattr(capsmod, "seccomp_mode", lambda: 0)
    for err in (errno.EPERM, errno.EACCES):
        e = syscall_error("BPF_PROG_LOAD", err)
        assert type(e) is PermissionDeniedError and (e.call, e.errno) == ("BPF_PROG_LOAD", err)
        assert str(e).startswith(_failed("BPF_PROG_LOAD", err) + "; " + why), str(e)
        assert ("grant CAP_BPF + CAP_PERFMON" in str(e)) == ("lacks" in why)
        assert "RLIMIT_MEMLOCK" in str(e) and not str(e).endswith("; ")
        assert str(syscall_error("BPF_PROG_LOAD", err, "more")).endswith("; more")


def test_errno_translation_rules():
    # the verifier's EACCES/EINVAL are not about privileges, and say how to see why
    for err in (errno.EACCES, errno.EINVAL):
        v = syscall_error("BPF_PROG_LOAD", err, verifier=True)
        assert type(v) is SyscallError and str(v) == (
            _failed("BPF_PROG_LOAD", err) + "; the verifier rejected the program; "
            "load it with a log_buf to see why")
        v = syscall_error("BPF_PROG_LOAD", err, "see the log", verifier=True)
        assert str(v).endswith("; the verifier rejected the program; see the log")
    # ...while its EPERM still is; other errnos are plain, with or without verifier
    assert type(syscall_error("BPF_PROG_LOAD", errno.EPERM, verifier=True)) \
        is PermissionDeniedError
    for verifier in (False, True):
        e = syscall_error("BPF_PROG_LOAD", errno.E2BIG, verifier=verifier)
        assert type(e) is SyscallError and str(e) == _failed("BPF_PROG_LOAD", errno.E2BIG)
    e = syscall_error("BPF_MAP_CREATE", errno.EINVAL)
    assert type(e) is SyscallError and str(e) == _failed("BPF_MAP_CREATE", errno.EINVAL)
    # calls that never check privileges: EPERM/EACCES mean something else
    for err in (errno.EPERM, errno.EACCES):
        e = syscall_error("BPF_MAP_UPDATE_ELEM", err, "frozen", privilege=False)
        assert type(e) is SyscallError and str(e) == _failed("BPF_MAP_UPDATE_ELEM", err) \
            + "; frozen"
    # "not supported" only where the caller says what is not, in its words
    for err in (errno.EOPNOTSUPP, ENOTSUPP):
        e = syscall_error("BPF_MAP_CREATE", err, not_supported="no ringbuf maps here")
        assert type(e) is NotSupportedError
        assert str(e) == "BPF_MAP_CREATE: no ringbuf maps here"
        assert type(syscall_error("BPF_MAP_CREATE", err)) is SyscallError
    assert type(syscall_error("x", errno.EPERM, not_supported="no")) is PermissionDeniedError
    assert type(syscall_error("x", errno.EINVAL, not_supported="no")) is SyscallError


def test_raise_errno_passes_every_option_on():
    cases = [
        (dict(), errno.EPERM, PermissionDeniedError),
        (dict(privilege=False), errno.EPERM, SyscallError),
        (dict(verifier=True), errno.EACCES, SyscallError),
        (dict(not_supported="not here"), ENOTSUPP, NotSupportedError),
    ]
    for kw, err, cls in cases:
        with pytest.raises(RawprobeError) as ei:
            raise_errno("call", err, "why", **kw)
        assert type(ei.value) is cls, kw
        assert str(ei.value) == str(syscall_error("call", err, "why", **kw)), kw
    with pytest.raises(PermissionDeniedError, match="; needs CAP_SYS_ADMIN; why$"):
        raise_errno("mount", errno.EPERM, "why", permission_hint="needs CAP_SYS_ADMIN")
    for err, cls in ((errno.EACCES, PermissionDeniedError), (ENOTSUPP, SyscallError),
                     (errno.EINVAL, SyscallError)):         # the defaults: no options
        with pytest.raises(RawprobeError) as ei:
            raise_errno("call", err)
        assert type(ei.value) is cls and str(ei.value) == str(syscall_error("call", err))
    assert str(syscall_error("call", errno.EINVAL)) == _failed("call", errno.EINVAL)


@pytest.mark.skipif(EMULATED, reason="timings mean nothing under qemu's TCG emulation")
def test_import_time_is_small(tmp_path):
    """The whole syscall layer imports in a few milliseconds (no C parsing).
    Measured with bytecode caches (in tmp_path), as an installed wheel has."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(tmp_path))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = ("import time; t = time.perf_counter(); "
            "import rawprobe._sys.bpf, rawprobe._sys.perf, rawprobe._sys.fence; "
            "print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                                 capture_output=True, text=True).stdout)
            for _ in range(4)]
    best = min(runs[1:])          # the first run writes the caches
    print(f"import rawprobe._sys.{{bpf,perf,fence}}: {best * 1e3:.1f} ms")
    assert best < 0.05            # ~4 ms here; one C parse by cffi alone is ~100 ms
