"""Side-by-side timing for benchmarks: candidates take turns, so a busy machine slows them alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, tuple[Any, float]]:
    """Run each candidate once per round for `repeats` rounds; (last output, median seconds).

    `warmup` untimed rounds come first, so one-time costs (lazy imports, first
    allocations) are not charged to whichever candidate happens to run first.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (outputs[name], statistics.median(times[name])) for name in fns}
