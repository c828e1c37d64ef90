"""Percentiles from fixed-bound histograms (never from samples)."""

from __future__ import annotations

from collections.abc import Sequence

from meshui.telemetry.models import LATENCY_BOUNDS_S


def add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]


def percentile(counts: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS_S) -> float | None:
    """The ``q`` quantile (0 < q <= 1) in seconds, interpolated linearly inside its bucket.

    The first bucket starts at 0; a quantile that falls in the unbounded last
    bucket is reported as the last finite bound (a floor, as Prometheus does).
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def percentiles(
    counts: Sequence[int], quantiles: Sequence[float], bounds: Sequence[float] = LATENCY_BOUNDS_S
) -> list[float | None]:
    """``percentile`` of each of ``quantiles`` (ascending), in one pass over the buckets."""
    total = sum(counts)
    if total <= 0:
        return [None] * len(quantiles)
    found: list[float | None] = []
    wanted = iter(quantiles)
    q = next(wanted, None)
    seen = 0
    for i, count in enumerate(counts):
        while q is not None and count and seen + count >= q * total:
            if i >= len(bounds):
                found.append(bounds[-1])
            else:
                lower = bounds[i - 1] if i else 0.0
                found.append(lower + (bounds[i] - lower) * (q * total - seen) / count)
            q = next(wanted, None)
        if q is None:
            return found
        seen += count
    found += [bounds[-1]] * (len(quantiles) - len(found))
    return found
