"""mount(2) through cffi.  Mounts happen only inside a private mount namespace
(unshare -m) that dies with its process, so nothing outside the test changes."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from rawprobe.errors import SyscallError
from rawprobe._sys import fs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unshared(flags: list[str], code: str) -> subprocess.CompletedProcess:
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) to get a private mount namespace")
    out = subprocess.run(["unshare", *flags, sys.executable, "-c", code],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode and out.stderr.startswith("unshare:"):
        pytest.skip(f"cannot make a namespace: {out.stderr.strip()}")
    return out


def test_mount_with_flags_and_data_in_private_namespace():
    with tempfile.TemporaryDirectory() as d:
        code = (
            "import os\n"
            "from rawprobe._sys import fs\n"
            f"fs.mount('rawprobe-test', {d!r}, 'tmpfs', 1, b'size=1m,mode=0700')\n"  # MS_RDONLY
            "line = [l for l in open('/proc/self/mounts') if l.split()[1] == "
            f"{d!r}][-1]\n"
            "print(line.strip())\n")
        out = run_unshared(["-m", "--propagation", "private"], code)
        assert out.returncode == 0, out.stderr
        source, target, fstype, opts = out.stdout.split()[:4]
        assert (source, target, fstype) == ("rawprobe-test", d, "tmpfs")
        assert "ro" in opts.split(",") and "mode=700" in opts and "size=1024k" in opts
        # The mount stayed in the namespace.
        assert not any(l.split()[1] == d for l in open("/proc/self/mounts"))


def test_mount_errors_carry_errno_and_hints():
    with tempfile.TemporaryDirectory() as d:
        with pytest.raises(SyscallError) as ei:
            fs.mount("none", d, "rawprobe-no-such-fs", hint="try harder")
        assert ei.value.errno == errno.ENODEV and ei.value.call.startswith("mount ")
        assert "no 'rawprobe-no-such-fs' filesystem" in str(ei.value)
        assert str(ei.value).endswith("; try harder")
        with pytest.raises(SyscallError) as ei:
            fs.mount("none", os.path.join(d, "missing"), "tmpfs")
        assert ei.value.errno == errno.ENOENT and "does not exist" in str(ei.value)


def test_mount_without_cap_sys_admin_is_permission_denied():
    # A new user namespace has every capability, but not over the mount
    # namespace it came from (owned by the parent user namespace): EPERM.
    code = ("from rawprobe._sys import fs\nfrom rawprobe.errors import PermissionDeniedError\n"
            "try:\n    fs.mount('none', '/tmp', 'tmpfs')\n"
            "except PermissionDeniedError as e:\n    print('denied', e.errno, e)\n")
    out = run_unshared(["-U"], code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"denied {errno.EPERM} ")
    assert "CAP_SYS_ADMIN" in out.stdout and "CAP_BPF" not in out.stdout


def test_fs_type_reads_the_mount_table():
    """The innermost mount holding a path names its filesystem, also under a
    mount point whose name holds a space (written \\040 in mountinfo)."""
    with tempfile.TemporaryDirectory() as d:
        spaced = os.path.join(d, "a dir")
        os.mkdir(spaced)
        code = (
            "import os\n"
            "from rawprobe._sys import fs\n"
            f"fs.mount('bpf', {spaced!r}, 'bpf')\n"
            f"print(fs.fs_type({spaced!r}), fs.fs_type({spaced!r} + '/x/y'), "
            f"fs.fs_type({d!r}), fs.fs_type({spaced!r} + 'x'))\n")
        out = run_unshared(["-m", "--propagation", "private"], code)
        assert out.returncode == 0, out.stderr
        outside = fs.fs_type(d)
        assert outside not in (None, "bpf")
        assert out.stdout.split() == ["bpf", "bpf", outside, outside]
