"""Loading intercept.bpf.o, configuring it, and attaching one call hook.

Uses only rawprobe's public API: ``ObjectSpec.from_file`` -> set the ``.rodata``
configuration -> ``load()`` -> attach ONE call hook (``rp_sys_enter`` on the
``sys_enter`` raw tracepoint, ``rp_sys_enter_tp`` on ``syscalls/sys_enter_<name>``,
``rp_kprobe`` on ``SYMBOL+OFFSET``, or ``rp_fentry`` from intercept_fentry.bpf.o)
(for ``--syscall`` with ``--hook auto``, the cheapest that sees only that
syscall: :mod:`.hooks`) plus the bookkeeping programs (``signal_generate``, ``signal_deliver``,
``sched_process_exit`` raw tracepoints) that time the signal and the exit.

``detach_calls()`` removes only the call hook: targets already in flight keep
their signal and exit records until ``close()``.

With kernel-signal the program applies the tool's guards itself, at the call:
never the tool or its ancestors (``protected_tgids``) or pid 1, at most
``max_in_flight`` signalled processes not yet exited and ``--count`` signals in
all, and without CAP_KILL only processes of the tool's own user; what is over a
limit is left to the tool (``RP_F_DEFERRED``), which queues or drops it.

In a child pid namespace (pod mode) the program is given the namespace
(``pidns_ino``): it intercepts only the processes visible there and reports
them by their pids there, the pids every guard here uses.
"""
from __future__ import annotations

import os
import struct
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

if TYPE_CHECKING:
    from typing import Any

from .options import WatchOptions

OBJECT = "intercept.bpf.o"
FENTRY_OBJECT = "intercept_fentry.bpf.o"

ACTION_CODE = {"report": 0, "signal": 1, "kernel-signal": 2}
RP_SKIP_PER_PROCESS, RP_SKIP_GLOBAL = 0, 1
RP_CGROUP_SUBTREE = 2
BOOKKEEPING = (("rp_sig_generate", "signal_generate"), ("rp_sig_deliver", "signal_deliver"),
               ("rp_proc_exit", "sched_process_exit"))

# (buffer argument, length argument) of calls whose buffer is worth showing.
WRITE_LIKE = {"write": (1, 2), "pwrite64": (1, 2), "sendto": (1, 2), "mq_timedsend": (1, 2),
              "ksys_write": (1, 2), "vfs_write": (1, 2)}


def object_path(name: str = OBJECT) -> str:
    """The prebuilt object: $RAWPROBE_PREBUILT (a directory, e.g. build/ while changing
    the BPF sources), inside the package (wheel), or the source tree's prebuilt/."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    override = os.environ.get("RAWPROBE_PREBUILT")
    for cand in ((os.path.join(override, name),) if override else ()) + (
                 os.path.join(here, "prebuilt", name),
                 os.path.join(os.path.dirname(here), "prebuilt", name)):
        if os.path.exists(cand):
            return cand
    from ..errors import NotFoundError
    raise NotFoundError(f"{name} is missing from the rawprobe installation "
                        f"(looked in {os.path.join(here, 'prebuilt')}); reinstall rawprobe")


def syscall_arity(name: str) -> int:
    """Arguments of a syscall, from its tracepoint's format (6 if unknown)."""
    from .syscalls import tracepoint_for
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        try:
            with open(f"{root}/events/syscalls/{tracepoint_for(name)}/format") as f:
                return format_arity(f.read())
        except OSError:
            continue
    return 6


def format_arity(text: str) -> int:
    """The arguments a ``syscalls/sys_enter_*`` format lists (6 if it lists none):
    the fields after ``__syscall_nr``, but not the ``__data_loc`` copy of a user
    buffer that newer kernels append to some (write's ``__buf_val``)."""
    names = [ln.split(";")[0].split()[-1] for ln in text.splitlines()
             if ln.strip().startswith("field:") and "__data_loc" not in ln]
    if "__syscall_nr" in names:
        return min(6, len(names) - names.index("__syscall_nr") - 1)
    return 6


