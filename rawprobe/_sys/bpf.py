"""One thin function per bpf(2) command.

Keyword arguments carry the kernel's ``union bpf_attr`` field names.  Every
function that makes a kernel object returns an :class:`FD`; every failure
raises through :func:`rawprobe._sys.errno.syscall_error`.  ``fd`` arguments
accept an ``FD``, anything with ``fileno()``, or a plain int.

Buffers the kernel reads (keys, values, instructions, BTF) are passed
without copying (``ffi.from_buffer``), so callers must pass exactly the
size the kernel will read: a key of ``key_size`` bytes, a value of
``value_size`` bytes (per-CPU maps: ``round_up(value_size, 8) * ncpus``).

The attr size handed to the kernel is ``offsetofend`` of the last field the
command uses (the ``_Cmd`` table below), so an older kernel never sees a
tail it does not know.  Commands' minimum kernels are in their docstrings.
"""
from __future__ import annotations

import errno as _E
import os

from ._native import call, ffi, lib
from .consts import BPF_OBJ_NAME_LEN, AttachType, BpfCmd, syscall_numbers
from .errno import syscall_error
from .fd import FD

__all__ = [
    "map_create", "map_lookup_elem", "map_update_elem", "map_delete_elem",
    "map_get_next_key", "map_lookup_and_delete_elem", "map_freeze",
    "prog_load", "btf_load", "obj_pin", "obj_get", "obj_get_info_by_fd",
    "prog_get_info", "map_get_info", "btf_get_info", "link_get_info",
    "raw_tracepoint_open", "link_create", "link_create_kprobe_multi",
    "link_create_uprobe_multi", "link_detach", "iter_create", "prog_test_run",
    "enable_stats", "get_next_id", "get_fd_by_id", "info_to_dict",
]

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional, Sequence, Union

    FDLike = Union[int, FD, Any]   # an int or anything with fileno()
    Buffer = Union[bytes, bytearray, memoryview]

_NR_BPF = ffi.cast("long", syscall_numbers()["bpf"])
_ATTR = ffi.typeof("union bpf_attr")
_ATTR_P = ffi.typeof("union bpf_attr *")
_UPTR = ffi.typeof("uintptr_t")
_CHARS = ffi.typeof("char[]")
_INTS = ffi.typeof("int[]")
_syscall = lib.syscall


_fields_of: dict[Any, dict[str, Any]] = {}


def _offsetofend(*path: str) -> int:
    """offsetof + sizeof of the field at ``path`` inside union bpf_attr."""
    ctype = _ATTR
    for name in path:
        fields = _fields_of.get(ctype)
        if fields is None:
            fields = _fields_of[ctype] = dict(ctype.fields)
        ctype = fields[name].type
    return ffi.offsetof(_ATTR, *path) + ffi.sizeof(ctype)


class _Cmd:
    """A command: its number, its name for errors, its attr size (all pre-cast)."""
    __slots__ = ("nr", "name", "size")

    def __init__(self, cmd: BpfCmd, *last_field: str) -> None:
        self.nr = ffi.cast("long", cmd)
        self.name = "BPF_" + cmd.name
        self.size = ffi.cast("long", _offsetofend(*last_field))


