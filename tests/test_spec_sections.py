"""rawprobe.sections: libbpf's SEC() names -> program type, attach type, target;
and the attach-target parsers.  Checked on tests/bpf/spec_sections.bpf.o too."""
from __future__ import annotations

from pathlib import Path

import pytest

from rawprobe.errors import ObjectFormatError
from rawprobe.sections import (SECTION_DEFS, AttachType, ProgType, lookup, parse_kprobe_target,
                               parse_tracepoint_target, parse_uprobe_target, program_section)
from rawprobe.spec import ObjectSpec
from rawprobe.uapi import ProgFlags

P, A = ProgType, AttachType

# section -> (prog type, expected attach type, attach_to, sleepable, attach kind)
CASES = {
    "socket": (P.SOCKET_FILTER, 0, "", False, ""),
    "kprobe/ksys_write+0x10": (P.KPROBE, 0, "ksys_write+0x10", False, "kprobe"),
    "kprobe/do_unlinkat": (P.KPROBE, 0, "do_unlinkat", False, "kprobe"),
    "kprobe": (P.KPROBE, 0, "", False, "kprobe"),
    "kretprobe/do_unlinkat": (P.KPROBE, 0, "do_unlinkat", False, "kprobe"),
    "uprobe//usr/lib/libc.so.6:malloc+0x4": (P.KPROBE, 0, "/usr/lib/libc.so.6:malloc+0x4",
                                             False, "uprobe"),
    "uretprobe//bin/bash:readline": (P.KPROBE, 0, "/bin/bash:readline", False, "uprobe"),
    "uprobe.s//bin/bash:readline": (P.KPROBE, 0, "/bin/bash:readline", True, "uprobe"),
    "uretprobe.s//bin/bash:readline": (P.KPROBE, 0, "/bin/bash:readline", True, "uprobe"),
    "tracepoint/syscalls/sys_enter_openat": (P.TRACEPOINT, 0, "syscalls/sys_enter_openat",
                                             False, "tracepoint"),
    "tp/sched/sched_switch": (P.TRACEPOINT, 0, "sched/sched_switch", False, "tracepoint"),
    "raw_tracepoint/sys_enter": (P.RAW_TRACEPOINT, 0, "sys_enter", False, "raw_tracepoint"),
    "raw_tp/sys_exit": (P.RAW_TRACEPOINT, 0, "sys_exit", False, "raw_tracepoint"),
    "raw_tp.w/sys_exit": (P.RAW_TRACEPOINT_WRITABLE, 0, "sys_exit", False, "raw_tracepoint"),
    "tp_btf/sched_switch": (P.TRACING, A.TRACE_RAW_TP, "sched_switch", False, "tracing"),
    "fentry/do_unlinkat": (P.TRACING, A.TRACE_FENTRY, "do_unlinkat", False, "tracing"),
    "fentry.s/do_unlinkat": (P.TRACING, A.TRACE_FENTRY, "do_unlinkat", True, "tracing"),
    "fexit/do_unlinkat": (P.TRACING, A.TRACE_FEXIT, "do_unlinkat", False, "tracing"),
    "fexit.s/do_unlinkat": (P.TRACING, A.TRACE_FEXIT, "do_unlinkat", True, "tracing"),
    "fmod_ret/security_file_open": (P.TRACING, A.MODIFY_RETURN, "security_file_open",
                                    False, "tracing"),
    "lsm/file_open": (P.LSM, A.LSM_MAC, "file_open", False, "lsm"),
    "lsm.s/bprm_committed_creds": (P.LSM, A.LSM_MAC, "bprm_committed_creds", True, "lsm"),
    "perf_event": (P.PERF_EVENT, 0, "", False, ""),
    "xdp": (P.XDP, A.XDP, "", False, ""),
    "tc": (P.SCHED_CLS, 0, "", False, ""),
    "classifier": (P.SCHED_CLS, 0, "", False, ""),
    "tc/ingress": (P.SCHED_CLS, A.TCX_INGRESS, "", False, ""),
    "cgroup_skb/ingress": (P.CGROUP_SKB, A.CGROUP_INET_INGRESS, "", False, ""),
    "cgroup_skb/egress": (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, "", False, ""),
    "syscall": (P.SYSCALL, 0, "", True, ""),
    "iter/task": (P.TRACING, A.TRACE_ITER, "task", False, "iter"),
    "iter.s/task": (P.TRACING, A.TRACE_ITER, "task", True, "iter"),
    "ksyscall/write": (P.KPROBE, 0, "write", False, "ksyscall"),
    "kprobe.multi/vfs_*": (P.KPROBE, A.TRACE_KPROBE_MULTI, "vfs_*", False, "kprobe_multi"),
}


