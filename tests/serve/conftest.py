"""Fixtures for the ``evflow serve`` tests: a project with rules, and servers started in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.server import Server, serve

SHOP_RULES = """\
version: 1
rules:
  - name: ship-on-order
    description: Every order is shipped.
    on: order.placed
    if: has(data.orderId)
    then:
      - emit: shipment.requested
        subject: ${{ data.orderId }}
        data: {orderId: "${{ data.orderId }}"}
  - name: notify-sales
    description: Big orders call the sales webhook (nobody listens; evflow run would fail it).
    on: order.placed
    if: has(data.amount) && data.amount > 100
    then:
      - http: http://127.0.0.1:9/sales
        timeout: 1s
  - name: retired-rule
    on: order.placed
    active: {until: 2001-01-01}
    then:
      - emit: never.happens
  - name: future-rule
    on: order.placed
    active: {from: 2999-01-01}
    then:
      - emit: not.yet

schedules:
  - name: nightly-report
    cron: "0 2 * * *"
    timezone: UTC
    emit: report.requested

projections:
  - name: orders
    description: Every order by id.
    key: data.orderId
    on:
      order.placed: upsert
      order.cancelled: delete
"""


@pytest.fixture
def shop(project: Path) -> Path:
    """A project folder with the shop rules above (and no database yet)."""
    (project / "rules").mkdir()
    (project / "rules" / "shop.yaml").write_text(SHOP_RULES)
    return project


@pytest.fixture
def bare(project: Path) -> Path:
    """A project folder whose rules folder is empty: every event matches nothing."""
    (project / "rules").mkdir()
    return project


@pytest.fixture
def server(shop: Path) -> Iterator[Server]:
    """``evflow serve`` on the shop project, SQLite, no tokens (loopback only)."""
    with serve(shop) as s:
        yield s
