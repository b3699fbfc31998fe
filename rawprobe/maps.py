"""Loaded maps: a :class:`Map` owns one BPF map fd.

Keys and values are ``bytes``; an ``int`` key is encoded little-endian in the
map's key size, so ``m.lookup(0)`` works on arrays.  Per-CPU maps take and
return one value per possible CPU, each padded to 8 bytes as the kernel wants:
:meth:`Map.lookup_percpu` splits them.
"""
from __future__ import annotations

import os

from ._fdowner import FDOwner
from ._sys import bpf as _bpf
from .errors import NotSupportedError, RawprobeError, SyscallError
from .uapi import MapType

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Iterator, Union

    from ._sys.fd import FD
    from .spec import MapSpec

    Key = Union[bytes, bytearray, memoryview, int]
    Value = Union[bytes, bytearray, memoryview, int]

__all__ = ["Map", "possible_cpus"]

# map types whose values are per-CPU
_PERCPU_TYPES = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
                           MapType.PERCPU_CGROUP_STORAGE})
# map types with no key/value interface from user space
_NO_ELEMS = frozenset({MapType.RINGBUF, MapType.USER_RINGBUF})


_possible_cpus = 0


def possible_cpus() -> int:
    """Number of possible CPUs (the kernel's nr_cpu_ids): per-CPU value slots.
    Read once per process (cached by hand: functools is one more import)."""
    global _possible_cpus
    if not _possible_cpus:
        _possible_cpus = _read_possible_cpus()
    return _possible_cpus


def _read_possible_cpus() -> int:
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class Map(FDOwner):
    """A BPF map in the kernel.  Closed by its Collection, or by :meth:`close`
    (``.fd``, ``fileno()``, ``closed``, ``with``: see :class:`~rawprobe._fdowner.FDOwner`).

    ``pin_path``: where the map is pinned (``LIBBPF_PIN_BY_NAME`` maps), else
    None; ``reused``: True when the load found it pinned and reused it rather
    than creating it (:mod:`rawprobe.pinning`)."""

    def __init__(self, name: str, fd: FD, type: int, key_size: int, value_size: int,
                 max_entries: int, map_flags: int = 0, spec: MapSpec | None = None,
                 pin_path: str | None = None, reused: bool = False) -> None:
        super().__init__(fd)
        self.pin_path = pin_path
        self.reused = reused
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.map_flags = map_flags
        self.spec = spec
        self.percpu = type in _PERCPU_TYPES
        # bytes the kernel reads/writes for one value
        self._value_len = ((value_size + 7) & ~7) * possible_cpus() if self.percpu \
            else value_size

    def __repr__(self) -> str:
        return f"<Map {self.name!r} type={self.type} {self._fd_state()}>"

    # -- elements -----------------------------------------------------------------------

    def _key(self, key: Key) -> bytes:
        if isinstance(key, int):
            try:
                return key.to_bytes(self.key_size, "little", signed=key < 0)
            except OverflowError:
                raise RawprobeError(f"map {self.name!r}: key {key} does not fit in "
                                    f"{self.key_size} bytes") from None
        key = bytes(key)
        if len(key) != self.key_size:
            raise RawprobeError(f"map {self.name!r}: key is {len(key)} bytes, the map's "
                                f"key_size is {self.key_size}")
        return key

    def _value(self, value: Value) -> bytes:
        if isinstance(value, int):
            try:
                value = value.to_bytes(self.value_size, "little", signed=value < 0)
            except OverflowError:
                raise RawprobeError(f"map {self.name!r}: value {value} does not fit in "
                                    f"{self.value_size} bytes") from None
            if self.percpu:   # the same value on every CPU
                slot = (self.value_size + 7) & ~7
                value = value.ljust(slot, b"\0") * possible_cpus()
            return value
        value = bytes(value)
        if len(value) != self._value_len:
            what = (f"{possible_cpus()} per-CPU slots of {(self.value_size + 7) & ~7} bytes"
                    if self.percpu else f"value_size {self.value_size}")
            raise RawprobeError(f"map {self.name!r}: value is {len(value)} bytes, the "
                                f"map wants {what}")
        return value

    def _check_elems(self) -> None:
        if self.type in _NO_ELEMS:
            raise NotSupportedError(f"map {self.name!r} is a ring buffer: read it with "
                                    f"rawprobe.RingBuffer, not lookup/update")

    def lookup(self, key: Key) -> bytes | None:
        """The value at ``key``, or None if there is none."""
        self._check_elems()
        return _bpf.map_lookup_elem(self._live(), self._key(key), self._value_len)

    def lookup_percpu(self, key: Key) -> list[bytes] | None:
        """A per-CPU map's values at ``key``, one per possible CPU."""
        raw = self.lookup(key)
        if raw is None:
            return None
        if not self.percpu:
            return [raw]
        slot = (self.value_size + 7) & ~7
        return [raw[i:i + self.value_size] for i in range(0, len(raw), slot)]

    def __getitem__(self, key: Key) -> bytes:
        v = self.lookup(key)
        if v is None:
            raise KeyError(key)
        return v

    def __setitem__(self, key: Key, value: Value) -> None:
        self.update(key, value)

    def __contains__(self, key: Key) -> bool:
        return self.lookup(key) is not None

    def update(self, key: Key, value: Value, flags: int = 0) -> None:
        """Create or replace the value at ``key`` (``flags``: BPF_ANY/NOEXIST/EXIST)."""
        self._check_elems()
        _bpf.map_update_elem(self._live(), self._key(key), self._value(value), flags)

    def delete(self, key: Key) -> bool:
        """Remove ``key``; False if it was not there."""
        self._check_elems()
        return _bpf.map_delete_elem(self._live(), self._key(key))

    def keys(self) -> Iterator[bytes]:
        """Every key, by BPF_MAP_GET_NEXT_KEY (a key deleted meanwhile restarts
        the walk at the kernel's discretion, as with any BPF map iteration)."""
        self._check_elems()
        key = None
        while True:
            key = _bpf.map_get_next_key(self._live(), key, self.key_size)
            if key is None:
                return
            yield key

    __iter__ = keys

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs; a key deleted between the two calls is skipped."""
        for key in self.keys():
            value = _bpf.map_lookup_elem(self._live(), key, self._value_len)
            if value is not None:
                yield key, value

    def values(self) -> Iterator[bytes]:
        for _, value in self.items():
            yield value

    def unpin(self) -> None:
        """Remove the map's pin (the map lives on while anything holds it: this
        object, a program, another pin).  Nothing happens if it has none."""
        path = self.pin_path
        if path is None:
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise SyscallError(f"unlink({path!r}), the pin of map {self.name!r}",
                               e.errno or 0) from None
        self.pin_path = None

    def freeze(self) -> None:
        """BPF_MAP_FREEZE (5.2): no more writes from user space."""
        _bpf.map_freeze(self._live())
