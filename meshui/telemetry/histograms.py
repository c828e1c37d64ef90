"""Percentiles from fixed-bound histograms (never from samples)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate

from meshui.telemetry.models import LATENCY_BOUNDS_S


def add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def percentile(counts: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS_S) -> float | None:
    """The ``q`` quantile (0 < q <= 1) in seconds; see ``percentiles``."""
    return percentiles(counts, (q,), bounds)[0]


def percentiles(
    counts: Sequence[int], quantiles: Sequence[float], bounds: Sequence[float] = LATENCY_BOUNDS_S
) -> list[float | None]:
    """Each of ``quantiles`` (ascending, 0 < q <= 1) in seconds, in one pass over the buckets, interpolated
    linearly inside the bucket holding its rank.

    The first bucket starts at 0; a quantile that falls in the unbounded last
    bucket is reported as the last finite bound (a floor, as Prometheus does).
    """
    # Running totals and a binary search per quantile (both in C): a graph asks this of thousands of edges.
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return [None] * len(quantiles)
    found: list[float | None] = []
    for q in quantiles:
        rank = q * total
        # The first bucket whose running total reaches the rank; it holds at least one count.
        i = bisect_left(cumulative, rank)
        if i >= len(bounds):
            found.append(bounds[-1])
            continue
        seen = cumulative[i - 1] if i else 0
        lower = bounds[i - 1] if i else 0.0
        found.append(lower + (bounds[i] - lower) * (rank - seen) / counts[i])
    return found
