"""The running kernel's BTF, indexed lazily: ``KernelBTF.load()``.

``/sys/kernel/btf/vmlinux`` is ~5.5 MB with ~126k types; decoding all of it
into Python objects takes over a second, and a loader needs a few dozen types.
So this module:

* maps the blob (``mmap`` works on 6.16+, otherwise one ``read()``, ~7 ms);
* at a first start, reads it lazily: records are walked (one Python iteration
  each, the only per-record work) only up to the highest id asked for, and a
  name is found by scanning the section for its string offset: ``find`` in a
  copy of the words' low 16 bits (``_hay``, 1.6 MB, built by two strided
  slices), each hit kept if a record starts there.  Within the walk that is a
  ``bisect`` of ``offsets``; past it, a hit that could not begin a run of
  well-formed records is rejected without walking (the members', parameters'
  and type-id words that share the value), and one that could is walked to.
  A CO-RE load asks for a handful of names of types among the first few
  thousand records: ~1.5 ms a name, a few hundred records walked;
* builds the full index when a start needs the whole section (``len``, more
  than _LAZY_SCANS names, a record past half of it: functions) and caches it
  on disk keyed by the kernel's identity (and this code's,
  :data:`INDEX_CODE`), so later starts map it in well under a millisecond:
  ``offsets`` of every record (the walk, ~10 ms for vmlinux's ~126k records)
  and the named records' name offsets in ascending order (``_snames``) beside
  their indices (``_sidx``) -- gathered by ``itemgetter`` and ordered by a
  stable ``sorted`` keyed by a C method, loops in C; then a name is a
  ``bisect``;
* finds a name's string offset by ``b"\\0name\\0"`` in the string section,
  and keeps the offsets of ``name___flavour`` strings (one scan for ``___``);
* decodes only the types asked for, once each.

``tools/bench_kernel_btf.py`` times a first and a later start.

Everything read from the blob is checked as it is decoded, and every record
walked; a lazy start leaves the records past its walk unchecked (a damaged
tail is found when something walks there).  A stale or damaged on-disk index
is detected (a record's length disagreeing with the next offset) and rebuilt.  Module BTF (``/sys/kernel/btf/<module>``, Linux 5.11+) is split
BTF on top of vmlinux: ids and string offsets continue the base's.

Kernel BTF needs CONFIG_DEBUG_INFO_BTF (Linux 5.4+).
"""
from __future__ import annotations

import mmap
import os
import struct
import sys
from bisect import bisect_left, bisect_right
from itertools import compress, count
from operator import itemgetter

from .._cache import (KEY_ENDS, VMLINUX, btf_key, cache_dir, code_key, is_private,
                      module_btf_names, write_atomic)
from ..errors import BTFError, NotFoundError, NotSupportedError
from . import types as T
from .parse import (TAIL_FIXED, TAIL_ITEM, BTFLookups, Header, check_strings, decode_type,
                    essential_name, make_string_reader, record_end)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterator, Optional

