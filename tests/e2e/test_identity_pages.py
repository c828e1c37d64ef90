"""Workload identity in the dashboard, as a global admin uses it.

`admin` reaches the Identity page from the top bar, creates a join token for `shop`/`reviews`, sees
its secret once (and never again, in the page or the API), revokes it; sees the CA's root with its
fingerprint, requests a rotation of the CA, which a second user approves in their own session, and sees
the new root signing beside the old one, still trusted. The
agents page shows each sidecar's certificate identity, a service page its denied callers, the graph's
legend its mTLS and denial styles; no page logs an error.

Nothing here sleeps: every wait is on a condition, with a deadline. Screenshots go to
tests/e2e/artifacts/ (and the Identity page to docs/images/ for the README).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import ARTIFACTS, PASSWORD, REPO, ConsoleLog

pytestmark = pytest.mark.slow

NAMESPACE = "shop"
SERVICE_ACCOUNT = "reviews"
DOCS_SCREENSHOT = REPO / "docs" / "images" / "dashboard-identity.png"
SECRET = re.compile(r"^meshjoin_([0-9a-f]+)_\S+$")


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def api(page: Page, path: str) -> Any:
    """The JSON answer of a GET through the page's session (page.evaluate awaits the promise)."""
    return page.evaluate(
        """async (path) => {
          const response = await fetch(path, { headers: { Accept: "application/json" } });
          return { status: response.status, body: await response.json() };
        }""",
        path,
    )


def api_send(page: Page, method: str, path: str, body: Any) -> Any:
    """A JSON write through the page's session, with its CSRF token."""
    return page.evaluate(
        """async ([method, path, body]) => {
          const csrf = decodeURIComponent((document.cookie.match(/(?:^|;\\s*)csrftoken=([^;]+)/) || [])[1] || "");
          const response = await fetch(path, {
            method,
            headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrf },
            body: JSON.stringify(body),
          });
          return { status: response.status, body: response.status === 204 ? null : await response.json() };
        }""",
        [method, path, body],
    )


def colon_fingerprint(hex_digest: str) -> str:
    return ":".join(hex_digest[i : i + 2] for i in range(0, len(hex_digest), 2)).upper()


def open_identity_from_the_nav(page: Page) -> None:
    page.goto(f"/graph?ns={NAMESPACE}")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Identity").click()
    expect(page).to_have_url(re.compile(rf"/identity\?ns={NAMESPACE}$"))
    expect(page.get_by_role("heading", name="Identity", level=1)).to_be_visible()


def token_row(page: Page, prefix: str) -> Locator:
    return page.get_by_test_id("join-token-list").locator(f'tbody tr[data-prefix="{prefix}"]')


def test_a_join_token_is_shown_once_and_revoked(page: Page) -> None:
    open_identity_from_the_nav(page)
    form = page.get_by_role("form", name="New join token")
    expect(form.get_by_label("Namespace")).to_have_value(NAMESPACE)

    # Past the 30 days a token may live: the form says so beside the field, without asking the server.
    form.get_by_label("Service account").fill(SERVICE_ACCOUNT)
    form.get_by_label("Usable for").fill("45d")
    form.get_by_role("button", name="Create join token").click()
    expect(form.locator(".field-error")).to_have_text("A join token is usable for at most 30 days.")
    expect(form.get_by_label("Usable for")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("created-token")).to_have_count(0)

    form.get_by_label("Usable for").fill("24h")
    form.get_by_label("Description").fill("e2e: reviews joins")
    form.get_by_role("button", name="Create join token").click()

    created = page.get_by_test_id("created-token")
    expect(created).to_contain_text("Copy this token now: it is shown once.")
    expect(created).to_contain_text(f"{NAMESPACE} / {SERVICE_ACCOUNT}")
    secret_box = created.get_by_test_id("token-secret")
    expect(secret_box).to_have_value(SECRET)
    secret = secret_box.input_value()
    match = SECRET.match(secret)
    assert match is not None
    prefix = match.group(1)

    row = token_row(page, prefix)
    expect(row).to_have_attribute("data-state", "usable")
    expect(row).to_contain_text(f"meshjoin_{prefix}_…")
    expect(row).to_contain_text(SERVICE_ACCOUNT)
    expect(row.get_by_test_id("token-state")).to_contain_text(re.compile(r"usable · expires in 2[34] h"))
    screenshot(page, "identity-token-created")

    # Once dismissed the secret is gone from the page, and the API never lists it.
    created.get_by_role("button", name="I have copied it").click()
    expect(page.get_by_test_id("created-token")).to_have_count(0)
    assert secret not in page.content()
    listed = api(page, "/api/v1/join-tokens/?page_size=500")
    assert listed["status"] == 200
    mine = [token for token in listed["body"]["results"] if token["prefix"] == prefix]
    assert len(mine) == 1
    assert "token" not in mine[0]
    assert secret not in str(listed["body"])

    row.get_by_role("button", name="Revoke…").click()
    dialog = page.get_by_role("dialog", name="Revoke a join token")
    expect(dialog).to_contain_text(f"meshjoin_{prefix}_…")
    dialog.get_by_role("button", name="Revoke token").click()
    expect(dialog).to_be_hidden()
    expect(row).to_have_attribute("data-state", "revoked")
    expect(row.get_by_test_id("token-state")).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Revoke…")).to_have_count(0)


