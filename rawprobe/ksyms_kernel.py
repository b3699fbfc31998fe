"""``__ksym`` externs (:mod:`rawprobe.ksyms`) resolved against the running kernel.

As libbpf resolves them:

* a **kfunc** is the kernel's BTF FUNC of the extern's name (without a
  ``___flavour`` suffix), looked for in vmlinux, then in each module's own
  types.  Its prototype must be compatible with the declared one (libbpf's
  CO-RE rule, :func:`rawprobe.btf.core.types_are_compat`); an incompatible
  weak one counts as absent, an incompatible strong one fails the load.  A
  kfunc of a module puts the module's BTF fd into the ``fd_array`` given to
  BPF_PROG_LOAD (slots from 1; the call's ``off`` names the slot; 5.18).
* a **typed** variable is the kernel's BTF VAR of that name, of a compatible
  type (an incompatible one fails the load, weak or not); ld_imm64 gets
  BPF_PSEUDO_BTF_ID, its id, and the module's BTF fd (0 for vmlinux) (5.11).
* a **typeless** variable is its address in ``/proc/kallsyms``; two different
  addresses for one name fail the load.

An absent weak extern reads 0 and a call to an absent weak kfunc becomes
libbpf's invalid helper call, which only a ``bpf_ksym_exists()`` guard keeps
the verifier from reaching.  An absent strong extern fails the load with
NotFoundError.
"""
from __future__ import annotations

import errno
import os

from . import insn as I
from ._records import RecordTuple
from .errors import NotFoundError, SyscallError
from .ksyms import FUNC, POISON_KFUNC_CALL, TYPED

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional

    from ._sys.fd import FD
    from .ksyms import Ksym, KsymReloc

__all__ = ["KsymValue", "KsymResolver"]

_MAX_FD_SLOTS = 0x7FFF      # a call's off is an s16


class KsymValue(RecordTuple):
    """Where a resolved extern is: ``btf_id`` in the BTF whose object fd is
    ``btf_fd`` (0: vmlinux), ``slot`` its index in the fd_array (0: vmlinux);
    ``addr`` the kallsyms address of a typeless one."""
    __slots__ = ()
    _fields = ("btf_id", "btf_fd", "slot", "addr")
    if TYPE_CHECKING:  # pragma: no cover
        btf_id: int
        btf_fd: int
        slot: int
        addr: int


