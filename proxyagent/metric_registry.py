"""The agent's metric registry: labelled counters and gauges, collectors, and the Prometheus text format.

A sidecar's own small registry rather than prometheus_client: importing that
library (its exposition module brings http.server, wsgiref, urllib.request,
email, gzip, bz2, lzma and more) costs each sidecar about 3 MB of resident
memory, of a 50 MB budget. This module holds what the agent uses and no
more: counters and gauges with fixed label names, collectors that build
families when read, and version 0.0.4 of the text format, which the tests
parse with prometheus_client's own parser.

Not thread-safe: the agent updates its metrics on its one event loop thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


class MetricFamily:
    """One metric's samples. ``name`` is the base name: a counter's samples end in ``_total``."""

    __slots__ = ("documentation", "kind", "label_names", "name", "samples")

    def __init__(self, name: str, documentation: str, kind: Kind, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.kind: Kind = kind
        self.label_names = tuple(label_names)
        self.samples: list[Sample] = []

    def _labels(self, values: Sequence[str]) -> dict[str, str]:
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name}: {len(values)} label values for {len(self.label_names)} label names")
        return dict(zip(self.label_names, values, strict=True))

    def add(self, values: Sequence[str], value: float) -> None:
        """A counter's or gauge's value for one label set."""
        suffix = "_total" if self.kind == "counter" else ""
        self.samples.append(Sample(self.name + suffix, self._labels(values), float(value)))

    def add_histogram(self, values: Sequence[str], cumulative: Sequence[tuple[str, float]], total: float) -> None:
        """A histogram's series for one label set: cumulative (``le``, count) pairs ending with ``+Inf``."""
        labels = self._labels(values)
        for le, count in cumulative:
            self.samples.append(Sample(self.name + "_bucket", {**labels, "le": le}, float(count)))
        self.samples.append(Sample(self.name + "_count", labels, float(cumulative[-1][1]) if cumulative else 0.0))
        self.samples.append(Sample(self.name + "_sum", labels, float(total)))


class Collector(Protocol):
    def collect(self) -> Iterable[MetricFamily]: ...


class Registry:
    """Collectors read in the order they registered; one per agent, so a process may hold several agents."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []
        self._names: set[str] = set()

    def register(self, collector: Collector, names: Iterable[str] = ()) -> None:
        """Add ``collector``; ``names`` (the metric names it will produce) must not be taken already."""
        names = set(names)
        taken = names & self._names
        if taken:
            raise ValueError(f"metric names registered twice: {', '.join(sorted(taken))}")
        self._names |= names
        self._collectors.append(collector)

    def collect(self) -> Iterator[MetricFamily]:
        for collector in self._collectors:
            yield from collector.collect()

    def get_sample_value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        wanted = dict(labels or {})
        for family in self.collect():
            for sample in family.samples:
                if sample.name == name and dict(sample.labels) == wanted:
                    return sample.value
        return None

    def exposition(self) -> bytes:
        """Every family in the Prometheus text format, version 0.0.4."""
        lines: list[str] = []
        for family in self.collect():
            name = family.name + "_total" if family.kind == "counter" else family.name
            lines.append(f"# HELP {name} {_escape_help(family.documentation)}")
            lines.append(f"# TYPE {name} {family.kind}")
            for sample in family.samples:
                lines.append(f"{sample.name}{_label_text(sample.labels)} {_number(sample.value)}")
        return ("\n".join(lines) + "\n").encode() if lines else b""


class _Child:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class CounterChild(_Child):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class GaugeChild(_Child):
    __slots__ = ()

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


C = TypeVar("C", bound=_Child)


class _Metric(Generic[C]):
    """A metric with fixed label names; without label names it has one series, from the start at zero."""

    _kind: Kind
    _child_type: type[C]

    def __init__(self, name: str, documentation: str, label_names: Sequence[str] = (), *, registry: Registry) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self._children: dict[tuple[str, ...], C] = {}
        if not self.label_names:
            self._children[()] = self._child_type()
        sample_name = name + "_total" if self._kind == "counter" else name
        registry.register(self, [sample_name])

    def labels(self, *values: str) -> C:
        if not self.label_names:
            raise ValueError(f"{self.name} has no labels")
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name}: {len(values)} label values for {len(self.label_names)} label names")
        values = tuple(str(value) for value in values)  # as prometheus_client does: a number names a series too
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._child_type()
        return child

    def _only(self) -> C:
        if self.label_names:
            raise ValueError(f"{self.name} has labels: use labels(...)")
        return self._children[()]

    def collect(self) -> Iterator[MetricFamily]:
        family = MetricFamily(self.name, self.documentation, self._kind, self.label_names)
        for values, child in self._children.items():
            family.add(values, child.value)
        yield family


class Counter(_Metric[CounterChild]):
    _kind = "counter"
    _child_type = CounterChild

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)


class Gauge(_Metric[GaugeChild]):
    _kind = "gauge"
    _child_type = GaugeChild

    def set(self, value: float) -> None:
        self._only().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _label_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    # Sorted by name, as prometheus_client writes them: a series reads the same in every scrape.
    return "{" + ",".join(f'{name}="{_escape_value(value)}"' for name, value in sorted(labels.items())) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
