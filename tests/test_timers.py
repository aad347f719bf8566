"""Timers (issue 18): "if B has not happened N days after A, emit C", through the command line.

Every test here runs on each backend (SQLite; PostgreSQL with EVFLOW_TEST_PG) except the one with
100,000 timers, which checks memory on SQLite. Times are given explicitly, never the wall clock,
except where a back-filled log must be long due by now.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import evflow_exe, run_cli, run_measured, run_process

pytestmark = pytest.mark.usefixtures("each_backend")

TRIAL = """
rules:
  - name: trial-ends
    on: account.created
    then:
      - emit: trial.ended
        after: 14d                          # a duration from the cause event's time
        data: {accountId: "${{ data.accountId }}"}
        key: "${{ data.accountId }}"        # the timer's key (default: the cause's subject)
        cancel_on: [subscription.paid, account.deleted]
        cancel_key: "${{ data.accountId }}" # the key of a cancelling event (default: subject)
"""

# `at` from the event, key and cancellation by subject (the defaults)
REMIND = """
rules:
  - name: remind
    on: order.placed
    then:
      - emit: order.reminder
        at: "${{ data.remind_at }}"
        data: {orderId: "${{ data.orderId }}"}
        cancel_on: order.paid
"""

T0 = "2026-01-01T10:00:00Z"
DUE = "2026-01-15T10:00:00.000000Z"  # T0 + 14d, as the log writes times

TIMER_KEYS = {
    "id",
    "rule",
    "action",
    "kind",
    "status",
    "due",
    "key",
    "cause_seq",
    "cause_id",
    "event_seq",
    "delivery_id",
    "cancelled_by",
}


def write_rules(project: Path, text: str, name: str = "x.yaml") -> None:
    (project / "rules").mkdir(exist_ok=True)
    (project / "rules" / name).write_text(text)


def ok(args: list[str], stdin: str | None = None) -> Any:
    """Run a command that must succeed; its stdout as JSON when it is JSON."""
    result = run_cli(args, stdin=stdin)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.stdout


def emit(etype: str, data: dict[str, Any], when: str, *extra: str) -> dict[str, Any]:
    args = ["emit", etype, "--data", json.dumps(data), "--time", when, "--format", "json"]
    out = ok([*args, *extra])
    assert isinstance(out, dict)
    return out


def timers(*args: str) -> list[dict[str, Any]]:
    out = ok(["timers", "--format", "json", *args])
    assert isinstance(out, list)
    return out


def log(etype: str) -> list[dict[str, Any]]:
    out = run_cli(["log", "--type", etype, "--format", "jsonl"])
    assert out.exit_code == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def tick(now: str) -> Any:
    result = run_cli(["tick", "--now", now, "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the trial example, end to end ---------------------------------------------------------------


def test_trial_ends_fourteen_days_after_signup(project: Path) -> None:
    write_rules(project, TRIAL)
    created = emit("account.created", {"accountId": "a1"}, T0)
    # recorded with its cause, not an event yet
    [timer_item] = [t for t in created["triggered"] if t["kind"] == "timer"]
    assert timer_item["rule"] == "trial-ends" and timer_item["due"] == DUE
    assert timer_item["key"] == "a1"
    assert not [t for t in created["triggered"] if t["kind"] == "event"]
    text = run_cli(["emit", "account.created", "-f", "accountId=a0", "--time", T0])
    assert "timer" in text.stdout and DUE in text.stdout

    [timer] = [t for t in timers() if t["key"] == "a1"]
    assert set(timer) == TIMER_KEYS
    assert timer["status"] == "pending" and timer["due"] == DUE and timer["kind"] == "emit"
    assert timer["cause_seq"] == created["seq"] and timer["cause_id"] == created["id"]
    assert timer["event_seq"] is None and timer["cancelled_by"] is None

    # replay never fires timers
    assert run_cli(["replay"]).exit_code == 0
    assert {t["status"] for t in timers()} == {"pending"}

    # a second before the due time: nothing; at the due time: fired, once
    fired, _ = tick("2026-01-15T09:59:59Z")
    assert fired == [] and log("trial.ended") == []
    fired, stderr = tick("2026-01-15T10:00:00Z")
    assert "2 timer(s) fired" in stderr
    assert sorted(e["data"]["accountId"] for e in fired) == ["a0", "a1"]
    assert tick("2026-01-20T00:00:00Z")[0] == []  # again: nothing twice

    [ended] = [e for e in log("trial.ended") if e["data"] == {"accountId": "a1"}]
    assert ended["time"] == DUE  # time is the due time, not the tick's
    assert ended["causationid"] == created["id"]
    assert ended["correlationid"] == created["correlationid"]
    assert ended["evflowrule"] == "trial-ends"
    assert ended["source"] == "evflow:rule/trial-ends"
    [timer] = [t for t in timers() if t["key"] == "a1"]
    assert timer["status"] == "fired" and timer["event_seq"] == ended["seq"]
    # the fired event is part of the cause's tree
    shown = ok(["show", str(created["seq"]), "--format", "json"])
    assert [c["event"]["id"] for c in shown["caused"]] == [ended["id"]]


def test_trial_signup_then_payment_fires_nothing(project: Path) -> None:
    write_rules(project, TRIAL)
    emit("account.created", {"accountId": "a2"}, T0)
    emit("account.created", {"accountId": "a3"}, T0)
    emit("account.created", {"accountId": "a4"}, T0)
    paid = emit("subscription.paid", {"accountId": "a2"}, "2026-01-04T00:00:00Z")
    [item] = [t for t in paid["triggered"] if t["kind"] == "cancelled_timer"]
    assert item["rule"] == "trial-ends" and item["key"] == "a2"
    emit("subscription.paid", {"accountId": "nobody"}, "2026-01-04T00:00:00Z")
    deleted = emit("account.deleted", {"accountId": "a4"}, "2026-01-05T00:00:00Z")

    by_key = {t["key"]: t for t in timers()}
    assert by_key["a2"]["status"] == "cancelled"
    assert by_key["a2"]["cancelled_by"] == paid["seq"]
    assert by_key["a4"]["cancelled_by"] == deleted["seq"]
    assert by_key["a3"]["status"] == "pending"

    fired, _ = tick("2026-03-01T00:00:00Z")
    assert [e["data"] for e in fired] == [{"accountId": "a3"}]
    assert [e["data"] for e in log("trial.ended")] == [{"accountId": "a3"}]


def test_at_with_subject_as_the_default_key(project: Path) -> None:
    write_rules(project, REMIND)
    placed = emit(
        "order.placed",
        {"orderId": "o1", "remind_at": "2026-02-01T09:00:00+09:00"},
        T0,
        "--subject",
        "o1",
    )
    emit(
        "order.placed",
        {"orderId": "o2", "remind_at": "2026-02-02T00:00:00Z"},
        T0,
        "--subject",
        "o2",
    )
    by_key = {t["key"]: t for t in timers()}
    assert by_key["o1"]["due"] == "2026-02-01T00:00:00.000000Z"  # stored in UTC
    assert by_key["o1"]["cause_id"] == placed["id"]
    # cancel_key defaults to the cancelling event's subject
    run_cli(["emit", "order.paid", "--subject", "o2", "--time", "2026-01-10T00:00:00Z"])
    assert {t["key"]: t["status"] for t in timers()} == {"o1": "pending", "o2": "cancelled"}
    fired, _ = tick("2026-02-10T00:00:00Z")
    assert [(e["type"], e["time"], e["data"]) for e in fired] == [
        ("order.reminder", "2026-02-01T00:00:00.000000Z", {"orderId": "o1"})
    ]


def test_a_literal_at_and_a_cause_without_key(project: Path) -> None:
    write_rules(
        project,
        """