class KsymResolver:
    """Resolves one object's externs once per load; owns the module BTF fds
    they need (close() after the programs are loaded: each holds its own
    reference)."""

    def __init__(self, obj: str, btf: Any, kernel_btf: Any, modules: Any = ()) -> None:
        self.obj = obj
        self._btf = btf                  # the object's BTF (declared types)
        self._kernel = kernel_btf        # vmlinux: KernelBTF or a BTFSpec
        self._modules = modules          # iterable of module KernelBTFs
        self._done: dict[str, Optional[KsymValue]] = {}
        self._kallsyms: Optional[bytes] = None
        self._module_fds: dict[str, FD] = {}
        self._slots: dict[str, int] = {}
        self.fd_array: list[int] = []    # for BPF_PROG_LOAD; [] if no module needs it

    def close(self) -> None:
        for fd in self._module_fds.values():
            fd.close()
        self._module_fds.clear()

    # -- resolving ------------------------------------------------------------------

    def value(self, ks: Ksym) -> Optional[KsymValue]:
        """Where ``ks`` is, None for an absent weak one."""
        if ks.name not in self._done:
            if ks.kind == FUNC:
                found = self._kfunc(ks)
            elif ks.kind == TYPED:
                found = self._typed(ks)
            else:
                found = self._typeless(ks)
            if found is None and not ks.weak:
                raise NotFoundError(self._missing(ks))
            self._done[ks.name] = found
        return self._done[ks.name]

    def _missing(self, ks: Ksym) -> str:
        what = {FUNC: f"kfunc {ks.essential_name!r} in its BTF (vmlinux or a module)",
                TYPED: f"variable {ks.name!r} in its BTF (vmlinux or a module)"}.get(
            ks.kind, f"symbol {ks.name!r} in /proc/kallsyms")
        return (f"{self.obj}: extern {ks.name!r} (__ksym): the kernel has no {what}; "
                f"declare it __weak (and test bpf_ksym_exists()) to load without it")

    def _find(self, name: str, kind: type) -> Optional[tuple[Any, int, str]]:
        """(BTF, id, module name or "") of the first ``kind`` type called ``name``:
        vmlinux first, then the modules' own types."""
        for tid in self._kernel.types_by_name(name):
            if isinstance(self._kernel.type_by_id(tid), kind):
                return self._kernel, tid, ""
        for mod in self._modules:
            for tid in mod.types_by_name(name):
                if tid >= mod.first_id and isinstance(mod.type_by_id(tid), kind):
                    return mod, tid, os.path.basename(mod.path)
        return None

    def _compatible(self, ks: Ksym, kbtf: Any, kernel_type: int) -> bool:
        from .btf.core import types_are_compat
        return types_are_compat(self._btf, ks.type_id, kbtf, kernel_type)

    def _kfunc(self, ks: Ksym) -> Optional[KsymValue]:
        from .btf import types as T
        hit = self._find(ks.essential_name, T.Func)
        if hit is None:
            return None
        kbtf, tid, module = hit
        if not self._compatible(ks, kbtf, kbtf.type_by_id(tid).type):
            if ks.weak:
                return None
            raise NotFoundError(
                f"{self.obj}: extern {ks.name!r} (__ksym): the kernel's kfunc "
                f"{ks.essential_name!r} ({module or 'vmlinux'} BTF [{tid}]) takes or "
                f"returns other types than the object declares; declare it as the kernel "
                f"does (bpftool btf dump file /sys/kernel/btf/{module or 'vmlinux'})")
        fd, slot = self._module_slot(module) if module else (0, 0)
        return KsymValue(tid, fd, slot, 0)

    def _typed(self, ks: Ksym) -> Optional[KsymValue]:
        from .btf import types as T
        from .btf.parse import resolve
        hit = self._find(ks.name, T.Var)
        if hit is None:
            return None
        kbtf, tid, module = hit
        if not self._compatible(ks, kbtf, resolve(kbtf, kbtf.type_by_id(tid).type)):
            raise NotFoundError(
                f"{self.obj}: extern {ks.name!r} (__ksym): the kernel's variable is of "
                f"another type ({module or 'vmlinux'} BTF [{tid}]) than the object declares")
        fd = self._module_fd(module).fileno() if module else 0
        return KsymValue(tid, fd, 0, 0)

    def _typeless(self, ks: Ksym) -> Optional[KsymValue]:
        from . import kallsyms
        if self._kallsyms is None:
            self._kallsyms = kallsyms.read(f"{self.obj}: extern {ks.name!r} (__ksym)")
        addrs = {a for a, _ in kallsyms.entries(self._kallsyms, ks.name, llvm_data=True)}
        if not addrs:
            return None
        if len(addrs) > 1:
            shown = ", ".join(f"{a:#x}" for a in sorted(addrs))
            raise NotFoundError(f"{self.obj}: extern {ks.name!r} (__ksym): "
                                f"{kallsyms.KALLSYMS} has several symbols of that name "
                                f"({shown}); which one is meant is ambiguous")
        return KsymValue(0, 0, 0, addrs.pop())

    # -- module BTF fds --------------------------------------------------------------

    def _module_fd(self, module: str) -> FD:
        fd = self._module_fds.get(module)
        if fd is None:
            fd = self._module_fds[module] = _open_module_btf(module)
        return fd

    def _module_slot(self, module: str) -> tuple[int, int]:
        fd = self._module_fd(module)
        slot = self._slots.get(module)
        if slot is None:
            if not self.fd_array:
                self.fd_array.append(0)          # slot 0 means vmlinux
            if len(self.fd_array) > _MAX_FD_SLOTS:
                raise NotFoundError(f"{self.obj}: kfuncs from more than {_MAX_FD_SLOTS} "
                                    f"modules")
            slot = self._slots[module] = len(self.fd_array)
            self.fd_array.append(fd.fileno())
        return fd.fileno(), slot

    # -- patching -----------------------------------------------------------------

    def patch(self, insns: bytearray, relocs: list[KsymReloc], ksyms: dict[str, Ksym]) -> None:
        """Write each extern's kernel id, fd slot or address into ``insns``."""
        for r in relocs:
            ks = ksyms[r.name]
            v = self.value(ks)
            at = r.insn
            if r.call:
                if v is None:       # libbpf's marker: "invalid func unknown#2002000NNN"
                    insns[at * 8:at * 8 + 8] = I.encode(I.CALL,
                                                        imm=POISON_KFUNC_CALL + ks.index)
                else:
                    insns[at * 8:at * 8 + 8] = I.encode(I.CALL, src_reg=I.BPF_PSEUDO_KFUNC_CALL,
                                                        off=v.slot, imm=v.btf_id)
            elif v is not None and ks.kind != "typeless":
                I.set_src_reg(insns, at, I.BPF_PSEUDO_BTF_ID)
                I.set_imm(insns, at, v.btf_id)
                I.set_imm(insns, at + 1, v.btf_fd)
            else:
                addr = v.addr if v is not None else 0
                I.set_imm(insns, at, addr & 0xFFFFFFFF)
                I.set_imm(insns, at + 1, addr >> 32)


def _open_module_btf(module: str) -> FD:
    """An fd of the kernel's BTF object of ``module`` (found by name among the
    loaded BTF objects; 5.11+)."""
    from ._sys import bpf
    next_id = 0
    while True:
        next_id = bpf.get_next_id("btf", next_id)
        if next_id is None:
            raise NotFoundError(f"the BTF of kernel module {module!r} is not loaded "
                                f"(was the module unloaded?)")
        try:
            fd = bpf.get_fd_by_id("btf", next_id)
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                continue         # gone meanwhile
            raise
        try:
            info = bpf.btf_get_info(fd, 64)
        except BaseException:
            fd.close()
            raise
        if info["kernel_btf"] and info["name"] == module:
            return fd
        fd.close()
