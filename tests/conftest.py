"""Shared pytest markers and fixtures for rawprobe's tests.

Kernel features: a test that needs kprobes or fentry either asks for the
fixture (`requires_kprobes`, `requires_fentry`) or names the features on its
marker, `@pytest.mark.vm("kprobes")`.  Where the running kernel lacks one the
test is skipped with a reason naming it; `make vmtest` (tools/vmtest.py) runs
the `vm` tests in qemu under Debian's 6.1 kernel, which has them all.  Inside
that VM, RAWPROBE_VM=1 and RAWPROBE_VM_KERNEL / _SERIES / _KCONFIG are set.
"""
from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import Phase, settings

IN_VM = os.environ.get("RAWPROBE_VM") == "1"
VMTEST = "`make vmtest` runs it in a VM with Debian's 6.1 kernel"
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
VM_MARKER = ("vm: needs a kernel feature this machine lacks (kprobes, fentry, module "
             "BTF, bpf_lsm); runs in the VM via make vmtest")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", VM_MARKER)
    _own_cache_dir(config)


# `make mutate` (tools/mutate.py) runs with --hypothesis-profile=mutate: a mutant that
# makes a property fail is reported at its first failing example, not after minutes
# of shrinking, which ran past mutmut's timeout and was counted a "timeout", not a
# test failure; and no deadline, so a slow example on a loaded machine is no kill.
settings.register_profile("mutate", phases=(Phase.explicit, Phase.reuse, Phase.generate),
                          deadline=None)


# ----------------------------------------------------------------- hermeticity --
# Each session caches (kernel BTF index, CO-RE results) in a directory of its own,
# never in the user's or /var/cache/rawprobe: a warm cache left by another run or
# another checkout could hide a regression, and tests must not leave files behind.
# Set before any test module imports rawprobe, and in the environment, so the
# `python -m rawprobe` processes that tests start use it too.  A test of the
# default location sets its own environment (monkeypatch).

def _own_cache_dir(config: pytest.Config) -> None:
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="rawprobe-test-cache-")
    os.environ["RAWPROBE_CACHE_DIR"] = d
    config.add_cleanup(lambda: shutil.rmtree(d, ignore_errors=True))


# ------------------------------------------------------------ feature checks --
# Each check returns None when the running kernel has the feature, else why not.

def _check_kprobes() -> str | None:
    if Path("/sys/bus/event_source/devices/kprobe/type").exists():
        return None
    if any(Path(t, "kprobe_events").exists() for t in TRACEFS):
        return None
    return "no kprobe PMU (/sys/bus/event_source/devices/kprobe) and no tracefs kprobe_events"


def _check_fentry() -> str | None:
    # Only loading a program tells whether fentry attaches: a kernel whose config
    # allows it may still refuse (this project's dev machine answers EPERM to
    # root), so ask rawprobe's own cached probe, which loads one.
    from rawprobe import features
    f = features.fentry()
    return None if f.supported else f"fentry/fexit refused ({f.detail})"


def _check_bpf_lsm() -> str | None:
    # BPF LSM programs that run: built in, "bpf" in lsm=, and loadable (this
    # project's dev machine answers EPERM): rawprobe's own probe tries one.
    from rawprobe import features
    f = features.bpf_lsm()
    return None if f.supported else f"BPF LSM programs do not run ({f.detail})"


def _check_bpf_lsm_inactive() -> str | None:
    # The BPF LSM built in but left out of lsm=: tools/vmtest.py --append
    # "lsm=capability,yama" boots the VM so.
    from rawprobe import lsms
    from rawprobe.errors import RawprobeError
    try:
        runs = lsms.deny_runs("lsm")
    except RawprobeError as e:
        return f"LSM programs do not load here ({e})"
    return ("the BPF LSM is active (this test wants it built in but left out of lsm=: "
            "tools/vmtest.py --append lsm=capability,yama)") if runs else None


def _check_module_btf() -> str | None:
    btf = Path("/sys/kernel/btf")
    if btf.is_dir() and any(p.name != "vmlinux" for p in btf.iterdir()):
        return None
    return "no kernel module with BTF is loaded (/sys/kernel/btf has only vmlinux)"


def _check_multi(name: str) -> Callable[[], str | None]:
    # kprobe.multi / uprobe.multi links: rawprobe's own probes create one.
    def check() -> str | None:
        from rawprobe import features
        f = getattr(features, name)()
        return None if f.supported else f"{f.name} links refused ({f.detail})"
    return check


def _check_kprobe_session() -> str | None:
    why = _check_multi("kprobe_multi")()
    if why is None and tuple(map(int, platform.release().split(".")[:2])) < (6, 10):
        why = "kprobe.session came in Linux 6.10"
    return why


# Feature name -> check; fentry asks rawprobe.features, which probes for real.
FEATURE_CHECKS: dict[str, Callable[[], str | None]] = {
    "kprobe_multi": _check_multi("kprobe_multi"),
    "uprobe_multi": _check_multi("uprobe_multi"),
    "kprobe_session": _check_kprobe_session,
    "kprobes": _check_kprobes,
    "fentry": _check_fentry,
    "module_btf": _check_module_btf,
    "bpf_lsm": _check_bpf_lsm,
    "bpf_lsm_inactive": _check_bpf_lsm_inactive,
}
_missing: dict[str, str | None] = {}


