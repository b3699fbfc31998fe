"""``__ksym`` externs: kernel variables and kernel functions (kfuncs) an object uses.

An object declares ``extern <type> NAME __ksym;`` (``__weak`` optional), which
clang places in a BTF DATASEC ``.ksyms`` and leaves as an undefined ELF symbol.
Three kinds, as libbpf tells them apart:

* **kfunc** -- an extern function: each ``call NAME`` becomes a kfunc call
  (src_reg BPF_PSEUDO_KFUNC_CALL) of the kernel's BTF FUNC id (5.13; in a
  module's BTF, whose fd BPF_PROG_LOAD's ``fd_array`` carries, 5.18).  Taking
  its address (``bpf_ksym_exists(f)``) loads that id as a BPF_PSEUDO_BTF_ID.
* **typed** -- a variable of a non-void type (``extern const struct rq
  runqueues __ksym``): its address, as ld_imm64 BPF_PSEUDO_BTF_ID of the
  kernel's BTF VAR (5.11); the kernel also needs the symbol in kallsyms
  (CONFIG_KALLSYMS_ALL for data).
* **typeless** -- a ``void`` variable: its address from ``/proc/kallsyms``,
  as a plain 64-bit constant (5.2... any kernel).

A ``__weak`` extern the kernel lacks is 0: a typeless or typed one loads the
constant 0, a kfunc's address is 0 and a call to it is replaced with an
invalid helper call (libbpf's marker, 2002000000 + the extern's index) that
the verifier drops as dead code when a ``bpf_ksym_exists()`` test guards it.
A strong one that is missing fails the load.

The BTF the kernel gets is rewritten as libbpf rewrites it (the kernel
refuses extern VARs and FUNCs in a DATASEC): each ``.ksyms`` variable becomes
an allocated 4-byte int at 4 * its position; each function's DATASEC entry
points at one added VAR ``dummy_ksym`` instead, the FUNC becomes global, and
its prototype's unnamed parameters are named ``dummy_ksym``.

This module is kernel-independent: it parses and lays out;
:mod:`rawprobe.ksyms_kernel` resolves against the running kernel.
"""
from __future__ import annotations

from ._records import RecordTuple
from .errors import ObjectFormatError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from .btf.parse import BTFSpec

__all__ = ["SECTION", "Ksym", "KsymReloc", "collect", "POISON_KFUNC_CALL"]

SECTION = ".ksyms"
DUMMY_VAR = "dummy_ksym"
# libbpf's imm for a call to an absent weak kfunc: this + the extern's index
POISON_KFUNC_CALL = 2002000000

FUNC, TYPED, TYPELESS = "kfunc", "typed", "typeless"


class Ksym(RecordTuple):
    """One ``__ksym`` extern.  ``kind``: ``"kfunc"``, ``"typed"`` or
    ``"typeless"``; ``type_id``: the object's BTF id of the function's
    prototype or the variable's type (typedefs and qualifiers skipped; 0 when
    typeless); ``weak``: declared ``__weak``; ``index``: its position among
    the object's externs in libbpf's order (``__kconfig`` ones first, then
    these by name), which marks a call to it when it is absent."""
    __slots__ = ()
    _fields = ("name", "kind", "type_id", "weak", "index")
    if TYPE_CHECKING:  # pragma: no cover
        name: str
        kind: str
        type_id: int
        weak: bool
        index: int

    @property
    def essential_name(self) -> str:
        """The name without a ``___suffix`` (libbpf's flavours): the kernel's name."""
        from .btf.parse import essential_name
        return essential_name(self.name)


class KsymReloc(RecordTuple):
    """Instruction ``insn`` refers to extern ``name``: a kfunc ``call`` (True)
    or an ``ld_imm64`` of its address (False).  ``insn`` counts from the
    program's start (from its function's, among a function's references)."""
    __slots__ = ()
    _fields = ("insn", "name", "call")
    if TYPE_CHECKING:  # pragma: no cover
        insn: int
        name: str
        call: bool


def collect(btf: BTFSpec, datasec_id: int, weak: dict[str, bool], first_index: int,
            where: str = "") -> dict[str, Ksym]:
    """The externs of DATASEC ``.ksyms`` (type ``datasec_id``), and the BTF
    rewritten for the kernel as libbpf rewrites it (see the module's text).
    ``weak`` maps each undefined ELF symbol to whether it is weak;
    ``first_index`` is the number of ``__kconfig`` externs (they come first in
    libbpf's extern order)."""
    from .btf import types as T
    types = btf.types
    ds = types[datasec_id]
    found: dict[str, Ksym] = {}
    for vs in ds.vars:
        t = btf.type_by_id(vs.type)
        if not isinstance(t, (T.Var, T.Func)):
            raise ObjectFormatError(f"{where}.ksyms lists BTF type {vs.type}, a "
                                    f"{t.kind.name}, not a variable or function")
        if t.name not in weak:
            raise ObjectFormatError(f"{where}extern {t.name!r} (__ksym) has BTF but no "
                                    f"ELF symbol")
        if isinstance(t, T.Func):
            kind, type_id = FUNC, t.type
        else:
            type_id = btf.resolve(t.type)       # typedefs and qualifiers skipped
            kind = TYPED if type_id else TYPELESS
        found[t.name] = Ksym(t.name, kind, type_id, weak[t.name], 0)
    ordered = sorted(found)
    out = {n: found[n]._replace(index=first_index + i)  # type: ignore[misc]
           for i, n in enumerate(ordered)}
    _rewrite_btf(btf, ds)
    return out  # type: ignore[return-value]


def _rewrite_btf(btf: BTFSpec, ds) -> None:
    from .btf import types as T
    types = btf.types
    int_id = next((i for i, t in enumerate(types)
                   if isinstance(t, T.Int) and t.bits == 32), 0)
    dummy_id = 0
    if any(isinstance(types[vs.type], T.Func) for vs in ds.vars):
        dummy_id = btf.add_type(T.Var(DUMMY_VAR, int_id, T.BTF_VAR_GLOBAL_ALLOCATED))
    for i, vs in enumerate(ds.vars):
        t = types[vs.type]
        if isinstance(t, T.Func):
            proto = types[t.type]
            if isinstance(proto, T.FuncProto):
                for p in proto.params:
                    if p.type and not p.name:
                        p.name = DUMMY_VAR
            vs.type = dummy_id
            t.linkage = T.BTF_FUNC_GLOBAL
        else:
            t.linkage = T.BTF_VAR_GLOBAL_ALLOCATED
            t.type = int_id
        vs.offset, vs.size = 4 * i, 4
    ds.size = 4 * len(ds.vars)
    btf.mark_edited()
