"""BPF LSM programs: loaded, attached, denying what their source says, then no more.

tests/bpf/lsm_test.bpf.c denies getpgid() of one process with EXDEV
(lsm/task_getpgid), open() by one task name with EROFS (lsm.s/file_open, a
sleepable program) and getpgid() inside one cgroup (lsm_cgroup/task_getpgid):
errnos nothing else gives these calls.  The BPF LSM runs in the VM (`make
vmtest`: Debian's kernels have "bpf" in their default lsm= list); this machine's
kernel refuses LSM programs, and the tests here check that it says so.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import rawprobe
from rawprobe import features, lsms, sections
from rawprobe import link as L
from rawprobe.errors import NotSupportedError, ObjectFormatError, RawprobeError
from rawprobe.uapi import AttachType, ProgType

OBJ = Path(__file__).parent / "bpf" / "lsm_test.bpf.o"

pytestmark = pytest.mark.usefixtures("bpf_privileges")


def load(programs, **variables):
    return rawprobe.load(OBJ, programs=programs, variables={"target_tgid": os.getpid(),
                                                            **variables})


def bss(coll, name: str) -> int:
    return coll.variables[name].get_int()


def getpgid_errno() -> int:
    try:
        os.getpgid(os.getpid())
    except OSError as e:
        return e.errno
    return 0


# ------------------------------------------------------------- no kernel needed --

def test_sections_of_lsm_programs():
    for section, atype, sleepable, kind in (
            ("lsm/file_open", AttachType.LSM_MAC, False, "lsm"),
            ("lsm.s/file_open", AttachType.LSM_MAC, True, "lsm"),
            ("lsm_cgroup/socket_bind", AttachType.LSM_CGROUP, False, "lsm_cgroup")):
        info = sections.lookup(section)
        assert (info.prog_type, info.expected_attach_type, info.sleepable,
                info.attach_kind, info.attach_btf) == (ProgType.LSM, atype, sleepable, kind,
                                                       True)
        assert info.attach_to == section.split("/", 1)[1]


def test_lsm_cgroup_is_not_attached_by_section_alone():
    spec = rawprobe.ObjectSpec.from_file(OBJ)

    class Unloaded:     # attach() only reads these before it dispatches
        name, type, fd = "cg_getpgid", ProgType.LSM, -1
    Unloaded.spec = spec.programs["cg_getpgid"]
    with pytest.raises(ObjectFormatError, match=r"attach_lsm_cgroup\(<cgroup directory>\)"):
        L.attach(Unloaded())


# ------------------------------------------- where LSM programs do not run --

def test_a_kernel_without_a_running_bpf_lsm_says_why(missing_feature):
    """Here (EPERM) or with the BPF LSM left out of lsm=: loading and attaching
    an LSM program ends in a NotSupportedError naming the reason, never a link
    that does nothing; `features` says the same."""
    if missing_feature("bpf_lsm") is None:
        pytest.skip("the BPF LSM runs on this kernel (the VM): nothing to refuse")
    f = features.bpf_lsm()
    assert not f.supported and f.detail
    with pytest.raises(NotSupportedError) as exc:
        with load(["deny_getpgid"]) as coll:
            coll.programs["deny_getpgid"].attach()
    msg = str(exc.value)
    assert "refuses BPF trampoline programs" in msg or "lsm=" in msg, msg
    assert getpgid_errno() == 0


@pytest.mark.vm("bpf_lsm_inactive")
def test_built_in_but_inactive_is_refused_with_how_to_enable():
    f = features.bpf_lsm()
    assert not f.supported
    assert "not active" in f.detail and "lsm=" in f.detail and ",bpf" in f.detail
    with load(["deny_getpgid"]) as coll:
        with pytest.raises(NotSupportedError, match=r"not active.*lsm=.*,bpf"):
            coll.programs["deny_getpgid"].attach()
        assert getpgid_errno() == 0 and bss(coll, "getpgid_calls") == 0
    # the other deny route works without the BPF LSM
    assert features.fmod_ret_security().supported


# ---------------------------------------------------------- the BPF LSM, real --

@pytest.mark.vm("bpf_lsm")
def test_lsm_program_denies_then_detaches():
    with load(["deny_getpgid"]) as coll:
        assert getpgid_errno() == 0
        link = coll.programs["deny_getpgid"].attach()
        assert (link.kind, link.target, link.mechanism) == ("lsm", "task_getpgid", "bpf_link")
        assert [getpgid_errno() for _ in range(3)] == [errno.EXDEV] * 3
        assert bss(coll, "getpgid_calls") == 3
        # another process is not this program's target
        other = subprocess.run([sys.executable, "-c", "import os; os.getpgid(os.getpid())"])
        assert other.returncode == 0
        link.close()
        assert getpgid_errno() == 0 and bss(coll, "getpgid_calls") == 3


@pytest.mark.vm("bpf_lsm")
def test_sleepable_lsm_program():
    comm = "rpl_" + uuid.uuid4().hex[:8]
    code = ("import os, sys; open('/proc/self/comm', 'w').write(sys.argv[1])\n"
            "try:\n    os.close(os.open('/dev/null', os.O_RDONLY)); print(0)\n"
            "except OSError as e:\n    print(e.errno)\n")
    with load(["deny_open_s"], target_comm=comm.encode().ljust(16, b"\0")) as coll:
        assert coll.programs["deny_open_s"].spec.sleepable
        with coll.programs["deny_open_s"].attach_lsm() as link:
            assert link.kind == "lsm"
            out = subprocess.run([sys.executable, "-c", code, comm], capture_output=True,
                                 text=True, check=True).stdout
            assert int(out) == errno.EROFS
            assert bss(coll, "open_calls") == 1
        out = subprocess.run([sys.executable, "-c", code, comm], capture_output=True,
                             text=True, check=True).stdout
        assert int(out) == 0 and bss(coll, "open_calls") == 1


def cgroup2_root() -> Path:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return Path(fields[4])
    pytest.skip("no cgroup2 mount")


@pytest.mark.vm("bpf_lsm")
def test_lsm_cgroup_program_denies_inside_its_cgroup_only():
    cg = cgroup2_root() / f"rawprobe-lsm-{os.getpid()}"
    cg.mkdir()
    code = ("import os, sys\nif sys.argv[1]: open(sys.argv[1] + '/cgroup.procs', 'w')"
            ".write(str(os.getpid()))\n"
            "try:\n    os.getpgid(os.getpid()); print(0)\n"
            "except OSError as e:\n    print(e.errno)\n")

    def child_errno(in_cgroup: bool) -> int:
        return int(subprocess.run([sys.executable, "-c", code, str(cg) if in_cgroup else ""],
                                  capture_output=True, text=True, check=True).stdout)
    try:
        with load(["cg_getpgid"]) as coll:
            prog = coll.programs["cg_getpgid"]
            with pytest.raises(ObjectFormatError, match="attach_lsm_cgroup"):
                prog.attach()
            with prog.attach_lsm_cgroup(str(cg)) as link:
                assert link.kind == "lsm_cgroup" and link.target == f"task_getpgid@{cg}"
                assert child_errno(True) == errno.EPERM
                assert child_errno(False) == 0
                assert bss(coll, "cgroup_calls") == 1
            assert child_errno(True) == 0
    finally:
        cg.rmdir()


@pytest.mark.vm("bpf_lsm")
def test_lsm_loads_as_libbpf_loads_it():
    """The same object through libbpf (bpftool prog loadall): the kernel reports
    the same programs (type, attach type, tag, instructions, BTF) for both, and
    libbpf's copy of deny_getpgid denies once rawprobe attaches it."""
    from libbpf_oracle import btf_text, loadall, prog_info
    spec = rawprobe.ObjectSpec.from_file(OBJ)
    with spec.load() as coll, loadall(OBJ) as libbpf:
        assert libbpf.ok, libbpf.output
        assert sorted(coll.programs) == sorted(libbpf.progs)
        for name, prog in coll.programs.items():
            assert prog_info(prog.fd) == prog_info(libbpf.progs[name]), name
            assert btf_text(prog.fd) == btf_text(libbpf.progs[name]), name
        # libbpf's load: target_tgid 0, so it denies getpgid() to pid 0's callers
        # only -- nobody; attached it must still run without error
        class Loaded:
            name, type, fd = "deny_getpgid", ProgType.LSM, libbpf.progs["deny_getpgid"]
        Loaded.spec = spec.programs["deny_getpgid"]
        with L.attach(Loaded()) as link:
            assert link.kind == "lsm" and getpgid_errno() == 0


def test_deny_probe_answers_for_both_routes():
    """lsms.deny_runs: True where a deny runs (VM), an error naming the refusal
    here; never True for a route that did not make getpgid() fail."""
    for route in ("lsm", "fmod_ret"):
        try:
            runs = lsms.deny_runs(route)
        except RawprobeError as e:
            assert "EPERM" in str(e) or "BPF LSM" in str(e)
            continue
        assert isinstance(runs, bool)
        assert getpgid_errno() == 0      # detached again
