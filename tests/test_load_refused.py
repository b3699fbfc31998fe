"""What rawprobe parses but will not load: it says so, naming the part,
before anything is made -- never a verifier failure or a silent drop."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import rawprobe
from rawprobe.errors import NotSupportedError

BPF = Path(__file__).parent / "bpf"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root")


def test_struct_ops_maps_are_refused():
    """A struct_ops map is listed by the spec and refused at load, whichever
    programs are asked for (every map of an object is made)."""
    spec = rawprobe.ObjectSpec.from_file(BPF / "struct_ops.bpf.o")
    assert spec.struct_ops == {"rawprobe_cc": ".struct_ops.link"}
    for programs in (None, "ordinary"):
        with pytest.raises(NotSupportedError, match=r"struct_ops maps \('rawprobe_cc' "
                                                    r"\(.struct_ops.link\)\) .* not supported"):
            spec.load(programs=programs)


def test_struct_ops_program_is_not_a_verifier_failure():
    spec = rawprobe.ObjectSpec.from_file(BPF / "struct_ops.bpf.o")
    spec.struct_ops.clear()         # the callback alone
    with pytest.raises(NotSupportedError, match=r"program 'rawprobe_cc_init' \(section "
                                                r"'struct_ops/rawprobe_cc_init'\) is a "
                                                r"struct_ops callback"):
        spec.load()
    with spec.load(programs="ordinary") as coll:
        assert list(coll.programs) == ["ordinary"]


def test_freplace_says_its_target_is_a_bpf_program():
    obj = BPF / "freplace.bpf.o"
    with pytest.raises(NotSupportedError, match=r"program 'new_handle' .* its target "
                                                r"'handle' is a function of another loaded "
                                                r"BPF program, not of the kernel"):
        rawprobe.load(obj)
    with rawprobe.load(obj, programs="ordinary") as coll:
        assert list(coll.programs) == ["ordinary"]
