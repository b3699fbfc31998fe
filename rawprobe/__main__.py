"""``python -m rawprobe``: the interceptor's command line.

    python -m rawprobe                  the demo (a bundled toy target, intercepted and timed)
    python -m rawprobe watch ...        signal the callers of a routine, time their exit
    python -m rawprobe features         what the running kernel supports

Nothing heavy is imported here: each command imports what it needs.
"""
from __future__ import annotations

import sys

USAGE = """usage: rawprobe [demo | watch OPTIONS | features]

  (no command)   run the demo: a toy target is intercepted at its write() and timed
  watch          signal the processes that call a kernel routine and time their exit
                 (rawprobe watch --help for the options)
  features       what this kernel supports (hooks, maps, helpers)
"""


def _fail(message: str, status: int) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    sys.stderr.write(f"rawprobe: {first}\n")
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    cmd = args[0] if args else "demo"
    try:
        if cmd == "demo":
            from .interceptor.demo import demo_main
            return demo_main(args[1:])
        if cmd == "watch":
            if any(a in ("-h", "--help") for a in args[1:]):
                from .interceptor.options import build_parser
                build_parser().print_help()
                return 0
            from .interceptor.cli import watch_main
            return watch_main(args[1:])
        if cmd == "features":
            from .features import main_features
            from .interceptor.hooks import auto_row
            return main_features(args[1:], extra=[auto_row()])
        if cmd in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return 0
        if cmd == "--version":
            from . import __version__
            sys.stdout.write(f"rawprobe {__version__}\n")
            return 0
        return _fail(f"unknown command {cmd!r}: use demo, watch or features (see --help)", 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 -- turned into one line below
        from .errors import PermissionDeniedError, RawprobeError
        from .interceptor.options import UsageError
        if isinstance(e, UsageError):
            return _fail(f"error: {e}", 2)
        if isinstance(e, PermissionDeniedError):
            return _fail(f"permission denied: {e.hint or e}", 1)
        if isinstance(e, RawprobeError):
            return _fail(f"error: {e}", 1)
        if isinstance(e, OSError):
            return _fail(f"error: {e.strerror or e}", 1)
        raise


if __name__ == "__main__":
    sys.exit(main())