rules:
  - name: launch
    on: launch.planned
    then:
      - emit: launch.started
        at: 2030-01-01T00:00:00Z
        cancel_on: launch.cancelled
""",
    )
    emit("launch.planned", {}, T0)  # no subject, no key: nothing can cancel it by key
    run_cli(["emit", "launch.cancelled", "--time", "2026-02-01T00:00:00Z"])
    [timer] = timers()
    assert timer["due"] == "2030-01-01T00:00:00.000000Z" and timer["key"] is None
    assert timer["status"] == "pending"


def test_a_glob_in_cancel_on_cancels_by_any_type_it_matches(project: Path) -> None:
    write_rules(project, TRIAL.replace("[subscription.paid, account.deleted]", '"subscription.*"'))
    for account in ("upgraded", "other-type", "other-key"):
        emit("account.created", {"accountId": account}, T0)
    cancelling = emit("subscription.upgraded", {"accountId": "upgraded"}, "2026-01-02T00:00:00Z")
    assert [t["key"] for t in cancelling["triggered"] if t["kind"] == "cancelled_timer"] == [
        "upgraded"
    ]
    emit("subscriptions.upgraded", {"accountId": "other-type"}, "2026-01-02T00:00:00Z")
    emit("subscription.paid", {"accountId": "nobody"}, "2026-01-02T00:00:00Z")
    assert {t["key"]: t["status"] for t in timers()} == {
        "upgraded": "cancelled", "other-type": "pending", "other-key": "pending"
    }  # fmt: skip


def test_a_late_cancelling_event_does_not_cancel(project: Path) -> None:
    write_rules(project, TRIAL)
    emit("account.created", {"accountId": "late"}, T0)
    emit("account.created", {"accountId": "exact"}, T0)
    # the payment happened after the trial had already ended (its time is after the due time),
    # even though it reaches the log before any tick
    emit("subscription.paid", {"accountId": "late"}, "2026-01-21T00:00:00Z")
    # "before the due time" is strict
    emit("subscription.paid", {"accountId": "exact"}, "2026-01-15T10:00:00Z")
    # and holds for a time with nanoseconds: a nanosecond after the due time is not before it
    emit("account.created", {"accountId": "nano"}, T0)
    emit("subscription.paid", {"accountId": "nano"}, "2026-01-15T10:00:00.000000001Z")
    assert {t["status"] for t in timers()} == {"pending"}
    emit("account.created", {"accountId": "just-in-time"}, T0)
    emit("subscription.paid", {"accountId": "just-in-time"}, "2026-01-15T09:59:59.999999999Z")
    assert [t["status"] for t in timers("--key", "just-in-time")] == ["cancelled"]
    fired, _ = tick("2026-02-01T00:00:00Z")
    assert sorted(e["data"]["accountId"] for e in fired) == ["exact", "late", "nano"]
    # once fired, a payment that arrives later (even dated before the due time) changes nothing
    emit("subscription.paid", {"accountId": "late"}, "2026-01-03T00:00:00Z")
    assert [t["status"] for t in timers("--key", "late")] == ["fired"]
    assert len(log("trial.ended")) == 3


def test_show_shows_the_cancellation_on_both_events(project: Path) -> None:
    write_rules(project, TRIAL)
    created = emit("account.created", {"accountId": "a1"}, T0)
    paid = emit("subscription.paid", {"accountId": "a1"}, "2026-01-02T00:00:00Z")
    [timer] = timers()

    cause = ok(["show", str(created["seq"]), "--format", "json"])
    [owned] = cause["timers"]
    assert owned["id"] == timer["id"] and owned["status"] == "cancelled"
    assert owned["cancelled_by"] == paid["seq"]
    cancelling = ok(["show", paid["id"], "--format", "json"])
    [cancelled] = cancelling["cancelled_timers"]
    assert cancelled["id"] == timer["id"] and cancelled["cause_seq"] == created["seq"]
    assert cause["cancelled_timers"] == [] and cancelling["timers"] == []

    table = run_cli(["show", str(created["seq"]), "--format", "table"]).stdout
    assert "trial-ends" in table and "cancelled" in table and f"seq {paid['seq']}" in table
    table = run_cli(["show", str(paid["seq"]), "--format", "table"]).stdout
    assert "trial-ends" in table and "cancelled" in table and f"seq {created['seq']}" in table


# -- validation ------------------------------------------------------------------------------------

BROKEN = """rules:
  - name: both
    on: a
    then:
      - emit: b
        after: 1d
        at: 2030-01-01T00:00:00Z
  - name: bad-duration
    on: a
    then:
      - emit: b
        after: 14 days
  - name: zero
    on: a
    then:
      - emit: b
        after: 0s
  - name: bad-cancel-on
    on: a
    then:
      - emit: b
        after: 1h
        cancel_on: [subscription.paid, ""]
  - name: bad-key
    on: a
    then:
      - emit: b
        after: 1h
        key: "${{ data. }}"
        cancel_on: c
        cancel_key: "${{ data.x + }}"
  - name: key-without-timer
    on: a
    then:
      - emit: b
        cancel_on: c
  - name: bad-at
    on: a
    then:
      - emit: b
        at: next tuesday
  - name: cancel-key-alone
    on: a
    then:
      - emit: b
        after: 1h
        cancel_key: "${{ data.x }}"
  - name: at-a-number
    on: a
    then:
      - emit: b
        at: 12
