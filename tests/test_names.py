"""rawprobe.names: the one sanitiser, as each of its users needs it."""
from __future__ import annotations

from hypothesis import given, strategies as st

from rawprobe.names import is_symbol, sanitize


def test_sanitize_keeps_what_each_user_allows():
    assert sanitize("my-map.é v2") == "my_map.__v2"              # BPF object names
    assert sanitize("x.bpf.o:func", "_") == "x_bpf_o_func"        # tracefs events
    assert sanitize("tool-1.bpf.o", "._-") == "tool-1.bpf.o"      # cache files


@given(st.text())
def test_sanitize_gives_only_allowed_characters(name):
    out = sanitize(name)
    assert len(out) == len(name)
    assert all(c.isascii() and (c.isalnum() or c in "_.") for c in out)
    assert is_symbol(out) == bool(out)


def test_is_symbol():
    assert is_symbol("__x64_sys_write") and is_symbol("foo.isra.0")
    assert not is_symbol("") and not is_symbol("a b") and not is_symbol("ä")
