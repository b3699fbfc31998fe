"""BTF: parsing program and kernel BTF, .BTF.ext, encoding for BPF_BTF_LOAD, CO-RE.

Modules (import the one you need; this package imports nothing eagerly):

* ``types``   the type model, one class per BTF kind, ids not references
* ``parse``   ``BTFSpec.from_bytes``: a whole blob, validated
* ``ext``     ``BTFExt.from_bytes``: func_info, line_info, CO-RE relocations
* ``kernel``  ``KernelBTF.load()``: vmlinux (and module) BTF, indexed lazily
* ``marshal`` ``encode``: spec -> blob, DATASEC fix-ups and sanitising
* ``core``    ``CoreRelocator``: CO-RE relocation results and ``apply``
"""