"""


def test_validation_reports_each_timer_problem_with_its_place(project: Path) -> None:
    write_rules(project, BROKEN)
    result = run_cli(["rules", "validate", "--format", "json"])
    assert result.exit_code == 3, result.stderr
    problems = {(p["rule"], p["line"]): p["message"] for p in json.loads(result.stdout)}
    by_rule: dict[str, list[str]] = {}
    for (rule, _), message in problems.items():
        by_rule.setdefault(rule, []).append(message)
    assert any("not both" in m for m in by_rule["both"]), by_rule
    assert any("after: invalid duration '14 days'" in m for m in by_rule["bad-duration"])
    assert problems[("bad-duration", 12)]
    assert any("after must be more than 0" in m for m in by_rule["zero"])
    assert any(
        "cancel_on: an event type is a non-empty string" in m for m in by_rule["bad-cancel-on"]
    )
    assert problems[("bad-cancel-on", 23)]
    assert any(m.startswith("key:") for m in by_rule["bad-key"]), by_rule["bad-key"]
    assert any(m.startswith("cancel_key:") for m in by_rule["bad-key"])
    assert any("cancel_on needs after or at" in m for m in by_rule["key-without-timer"])
    assert any(m.startswith("at:") for m in by_rule["bad-at"]), by_rule["bad-at"]
    assert any("cancel_key needs cancel_on" in m for m in by_rule["cancel-key-alone"])
    # said once, not once as no string and again as an empty time
    assert by_rule["at-a-number"] == ["at must be a string, got int 12"]


def test_valid_timers_on_every_action_kind_and_globs_in_cancel_on(project: Path) -> None:
    write_rules(
        project,
        """
