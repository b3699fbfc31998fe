"""What the kernel side reports, as plain Python objects, and the decoders.

``Intercept`` is one intercepted call; ``KernelSignal`` one signal generated for
or delivered to a handled process; ``KernelExit`` the in-kernel record of a handled
process's exit; ``Denial`` a later call of a process being denied (--action deny).
``decode(record)`` turns one ring buffer record of intercept.bpf.c into one of them;
the layouts are rawprobe/bpf_src/intercept.h's (every record starts with a u32 type;
little-endian, explicit padding, sizes 216 / 64 / 112 / 104).
"""
from __future__ import annotations

import struct

from .record import Record

RP_EV_INTERCEPT, RP_EV_SIGNAL, RP_EV_EXIT, RP_EV_DENY = 1, 2, 3, 4
RP_SIG_GENERATE, RP_SIG_DELIVER = 1, 2
RP_F_KERNEL_SIGNAL, RP_F_BUF_FAULT, RP_F_PROTECTED, RP_F_DEFERRED = 0x1, 0x2, 0x4, 0x8
RP_F_DENIED = 0x10
HOOK_NAMES = {1: "raw_tp", 2: "tracepoint", 3: "kprobe", 4: "fentry", 5: "lsm", 6: "fmod_ret"}

# struct rp_intercept_event (216): type tgid pid uid comm[16] syscall_nr hook flags
# signal_ret args[6] ktime_ns start_time start_boottime hit cgroup_id buf_len _pad0 buf[64]
# pid_ino
INTERCEPT = struct.Struct("<IIII16siIIi6QQQQQQII64sQ")
# struct rp_signal_event (64): type tgid pid kind sig result sender_tgid group
# ktime_ns intercept_ns comm[16]
SIGNAL = struct.Struct("<IIIIiiIIQQ16s")
# struct rp_exit_event (112): type tgid pid exit_code comm[16] exit_ns intercept_ns
# signal_ns kill_ns deliver_ns slipped after_signal hit start_time deliver_sig _pad0
EXIT = struct.Struct("<IIIi16sQQQQQQQQQiI")
# struct rp_deny_event (104): type tgid pid syscall_nr ktime_ns start_time args[6]
# comm[16] ret hook
DENY = struct.Struct("<IIIiQQ6Q16siI")
assert (INTERCEPT.size, SIGNAL.size, EXIT.size, DENY.size) == (216, 64, 112, 104)


class Intercept(Record):
    """One intercepted call."""
    __slots__ = (
        "tgid", "pid",         # process, and the calling thread
        "comm",
        "ktime_ns",            # the call, CLOCK_MONOTONIC (bpf_ktime_get_ns)
        "start_time",          # the leader's task->start_time: with tgid, the identity
                               # every record of this process carries (exit records too)
        "start_ns",            # the leader's start time for the /proc check ...
        "start_clock",         # ... on "monotonic" (start_time) or "boottime" (start_boottime)
        "pid_ino",             # pidfs inode of the leader's struct pid, 0 = unknown
        "nr",                  # syscall number; -1 for a kprobe/fentry hook
        "symbol",              # kprobe/fentry target
        "args",                # the six argument registers
        "data",                # first bytes of a write-like call's buffer
        "hit",                 # which matching call this was (skip + 1, ...)
        "kernel_signalled",    # --action kernel-signal: bpf_send_signal() was called
        "signal_ret",          # ... and returned this
        "signal_ns",           # when the kernel sent it, if known
        "protected",           # tgid 1 or in protected_tgids: the kernel withheld its signal
        "deferred",            # kernel-signal left this one to the tool (limits, credentials)
        "denied",              # --action deny: the kernel made this call fail
        "kernel_thread", "uid", "cgroup_id", "hook",
    )
    _defaults = {"start_time": 0, "start_clock": "monotonic", "pid_ino": 0, "nr": -1, "symbol": None,
                 "args": (), "data": b"", "hit": 0, "kernel_signalled": False,
                 "signal_ret": 0, "signal_ns": 0, "protected": False, "deferred": False,
                 "denied": False, "kernel_thread": False, "uid": -1,
                 "cgroup_id": 0, "hook": ""}


class Denial(Record):
    """A later call of a process being denied: it failed with ``ret`` (-errno)."""
    __slots__ = ("tgid", "pid", "comm", "nr", "args", "ktime_ns", "start_time", "ret", "hook")


