"""Schedules: occurrences in a zone (DST included), windows, catch-up, and ticking once each."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evflow.app import Evflow
from evflow.core.cron import (
    DST_REPEAT,
    DST_SHIFT,
    OUTSIDE_WINDOW,
    ScheduleFailed,
    due,
    is_fixed_time,
    next_occurrence,
    preview,
)
from evflow.core.events import Event
from evflow.core.rules import Schedule
from evflow.core.windows import make_window
from evflow.services import ticking


def tick(flow: Evflow, now: datetime) -> list[Event]:
    return ticking.tick(flow.store, flow.ruleset, now)


_TICKERS: dict[int, ticking.Ticker] = {}


def tick_once(flow: Evflow, now: datetime, warn: Any = None) -> list[Event]:
    """A worker's tick (one Ticker per Evflow object, as ``evflow run`` keeps it)."""
    ticker = _TICKERS.setdefault(id(flow), ticking.Ticker())
    return ticker.tick(flow.store, flow.ruleset, now, warn=warn)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sched(
    cron: str, tz: str = "UTC", *, catchup: str = "latest", most: int = 100, **window: str
) -> Schedule:
    win = make_window(window.get("from_"), window.get("until"), tz, None) if window else None
    return Schedule("s", cron, tz, "x.happened", window=win, catchup=catchup, max_catchup=most)


# -- DST: a 02:30 daily schedule in Europe/Berlin ---------------------------------------------


def test_spring_forward_nonexistent_time_runs_at_the_first_instant_after_the_gap() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 never shows on a Berlin clock; Vixie cron
    # (and cronsim, tests/conformance/test_cron.py) run it at 03:00 CEST
    got = preview(sched("30 2 * * *", "Europe/Berlin"), utc("2026-03-28T12:00:00"), 2)
    assert [(o.local.isoformat(), o.utc, o.flags) for o in got] == [
        ("2026-03-29T03:00:00+02:00", utc("2026-03-29T01:00:00"), (DST_SHIFT,)),
        ("2026-03-30T02:30:00+02:00", utc("2026-03-30T00:30:00"), ()),
    ]


def test_fall_back_repeated_time_runs_once_at_its_first_occurrence() -> None:
    # 2026-10-25 03:00 CEST goes back to 02:00 CET: 02:30 happens at 00:30 and at 01:30 UTC
    got = preview(sched("30 2 * * *", "Europe/Berlin"), utc("2026-10-24T12:00:00"), 2)
    assert [(o.local.isoformat(), o.utc, o.flags) for o in got] == [
        ("2026-10-25T02:30:00+02:00", utc("2026-10-25T00:30:00"), (DST_REPEAT,)),
        ("2026-10-26T02:30:00+01:00", utc("2026-10-26T01:30:00"), ()),
    ]


def test_dst_ticks_emit_once_on_both_days(db_url: str, project: Path) -> None:
    flow = flow_with(
        project, db_url, SCHEDULE.format(cron="30 2 * * *", tz="Europe/Berlin", extra="")
    )
    assert tick(flow, utc("2026-03-28T12:00:00")) == []
    spring = tick(flow, utc("2026-03-29T01:30:00"))
    assert [e["time"] for e in spring] == ["2026-03-29T01:00:00.000000Z"]
    assert tick(flow, utc("2026-10-24T12:00:00")) != []  # latest: the one missed in between
    assert [e["time"] for e in tick(flow, utc("2026-10-25T00:30:30"))] == [
        "2026-10-25T00:30:00.000000Z"
    ]
    assert tick(flow, utc("2026-10-25T01:31:00")) == []  # 02:30 CET: the repeat does not run


def test_wildcard_hours_follow_elapsed_time_across_dst() -> None:
    hourly = sched("30 * * * *", "Europe/Berlin")
    assert not is_fixed_time("30 * * * *") and is_fixed_time("30 2 * * *")
    assert is_fixed_time("@daily") and not is_fixed_time("@hourly")
    spring = [o.utc for o in preview(hourly, utc("2026-03-28T23:00:00"), 3)]
    # 00:30 CET, 01:30 CET, (02:30 does not exist), 03:30 CEST
    assert spring == [
        utc("2026-03-28T23:30:00"),
        utc("2026-03-29T00:30:00"),
        utc("2026-03-29T01:30:00"),
    ]
    fall = preview(hourly, utc("2026-10-24T23:00:00"), 4)
    assert [o.local.isoformat() for o in fall] == [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]
    assert [o.flags for o in fall] == [(), (DST_REPEAT,), (DST_REPEAT,), ()]
    day = [o for o in preview(hourly, utc("2026-10-24T22:00:00"), 30) if o.local.day == 25]
    assert len(day) == 25