rules:
  - name: later
    on: a
    then:
      - emit: b
        after: 1h30m
        cancel_on: c.*
      - run: [echo, hi]
        after: 2h
      - http: http://127.0.0.1:9/x
        at: "${{ data.when }}"
        cancel_on: [c.done, d]
""",
    )
    result = run_cli(["rules", "validate"])
    assert result.exit_code == 0, result.stdout + result.stderr
    schema = ok(["rules", "schema"])
    for kind in ("emit", "run", "http"):
        props = schema["$defs"][f"{kind}_action"]["properties"]
        assert {"after", "at", "key", "cancel_on", "cancel_key"} <= set(props), kind


def test_due_before_the_cause_is_a_rule_error(project: Path) -> None:
    write_rules(project, REMIND)
    result = run_cli(
        [
            "emit", "order.placed", "--subject", "o9", "--time", T0, "--data",
            json.dumps({"orderId": "o9", "remind_at": "2025-12-31T00:00:00Z"}),
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr  # the fact is recorded anyway
    assert "remind" in result.stderr  # warned, like a failing filter
    bad_time = run_cli(
        ["emit", "order.placed", "--time", T0, "--data", '{"orderId":"o8","remind_at":"soon"}']
    )
    assert bad_time.exit_code == 0, bad_time.stderr
    assert timers() == []
    for seq in (1, 2):
        shown = ok(["show", str(seq), "--format", "json"])
        [error] = shown["rule_errors"]
        assert error["rule"] == "remind"
    assert "before" in ok(["show", "1", "--format", "json"])["rule_errors"][0]["message"]


def test_a_due_time_past_the_calendar_is_a_rule_error(project: Path) -> None:
    write_rules(project, TRIAL.replace("after: 14d", "after: 9999999d"))
    result = run_cli(["emit", "account.created", "-f", "accountId=a1", "--time", T0])
    assert result.exit_code == 0 and "past year 9999" in result.stderr
    assert timers() == []
    [error] = ok(["show", "1", "--format", "json"])["rule_errors"]
    assert error["rule"] == "trial-ends"


# -- ticking: once each, in due order, in any number of processes ---------------------------------


def created_lines(times: list[datetime], prefix: str = "acc") -> str:
    return "".join(
        json.dumps(
            {
                "type": "account.created",
                "id": f"{prefix}-{i}",
                "source": "test",
                "time": iso(t),
                "data": {"accountId": f"{prefix}-{i}"},
            }
        )
        + "\n"
        for i, t in enumerate(times)
    )


def test_two_tickers_in_two_processes_fire_each_timer_once(project: Path) -> None:
    write_rules(project, TRIAL)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # three batches of up to 1,000: the tickers can take turns between batches, not only wait
    n = 2500
    lines = created_lines([start + timedelta(minutes=i) for i in range(n)])
    (project / "in.jsonl").write_text(lines)
    assert run_process(["import", "in.jsonl", "--no-dispatch"], project).returncode == 0
    now = ["tick", "--now", "2026-02-01T00:00:00Z", "--format", "jsonl"]
    procs = [
        subprocess.Popen([evflow_exe(), *now], cwd=project, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    fired = [json.loads(line)["id"] for out in outputs for line in out.splitlines()]
    assert len(fired) == n and len(set(fired)) == n
    ended = log("trial.ended")
    assert len(ended) == n and {e["id"] for e in ended} == set(fired)
    assert Counter(t["status"] for t in timers()) == {"fired": n}


def test_the_fired_id_is_a_function_of_cause_rule_and_action(project: Path) -> None:
    write_rules(project, TRIAL)
    line = created_lines([datetime(2026, 1, 1, tzinfo=UTC)], prefix="same")
    ok(["import", "-", "--no-dispatch"], stdin=line)
    ok(["import", "-", "--no-dispatch"], stdin=line)  # the same cause again: no second timer
    assert len(timers()) == 1
    [first] = tick("2026-02-01T00:00:00Z")[0]
    other = project / "other.db"
    ok(["--db", str(other), "import", "-", "--no-dispatch"], stdin=line)
    [again] = ok(["--db", str(other), "tick", "--now", "2026-03-01T00:00:00Z", "--format", "json"])
    assert again["id"] == first["id"] and again["time"] == first["time"]


def test_importing_a_log_that_already_holds_the_fired_event_records_it_once(
    project: Path,
) -> None:
    write_rules(project, TRIAL)
    line = created_lines([datetime(2026, 1, 1, tzinfo=UTC)], prefix="h")
    ok(["import", "-", "--no-dispatch"], stdin=line)
    [fired] = tick("2026-02-01T00:00:00Z")[0]
    exported = [json.loads(x) for x in ok(["log", "--format", "jsonl"]).splitlines()]
    # another log gets the cause (its timer pending), then the history that holds the fired event
    other = str(project / "other.db")
    ok(["--db", other, "import", "-", "--no-dispatch"], stdin=line)
    history = "".join(json.dumps(e) + "\n" for e in exported if e["type"] == "trial.ended")
    ok(["--db", other, "import", "-", "--no-dispatch"], stdin=history)
    again = run_cli(["--db", other, "tick", "--now", "2026-02-01T00:00:00Z", "--format", "jsonl"])
    assert again.exit_code == 0 and again.stdout == "" and "1 timer(s) fired" in again.stderr
    log_lines = run_cli(["--db", other, "log", "--type", "trial.ended", "--format", "jsonl"])
    [ended] = [json.loads(x) for x in log_lines.stdout.splitlines()]
    assert ended["id"] == fired["id"]
    [timer] = ok(["--db", other, "timers", "--format", "json"])
    assert timer["status"] == "fired" and timer["event_seq"] == ended["seq"]


def test_back_filled_import_fires_long_due_timers_in_due_order(project: Path) -> None:
    write_rules(project, TRIAL)
    base = datetime(2016, 3, 1, tzinfo=UTC)
    offsets = list(range(40))
    random.Random(7).shuffle(offsets)  # the log's order is not the due order
    times = [base + timedelta(hours=7 * o) for o in offsets]
    lines = created_lines(times, prefix="old")
    # a payment three days after signup cancels; one twenty days after does not
    lines += json.dumps(
        {"type": "subscription.paid", "id": "p1", "source": "test",
         "time": iso(times[0] + timedelta(days=3)), "data": {"accountId": "old-0"}}
    ) + "\n"  # fmt: skip
    lines += json.dumps(
        {"type": "subscription.paid", "id": "p2", "source": "test",
         "time": iso(times[1] + timedelta(days=20)), "data": {"accountId": "old-1"}}
    ) + "\n"  # fmt: skip
    (project / "old.jsonl").write_text(lines)
    assert run_process(["import", "old.jsonl"], project).returncode == 0
    assert Counter(t["status"] for t in timers()) == {"pending": 39, "cancelled": 1}

    proc = run_process(["tick", "--format", "jsonl"], project)  # now: long after every due time
    assert proc.returncode == 0, proc.stderr
    ended = log("trial.ended")
    assert len(ended) == 39
    assert [e["time"] for e in ended] == sorted(e["time"] for e in ended)  # seq order = due order
    created = {f"old-{i}": t for i, t in enumerate(times)}
    for event in ended:
        assert event["time"] == iso(created[event["data"]["accountId"]] + timedelta(days=14))
    assert "old-0" not in {e["data"]["accountId"] for e in ended}


def test_a_timer_whose_event_a_rule_cannot_handle_fires_with_the_failure(project: Path) -> None:
    """Issue 13: a rule's failure never blocks its cause, a fired timer's event included."""
    write_rules(
        project,
        TRIAL
        + """
  - name: broken-follow-up
    on: trial.ended
    if: data.accountId == "bad"
    then:
      - emit: trial.followed
        data: {x: "${{ data.missing }}"}
