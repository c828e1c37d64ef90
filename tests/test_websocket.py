"""The /ws/ endpoint, over a real server: refused without a login or from a foreign origin, served with a session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.asgi_server import serving

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(_fast_password_hashing: Any) -> Iterator[str]:
    with serving() as address:
        yield address


@sync_to_async
def _session_cookie() -> str:
    User.objects.create_user(username="wanda", password="correct horse battery staple")
    client = Client()
    assert client.login(username="wanda", password="correct horse battery staple")
    return str(client.cookies["sessionid"].value)


async def test_it_serves_a_logged_in_browser(server: str) -> None:
    cookie = await _session_cookie()
    async with connect(
        f"ws://{server}/ws/ping/",
        origin=Origin(f"http://{server}"),
        additional_headers={"Cookie": f"sessionid={cookie}"},
    ) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        # The pong travels through the Redis channel layer before it comes back.
        assert json.loads(await ws.recv()) == {"type": "pong", "user": "wanda"}
        await ws.send(json.dumps({"type": "shout"}))
        assert json.loads(await ws.recv())["type"] == "error"


async def test_it_refuses_a_connection_without_a_login(server: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{server}/ws/ping/", origin=Origin(f"http://{server}")):
            pass
    assert refused.value.response.status_code == 403


async def test_it_refuses_a_foreign_origin_even_with_a_session(server: str) -> None:
    cookie = await _session_cookie()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://{server}/ws/ping/",
            origin=Origin("https://evil.example"),
            additional_headers={"Cookie": f"sessionid={cookie}"},
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_it_refuses_a_forged_session(server: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://{server}/ws/ping/",
            origin=Origin(f"http://{server}"),
            additional_headers={"Cookie": "sessionid=forged"},
        ):
            pass
    assert refused.value.response.status_code == 403
