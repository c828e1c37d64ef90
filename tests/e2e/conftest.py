"""The end-to-end tests' cast: the demo stack with the sample mesh, and Debian's Chromium driven by Playwright.

One stack and one browser per module; each test gets a fresh browser context (logged in by
reusing the storage state of one real login through the /login/ form). Every context reports
its console errors and uncaught page errors to one log, which the tests check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    StorageState,
    ViewportSize,
    WebError,
    expect,
    sync_playwright,
)

from meshui.launcher.sample_mesh import free_port
from tests.test_demo import Demo

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
DASHBOARD_BUILD = REPO / "frontend" / "dist" / "index.html"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# `playwright install` cannot download here: Debian's Chromium, headless (Playwright's default), fresh profile.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
START_DEADLINE_SECONDS = 120.0
ADMIN = "admin"
PASSWORD = "e2e-password-for-the-dashboard"
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
UI_TIMEOUT_MS = 15_000

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


class ConsoleLog:
    """Console errors and uncaught exceptions of every page the tests open, as 'page url: message' lines."""

    # Browsers ask for /favicon.ico on their own; a 404 there is no fault of the app.
    IGNORED = re.compile(r"favicon\.ico")

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._expected: list[re.Pattern[str]] = []

    def watch(self, context: BrowserContext) -> None:
        context.on("console", self._on_console)
        context.on("weberror", self._on_page_error)

    @contextmanager
    def expecting(self, pattern: str) -> Iterator[None]:
        """Inside the block, console errors matching ``pattern`` are expected (a test provoking a 400)."""
        compiled = re.compile(pattern)
        self._expected.append(compiled)
        try:
            yield
        finally:
            self._expected.remove(compiled)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "")
        text = f"{message.text} ({where})"
        if self.IGNORED.search(text) or any(pattern.search(text) for pattern in self._expected):
            return
        self.errors.append(f"{message.page.url if message.page else '?'}: {text}")

    def _on_page_error(self, error: WebError) -> None:
        self.errors.append(f"{error.page.url if error.page else '?'}: uncaught {error.error}")


@pytest.fixture(scope="session", autouse=True)
def _browser_and_dashboard_build() -> None:
    # `make test` installs chromium and builds the dashboard, so in CI neither is ever missing.
    if not CHROMIUM.exists():
        pytest.skip(f"the end-to-end tests drive Debian's chromium and {CHROMIUM} is missing (make browser)")
    if not DASHBOARD_BUILD.exists():
        pytest.skip(f"the dashboard is not built: {DASHBOARD_BUILD} is missing (make frontend)")
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ARTIFACTS.glob("failed-*.png"):  # a failure's screenshot is kept until the next run
        stale.unlink()


@contextmanager
def _throwaway_database(url: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database on the server ``url`` names, dropped afterwards (SQLite: nothing to do).

    The stack migrates its database and sets the admin's password there: never the database a
    developer pointed DATABASE_URL at.
    """
    if not url or not url.startswith(("postgres://", "postgresql://")):
        yield None
        return
    import psycopg

    name = f"meshui_e2e_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(url)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _own_redis_database(url: str | None) -> str | None:
    """REDIS_URL's server with a database number of the stack's own, so its Celery queues and channel
    groups never meet the rest of the suite's."""
    if not url:
        return None
    return urlunsplit(urlsplit(url)._replace(path="/14"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`make demo` on free ports and a fresh data dir, on the suite's database server and Redis where
    DATABASE_URL and REDIS_URL are set (CI: PostgreSQL and Redis), else on the launcher's embedded defaults.

    Unlike tests/test_demo.py, which checks those embedded defaults, this runs the stack the way
    production does where it can: in a throwaway PostgreSQL database and a Redis database of its own.
    """
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHUI_", "DJANGO_"))}
    env.update(
        {
            "MESHUI_DATA_DIR": str(data_dir),
            "MESHUI_ADMIN_USER": ADMIN,
            "MESHUI_ADMIN_PASSWORD": PASSWORD,
            # The demo's editor and approver (make demo creates them) log in with the same password.
            "MESHUI_DEMO_PASSWORD": PASSWORD,
        }
    )
    redis_url = _own_redis_database(env.get("REDIS_URL"))
    if redis_url:
        env["REDIS_URL"] = redis_url
    with _throwaway_database(env.get("DATABASE_URL")) as database_url:
        if database_url:
            env["DATABASE_URL"] = database_url
        yield from _run_demo(env, port, data_dir)


def _run_demo(env: dict[str, str], port: int, data_dir: Path) -> Iterator[Demo]:
    argv = [sys.executable, "-m", "meshui.launcher", "demo", "--port", str(port), "--grpc-port", str(free_port())]
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    running = Demo(process, f"http://127.0.0.1:{port}", data_dir)
    try:
        running.wait_for_line("meshui is running at", START_DEADLINE_SECONDS)
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def sidecars(demo: Demo) -> list[dict[str, Any]]:
    """Where each sidecar of the sample namespace ``shop`` listens (the launcher's manifest; the batch job of
    namespace ``jobs`` is left out)."""
    agents: list[dict[str, Any]] = json.loads((demo.data_dir / "demo-mesh.json").read_text())["agents"]
    return [agent for agent in agents if agent["namespace"] == "shop"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        expect.set_options(timeout=UI_TIMEOUT_MS)
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def console() -> ConsoleLog:
    return ConsoleLog()


def log_in(page: Page, password: str = PASSWORD, username: str = ADMIN) -> None:
    """Fill in and send the login form the page is showing."""
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _new_context(browser: Browser, demo: Demo, console: ConsoleLog, state: StorageState | None) -> BrowserContext:
    context = browser.new_context(base_url=demo.base, viewport=VIEWPORT, storage_state=state)
    context.set_default_timeout(UI_TIMEOUT_MS)
    console.watch(context)
    return context


@pytest.fixture(scope="module")
def logged_in_state(browser: Browser, demo: Demo, console: ConsoleLog) -> StorageState:
    """The cookies of one real login through the /login/ form, for every test's context to start from."""
    context = _new_context(browser, demo, console, None)
    try:
        page = context.new_page()
        page.goto("/login/")
        log_in(page)
        expect(page).to_have_url(re.compile(r"/graph$"))
        return context.storage_state()
    finally:
        context.close()


@contextmanager
def _context_page(
    request: pytest.FixtureRequest, browser: Browser, demo: Demo, console: ConsoleLog, state: StorageState | None
) -> Iterator[Page]:
    context = _new_context(browser, demo, console, state)
    try:
        page = context.new_page()
        yield page
        report = request.node.stash.get(_REPORTS, {}).get("call")
        if report is not None and report.failed:
            page.screenshot(path=ARTIFACTS / f"failed-{request.node.name}.png", full_page=True)
    finally:
        context.close()


@pytest.fixture
def page(
    request: pytest.FixtureRequest, browser: Browser, demo: Demo, console: ConsoleLog, logged_in_state: StorageState
) -> Iterator[Page]:
    """A page in a fresh context of the logged-in admin; on failure its screenshot lands in artifacts/."""
    with _context_page(request, browser, demo, console, logged_in_state) as opened:
        yield opened


@pytest.fixture
def page_of(browser: Browser, demo: Demo, console: ConsoleLog) -> Iterator[Callable[[str], Page]]:
    """``page_of(username)``: a page in a fresh context, logged in through the form as that user (whose password
    is the suite's); the contexts close at the end of the test."""
    contexts: list[BrowserContext] = []

    def open_as(username: str) -> Page:
        context = _new_context(browser, demo, console, None)
        contexts.append(context)
        opened = context.new_page()
        opened.goto("/login/")
        log_in(opened, username=username)
        expect(opened).to_have_url(re.compile(r"/graph$"))
        return opened

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture
def anonymous_page(request: pytest.FixtureRequest, browser: Browser, demo: Demo, console: ConsoleLog) -> Iterator[Page]:
    with _context_page(request, browser, demo, console, None) as opened:
        yield opened


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item, so the page fixture knows whether its test failed.
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report