def test_shifted_occurrences_run_once_and_in_order_with_the_real_ones() -> None:
    got = preview(sched("30 2,3 * * *", "Europe/Berlin"), utc("2026-03-28T23:00:00"), 3)
    assert [o.local.isoformat() for o in got] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    mixed = [
        o.utc
        for o in preview(sched("15,45 2,3 * * *", "Europe/Berlin"), utc("2026-03-28T23:00:00"), 4)
    ]
    assert mixed == sorted(mixed) and len(set(mixed)) == 4


# -- windows and catch-up ---------------------------------------------------------------------


def test_occurrences_respect_the_window_bounds() -> None:
    s = sched("0 * * * *", from_="2026-01-01T10:00:00", until="2026-01-01T13:00:00")
    every = Schedule("s", s.cron, s.timezone, s.emit, window=s.window, catchup="all")
    got = due(every, utc("2026-01-01T08:00:00"), utc("2026-01-01T16:00:00"))
    assert got == [
        utc("2026-01-01T10:00:00"),
        utc("2026-01-01T11:00:00"),
        utc("2026-01-01T12:00:00"),
    ]
    flags = [o.flags for o in preview(s, utc("2026-01-01T08:30:00"), 6)]
    assert flags == [(OUTSIDE_WINDOW,), (), (), (), (OUTSIDE_WINDOW,), (OUTSIDE_WINDOW,)]
    assert next_occurrence(s, utc("2026-01-01T00:00:00")).utc == utc("2026-01-01T10:00:00")  # type: ignore[union-attr]
    assert next_occurrence(s, utc("2026-01-01T12:00:00")) is None


@pytest.mark.parametrize(
    ("policy", "most", "expected"),
    [
        ("all", 100, [f"2026-01-0{d}T02:00:00" for d in range(2, 8)]),
        ("all", 3, [f"2026-01-0{d}T02:00:00" for d in range(5, 8)]),
        ("latest", 100, ["2026-01-07T02:00:00"]),
        ("none", 100, []),
    ],
)
def test_catchup_after_a_long_gap(policy: str, most: int, expected: list[str]) -> None:
    s = sched("0 2 * * *", catchup=policy, most=most)
    assert due(s, utc("2026-01-01T12:00:00"), utc("2026-01-07T12:00:00")) == [
        utc(t) for t in expected
    ]


@pytest.mark.parametrize("policy", ["all", "latest", "none"])
def test_on_time_occurrences_always_run(policy: str) -> None:
    s = sched("0 2 * * *", catchup=policy)
    # a tick 20 s after 02:00 is on time, whatever the policy; the missed 02:00 before it is not
    got = due(s, utc("2026-01-05T12:00:00"), utc("2026-01-07T02:00:20"))
    assert got[-1] == utc("2026-01-07T02:00:00")
    assert len(got) == (2 if policy == "all" else 1)


def test_catchup_of_a_year_of_minutes_is_bounded() -> None:
    s = sched("* * * * *", catchup="all", most=5)
    got = due(s, utc("2025-01-01T00:00:00"), utc("2026-01-01T00:00:00"))
    assert got == [utc("2026-01-01T00:00:00") - timedelta(minutes=m) for m in range(4, -1, -1)]


# -- ticking ----------------------------------------------------------------------------------

SCHEDULE = """
schedules:
  - name: report
    cron: "{cron}"
    timezone: {tz}
    emit: report.requested
    data: {{period: daily, at: "${{{{ schedule.time }}}}", who: "${{{{ schedule.name }}}}"}}
{extra}
"""

DERIVED_RULE = """
rules:
  - name: build-report
    on: report.requested
    then:
      - emit: report.built
        data: {for: "${{ data.at }}"}
"""


def flow_with(project: Path, db_url: str, text: str) -> Evflow:
    rules = project / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "x.yaml").write_text(text)
    return Evflow(db=db_url, rules=rules)


def test_new_schedule_starts_from_now_then_ticks_once_each(db_url: str, project: Path) -> None:
    flow = flow_with(
        project, db_url, SCHEDULE.format(cron="0 2 * * *", tz="UTC", extra="    catchup: all")
    )
    assert tick(flow, utc("2026-01-05T12:00:00")) == []  # no back-fill of its past
    got = tick(flow, utc("2026-01-07T12:00:00"))
    assert [(e["id"], e["time"], e["source"]) for e in got] == [
        (
            "schedule:report:2026-01-06T02:00:00Z",
            "2026-01-06T02:00:00.000000Z",
            "evflow:schedule/report",
        ),
        (
            "schedule:report:2026-01-07T02:00:00Z",
            "2026-01-07T02:00:00.000000Z",
            "evflow:schedule/report",
        ),
    ]
    assert got[0]["data"] == {
        "period": "daily",
        "at": "2026-01-06T02:00:00.000000Z",
        "who": "report",
    }
    assert tick(flow, utc("2026-01-07T12:00:00")) == []
    assert tick(flow, utc("2026-01-06T12:00:00")) == []  # an earlier --now never re-emits
    assert tick(flow, utc("2026-01-07T13:00:00")) == []
    assert flow.stats().events == 2


