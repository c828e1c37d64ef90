"""1-minute rollups rebuilt from 10 s buckets, and metric retention per resolution."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from meshui.telemetry.actions import do_add_edge_increments, do_prune_edge_buckets, do_roll_up
from meshui.telemetry.models import LATENCY_BOUNDS_S, EdgeBucket, RollupWatermark
from meshui.telemetry.otlp_metrics import EdgeIncrement

T = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _raw(at: dt.datetime, requests: int, *, status_class: str = "2xx") -> None:
    counts = [0] * (len(LATENCY_BOUNDS_S) + 1)
    counts[3] = requests
    key = (at, "outbound", "shop", "web", "web-v1", "reviews.shop", "reviews-v1", status_class)
    do_add_edge_increments(
        {key: EdgeIncrement(requests=requests, latency_sum_s=requests * 0.004, latency_counts=counts)}
    )


def _rollups() -> list[tuple[dt.datetime, str, int, int]]:
    rows = EdgeBucket.objects.filter(resolution_s=60).order_by("start", "status_class")
    return [(row.start, row.status_class, row.requests, row.latency_counts[3]) for row in rows]


@pytest.mark.django_db
def test_minutes_are_summed_from_their_buckets_and_rebuilding_gives_the_same_rows() -> None:
    for seconds, requests in ((0, 5), (10, 7), (50, 1)):
        _raw(T + dt.timedelta(seconds=seconds), requests)
    _raw(T + dt.timedelta(seconds=20), 2, status_class="5xx")
    _raw(T + dt.timedelta(seconds=60), 4)
    _raw(T + dt.timedelta(seconds=125), 9)  # its minute has not ended (with the settle time): not yet
    now = T + dt.timedelta(seconds=150)
    assert do_roll_up(now, dt.timedelta(minutes=10), settle=dt.timedelta(seconds=20)) == 3
    expected = [(T, "2xx", 13, 13), (T, "5xx", 2, 2), (T + dt.timedelta(minutes=1), "2xx", 4, 4)]
    assert _rollups() == expected
    _raw(T + dt.timedelta(seconds=30), 100)  # late data within the look-back
    do_roll_up(now, dt.timedelta(minutes=10), settle=dt.timedelta(seconds=20))
    assert _rollups()[0] == (T, "2xx", 113, 113)
    assert len(_rollups()) == 3


@pytest.mark.django_db
def test_long_windows_read_the_rollups(admin_client: APIClient) -> None:
    _raw(T, 30)
    do_roll_up(T + dt.timedelta(minutes=5), dt.timedelta(minutes=10), settle=dt.timedelta(seconds=20))
    at = (T + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    response = admin_client.get(f"/api/v1/graph/?window=2h&at={at}")
    assert response.status_code == 200, response.content
    graph = response.json()
    assert graph["window"]["resolution_s"] == 60
    assert [e["requests"] for e in graph["edges"]] == [30]


def _graph_requests(client: APIClient, at: dt.datetime) -> int:
    response = client.get(f"/api/v1/graph/?window=5m&at={at.isoformat().replace('+00:00', 'Z')}")
    assert response.status_code == 200, response.content
    graph = response.json()
    assert graph["window"]["resolution_s"] == 10
    return sum(edge["requests"] for edge in graph["edges"])


@pytest.mark.django_db
def test_a_short_window_reads_rollups_for_whole_minutes_up_to_their_watermark(admin_client: APIClient) -> None:
    for step in range(-12, 24):  # one request every 10 s from T - 2 min to T + 4 min
        _raw(T + dt.timedelta(seconds=10 * step), 1)
    at = T + dt.timedelta(minutes=3, seconds=30)  # window [T - 1:30, T + 3:30): 30 buckets
    assert _graph_requests(admin_client, at) == 30, "no rollups yet: raw buckets only"
    do_roll_up(T + dt.timedelta(minutes=2, seconds=20), dt.timedelta(minutes=10), settle=dt.timedelta(seconds=20))
    assert _graph_requests(admin_client, at) == 30, "rollups up to T + 2 min, raw buckets around them"
    # Proof that whole minutes come from rollups: without their raw buckets the answer is the same.
    EdgeBucket.objects.filter(resolution_s=10, start__gte=T, start__lt=T + dt.timedelta(minutes=2)).delete()
    assert _graph_requests(admin_client, at) == 30
    # Data arriving for a rolled-up minute goes into its rollup as it is stored.
    _raw(T + dt.timedelta(seconds=30), 5)
    assert _graph_requests(admin_client, at) == 35
    do_roll_up(T + dt.timedelta(minutes=2, seconds=20), dt.timedelta(minutes=10), settle=dt.timedelta(seconds=20))
    assert _graph_requests(admin_client, at) == 35 - 12, "the rebuilt minutes hold only the raw buckets left"


def _hour_requests(client: APIClient) -> int:
    response = client.get(f"/api/v1/graph/?window=1h&at={T.isoformat().replace('+00:00', 'Z')}")
    assert response.status_code == 200, response.content
    return sum(edge["requests"] for edge in response.json()["edges"])


ROLL = {"lookback": dt.timedelta(minutes=10), "settle": dt.timedelta(seconds=20)}


@pytest.mark.django_db
def test_rollups_never_hide_raw_buckets_after_an_outage_a_first_run_or_very_late_data(
    admin_client: APIClient,
) -> None:
    for step in range(-6 * 40, 0):  # one request every 10 s over the 40 minutes before T
        _raw(T + dt.timedelta(seconds=10 * step), 1)
    assert _hour_requests(admin_client) == 240
    # The first run covers its look-back only; the older minutes stay raw.
    do_roll_up(T - dt.timedelta(minutes=30), **ROLL)
    assert _hour_requests(admin_client) == 240
    # Beat was down for 30 minutes: the next run rebuilds the minutes it missed.
    do_roll_up(T + dt.timedelta(seconds=20), **ROLL, max_backfill=dt.timedelta(hours=24))
    watermark = RollupWatermark.objects.get()
    assert (watermark.rolled_from, watermark.rolled_until) == (T - dt.timedelta(minutes=41), T)
    assert _hour_requests(admin_client) == 240
    # Data 35 minutes late, far beyond the look-back, still counts.
    _raw(T - dt.timedelta(minutes=35), 7)
    assert _hour_requests(admin_client) == 247


@pytest.mark.django_db
def test_a_gap_longer_than_the_raw_buckets_last_starts_the_rollups_over() -> None:
    do_roll_up(T, **ROLL)
    do_roll_up(T + dt.timedelta(hours=30), **ROLL, max_backfill=dt.timedelta(hours=24))
    watermark = RollupWatermark.objects.get()
    end = T + dt.timedelta(hours=30) - dt.timedelta(seconds=60)
    assert (watermark.rolled_from, watermark.rolled_until) == (end - dt.timedelta(minutes=10), end)


@pytest.mark.django_db
def test_raw_buckets_and_rollups_expire_on_their_own_clocks() -> None:
    _raw(T - dt.timedelta(hours=30), 1)
    _raw(T - dt.timedelta(hours=1), 2)
    do_roll_up(T, dt.timedelta(hours=40), settle=dt.timedelta(0))
    removed = do_prune_edge_buckets(T, dt.timedelta(hours=24), dt.timedelta(days=7))
    assert removed == 1, "only the 30 h old raw bucket"
    assert sorted(EdgeBucket.objects.values_list("resolution_s", "requests")) == [(10, 2), (60, 1), (60, 2)]
    assert do_prune_edge_buckets(T + dt.timedelta(days=8), dt.timedelta(hours=24), dt.timedelta(days=7)) == 3
