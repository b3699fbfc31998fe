"""libbpf's ``SEC()`` conventions: ELF section name -> program type, attach type, target.

The rules are libbpf's (Documentation/bpf/libbpf/program_types.rst):

* a pattern without ``+`` matches the section name exactly (``SEC("xdp")``);
* ``name+`` matches ``name`` itself or ``name/<extras>``; the extras name the attach
  target, e.g. ``tracepoint/syscalls/sys_enter_write``, ``kprobe/ksys_write+0x10``,
  ``uprobe//usr/lib/libc.so.6:malloc``, ``fentry/do_unlinkat``;
* a ``.s`` variant (``fentry.s``, ``uprobe.s``, ``lsm.s`` ...) loads the program as
  sleepable (``BPF_F_SLEEPABLE``, kernel 5.10+).

Program and attach types are :mod:`rawprobe.uapi`'s (``ProgType`` and ``AttachType``
are importable from here too); minimum kernel versions are given there.
"""
from __future__ import annotations

from .errors import ObjectFormatError
from .names import is_symbol
from .uapi import AttachType, ProgFlags, ProgType

__all__ = ["ProgType", "AttachType", "SECTION_DEFS", "SectionInfo", "match", "lookup",
           "program_section", "parse_kprobe_target", "parse_uprobe_target",
           "parse_uprobe_multi_target", "parse_usdt_target",
           "parse_tracepoint_target"]


P, A = ProgType, AttachType
_S, _FRAGS = ProgFlags.SLEEPABLE, ProgFlags.XDP_HAS_FRAGS


# One row: (pattern, prog_type, expected_attach_type, prog_flags, attach_kind,
# retprobe, attach_btf).  attach_kind names the attach routine that fits ("" = none
# automatic); attach_btf: the target is a kernel BTF name (needs attach_btf_id).
# Plain tuples: the table is built at import, and dataclass rows cost ~1 ms more.
SectionDef = tuple


def _d(pattern: str, pt: ProgType, at: int = 0, flags: int = 0, kind: str = "",
       ret: bool = False, btf: bool = False) -> SectionDef:
    return (pattern, pt, at, flags, kind, ret, btf)


def match(pattern: str, name: str) -> str | None:
    """The attach target (``""`` if none) when ``name`` matches ``pattern``, else None."""
    if pattern[-1] == "+":
        base = pattern[:-1]
        if name == base:
            return ""
        if name.startswith(base) and name[len(base):len(base) + 1] == "/":
            return name[len(base) + 1:]
        return None
    return "" if name == pattern else None