def why_missing(name: str) -> str | None:
    """Why the running kernel lacks feature `name` (cached), or None if it has it."""
    if name not in _missing:
        _missing[name] = FEATURE_CHECKS[name]()
    return _missing[name]


# Features Debian's 6.1 kernel lacks too: the VM run on 6.12 has them
# (.ci/run's 6.12 step names the files holding their tests).
VMTEST_612 = {"kprobe_multi", "uprobe_multi", "kprobe_session"}


def skip_reason(*features: str) -> str | None:
    for name in features:
        why = why_missing(name)
        if why is not None:
            where = (VMTEST.replace("6.1 kernel", "6.12 kernel (VM_KERNEL=6.12)")
                     if name in VMTEST_612 else VMTEST)
            return f"needs {name}; kernel {platform.release()}: {why}; {where}"
    return None


def skip_unless(*features: str) -> None:
    reason = skip_reason(*features)
    if reason:
        pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # @pytest.mark.vm("kprobes", ...) skips where a named feature is missing.
    for item in items:
        for mark in item.iter_markers("vm"):
            reason = skip_reason(*mark.args)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def load_test_module(name: str) -> None:
    """Load kernel module ``name`` and its dependencies (finit_module) from the
    test VM's own modules (tools/vmtest.py TEST_MODULES, in RAWPROBE_VM_MODULES);
    skips outside the VM, where no module can be loaded."""
    import ctypes
    import errno
    if Path("/sys/module", name).exists():
        return
    where = Path(os.environ.get("RAWPROBE_VM_MODULES", "/nonexistent"))
    if not IN_VM or not (where / f"{name}.ko").exists():
        pytest.skip(f"needs kernel module {name}: loaded only in the test VM, from "
                    f"tools/vmtest.py's TEST_MODULES; {VMTEST}")
    nr_finit_module = {"x86_64": 313}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    for mod in (where / "order").read_text().split():
        if Path("/sys/module", mod).exists():
            continue
        fd = os.open(where / f"{mod}.ko", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.syscall(nr_finit_module, fd, b"", 0) != 0:
                err = ctypes.get_errno()
                if err != errno.EEXIST:
                    pytest.fail(f"finit_module({mod}): {os.strerror(err)}")
        finally:
            os.close(fd)


@pytest.fixture(scope="session")
def missing_feature() -> Callable[[str], str | None]:
    """`missing_feature("kprobes")`: why the kernel lacks it, or None."""
    return why_missing


@pytest.fixture
def requires_kprobes() -> None:
    skip_unless("kprobes")


@pytest.fixture
def requires_fentry() -> None:
    skip_unless("fentry")


# ------------------------------------------------------------------ privileges --

@pytest.fixture(scope="session")
def bpf_privileges() -> None:
    """Skip unless this process may load BPF programs and open perf events."""
    from rawprobe.caps import missing_for_bpf
    if not missing_for_bpf():
        return
    pytest.skip("needs root (or CAP_BPF + CAP_PERFMON) to load BPF programs; run the tests as root")


def _read_kernel_config() -> dict[str, str] | None:
    """The running kernel's build configuration (CONFIG_X -> "y", "m", ...):
    /proc/config.gz, the VM's copy, or /boot/config-<release>; None if none."""
    import gzip
    paths = [os.environ.get("RAWPROBE_VM_KCONFIG", ""), "/proc/config.gz",
             f"/boot/config-{platform.release()}"]
    for path in filter(None, paths):
        try:
            raw = Path(path).read_bytes()
        except OSError:
            continue
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
        return dict(line.split("=", 1) for line in text.splitlines()
                    if line.startswith("CONFIG_") and "=" in line)
    return None


@pytest.fixture(scope="session")
def kernel_config() -> dict[str, str]:
    """The running kernel's .config as a dict (an oracle independent of the
    sysfs/tracefs files rawprobe looks at); skips the test without one."""
    config = _read_kernel_config()
    if config is None:
        pytest.skip("the kernel's build configuration is not readable (no /proc/config.gz "
                    f"or /boot/config-{platform.release()})")
    return config


@pytest.fixture(scope="session")
def vm_kernel() -> str:
    """The test VM's kernel release; skips the test outside the VM."""
    if not IN_VM:
        pytest.skip(f"checks the test VM itself, not this machine; {VMTEST}")
    return os.environ["RAWPROBE_VM_KERNEL"]


@pytest.fixture(autouse=True)
def _no_tool_left_armed():
    """A test that fails before its watch finished must not leave the tool armed
    (it would go on taxing every syscall and could act on a later test's target)."""
    yield
    import sys
    harness = sys.modules.get("harness")        # tests/targets/harness.py, if used
    if harness is not None:
        harness.kill_leftovers()
