#!/usr/bin/env python3
"""Mutation testing of the modules where a silent bug does harm: `make mutate`.

    tools/mutate.py [MODULE...]      # default: all of MODULES, in that order
    tools/mutate.py --list           # the modules and the tests each runs against
    tools/mutate.py --again MODULE   # the last run's survivors only, against the
                                     # tests as they are now (tests added since)

Each module is mutated alone by mutmut (pinned in the Makefile, which installs
it into build/mutate-venv: it is neither a runtime nor a test dependency), in a
scratch copy of the checkout under build/mutate/<module>/ (the checkout itself
is never touched), against the test files that exercise it (MODULES), so one
module costs minutes on two CPUs, not hours.  The score per module is printed:
killed / all mutants, where a timeout or a crash of the test process counts as
killed and "no tests" (no test of the selection reaches the mutated function)
as not.  Each module's survivors, as diffs, go to build/mutate/<module>/survivors.txt.

mutmut runs, for each mutant, only the tests that reached the mutated function
while it collected coverage.  It credits a function to the test during which it
ran, so a function called while a module- or session-scoped fixture was set up
is credited to the first test using that fixture only; this file is also a
pytest plugin (loaded into mutmut's runs) that widens each function's tests to
every test of the files that reached it, except for the modules in EXACT, whose
tests need no widening and would cost hours with it.

Needs root like the tests themselves (they load BPF programs).  Not part of
`make test` or CI: mutants run one at a time, niced.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "build" / "mutate"
PLUGIN = "rawprobe_mutate_plugin"
WIDEN_ENV = "RAWPROBE_MUTATE_WIDEN"     # "0": the plugin leaves mutmut's test choice alone

# the deny options' rules, tested beside the deny watch (in-process: parse_watch)
DENY_OPTIONS = tuple(f"tests/test_deny.py::{t}" for t in ("test_deny_options_refused",
                                                          "test_deny_options_accepted"))
# module -> the test files that exercise it (run for each of its mutants)
MODULES: dict[str, tuple[str, ...]] = {
    "rawprobe/maps.py": ("tests/test_load.py", "tests/test_ringbuf.py", "tests/test_pinning.py"),
    "rawprobe/btf/core.py": ("tests/test_core.py",),
    "rawprobe/ringbuf.py": ("tests/test_ringbuf.py", "tests/test_ringbuf_decoder.py",
                            "tests/test_perfbuf.py"),
    "rawprobe/_sys/errno.py": (*(f"tests/test_sys_ffi.py::{t}" for t in (
                                   "test_errno_translation", "test_errno_translation_rules",
                                   "test_permission_hint_says_what_this_process_lacks",
                                   "test_raise_errno_passes_every_option_on")),
                               "tests/test_sys.py", "tests/test_sys_fs.py",
                               "tests/test_sys_perf.py", "tests/test_sys_proc.py"),
    "rawprobe/interceptor/procinfo.py": ("tests/test_interceptor_tracker.py",
                                         "tests/test_interceptor_options.py"),
    # The CLI tests (test_cli.py, test_interceptor_safety.py) run the tool in a child
    # process, which mutmut's in-process coverage does not see, so they are credited
    # nothing; the tests named here drive the tracker in-process (on real processes,
    # one of them through the real BPF program and ring).
    "rawprobe/interceptor/tracker.py": (
        "tests/test_interceptor_tracker.py",
        "tests/test_interceptor_safety.py::"
        "test_drop_counters_are_read_and_reported_as_they_happen",
        "tests/test_cli.py::test_a_call_before_the_loop_is_written_out_at_once"),
    "rawprobe/interceptor/options.py": ("tests/test_interceptor_options.py", *DENY_OPTIONS),
    # --metrics' address parser is tested beside the endpoint
    "rawprobe/interceptor/optvalues.py": ("tests/test_interceptor_options.py",
                                          "tests/test_metrics.py", *DENY_OPTIONS),
}
# Modules whose tests call them only in the test's own body (no module- or session-
# scoped fixture does): each mutant runs just the tests that reached its function, not
# every test of their files (see pytest_sessionfinish).  Widened, each tracker mutant
# ran all of test_cli.py (the one in-process test there reaches nearly every tracker
# function) and each option parser's mutant all the slow hypothesis and output tests
# of the options file: hours on two CPUs.  Widened, procinfo's mutants (each given every
# test of both its files) all ended at once as "timeouts" (mutmut's runner refused
# that test list: BadTestExecutionCommandsException); no wider fixture calls procinfo.
EXACT = frozenset({"rawprobe/interceptor/tracker.py", "rawprobe/interceptor/options.py",
                   "rawprobe/interceptor/optvalues.py", "rawprobe/interceptor/procinfo.py"})
# Tests left out of a module's runs: they check, in a child `python -S`, what a module
# imports, and a mutated module imports mutmut's trampoline, which -S cannot find
# (every mutant would "die" there, so none would count; the unmutated run that collects
# coverage fails, and mutmut stops).  The options parse --pid with procinfo's help.
DESELECT: dict[str, tuple[str, ...]] = {
    m: ("tests/test_interceptor_options.py::test_plain_command_lines_import_no_argparse_nor_re",)
    for m in ("rawprobe/interceptor/options.py", "rawprobe/interceptor/optvalues.py",
              "rawprobe/interceptor/procinfo.py")}
# copied into each scratch checkout besides what mutmut copies (rawprobe/, tests/)
COPY = ("rawprobe", "tests", "prebuilt", "pyproject.toml")
DETECTED = {"killed", "timeout", "segfault", "suspicious"}


def setup_cfg(module: str, tests: tuple[str, ...]) -> str:
    lines = ["[mutmut]", "source_paths = rawprobe", f"only_mutate = {module}",
             "pytest_add_cli_args_test_selection ="]
    lines += [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args =", "    -p", f"    {PLUGIN}",
              # tests/conftest.py: failing properties end at once (no shrinking)
              "    --hypothesis-profile=mutate"]
    for t in DESELECT.get(module, ()):
        lines += ["    --deselect", f"    {t}"]
    lines += ["also_copy =", "    prebuilt", f"    {PLUGIN}.py",
              # fork from a process that collected the tests but ran none: no
              # cache (possible CPUs, kernel BTF) warmed by a test is inherited
              "process_isolation = forkserver",
              # a mutant that makes a test hang (a wait loop that never ends) is a
              # kill; 4x the unmutated tests' time finds it sooner than mutmut's 15x
              "timeout_multiplier = 4.0",
              # results are per scratch copy, made afresh each run
              "use_git_change_detection = false", ""]
    return "\n".join(lines)


def prepare(module: str) -> Path:
    d = scratch(module)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, d / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, d / name)
    shutil.copy2(Path(__file__), d / f"{PLUGIN}.py")
    (d / "setup.cfg").write_text(setup_cfg(module, MODULES[module]))
    return d


def statuses(d: Path, module: str) -> dict[str, str]:
    """mutant name -> status, from mutmut's record of the run."""
    from mutmut.stats import status_by_exit_code    # the venv's mutmut
    meta = json.loads((d / "mutants" / f"{module}.meta").read_text())
    return {k: status_by_exit_code[v] for k, v in meta["exit_code_by_key"].items()}