""",
    )
    for account in ("good1", "bad", "good2"):
        emit("account.created", {"accountId": account}, T0)
    result = run_cli(["tick", "--now", "2026-02-01T00:00:00Z", "--format", "jsonl"])
    assert result.exit_code == 0
    assert "3 timer(s) fired" in result.stderr and "warning" in result.stderr
    assert "broken-follow-up" in result.stderr
    assert {t["key"]: t["status"] for t in timers()} == {
        "good1": "fired", "bad": "fired", "good2": "fired"
    }  # fmt: skip
    ended = log("trial.ended")
    assert sorted(e["data"]["accountId"] for e in ended) == ["bad", "good1", "good2"]
    [bad] = [e for e in ended if e["data"]["accountId"] == "bad"]
    shown = json.loads(run_cli(["show", str(bad["seq"]), "--format", "json"]).stdout)
    assert [e["rule"] for e in shown["rule_errors"]] == ["broken-follow-up"]


def test_the_worker_fires_due_timers(project: Path) -> None:
    write_rules(project, TRIAL)
    lines = created_lines([datetime(2016, 1, 1, tzinfo=UTC)], prefix="w")
    ok(["import", "-", "--no-dispatch"], stdin=lines)
    proc = run_process(["run", "--once"], project)
    assert proc.returncode == 0, proc.stderr
    [ended] = log("trial.ended")
    assert ended["time"] == "2016-01-15T00:00:00.000000Z"


def test_a_timed_run_action_becomes_a_delivery_at_its_due_time(project: Path) -> None:
    write_rules(
        project,
        """
