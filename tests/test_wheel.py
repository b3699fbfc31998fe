"""The wheel, as a user gets it (issue 4: "the demo runs from a wheel installed into
a fresh venv, outside the source tree, with no clang on PATH").

One module-scoped fixture builds the wheel and installs it into a fresh venv; the
tests then run the installed ``rawprobe`` from a scratch directory, with PYTHONPATH
and RAWPROBE_* unset (but RAWPROBE_CACHE_DIR, a directory of its own) and every PATH
directory holding a clang removed, so nothing can come from the checkout or be
compiled, and nothing is left in the machine's caches.

Speed (this runs in every CI run): both venvs are made ``--without-pip`` (no
ensurepip) and driven by this interpreter's pip through ``pip --python``; the
wheel is built by calling the PEP 517 hook of setuptools in a separate build venv
(one process, no build isolation) while the venv under test, which holds only
rawprobe and its dependencies, fetches those.  Needs an index for setuptools, cffi
and pyelftools; skipped with pip's own words when none can be reached.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Shipped objects: the repository's prebuilt/ becomes the package's prebuilt/.
PREBUILT = ("intercept.bpf.o", "intercept_fentry.bpf.o", "intercept_lsm.bpf.o", "manifest.json")
RUNTIME_DISTS = {"rawprobe", "cffi", "pycparser", "pyelftools"}   # pycparser: cffi's
NO_INDEX = ("Could not find a version", "No matching distribution", "NewConnectionError",
            "Network is unreachable", "Temporary failure in name resolution",
            "Max retries exceeded", "ConnectTimeout", "ReadTimeout")


def _run(cmd: list[str], *, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kw)


def _pip_python_ok() -> bool:
    """This interpreter's pip can drive another environment (``--python``, pip 22.3+)."""
    try:
        import pip
    except ImportError:
        return False
    return tuple(int(x) for x in re.findall(r"\d+", pip.__version__)[:2]) >= (22, 3)


def _make_venv(path: Path) -> tuple[Path, list[str]]:
    """A fresh venv at ``path``: its python and the pip command that installs into it."""
    with_pip = not _pip_python_ok()
    r = _run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), path])
    if r.returncode != 0:
        pytest.skip(f"cannot create a venv with {sys.executable}: {r.stderr.strip()[-300:]}")
    python = path / "bin" / "python"
    pip = ([python, "-m", "pip"] if with_pip
           else [sys.executable, "-m", "pip", "--python", python])
    return python, [str(p) for p in pip] + ["--disable-pip-version-check"]


def _pip_install(pip: list[str], *args: str) -> None:
    r = _run([*pip, "install", "-q", "--no-compile", *args], timeout=600)
    if r.returncode != 0:
        if any(s in r.stderr for s in NO_INDEX):
            pytest.skip(f"pip cannot reach a package index for {' '.join(args)}: "
                        f"{r.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install {' '.join(args)} failed:\n{r.stderr}")


def _path_without_clang() -> str:
    def has_clang(d: str) -> bool:
        try:
            return any(n == "clang" or re.fullmatch(r"clang-\d+", n) for n in os.listdir(d))
        except OSError:
            return False
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not has_clang(d))


def _source_copy(dest: Path) -> Path:
    """What the build reads, copied out of the checkout: the top-level files, rawprobe/
    and prebuilt/.  Building in the checkout itself would leave setuptools' build/lib
    in the Makefile's build/ (stale files there leak into later wheels) and an
    egg-info beside the package."""
    dest.mkdir()
    for p in ROOT.iterdir():
        if p.is_file():
            shutil.copy2(p, dest / p.name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("rawprobe", "prebuilt"):
        shutil.copytree(ROOT / d, dest / d, ignore=ignore)
    return dest


def _build_wheel(tmp: Path) -> tuple[Path, Path]:
    src = _source_copy(tmp / "src")
    python, pip = _make_venv(tmp / "build-venv")
    _pip_install(pip, "setuptools>=77")
    hook = ("import sys; from setuptools import build_meta as b; "
            "print(b.build_wheel(sys.argv[1]))")
    r = _run([python, "-c", hook, tmp / "dist"], cwd=src)
    assert r.returncode == 0, f"building the wheel failed:\n{r.stderr[-3000:]}"
    return tmp / "dist" / r.stdout.strip().splitlines()[-1], src


def _runtime_venv(path: Path) -> tuple[Path, list[str]]:
    """The venv under test, its dependencies fetched while the wheel builds (read from
    pyproject.toml; installing the wheel afterwards still resolves its own metadata)."""
    python, pip = _make_venv(path)
    try:
        import tomllib
    except ImportError:     # Python 3.10: the wheel install fetches them
        return python, pip
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    _pip_install(pip, *deps)
    return python, pip


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    missing = [n for n in PREBUILT if not (ROOT / "prebuilt" / n).is_file()]
    assert not missing, f"prebuilt/ lacks {missing}: run make prebuilt"
    tmp = tmp_path_factory.mktemp("wheel")
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:       # mostly waiting on pip: overlap the two
        building = pool.submit(_build_wheel, tmp)
        preparing = pool.submit(_runtime_venv, tmp / "venv")
        wheel, src = building.result()
        t_wheel = time.monotonic() - t0
        python, pip = preparing.result()
    _pip_install(pip, str(wheel))
    print(f"wheel built in {t_wheel:.1f} s, installed in a fresh venv after "
          f"{time.monotonic() - t0:.1f} s")

    cwd = tmp / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "RAWPROBE_")) and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join([str(python.parent), _path_without_clang()])
    env["RAWPROBE_CACHE_DIR"] = str(tmp / "cache")     # none of the machine's caches

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run(list(args), cwd=cwd, env=env, timeout=timeout)

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped = {n: z.read(n) for n in names if n.startswith("rawprobe/prebuilt/")}
        meta = {n.split("/", 1)[1]: z.read(n).decode() for n in names if ".dist-info/" in n}
    return SimpleNamespace(wheel=wheel, src=src, names=names, shipped=shipped, meta=meta,
                           python=python, bin=python.parent, cwd=cwd, env=env, run=run)