# The per-command attr size table: (command, last field used).
_MAP_CREATE = _Cmd(BpfCmd.MAP_CREATE, "map_extra")
_MAP_LOOKUP_ELEM = _Cmd(BpfCmd.MAP_LOOKUP_ELEM, "flags")
_MAP_UPDATE_ELEM = _Cmd(BpfCmd.MAP_UPDATE_ELEM, "flags")
_MAP_DELETE_ELEM = _Cmd(BpfCmd.MAP_DELETE_ELEM, "key")
_MAP_GET_NEXT_KEY = _Cmd(BpfCmd.MAP_GET_NEXT_KEY, "next_key")
_PROG_LOAD = _Cmd(BpfCmd.PROG_LOAD, "log_true_size")   # an output, zero going in
_OBJ_PIN = _Cmd(BpfCmd.OBJ_PIN, "file_flags")
_OBJ_GET = _Cmd(BpfCmd.OBJ_GET, "file_flags")
_PROG_TEST_RUN = _Cmd(BpfCmd.PROG_TEST_RUN, "test", "ctx_out")
_PROG_TEST_RUN_CPU = _Cmd(BpfCmd.PROG_TEST_RUN, "test", "cpu")
_OBJ_GET_INFO_BY_FD = _Cmd(BpfCmd.OBJ_GET_INFO_BY_FD, "info", "info")
_RAW_TRACEPOINT_OPEN = _Cmd(BpfCmd.RAW_TRACEPOINT_OPEN, "raw_tracepoint", "prog_fd")
_RAW_TRACEPOINT_OPEN_COOKIE = _Cmd(BpfCmd.RAW_TRACEPOINT_OPEN, "raw_tracepoint", "cookie")
_BTF_LOAD = _Cmd(BpfCmd.BTF_LOAD, "btf_log_true_size")  # an output, zero going in
_MAP_LOOKUP_AND_DELETE_ELEM = _Cmd(BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM, "flags")
_MAP_FREEZE = _Cmd(BpfCmd.MAP_FREEZE, "map_fd")
_LINK_CREATE = _Cmd(BpfCmd.LINK_CREATE, "link_create", "flags")
_LINK_CREATE_BTF_ID = _Cmd(BpfCmd.LINK_CREATE, "link_create", "target_btf_id")
_LINK_CREATE_COOKIE = _Cmd(BpfCmd.LINK_CREATE, "link_create", "perf_event", "bpf_cookie")
_LINK_CREATE_KPROBE_MULTI = _Cmd(BpfCmd.LINK_CREATE, "link_create", "kprobe_multi", "cookies")
_LINK_CREATE_UPROBE_MULTI = _Cmd(BpfCmd.LINK_CREATE, "link_create", "uprobe_multi", "pid")
_ITER_CREATE = _Cmd(BpfCmd.ITER_CREATE, "iter_create", "flags")
_ENABLE_STATS = _Cmd(BpfCmd.ENABLE_STATS, "enable_stats", "type")
_LINK_DETACH = _Cmd(BpfCmd.LINK_DETACH, "link_detach", "link_fd")
# kind -> (GET_NEXT_ID, GET_FD_BY_ID)
_BY_ID = {
    "prog": (_Cmd(BpfCmd.PROG_GET_NEXT_ID, "next_id"),
             _Cmd(BpfCmd.PROG_GET_FD_BY_ID, "open_flags")),
    "map": (_Cmd(BpfCmd.MAP_GET_NEXT_ID, "next_id"),
            _Cmd(BpfCmd.MAP_GET_FD_BY_ID, "open_flags")),
    "btf": (_Cmd(BpfCmd.BTF_GET_NEXT_ID, "next_id"),
            _Cmd(BpfCmd.BTF_GET_FD_BY_ID, "open_flags")),
    "link": (_Cmd(BpfCmd.LINK_GET_NEXT_ID, "next_id"),
             _Cmd(BpfCmd.LINK_GET_FD_BY_ID, "open_flags")),
}


def _try(cmd: _Cmd, attr: Any) -> int:
    """bpf(cmd, attr, size): the result, or -errno.  EINTR is retried."""
    return call(_syscall, _NR_BPF, cmd.nr, attr, cmd.size)


def _call(cmd: _Cmd, attr: Any, hint: str = "") -> int:
    r = _try(cmd, attr)
    if r < 0:
        raise syscall_error(cmd.name, -r, hint)
    return r


def _fileno(fd: FDLike) -> int:
    return fd if type(fd) is int else fd.fileno()


def _addr(cdata: Any) -> int:
    return int(ffi.cast(_UPTR, cdata))