@pytest.mark.parametrize("section", list(CASES))
def test_lookup(section):
    pt, at, target, sleepable, kind = CASES[section]
    info = lookup(section)
    assert info is not None
    assert (info.prog_type, info.expected_attach_type, info.attach_to, info.sleepable,
            info.attach_kind) == (pt, at, target, sleepable, kind)
    assert bool(info.prog_flags & ProgFlags.SLEEPABLE) == sleepable
    assert info.attach_btf == (pt in (P.TRACING, P.LSM))
    assert info.retprobe == section.startswith(("kretprobe", "uretprobe"))


def test_enum_values_match_uapi():
    assert (P.KPROBE, P.TRACEPOINT, P.RAW_TRACEPOINT, P.TRACING, P.LSM, P.SYSCALL) == \
        (2, 5, 17, 26, 29, 31)
    assert (A.TRACE_RAW_TP, A.TRACE_FENTRY, A.TRACE_FEXIT, A.LSM_MAC, A.TRACE_ITER,
            A.XDP, A.TRACE_KPROBE_MULTI, A.TCX_INGRESS) == (23, 24, 25, 27, 28, 37, 42, 46)


def test_xdp_frags_flag():
    assert lookup("xdp.frags").prog_flags == ProgFlags.XDP_HAS_FRAGS
    assert lookup("xdp").prog_flags == 0


@pytest.mark.parametrize("section", [
    "", "bogus", "kprobex/foo", "kprobe_foo", "tracepoint_x", "xdp/foo", "socket/1",
    "fentry.x/foo", ".text", "tp_btfx/a",
])
def test_unknown(section):
    assert lookup(section) is None
    with pytest.raises(ObjectFormatError, match=f"section {section!r} holds code"):
        program_section(section, "x.o")


def test_table_patterns_are_unique():
    patterns = [row[0] for row in SECTION_DEFS]
    assert len(patterns) == len(set(patterns))


def test_object_sections_match_table():
    spec = ObjectSpec.from_file(Path(__file__).parent / "bpf" / "spec_sections.bpf.o")
    assert spec.kern_version == 0x060100
    seen = 0
    for p in spec.programs.values():
        if p.section not in CASES:
            continue
        pt, at, target, sleepable, kind = CASES[p.section]
        assert (p.type, p.expected_attach_type, p.attach_to, p.sleepable,
                p.attach_kind) == (pt, at, target, sleepable, kind), p.name
        assert p.kern_version == 0x060100
        seen += 1
    assert seen == len(spec.programs) - 1                # all but xdp.frags
    assert spec.programs["p_xdp_frags"].prog_flags == ProgFlags.XDP_HAS_FRAGS
    assert spec.programs["p_kretprobe"].retprobe


# ----------------------------------------------------------------- targets --

@pytest.mark.parametrize("target, want", [
    ("ksys_write+0x10", ("ksys_write", 16)),
    ("ksys_write+16", ("ksys_write", 16)),
    ("do_sys_open", ("do_sys_open", 0)),
    ("__x64_sys_write", ("__x64_sys_write", 0)),
    ("vfs_read.cold+0x4", ("vfs_read.cold", 4)),
])
def test_kprobe_target(target, want):
    assert parse_kprobe_target(target) == want


@pytest.mark.parametrize("target, retprobe", [
    ("", False), ("+0x10", False), ("ksys write", False), ("f+", False), ("f+zz", False),
    ("f+0x10", True), ("f/g", False),
])
def test_kprobe_target_rejects(target, retprobe):
    with pytest.raises(ObjectFormatError, match="kprobe target|kretprobe target"):
        parse_kprobe_target(target, retprobe=retprobe)


def test_uprobe_target():
    assert parse_uprobe_target("/usr/lib/libc.so.6:malloc+0x4") == \
        ("/usr/lib/libc.so.6", "malloc", 4)
    assert parse_uprobe_target("/bin/bash:readline") == ("/bin/bash", "readline", 0)
    assert parse_uprobe_target("/bin/bash:0x1234") == ("/bin/bash", "", 0x1234)
    for bad in ("/bin/bash", ":malloc", "/bin/bash:", "/bin/bash:f+x"):
        with pytest.raises(ObjectFormatError, match="uprobe target"):
            parse_uprobe_target(bad)


def test_tracepoint_target():
    assert parse_tracepoint_target("syscalls/sys_enter_write") == \
        ("syscalls", "sys_enter_write")
    for bad in ("syscalls", "/x", "x/", "a/b/c"):
        with pytest.raises(ObjectFormatError, match="tracepoint target"):
            parse_tracepoint_target(bad)
