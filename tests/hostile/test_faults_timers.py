"""Issue 13 §5 for timers: deterministic fault injection in a tick.

A trigger in the database makes one write of a tick fail — the fired event's row, or the
``timers`` row that marks it fired — at a chosen timer. Whatever the tick managed, the log and
the timers agree (a timer is ``fired`` exactly when its event is in the log), nothing fires twice,
and once the fault is healed the next tick fires the rest, each once: the log ends equal to the
log of a clean tick over the same input (ids, times, data, lineage).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.helpers import cli, database_url, events, fail_writes, heal, ok, write_rules

pytestmark = pytest.mark.usefixtures("each_backend")

TRIAL = """\
rules:
  - name: trial-ends
    on: account.created
    then:
      - emit: trial.ended
        after: 14d
        data: {accountId: "${{ data.accountId }}"}
        key: "${{ data.accountId }}"
"""

NOW = "2027-01-01T00:00:00Z"  # after every due time


def created(n: int) -> str:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return "".join(
        json.dumps(
            {"type": "account.created", "source": "test", "id": f"acc-{i}",
             "time": (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "data": {"accountId": f"acc-{i}"}}
        ) + "\n"
        for i in range(n)
    )  # fmt: skip


def timers(*global_opts: str) -> list[dict[str, Any]]:
    out = ok(*global_opts, "timers", "--format", "json").stdout
    return json.loads(out)  # type: ignore[no-any-return]


def fired_events(*global_opts: str) -> list[dict[str, Any]]:
    return [e for e in events(*global_opts) if e["type"] == "trial.ended"]


def assert_timers_agree_with_the_log(*global_opts: str) -> dict[str, str]:
    """Each fired timer's event is in the log, once; each fired event belongs to one fired
    timer; nothing is fired twice. Returns key -> status."""
    rows = timers(*global_opts)
    fired = fired_events(*global_opts)
    by_seq = {e["seq"]: e for e in fired}
    assert len({e["id"] for e in fired}) == len(fired), "an event fired twice"
    marked = [t for t in rows if t["status"] == "fired"]
    assert sorted(t["event_seq"] for t in marked) == sorted(by_seq), (marked, fired)
    for timer in marked:
        event = by_seq[timer["event_seq"]]
        assert event["causationid"] == timer["cause_id"]
        assert event["data"] == {"accountId": timer["key"]}
        assert event["time"] == timer["due"]
    return {t["key"]: t["status"] for t in rows}


def lineage(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a fired event is, whichever log holds it (seq and recording time aside)."""
    return sorted(
        (e["id"], e["source"], e["time"], e["causationid"], e["correlationid"],
         json.dumps(e["data"], sort_keys=True))
        for e in found
    )  # fmt: skip


def clean_lineage(project: Path, other_db: str, lines: str) -> list[tuple[Any, ...]]:
    """The same input ticked without any fault, in another log."""
    ok("--db", other_db, "import", "-", "--no-dispatch", stdin=lines)
    ok("--db", other_db, "tick", "--now", NOW)
    return lineage(fired_events("--db", other_db))


FAULTS = {
    # the row of the event that the timer of key {key} fires
    "events": "NEW.type = 'trial.ended' AND NEW.body LIKE '%\"{key}\"%'",
    # the update that marks that timer fired (its event was appended in the same transaction)
    "timers": "NEW.status = 'fired' AND NEW.key = '{key}'",
}


@pytest.mark.parametrize(
    ("table", "faulty", "n"),
    [
        ("events", "acc-3", 8),  # the fired event's row cannot be written, for one timer
        ("events", "acc-1010", 1020),  # the same in the second batch of 1,000
        ("timers", "acc-5", 8),  # the write that marks one timer fired fails
    ],
    ids=["event-row", "event-row-second-batch", "fired-mark"],
)
def test_a_failed_write_in_a_tick_fires_nothing_twice_and_a_resume_fires_the_rest(
    project: Path, other_db: str, table: str, faulty: str, n: int
) -> None:
    write_rules(project, TRIAL)
    lines = created(n)
    ok("import", "-", "--no-dispatch", stdin=lines)
    assert Counter(t["status"] for t in timers()) == {"pending": n}
    url = database_url(project)
    fail_writes(url, table, FAULTS[table].format(key=faulty))
    try:
        failed = cli("tick", "--now", NOW)
        # a store that refuses a write: the tick stops, exit 4, one line, its batch undone
        assert failed.exit_code == 4 and "injected fault" in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
        statuses = assert_timers_agree_with_the_log()
        assert statuses[faulty] == "pending"  # the timer whose write failed
        # batches before the fault's committed and stay fired; the fault's batch is undone
        committed = (n // 1000) * 1000 if n > 1000 else 0
        assert Counter(statuses.values()) == Counter(fired=committed, pending=n - committed)
        # a tick under the same fault changes nothing
        before = (lineage(fired_events()), statuses)
        assert cli("tick", "--now", NOW).exit_code == 4
        assert (lineage(fired_events()), assert_timers_agree_with_the_log()) == before
    finally:
        heal(url, table)
    ok("tick", "--now", NOW)
    statuses = assert_timers_agree_with_the_log()
    assert Counter(statuses.values()) == {"fired": n}
    assert lineage(fired_events()) == clean_lineage(project, other_db, lines)
    # and nothing is left to fire: a further tick appends nothing
    count = len(events())
    ok("tick", "--now", NOW)
    assert len(events()) == count