def _export(buf: Buffer, held: list[Any]) -> int:
    """The address of ``buf``'s memory (no copy); the export goes into
    ``held`` for :func:`_release`."""
    c = ffi.from_buffer(buf)
    held.append(c)
    return _addr(c)


def _release(held: list[Any]) -> None:
    # Until released, an exported bytearray cannot be resized, even while a
    # traceback keeps this frame alive.
    for c in held:
        ffi.release(c)


def _name(value: bytes) -> bytes:
    # The kernel keeps BPF_OBJ_NAME_LEN - 1 characters and a NUL; longer
    # names are cut as libbpf and bpftool do.
    return value[:BPF_OBJ_NAME_LEN - 1]


def _elem_hint(err: int) -> str:
    if err == _E.EPERM:
        return "the map is frozen or read-only to user space (BPF_F_RDONLY)"
    if err == _E.E2BIG:
        return "the map is full (max_entries)"
    if err == _E.EEXIST:
        return "the key exists and the flags say NOEXIST"
    if err == _E.EINVAL:
        return "bad flags, or deleting from an array map (its elements always exist)"
    return ""


def _path(path: Union[str, bytes]) -> Any:
    return ffi.new(_CHARS, os.fsencode(path))


# ---- maps ------------------------------------------------------------------

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               map_flags: int = 0, map_name: bytes = b"", btf_fd: int = 0,
               btf_key_type_id: int = 0, btf_value_type_id: int = 0,
               btf_vmlinux_value_type_id: int = 0, inner_map_fd: int = 0,
               map_extra: int = 0, numa_node: int = 0) -> FD:
    """BPF_MAP_CREATE (3.18; map_name 4.15, BTF ids 4.18, map_extra 5.16)."""
    attr = ffi.new(_ATTR_P)
    attr.map_type = map_type
    attr.key_size = key_size
    attr.value_size = value_size
    attr.max_entries = max_entries
    attr.map_flags = map_flags
    attr.inner_map_fd = inner_map_fd
    attr.numa_node = numa_node
    if map_name:
        attr.map_name = _name(map_name)
    attr.btf_fd = btf_fd
    attr.btf_key_type_id = btf_key_type_id
    attr.btf_value_type_id = btf_value_type_id
    attr.btf_vmlinux_value_type_id = btf_vmlinux_value_type_id
    attr.map_extra = map_extra
    return FD(_call(_MAP_CREATE, attr))


def _elem(cmd: _Cmd, fd: FDLike, key: Optional[Buffer], value: Any, flags: int) -> int:
    """Run an element command: ``value`` is the cdata buffer behind ``value``
    (or ``next_key``, the same field) or None.  The result, or -errno."""
    attr = ffi.new(_ATTR_P)
    attr.map_fd = _fileno(fd)
    if key:                     # None or b"": NULL, as maps without keys want
        k = ffi.from_buffer(key)
        attr.key = _addr(k)
    if value is not None:
        attr.value = _addr(value)
    attr.flags = flags
    return _try(cmd, attr)


def _lookup(cmd: _Cmd, fd: FDLike, key: Optional[Buffer], value_size: int,
            flags: int) -> Optional[bytes]:
    v = ffi.new(_CHARS, value_size)
    r = _elem(cmd, fd, key, v, flags)
    if r < 0:
        if r == -_E.ENOENT:
            return None
        raise syscall_error(cmd.name, -r)
    return ffi.unpack(v, value_size)


def map_lookup_elem(fd: FDLike, key: Optional[Buffer], value_size: int,
                    flags: int = 0) -> Optional[bytes]:
    """BPF_MAP_LOOKUP_ELEM: the value, or None if ``key`` is absent (ENOENT).
    ``key`` b"" (or None) for maps without keys (queue/stack: peek, 4.20)."""
    return _lookup(_MAP_LOOKUP_ELEM, fd, key, value_size, flags)


