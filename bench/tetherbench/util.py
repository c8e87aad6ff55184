"""Paths, units, logging and the statistics every module uses."""

import os
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO = BENCH_DIR.parent
TOOLS = BENCH_DIR / "tools"
MIB = 1 << 20
GIB = 1 << 30
NCPU = os.cpu_count() or 1

T0 = time.monotonic()


def log(msg):
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


def pct(values, p):
    """Percentile with linear interpolation (p in 0..100)."""
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values):
    """The median of the values that were measured (None: not measured)."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def read(path, default=None):
    try:
        return Path(path).read_text()
    except OSError:
        return default
