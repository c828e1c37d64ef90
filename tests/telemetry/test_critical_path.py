"""The critical path through known span layouts."""

from __future__ import annotations

import itertools

from meshui.telemetry.critical_path import Segment, Timing, critical_path


def _t(span: str, parent: str, start: int, end: int) -> Timing:
    return Timing(span, parent, start, end)


def test_a_lone_span_is_its_own_path() -> None:
    assert critical_path([_t("a", "", 0, 10)], "a") == [Segment("a", 0, 10)]


def test_sequential_children_and_the_parents_own_time_tile_the_root() -> None:
    spans = [_t("root", "", 0, 100), _t("db", "root", 10, 40), _t("cache", "root", 50, 90)]
    assert critical_path(spans, "root") == [
        Segment("root", 0, 10),
        Segment("db", 10, 40),
        Segment("root", 40, 50),
        Segment("cache", 50, 90),
        Segment("root", 90, 100),
    ]


def test_of_parallel_children_the_one_that_finished_last_is_on_the_path() -> None:
    spans = [_t("root", "", 0, 100), _t("fast", "root", 10, 30), _t("slow", "root", 10, 80)]
    path = critical_path(spans, "root")
    assert [s.span_id for s in path] == ["root", "slow", "root"]
    assert "fast" not in {s.span_id for s in path}


def test_the_path_descends_into_grandchildren() -> None:
    spans = [
        _t("web", "", 0, 100),
        _t("catalog", "web", 5, 95),
        _t("inventory", "catalog", 20, 70),
    ]
    assert critical_path(spans, "web") == [
        Segment("web", 0, 5),
        Segment("catalog", 5, 20),
        Segment("inventory", 20, 70),
        Segment("catalog", 70, 95),
        Segment("web", 95, 100),
    ]


def test_a_child_outliving_its_parent_is_cut_at_the_parents_end() -> None:
    spans = [_t("root", "", 0, 50), _t("async", "root", 40, 200)]
    assert critical_path(spans, "root") == [Segment("root", 0, 40), Segment("async", 40, 50)]


def test_segments_never_overlap_and_cover_the_root() -> None:
    spans = [
        _t("r", "", 0, 1000),
        *[_t(f"c{i}", "r", i * 90, i * 90 + 150) for i in range(10)],
        *[_t(f"g{i}", f"c{i}", i * 90 + 10, i * 90 + 60) for i in range(10)],
    ]
    path = critical_path(spans, "r")
    assert path[0].start_us == 0
    assert path[-1].end_us == 1000
    assert all(a.end_us == b.start_us for a, b in itertools.pairwise(path))


def test_a_deep_chain_does_not_recurse_and_an_unknown_root_is_empty() -> None:
    spans = [_t("s0", "", 0, 10_000)] + [_t(f"s{i}", f"s{i - 1}", i, 10_000 - i) for i in range(1, 5000)]
    assert len(critical_path(spans, "s0")) == 2 * 5000 - 1
    assert critical_path(spans, "missing") == []