def map_update_elem(fd: FDLike, key: Optional[Buffer], value: Buffer, flags: int = 0) -> None:
    """BPF_MAP_UPDATE_ELEM; ``flags``: UpdateFlags (ANY, NOEXIST, EXIST, F_LOCK).
    Maps without keys (queue, stack, bloom filter) take ``key`` None or b""."""
    r = _elem(_MAP_UPDATE_ELEM, fd, key, ffi.from_buffer(value), flags)
    if r < 0:
        raise syscall_error(_MAP_UPDATE_ELEM.name, -r, _elem_hint(-r), privilege=False)


def map_delete_elem(fd: FDLike, key: Buffer) -> bool:
    """BPF_MAP_DELETE_ELEM: True if deleted, False if ``key`` was absent."""
    r = _elem(_MAP_DELETE_ELEM, fd, key, None, 0)
    if r < 0:
        if r == -_E.ENOENT:
            return False
        raise syscall_error(_MAP_DELETE_ELEM.name, -r, _elem_hint(-r), privilege=False)
    return True


def map_get_next_key(fd: FDLike, key: Optional[Buffer], key_size: int) -> Optional[bytes]:
    """BPF_MAP_GET_NEXT_KEY: the key after ``key`` (the first if None or b""), None at the end.

    A hash map restarts from its first key when ``key`` is not in it (4.12+).
    """
    return _lookup(_MAP_GET_NEXT_KEY, fd, key, key_size, 0)