def test_the_ca_rotates_once_a_second_person_approves_and_the_new_root_signs(
    page: Page, page_of: Callable[[str], Page]
) -> None:
    # `identity` is one of the prefixes Django answers with the app, so the page also loads directly.
    page.goto(f"/identity?ns={NAMESPACE}")
    ca = api(page, "/api/v1/ca/")
    assert ca["status"] == 200
    assert ca["body"]["read_only"] is False
    before = [root["fingerprint_sha256"] for root in ca["body"]["roots"]]
    (old,) = [root for root in ca["body"]["roots"] if root["signing"]]

    roots = page.get_by_test_id("ca-roots").locator("tbody tr")
    expect(roots).to_have_count(len(before))
    old_row = page.get_by_test_id("ca-roots").locator(f'tr[data-fingerprint="{old["fingerprint_sha256"]}"]')
    expect(old_row).to_have_attribute("data-signing", "true")
    expect(old_row.locator(".fingerprint")).to_have_text(colon_fingerprint(old["fingerprint_sha256"]))
    expect(old_row).to_contain_text("signing")
    expect(old_row.get_by_role("button", name="Retire…")).to_have_count(0)  # the signing root cannot be retired

    page.get_by_role("button", name="Rotate CA…").click()
    dialog = page.get_by_role("dialog", name="Rotate the CA")
    expect(dialog).to_contain_text("next config push")
    expect(dialog).to_contain_text("stays trusted until you retire it")
    dialog.get_by_label("Reason (optional)").fill("e2e: yearly rotation")
    dialog.get_by_role("button", name="Request rotation").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("ca-notice")).to_contain_text("waiting for 1 approval(s)")
    request = page.get_by_test_id("ca-change").filter(has_text="e2e: yearly rotation")
    expect(request).to_have_attribute("data-operation", "rotate")
    expect(request.get_by_role("button", name="Approve")).to_have_count(0)  # never one's own
    expect(request.get_by_role("button", name="Withdraw")).to_be_visible()
    expect(roots).to_have_count(len(before))  # nothing changes before the approval

    # A second person, who may approve in every namespace, approves it in their own session.
    user = api_send(page, "POST", "/api/v1/users/", {"username": "ca-approver", "password": PASSWORD})
    assert user["status"] == 201, user
    binding = api_send(page, "POST", "/api/v1/role-bindings/", {"user": "ca-approver", "role": "approver"})
    assert binding["status"] == 201, binding
    reviewer = page_of("ca-approver")
    reviewer.goto("/identity")
    theirs = reviewer.get_by_test_id("ca-change").filter(has_text="e2e: yearly rotation")
    expect(theirs).to_contain_text("0 of 1")
    theirs.get_by_role("button", name="Approve").click()
    expect(reviewer.get_by_test_id("ca-notice")).to_contain_text("approved and applied")
    expect(theirs).to_have_count(0)
    expect(reviewer.get_by_test_id("ca-roots").locator("tbody tr")).to_have_count(len(before) + 1)

    page.reload()
    expect(roots).to_have_count(len(before) + 1)
    signing = page.get_by_test_id("ca-roots").locator('tbody tr[data-signing="true"]')
    expect(signing).to_have_count(1)
    expect(roots.first).to_have_attribute("data-signing", "true")  # the signing root heads the list
    expect(signing).not_to_have_attribute("data-fingerprint", old["fingerprint_sha256"])
    expect(old_row).to_have_attribute("data-signing", "false")
    expect(old_row).to_contain_text("trusted, not signing")
    # Retiring asks first, saying what it breaks; cancelled here, the old root stays trusted.
    old_row.get_by_role("button", name="Retire…").click()
    retire = page.get_by_role("dialog", name="Retire a root")
    expect(retire).to_contain_text("Certificates this root signed stop being trusted.")
    expect(retire).to_contain_text(old["id"])
    expect(retire.get_by_role("button", name="Request retirement")).to_be_visible()
    retire.get_by_role("button", name="Cancel").click()
    expect(retire).to_be_hidden()
    expect(roots).to_have_count(len(before) + 1)

    after = api(page, "/api/v1/ca/")["body"]
    (new,) = [root for root in after["roots"] if root["signing"]]
    assert new["fingerprint_sha256"] not in before
    expect(signing.locator(".fingerprint")).to_have_text(colon_fingerprint(new["fingerprint_sha256"]))

    page.get_by_role("heading", name="Identity", level=1).scroll_into_view_if_needed()
    screenshot(page, "identity")
    DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ARTIFACTS / "identity.png", DOCS_SCREENSHOT)


