"""``--action deny`` and ``deny-signal``: the chosen call fails, in the kernel.

A signal arrives after the call has started; a deny makes the call itself fail
with ``--errno`` (EPERM by default), so it never happens.  The kernel side is
intercept_lsm.bpf.o (rawprobe/bpf_src/intercept_lsm.bpf.c): the same filters
and skip count as every watch, run at an LSM hook, whose program returns the
errno.  Two ways to put it there (``--hook``):

* ``lsm``: a BPF LSM program on the hook (5.7+; runs only where the BPF LSM
  is active: CONFIG_BPF_LSM=y and ``bpf`` in the ``lsm=`` boot list);
* ``fmod_ret``: an fmod_ret program on the LSM framework's ``security_<hook>``
  function (BPF trampolines, 5.7+), which the kernel allows without
  CONFIG_FUNCTION_ERROR_INJECTION and without the BPF LSM;

``auto`` tries them in that order.  (``bpf_override_return`` from a kprobe
would deny a syscall directly, but it needs CONFIG_BPF_KPROBE_OVERRIDE and
CONFIG_FUNCTION_ERROR_INJECTION, which Debian's kernels do not build; the
LSM hooks do not need them.)

``--syscall NAME`` is mapped to the hook that guards it (SYSCALL_HOOKS; the
program also checks the syscall number, so ``write`` denies write() and not
the writev() that reaches the same hook); ``--lsm HOOK`` names a hook
directly (any syscall, or only ``--syscall``'s if both are given).

Minimum kernel 5.17 (bpf_get_func_arg in trampoline programs).
"""
from __future__ import annotations

from ..errors import (NotFoundError, NotSupportedError, PermissionDeniedError, UsageError,
                      errno_name)
from .probe import WRITE_LIKE, Probe, syscall_arity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .options import WatchOptions

LSM_OBJECT = "intercept_lsm.bpf.o"
DENY_ACTIONS = ("deny", "deny-signal")
DENY_HOOKS = ("auto", "lsm", "fmod_ret")

# The access a file_permission(file, mask) call asks for (include/linux/fs.h).
ACCESS = {"MAY_READ": (1, 0x4), "MAY_WRITE": (1, 0x2)}    # (hook argument, bits)

# (syscalls, the LSM hooks that guard them -- the first the kernel has is used --,
# the access the hook must be asked for, "" = any).  The hook runs only once the
# call got that far: an unlink of a missing file fails (ENOENT) before it.
ROWS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("write pwrite64 writev pwritev pwritev2", ("file_permission",), "MAY_WRITE"),
    ("read pread64 readv preadv preadv2", ("file_permission",), "MAY_READ"),
    ("open openat openat2 creat", ("file_open",), ""),
    ("connect", ("socket_connect",), ""),
    ("bind", ("socket_bind",), ""),
    ("listen", ("socket_listen",), ""),
    ("accept accept4", ("socket_accept",), ""),
    ("sendto sendmsg sendmmsg", ("socket_sendmsg",), ""),
    ("recvfrom recvmsg recvmmsg", ("socket_recvmsg",), ""),
    ("socket socketpair", ("socket_create",), ""),
    ("execve execveat", ("bprm_check_security",), ""),
    ("kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal",
     ("task_kill",), ""),
    ("unlink unlinkat", ("path_unlink", "inode_unlink"), ""),
    ("rmdir", ("path_rmdir", "inode_rmdir"), ""),
    ("mkdir mkdirat", ("path_mkdir", "inode_mkdir"), ""),
    ("rename renameat renameat2", ("path_rename", "inode_rename"), ""),
    ("link linkat", ("path_link", "inode_link"), ""),
    ("symlink symlinkat", ("path_symlink", "inode_symlink"), ""),
    ("chmod fchmod fchmodat fchmodat2", ("path_chmod",), ""),
    ("chown fchown lchown fchownat", ("path_chown",), ""),
    ("truncate", ("path_truncate",), ""),
    ("ftruncate", ("file_truncate", "path_truncate"), ""),
    ("mmap", ("mmap_file",), ""),
    ("mprotect", ("file_mprotect",), ""),
    ("ioctl", ("file_ioctl",), ""),
    ("fcntl", ("file_fcntl",), ""),
    ("flock", ("file_lock",), ""),
    ("mount", ("sb_mount",), ""),
    ("umount2", ("sb_umount",), ""),
    ("setuid setreuid setresuid", ("task_fix_setuid",), ""),
    ("ptrace", ("ptrace_access_check",), ""),
    ("bpf", ("bpf",), ""),
    ("perf_event_open", ("perf_event_open",), ""),
    ("getpgid", ("task_getpgid",), ""),
    ("setpgid", ("task_setpgid",), ""),
    ("getsid", ("task_getsid",), ""),
    ("prctl", ("task_prctl",), ""),
)
SYSCALL_HOOKS: dict[str, tuple[tuple[str, ...], str]] = {
    name: (hooks, access) for names, hooks, access in ROWS for name in names.split()}

