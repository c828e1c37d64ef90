"""Percentiles from fixed-bound histograms (never from samples)."""

from __future__ import annotations

from collections.abc import Sequence

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
