"""Long work says what it is doing: import's progress (count, rate, time left; from stdin too;
a second phase for the deliveries it runs), and what Ctrl-C leaves behind in import, replay and
run."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from tests.cli_ux.conftest import (
    generate_events,
    ok,
    plain,
    run_to_end,
    spawn,
    spawn_shell,
    write_rules,
)

SLOW_DELIVERIES = """\
version: 1
rules:
  - name: slow
    on: order.placed
    if: data.orderAmt > 200
    then:
      - run: [sleep, "0.2"]
"""


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return generate_events(3000, tmp_path / "events.jsonl")


def test_import_shows_count_rate_and_time_left_then_deliveries(home: Path, events: Path) -> None:
    write_rules(home, SLOW_DELIVERIES.replace('[sleep, "0.2"]', '["true"]'))
    status, out = run_to_end(spawn(["import", str(events)], home, timeout=300))
    text = plain(out)
    assert status == 0, text[-2000:]
    assert re.search(r"3,?000", text), text[-2000:]  # the count
    assert re.search(r"[\d.,]+\s*(?:events?|ev)?/s", text), text[-2000:]  # the rate
    assert re.search(r"left|eta|remaining", text, re.I), text[-2000:]  # time left
    assert re.search(r"deliver", text.split("recorded 3000")[0], re.I), text[-2000:]


def test_import_from_stdin_shows_count_and_rate(home: Path, events: Path) -> None:
    status, out = run_to_end(spawn_shell(f"cat {events} | evflow import -", home))
    text = plain(out)
    assert status == 0, text[-2000:]
    assert re.search(r"[\d.,]+\s*(?:events?|ev)?/s", text), text[-2000:]
    assert re.search(r"\b\d[\d,]*\s+events?\b", text), text[-2000:]


def _deliveries(home: Path, status: str) -> int:
    out = ok(["deliveries", "--status", status, "--format", "jsonl"], home)
    return len(out.splitlines())


def test_ctrl_c_while_import_dispatches(home: Path, events: Path) -> None:
    write_rules(home, SLOW_DELIVERIES)
    child = spawn(["import", str(events)], home, timeout=120)
    child.expect(re.compile("deliver", re.I))
    time.sleep(0.5)
    child.sendintr()
    status, out = run_to_end(child)
    text = plain(out)
    assert status == 130, text[-1000:]
    assert "Traceback" not in text
    line = [ln for ln in text.splitlines() if "pending" in ln][-1]
    m = re.search(r"(\d[\d,]*) events? recorded; (\d[\d,]*) deliver(?:y|ies) pending", line)
    assert m and "evflow run" in line, line
    recorded, pending = (int(g.replace(",", "")) for g in m.groups())
    assert recorded == 3000
    assert pending == _deliveries(home, "pending") and pending > 0


@pytest.mark.slow
def test_ctrl_c_while_import_records_says_what_was_recorded(tmp_path: Path, home: Path) -> None:
    big = generate_events(60_000, tmp_path / "big.jsonl")
    child = spawn(["import", str(big), "--no-dispatch"], home, timeout=120)
    child.expect(r"\d+/s")
    child.sendintr()
    status, out = run_to_end(child)
    text = plain(out)
    assert status == 130 and "Traceback" not in text
    logged = len(ok(["log", "--format", "jsonl"], home).splitlines())
    # imports write in chunks: what is committed is said, and how to complete it
    m = re.search(r"(\d+) events recorded .*run it again", text)
    if m:
        assert int(m.group(1)) == logged, text[-1000:]
    else:
        assert re.search(r"nothing recorded: run it again", text), text[-1000:]
        assert logged == 0


REPLAY_RULES = """\
version: 1
projections:
  - name: every_event
    key: event.id
    on:
      "*": upsert
"""


@pytest.mark.slow
def test_ctrl_c_during_replay(tmp_path: Path, home: Path) -> None:
    write_rules(home, REPLAY_RULES)
    ok(["import", str(generate_events(60_000, tmp_path / "e.jsonl"))], home)
    child = spawn(["replay"], home, timeout=120)
    # as soon as some events are applied (replay runs ~60,000 events/s here: a fixed sleep
    # would often see it finish first)
    child.expect(r"replaying [1-9][\d,]* events")
    child.sendintr()
    status, out = run_to_end(child)
    text = plain(out).strip()
    assert status == 130, text
    assert "Traceback" not in text
    line = text.splitlines()[-1]
    assert "every_event" in line and "evflow replay" in line, text
    m = re.search(r"at seq (\d+)", line)
    assert m, line
    stats = json.loads(ok(["stats", "--format", "json"], home))
    assert stats["projections"]["every_event"]["position"] == int(m.group(1))


WORKER = """\
version: 1
rules:
  - name: slow
    on: job
    then:
      - run: [sleep, "3"]
"""


def test_first_ctrl_c_in_run_finishes_the_delivery(home: Path) -> None:
    write_rules(home, WORKER)
    ok(["emit", "job", "--no-dispatch"], home)
    child = spawn(["run"], home, timeout=30)
    child.expect("polling")
    time.sleep(1)
    child.sendintr()
    child.expect(r"finishing delivery 1, Ctrl-C again to abort")
    status, out = run_to_end(child)
    assert status in (0, 130), out
    rows = json.loads(ok(["deliveries", "--format", "json"], home))
    assert rows[0]["status"] == "done"


def test_second_ctrl_c_in_run_releases_the_lease(home: Path) -> None:
    write_rules(home, WORKER.replace('"3"', '"30"'))
    ok(["emit", "job", "--no-dispatch"], home)
    child = spawn(["run"], home, timeout=30)
    child.expect("polling")
    time.sleep(1)
    child.sendintr()
    child.expect("Ctrl-C again")
    child.sendintr()
    status, out = run_to_end(child)
    assert status == 130, out
    assert "Traceback" not in out
    rows = json.loads(ok(["deliveries", "--format", "json"], home))
    # not left 'running' until its lease expires: another worker may take it at once
    assert rows[0]["status"] in ("pending", "failed"), rows


def test_sigterm_is_a_clean_stop_too(home: Path) -> None:
    write_rules(home, WORKER)
    child = spawn(["run"], home, timeout=30)
    child.expect("polling")
    child.kill(signal.SIGTERM)
    status, out = run_to_end(child)
    assert status in (0, 130, 143) and "Traceback" not in out
