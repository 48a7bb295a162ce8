"""Timing helpers shared by the benchmark scripts (imported as a sibling module: run the scripts as files)."""
from __future__ import annotations

import statistics
import time


def runs_of(fn, runs: int) -> list[float]:
    """Seconds taken by each of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def best_of(fn, runs: int) -> float:
    """The fastest of ``runs`` calls of ``fn``, in seconds."""
    return min(runs_of(fn, runs))


def median(fn, runs: int = 5) -> float:
    """The median of ``runs`` calls of ``fn``, in seconds."""
    return statistics.median(runs_of(fn, runs))
