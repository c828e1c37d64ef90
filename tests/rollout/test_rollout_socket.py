"""/ws/rollout/ over a real server: a subscribed browser sees where agents stand, then each rollout's progress."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from meshui.accounts.models import RoleBinding
from meshui.catalog.models import Agent, AgentStatus, Namespace
from meshui.rollout.models import PushOutcome
from meshui.rollout.progress import ROLLOUT_GROUP, RolloutProgress
from meshui.rollout.tasks import push_snapshots
from tests.asgi_server import serving
from tests.rollout.conftest import Fleet, bump_version

pytestmark = pytest.mark.django_db(transaction=True)
DEADLINE_S = 20.0


@pytest.fixture
def web(_fast_password_hashing: Any) -> Iterator[str]:
    with serving() as address:
        yield address


@sync_to_async
def _session(role: str | None = None, namespace: str = "") -> str:
    """A logged-in session: a superuser, or a user holding ``role`` in ``namespace`` only."""
    if role is None:
        user = User.objects.create_superuser(username="rhea", password="correct horse battery staple")
    else:
        user = User.objects.create_user(username="vera", password="correct horse battery staple")
        RoleBinding.objects.create(user=user, role=role, namespace=Namespace.objects.get_or_create(name=namespace)[0])
    client = Client()
    assert client.login(username=user.username, password="correct horse battery staple")
    return str(client.cookies["sessionid"].value)


async def _open(web: str, cookie: str) -> ClientConnection:
    return await connect(
        f"ws://{web}/ws/rollout/",
        origin=Origin(f"http://{web}"),
        additional_headers={"Cookie": f"sessionid={cookie}"},
    )


async def _next(ws: ClientConnection, accept: Any) -> dict[str, Any]:
    """The next message ``accept`` takes (others, e.g. progress of another suite's rollouts, are skipped)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no matching message within {DEADLINE_S} s"
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if accept(message):
            return message


async def test_a_subscriber_sees_where_agents_stand_then_a_rollout_as_it_happens(web: str, fleet: Fleet) -> None:
    agents = [await fleet.start("app") for _ in range(3)]
    version = await bump_version()
    ws = await _open(web, await _session())
    try:
        await ws.send(json.dumps({"type": "subscribe", "topic": "rollout"}))
        status = await _next(ws, lambda m: m["type"] == "rollout_status")
        assert status == {"type": "rollout_status", "version": version, "agents": 3, "current": 0, "behind": 3}

        assert await sync_to_async(push_snapshots)(version) == {"acked": 3}

        def ours(message: dict[str, Any]) -> bool:
            return message["type"] == "rollout_progress" and (message["version"], message["total"]) == (version, 3)

        progress = [await _next(ws, ours)]
        while not progress[-1]["done"]:
            progress.append(await _next(ws, ours))
        assert (progress[0]["pending"], progress[0]["outcomes"]) == (3, [])
        assert (progress[-1]["acked"], progress[-1]["failed"], progress[-1]["pending"]) == (3, 0, 0)
        outcomes = [row for message in progress for row in message["outcomes"]]
        assert sorted(row["agent_id"] for row in outcomes) == sorted(a.agent_id for a in agents)
        assert {(row["namespace"], row["outcome"], row["applied_version"]) for row in outcomes} == {
            ("shop", "acked", version)
        }

        # Unsubscribed, then subscribed again: where they stand now.
        await ws.send(json.dumps({"type": "unsubscribe", "topic": "rollout"}))
        await ws.send(json.dumps({"type": "subscribe", "topic": "rollout"}))
        status = await _next(ws, lambda m: m["type"] == "rollout_status")
        assert (status["agents"], status["current"], status["behind"]) == (3, 3, 0)
    finally:
        await ws.close()


@sync_to_async
def _agent_in(namespace: str, name: str) -> int:
    agent = Agent.objects.create(
        agent_id=name,
        namespace=Namespace.objects.get_or_create(name=namespace)[0],
        admin_address="127.0.0.1:1",
        status=AgentStatus.CONNECTED,
    )
    return agent.pk


async def test_a_namespace_viewer_sees_only_its_namespaces(web: str, transactional_db: None) -> None:
    shop_a, shop_b = await _agent_in("shop", "a.shop"), await _agent_in("shop", "b.shop")
    vault = await _agent_in("vault", "v.vault")
    ws = await _open(web, await _session("viewer", "shop"))
    try:
        await ws.send(json.dumps({"type": "subscribe", "topic": "rollout"}))
        status = await _next(ws, lambda m: m["type"] == "rollout_status")
        assert (status["agents"], status["behind"]) == (2, 2), "the vault's agent is not counted"

        progress = RolloutProgress(
            4242, 4242, {shop_a: ("a.shop", "shop"), shop_b: ("b.shop", "shop"), vault: ("v.vault", "vault")}
        )
        rows = progress.add(
            [
                (vault, PushOutcome.REJECTED, 4241, "secret reason", 1),
                (shop_a, PushOutcome.ACKED, 4242, "", 1),
            ]
        )
        layer = get_channel_layer()
        assert layer is not None
        await layer.group_send(ROLLOUT_GROUP, progress.event(rows))
        seen = await _next(ws, lambda m: m["type"] == "rollout_progress" and m["version"] == 4242)
        assert (seen["total"], seen["acked"], seen["failed"], seen["pending"]) == (2, 1, 0, 1)
        assert list(seen["namespaces"]) == ["shop"]
        assert [row["agent_id"] for row in seen["outcomes"]] == ["a.shop"]
        assert "secret reason" not in json.dumps(seen)
    finally:
        await ws.close()


async def test_it_answers_a_message_it_does_not_know_with_an_error(web: str, transactional_db: None) -> None:
    ws = await _open(web, await _session())
    try:
        await ws.send(json.dumps({"type": "subscribe", "topic": "graph"}))
        error = await _next(ws, lambda m: True)
        assert error["type"] == "error"
        assert "rollout" in error["detail"]
    finally:
        await ws.close()


async def test_it_refuses_a_connection_without_a_login(web: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{web}/ws/rollout/", origin=Origin(f"http://{web}")):
            pass
    assert refused.value.response.status_code == 403


async def test_it_refuses_a_foreign_origin_even_with_a_session(web: str, transactional_db: None) -> None:
    cookie = await _session()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://{web}/ws/rollout/",
            origin=Origin("https://evil.example"),
            additional_headers={"Cookie": f"sessionid={cookie}"},
        ):
            pass
    assert refused.value.response.status_code == 403
