"""Cgroup v2 levels as BPF counts them, also from inside a cgroup namespace.

``bpf_get_current_ancestor_cgroup_id(level)`` counts levels from the root of the
whole hierarchy.  A process in a cgroup namespace of its own (a container made
with ``--cgroupns=private``, ``unshare -C``) sees every cgroup path relative to its
namespace's root, in /proc/PID/cgroup and in the root of a cgroup2 mount made
there: a depth counted in those paths is short by the namespace root's level.
Cgroup ids (a cgroup directory's inode number) are the same in every namespace.

The namespace root's level is not written anywhere the namespace can read, so the
kernel is asked: a small raw tracepoint program, run once in this task by
BPF_PROG_TEST_RUN, finds the level at which this task's own cgroup is its own
ancestor; less the depth /proc/self/cgroup shows, that is the namespace root's.

Minimum kernel: 5.10 (BPF_PROG_TEST_RUN of raw tracepoint programs), only inside a
cgroup namespace other than the initial one; outside, nothing is loaded.
"""
from __future__ import annotations

import os

from .errors import RawprobeError

# include/linux/proc_ns.h: the initial cgroup namespace's inode number
PROC_CGROUP_INIT_INO = 0xEFFFFFFB
# The deepest level the program looks at (the kernel's own limit, cgroup.max.depth,
# is unbounded by default; real hierarchies are a handful of levels deep).
MAX_LEVEL = 64
_NOT_FOUND = 0xFFFFFFFF


def path_depth(path: str) -> int:
    """Levels below the start of a cgroup path as the kernel writes them relative
    to a namespace root: each name one down, each ``..`` one up (a cgroup outside
    the namespace's subtree is written ``/../x``)."""
    return sum(-1 if c == ".." else 1 for c in path.split("/") if c not in ("", "."))


def in_initial_namespace() -> bool:
    """Is this process in the initial cgroup namespace (or a kernel without them)?"""
    try:
        return os.stat("/proc/self/ns/cgroup").st_ino == PROC_CGROUP_INIT_INO
    except FileNotFoundError:        # no cgroup namespaces (before 4.6): the host's view
        return True


def _own_v2_path() -> str:
    """This process's cgroup v2 path, relative to its namespace root ("0::/a/b")."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, _, rest = line.rstrip("\n").partition(":")
            controllers, _, path = rest.partition(":")
            if hid == "0" and controllers == "":
                return path
    raise RawprobeError("/proc/self/cgroup has no cgroup v2 line (0::/...): this "
                        "process is in no cgroup v2 hierarchy")


def _own_level_program() -> bytes:
    """r6 = this task's cgroup id; for each level L: if the ancestor at L is r6,
    return L; past MAX_LEVEL return _NOT_FOUND."""
    from .insn import (BPF_ALU, BPF_ALU64, BPF_CALL, BPF_EXIT, BPF_JMP, BPF_JNE, BPF_K,
                       BPF_MOV, BPF_X, encode)
    from .uapi import BpfFunc
    code = [encode(BPF_JMP | BPF_CALL, imm=BpfFunc.get_current_cgroup_id),
            encode(BPF_ALU64 | BPF_MOV | BPF_X, 6, 0)]
    for level in range(MAX_LEVEL + 1):
        code += [encode(BPF_ALU64 | BPF_MOV | BPF_K, 1, imm=level),
                 encode(BPF_JMP | BPF_CALL, imm=BpfFunc.get_current_ancestor_cgroup_id),
                 encode(BPF_JMP | BPF_JNE | BPF_X, 0, 6, off=2),
                 encode(BPF_ALU64 | BPF_MOV | BPF_K, 0, imm=level),
                 encode(BPF_JMP | BPF_EXIT)]
    # a 32-bit move: the retval is a u32 and a 64-bit one would sign-extend
    code += [encode(BPF_ALU | BPF_MOV | BPF_K, 0, imm=-1), encode(BPF_JMP | BPF_EXIT)]
    return b"".join(code)


def own_level() -> int:
    """This task's cgroup v2 level, counted from the hierarchy's real root (the
    kernel's ``cgroup->level``).  Loads and runs a program: CAP_BPF and
    CAP_PERFMON (or root)."""
    from ._sys import bpf
    from .uapi import ProgType
    with bpf.prog_load(ProgType.RAW_TRACEPOINT, _own_level_program(), b"GPL") as prog:
        # raw tracepoint test runs take no repeat count; with no CPU flag the program
        # runs right here, in this task (current = us)
        level = bpf.prog_test_run(prog, repeat=0)
    if level == _NOT_FOUND:
        raise RawprobeError(f"this process's cgroup is more than {MAX_LEVEL} levels deep")
    return level


def namespace_root_level() -> int:
    """The level of this process's cgroup namespace root in the whole hierarchy: 0
    in the initial namespace, else measured by the kernel (``own_level``)."""
    if in_initial_namespace():
        return 0
    return own_level() - path_depth(_own_v2_path())
