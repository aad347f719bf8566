"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

Screenshots are kept in tests/artifacts/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pytest

from tests.conftest import REPO, run_process
from tests.serve.ce import make, post_structured
from tests.serve.server import Server, serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
TOKEN = "tok-DASH-4410aa"


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _seed(server: Server) -> None:
    with server.client() as c:
        r = post_structured(c, make("order.placed", {"orderId": "d-1", "amount": 300}, id="seed-1"))
        assert r.status_code == 201, r.text
        assert c.get("/projections/orders").status_code == 200  # catches the projection up


def test_dashboard_shows_an_event_emitted_after_it_opened(
    browser,
    server: Server,
    shop: Path,  # type: ignore[no-untyped-def]
) -> None:
    _seed(server)
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    events = page.locator("#events")
    events.get_by_text("seed-1").wait_for(timeout=10_000)
    # emitted by another process, after the page opened: the page must pick it up by itself
    p = run_process(["emit", "late.arrival", "--id", "late-42", "-d", '{"n": 1}'], shop)
    assert p.returncode == 0, p.stderr
    events.get_by_text("late-42").wait_for(timeout=15_000)
    assert "late.arrival" in events.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)

    rules = page.locator("#rules").inner_text()
    for name, state in (
        ("ship-on-order", "active"),
        ("retired-rule", "expired"),
        ("future-rule", "pending"),
    ):
        assert name in rules and state in rules
    graph = page.locator("#graph").inner_text()
    assert "order.placed" in graph and "shipment.requested" in graph
    deliveries = page.locator("#deliveries").inner_text()
    assert "pending" in deliveries and "notify-sales" in deliveries
    projections = page.locator("#projections").inner_text()
    assert "orders" in projections and "lag" in projections.lower()
    schedules = page.locator("#schedules").inner_text()
    assert "nightly-report" in schedules and "02:00" in schedules
    assert page.locator("#timers").count() == 1
    assert errors == []
    page.close()


def test_dashboard_is_readable_on_a_phone(browser, server: Server) -> None:  # type: ignore[no-untyped-def]
    _seed(server)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    page = context.new_page()
    page.goto(server.url + "/")
    page.locator("#events").get_by_text("seed-1").wait_for(timeout=10_000)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= 390, f"the page scrolls sideways on a phone ({scroll}px wide)"
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    context.close()


def test_dashboard_lists_work_without_javascript(browser, server: Server) -> None:  # type: ignore[no-untyped-def]
    _seed(server)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server.url + "/")
    assert "seed-1" in page.locator("#events").inner_text()
    assert "ship-on-order" in page.locator("#rules").inner_text()
    assert "notify-sales" in page.locator("#deliveries").inner_text()
    assert "orders" in page.locator("#projections").inner_text()
    context.close()
    with server.client() as c:  # and it is plain server-side HTML
        html = c.get("/")
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert "seed-1" in html.text


def test_dashboard_needs_the_read_scope(shop: Path) -> None:
    tokens = {TOKEN: ["read"], "tok-ING-0a0a": ["ingest"]}
    with serve(shop, env={"EVFLOW_TOKENS": json.dumps(tokens)}) as s:
        with s.client() as c:
            assert c.get("/").status_code == 401
        with s.client("tok-ING-0a0a") as c:
            assert c.get("/").status_code == 403
        with s.client(TOKEN) as c:
            r = c.get("/")
            assert r.status_code == 200
            assert TOKEN not in r.text  # the page never echoes the token


def test_dashboard_lists_a_failed_delivery_with_its_last_error(server: Server, shop: Path) -> None:
    _seed(server)  # amount 300: notify-sales calls a webhook nobody listens to
    p = run_process(["run", "--once"], shop)  # the worker tries it once and records why it failed
    assert p.returncode == 0, p.stderr
    p = run_process(["deliveries", "--format", "json"], shop)
    assert p.returncode == 0, p.stderr
    failed = [d for d in json.loads(p.stdout) if d["status"] == "failed"]
    assert [d["rule"] for d in failed] == ["notify-sales"] and failed[0]["last_error"]
    with server.client() as c:
        html = c.get("/").text
    section = html[html.index('id="deliveries"') :]
    section = section[: section.index("</section>")]
    assert "failed: 1" in section  # the count by status
    row = section[section.index('class="status-failed"') :]
    row = row[: row.index("</tr>")]
    assert "notify-sales" in row
    assert escape(failed[0]["last_error"]) in row


TRIAL_RULES = """\
version: 1
rules:
  - name: trial-ends
    on: account.created
    then:
      - emit: trial.ended
        after: 14d
        data: {accountId: "${{ data.accountId }}"}
        key: "${{ data.accountId }}"
        cancel_on: [subscription.paid]
        cancel_key: "${{ data.accountId }}"
"""


def test_dashboard_lists_pending_timers_with_their_due_time(project: Path) -> None:
    (project / "rules").mkdir()
    (project / "rules" / "trial.yaml").write_text(TRIAL_RULES)
    with serve(project) as s, s.client() as c:
        for account, day in (("a1", 1), ("a2", 2)):
            when = datetime(2026, 1, day, 10, tzinfo=UTC)
            data = {"accountId": account}
            created = make("account.created", data, id=f"acc-{account}", time=when)
            r = post_structured(c, created)
            assert r.status_code == 201, r.text
        paid = make(
            "subscription.paid", {"accountId": "a2"}, id="paid-a2",
            time=datetime(2026, 1, 5, tzinfo=UTC),
        )  # fmt: skip
        assert post_structured(c, paid).status_code == 201
        html = c.get("/").text
    timers = html[html.index('id="timers"') :]
    timers = timers[: timers.index("</section>")]
    assert "trial-ends" in timers and "a1" in timers
    assert "2026-01-15T10:00:00" in timers  # 14 days after the cause's time
    assert "a2" not in timers  # cancelled: no longer pending