def map_lookup_and_delete_elem(fd: FDLike, key: Optional[Buffer], value_size: int,
                               flags: int = 0) -> Optional[bytes]:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM: pop (queue/stack maps, 4.20; key None)
    or take (hash maps, 5.14).  None when there is nothing (ENOENT)."""
    return _lookup(_MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value_size, flags)


def map_freeze(fd: FDLike) -> None:
    """BPF_MAP_FREEZE (5.2): no more writes from user space."""
    attr = ffi.new(_ATTR_P)
    attr.map_fd = _fileno(fd)
    _call(_MAP_FREEZE, attr)


# ---- programs and BTF -------------------------------------------------------

def prog_load(prog_type: int, insns: Buffer, license: bytes, *,
              expected_attach_type: int = 0, prog_name: bytes = b"",
              prog_flags: int = 0, kern_version: int = 0, prog_btf_fd: int = 0,
              func_info: Buffer = b"", func_info_rec_size: int = 0,
              line_info: Buffer = b"", line_info_rec_size: int = 0,
              attach_btf_id: int = 0, attach_btf_obj_fd: int = 0,
              attach_prog_fd: int = 0, fd_array: Optional[Sequence[FDLike]] = None,
              log_level: int = 0, log_buf: Optional[bytearray] = None) -> FD:
    """BPF_PROG_LOAD.

    ``insns`` is the instruction stream (8 bytes each), ``license`` e.g.
    b"GPL".  With ``log_buf`` (at least 128 bytes; log_level defaults to 1
    then) the verifier writes its log into it, NUL-terminated.  On failure
    the raised error has ``log_true_size``: the size the whole log needs
    (6.4+; 0 before), so a caller can retry with a big enough buffer.
    EACCES/EINVAL are the verifier's verdicts, not a permission problem.

    Minimums: prog_name 4.15, prog_btf_fd/func_info 5.0, line_info 5.0,
    attach_btf_id 5.5, attach_btf_obj_fd 5.11, fd_array 5.14.
    """
    if len(insns) % 8:
        raise ValueError(f"insns is {len(insns)} bytes, not a multiple of 8")
    if attach_btf_obj_fd and attach_prog_fd:
        raise ValueError("attach_btf_obj_fd and attach_prog_fd share a field; give one")
    if log_level and log_buf is None:
        raise ValueError("log_level needs a log_buf")
    if not license.endswith(b"\0"):
        license += b"\0"
    attr = ffi.new(_ATTR_P)
    held: list[Any] = []        # buffer exports, released before returning
    try:
        attr.prog_type = prog_type
        attr.insn_cnt = len(insns) // 8
        attr.insns = _export(insns, held)
        attr.license = _export(license, held)
        attr.kern_version = kern_version
        attr.prog_flags = prog_flags
        if prog_name:
            attr.prog_name = _name(prog_name)
        attr.expected_attach_type = expected_attach_type
        attr.prog_btf_fd = prog_btf_fd
        if func_info and func_info_rec_size:
            attr.func_info_rec_size = func_info_rec_size
            attr.func_info = _export(func_info, held)
            attr.func_info_cnt = len(func_info) // func_info_rec_size
        if line_info and line_info_rec_size:
            attr.line_info_rec_size = line_info_rec_size
            attr.line_info = _export(line_info, held)
            attr.line_info_cnt = len(line_info) // line_info_rec_size
        attr.attach_btf_id = attach_btf_id
        attr.attach_prog_fd = attach_prog_fd or attach_btf_obj_fd
        if fd_array:
            fds = ffi.new(_INTS, [_fileno(f) for f in fd_array])
            attr.fd_array = _addr(fds)
        if log_buf is not None:
            attr.log_level = log_level or 1
            attr.log_size = len(log_buf)
            attr.log_buf = _export(log_buf, held)
        # The kernel may answer EAGAIN when verification was interrupted;
        # try again a few times, as libbpf does.
        for _ in range(5):
            r = _try(_PROG_LOAD, attr)
            if r != -_E.EAGAIN:
                break
    finally:
        _release(held)
    if r < 0:
        hint = "see the verifier's log in log_buf" if log_buf is not None else ""
        exc = syscall_error(_PROG_LOAD.name, -r, hint, verifier=True)
        exc.log_true_size = attr.log_true_size  # type: ignore[attr-defined]
        raise exc
    return FD(r)


def btf_load(btf: Buffer, log_level: int = 0, log_buf: Optional[bytearray] = None) -> FD:
    """BPF_BTF_LOAD (4.18).  Like prog_load, a failure carries ``log_true_size``."""
    if log_level and log_buf is None:
        raise ValueError("log_level needs a log_buf")
    attr = ffi.new(_ATTR_P)
    held: list[Any] = []
    try:
        attr.btf = _export(btf, held)
        attr.btf_size = len(btf)
        if log_buf is not None:
            attr.btf_log_level = log_level or 1
            attr.btf_log_size = len(log_buf)
            attr.btf_log_buf = _export(log_buf, held)
        r = _try(_BTF_LOAD, attr)
    finally:
        _release(held)
    if r < 0:
        exc = syscall_error(_BTF_LOAD.name, -r)
        exc.log_true_size = attr.btf_log_true_size  # type: ignore[attr-defined]
        raise exc
    return FD(r)


def prog_test_run(prog_fd: FDLike, ctx_in: Buffer = b"", data_in: Buffer = b"",
                  repeat: int = 1, *, data_out: Optional[bytearray] = None,
                  ctx_out: Optional[bytearray] = None, flags: int = 0,
                  cpu: int = 0) -> int:
    """BPF_PROG_TEST_RUN (4.12; ctx 5.2; flags/cpu 5.10): the program's return value.

    ``data_out`` / ``ctx_out``, if given, receive the output and are cut to
    the length the kernel reports.
    """
    attr = ffi.new(_ATTR_P)
    t = attr.test
    t.prog_fd = _fileno(prog_fd)
    t.repeat = repeat
    if data_in:
        di = ffi.from_buffer(data_in)
        t.data_in = _addr(di)
        t.data_size_in = len(data_in)
    if ctx_in:
        ci = ffi.from_buffer(ctx_in)
        t.ctx_in = _addr(ci)
        t.ctx_size_in = len(ctx_in)
    if data_out is not None:
        do = ffi.from_buffer(data_out, require_writable=True)
        t.data_out = _addr(do)
        t.data_size_out = len(data_out)
    if ctx_out is not None:
        co = ffi.from_buffer(ctx_out, require_writable=True)
        t.ctx_out = _addr(co)
        t.ctx_size_out = len(ctx_out)
    t.flags = flags
    t.cpu = cpu
    try:
        _call(_PROG_TEST_RUN_CPU if (flags or cpu) else _PROG_TEST_RUN, attr)
    finally:   # a bytearray cannot be resized while cffi exports its buffer
        if data_out is not None:
            ffi.release(do)
        if ctx_out is not None:
            ffi.release(co)
    if data_out is not None:
        del data_out[t.data_size_out:]
    if ctx_out is not None:
        del ctx_out[t.ctx_size_out:]
    return t.retval


# ---- pinning, ids and info --------------------------------------------------

def obj_pin(fd: FDLike, pathname: Union[str, bytes]) -> None:
    """BPF_OBJ_PIN (4.4): pin the object at ``pathname`` in a bpffs."""
    attr = ffi.new(_ATTR_P)
    p = _path(pathname)
    attr.pathname = _addr(p)
    attr.bpf_fd = _fileno(fd)
    _call(_OBJ_PIN, attr)


def obj_get(pathname: Union[str, bytes], file_flags: int = 0) -> FD:
    """BPF_OBJ_GET (4.4): open a pinned object; file_flags BPF_F_RDONLY/WRONLY (4.15)."""
    attr = ffi.new(_ATTR_P)
    p = _path(pathname)
    attr.pathname = _addr(p)
    attr.file_flags = file_flags
    return FD(_call(_OBJ_GET, attr))


def get_next_id(kind: str, start_id: int = 0) -> Optional[int]:
    """BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID: the next id after ``start_id``, None at the end."""
    attr = ffi.new(_ATTR_P)
    attr.start_id = start_id
    cmd = _BY_ID[kind][0]
    r = _try(cmd, attr)
    if r < 0:
        if r == -_E.ENOENT:
            return None
        raise syscall_error(cmd.name, -r)
    return attr.next_id


def get_fd_by_id(kind: str, id: int, open_flags: int = 0) -> FD:
    """BPF_{PROG,MAP,BTF,LINK}_GET_FD_BY_ID: an FD for the object with ``id``."""
    attr = ffi.new(_ATTR_P)
    attr.start_id = id            # union with prog_id / map_id / btf_id / link_id
    attr.open_flags = open_flags
    return FD(_call(_BY_ID[kind][1], attr))


def obj_get_info_by_fd(fd: FDLike, info_struct_name: str, info: Any = None) -> Any:
    """BPF_OBJ_GET_INFO_BY_FD (4.13): a ``struct <info_struct_name> *`` cdata,
    e.g. ``"bpf_prog_info"``.  Fields this kernel does not know stay zero.
    ``info``: a cdata of that struct to fill, whose pointers say where the
    kernel writes arrays and names."""
    if not info_struct_name.startswith("struct "):
        info_struct_name = "struct " + info_struct_name
    if info is None:
        info = ffi.new(info_struct_name + " *")
    attr = ffi.new(_ATTR_P)
    a = attr.info
    a.bpf_fd = _fileno(fd)
    a.info_len = ffi.sizeof(info[0])
    a.info = _addr(info)
    _call(_OBJ_GET_INFO_BY_FD, attr)
    return info


def info_to_dict(obj: Any) -> dict[str, Any]:
    """A plain dict of a struct/union cdata: ints, ``str`` for char arrays,
    ``bytes`` for other arrays, nested dicts; reserved ``__*`` fields left out."""
    ctype = ffi.typeof(obj)
    if ctype.kind == "pointer":
        obj, ctype = obj[0], ctype.item
    out: dict[str, Any] = {}
    for name, field in ctype.fields:
        if name.startswith("__"):
            continue
        ft = field.type
        value = getattr(obj, name)
        if ft.kind == "array":
            if ft.item.cname == "char":
                value = ffi.string(value).decode("utf-8", "replace")
            else:
                value = bytes(ffi.buffer(value))
        elif ft.kind in ("struct", "union"):
            value = info_to_dict(value)
        out[name] = value
    return out


def prog_get_info(fd: FDLike) -> dict[str, Any]:
    """struct bpf_prog_info as a dict (name, type, id, tag, run_cnt, ...)."""
    return info_to_dict(obj_get_info_by_fd(fd, "bpf_prog_info"))


def map_get_info(fd: FDLike) -> dict[str, Any]:
    """struct bpf_map_info as a dict (type, id, key_size, value_size, ...)."""
    return info_to_dict(obj_get_info_by_fd(fd, "bpf_map_info"))


def btf_get_info(fd: FDLike, name_size: int = 0) -> dict[str, Any]:
    """struct bpf_btf_info as a dict (id, btf_size, kernel_btf, ...).  With
    ``name_size`` > 0, ``name`` is the BTF object's name as a str ("vmlinux",
    a module's; 5.11+); a name of ``name_size`` bytes or more fails (ENOSPC)."""
    if name_size <= 0:
        return info_to_dict(obj_get_info_by_fd(fd, "bpf_btf_info"))
    info = ffi.new("struct bpf_btf_info *")
    name = ffi.new(_CHARS, name_size)
    info.name = _addr(name)
    info.name_len = name_size
    out = info_to_dict(obj_get_info_by_fd(fd, "bpf_btf_info", info))
    out["name"] = ffi.string(name).decode("utf-8", "replace")
    return out


