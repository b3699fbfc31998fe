"""Print a seccomp profile for rawprobe's container: the container runtime's own
default profile, with bpf(2) allowed to a process that holds CAP_BPF and
perf_event_open(2) to one that holds CAP_PERFMON.

Why it is needed: since Linux 5.8 CAP_BPF + CAP_PERFMON are enough to load and
attach tracing programs, but the default profile of podman/CRI-O
(containers-common, e.g. 0.50 in Debian 12) allows both calls only to a
container holding CAP_SYS_ADMIN.  With ``--cap-add=BPF,PERFMON`` alone, bpf(2)
then fails with EPERM from the seccomp filter before the kernel looks at a
capability.  (Docker 23+ and containerd since 2022 gate the two calls on
CAP_BPF / CAP_PERFMON already; this script changes nothing else.)

    python3 deploy/seccomp.py [/usr/share/containers/seccomp.json] > rawprobe-seccomp.json
    podman run --security-opt seccomp=rawprobe-seccomp.json --cap-drop=ALL --cap-add=BPF,PERFMON ...

Rule semantics (containers-common, runc): a rule applies when the container
holds every capability in ``includes.caps`` and none in ``excludes.caps``.
The calls' capability-gated rules are replaced by: allowed with the new
capability, allowed with CAP_SYS_ADMIN (as before), EPERM otherwise.
A call the profile allows unconditionally is left alone.
"""
from __future__ import annotations

import json
import sys

DEFAULT_PROFILE = "/usr/share/containers/seccomp.json"
EPERM = 1
# the call -> the capability that lets the kernel (5.8+) accept it
GATES = {"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}


def _gated(rule: dict) -> bool:
    return bool(rule.get("includes", {}).get("caps") or rule.get("excludes", {}).get("caps"))


def widen(profile: dict) -> dict:
    """``profile`` with the GATES calls gated on their own capabilities."""
    rules = profile.get("syscalls") or []
    free = {n for r in rules if r.get("action") == "SCMP_ACT_ALLOW" and not _gated(r)
            and not r.get("args") for n in r["names"]}
    calls = {c: cap for c, cap in GATES.items() if c not in free}
    out = []
    for r in rules:
        names = [n for n in r["names"] if not (n in calls and _gated(r))]
        if names:
            out.append({**r, "names": names})
    for call, cap in calls.items():
        for need in (cap, "CAP_SYS_ADMIN"):
            out.append({"names": [call], "action": "SCMP_ACT_ALLOW",
                        "includes": {"caps": [need]}, "excludes": {}})
        out.append({"names": [call], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                    "includes": {}, "excludes": {"caps": [cap, "CAP_SYS_ADMIN"]}})
    return {**profile, "syscalls": out}


def main(argv: list[str]) -> int:
    path = argv[0] if argv else DEFAULT_PROFILE
    try:
        with open(path) as f:
            profile = json.load(f)
    except (OSError, ValueError) as e:
        print(f"seccomp.py: cannot read the runtime's default profile {path}: {e}; "
              "give its path (podman/CRI-O: /usr/share/containers/seccomp.json)",
              file=sys.stderr)
        return 1
    json.dump(widen(profile), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