def check_deny_options(o: WatchOptions, given: set[str]) -> None:
    """The deny options' rules, for parse_watch (``given``: the fields given on the
    command line).  Refuses what cannot be meant; maps nothing yet (the kernel is
    asked at arming)."""
    deny = o.action in DENY_ACTIONS
    if not deny:
        for field, flag in (("lsm", "--lsm"), ("deny_errno", "--errno")):
            if field in given:
                raise UsageError(f"{flag} is for denying a call: add --action deny or "
                                 "deny-signal")
        if o.hook in ("lsm", "fmod_ret"):
            raise UsageError(f"--hook {o.hook} denies a call: add --action deny or "
                             "deny-signal")
        return
    if o.kprobe is not None:
        raise UsageError(f"--action {o.action} denies at an LSM hook: name the call with "
                         "--syscall NAME or --lsm HOOK, not --kprobe")
    if o.hook not in DENY_HOOKS:
        raise UsageError(f"--action {o.action} denies at an LSM hook: --hook "
                         f"{', '.join(DENY_HOOKS)}, not {o.hook}")
    if o.action == "deny":
        for field, flag in (("signal", "--signal"), ("kill_after_ns", "--kill-after")):
            if field in given:
                raise UsageError(f"--action deny signals nobody: drop {flag}, or use "
                                 "--action deny-signal")
    if o.lsm is None and o.syscall not in SYSCALL_HOOKS:
        raise UsageError(
            f"--action {o.action}: no LSM hook guards {o.syscall}(); name a hook with "
            f"--lsm HOOK, or deny one of: {', '.join(sorted(SYSCALL_HOOKS))}")


class DenyProbe(Probe):
    """The kernel side of a deny watch: intercept_lsm.bpf.o on one LSM hook.

    ``action``: deny (the kernel only denies; its records are reported) or
    deny-signal (it also signals at the call, as kernel-signal does)."""

    def __init__(self, opts: WatchOptions, action: str, **kw: Any) -> None:
        # the kernel side's own action: deny is decided by deny_ret, not by it
        super().__init__(opts, "kernel-signal" if action == "deny-signal" else "report", **kw)

    def _hook_and_access(self) -> tuple[tuple[str, ...], str]:
        o = self.opts
        row = SYSCALL_HOOKS.get(o.syscall or "")
        if o.lsm is None:
            return row                                  # parse_watch checked it exists
        return (o.lsm,), row[1] if row and o.lsm in row[0] else ""

    def open(self) -> str:
        """Load, configure and attach; returns a one-line description of the hook."""
        o = self.opts
        hooks, access = self._hook_and_access()
        routes = ["lsm", "fmod_ret"] if o.hook == "auto" else [o.hook]
        tried = []
        for route in routes:
            try:
                desc = self._open_route(route, hooks, access)
            except (NotSupportedError, PermissionDeniedError, NotFoundError) as e:
                tried.append(f"{route}: {e}")
                self.close()
                continue
            if o.hook == "auto":
                self.hook_reason = "auto: the BPF LSM runs here" if route == "lsm" else \
                    f"auto: fmod_ret, since {tried[0]}"
            return desc
        raise NotSupportedError("cannot deny a call on this kernel (" + "; ".join(tried) +
                                "); `python -m rawprobe features` says what it has")

    def _open_route(self, route: str, hooks: tuple[str, ...], access: str) -> str:
        o = self.opts
        hook, target = kernel_hook(route, hooks)
        prog = "rp_lsm" if route == "lsm" else "rp_fmod_ret"
        arg, bits = ACCESS.get(access, (-1, 0))
        nr = o.syscall_nr if o.syscall_nr is not None else -1

        def prepare(spec: Any) -> None:
            spec.programs[prog].attach_to = target
            v = spec.variables
            v["deny_ret"].set(-o.deny_errno)
            v["mask_arg"].set(arg)
            v["mask"].set(bits)

        capture = WRITE_LIKE.get(o.syscall) if o.syscall else None
        nargs = syscall_arity(o.syscall) if o.syscall else 6
        coll = self._load(LSM_OBJECT, prog, nr, nargs, capture, prepare)
        self._attach_bookkeeping()
        self.call_links.append(coll.programs[prog].attach())
        self.symbol = hook
        where = f"in {o.syscall}()" if o.syscall else "in any syscall"
        self.hook = f"{route} {target}{f' ({access})' if access else ''} {where}"
        return self.hook

    def detach_calls(self) -> None:
        """No new targets; those being denied stay denied until they exit."""
        if self.coll is not None:
            self.coll.variables["intake_closed"].set(1)

    def release(self) -> None:
        """Take the deny off: every process's calls succeed from now on."""
        for link in self.call_links:
            link.close()
        self.call_links.clear()

    def close(self) -> None:
        self.release()
        super().close()


def deny_event(call: Any, hit: int | None, deny_errno: int, syscall_name: Any) -> dict:
    """The ``deny`` event of one denied call (an Intercept: the first of its
    process, with its ``hit``; or a Denial: a later one)."""
    rec = {"event": "deny", "pid": call.tgid, "comm": call.comm, "tid": call.pid}
    if call.nr >= 0:
        rec["syscall"] = syscall_name(call.nr) if syscall_name else call.nr
        rec["nr"] = call.nr
    rec["errno"] = errno_name(deny_errno)
    if hit is not None:
        rec["hit"] = hit
    rec["args"] = list(call.args)
    rec["hook"] = call.hook
    rec["ktime_ns"] = call.ktime_ns
    return rec


def kernel_hook(route: str, hooks: tuple[str, ...]) -> tuple[str, str]:
    """(hook, what the program attaches to) for the first of ``hooks`` this kernel
    has on ``route`` (``rawprobe.lsms.hook_target``)."""
    from .. import lsms
    missing = []
    for hook in hooks:
        try:
            return hook, lsms.hook_target(route, hook)
        except NotFoundError as e:
            missing.append(str(e))
    raise NotFoundError("; ".join(missing))