rules:
  - name: nudge
    on: account.created
    then:
      - run: [/bin/sh, -c, 'printf "%s\\n" "$EVFLOW_DELIVERY_ID" >> nudged.txt']
        after: 2h
""",
    )
    created = emit("account.created", {"accountId": "r1"}, T0)
    assert ok(["deliveries", "--format", "json"]) == []  # not owed yet
    [timer] = timers()
    assert timer["kind"] == "run" and timer["due"] == "2026-01-01T12:00:00.000000Z"
    tick("2026-01-01T11:59:00Z")
    assert not (project / "nudged.txt").exists()
    tick("2026-01-01T12:00:00Z")  # fired: a delivery, run by the tick
    [delivery] = ok(["deliveries", "--format", "json"])
    assert delivery["rule"] == "nudge" and delivery["status"] == "done"
    assert (project / "nudged.txt").read_text() == f"{created['id']}:nudge:0\n"
    [timer] = timers()
    assert timer["status"] == "fired" and timer["delivery_id"] == delivery["id"]


def test_redeliver_leaves_timed_actions_to_their_timers(project: Path) -> None:
    write_rules(
        project,
        """
rules:
  - name: nudge
    on: account.created
    then:
      - run: [/bin/true]
        after: 2h
""",
    )
    emit("account.created", {"accountId": "r1"}, T0)
    result = run_cli(["redeliver", "--rule", "nudge"])
    assert result.exit_code == 2 and "timed actions" in result.stderr
    assert ok(["deliveries", "--format", "json"]) == []


# -- listing, cancelling by hand, counting -------------------------------------------------------


@pytest.fixture
def three_timers(project: Path, each_backend: str) -> None:
    """Three trial timers, one of each status: ``p`` pending, ``c`` cancelled, ``f`` fired (in
    the log of the test's backend: after each_backend has chosen it)."""
    write_rules(project, TRIAL)
    emit("account.created", {"accountId": "p"}, "2026-01-03T00:00:00Z")  # pending
    emit("account.created", {"accountId": "c"}, "2026-01-02T00:00:00Z")  # cancelled
    emit("account.created", {"accountId": "f"}, "2025-12-01T00:00:00Z")  # fired
    emit("subscription.paid", {"accountId": "c"}, "2026-01-05T00:00:00Z")
    tick("2025-12-20T00:00:00Z")


@pytest.mark.usefixtures("three_timers")
def test_timers_lists_and_filters() -> None:
    rows = timers()
    assert [t["key"] for t in rows] == ["p", "c", "f"]  # in id order
    assert all(set(t) == TIMER_KEYS for t in rows)
    assert {t["key"]: t["status"] for t in rows} == {"p": "pending", "c": "cancelled", "f": "fired"}
    assert [t["key"] for t in timers("--status", "pending")] == ["p"]
    assert [t["key"] for t in timers("--status", "fired")] == ["f"]
    assert [t["key"] for t in timers("--key", "c")] == ["c"]
    assert len(timers("--rule", "trial-ends")) == 3
    assert timers("--rule", "nope") == []
    assert len(timers("--limit", "2")) == 2
    lines = ok(["timers", "--format", "jsonl"])
    assert isinstance(lines, str) and len(lines.splitlines()) == 3
    table = run_cli(["timers", "--format", "table"]).stdout
    header = table.splitlines()[0].split()
    assert {"id", "rule", "status", "due", "key"} <= set(header), header
    bad = run_cli(["timers", "--status", "sleeping"])
    assert bad.exit_code == 2 and "--status" in bad.stderr


@pytest.mark.usefixtures("three_timers")
def test_timers_cancel_by_hand() -> None:
    by_key = {t["key"]: t["id"] for t in timers()}
    result = run_cli(["timers", "cancel", str(by_key["p"])])
    assert result.exit_code == 0, result.stderr
    [timer] = timers("--key", "p")
    assert timer["status"] == "cancelled" and timer["cancelled_by"] is None
    assert tick("2026-06-01T00:00:00Z")[0] == []
    # a fired timer and an unknown id cannot be cancelled: said, exit 1
    result = run_cli(["timers", "cancel", str(by_key["f"]), "999"])
    assert result.exit_code == 1
    assert "fired" in result.stderr and "999" in result.stderr
    assert [t["status"] for t in timers("--key", "f")] == ["fired"]
    assert run_cli(["timers", "cancel"]).exit_code == 2


@pytest.mark.usefixtures("three_timers")
def test_stats_counts_timers() -> None:
    stats = ok(["stats", "--format", "json"])
    assert stats["timers"] == {"pending": 1, "fired": 1, "cancelled": 1}


# -- rule authors' tools ---------------------------------------------------------------------------

TRIAL_TESTS = """
tests:
  - name: pending after signup
    given:
      - type: account.created
        time: 2026-01-01T10:00:00Z
        data: {accountId: a1}
    expect:
      events: []
      timers:
        - {rule: trial-ends, status: pending, key: a1, due: 2026-01-15T10:00:00Z}
  - name: fired at its due time
    given:
      - type: account.created
        time: 2026-01-01T10:00:00Z
        data: {accountId: a1}
      - tick: 2026-01-15T10:00:00Z
    expect:
      events:
        - {type: trial.ended, rule: trial-ends, data: {accountId: a1}, time: 2026-01-15T10:00:00Z}
      timers:
        - {rule: trial-ends, status: fired}
  - name: not yet due at the tick
    given:
      - type: account.created
        time: 2026-01-01T10:00:00Z
        data: {accountId: a1}
      - tick: 2026-01-15T09:59:59Z
    expect:
      events: []
      timers: [{status: pending}]
  - name: cancelled by a payment
    given:
      - type: account.created
        time: 2026-01-01T10:00:00Z
        data: {accountId: a1}
      - type: subscription.paid
        time: 2026-01-03T00:00:00Z
        data: {accountId: a1}
      - tick: 2026-02-01T00:00:00Z
    expect:
      events: []
      timers: [{rule: trial-ends, status: cancelled, key: a1}]
  - name: a wrong expectation fails
    given:
      - type: account.created
        time: 2026-01-01T10:00:00Z
        data: {accountId: a1}
    expect:
      timers: [{status: fired}]
"""


def test_rule_tests_assert_timers_with_time_travel(project: Path) -> None:
    write_rules(project, TRIAL)
    (project / "rules" / "tests").mkdir()
    (project / "rules" / "tests" / "trial_test.yaml").write_text(TRIAL_TESTS)
    result = run_cli(["rules", "test", "--format", "json"])
    assert result.exit_code == 3, result.stdout + result.stderr
    cases = {c["case"]: c for c in json.loads(result.stdout)}
    failing = {name for name, c in cases.items() if not c["passed"]}
    assert failing == {"a wrong expectation fails"}, cases
    assert any("timers" in f for f in cases["a wrong expectation fails"]["failures"])
    schema = ok(["rules", "schema", "--tests"])
    assert "timers" in json.dumps(schema) and "tick" in json.dumps(schema)


def test_rules_explain_shows_what_a_timer_would_do(project: Path) -> None:
    write_rules(project, TRIAL)
    args = ["rules", "explain", "account.created", "-f", "accountId=a1", "--time", T0]
    explained = ok([*args, "--format", "json"])
    [rule] = explained["rules"]
    assert rule["matched"]
    assert rule["timers"] == [
        {
            "action": 0,
            "kind": "emit",
            "due": DUE,
            "key": "a1",
            "cancel_on": ["subscription.paid", "account.deleted"],
        }
    ]
    table = run_cli([*args, "--format", "table"]).stdout
    assert "after 14d" in table and DUE in table and "a1" in table
    cancel = ["rules", "explain", "subscription.paid", "-f", "accountId=a1", "--format", "json"]
    assert ok(cancel)["cancels"] == [{"rule": "trial-ends", "action": 0, "key": "a1"}]
    table = run_cli([*cancel[:-2], "--format", "table"]).stdout
    assert "trial-ends" in table and "cancel" in table


def test_the_graph_shows_when_a_timer_fires_and_what_cancels_it(project: Path) -> None:
    write_rules(project, TRIAL)
    graph = ok(["rules", "graph"])
    assert "-->|emit after 14d|" in graph
    assert graph.count("-. cancels .->") == 2


def test_a_dry_run_records_no_timer(project: Path) -> None:
    write_rules(project, TRIAL)
    out = ok(["emit", "account.created", "-f", "accountId=a1", "--time", T0, "--dry-run"])
    assert "timer" in out and DUE in out
    assert timers() == []


# -- crashes and scale ---------------------------------------------------------------------------


def fired_count() -> int:
    stats = ok(["stats", "--format", "json"])
    return int(stats["timers"]["fired"])


def test_sigkill_during_a_tick_then_restart_fires_each_exactly_once(project: Path) -> None:
    write_rules(project, TRIAL)
    n = 12_000  # six batches were once all fired before the first stats poll returned
    start = datetime(2016, 1, 1, tzinfo=UTC)
    (project / "in.jsonl").write_text(
        created_lines([start + timedelta(minutes=i) for i in range(n)])
    )
    assert run_process(["import", "in.jsonl", "--no-dispatch"], project).returncode == 0
    proc = subprocess.Popen(
        [evflow_exe(), "tick", "--now", "2017-01-01T00:00:00Z", "--format", "jsonl"],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while fired_count() == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    at_kill = fired_count()
    if at_kill >= n:
        pytest.fail("the tick finished before it could be killed")
    assert at_kill > 0
    tick("2017-01-01T00:00:00Z")
    ended = log("trial.ended")
    assert len(ended) == n and len({e["id"] for e in ended}) == n
    rows = timers()
    assert Counter(t["status"] for t in rows) == {"fired": n}
    seq_of = {e["seq"]: e for e in ended}
    assert all(seq_of[t["event_seq"]]["causationid"] == t["cause_id"] for t in rows)


def tick_peak_rss_kb(folder: Path, n: int, seed: int) -> int:
    """Fill a log in ``folder`` with ``n`` pending timers due in an order unlike the log's, tick
    them all in a child process, and return that process's peak RSS (kB)."""
    folder.mkdir()
    (folder / "rules").mkdir()
    (folder / "rules" / "x.yaml").write_text(TRIAL)
    offsets = list(range(n))
    random.Random(seed).shuffle(offsets)
    start = datetime(2016, 1, 1, tzinfo=UTC)
    (folder / "in.jsonl").write_text(
        created_lines([start + timedelta(seconds=o) for o in offsets], prefix=f"m{n}")
    )
    env = {**os.environ, "EVFLOW_DB": str(folder / "log.db")}
    imported = subprocess.run(
        [evflow_exe(), "import", "in.jsonl", "--no-dispatch"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    with open(folder / "tick.jsonl", "w") as sink:
        ticked = run_measured(
            ["tick", "--now", "2017-01-01T00:00:00Z", "--format", "jsonl"],
            folder, env, stdout=sink, timeout=900,
        )  # fmt: skip
    assert ticked.returncode == 0, ticked.stderr
    return ticked.peak_rss_kb


@pytest.mark.slow
def test_a_hundred_thousand_timers_fire_in_due_order_in_bounded_memory(
    project: Path, each_backend: str
) -> None:
    if each_backend != "sqlite":
        pytest.skip("a memory check: one backend is enough (the contract suite covers batching)")
    small = tick_peak_rss_kb(project / "small", 1_000, seed=1)
    big = tick_peak_rss_kb(project / "big", 100_000, seed=2)
    # every timer's row, rendered event and outcome held at once would take far more than this
    # (measured: 1 to 2 MB more for 100,000 timers than for 1,000)
    assert big - small < 16_000, f"peak RSS {small} kB for 1,000 timers, {big} kB for 100,000"
    fired = 0
    previous = ""
    with open(project / "big" / "tick.jsonl") as fh:
        for line in fh:
            event = json.loads(line)
            assert event["type"] == "trial.ended"
            assert event["time"] >= previous, "fired out of due order"
            previous = event["time"]
            fired += 1
    assert fired == 100_000
    env = {**os.environ, "EVFLOW_DB": str(project / "big" / "log.db")}
    stats = subprocess.run(
        [evflow_exe(), "stats", "--format", "json"],
        cwd=project / "big", env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert json.loads(stats.stdout)["timers"] == {"pending": 0, "fired": 100_000, "cancelled": 0}
