"""A policy change end to end, as the demo's two reviewers make it through the dashboard.

`editor` proposes a 90/10 split of `reviews` between v1 and v2 in the form view, sees the API's
error beside the split while the weights do not add up, fixes them, submits, and sees the preview
of the traffic that moves. `approver`, in a browser context of their own, finds the change in their
inbox, approves it and applies it; the version's page then shows the rollout reaching every one of
the demo's sidecars, and the graph's figures show the traffic shifting to the split.

Nothing here sleeps: every wait is on a condition, with a deadline. Screenshots go to
tests/e2e/artifacts/ (and the change request page to docs/images/ for the README).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.conftest import ARTIFACTS, PASSWORD, REPO, UI_TIMEOUT_MS, VIEWPORT, ConsoleLog
from tests.test_demo import Demo

pytestmark = pytest.mark.slow

NAMESPACE = "shop"
EDITOR, APPROVER = "editor", "approver"
DOCS_SCREENSHOT = REPO / "docs" / "images" / "dashboard-change-request.png"
# The sample mesh's first calls show once its sidecars exported them after the stack came up.
TRAFFIC_TIMEOUT_MS = 90_000
# A rollout is one push per agent (Celery), each a gRPC call on loopback: seconds, with room for a slow CI.
ROLLOUT_TIMEOUT_MS = 60_000
# The traffic shift is read from a 1-minute graph window that starts after the rollout (with a margin for the
# sidecars' metric exports, every second): about 70 s after it, and the load generator's 10 rps fill it.
SHIFT_MARGIN_MS = 10_000
SHIFT_MIN_CALLS = 300
SHIFT_TIMEOUT_MS = 180_000


def poll_api(page: Page, probe: str, arg: Any, *, timeout_ms: float) -> Any:
    """The first truthy answer of ``probe`` (an async JavaScript function of ``arg`` that asks the API), asked
    every second in the page, within ``timeout_ms``.

    Playwright's wait_for_function does not await an async predicate (a promise is truthy at once), so the
    page keeps the latest answer in a global and the wait reads that.
    """
    slot = f"__probe_{uuid.uuid4().hex}"
    page.evaluate(
        f"""([slot, arg]) => {{
          const probe = {probe};
          window[slot] = null;
          const ask = async () => {{
            try {{ window[slot] = await probe(arg); }} catch {{ window[slot] = null; }}
            if (!window[slot]) window.setTimeout(ask, 1000);
          }};
          ask();
        }}""",
        [slot, arg],
    )
    return page.wait_for_function(f"() => window[{slot!r}]", polling=250, timeout=timeout_ms).json_value()


def screenshot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


@contextmanager
def signed_in(browser: Browser, demo: Demo, console: ConsoleLog, username: str, name: str) -> Iterator[Page]:
    """A page in a fresh browser context, logged in as ``username`` through the /login/ form.

    Leaves ``failed-<name>.png`` in artifacts/ when the block raises.
    """
    context = browser.new_context(base_url=demo.base, viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    console.watch(context)
    try:
        page = context.new_page()
        page.goto("/login/")
        page.locator("input[name=username]").fill(username)
        page.locator("input[name=password]").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/graph$"))
        try:
            yield page
        except BaseException:
            page.screenshot(path=ARTIFACTS / f"failed-{name}.png", full_page=True)
            raise
    finally:
        context.close()


def sign_out(page: Page, username: str) -> None:
    page.get_by_role("button", name=re.compile(rf"^{username} ▾")).click()
    page.get_by_role("menu").get_by_role("menuitem", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))


def split_section(page: Page) -> Locator:
    return page.locator('fieldset[data-section="spec.split"]')


# Whether the graph's REST answer (whole 10 s buckets, as the preview reads them) holds calls to reviews.
_REVIEWS_CALLED = """async ([namespace, enough]) => {
  const response = await fetch(`/api/v1/graph/?namespace=${namespace}&window=5m`);
  if (!response.ok) return false;
  const { edges } = await response.json();
  return edges.some((edge) => edge.destination === `reviews.${namespace}` && edge.requests >= enough);
}"""


def wait_for_reviews_traffic(page: Page) -> None:
    """Until the mesh has recorded calls to reviews since the stack came up: the preview then has traffic to judge."""
    page.goto(f"/graph?ns={NAMESPACE}")
    poll_api(page, _REVIEWS_CALLED, [NAMESPACE, 20], timeout_ms=TRAFFIC_TIMEOUT_MS)


def propose_the_split(page: Page, console: ConsoleLog) -> int:
    """As the editor: the canary split through the form view, a refused save first. Returns the change's id."""
    wait_for_reviews_traffic(page)
    page.goto(f"/policies?ns={NAMESPACE}")
    expect(page.get_by_role("heading", name="Policies", level=1)).to_be_visible()
    expect(page.get_by_test_id("policies-traffic")).to_be_visible()
    page.get_by_role("link", name="Propose a change").click()
    expect(page).to_have_url(re.compile(r"/changes/new\?"))

    form = page.get_by_role("form", name="Change request")
    expect(form.get_by_label("Namespace of the change")).to_have_value(NAMESPACE)
    form.get_by_label("Title").fill("Canary: 10 % of reviews traffic to v2")
    form.get_by_label("Description").fill("Send a tenth of the reviews traffic to v2 and watch its error rate.")
    item = form.get_by_test_id("change-item")
    expect(item.get_by_label("Kind")).to_have_value("traffic")
    expect(item.get_by_label("Operation")).to_have_value("create")
    item.get_by_label("Service").fill("reviews")
    expect(item.get_by_role("button", name="Form")).to_have_attribute("aria-pressed", "true")

    split = split_section(page)
    split.get_by_role("checkbox", name="Traffic split between versions").check()
    split.get_by_label("Version 1", exact=True).fill("v1")
    split.get_by_label("Weight 1 (%)").fill("90")
    split.get_by_role("button", name="Add version").click()
    split.get_by_label("Version 2", exact=True).fill("v2")
    split.get_by_label("Weight 2 (%)").fill("20")
    expect(split.get_by_test_id("split-sum")).to_have_text(re.compile(r"Sum: 110%.*must be 100"))

    with console.expecting(r"status of 400"):  # the API refuses the weights; the form says so beside them
        form.get_by_role("button", name="Save draft").click()
        error = split.locator(".field-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("sum to 110")
        expect(error).to_have_attribute("role", "alert")
        expect(split.get_by_label("Weight 2 (%)")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"/changes/new\?"))  # nothing was saved
    screenshot(page, "change-editor-split-error")

    # The same split in YAML, and back: the form keeps what was typed.
    item.get_by_role("button", name="YAML").click()
    yaml = item.get_by_label("Spec (YAML or JSON)")
    expect(yaml).to_have_value(re.compile(r"version: v2\n\s+weight: 20"))
    item.get_by_role("button", name="Form").click()
    expect(split.get_by_label("Weight 2 (%)")).to_have_value("20")

    split.get_by_label("Weight 2 (%)").fill("10")
    expect(split.get_by_test_id("split-sum")).to_have_text("Sum: 100%")
    form.get_by_role("button", name="Save draft").click()
    expect(page).to_have_url(re.compile(r"/changes/\d+(\?|$)"))
    expect(page.get_by_test_id("saved-notice")).to_be_visible()
    expect(page.get_by_test_id("change-state")).to_have_attribute("data-state", "draft")
    found = re.search(r"/changes/(\d+)", page.url)
    assert found, page.url
    change_id = int(found.group(1))

    page.get_by_role("button", name="Submit for review").click()
    expect(page.get_by_test_id("change-state")).to_have_attribute("data-state", "pending")
    expect(page.get_by_role("button", name="Approve", exact=True)).to_have_count(0)  # nobody approves their own change

    # The diff marks the new split, and the preview shows what moves where.
    diff = page.get_by_test_id("diff-item")
    expect(diff.get_by_test_id("diff-after").locator(".diff-line.changed").first).to_be_visible()
    split_preview = page.get_by_test_id("preview-split")
    expect(split_preview.locator("tbody tr")).to_have_count(2)
    expect(split_preview.locator('tr[data-version="v1"] td').nth(2)).to_have_text("90.0%")
    expect(split_preview.locator('tr[data-version="v2"] td').nth(2)).to_have_text("10.0%")
    # Round robin sends v2 about half of the calls today: the preview says so, and that traffic moves to v1.
    expect(split_preview.locator('tr[data-version="v2"] td').nth(1)).not_to_have_text("0%")
    screenshot(page, "change-request-pending")
    return change_id


