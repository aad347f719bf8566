"""Output for people: tables that keep their identifying columns at 60 columns, one record per
block when narrower, NO_COLOR, coloured statuses; ``rules test`` on stdout; ``run --strict``;
``-s key=value``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_ux.conftest import (
    ANSI,
    clean_env,
    copy_shop,
    evflow,
    ok,
    plain,
    run_to_end,
    spawn,
    write_rules,
)

LONG_RULE = "notify-the-regional-warehouse-team"
RULES = f"""\
version: 1
rules:
  - name: {LONG_RULE}
    on: inventory.level.dropped-below-threshold
    then:
      - run: ["false"]
    retry: {{attempts: 1}}
  - name: ok-rule
    on: inventory.level.dropped-below-threshold
    then:
      - run: ["true"]
"""
LONG_TYPE = "inventory.level.dropped-below-threshold"


@pytest.fixture
def wide(home: Path) -> Path:
    write_rules(home, RULES)
    for n in range(3):
        ok(
            ["emit", LONG_TYPE, "--subject", f"warehouse-{n}-north-east-region",
             "--data", json.dumps({"sku": f"SKU-{n:05d}", "note": "x" * 80})],
            home,
        )  # fmt: skip
    return home


def _screen(args: list[str], cwd: Path, cols: int, **env: str) -> str:
    status, out = run_to_end(
        spawn([*args, "--no-pager"], cwd, cols=cols, env=clean_env(NO_COLOR="1", **env))
    )
    assert status == 0, out
    return plain(out)


def test_log_at_60_columns_keeps_seq_and_type(wide: Path) -> None:
    text = _screen(["log"], wide, 60)
    assert all(len(ln) <= 60 for ln in text.splitlines()), text
    rows = [ln for ln in text.splitlines() if LONG_TYPE in ln]
    assert len(rows) == 3, text  # the type is whole, on the row's line
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3]


def test_deliveries_at_60_columns_keep_id_rule_and_status(wide: Path) -> None:
    text = _screen(["deliveries"], wide, 60)
    assert all(len(ln) <= 60 for ln in text.splitlines()), text
    assert text.count(LONG_RULE) == 3, text
    assert len(re.findall(r"\bdead\b", text)) == 3 and len(re.findall(r"\bdone\b", text)) == 3


def test_narrow_terminals_get_one_record_per_block(wide: Path) -> None:
    text = _screen(["log"], wide, 40)
    # only a line holding an identifying value (never cut) may be wider than the terminal
    assert all(len(ln) <= 40 or LONG_TYPE in ln for ln in text.splitlines()), text
    assert len(re.findall(r"^\s*seq\s*:?\s+\d+\s*$", text, re.M)) == 3, text
    assert LONG_TYPE in text
    text = _screen(["deliveries"], wide, 40)
    assert all(len(ln) <= 40 or LONG_RULE in ln for ln in text.splitlines()), text
    assert len(re.findall(r"^\s*rule\s*:?\s+\S", text, re.M)) == 6, text


def test_no_color_removes_all_styling(wide: Path) -> None:
    for args in (["log"], ["deliveries"], ["stats"], ["rules", "list"], ["show", "1"]):
        status, out = run_to_end(spawn([*args, "--no-pager"], wide, env=clean_env(NO_COLOR="1")))
        assert status == 0, out
        assert "\x1b[" not in out, (args, out[:400])


def test_statuses_are_coloured_without_no_color(wide: Path) -> None:
    status, out = run_to_end(spawn(["deliveries", "--no-pager"], wide))
    assert status == 0
    for word in ("dead", "done"):
        assert re.search(r"\x1b\[[0-9;]*m" + word, out), (word, out[:800])


def test_rule_test_results_are_coloured(tmp_path: Path) -> None:
    shop = copy_shop(tmp_path / "shop")
    status, out = run_to_end(spawn(["rules", "test"], shop))
    assert status == 0
    assert re.search(r"\x1b\[[0-9;]*mPASS", out), out[:400]


def test_rules_test_summary_is_on_stdout(tmp_path: Path) -> None:
    shop = copy_shop(tmp_path / "shop")
    proc = evflow(["rules", "test"], shop)
    assert proc.returncode == 0
    assert re.search(r"^\d+ passed, 0 failed in 1 file\(s\)$", proc.stdout, re.M), proc.stdout
    assert "passed" not in proc.stderr


def test_piped_output_has_no_escape_codes(wide: Path) -> None:
    for args in (["log", "--format", "table"], ["deliveries", "--format", "table"]):
        proc = evflow(args, wide)
        assert not ANSI.search(proc.stdout), args


STRICT = """\
version: 1
rules:
  - name: works
    on: good
    then:
      - run: ["true"]
  - name: breaks
    on: bad
    then:
      - run: ["false"]
    retry: {attempts: 1}
  - name: flaky
    on: meh
    then:
      - run: ["false"]
    retry: {attempts: 3, backoff: 1h}
"""


def test_run_once_strict(home: Path) -> None:
    write_rules(home, STRICT)
    ok(["emit", "good", "--no-dispatch"], home)
    assert evflow(["run", "--once", "--strict"], home).returncode == 0
    ok(["emit", "bad", "--no-dispatch"], home)
    proc = evflow(["run", "--once"], home)
    assert proc.returncode == 0  # without --strict a failed delivery is reported, not an error
    ok(["emit", "bad", "--no-dispatch"], home)
    proc = evflow(["run", "--once", "--strict"], home)
    assert proc.returncode == 1, proc.stderr  # went dead
    assert "dead" in proc.stdout + proc.stderr
    ok(["emit", "meh", "--no-dispatch"], home)
    proc = evflow(["run", "--once", "--strict"], home)
    assert proc.returncode == 1, proc.stderr  # failed, to be retried in an hour
    ok(["emit", "good", "--no-dispatch"], home)
    assert evflow(["run", "--once", "--strict"], home).returncode == 0  # only this run counts


def test_set_keeps_text(home: Path) -> None:
    ok(["emit", "rel", "-s", "version=1.10", "-s", "n=5", "-f", "m=5", "-s", "empty="], home)
    ok(["emit", "rel", "--set", "flag=true", "-f", "other=true", "-s", 'j={"a":1}'], home)
    events = [json.loads(x) for x in ok(["log", "--format", "jsonl"], home).splitlines()]
    assert events[0]["data"] == {"version": "1.10", "n": "5", "m": 5, "empty": ""}
    assert events[1]["data"] == {"flag": "true", "other": True, "j": '{"a":1}'}
    proc = evflow(["emit", "rel", "-s", "novalue"], home)
    assert proc.returncode == 2 and "key=value" in proc.stderr


def test_set_in_explain_and_dry_run(tmp_path: Path) -> None:
    shop = copy_shop(tmp_path / "shop")
    out = ok(
        ["rules", "explain", "order.placed", "-s", "orderId=7", "-f", "orderAmt=150",
         "--time", "2016-10-02T00:00:00Z", "--format", "table"],
        shop,
    )  # fmt: skip
    assert "big-order-to-sales: MATCH" in out
    out = ok(
        ["emit", "order.placed", "-s", "orderId=007", "-s", "productId=p-1", "-s", "userid=u1",
         "--dry-run", "--format", "json"],
        shop,
    )  # fmt: skip
    assert json.loads(out)["data"] == {"orderId": "007", "productId": "p-1", "userid": "u1"}