def link_get_info(fd: FDLike) -> dict[str, Any]:
    """struct bpf_link_info as a dict (type, id, prog_id, and the per-type union)."""
    return info_to_dict(obj_get_info_by_fd(fd, "bpf_link_info"))


# ---- attaching ---------------------------------------------------------------

def raw_tracepoint_open(name: Optional[bytes], prog_fd: FDLike, cookie: int = 0) -> FD:
    """BPF_RAW_TRACEPOINT_OPEN (4.17): a link FD.  ``name`` None for programs
    that carry their target (tp_btf, fentry/fexit, lsm: 5.5); cookie 6.10."""
    attr = ffi.new(_ATTR_P)
    rt = attr.raw_tracepoint
    if name:
        n = ffi.new(_CHARS, name)
        rt.name = _addr(n)
    rt.prog_fd = _fileno(prog_fd)
    rt.cookie = cookie
    return FD(_call(_RAW_TRACEPOINT_OPEN_COOKIE if cookie else _RAW_TRACEPOINT_OPEN, attr))


def link_create(prog_fd: FDLike, target_fd: FDLike, attach_type: int, flags: int = 0, *,
                target_btf_id: int = 0, bpf_cookie: int = 0) -> FD:
    """BPF_LINK_CREATE (5.7): a link FD.

    Perf event links (attach_type PERF_EVENT, target a perf event fd: 5.15;
    ``bpf_cookie`` 5.15), tracing links with ``target_btf_id`` (5.10),
    iterator links (attach_type TRACE_ITER, 5.8), ...
    """
    if target_btf_id and bpf_cookie:
        raise ValueError("target_btf_id and bpf_cookie share a field; give one")
    attr = ffi.new(_ATTR_P)
    lc = attr.link_create
    lc.prog_fd = _fileno(prog_fd)
    lc.target_fd = _fileno(target_fd)
    lc.attach_type = attach_type
    lc.flags = flags
    cmd = _LINK_CREATE
    if target_btf_id:
        lc.target_btf_id = target_btf_id
        cmd = _LINK_CREATE_BTF_ID
    elif bpf_cookie:
        lc.perf_event.bpf_cookie = bpf_cookie
        cmd = _LINK_CREATE_COOKIE
    return FD(_call(cmd, attr))


