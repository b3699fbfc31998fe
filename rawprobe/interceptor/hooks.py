"""``--hook auto`` for a ``--syscall`` watch: which call hook, and why.

The cheapest hook that runs only when the watched syscall is called, in this
order (figures in docs/performance.md, from tools/bench_intercept.py):

1. fentry on the syscall's entry symbol (``__x64_sys_write``): a BPF
   trampoline called straight from the function's first instruction.  Needs
   BPF trampolines (5.5+; the fentry object needs 5.17) and a kernel that
   allows them (this project's development machine answers EPERM).
2. The per-syscall tracepoint ``syscalls/sys_enter_<name>``: needs tracefs
   (mounted when it is not, as every tracepoint attach does) and, to find the
   event, a tracefs this user may enter (root-only by default).
3. A kprobe on the entry symbol: needs kprobes (CONFIG_KPROBES).
4. The ``sys_enter`` raw tracepoint, the last resort: every syscall of every
   process on the machine runs the program, which filters on the number.

Each hook reports the same events: kprobe and fentry read the syscall's
arguments from the caller's registers (intercept.bpf.c, ``args_in_regs``).
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True
if TYPE_CHECKING:
    from typing import Iterator

ORDER = ("fentry", "tracepoint", "kprobe", "raw_tp")


def candidates(syscall: str, mount: bool = True) -> Iterator[tuple[str, str, str]]:
    """``(hook, what it attaches to, why not)`` in :data:`ORDER`, why-not empty
    where the hook looks usable before loading anything.  Lazy: a caller that
    stops at the first usable hook pays for no later check.  ``mount``: mount
    tracefs when it is not (False: say it is not mounted)."""
    from .. import features

    from .syscalls import entry_symbol, tracepoint_for
    symbol = entry_symbol(syscall)
    for hook in ORDER:
        if hook == "fentry":
            f, target = features.fentry_on(symbol), symbol
        elif hook == "tracepoint":
            target = "syscalls/" + tracepoint_for(syscall)
            f = features.tracepoint(*target.split("/"), mount=mount)
        elif hook == "kprobe":
            f, target = features.kprobe_on(symbol), symbol
        else:
            yield hook, "sys_enter", ""
            return
        yield hook, target, "" if f else f.detail


def reason(syscall: str, hook: str, passed: list[str]) -> str:
    """Why ``--hook auto`` chose ``hook``; ``passed``: "hook: why not" for each
    hook before it in ORDER."""
    if hook == "raw_tp":
        head = f"auto: every syscall runs it, no hook here sees {syscall}() alone"
    elif not passed:
        return f"auto: the cheapest hook that sees {syscall}() alone"
    else:
        head = f"auto: the cheapest hook here that sees {syscall}() alone"
    return head + "; " + "; ".join(passed)


def auto_row(syscall: str = "write") -> tuple[str, bool, str]:
    """``python -m rawprobe features``' line: what ``--hook auto`` would attach
    for ``--syscall SYSCALL`` here and why (nothing loaded but the feature
    probes, tracefs not mounted)."""
    passed = []
    for hook, target, why_not in candidates(syscall, mount=False):
        if not why_not:
            return (f"hook auto, --syscall {syscall}", True,
                    f"{hook} {target} ({reason(syscall, hook, passed)})")
        passed.append(f"{hook}: {why_not}")
    raise AssertionError("raw_tp is always a candidate")     # pragma: no cover
