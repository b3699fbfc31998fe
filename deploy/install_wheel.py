"""Install the rawprobe wheel into this Python: the container image's install step.

    python3 install_wheel.py rawprobe-VERSION-py3-none-any.whl

With pip (the official Python images), pip installs the wheel and fetches its
two dependencies.  Without pip (the offline Debian base of ``make base-image``,
whose Debian packages provide cffi's backend and pyelftools), the wheel, which
is pure Python, is unpacked into site-packages: all pip would do with it apart
from the ``rawprobe`` console script, which the image does not use (its
entrypoint is ``python3 -m rawprobe``).  Either way the files are byte-compiled
here, since the container's root file system may be read-only at run time, and
the interceptor's imports are checked, so a base without the dependencies fails
the build, not the first run.
"""
from __future__ import annotations

import compileall
import os
import subprocess
import sys
import sysconfig
import zipfile

# What `python3 -m rawprobe watch` imports that is not rawprobe's own: cffi's
# compiled backend (the generated ABI module needs nothing else of cffi).
CHECK = "import rawprobe.interceptor.cli, rawprobe._sys._native, _cffi_backend, elftools"


def has_pip() -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "--version"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def unpack(wheel: str, dest: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("/") or ".." in name.split("/") or ".data/" in name:
                sys.exit(f"install_wheel.py: {wheel} holds {name!r}, which a pure-Python "
                         "wheel of rawprobe never does")
        z.extractall(dest)
        info = next(n.split("/")[0] for n in z.namelist() if ".dist-info/" in n)
    with open(os.path.join(dest, info, "INSTALLER"), "w") as f:
        f.write("rawprobe install_wheel.py\n")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].endswith(".whl"):
        sys.exit("usage: install_wheel.py rawprobe-VERSION-py3-none-any.whl")
    wheel = argv[0]
    purelib = sysconfig.get_path("purelib")
    if has_pip():
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir",
                        "--disable-pip-version-check", "--root-user-action=ignore", wheel],
                       check=True)
    else:
        os.makedirs(purelib, exist_ok=True)
        unpack(wheel, purelib)
    compileall.compile_dir(os.path.join(purelib, "rawprobe"), quiet=1)
    subprocess.run([sys.executable, "-c", CHECK], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
