"""Issue 13 §4: bad input is one clear line naming the field, exit 2, and nothing recorded.

Through every channel a producer uses: argv (``--data``, ``--time``), ``--data @file``,
``--data -`` (stdin), and import lines (``FILE:LINE:``; ``--skip-invalid`` skips them). And what
is accepted can always be read back: ``log`` and ``show`` never break on a recorded event.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.conftest import HUGE_NUMBER
from tests.hostile.helpers import (
    as_json,
    assert_one_line_error,
    cli,
    events,
    ok,
    run_bytes,
    write_rules,
)

pytestmark = pytest.mark.usefixtures("each_backend")

PROJECTION = "projections:\n  - name: p\n    key: data.k\n    on:\n      a: upsert\n"


@pytest.fixture(autouse=True)
def rules(project: Path) -> None:
    write_rules(
        project,
        PROJECTION
        + "rules:\n  - name: r\n    on: a\n    then:\n      - run: [/bin/true]\n"
        + "schedules:\n  - name: n\n    cron: '0 2 * * *'\n    emit: tick.tock\n",
    )


def nothing_recorded() -> None:
    assert events() == []


def test_bad_data_in_argv(project: Path, bad_data: tuple[str, str]) -> None:
    _, text = bad_data
    assert_one_line_error(cli("emit", "a", "--data", text), 2, "data")
    nothing_recorded()


def test_bad_data_in_a_file(project: Path, bad_data: tuple[str, str]) -> None:
    _, text = bad_data
    (project / "d.json").write_text(text)
    assert_one_line_error(cli("emit", "a", "--data", "@d.json"), 2, "data")
    nothing_recorded()


def test_bad_data_on_stdin(project: Path, bad_data: tuple[str, str]) -> None:
    _, text = bad_data
    assert_one_line_error(cli("emit", "a", "--data", "-", stdin=text), 2, "data")
    nothing_recorded()


def test_bad_data_in_an_import_line(project: Path, bad_data: tuple[str, str]) -> None:
    _, text = bad_data
    good = json.dumps({"type": "a", "source": "s", "id": "g1", "data": {"k": "x"}})
    line = '{"type": "a", "source": "s", "id": "b1", "data": ' + text + "}"
    (project / "in.jsonl").write_text(f"{good}\n{line}\n")
    assert_one_line_error(cli("import", "in.jsonl"), 2, "in.jsonl:2:")
    nothing_recorded()
    skipped = cli("import", "in.jsonl", "--skip-invalid")
    assert skipped.exit_code == 0 and "in.jsonl:2:" in skipped.stderr
    assert "Traceback" not in skipped.stderr and "--traceback" not in skipped.stderr
    assert [e["id"] for e in events()] == ["g1"]


def test_invalid_utf8_in_argv_file_stdin_and_import(project: Path) -> None:
    bad = b'{"s": "\xff\xfe"}'
    for args, stdin in (
        ([b"emit", b"a", b"--data", bad], None),
        ([b"emit", b"a", b"--subject", b"\xff"], None),
        ([b"emit", b"a", b"--data", b"-"], bad),
        ([b"emit", b"\xffa"], None),
    ):
        result = run_bytes(args, project, stdin)
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2, (args, stderr)
        assert len(stderr.strip().splitlines()) <= 2 and "Traceback" not in stderr, stderr
    (project / "d.json").write_bytes(bad)
    result = run_bytes([b"emit", b"a", b"--data", b"@d.json"], project)
    assert result.returncode == 2, result.stderr
    (project / "in.jsonl").write_bytes(b'{"type": "a", "data": {"s": "\xff"}}\n')
    result = run_bytes([b"import", b"in.jsonl"], project)
    assert result.returncode == 2 and b"in.jsonl:1:" in result.stderr, result.stderr
    nothing_recorded()


def test_lone_surrogates_in_argv(project: Path) -> None:
    """An argument that is not UTF-8 reaches Python as a lone surrogate (surrogateescape)."""
    for args in (
        ["emit", "a", "-f", "s=\udcff"],
        ["emit", "a", "--subject", "x\udcff"],
        ["emit", "a", "--id", "\udcff"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and "--traceback" not in result.stderr
    nothing_recorded()


def test_times_out_of_range_or_invalid(project: Path, bad_time: str) -> None:
    assert_one_line_error(cli("emit", "a", "--time", bad_time), 2, "time")
    line = json.dumps({"type": "a", "source": "s", "id": "t", "time": bad_time})
    assert_one_line_error(cli("import", "-", stdin=line), 2, "<stdin>:1:", "time")
    nothing_recorded()


@pytest.mark.parametrize(
    "args",
    [
        ["query", "p", "--as-of", HUGE_NUMBER],
        ["retry", HUGE_NUMBER],
        ["redeliver", "--rule", "r", "--since", HUGE_NUMBER],
        ["redeliver", "--rule", "r", "--until", HUGE_NUMBER],
        ["log", "--since", HUGE_NUMBER],
        ["log", "--until", HUGE_NUMBER],
        ["query", "p", "--as-of", "0001-01-01T00:00:00+01:00"],
        ["tick", "--now", "9999-12-31T23:59:59-01:00"],
    ],
    ids=lambda a: "-".join(a[:3]),
)
def test_positions_and_ids_out_of_range(project: Path, args: list[str]) -> None:
    ok("emit", "a", "--data", '{"k": "x"}', "--no-dispatch")
    assert_one_line_error(cli(*args), 2)


def test_show_a_20_digit_reference_is_not_found(project: Path) -> None:
    ok("emit", "a", "--data", '{"k": "x"}', "--no-dispatch")
    result = cli("show", HUGE_NUMBER)
    assert result.exit_code in (1, 2) and "Traceback" not in result.stderr
    assert "--traceback" not in result.stderr and HUGE_NUMBER in result.stderr
    # an id made of 20 digits is still found
    ok("emit", "a", "--id", HUGE_NUMBER, "--source", "s", "--data", '{"k": "y"}', "--no-dispatch")
    assert as_json("show", HUGE_NUMBER)["event"]["id"] == HUGE_NUMBER


@pytest.mark.parametrize("depth", [10, 100, 400, 800, 900, 950, 990, 1000, 1100, 2000])
def test_what_is_accepted_reads_back(project: Path, depth: int) -> None:
    """One depth limit for accepting and for reading back: never a log that cannot be read."""
    data = '{"a": ' + "[" * depth + "]" * depth + "}"
    result = cli("emit", "a", "--data", data, "--no-dispatch")
    if result.exit_code == 2:
        assert_one_line_error(result, 2, "data")
        nothing_recorded()
        return
    assert result.exit_code == 0, result.stderr
    assert len(events()) == 1
    assert as_json("show", "1")["event"]["data"]["a"] is not None
    assert ok("log", "--format", "table").stdout
    assert ok("query", "p", "--format", "json").stdout
    assert ok("stats").stdout
    # and an export of it imports again
    export = ok("log", "--format", "jsonl").stdout
    assert ok("--db", str(project / "copy.db"), "import", "-", stdin=export).stdout


def test_depth_limit_is_the_same_for_import(project: Path) -> None:
    for depth in (50, 500, 1000, 3000):
        line = json.dumps({"type": "a", "source": "s", "id": f"d{depth}"})[:-1]
        line += ', "data": {"a": ' + "[" * depth + "]" * depth + "}}"
        result = cli("import", "-", stdin=line)
        assert result.exit_code in (0, 2), result.stderr
        assert "Traceback" not in result.stderr and "--traceback" not in result.stderr
        emitted = cli("emit", "a", "--source", "s2", "--id", f"d{depth}", "--no-dispatch",
                      "--data", '{"a": ' + "[" * depth + "]" * depth + "}")  # fmt: skip
        assert emitted.exit_code == result.exit_code  # one limit for both
    ok("log")


@pytest.mark.parametrize("year", ["0999", "0100", "0001"])
def test_years_before_1000_are_zero_padded_or_refused(project: Path, year: str) -> None:
    result = cli("emit", "a", "--time", f"{year}-06-01T00:00:00Z", "--no-dispatch")
    if result.exit_code == 0:
        [event] = events()
        assert event["time"].startswith(f"{year}-06-01T00:00:00")
        assert ok("log", "--since", f"{year}-01-01T00:00:00Z", "--format", "jsonl").stdout
    else:
        assert_one_line_error(result, 2, "time")
    ticked = cli("tick", "--now", f"{year}-01-01T00:00:00Z")
    if ticked.exit_code != 0:
        assert_one_line_error(ticked, 2, "now")
    # whatever happened, ticking and listing schedules still work afterwards
    ok("tick", "--now", "2024-01-01T00:00:00Z")
    ok("schedules", "list")
    ok("tick")