# -- what the wheel holds ------------------------------------------------------

def test_wheel_ships_every_module_and_the_bpf_objects_inside_the_package(installed):
    names, src = installed.names, installed.src     # src: the checkout, as copied
    expected = {p.relative_to(src).as_posix() for p in (src / "rawprobe").rglob("*.py")}
    assert expected - names == set(), ("modules missing from the wheel: add their package "
                                       "to [tool.setuptools] packages in pyproject.toml")
    sources = {p.relative_to(src).as_posix()
               for pat in ("*.c", "*.h") for p in (src / "rawprobe" / "bpf_src").glob(pat)}
    assert sources and sources <= names
    assert set(installed.shipped) == {f"rawprobe/prebuilt/{n}" for n in PREBUILT}
    for n in PREBUILT:   # (the copy built from: prebuilt/ may be being rebuilt meanwhile)
        assert installed.shipped[f"rawprobe/prebuilt/{n}"] == (src / "prebuilt" / n).read_bytes()
    manifest = json.loads(installed.shipped["rawprobe/prebuilt/manifest.json"])
    for obj, info in manifest["objects"].items():
        data = installed.shipped[f"rawprobe/prebuilt/{obj}"]
        assert hashlib.sha256(data).hexdigest() == info["sha256"], \
            f"{obj} is not what manifest.json says"
    stray = {n for n in names if n.split("/", 1)[0] != "rawprobe" and ".dist-info/" not in n}
    assert not stray and not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_wheel_metadata(installed):
    meta = installed.meta["METADATA"]
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]

    def names(extra: str | None) -> list[str]:
        return sorted(re.match(r"[A-Za-z0-9_.-]+", r)[0] for r in requires
                      if (f'extra == "{extra}"' in r if extra else "extra ==" not in r))
    assert names(None) == ["cffi", "pyelftools"]
    assert names("test") == ["hypothesis", "pytest"]
    assert names("metrics") == ["prometheus_client"]
    assert len(requires) == 5, requires       # no other extra
    scripts = installed.meta["entry_points.txt"]
    assert re.search(r"^\[console_scripts\]\s*\nrawprobe = rawprobe\.__main__:main$",
                     scripts, re.M)


# -- the installed package, run from elsewhere -----------------------------------

def test_runs_from_the_venv_not_the_checkout(installed):
    assert shutil.which("clang", path=installed.env["PATH"]) is None
    assert shutil.which("clang-19", path=installed.env["PATH"]) is None
    assert ROOT not in installed.cwd.parents
    code = ("import importlib.metadata as md, pkgutil, importlib, rawprobe, rawprobe._sys._ffi\n"
            "from rawprobe.interceptor import probe\n"
            "mods = [m.name for m in pkgutil.walk_packages(rawprobe.__path__, 'rawprobe.')]\n"
            "for m in mods: importlib.import_module(m)\n"
            "print(rawprobe.__file__); print(probe.object_path())\n"
            "print(probe.object_path('intercept_fentry.bpf.o')); print(' '.join(mods))\n"
            "print(' '.join(sorted(d.metadata['Name'].lower() for d in md.distributions())))\n")
    r = installed.run(installed.python, "-c", code)
    assert r.returncode == 0, r.stderr
    init, obj, fentry, mods, dists = r.stdout.split("\n")[:5]
    pkg = Path(init).parent
    assert installed.python.parent.parent in pkg.parents, f"rawprobe imported from {pkg}"
    assert Path(obj) == pkg / "prebuilt" / "intercept.bpf.o"
    assert Path(fentry) == pkg / "prebuilt" / "intercept_fentry.bpf.o"
    src = installed.src / "rawprobe"
    dotted = (".".join(("rawprobe", *p.relative_to(src).with_suffix("").parts))
              for p in src.rglob("*.py"))
    expected = {m.removesuffix(".__init__") for m in dotted} - {"rawprobe"}
    assert set(mods.split()) == expected, "every module of the checkout imports from the wheel"
    assert set(dists.split()) == RUNTIME_DISTS