def approve_and_apply(page: Page, change_id: int) -> int:
    """As the approver: the change from the inbox, approved and applied. Returns the config version number."""
    changes_link = page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile(r"^Changes"))
    expect(changes_link.get_by_test_id("inbox-count")).to_have_text("1")
    changes_link.click()
    expect(page).to_have_url(re.compile(r"/changes\?.*awaiting=me"))
    inbox = page.get_by_test_id("changes")
    expect(inbox.locator("tbody tr")).to_have_count(1)
    row = inbox.locator(f'tr[data-change="{change_id}"]')
    expect(row.get_by_test_id("change-state")).to_have_attribute("data-state", "pending")
    screenshot(page, "changes-inbox")
    row.get_by_role("link").click()

    expect(page).to_have_url(re.compile(rf"/changes/{change_id}(\?|$)"))
    expect(page.get_by_test_id("change-author")).to_have_text(EDITOR)
    expect(page.get_by_test_id("preview-split").locator("tbody tr")).to_have_count(2)
    approve = page.get_by_role("button", name="Approve", exact=True)
    expect(approve).to_be_enabled()  # the diff (and so the digest under review) has loaded
    screenshot(page, "change-request")
    shutil.copyfile(ARTIFACTS / "change-request.png", DOCS_SCREENSHOT)

    page.get_by_label("Approval comment").fill("Looks right; watch v2's errors.")
    approve.click()
    expect(page.get_by_test_id("change-state")).to_have_attribute("data-state", "approved")
    expect(page.get_by_test_id("approval-count")).to_have_text("1 of 1")
    expect(page.get_by_test_id("approvals")).to_contain_text(APPROVER)
    expect(page.get_by_test_id("approvals")).to_contain_text("current")

    page.get_by_role("button", name="Apply", exact=True).click()
    expect(page.get_by_test_id("change-state")).to_have_attribute("data-state", "applied")
    version_link = page.get_by_test_id("applied-version")
    expect(version_link).to_be_visible()
    found = re.search(r"\d+", version_link.inner_text())
    assert found, version_link.inner_text()
    number = int(found.group(0))
    screenshot(page, "change-request-applied")
    version_link.click()
    expect(page).to_have_url(re.compile(rf"/versions/{number}(\?|$)"))
    return number