def scratch(module: str) -> Path:
    return SCRATCH / module.removeprefix("rawprobe/").replace("/", ".")


def survivors_of(d: Path, module: str) -> list[str]:
    return sorted(k for k, s in statuses(d, module).items() if s not in DETECTED)


def run(module: str, again: bool = False) -> tuple[int, int, Counter]:
    """Mutate ``module`` afresh; or, ``again``, run only the last run's survivors
    against the checkout's tests as they are now (the module's code unchanged)."""
    if again:
        d = scratch(module)
        names = survivors_of(d, module)
        shutil.copytree(ROOT / "tests", d / "tests", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        # coverage afresh: the recorded one credits a test only with the functions it
        # reached as it was, so a test strengthened since would not run on the others
        (d / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        print(f"== {module}: {len(names)} survivors again", flush=True)
    else:
        d = prepare(module)
        names = []
        print(f"== {module}: mutants against {' '.join(MODULES[module])}", flush=True)
    for attempt in (1, 2):
        # mutmut stops before any mutant when the unmutated tests fail (a timing
        # test on a loaded machine, say): say so, and try once more
        with open(d / "mutmut.log", "w") as log:
            env = dict(os.environ, **{WIDEN_ENV: "0" if module in EXACT else "1"})
            done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "1",
                                   *names],
                                  cwd=d, stdout=log, stderr=subprocess.STDOUT, check=False,
                                  env=env)
        if done.returncode == 0:
            break
        tail = (d / "mutmut.log").read_text(errors="replace").replace("\r", "\n")
        print(f"   mutmut failed (exit {done.returncode}, attempt {attempt}); the end of "
              f"{d / 'mutmut.log'}:\n" + "\n".join(tail.splitlines()[-15:]), flush=True)
    st = statuses(d, module)
    counts = Counter(st.values())
    survivors = sorted(k for k, s in st.items() if s not in DETECTED)
    with open(d / "survivors.txt", "w") as out:
        for name in survivors:
            shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=d,
                                   capture_output=True, text=True).stdout
            out.write(f"# {name}: {st[name]}\n{shown}\n")
    detected = sum(counts[s] for s in DETECTED)
    return detected, len(st), counts


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        for m, tests in MODULES.items():
            print(f"{m}: {' '.join(tests)}")
        return 0
    again = argv[:1] == ["--again"]
    argv = argv[again:]
    unknown = [m for m in argv if m not in MODULES]
    if unknown:
        print(f"mutate: not one of the modules: {' '.join(unknown)} (see --list)",
              file=sys.stderr)
        return 2
    rows = []
    for module in argv or list(MODULES):
        if again and not (scratch(module) / "mutants").is_dir():
            print(f"mutate: {module} has no earlier run to take again", file=sys.stderr)
            return 2
        detected, total, counts = run(module, again)
        rows.append((module, detected, total, counts))
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"   {detected}/{total} killed ({100 * detected / max(total, 1):.1f} %): {detail}",
              flush=True)
    print("\nmutation score per module (killed / mutants; survivors in build/mutate/*/survivors.txt)")
    for module, detected, total, _ in rows:
        print(f"  {module:36} {detected:5}/{total:<5} {100 * detected / max(total, 1):5.1f} %")
    return 0


# -- pytest plugin: loaded by name (PLUGIN) into mutmut's pytest runs -------------

def pytest_sessionfinish(session) -> None:
    """After mutmut's coverage run: every function reached by a test of a file is
    credited to every test of that file (see the module's docstring), unless the
    module is one of EXACT."""
    if os.environ.get(WIDEN_ENV) == "0":
        return
    try:
        from mutmut.state import state
    except ImportError:
        return
    credited = state().tests_by_mangled_function_name
    if not credited:
        return
    by_file: dict[str, set[str]] = {}
    for item in session.items:
        node = item.nodeid.removeprefix("mutants/")
        by_file.setdefault(node.split("::", 1)[0], set()).add(node)
    for tests in credited.values():
        for f in {t.split("::", 1)[0] for t in tests}:
            tests |= by_file.get(f, set())


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