# Order matters only where an exact pattern shadows a "+" one; first match wins.
SECTION_DEFS: tuple[SectionDef, ...] = (
    _d("socket", P.SOCKET_FILTER),
    _d("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE),
    _d("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT),
    _d("kprobe+", P.KPROBE, kind="kprobe"),
    _d("kretprobe+", P.KPROBE, kind="kprobe", ret=True),
    _d("uprobe+", P.KPROBE, kind="uprobe"),
    _d("uprobe.s+", P.KPROBE, flags=_S, kind="uprobe"),
    _d("uretprobe+", P.KPROBE, kind="uprobe", ret=True),
    _d("uretprobe.s+", P.KPROBE, flags=_S, kind="uprobe", ret=True),
    _d("kprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, kind="kprobe_multi"),
    _d("kretprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, kind="kprobe_multi", ret=True),
    _d("kprobe.session+", P.KPROBE, A.TRACE_KPROBE_SESSION, kind="kprobe_session"),
    _d("uprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, kind="uprobe_multi"),
    _d("uretprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, kind="uprobe_multi", ret=True),
    _d("uprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, _S, kind="uprobe_multi"),
    _d("uretprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, _S, kind="uprobe_multi",
       ret=True),
    _d("ksyscall+", P.KPROBE, kind="ksyscall"),
    _d("kretsyscall+", P.KPROBE, kind="ksyscall", ret=True),
    _d("usdt+", P.KPROBE, kind="usdt"),
    _d("usdt.s+", P.KPROBE, flags=_S, kind="usdt"),
    _d("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS),            # tcx: 6.6
    _d("tc/egress", P.SCHED_CLS, A.TCX_EGRESS),
    _d("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    _d("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS),
    _d("netkit/primary", P.SCHED_CLS, A.NETKIT_PRIMARY),
    _d("netkit/peer", P.SCHED_CLS, A.NETKIT_PEER),
    _d("tc", P.SCHED_CLS),
    _d("classifier", P.SCHED_CLS),
    _d("action", P.SCHED_ACT),
    _d("tracepoint+", P.TRACEPOINT, kind="tracepoint"),
    _d("tp+", P.TRACEPOINT, kind="tracepoint"),
    _d("raw_tracepoint+", P.RAW_TRACEPOINT, kind="raw_tracepoint"),
    _d("raw_tp+", P.RAW_TRACEPOINT, kind="raw_tracepoint"),
    _d("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, kind="raw_tracepoint"),
    _d("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, kind="raw_tracepoint"),
    _d("tp_btf+", P.TRACING, A.TRACE_RAW_TP, kind="tracing", btf=True),
    _d("fentry+", P.TRACING, A.TRACE_FENTRY, kind="tracing", btf=True),
    _d("fmod_ret+", P.TRACING, A.MODIFY_RETURN, kind="tracing", btf=True),
    _d("fexit+", P.TRACING, A.TRACE_FEXIT, kind="tracing", btf=True),
    _d("fentry.s+", P.TRACING, A.TRACE_FENTRY, _S, kind="tracing", btf=True),
    _d("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, _S, kind="tracing", btf=True),
    _d("fexit.s+", P.TRACING, A.TRACE_FEXIT, _S, kind="tracing", btf=True),
    _d("freplace+", P.EXT, kind="tracing", btf=True),
    _d("lsm+", P.LSM, A.LSM_MAC, kind="lsm", btf=True),
    _d("lsm.s+", P.LSM, A.LSM_MAC, _S, kind="lsm", btf=True),
    _d("lsm_cgroup+", P.LSM, A.LSM_CGROUP, kind="lsm_cgroup", btf=True),
    _d("iter+", P.TRACING, A.TRACE_ITER, kind="iter", btf=True),
    _d("iter.s+", P.TRACING, A.TRACE_ITER, _S, kind="iter", btf=True),
    _d("syscall", P.SYSCALL, flags=_S),
    _d("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, _FRAGS),
    _d("xdp/devmap", P.XDP, A.XDP_DEVMAP),
    _d("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, _FRAGS),
    _d("xdp/cpumap", P.XDP, A.XDP_CPUMAP),
    _d("xdp.frags", P.XDP, A.XDP, _FRAGS),
    _d("xdp", P.XDP, A.XDP),
    _d("perf_event", P.PERF_EVENT),
    _d("lwt_in", P.LWT_IN),
    _d("lwt_out", P.LWT_OUT),
    _d("lwt_xmit", P.LWT_XMIT),
    _d("lwt_seg6local", P.LWT_SEG6LOCAL),
    _d("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS),
    _d("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER),
    _d("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT),
    _d("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT),
    _d("sk_skb", P.SK_SKB),
    _d("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT),
    _d("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2),
    _d("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR),
    _d("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS),
    _d("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS),
    _d("cgroup/skb", P.CGROUP_SKB),
    _d("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE),
    _d("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND),
    _d("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND),
    _d("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND),
    _d("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND),
    _d("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT),
    _d("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT),
    _d("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT),
    _d("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG),
    _d("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG),
    _d("cgroup/sendmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG),
    _d("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG),
    _d("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG),
    _d("cgroup/recvmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG),
    _d("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME),
    _d("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME),
    _d("cgroup/getpeername_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME),
    _d("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME),
    _d("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME),
    _d("cgroup/getsockname_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME),
    _d("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL),
    _d("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT),
    _d("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT),
    _d("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE),
    _d("struct_ops+", P.STRUCT_OPS),
    _d("struct_ops.s+", P.STRUCT_OPS, flags=_S),
    _d("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP),
    _d("netfilter", P.NETFILTER, A.NETFILTER),
)
del P, A, _S, _FRAGS


class SectionInfo:
    """What a program's section name says about how to load and attach it."""
    __slots__ = ("section", "prog_type", "expected_attach_type", "attach_to", "prog_flags",
                 "attach_kind", "retprobe", "attach_btf")

    def __init__(self, section: str, prog_type: ProgType, expected_attach_type: int,
                 attach_to: str, prog_flags: int, attach_kind: str, retprobe: bool,
                 attach_btf: bool) -> None:
        self.section = section
        self.prog_type = prog_type
        self.expected_attach_type = expected_attach_type
        self.attach_to = attach_to          # the extras after "<type>/", "" if none
        self.prog_flags = prog_flags
        self.attach_kind = attach_kind
        self.retprobe = retprobe
        self.attach_btf = attach_btf

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"SectionInfo({args})"

    @property
    def sleepable(self) -> bool:
        return bool(self.prog_flags & ProgFlags.SLEEPABLE)


def lookup(section: str) -> SectionInfo | None:
    """The conventions for ``section``, or None if libbpf would not know it."""
    for pattern, pt, at, flags, kind, ret, btf in SECTION_DEFS:
        target = match(pattern, section)
        if target is not None:
            return SectionInfo(section, pt, at, target, flags, kind, ret, btf)
    return None


def program_section(section: str, where: str = "") -> SectionInfo:
    """Like :func:`lookup`, but an unknown name is an ObjectFormatError."""
    info = lookup(section)
    if info is None:
        prefix = f"{where}: " if where else ""
        raise ObjectFormatError(
            f"{prefix}section {section!r} holds code but its name is not a known program "
            f"type; use libbpf's SEC() names, e.g. SEC(\"tracepoint/syscalls/"
            f"sys_enter_write\"), SEC(\"kprobe/do_sys_open\"), SEC(\"xdp\")")
    return info


# --- attach-target parsers (used by the attach layer) -----------------------------

def _parse_int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ObjectFormatError(f"{what}: {text!r} is not a number (decimal or 0x hex)") \
            from None


def parse_kprobe_target(target: str, retprobe: bool = False) -> tuple[str, int]:
    """``"ksys_write+0x10"`` -> ``("ksys_write", 16)``; ``"ksys_write"`` -> offset 0.

    Return probes cannot take an offset (the kernel attaches them at entry).
    """
    symbol, plus, off = target.partition("+")
    if not is_symbol(symbol):
        raise ObjectFormatError(f"kprobe target {target!r}: expected <symbol>[+<offset>] "
                                f"with a kernel symbol name")
    offset = _parse_int(off, f"kprobe target {target!r}") if plus else 0
    if offset < 0:
        raise ObjectFormatError(f"kprobe target {target!r}: negative offset")
    if offset and retprobe:
        raise ObjectFormatError(f"kretprobe target {target!r}: return probes do not take "
                                f"an offset")
    return symbol, offset


def parse_uprobe_target(target: str) -> tuple[str, str, int]:
    """``"/usr/lib/libc.so.6:malloc+0x4"`` -> ``(path, "malloc", 4)``.

    The part after ``:`` is a function with an optional ``+offset``, or just an
    offset into the file (then the function is ``""``).
    """
    path, colon, rest = target.partition(":")
    if not colon or not path or not rest:
        raise ObjectFormatError(f"uprobe target {target!r}: expected "
                                f"<binary path>:<function>[+<offset>]")
    if rest[0].isdigit():
        return path, "", _parse_int(rest, f"uprobe target {target!r}")
    func, plus, off = rest.partition("+")
    offset = _parse_int(off, f"uprobe target {target!r}") if plus else 0
    return path, func, offset


def parse_usdt_target(target: str) -> tuple[str, str, str]:
    """``"/usr/bin/python3:python:function__entry"`` -> (path, provider, name)."""
    parts = target.split(":")
    if len(parts) != 3 or not all(parts):
        raise ObjectFormatError(f"usdt target {target!r}: expected "
                                "<binary path>:<provider>:<name>")
    return parts[0], parts[1], parts[2]


def parse_uprobe_multi_target(target: str) -> tuple[str, str]:
    """``"/usr/lib/libc.so.6:pthread_*"`` -> ``(path, "pthread_*")``: a binary
    and a glob over its function names (libbpf's form: no offsets)."""
    path, colon, pattern = target.partition(":")
    if not colon or not path or not pattern:
        raise ObjectFormatError(f"uprobe.multi target {target!r}: expected "
                                f"<binary path>:<function pattern>")
    return path, pattern


def parse_tracepoint_target(target: str) -> tuple[str, str]:
    """``"syscalls/sys_enter_write"`` -> ``("syscalls", "sys_enter_write")``."""
    category, slash, name = target.partition("/")
    if not slash or not category or not name or "/" in name:
        raise ObjectFormatError(f"tracepoint target {target!r}: expected "
                                f"<category>/<name>, e.g. syscalls/sys_enter_write")
    return category, name