class Probe:
    """The kernel side of one ``watch``: loaded, armed, read, detached."""

    def __init__(self, opts: WatchOptions, action: str, self_tgid: int | None = None,
                 protected: frozenset[int] = frozenset(), max_in_flight: int | None = None,
                 may_kill_any: bool = True, pidns_ino: int = 0) -> None:
        """``action``: signal, kernel-signal or report (``--action auto`` resolved);
        ``max_in_flight``: the limit after the fd limit (default ``opts``');
        ``may_kill_any``: the tool has CAP_KILL (else kernel-signal keeps to the
        tool's own user's processes, as the kernel would for the tool);
        ``pidns_ino``: the tool's pid namespace when not the initial one (pod mode:
        records carry pids as seen there, and only processes visible there)."""
        self.opts = opts
        self.action = action
        self.self_tgid = os.getpid() if self_tgid is None else self_tgid
        self.protected = protected      # the tool and its ancestors
        self.max_in_flight = opts.max_in_flight if max_in_flight is None else max_in_flight
        self.may_kill_any = may_kill_any
        self.pidns_ino = pidns_ino
        self.coll: Any = None
        self.ring: Any = None
        self.call_links: list = []
        self.book_links: list = []
        self.hook = ""            # what was attached, for the "armed" line
        self.hook_reason = ""     # why, when --hook auto chose it
        self.symbol: str | None = None

    # -- configuration ---------------------------------------------------------------
    def _configure(self, spec: Any, nr: int, nargs: int, capture: tuple[int, int] | None) -> None:
        o = self.opts
        v = spec.variables

        def put(name: str, value: Any) -> None:
            v[name].set(value)

        if o.comm:
            name = os.fsencode(o.comm)
            put("target_comm", name.ljust(16, b"\0"))
            # compare the name and its NUL only: bytes after it are not always zero
            put("target_comm_mask", (b"\xff" * (len(name) + 1)).ljust(16, b"\0"))
            put("filter_comm", 1)
        if o.pids:
            put("filter_tgid", 1)
        if o.cgroup_id is not None:
            put("filter_cgroup", RP_CGROUP_SUBTREE)
            put("target_cgroup_id", o.cgroup_id)
            put("target_cgroup_level", o.cgroup_level)
        if o.uid is not None:
            put("filter_uid", 1)
            put("target_uid", o.uid)
        put("self_tgid", self.self_tgid)
        put("pidns_ino", self.pidns_ino)
        put("syscall_nr", nr)
        put("nargs", nargs)
        put("skip_count", o.skip)
        put("skip_mode", RP_SKIP_GLOBAL if o.skip_global else RP_SKIP_PER_PROCESS)
        put("action", ACTION_CODE[self.action])
        put("signal_nr", o.signal)
        if self.action == "kernel-signal":
            put("max_in_flight", self.max_in_flight)
            put("max_signals", o.count or 0)
            if not self.may_kill_any:
                put("check_cred", 1)
                put("tool_uid", os.getuid())
                put("tool_euid", os.geteuid())
        if o.pids:
            from .procinfo import TICK_NS, timens_offsets
            put("tick_ns", TICK_NS)
            put("boot_offset_ns", timens_offsets()[1])
        if capture:
            put("capture_len", 64)
            put("buf_arg", capture[0])
            put("len_arg", capture[1])

    def _fill_maps(self) -> None:
        if self.opts.pids:
            # each pid bound to the process that holds it now (its start time)
            from ..errors import NotFoundError
            from .procinfo import read_stat
            m = self.coll.maps["target_tgids"]
            for pid in self.opts.pids:
                st = read_stat(pid)
                if st is None:
                    raise NotFoundError(f"--pid {pid}: no such process (it has exited)")
                m.update(struct.pack("<I", pid), struct.pack("<Q", st.starttime))
        if self.protected and "protected_tgids" in self.coll.maps:
            # the kernel withholds kernel-signal from these (tgid 1 always)
            m = self.coll.maps["protected_tgids"]
            for pid in sorted(self.protected)[:256]:
                m.update(struct.pack("<I", pid), b"\x01")

    # -- arming ----------------------------------------------------------------------
    def open(self) -> str:
        """Load, configure and attach; returns a one-line description of the hook
        (and sets ``hook_reason`` when ``--hook auto`` chose it)."""
        o = self.opts
        if o.kprobe is not None:
            return self._open_function(o.kprobe, o.kprobe_offset, o.hook,
                                       capture=WRITE_LIKE.get(o.kprobe) if not o.kprobe_offset
                                       else None)
        if o.hook != "auto":
            return self._open_syscall(o.hook)
        from ..errors import NotSupportedError, PermissionDeniedError
        from .hooks import ORDER, candidates, reason
        passed: list[str] = []
        for hook, _, why_not in candidates(o.syscall):
            if not why_not:
                try:
                    desc = self._open_syscall(hook)
                except (NotSupportedError, PermissionDeniedError) as e:
                    if hook == ORDER[-1]:
                        raise               # the last resort's own error says it all
                    self.close()
                    why_not = str(e).split("\n")[0]
                else:
                    self.hook_reason = reason(o.syscall, hook, passed)
                    return desc
            passed.append(f"{hook}: {why_not}")
        raise AssertionError("the last hook in ORDER raises or returns")  # pragma: no cover

    def _load(self, name: str, call_prog: str, nr: int, nargs: int, capture,
              prepare=None) -> Any:
        # relative: a vendored copy (yourtool._vendor.rawprobe) uses itself
        from .. import ObjectSpec, RingBuffer
        spec = ObjectSpec.from_file(object_path(name))
        self._configure(spec, nr, nargs, capture)
        if self.opts.ring_size:
            spec.maps["events"].max_entries = self.opts.ring_size
        if prepare is not None:
            prepare(spec)
        # only the programs this watch attaches: each load is a verifier run
        self.coll = spec.load(programs=[call_prog, *(p for p, _ in BOOKKEEPING)])
        self._fill_maps()
        self.ring = RingBuffer(self.coll.maps["events"])
        return self.coll

    def _attach_bookkeeping(self) -> None:
        for prog, tp in BOOKKEEPING:
            self.book_links.append(self.coll.programs[prog].attach_raw_tracepoint(tp))

    def _open_syscall(self, hook: str) -> str:
        """Attach ``hook`` (raw_tp, tracepoint, kprobe or fentry) for ``--syscall``;
        every hook reports the syscall's number and its arguments, as many as it has."""
        o = self.opts
        from .syscalls import entry_symbol, tracepoint_for
        capture = WRITE_LIKE.get(o.syscall)
        nargs = syscall_arity(o.syscall)
        if hook in ("kprobe", "fentry"):
            # the entry symbol takes the caller's registers, where the arguments are
            return self._attach_function(hook, entry_symbol(o.syscall), 0, capture,
                                         o.syscall_nr, nargs, args_in_regs=True)
        self.symbol = None
        if hook == "tracepoint":
            coll = self._load(OBJECT, "rp_sys_enter_tp", o.syscall_nr, nargs, capture)
            self._attach_bookkeeping()
            tp = tracepoint_for(o.syscall)
            self.call_links.append(coll.programs["rp_sys_enter_tp"].attach_tracepoint("syscalls", tp))
            self.hook = f"tracepoint syscalls/{tp}"
        else:
            coll = self._load(OBJECT, "rp_sys_enter", o.syscall_nr, nargs, capture)
            self._attach_bookkeeping()
            self.call_links.append(coll.programs["rp_sys_enter"].attach_raw_tracepoint("sys_enter"))
            self.hook = f"raw_tp sys_enter (syscall {o.syscall_nr} = {o.syscall})"
        return self.hook

    def _open_function(self, symbol: str, offset: int, hook: str, capture) -> str:
        """``--kprobe SYMBOL[+OFFSET]``: fentry or a kprobe (``hook``; auto: fentry
        where the kernel has it and the offset is 0, else a kprobe)."""
        from ..errors import NotSupportedError, PermissionDeniedError
        tried = []
        if hook == "auto":
            from .. import features
            order = []
            if offset == 0:
                f = features.fentry()
                order += ["fentry"] if f else []
                tried += [] if f else [f"fentry: {f.detail}"]
            k = features.kprobe_pmu()
            if k or features.kprobe_events():
                order.append("kprobe")
            else:
                tried.append(f"kprobe: {k.detail}")
        else:
            order = [hook]
        for h in order:
            try:
                return self._attach_function(h, symbol, offset, capture, -1, 6)
            except (NotSupportedError, PermissionDeniedError) as e:
                tried.append(f"{h}: {e}")
                self.close()
        raise NotSupportedError("cannot hook a kernel function on this kernel (" +
                                "; ".join(tried) + "); use --syscall NAME instead")

    def _attach_function(self, hook: str, symbol: str, offset: int, capture, nr: int,
                         nargs: int, args_in_regs: bool = False) -> str:
        """One fentry or kprobe on ``symbol+offset``.  ``args_in_regs``: a syscall's
        entry symbol, whose one argument is the caller's ``struct pt_regs``."""
        self.symbol = symbol + (f"+{offset:#x}" if offset else "")

        def prepare(spec: Any) -> None:
            if args_in_regs:
                spec.variables["args_in_regs"].set(1)
            if hook == "fentry":
                spec.programs["rp_fentry"].attach_to = symbol
        if hook == "fentry":
            coll = self._load(FENTRY_OBJECT, "rp_fentry", nr, nargs, capture, prepare)
            self._attach_bookkeeping()
            self.call_links.append(coll.programs["rp_fentry"].attach())
            self.hook = f"fentry {symbol}"
        else:
            coll = self._load(OBJECT, "rp_kprobe", nr, nargs, capture, prepare)
            self._attach_bookkeeping()
            self.call_links.append(coll.programs["rp_kprobe"].attach_kprobe(symbol, offset))
            self.hook = f"kprobe {self.symbol}"
        return self.hook

    # -- reading ---------------------------------------------------------------------
    def read(self) -> list:
        """Everything the ring holds, decoded (Intercept / KernelSignal / KernelExit)."""
        from .events import decode
        out = []
        for rec in self.ring.read_batch():
            ev = decode(rec, self.symbol)
            if ev is not None:
                out.append(ev)
        return out

    def peek(self, fmt: struct.Struct) -> tuple | None:
        """The first pending ring record unpacked with ``fmt``, left in the ring."""
        return self.ring.peek(fmt)

    def read_batch(self) -> list:
        """Every pending ring record, raw."""
        return self.ring.read_batch()

    def missed(self) -> tuple[int, int]:
        """The kernel side's drop counters: (records lost because the ring buffer was
        full, matching processes not handled because the ``handled`` map was full).
        A counter that cannot be read raises: a drop must never read as 0."""
        v = self.coll.variables
        return v["lost_events"].get_int(), v["handled_full"].get_int()

    # -- the end ---------------------------------------------------------------------
    def detach_calls(self) -> None:
        for link in self.call_links:
            link.close()
        self.call_links.clear()

    def close(self) -> None:
        self.detach_calls()
        for link in self.book_links:
            link.close()
        self.book_links.clear()
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        if self.coll is not None:
            self.coll.close()
            self.coll = None