def test_cli_help_and_features(installed):
    r = installed.run(installed.bin / "rawprobe", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: rawprobe"), r.stderr
    r = installed.run(installed.bin / "rawprobe", "watch", "--help")
    assert r.returncode == 0 and "--comm" in r.stdout and "--kill-after" in r.stdout, r.stderr

    r = installed.run(installed.python, "-m", "rawprobe", "features")
    assert r.returncode == 0, r.stderr
    first, *rows = r.stdout.splitlines()
    assert first == f"kernel {os.uname().release} ({os.uname().machine})"
    # the kernel's lines, then what this process lacks (rawprobe.container)
    at = next(i for i, row in enumerate(rows) if row.startswith("this process (uid "))
    rows, process = rows[:at], rows[at + 1:]
    assert process and all(re.fullmatch(r"(\S.*?)\s+(ok|no)\s+(\S.*)", row) for row in process)
    parsed = {}
    for row in rows:
        m = re.fullmatch(r"(\S.*?)\s+(yes|no)\s+(\S.*)", row)
        assert m, f"unexpected features line {row!r}"
        parsed[m[1]] = m[2]
    from rawprobe.features import PROBES   # the checkout's list, same version
    assert parsed.pop("hook auto, --syscall write") == "yes"   # the interceptor's conclusion
    assert len(parsed) == len(PROBES)
    if os.geteuid() == 0:   # what the demo stands on
        for name in ("BTF", "raw tracepoints", "ring buffer map", "pidfd"):
            assert parsed.get(name) == "yes", f"{name}: {parsed.get(name)}"


def test_import_stays_light(installed):
    code = "import rawprobe, sys; print(' '.join(sorted(sys.modules)))"
    installed.run(installed.python, "-c", code)        # first run writes the .pyc files
    r = installed.run(installed.python, "-X", "importtime", "-c", code)
    assert r.returncode == 0, r.stderr
    mods = set(r.stdout.split())
    ours = {m for m in mods if m.startswith("rawprobe")}
    assert ours == {"rawprobe", "rawprobe.errors"}
    assert not {"cffi", "_cffi_backend", "elftools", "ctypes", "json", "subprocess"} & mods
    cumulative = {line.rsplit("|", 1)[1].strip(): int(line.split("|")[1])
                  for line in r.stderr.splitlines() if line.startswith("import time:")
                  and line.split("|")[1].strip().isdigit()}
    print(f"import rawprobe: {cumulative['rawprobe'] / 1000:.1f} ms cumulative")


# -- the demo --------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the demo loads BPF programs: needs root (CAP_BPF + CAP_PERFMON)")
CLEANUP_MS = 250          # the demo target's cleanup after SIGTERM (interceptor/demo.py)
KILL_AFTER_MS = 2000      # the demo's SIGKILL deadline


@needs_root
def test_demo_from_the_wheel(installed):
    r = installed.run(installed.python, "-m", "rawprobe")
    assert r.returncode == 0, f"demo exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    out = r.stdout
    m = re.search(r"^intercept\s+pid (\d+) \((rpdemo_[0-9a-f]{8})\) .*\bwrite\(", out, re.M)
    assert m, f"no intercept line:\n{out}"
    pid, comm = m[1], m[2]
    assert re.search(rf"^signal\s+pid {pid} \({comm}\) SIGTERM", out, re.M), out
    m = re.search(rf"^exit\s+pid {pid} \({comm}\) .*time to exit ([\d.]+) ms \(kernel\), "
                  rf"([\d.]+) ms \(pidfd\)", out, re.M)
    assert m, f"no exit line with both measures:\n{out}"
    kernel_ms = float(m[1])
    assert CLEANUP_MS <= kernel_ms < KILL_AFTER_MS
    assert re.search(r"^summary: intercepted 1, signalled 1, exited 1", out, re.M), out
    m = re.search(r"^The target took ([\d.]+) ms to exit after SIGTERM \(kernel clock\)", out, re.M)
    assert m and abs(float(m[1]) - kernel_ms) <= 0.1, out


@needs_root
def test_demo_json_from_the_wheel(installed):
    r = installed.run(installed.python, "-m", "rawprobe", "demo", "--json")
    assert r.returncode == 0, f"demo --json exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    by = {}
    for e in events:
        by.setdefault(e["event"], []).append(e)
    assert len(by.get("intercept", [])) == 1, events
    hit = by["intercept"][0]
    assert hit["comm"].startswith("rpdemo_") and hit["syscall"] == "write" and hit["hit"] == 1
    (sig,) = by["signal"]
    assert sig["pid"] == hit["pid"] and sig["signal"] == "SIGTERM" and sig["latency_us"] > 0
    (ex,) = by["exit"]
    assert ex["pid"] == hit["pid"] and ex["escalated"] is False and ex["exit_code"] == 143
    assert CLEANUP_MS * 1000 <= ex["time_to_exit_us"] < KILL_AFTER_MS * 1000
    assert CLEANUP_MS * 1000 <= ex["time_to_exit_pidfd_us"] < KILL_AFTER_MS * 1000
    assert not by.get("refused") and not by.get("error") and not by.get("escalate")
    (summary,) = by["summary"]
    assert summary["counts"]["exited"] == 1 and summary["time_to_exit_us"]["n"] == 1
