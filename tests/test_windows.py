"""Date and cron windows (SPEC §3 "Windows"), judged against event times."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from evflow.core.windows import (
    Window,
    check_cron,
    load_timezone,
    make_window,
    parse_bound,
    parse_duration,
)

SEOUL = ZoneInfo("Asia/Seoul")
ROOT = Path(__file__).resolve().parent.parent


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_load_timezone() -> None:
    assert load_timezone("Asia/Seoul") == SEOUL
    for bad in ["Mars/Base", "", "../etc", "America"]:
        with pytest.raises(ValueError, match="unknown timezone"):
            load_timezone(bad)
    with pytest.raises(ValueError, match=r"^unknown timezone 'Mars/Base'$"):
        load_timezone("Mars/Base")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2016, 10, 1), "2016-09-30T15:00:00+00:00"),
        ("2016-10-01", "2016-09-30T15:00:00+00:00"),
        (datetime(2016, 10, 1, 9, 30), "2016-10-01T00:30:00+00:00"),
        ("2016-10-01T09:30:00", "2016-10-01T00:30:00+00:00"),
        ("2016-10-01 09:30", "2016-10-01T00:30:00+00:00"),
        ("2016-10-01T09:30:00Z", "2016-10-01T09:30:00+00:00"),
        ("2016-10-01T09:30:00-05:00", "2016-10-01T14:30:00+00:00"),
        (datetime(2016, 10, 1, tzinfo=timezone(timedelta(hours=1))), "2016-09-30T23:00:00+00:00"),
    ],
)
def test_parse_bound(value: str | date | datetime, expected: str) -> None:
    bound = parse_bound(value, SEOUL)
    assert bound.isoformat() == expected and bound.tzinfo is UTC


@pytest.mark.parametrize("value", ["2016-13-01", "yesterday", "", 20161001])
def test_parse_bound_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_bound(value, SEOUL)


def test_bounds_are_half_open() -> None:
    window = make_window("2016-10-01T00:00:00Z", "2016-10-02T00:00:00Z", "UTC", None)
    assert window.check(utc("2016-10-01T00:00:00")).ok  # exactly from: inside
    assert not window.check(utc("2016-10-02T00:00:00")).ok  # exactly until: outside
    assert window.check(utc("2016-10-01T23:59:59.999999")).ok
    assert not window.check(utc("2016-09-30T23:59:59.999999")).ok


def test_date_window_in_seoul_judged_on_utc_event() -> None:
    window = make_window(date(2016, 10, 1), "2030-01-01", "Asia/Seoul", None)
    inside = window.check(utc("2016-09-30T15:00:00"))
    assert inside.ok and inside.reason == "inside window"
    outside = window.check(utc("2016-09-30T14:59:59"))
    assert not outside.ok
    assert outside.reason == "before from 2016-10-01T00:00:00+09:00"
    late = window.check(utc("2029-12-31T15:00:00"))
    assert late.reason == "at or after until 2030-01-01T00:00:00+09:00"


def test_naive_event_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Window(None, None, "UTC").check(datetime(2020, 1, 1))


def test_state_at() -> None:
    window = make_window("2016-10-01", "2017-01-01", "Asia/Seoul", "* 9-17 * * MON-FRI")
    assert window.state_at(utc("2016-09-30T14:59:59")) == "pending"
    assert window.state_at(utc("2016-09-30T15:00:00")) == "active"
    assert window.state_at(utc("2016-12-31T15:00:00")) == "expired"
    assert Window(None, None, "UTC").state_at(utc("1970-01-01T00:00:00")) == "active"


def test_describe() -> None:
    window = make_window("2016-10-01", "2030-01-01", "Asia/Seoul", "* 9-17 * * MON-FRI")
    assert window.describe() == (
        "from 2016-10-01 00:00 Asia/Seoul until 2030-01-01 00:00 Asia/Seoul, "
        "cron '* 9-17 * * MON-FRI'"
    )
    assert Window(None, None, "UTC").describe() == "always"
    assert make_window(None, None, "Asia/Seoul", "0 2 * * *").describe() == (
        "cron '0 2 * * *' (Asia/Seoul)"
    )


BUSINESS = "* 9-17 * * MON-FRI"


@pytest.mark.parametrize(
    ("tz", "event", "ok"),
    [
        # 2024-01-08 is a Monday.
        ("Asia/Seoul", "2024-01-08T00:00:00", True),  # 09:00 Monday in Seoul
        ("Asia/Seoul", "2024-01-07T23:59:59", False),  # 08:59 Monday in Seoul
        ("Asia/Seoul", "2024-01-08T08:59:59", True),  # 17:59 Monday in Seoul
        ("Asia/Seoul", "2024-01-08T09:00:00", False),  # 18:00 Monday in Seoul
        ("Asia/Seoul", "2024-01-12T23:00:00", False),  # 08:00 Saturday in Seoul, Friday in UTC
        ("UTC", "2024-01-12T17:30:00", True),  # Friday afternoon
        ("UTC", "2024-01-13T10:00:00", False),  # Saturday
        ("America/New_York", "2024-01-08T14:00:00", True),  # 09:00 EST
        ("America/New_York", "2024-01-08T13:59:00", False),  # 08:59 EST
        ("America/New_York", "2024-07-08T13:00:00", True),  # 09:00 EDT: offsets follow DST
    ],
)
def test_cron_business_hours_across_timezones(tz: str, event: str, ok: bool) -> None:
    check = make_window(None, None, tz, BUSINESS).check(utc(event))
    assert check.ok is ok
    if not ok:
        assert check.reason == f"outside cron '{BUSINESS}' ({tz})"


def test_cron_agrees_with_croniter_match() -> None:
    from croniter import croniter

    from evflow.core.windows import _matcher

    expressions = [
        BUSINESS,
        "*/15 * * * *",
        "0 2 * * *",
        "30 9 1,15 * MON",  # both day fields restricted: either matches
        "*/2 * 1 * 7",
        "0 0 L * *",  # falls back to croniter
        "* * * * 1#2",
        "@hourly",
        "* * * * * 15",  # sixth field: seconds
        "0-10 8-9 * JAN,JUL SUN",
    ]
    start = datetime(2024, 1, 1)
    # Steps of 1 day 5 h 7 min 11 s sweep hours, minutes and weekdays; the next occurrences and
    # their neighbours make sure sparse expressions are tested on matching times too.
    sampled = [start + timedelta(seconds=s) for s in range(0, 400 * 86400, 104_831)]
    for expression in expressions:
        runs = croniter(expression, start)
        hits = [runs.get_next(datetime) for _ in range(20)]
        near = [h + timedelta(seconds=d) for h in hits for d in (-60, -1, 0, 1, 59, 60)]
        assert any(croniter.match(expression, m) for m in near)
        for moment in sampled + near:
            expected = croniter.match(expression, moment)
            assert _matcher(expression)(moment) == expected, (expression, moment)


def test_check_cron() -> None:
    assert check_cron(BUSINESS) is None
    assert check_cron("* 9-17 * * mon-fri") is None
    assert check_cron("0 2 * * *") is None
    # a 6th field (seconds) is refused: the docs say 5 fields (issue 13)
    assert check_cron("* * * * * 15") == (
        "expected 5 fields (minute hour day-of-month month day-of-week), got 6"
    )
    assert check_cron("@daily") is None
    assert check_cron("* * *") == (
        "expected 5 fields (minute hour day-of-month month day-of-week), got 3"
    )
    assert "expected 5 fields" in (check_cron("* * * * * * 2024") or "")
    assert "out of range" in (check_cron("61 * * * *") or "")
    assert check_cron("* 9-17 * * MUN") is not None
    assert check_cron("") == "empty cron expression"


@pytest.mark.parametrize(
    ("from_", "until", "tz", "cron", "message"),
    [
        ("2016-10-01", "2016-10-01", "UTC", None, "must be after"),
        ("2016-10-02", "2016-10-01", "UTC", None, "must be after"),
        (None, None, "Mars/Base", None, "unknown timezone 'Mars/Base'"),
        (None, None, "UTC", "61 * * * *", "out of range"),
        ("soon", None, "UTC", None, "invalid date"),
    ],
)
def test_make_window_rejects(
    from_: str | None, until: str | None, tz: str, cron: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_window(from_, until, tz, cron)


def test_unbounded_window_is_always_inside() -> None:
    window = make_window(None, None, "UTC", None)
    assert window == Window(None, None, "UTC")
    assert window.check(utc("1999-01-01T00:00:00")).ok


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (" 45 ", 45.0),
        (10, 10.0),
        (2.5, 2.5),
        ("0", 0.0),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "s", "-5s", "-1", "1h-30m", "nan", True])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_window_without_cron_does_not_import_croniter() -> None:
    code = (
        "import sys\n"
        "from evflow.core.windows import make_window, parse_duration\n"
        "from datetime import datetime, UTC\n"
        "w = make_window('2016-10-01', '2030-01-01', 'Asia/Seoul', None)\n"
        "assert w.check(datetime(2020, 1, 1, tzinfo=UTC)).ok\n"
        "w.state_at(datetime(2020, 1, 1, tzinfo=UTC)); w.describe(); parse_duration('1m')\n"
        "print('croniter' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