def _u64s(values: Sequence[int], held: list[Any]) -> int:
    """The address of a new ``__u64[]`` holding ``values`` (0 for none)."""
    if not values:
        return 0
    arr = ffi.new("__u64[]", list(values))
    held.append(arr)
    return _addr(arr)


def link_create_kprobe_multi(prog_fd: FDLike, attach_type: int, flags: int = 0, *,
                             syms: Sequence[bytes] = (), addrs: Sequence[int] = (),
                             cookies: Sequence[int] = ()) -> FD:
    """BPF_LINK_CREATE of a kprobe.multi link (attach type TRACE_KPROBE_MULTI, 5.18,
    CONFIG_FPROBE; TRACE_KPROBE_SESSION 6.10): one link on many kernel functions,
    named by ``syms`` or by ``addrs`` (exactly one of the two), ``cookies[i]``
    for the i-th.  ``flags``: BPF_F_KPROBE_MULTI_RETURN for return probes."""
    held: list[Any] = []
    attr = ffi.new(_ATTR_P)
    lc = attr.link_create
    lc.prog_fd = _fileno(prog_fd)
    lc.attach_type = attach_type
    km = lc.kprobe_multi
    km.flags = flags
    km.cnt = len(syms) or len(addrs)
    if syms:
        names = [ffi.new(_CHARS, s) for s in syms]
        held.extend(names)
        km.syms = _u64s([_addr(n) for n in names], held)
    km.addrs = _u64s(addrs, held)
    km.cookies = _u64s(cookies, held)
    return FD(_call(_LINK_CREATE_KPROBE_MULTI, attr))


