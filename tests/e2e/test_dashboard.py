"""The dashboard end to end: the demo stack with the sample mesh, driven through Chromium as a person would.

Log in, see the live graph of the sample mesh, open a node, follow one of its traces into the
waterfall, filter the graph, search traces, watch a service's charts move, list the agents, and
check that no page logs an error. Screenshots of each page go to tests/e2e/artifacts/.

Nothing here sleeps: every wait is on a condition, with a deadline.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, Page, Response, expect

from tests.e2e.conftest import ADMIN, ARTIFACTS, ConsoleLog, log_in

pytestmark = pytest.mark.slow

SCOPE = "ns=shop&window=1m"
# The sample mesh (meshui/launcher/sample_mesh.py) as the graph shows it, by service.
# The sample mesh, and the batch job of namespace jobs whose calls into shop are denied.
EXPECTED_NODES = {
    "loadgen.shop",
    "web.shop",
    "catalog.shop",
    "reviews.shop",
    "ratings.shop",
    "inventory.shop",
    "batch.jobs",
}
# The first figures need the sidecars' first exports after the stack came up.
TRAFFIC_TIMEOUT_MS = 90_000
TRACE_FILL_SECONDS = 30.0
SEARCH_FIELDS = {"service", "operation", "tags", "min_duration", "max_duration", "errors"}


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def node_buttons(page: Page) -> Locator:
    return page.get_by_test_id("node-list").locator("button[data-node]")


def open_graph(page: Page) -> None:
    """The live graph of the shop namespace, once every node of the sample mesh is on it."""
    page.goto(f"/graph?{SCOPE}")
    for node in sorted(EXPECTED_NODES):
        expect(page.locator(f'button[data-node="{node}"]')).to_be_visible(timeout=TRAFFIC_TIMEOUT_MS)


def summary_value(page: Page, label: str) -> Locator:
    return (
        page.get_by_test_id("trace-summary")
        .locator("div")
        .filter(has=page.get_by_text(label, exact=True))
        .locator("dd")
    )


def wait_for_attribute_above(page: Page, selector: str, attribute: str, floor: float) -> float:
    page.wait_for_function(
        "([selector, attribute, floor]) => Number(document.querySelector(selector)?.getAttribute(attribute)) > floor",
        arg=[selector, attribute, floor],
    )
    return float(page.locator(selector).get_attribute(attribute) or "nan")


def wait_for_whole_trace(page: Page) -> list[str]:
    """The services the open trace crosses, once it is one tree reaching past web.

    Each sidecar exports its spans on its own schedule, so a trace that has just happened fills
    in over a second or two: reload it (each time waiting for the page) until it is whole.
    """
    deadline = time.monotonic() + TRACE_FILL_SECONDS
    while True:
        expect(page.get_by_test_id("waterfall").get_by_role("treeitem").first).to_be_visible()
        services = page.get_by_test_id("trace-services").inner_text().split(" → ")
        roots = page.locator('[role=treeitem][aria-level="1"]').count()
        if roots == 1 and "web" in services and {"catalog", "reviews"} & set(services):
            return services
        assert time.monotonic() < deadline, f"{page.url} stays partial: crosses {services}, {roots} roots"
        page.reload()


def test_an_anonymous_visitor_logs_in_and_lands_where_they_were_going(anonymous_page: Page) -> None:
    page = anonymous_page
    page.goto("/graph")
    expect(page).to_have_url(re.compile(r"/login/\?next=/graph$"))
    screenshot(page, "login")

    log_in(page, password="not the password")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login/"))

    log_in(page)
    expect(page).to_have_url(re.compile(r"/graph$"))
    user_menu = page.get_by_role("button", name=re.compile(rf"^{ADMIN} ▾"))
    expect(user_menu).to_be_visible()
    user_menu.click()
    menu = page.get_by_role("menu")
    expect(menu.locator("strong")).to_have_text(ADMIN)
    menu.get_by_role("menuitem", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    page.goto("/agents")
    expect(page).to_have_url(re.compile(r"/login/\?next=/agents$"))


def test_the_graph_shows_the_sample_mesh_live(page: Page) -> None:
    open_graph(page)
    expect(page.get_by_label("Namespace")).to_have_value("shop")
    expect(page.get_by_label("Time window")).to_have_value("1m")
    expect(node_buttons(page)).to_have_count(len(EXPECTED_NODES))
    assert set(node_buttons(page).evaluate_all("buttons => buttons.map(b => b.dataset.node)")) == EXPECTED_NODES
    expect(page.get_by_role("heading", name=f"{len(EXPECTED_NODES)} of {len(EXPECTED_NODES)} nodes")).to_be_visible()
    # "● Live" once the WebSocket is open; "● Live (connecting)" before.
    expect(page.get_by_test_id("graph-mode")).to_have_text(re.compile(r"Live\s*$"))
    expect(page.get_by_test_id("graph-canvas")).to_be_visible()
    screenshot(page, "graph")


def test_a_node_leads_to_its_traces_and_a_trace_shows_every_hop(page: Page) -> None:
    open_graph(page)
    page.locator('button[data-node="web.shop"]').click()
    panel = page.get_by_test_id("side-panel")
    expect(panel.get_by_role("heading", name="web", exact=True)).to_be_visible()
    traffic = panel.get_by_test_id("signals").locator("div").filter(has_text="Traffic").locator("dd")
    expect(traffic).to_have_text(re.compile(r"^[\d.]+ rps$"))
    assert float(traffic.inner_text().split()[0]) > 0, traffic.inner_text()
    expect(panel.get_by_test_id("panel-instances").locator("li")).to_have_count(1)  # web-v1's one instance
    expect(panel.get_by_test_id("panel-instances")).to_contain_text("127.0.0.1:")
    trace_links = panel.get_by_test_id("panel-traces").get_by_role("link")
    expect(trace_links.first).to_be_visible()
    screenshot(page, "graph-node-web")

    trace_links.last.click()
    expect(page).to_have_url(re.compile(rf"/traces/[0-9a-f]{{32}}\?{SCOPE}$"))
    services = wait_for_whole_trace(page)
    rows = page.get_by_test_id("waterfall").get_by_role("treeitem")
    spans = int(summary_value(page, "Spans").inner_text())
    expect(rows).to_have_count(spans)  # a trace this small is drawn whole, virtualised or not
    assert set(rows.evaluate_all("rows => rows.map(row => row.dataset.service)")) == set(services)
    assert services[0] in {"loadgen", "web"}, services
    screenshot(page, "trace")

    web_row = page.locator('[role=treeitem][data-service="web"]').first
    web_row.locator(".span-name").click()
    details = page.get_by_test_id("span-details")
    expect(details.get_by_role("heading", level=2)).to_contain_text("web ·")
    expect(details.locator("dd.mono").first).to_have_text(web_row.get_attribute("data-span") or "?")
    expect(web_row).to_have_attribute("aria-selected", "true")
    screenshot(page, "trace-span-details")

    page.get_by_role("button", name=re.compile(r"^Collapse ")).first.click()
    expect(rows).to_have_count(1)
    page.get_by_role("button", name=re.compile(r"^Expand ")).click()
    expect(rows).to_have_count(spans)


def test_the_graph_filter_finds_hides_and_rejects(page: Page) -> None:
    open_graph(page)
    filter_box = page.locator("input[name=filter]")
    apply = page.get_by_role("button", name="Apply")
    filter_box.fill("name ^= rev")
    apply.click()
    expect(page).to_have_url(re.compile(r"filter=name\+%5E%3D\+rev"))
    expect(node_buttons(page)).to_have_count(1)
    expect(node_buttons(page)).to_have_attribute("data-node", "reviews.shop")
    screenshot(page, "graph-filter-find")

    page.get_by_label("Filter mode").select_option("hide")
    expect(node_buttons(page)).to_have_count(len(EXPECTED_NODES) - 1)
    expect(page.locator('button[data-node="reviews.shop"]')).to_have_count(0)

    filter_box.fill("rps >")
    error = page.locator("#filter-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(filter_box).to_have_attribute("aria-invalid", "true")
    expect(apply).to_be_disabled()
    expect(node_buttons(page)).to_have_count(len(EXPECTED_NODES) - 1)  # the applied filter still holds
    screenshot(page, "graph-filter-invalid")


# While the last search found nothing, send it again (its time range ends when it is sent), once a second.
_RESEND_UNTIL_FOUND = """() => {
  if (document.querySelector('[data-testid=trace-results] tbody tr')) return true;
  if (document.body.innerText.includes('No traces match'))
    document.querySelector('form[aria-label="Search traces"] button[type=submit]').click();
  return false;
}"""


def search_traces(page: Page, filters: dict[str, str]) -> Locator:
    """Send the trace search form, filled in as ``filters``; its result rows, once the table shows what it found."""
    rows = page.get_by_test_id("trace-results").locator("tbody tr")
    nothing = page.get_by_text("No traces match")
    expect(rows.first.or_(nothing)).to_be_visible()  # the page's own first search is done

    def answers_the_form(response: Response) -> bool:
        # A search may also go out with the time range renewed but the previous filters: not this one.
        url = urlsplit(response.url)
        sent = {key: values[0] for key, values in parse_qs(url.query).items() if key in SEARCH_FIELDS}
        return url.path == "/api/v1/traces/" and sent == filters

    with page.expect_response(answers_the_form) as answer:
        page.get_by_role("form", name="Search traces").get_by_role("button", name="Search").click()
    found = [trace["trace_id"] for trace in answer.value.json()["results"]]
    if found:
        expect(rows.locator(".mono")).to_have_text(found)
    else:
        expect(nothing).to_be_visible()
        page.wait_for_function(_RESEND_UNTIL_FOUND, polling=1000, timeout=TRAFFIC_TIMEOUT_MS)
    return rows


def test_trace_search_by_service_and_errors(page: Page, console: ConsoleLog) -> None:
    page.goto(f"/traces?{SCOPE}")
    form = page.get_by_role("form", name="Search traces")
    form.locator("input[name=service]").fill("web")
    form.locator("input[name=errors]").check()
    # About one trace in twelve fails somewhere (sample_mesh.py's error rates), so a few seconds of traffic do.
    rows = search_traces(page, {"service": "web", "errors": "true"})
    expect(page).to_have_url(re.compile(r"[?&]service=web(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]errors=true(&|$)"))

    found = rows.count()
    assert found >= 1
    expect(rows.and_(page.locator(".row-error"))).to_have_count(found)
    expect(rows.locator(".tag-error")).to_have_count(found)
    crossed: list[str] = rows.evaluate_all("rows => rows.map(row => row.cells[2].textContent)")
    assert all("web" in services.split(", ") for services in crossed), crossed
    dots = page.get_by_test_id("scatter").locator("circle.dot")
    expect(dots).to_have_count(found)
    expect(dots.and_(page.locator(".dot-error"))).to_have_count(found)
    screenshot(page, "traces-search-web-errors")

    with console.expecting(r"status of 400"):  # the API rejects the search; the form says why
        form.locator("input[name=min_duration]").fill("abc")
        form.get_by_role("button", name="Search").click()
        field = form.locator("label").filter(has=page.locator("input[name=min_duration]"))
        expect(field.locator(".field-error")).to_be_visible()
        expect(field.locator(".field-error")).not_to_be_empty()
    expect(page).to_have_url(re.compile(r"[?&]min_duration=abc(&|$)"))
    screenshot(page, "traces-search-bad-duration")


def test_a_service_page_charts_move_live(page: Page) -> None:
    page.goto(f"/services?{SCOPE}")
    page.get_by_test_id("services").get_by_role("link", name="web", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/services/\d+\?{SCOPE}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("web")
    expect(page.get_by_test_id("service-live")).to_have_text(re.compile(r"Live, last 1m\s*$"))
    expect(page.get_by_test_id("instances").locator("tbody tr")).to_have_count(1)

    charts, rps = page.locator(".charts"), page.get_by_test_id("chart-rps")
    expect(charts).to_have_attribute("data-updates", re.compile(r"^\d+$"))
    updates = float(charts.get_attribute("data-updates") or "nan")
    last = rps.get_attribute("data-last")
    # The server pushes a delta about every second, and each one moves the chart's latest figure.
    assert wait_for_attribute_above(page, ".charts", "data-updates", updates + 2) > updates + 2
    expect(rps).not_to_have_attribute("data-last", last or "")
    assert wait_for_attribute_above(page, "[data-testid=chart-rps]", "data-points", 1) >= 2
    assert wait_for_attribute_above(page, "[data-testid=chart-rps]", "data-last", 0) > 0  # web serves the loadgen
    screenshot(page, "service-web")


def test_the_agents_page_lists_every_sidecar_connected(page: Page, sidecars: list[dict[str, Any]]) -> None:
    page.goto(f"/agents?{SCOPE}")
    table = page.get_by_test_id("agents")
    # An agent's id is <workload>.<namespace>@<address>:<inbound port> (proxyagent/identity.py).
    expected = {f"{s['service']}-{s['version']}.shop@127.0.0.1:{s['inbound']}" for s in sidecars}
    assert len(expected) == 7  # six sample workloads and the load generator
    for agent_id in sorted(expected):
        row = table.locator("tbody tr").filter(has=page.get_by_role("cell", name=agent_id, exact=True))
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(2)).to_have_text("connected")
    # And no other agent of the namespace is connected (DATABASE_URL may name a database used before).
    expect(table.locator("tbody tr").filter(has=page.locator(".health-healthy"))).to_have_count(len(expected))
    screenshot(page, "agents")


def test_no_page_logs_an_error(page: Page, console: ConsoleLog) -> None:
    """Every page of the dashboard once more, then the console errors of all the module's pages: none."""
    page.goto(f"/graph?{SCOPE}")
    expect(node_buttons(page).first).to_be_visible(timeout=TRAFFIC_TIMEOUT_MS)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Traces").click()
    search_traces(page, {}).first.get_by_role("link").click()
    expect(page.get_by_test_id("waterfall")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Services").click()
    page.get_by_test_id("services").get_by_role("link", name="catalog", exact=True).click()
    expect(page.get_by_test_id("chart-rps")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    expect(page.get_by_test_id("agents")).to_be_visible()
    assert console.errors == []