_INDEX_MAGIC = b"RPBTFIX4"
# The modules whose code shapes a cached index (the record walk and each kind's
# record size, the flavoured-name scan, the file's reading and writing): an edit
# of any of them must not be hidden by an index an older version wrote.
INDEX_CODE = ("btf/kernel.py", "btf/parse.py", "btf/types.py", "_cache.py")
_FIXED_W = tuple(n // 4 for n in TAIL_FIXED)
_ITEM_W = tuple(n // 4 for n in TAIL_ITEM)
# A first start scans for this many names before it builds the full index
# (a scan is ~1.5 ms; the index ~30 ms, paid once: it is cached).
_LAZY_SCANS = 24
# Records a lookup checks after a candidate start (see _could_start_record).
_CHAIN = 4


def _record_words(info: int) -> int:
    """Length in words of a record with this info word; 0 for an unknown kind."""
    kind = (info >> 24) & 0x1F
    if kind == 0 or kind >= len(_FIXED_W):
        return 0
    return 3 + _FIXED_W[kind] + _ITEM_W[kind] * (info & 0xFFFF)

_loaded: dict[str, "KernelBTF"] = {}


class _LazyTypes:
    """``btf.types``: a read-only sequence that decodes on access."""
    __slots__ = ("_btf",)

    def __init__(self, btf: "KernelBTF") -> None:
        self._btf = btf

    def __len__(self) -> int:
        return len(self._btf)

    def __getitem__(self, i: int) -> T.Type:
        if i < 0:
            i += len(self._btf)
        return self._btf.type_by_id(i)

    def __iter__(self) -> Iterator[T.Type]:
        return (self._btf.type_by_id(i) for i in range(len(self._btf)))


class KernelBTF(BTFLookups):
    """Lazily indexed kernel (or module) BTF with the ``BTFSpec`` lookup interface."""

    def __init__(self, buf, *, path: str = "", base: Optional["KernelBTF"] = None,
                 use_cache: bool = True) -> None:
        if sys.byteorder != "little":
            raise NotSupportedError("rawprobe reads kernel BTF only on little-endian hosts")
        self.path = path
        self.base = base
        self._buf = buf
        hdr = Header(buf)
        if (hdr.types_end - hdr.types_start) % 4:
            raise BTFError(f"{path or 'BTF'}: type section length is not a multiple of 4")
        self._ts, self._te = hdr.types_start, hdr.types_end
        self._ss, self._se = hdr.strs_start, hdr.strs_end
        check_strings(buf[self._ss:self._ss + 1] + buf[self._se - 1:self._se]
                      if self._se > self._ss else b"", split=base is not None)
        self.flags = hdr.flags
        self.first_id = len(base) if base is not None else 1
        self._name = make_string_reader(buf, self._ss, self._se, base=base)
        self._memo: dict[int, T.Type] = {}
        self._from_cache = False
        # Lists and tuples when built here, views of the mapped cache file when
        # read from it (no ``array``: it imports collections.abc, ~3 ms).
        self.offsets: Any = ()
        self._snames: Any = ()
        self._sidx: Any = ()
        self._flavoured: Any = ()
        self._flavour_names: Optional[dict[str, list[int]]] = None
        self._load_index(use_cache)

    # -- construction ---------------------------------------------------------

    @classmethod
    def load(cls, path: str = VMLINUX, *, cache: bool = True) -> "KernelBTF":
        """The kernel's BTF at ``path``, opened once per process."""
        kb = _loaded.get(path)
        if kb is None:
            kb = _loaded[path] = cls(_map_file(path), path=path, use_cache=cache)
        return kb

    @classmethod
    def load_module(cls, module: str, *, base: Optional["KernelBTF"] = None) -> "KernelBTF":
        """Split BTF of a loaded kernel module (``/sys/kernel/btf/<module>``, 5.11+)."""
        path = os.path.join(os.path.dirname(VMLINUX), module)
        kb = _loaded.get(path)
        if kb is None:
            if not os.path.exists(path):
                raise NotFoundError(f"no BTF for kernel module {module!r} at {path}: "
                                    f"is the module loaded and built with BTF?")
            kb = _loaded[path] = cls(_map_file(path), path=path,
                                     base=base or cls.load(), use_cache=False)
        return kb

    @classmethod
    def from_bytes(cls, data: bytes, *, base: Optional["KernelBTF"] = None) -> "KernelBTF":
        """Index an in-memory blob (no disk cache); mainly for tests."""
        return cls(bytes(data), base=base, use_cache=False)

    # -- the index ------------------------------------------------------------
    #
    # Two states.  Indexed: ``offsets`` of every record and the name index
    # (``_snames``/``_sidx``), read from the cache or built by walking the whole
    # section.  Lazy (a first start): ``offsets`` covers the records walked so
    # far (``_walked`` is the word where the walk stopped), and a name is found
    # by scanning the section for its offset (:meth:`_scan_named`).  A loader
    # wants a few dozen types, nearly all among the first few thousand records,
    # so a lazy first start walks a few percent of the section.  Whatever needs
    # the whole of it (``len``, many lookups, a record past half the section)
    # builds the full index and caches it for the next start.

    def _load_index(self, use_cache: bool) -> None:
        self._cache_path = _cache_file(self) if use_cache else None
        self._words = memoryview(self._buf)[self._ts:self._te].cast("I")
        self._steps: dict[int, int] = {}   # info word -> record length in words
        self._hay: Optional[bytearray] = None
        self._scans = 0
        if self._cache_path is not None:
            idx = _read_index(self._cache_path, self._cache_key(), len(self._words))
            if idx is not None:
                self.offsets, self._snames, self._sidx, self._flavoured = idx
                self._walked = len(self._words)
                self._from_cache = True
                return
        self._start_lazy()

    def _start_lazy(self) -> None:
        self.offsets = []
        self._walked = 0
        self._snames = self._sidx = self._flavoured = None
        self._from_cache = False

    @property
    def indexed(self) -> bool:
        """Whether the full index is here (read from the cache or built)."""
        return self._snames is not None

    def index(self) -> None:
        """Build the full index now (walking the rest of the section) and cache
        it; a no-op when indexed."""
        if self._snames is not None:
            return
        self._walk_to(len(self._words))
        offs, words = self.offsets, self._words
        names = tuple(words[o] for o in offs) if len(offs) < 2 else itemgetter(*offs)(words)
        # Each a loop in C: the named records' indices, stably by name_off
        # (equal names keep id order), then those name_offs in that order.
        sidx = sorted(compress(count(), names), key=names.__getitem__)
        self._sidx = sidx
        self._snames = tuple(names[i] for i in sidx) if len(sidx) < 2 else itemgetter(*sidx)(names)
        if self._flavoured is None:
            self._flavoured = self._scan_flavoured()
        if self._cache_path is not None:
            _write_index(self._cache_path, self._cache_key(),
                         (self.offsets, self._snames, self._sidx, self._flavoured))

    def _walk_to(self, stop: int) -> None:
        """Walk on until a record starts at or past word ``stop`` (or the
        section ends), appending each record's word offset; validates kinds
        and bounds as it goes.  The hot loop of a first start, one iteration
        per record: an append and a dict lookup (record lengths memoised by
        info word); a new info word (KeyError) leaves it to be measured."""
        words, steps = self._words, self._steps
        n = len(words)
        stop = min(stop, n)
        offs = self.offsets
        app = offs.append
        i = self._walked
        while True:
            try:
                while i < stop:
                    app(i)
                    i += steps[words[i + 1]]
                break
            except KeyError:
                offs.pop()             # appended again once measured
                info = words[i + 1]
                step = _record_words(info)
                if not step:
                    raise BTFError(f"{self.path or 'BTF'}: type record at byte "
                                   f"{i * 4} has unknown kind {(info >> 24) & 0x1F}") from None
                steps[info] = step
            except IndexError:         # a header cut off by the end
                i = n + 1
                break
        if i > n:
            raise BTFError(f"{self.path or 'BTF'}: last type record runs past the end "
                           f"of the type section")
        self._walked = i

    def _walk_past(self, idx: int) -> None:
        """Walk until record ``idx`` (0-based) is known, if the section has it."""
        n = len(self._words)
        while len(self.offsets) <= idx and self._walked < n:
            # records are 3 words or more: ask for a little more than needed
            self._walk_to(self._walked + 4 * (idx + 1 - len(self.offsets)))

    def _could_start_record(self, p: int) -> bool:
        """Whether word ``p`` could begin a record: the next _CHAIN records from
        it would have known kinds and fit.  Every record of a section the walk
        accepts passes, so False proves ``p`` is not one (a lazy lookup's
        hits past the walk are nearly all members' and parameters' names,
        type ids and sizes, which fail at the first or second step)."""
        words = self._words
        n = len(words)
        for _ in range(_CHAIN):
            if p >= n:
                return p == n
            if p + 1 == n:
                return False
            step = _record_words(words[p + 1])
            if not step:
                return False
            p += step
        return p <= n

    def _scan_named(self, name_off: int) -> list[int]:
        """Ids of the records named ``name_off``, without the full index: every
        aligned word equal to it is found by ``find`` in ``_hay`` (the low 16 bits
        of each word, big-endian: the most varied byte last, where ``find``
        skips), then kept if it is a record's first word -- by ``offsets``
        within the walk, by walking on to it past the walk if it could be."""
        if self._hay is None:
            buf, ts, te = self._buf, self._ts, self._te
            hay = self._hay = bytearray((te - ts) // 2)
            hay[0::2] = buf[ts + 1:te:4]
            hay[1::2] = buf[ts:te:4]
        hay, words, offs = self._hay, self._words, self.offsets
        needle = (name_off & 0xFFFF).to_bytes(2, "big")
        ids = []
        pos = hay.find(needle)
        while pos >= 0:
            p = pos >> 1
            if pos & 1 or words[p] != name_off:
                pos = hay.find(needle, pos + 1)
                continue
            if p >= self._walked and self._could_start_record(p):
                self._walk_to(p + 1)
                if self._walked > len(words) // 2:
                    # most of the walk is done: finish it, index and cache
                    self.index()
                    return self._ids_indexed(name_off)
            if p < self._walked:
                k = bisect_left(offs, p)
                if k < len(offs) and offs[k] == p:
                    ids.append(self.first_id + k)
            pos = hay.find(needle, pos + 2)
        return ids

    def _scan_flavoured(self) -> list[int]:
        """String offsets whose essential name differs from the name (rare:
        a few dozen in vmlinux), so flavoured lookups need no second scan."""
        buf, ss, se = self._buf, self._ss, self._se
        base_len = self.str_len - (se - ss)
        found: set[int] = set()
        pos = buf.find(b"___", ss, se)
        while pos >= 0:
            start = buf.rfind(b"\0", ss, pos) + 1 or ss
            off = start - ss + base_len
            if off not in found:
                name = self._name(off)
                if essential_name(name) != name:
                    found.add(off)
            nul = buf.find(b"\0", pos, se)
            if nul < 0:
                break
            pos = buf.find(b"___", nul, se)
        return sorted(found)

    def _cache_key(self) -> bytes:
        b = self._buf
        return (btf_key(self.path, len(b), b[:KEY_ENDS], b[max(0, len(b) - KEY_ENDS):])
                + b"\0" + code_key(INDEX_CODE))

    def _rebuild_index(self) -> None:
        self._start_lazy()
        self._memo.clear()
        self.index()

    # -- lookups --------------------------------------------------------------

    def __len__(self) -> int:
        self.index()
        return self.first_id + len(self.offsets)

    @property
    def types(self) -> _LazyTypes:
        return _LazyTypes(self)

    @property
    def strings(self) -> bytes:
        """This blob's own string section (a copy; prefer the lookups)."""
        return bytes(self._buf[self._ss:self._se])

    @property
    def str_len(self) -> int:
        return (self.base.str_len if self.base is not None else 0) + (self._se - self._ss)

    def string_at(self, off: int) -> str:
        return self._name(off)

    def type_by_id(self, type_id: int) -> T.Type:
        t = self._memo.get(type_id)
        if t is not None:
            return t
        if type_id < self.first_id:
            if type_id == 0:
                t = T.Void()
            elif self.base is not None and type_id > 0:
                return self.base.type_by_id(type_id)
            else:
                raise BTFError(f"no BTF type with id {type_id}")
        else:
            idx = type_id - self.first_id
            if idx >= len(self.offsets):
                self._walk_past(idx)
            if idx >= len(self.offsets):
                raise BTFError(f"no BTF type with id {type_id} (have 0..{len(self) - 1})")
            t = self._decode(idx)
        self._memo[type_id] = t
        return t

    def _decode(self, idx: int) -> T.Type:
        off = self._ts + self.offsets[idx] * 4
        want = self._ts + 4 * (self.offsets[idx + 1] if idx + 1 < len(self.offsets)
                               else self._walked)
        try:
            ok = record_end(self._buf, off, self._te) == want
        except BTFError:
            if not self._from_cache:
                raise
            ok = False
        if not ok:
            if self._from_cache:       # stale index on disk: rebuild and retry once
                self._rebuild_index()
                return self._decode(idx)
            raise BTFError(f"{self.path or 'BTF'}: type index disagrees with the blob "
                           f"at type {idx + self.first_id}")
        return decode_type(self._buf, off, self._name)

    def _name_offset(self, name: str) -> Optional[int]:
        """Offset (in this blob's string space) of the string ``name``, if any.

        Kernel and pahole string tables are deduplicated, so the first exact
        match is the only one; names used by types come early in the table.
        """
        try:
            enc = name.encode()
        except UnicodeEncodeError:
            return None
        if not enc or b"\0" in enc:
            return None
        buf, ss, se = self._buf, self._ss, self._se
        base_len = self.str_len - (se - ss)
        if buf[ss:ss + len(enc) + 1] == enc + b"\0":   # first string (split BTF)
            return base_len
        pos = buf.find(b"\0" + enc + b"\0", ss, se)
        return None if pos < 0 else pos + 1 - ss + base_len

    def _flavoured_offsets(self, name: str) -> list[int]:
        if self._flavoured is None:
            self._flavoured = self._scan_flavoured()
        if self._flavour_names is None:
            d: dict[str, list[int]] = {}
            for off in self._flavoured:
                d.setdefault(essential_name(self._name(off)), []).append(off)
            self._flavour_names = d
        return self._flavour_names.get(name, [])

    def _ids_named(self, name_off: int) -> list[int]:
        """Ids of this blob's types whose name_off is ``name_off``."""
        if self._snames is None:
            self._scans += 1
            if self._scans <= _LAZY_SCANS:
                return self._scan_named(name_off)
            self.index()               # many lookups: the index is cheaper now
        return self._ids_indexed(name_off)

    def _ids_indexed(self, name_off: int) -> list[int]:
        snames = self._snames
        lo = bisect_left(snames, name_off)
        hi = bisect_right(snames, name_off, lo)
        return [self.first_id + self._sidx[k] for k in range(lo, hi)]

    def _string_offsets(self, name: str, flavoured: bool) -> list[int]:
        """Offsets of ``name`` (or, with ``flavoured``, of its flavours) in the
        whole string space: a module's types may name themselves with strings
        of the base (vmlinux) table as well as their own."""
        offs = []
        off = self._name_offset(name)
        if off is not None:
            offs.append(off)
        if flavoured:
            offs += self._flavoured_offsets(name)
        if isinstance(self.base, KernelBTF):
            offs += self.base._string_offsets(name, flavoured)
        return offs

    def _lookup(self, name: str, flavoured: bool) -> list[int]:
        ids: list[int] = []
        if self.base is not None:
            ids += (self.base.essential_ids(name) if flavoured
                    else self.base.types_by_name(name))
        for off in self._string_offsets(name, flavoured):
            ids += self._ids_named(off)
        return sorted(set(ids))

    def types_by_name(self, name: str) -> list[int]:
        """Ids of every type called ``name`` (any kind), ascending."""
        return self._lookup(name, False)

    def essential_ids(self, name: str) -> list[int]:
        """Ids of every type whose name minus any ``___flavour`` is ``name``."""
        return self._lookup(name, True)

    def id_of(self, name: str, kind: type) -> int:
        """The id of the type ``name`` of class ``kind`` (``types.Func``, ...);
        NotFoundError if there is none."""
        for tid in self.types_by_name(name):
            if type(self.type_by_id(tid)) is kind:
                return tid
        raise NotFoundError(f"no {kind.__name__} {name!r} in the kernel's BTF")


class ModuleBTFs:
    """The split BTF of every loaded kernel module (``/sys/kernel/btf/<module>``,
    5.11+), on top of ``base``: listed at the first walk, each parsed the first
    time a walk reaches it.  Walk it as often as needed (CO-RE looks here only
    for types vmlinux lacks).  A module unloaded since the listing is skipped."""

    def __init__(self, base: KernelBTF) -> None:
        self._base = base
        self._names: Optional[list[str]] = None

    def __iter__(self):
        if self._names is None:
            self._names = module_btf_names()
        for name in self._names:
            try:
                yield KernelBTF.load_module(name, base=self._base)
            except (NotFoundError, BTFError, OSError):
                continue


# -- file access and the on-disk index cache --------------------------------

def _map_file(path: str):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotSupportedError(f"{path} does not exist: this kernel has no BTF "
                                f"(needs CONFIG_DEBUG_INFO_BTF, Linux 5.4+)") from None
    except PermissionError:
        raise NotSupportedError(f"{path} is not readable: run as root") from None
    try:
        size = os.fstat(fd).st_size
        try:
            # sysfs allows mapping kernel BTF privately since 6.16: no copy.
            return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        except (OSError, ValueError):
            pass
        chunks = []
        while True:
            chunk = os.read(fd, max(size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _cache_file(kb: KernelBTF) -> Optional[str]:
    d = cache_dir()
    if not d or not kb.path:
        return None
    tag = f"{_fnv1a32(kb.path.encode()):08x}"
    return os.path.join(d, f"btf-index-{os.path.basename(kb.path)}-{tag}.bin")


def _read_index(path: str, key: bytes, nwords: int):
    """Map a cached index; returns (offsets, snames, sidx, flavoured) as
    memoryviews over the file (no copy), or None if absent or not for this blob."""
    try:
        with open(path, "rb") as f:
            if not is_private(os.fstat(f.fileno())):
                return None
            data = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    except (OSError, ValueError):
        return None
    head = len(_INDEX_MAGIC) + 16
    if len(data) < head or data[:len(_INDEX_MAGIC)] != _INDEX_MAGIC:
        return None
    counts = struct.unpack_from("<IIII", data, len(_INDEX_MAGIC))
    klen, n_offs, n_named, n_flav = counts
    pos = _align8(head + klen)
    if data[head:head + klen] != key or \
            len(data) != pos + sum(_align8(4 * n) for n in (n_offs, n_named, n_named, n_flav)):
        return None
    view = memoryview(data)
    out = []
    for n in (n_offs, n_named, n_named, n_flav):
        out.append(view[pos:pos + 4 * n].cast("I"))
        pos += _align8(4 * n)
    offs = out[0]
    # Cheap sanity; each decode re-checks its record against the next offset.
    if not len(offs) or offs[0] != 0 or offs[-1] >= nwords:
        return None
    return tuple(out)


def _fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a: a stable short tag for a path in a file name."""
    h = 0x811C9DC5
    for c in data:
        h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
    return h


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _write_index(path: str, key: bytes, idx: tuple) -> None:
    # No writable cache is fine: the next start walks again.
    offs, snames, sidx, flav = idx
    head = _INDEX_MAGIC + struct.pack("<IIII", len(key), len(offs), len(sidx), len(flav)) + key
    parts = [head]
    for a in idx:                      # each u32[], padded to 8 bytes
        parts.append(struct.pack(f"<{len(a)}I", *a))
    write_atomic(path, b"".join(p.ljust(_align8(len(p)), b"\0") for p in parts))