def link_create_uprobe_multi(prog_fd: FDLike, path: bytes, offsets: Sequence[int], *,
                             ref_ctr_offsets: Sequence[int] = (),
                             cookies: Sequence[int] = (), flags: int = 0,
                             pid: int = 0) -> FD:
    """BPF_LINK_CREATE of a uprobe.multi link (attach type TRACE_UPROBE_MULTI, 6.6):
    one link on many file ``offsets`` of ``path``, each with its reference
    counter offset (USDT semaphores, 0 for none) and cookie; ``pid`` 0 for every
    process.  ``flags``: BPF_F_UPROBE_MULTI_RETURN for return probes."""
    held: list[Any] = []
    attr = ffi.new(_ATTR_P)
    lc = attr.link_create
    lc.prog_fd = _fileno(prog_fd)
    lc.attach_type = AttachType.TRACE_UPROBE_MULTI
    um = lc.uprobe_multi
    p = ffi.new(_CHARS, path)
    um.path = _addr(p)
    um.offsets = _u64s(offsets, held)
    um.ref_ctr_offsets = _u64s(ref_ctr_offsets, held)
    um.cookies = _u64s(cookies, held)
    um.cnt = len(offsets)
    um.flags = flags
    um.pid = pid
    return FD(_call(_LINK_CREATE_UPROBE_MULTI, attr))


def iter_create(link_fd: FDLike) -> FD:
    """BPF_ITER_CREATE (5.8): a new run of an iterator link, as a file whose
    read() gives what the program writes (bpf_seq_printf/bpf_seq_write)."""
    attr = ffi.new(_ATTR_P)
    attr.iter_create.link_fd = _fileno(link_fd)
    return FD(_call(_ITER_CREATE, attr))


def link_detach(link_fd: FDLike) -> None:
    """BPF_LINK_DETACH (5.9): detach the link; its FD stays open but defunct.
    Only some link types can (cgroup, netns, xdp, tcx, ...); the others,
    raw tracepoint and perf event links among them, raise NotSupportedError:
    closing their last FD detaches them."""
    attr = ffi.new(_ATTR_P)
    attr.link_detach.link_fd = _fileno(link_fd)
    r = _try(_LINK_DETACH, attr)
    if r < 0:
        raise syscall_error(_LINK_DETACH.name, -r, not_supported=(
            "this kind of link cannot be detached; close its FD instead"))


def enable_stats(type: int = 0) -> FD:
    """BPF_ENABLE_STATS (5.8): run-time statistics (StatsType.RUN_TIME) are
    collected while the returned FD is open."""
    attr = ffi.new(_ATTR_P)
    attr.enable_stats.type = type
    return FD(_call(_ENABLE_STATS, attr))