class KernelSignal(Record):
    """A signal generated for (kind 1) or delivered to (kind 2) a handled process."""
    __slots__ = ("tgid", "pid", "kind", "sig", "result", "sender_tgid", "ktime_ns",
                 "intercept_ns")


class KernelExit(Record):
    """The kernel's record of a handled process's exit (CLOCK_MONOTONIC stamps)."""
    __slots__ = (
        "tgid",
        "exit_ns",             # the last thread passed sched_process_exit
        "signal_ns",           # first generate of the signal (0 = none seen)
        "exit_code",           # wait-status form: (code << 8) | termsig
        "slipped",             # calls after the intercepted one, before delivery
        "kill_ns",             # first generate of SIGKILL
        "deliver_ns",          # first delivery of the signal or SIGKILL
        "after_signal",        # calls after delivery (its cleanup)
        "intercept_ns", "deliver_sig",
        "start_time",          # the leader's task->start_time (identity, with tgid)
    )
    _defaults = {"start_time": 0, "signal_ns": 0, "exit_code": None, "slipped": None, "kill_ns": 0,
                 "deliver_ns": 0, "after_signal": 0, "intercept_ns": 0, "deliver_sig": 0}


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode(rec: bytes | memoryview, symbol: str | None = None):
    """One ring buffer record -> Intercept | KernelSignal | KernelExit | Denial | None."""
    if len(rec) < 4:
        return None
    kind = int.from_bytes(rec[:4], "little")
    if kind == RP_EV_INTERCEPT and len(rec) >= INTERCEPT.size:
        (_, tgid, pid, uid, comm, nr, hook, flags, sret, a0, a1, a2, a3, a4, a5, ktime,
         start, start_boot, hit, cgid, buf_len, _pad, buf, pid_ino) = INTERCEPT.unpack_from(rec)
        # On the signalling path: filled directly, not through Record's keyword loop.
        ev = Intercept.__new__(Intercept)
        ev.tgid, ev.pid, ev.comm, ev.ktime_ns = tgid, pid, _cstr(comm), ktime
        # start_boottime compares exactly with /proc's start ticks
        ev.start_time = start
        ev.start_ns = start_boot if start_boot else start
        ev.start_clock = "boottime" if start_boot else "monotonic"
        ev.pid_ino, ev.nr, ev.symbol = pid_ino, nr, symbol if nr < 0 else None
        ev.args = (a0, a1, a2, a3, a4, a5)
        ev.data = bytes(buf[:min(buf_len, len(buf))])
        ev.hit, ev.kernel_signalled = hit, bool(flags & RP_F_KERNEL_SIGNAL)
        ev.signal_ret, ev.signal_ns, ev.kernel_thread = sret, 0, False
        ev.protected = bool(flags & RP_F_PROTECTED)
        ev.deferred = bool(flags & RP_F_DEFERRED)
        ev.denied = bool(flags & RP_F_DENIED)
        ev.uid, ev.cgroup_id, ev.hook = uid, cgid, HOOK_NAMES.get(hook, str(hook))
        return ev
    if kind == RP_EV_DENY and len(rec) >= DENY.size:
        (_, tgid, pid, nr, ktime, start, a0, a1, a2, a3, a4, a5, comm, ret,
         hook) = DENY.unpack_from(rec)
        return Denial(tgid=tgid, pid=pid, comm=_cstr(comm), nr=nr,
                      args=(a0, a1, a2, a3, a4, a5), ktime_ns=ktime, start_time=start,
                      ret=ret, hook=HOOK_NAMES.get(hook, str(hook)))
    if kind == RP_EV_SIGNAL and len(rec) >= SIGNAL.size:
        (_, tgid, pid, skind, sig, result, sender, _group, ktime, ins,
         _comm) = SIGNAL.unpack_from(rec)
        return KernelSignal(tgid=tgid, pid=pid, kind=skind, sig=sig, result=result,
                            sender_tgid=sender, ktime_ns=ktime, intercept_ns=ins)
    if kind == RP_EV_EXIT and len(rec) >= EXIT.size:
        (_, tgid, _pid, code, _comm, exit_ns, ins, sig_ns, kill_ns, deliver_ns, slipped,
         after, _hit, start, dsig, _pad) = EXIT.unpack_from(rec)
        return KernelExit(tgid=tgid, exit_ns=exit_ns, signal_ns=sig_ns, exit_code=code,
                          slipped=slipped, kill_ns=kill_ns, deliver_ns=deliver_ns,
                          after_signal=after, intercept_ns=ins, deliver_sig=dsig,
                          start_time=start)
    return None
