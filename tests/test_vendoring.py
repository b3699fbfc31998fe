"""rawprobe vendored into another package, as README ("Vendoring") says:
``yourtool/_vendor/rawprobe`` (the package) with its prebuilt objects in
``yourtool/_vendor/rawprobe/prebuilt`` (where the wheel puts them).

Both the loader and the interceptor run from the vendored copy, in interpreters
where importing ``rawprobe`` by its top-level name fails (a meta path finder
refuses it): every import inside the package must be relative, or the vendored
code would run another installed copy, or none.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "targets"))
from harness import SLOW, Watch, targets, unique_comm  # noqa: E402,F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF and signals)")

# Run first in each interpreter: no top-level rawprobe, and yourtool importable.
PRELUDE = """\
import sys
sys.path.insert(0, {where!r})
class _NoTopLevelRawprobe:
    def find_spec(self, name, path=None, target=None):
        if name == "rawprobe" or name.startswith("rawprobe."):
            raise ImportError(f"import of {{name}}: the vendored copy must not import "
                              "rawprobe by its top-level name")
sys.meta_path.insert(0, _NoTopLevelRawprobe())
"""


@pytest.fixture(scope="module")
def vendored(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("vendoring")
    vendor = where / "yourtool" / "_vendor"
    vendor.mkdir(parents=True)
    (where / "yourtool" / "__init__.py").write_text("")
    (vendor / "__init__.py").write_text("")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "rawprobe", vendor / "rawprobe", ignore=ignore)
    shutil.copytree(ROOT / "prebuilt", vendor / "rawprobe" / "prebuilt", ignore=ignore)
    return where


def python_c(where: Path, code: str) -> list[str]:
    return [sys.executable, "-c", PRELUDE.format(where=str(where)) + code]


def test_the_loader_runs_from_the_vendored_copy(vendored):
    code = f"""
import os
from yourtool._vendor import rawprobe
spec = rawprobe.ObjectSpec.from_file({str(ROOT / "tests" / "bpf" / "load_basic.bpf.o")!r})
spec.variables["target_tgid"].set(os.getpid())
with spec.load(programs=["count_getppid"]) as coll:
    link = coll.programs["count_getppid"].attach()
    for _ in range(3):
        os.getppid()
    print(coll.variables["hits"].get_int(), type(coll).__module__)
    link.close()
"""
    r = subprocess.run(python_c(vendored, code), capture_output=True, text=True,
                       timeout=60 * SLOW, cwd=str(vendored), env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "yourtool._vendor.rawprobe.collection"], r.stdout


def test_the_interceptor_runs_from_the_vendored_copy(vendored, targets):
    comm = unique_comm()
    t = targets(comm, "--cleanup-ms", "50")
    code = """
from yourtool._vendor.rawprobe.__main__ import main
status = main(sys.argv[1:])
sys.stderr.write("modules " + " ".join(sorted(m for m in sys.modules
                                              if "rawprobe" in m.split("."))) + "\\n")
sys.exit(status)
"""
    w = Watch(command=python_c(vendored, code) + ["watch", "--comm", comm, "--count", "1",
                                                  "--json"])
    t.go()
    assert w.finish() == 0, w.stderr
    assert w.of("signal", t.pid) and w.of("exit", t.pid) and not t.alive(), w.events
    modules = next(ln for ln in w.stderr.splitlines() if ln.startswith("modules ")).split()[1:]
    assert modules and all(m.startswith("yourtool._vendor.rawprobe") for m in modules), modules


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RAWPROBE_"))}

