"""Percentiles and a terminal histogram of time-to-exit."""
from __future__ import annotations

import math
TYPE_CHECKING = False  # typing costs an import; checkers treat this name as True

if TYPE_CHECKING:
    from typing import Iterable, Sequence

PERCENTILES = (50, 90, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    if not sorted_values:
        raise ValueError("no values")
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def distribution(values: Iterable[float]) -> dict | None:
    """``{"n", "min", "p50", "p90", "p99", "max"}`` (rounded to 0.1), or None if empty."""
    vals = sorted(values)
    if not vals:
        return None
    out: dict = {"n": len(vals), "min": round(vals[0], 1)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(vals, p), 1)
    out["max"] = round(vals[-1], 1)
    return out


def _fmt_us(us: float) -> str:
    if us >= 1_000_000:
        return f"{us / 1e6:.3g}s"
    if us >= 1000:
        return f"{us / 1000:.3g}ms"
    return f"{us:.3g}us"


def histogram(values_us: Iterable[float], width: int = 40) -> list[str]:
    """Power-of-two buckets of microseconds, one line each, with a bar of ``#``."""
    vals = [v for v in values_us if v is not None]
    if not vals:
        return []
    buckets: dict[int, int] = {}
    for v in vals:
        b = 0 if v < 1 else int(math.log2(v)) + 1   # bucket b holds [2^(b-1), 2^b)
        buckets[b] = buckets.get(b, 0) + 1
    lo, hi = min(buckets), max(buckets)
    top = max(buckets.values())
    lines = []
    for b in range(lo, hi + 1):
        n = buckets.get(b, 0)
        start = 0 if b == 0 else 2 ** (b - 1)
        end = 1 if b == 0 else 2 ** b
        label = f"[{_fmt_us(start)}, {_fmt_us(end)})"
        bar = "#" * (round(n / top * width) if n else 0)
        lines.append(f"  {label:>20} {n:6d} |{bar:<{width}}|")
    return lines