def test_scheduled_event_is_routed_through_rules(db_url: str, project: Path) -> None:
    text = SCHEDULE.format(cron="0 2 * * *", tz="Asia/Seoul", extra="") + DERIVED_RULE
    flow = flow_with(project, db_url, text)
    tick(flow, utc("2026-01-01T00:00:00"))
    [event] = tick(flow, utc("2026-01-01T17:00:05"))
    assert event["time"] == "2026-01-01T17:00:00.000000Z"  # 02:00 in Seoul
    [derived] = [e for e in flow.events() if e["type"] == "report.built"]
    assert derived["causationid"] == event["id"]
    assert derived["data"] == {"for": "2026-01-01T17:00:00.000000Z"}


def test_a_failing_template_rolls_back_its_schedule_only(db_url: str, project: Path) -> None:
    text = (
        SCHEDULE.format(cron="0 * * * *", tz="UTC", extra="")
        + """
  - name: broken
    cron: "0 * * * *"
    emit: broken.happened
    data: {x: "${{ schedule.nope.deeper }}"}
"""
    )
    flow = flow_with(project, db_url, text)
    tick(flow, utc("2026-01-01T00:30:00"))
    with pytest.raises(ScheduleFailed, match="schedule broken"):
        tick(flow, utc("2026-01-01T01:00:10"))
    assert [e["type"] for e in flow.events()] == ["report.requested"]
    warnings: list[str] = []
    assert tick_once(flow, utc("2026-01-01T01:00:20"), warn=warnings.append) == []
    assert warnings and "broken" in warnings[0]


def test_tick_once_skips_the_database_until_something_is_due(db_url: str, project: Path) -> None:
    flow = flow_with(project, db_url, SCHEDULE.format(cron="0 * * * *", tz="UTC", extra=""))
    assert tick_once(flow, utc("2026-01-01T00:30:00")) == []
    with flow.store.write() as tx:  # were the table read, the schedule would start over
        tx.execute("DELETE FROM schedule_ticks")
    assert tick_once(flow, utc("2026-01-01T00:59:59")) == []
    assert flow.store.execute("SELECT COUNT(*) FROM schedule_ticks").fetchone()[0] == 0
    flow.store.end_read()


def _tick_in_process(args: tuple[str, str, str, str]) -> list[str]:
    db, rules, now, _ = args
    flow = Evflow(db=db, rules=rules)
    try:
        return [e["id"] for e in tick(flow, datetime.fromisoformat(now))]
    finally:
        flow.close()


def test_concurrent_ticks_in_separate_processes_record_each_occurrence_once(
    db_url: str, project: Path
) -> None:
    flow = flow_with(
        project, db_url, SCHEDULE.format(cron="*/10 * * * *", tz="UTC", extra="    catchup: all")
    )
    tick(flow, utc("2026-01-01T00:00:00"))
    flow.close()
    now = "2026-01-01T03:00:00+00:00"
    jobs = [(db_url, str(project / "rules"), now, str(i)) for i in range(3)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_tick_in_process, jobs)
    emitted = [i for r in results for i in r]
    assert len(emitted) == 18 and len(set(emitted)) == 18
    flow = Evflow(db=db_url, rules=project / "rules")
    assert flow.stats().events == 18


def test_a_failing_rule_on_a_scheduled_event_does_not_stop_other_schedules(project: Path) -> None:
    from evflow import Evflow

    (project / "rules").mkdir(exist_ok=True)
    (project / "rules" / "r.yaml").write_text(
        "version: 1\n"
        "schedules:\n"
        "  - {name: a-sched, cron: '* * * * *', emit: report.requested}\n"
        "  - {name: b-sched, cron: '* * * * *', emit: other.tick}\n"
        "rules:\n"
        "  - name: on-report\n"
        "    on: report.requested\n"
        "    then: [{emit: report.made, data: {x: '${{ data.missing }}'}}]\n"
    )
    flow = Evflow(db=str(project / "s.db"), rules=project / "rules")
    flow.tick_report(datetime(2020, 1, 1, 0, 0, tzinfo=UTC))
    report = flow.tick_report(datetime(2020, 1, 1, 0, 5, tzinfo=UTC))
    # the rule's failure is recorded with the occurrence (issue 13): both schedules tick
    assert report.errors == []
    assert report.warnings and report.warnings[0].startswith(
        "schedule a-sched: rule on-report: emit report.made"
    )
    assert "no such key: missing" in report.warnings[0]
    assert {e["type"] for e in report.events} == {"report.requested", "other.tick"}
    warnings: list[str] = []
    tick_once(flow, datetime(2020, 1, 1, 0, 7, tzinfo=UTC), warn=warnings.append)
    assert warnings and "a-sched" in warnings[0]
