#!/usr/bin/env python3
"""Keep prebuilt/ (the shipped BPF objects) in step with their sources.

The wheel carries compiled objects so users need no clang.  prebuilt/ holds
them plus manifest.json: the clang that built them, the flags, and per object
its sha256 and the sha256 of every repository file it was compiled from (read
from the dependency file clang writes beside each build/ object).  The
Makefile drives this script; run it through make:

    make prebuilt         # = prebuilt.py update --dest prebuilt build/X.bpf.o ...
    make check-prebuilt   # fresh build, then prebuilt.py check ...

``check`` exits 1 with one line per problem, saying which of these it is:
the sources changed since ``make prebuilt`` (run it and commit prebuilt/);
the sources are unchanged but this clang builds different bytes (a different
clang version than the manifest's, or a reproducibility bug); or prebuilt/
itself was edited by hand.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = "manifest.json"


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def clang_version(clang: str) -> str:
    """First line of ``clang --version``, e.g. 'Debian clang version 19.1.7 (3~deb12u1)'."""
    try:
        out = subprocess.run([clang, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"prebuilt.py: cannot run {clang} --version: {exc}") from None
    return out.splitlines()[0].strip()


def parse_depfile(text: str) -> list[str]:
    """Prerequisites listed in a make-style dependency file written by clang -MD."""
    text = text.replace("\\\n", " ")
    _, _, deps = text.partition(": ")
    out: list[str] = []
    word = ""
    i = 0
    while i < len(deps):
        c = deps[i]
        if c == "\\" and i + 1 < len(deps) and deps[i + 1] == " ":
            word += " "  # an escaped space inside a path
            i += 2
            continue
        if c.isspace():
            if word:
                out.append(word)
            word = ""
        else:
            word += c
        i += 1
    if word:
        out.append(word)
    return out


def repo_inputs(obj: str, src_dir: str) -> dict[str, str]:
    """{repo-relative path: sha256} of the repository files obj was built from.

    The Makefile compiles from inside the source directory, so relative
    paths in the dependency file are relative to ``src_dir``."""
    dep = obj + ".d"
    if not os.path.exists(dep):
        raise SystemExit(f"prebuilt.py: {dep} missing: build the object with make, not by hand")
    with open(dep) as f:
        deps = parse_depfile(f.read())
    inputs = {}
    for path in deps:
        full = os.path.realpath(path if os.path.isabs(path) else os.path.join(ROOT, src_dir, path))
        rel = os.path.relpath(full, ROOT)
        if rel.startswith(os.pardir + os.sep) or rel.startswith("build" + os.sep):
            continue  # system headers, generated files: not ours to track
        inputs[rel] = sha256_file(full)
    return dict(sorted(inputs.items()))


def entry_for(obj: str, src_dir: str) -> dict:
    return {
        "sha256": sha256_file(obj),
        "size": os.path.getsize(obj),
        "inputs": repo_inputs(obj, src_dir),
    }


def load_manifest(dest: str) -> dict:
    path = os.path.join(dest, MANIFEST)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"prebuilt.py: {path} missing: run `make prebuilt` and commit {dest}/") from None
    except ValueError as exc:
        raise SystemExit(f"prebuilt.py: {path} is not valid JSON ({exc}): run `make prebuilt`") from None


def update(objects: list[str], dest: str, src_dir: str, clang: str, cflags: str) -> int:
    os.makedirs(dest, exist_ok=True)
    entries = {}
    for obj in objects:
        name = os.path.basename(obj)
        shutil.copyfile(obj, os.path.join(dest, name))
        entries[name] = entry_for(obj, src_dir)
    stale = [
        f for f in os.listdir(dest)
        if f.endswith(".o") and f not in entries
    ]
    for f in stale:
        os.unlink(os.path.join(dest, f))
    manifest = {
        "generated_by": "make prebuilt (tools/prebuilt.py); do not edit",
        "clang": clang_version(clang),
        "cflags": cflags.split(),
        "objects": dict(sorted(entries.items())),
    }
    with open(os.path.join(dest, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
    for name, e in manifest["objects"].items():
        print(f"{dest}/{name}  {e['sha256'][:16]}  {e['size']} bytes")
    return 0


def check(objects: list[str], dest: str, src_dir: str, clang: str) -> int:
    manifest = load_manifest(dest)
    listed = manifest.get("objects", {})
    problems: list[str] = []
    built_names = {os.path.basename(o) for o in objects}
    for name in sorted(set(listed) - built_names):
        problems.append(f"{dest}/{name} is in the manifest but no source builds it: run `make prebuilt`")
    for obj in objects:
        name = os.path.basename(obj)
        want = listed.get(name)
        if want is None:
            problems.append(f"{name} is built from the sources but missing from {dest}/: run `make prebuilt`")
            continue
        shipped = os.path.join(dest, name)
        if not os.path.exists(shipped) or sha256_file(shipped) != want["sha256"]:
            problems.append(f"{shipped} does not match {dest}/{MANIFEST}: it was changed by hand; run `make prebuilt`")
        got = entry_for(obj, src_dir)
        if got["sha256"] == want["sha256"]:
            continue
        changed = sorted(
            p for p in set(got["inputs"]) | set(want.get("inputs", {}))
            if got["inputs"].get(p) != want.get("inputs", {}).get(p)
        )
        if changed:
            problems.append(
                f"{dest}/{name} is stale: {', '.join(changed)} changed since `make prebuilt`; "
                f"run `make prebuilt` and commit {dest}/"
            )
        else:
            have = clang_version(clang)
            why = (f"the manifest was made with '{manifest.get('clang')}', this is '{have}'"
                   if have != manifest.get("clang")
                   else "same clang and sources: the build is not reproducible (see `make check-repro`)")
            problems.append(f"{obj} differs from {dest}/{name} although its sources did not change: {why}")
    if problems:
        for p in problems:
            print(f"check-prebuilt: {p}", file=sys.stderr)
        return 1
    print(f"check-prebuilt: {dest}/ matches the sources ({len(objects)} objects)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["update", "check"])
    p.add_argument("objects", nargs="+", help="freshly built objects (build/X.bpf.o, with X.bpf.o.d beside)")
    p.add_argument("--dest", default="prebuilt")
    p.add_argument("--src-dir", default="rawprobe/bpf_src", help="directory the objects were compiled in")
    p.add_argument("--clang", default="clang-19")
    p.add_argument("--cflags", default="", help="recorded in the manifest (update)")
    args = p.parse_args(argv)
    for obj in args.objects:
        if not os.path.exists(obj):
            raise SystemExit(f"prebuilt.py: {obj} missing: run `make bpf` first")
    if args.command == "update":
        return update(args.objects, args.dest, args.src_dir, args.clang, args.cflags)
    return check(args.objects, args.dest, args.src_dir, args.clang)


if __name__ == "__main__":
    sys.exit(main())