# web's calls to each version of reviews over the graph's last minute, once that minute began `margin_ms`
# after `since_ms` (so it holds only traffic routed by the new policy) and holds enough calls; null before.
_CALLS_TO_REVIEWS_SINCE = """async ([namespace, sinceMs, marginMs, enough]) => {
  const response = await fetch(`/api/v1/graph/?namespace=${namespace}&group=workload&window=1m`);
  if (!response.ok) return null;
  const { window, edges } = await response.json();
  if (Date.parse(window.start) < sinceMs + marginMs) return null;
  const calls = { v1: 0, v2: 0 };
  for (const edge of edges) {
    const version = /^reviews-(v[12])\\./.exec(edge.destination);
    if (edge.source.startsWith('web-') && version) calls[version[1]] += edge.requests;
  }
  return calls.v1 + calls.v2 >= enough ? calls : null;
}"""


def test_a_canary_split_is_proposed_reviewed_applied_and_rolled_out(
    browser: Browser, demo: Demo, console: ConsoleLog, sidecars: list[dict[str, Any]]
) -> None:
    with signed_in(browser, demo, console, EDITOR, "policy-flow-editor") as page:
        change_id = propose_the_split(page, console)
        sign_out(page, EDITOR)

    with signed_in(browser, demo, console, APPROVER, "policy-flow-approver") as page:
        number = approve_and_apply(page, change_id)

        rollout = page.get_by_test_id("rollout")
        expect(rollout).to_have_attribute("data-total", str(len(sidecars)))
        assert len(sidecars) == 7  # six sample workloads and the load generator
        # Every sidecar acknowledges the new snapshot; none refuses it.
        expect(rollout).to_have_attribute("data-acked", str(len(sidecars)), timeout=ROLLOUT_TIMEOUT_MS)
        expect(rollout).to_have_attribute("data-failed", "0")
        expect(rollout).to_have_attribute("data-pending", "0")
        agents = page.get_by_test_id("rollout-agents").locator("tbody tr")
        expect(agents).to_have_count(len(sidecars))
        expect(agents.and_(page.locator('[data-state="acked"]'))).to_have_count(len(sidecars))
        expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", str(len(sidecars)))
        screenshot(page, "version-rollout")

        # The live policy now holds the split, written by this version.
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Policies").click()
        policy = page.get_by_test_id("policies-traffic").locator('[data-testid=policy][data-name="reviews"]')
        expect(policy).to_contain_text("weight: 90")
        expect(policy.get_by_role("link", name=f"v{number}")).to_be_visible()

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Versions").click()
        expect(page.get_by_test_id("versions").locator(f'tr[data-version="{number}"]')).to_contain_text(
            f"{len(sidecars)} of {len(sidecars)} acked"
        )
        screenshot(page, "versions")

        # And the traffic follows: about a tenth of web's calls to reviews reach v2 (round robin gave it half).
        acked_ms = page.evaluate("Date.now()")
        since = [NAMESPACE, acked_ms, SHIFT_MARGIN_MS, SHIFT_MIN_CALLS]
        calls = poll_api(page, _CALLS_TO_REVIEWS_SINCE, since, timeout_ms=SHIFT_TIMEOUT_MS)
        share = calls["v2"] / (calls["v1"] + calls["v2"])
        assert 0.02 < share < 0.2, f"v2's share of web's calls to reviews after the split: {share:.3f} ({calls})"

    assert console.errors == []