def test_a_version_page_follows_rollouts_live(page: Page) -> None:
    """A version's page refetches its rollout on each /ws/rollout/ event: a later rollout (a CA rotation pushes the
    new bundle) reaches the page with no poll running, as every agent had already acked."""
    page.goto("/graph")
    change = api_send(
        page,
        "POST",
        "/api/v1/change-requests/",
        {
            "namespace": NAMESPACE,
            "title": "e2e: a timeout for ratings",
            "items": [
                {"operation": "create", "kind": "traffic", "name": "ratings", "service": "ratings",
                 "spec": {"timeout_ms": 5000}},
            ],
        },
    )  # fmt: skip
    assert change["status"] == 201, change
    applied = api_send(
        page,
        "POST",
        f"/api/v1/change-requests/{change['body']['id']}/apply/",
        {"emergency_reason": "e2e: the rollout feed needs a version"},
    )
    assert applied["status"] == 200, applied
    number = applied["body"]["applied_version"]

    page.goto(f"/versions/{number}?ns={NAMESPACE}")
    rollout = page.get_by_test_id("rollout")
    expect(page.get_by_test_id("rollout-live")).to_have_attribute("data-connection", "open")
    expect(rollout).to_have_attribute("data-pending", "0", timeout=60_000)
    expect(rollout).to_have_attribute("data-failed", "0")

    detail = re.compile(rf"/api/v1/config-versions/{number}/$")
    with page.expect_request(lambda request: bool(detail.search(request.url)), timeout=30_000):
        rotated = api_send(
            page, "POST", "/api/v1/ca-changes/", {"operation": "rotate", "emergency_reason": "e2e: a rollout to follow"}
        )
        assert rotated["status"] == 201, rotated
    expect(page.get_by_test_id("rollout-run")).to_contain_text(re.compile(r"mesh v\d+"))
    screenshot(page, "version-rollout-live")


def test_agents_show_their_certificate_identity(page: Page) -> None:
    page.goto(f"/agents?ns={NAMESPACE}")
    table = page.get_by_test_id("agents")
    expect(table.get_by_role("columnheader", name="Identity (SPIFFE id)")).to_be_visible()
    expect(table.get_by_role("columnheader", name="Certificate")).to_be_visible()
    cells = table.get_by_test_id("certificate-expiry")
    expect(cells.first).to_be_visible()
    agents = api(page, f"/api/v1/agents/?namespace={NAMESPACE}&page_size=500")["body"]["results"]
    expect(cells).to_have_count(len(agents))
    for index in range(cells.count()):
        state = cells.nth(index).get_attribute("data-state")
        assert state in {"none", "valid", "expiring", "expired"}
        if state == "none":
            expect(cells.nth(index)).to_have_text("no certificate")
        else:
            expect(cells.nth(index)).to_have_text(re.compile(r"^(⚠ )?(expires in|expired) "))
    screenshot(page, "agents-certificates")


def test_a_service_page_lists_its_denied_callers(page: Page) -> None:
    page.goto(f"/services?ns={NAMESPACE}&window=5m")
    page.get_by_test_id("services").get_by_role("link", name="reviews", exact=True).click()
    panel = page.get_by_test_id("denied-callers")
    expect(panel.get_by_role("heading", name="Denied callers")).to_be_visible()
    service_id = re.search(r"/services/(\d+)", page.url)
    assert service_id is not None
    denied = api(page, f"/api/v1/services/{service_id.group(1)}/metrics/?window=5m&step=5m")["body"]["denied_callers"]
    if denied:
        expect(panel.locator("tbody tr")).to_have_count(len(denied))
    else:
        expect(panel).to_contain_text("No caller was denied in this window")


def test_the_graph_legend_explains_mtls_and_denials(page: Page) -> None:
    page.goto(f"/graph?ns={NAMESPACE}")
    legend = page.get_by_label("Legend")
    expect(legend.locator('[data-legend="mtls"]')).to_have_text(re.compile(r"mTLS, every call"))
    expect(legend.locator('[data-legend="partial"]')).to_have_text(re.compile(r"partly mTLS"))
    expect(legend.locator('[data-legend="denied"]')).to_have_text(re.compile(r"calls denied"))


def test_no_identity_page_logs_an_error(page: Page, console: ConsoleLog) -> None:
    open_identity_from_the_nav(page)
    expect(page.get_by_test_id("ca-roots")).to_be_visible()
    expect(page.get_by_test_id("certificates")).to_be_visible()
    assert console.errors == []
