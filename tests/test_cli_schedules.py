
"""``evflow tick`` and ``evflow schedules list|preview`` from the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, evflow_exe, run_cli

# the CLI must behave the same on every backend (SQLite; PostgreSQL with EVFLOW_TEST_PG)
pytestmark = pytest.mark.usefixtures("each_backend")

BERLIN = """
schedules:
  - name: berlin
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    emit: berlin.ran
  - name: later
    cron: "0 9 * * *"
    active: {from: 2030-01-01}
    emit: later.ran
  - name: over
    cron: "0 9 * * *"
    active: {from: 2020-01-01, until: 2021-01-01}
    emit: over.ran
"""


def write_rules(project: Path, text: str) -> None:
    (project / "rules").mkdir(exist_ok=True)
    (project / "rules" / "x.yaml").write_text(text)


def test_preview_marks_dst_shift_as_json_and_table(project: Path) -> None:
    write_rules(project, BERLIN)
    args = ["schedules", "preview", "berlin", "--next", "2", "--from", "2026-03-28T12:00:00Z"]
    result = run_cli([*args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "local": "2026-03-29T03:00:00+02:00",
            "utc": "2026-03-29T01:00:00.000000Z",
            "flags": ["dst-shift"],
        },
        {"local": "2026-03-30T02:30:00+02:00", "utc": "2026-03-30T00:30:00.000000Z", "flags": []},
    ]
    table = run_cli([*args, "--format", "table"])
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["local", "(Europe/Berlin)", "utc", "flags"]
    assert lines[1].split() == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T01:00:00.000000Z",
        "dst-shift",
    ]
    assert lines[2].split() == ["2026-03-30T02:30:00+02:00", "2026-03-30T00:30:00.000000Z"]


def test_preview_of_the_fall_back_day_and_the_window(project: Path) -> None:
    write_rules(project, BERLIN)
    fall = run_cli(["schedules", "preview", "berlin", "-n", "1", "--from", "2026-10-24T12:00:00Z"])
    assert json.loads(fall.stdout)[0]["flags"] == ["dst-repeat"]  # piped: json by default
    later = run_cli(["schedules", "preview", "later", "-n", "1", "--from", "2029-12-31T00:00:00Z"])
    assert json.loads(later.stdout)[0]["flags"] == ["outside-window"]


def test_preview_of_an_unknown_schedule_names_the_known_ones(project: Path) -> None:
    write_rules(project, BERLIN)
    result = run_cli(["schedules", "preview", "nope"])
    assert result.exit_code == 1
    assert "no schedule named 'nope' (known: berlin, later, over)" in result.stderr


def test_list_shows_states_and_next_occurrences(project: Path) -> None:
    write_rules(project, BERLIN)
    result = run_cli(["schedules", "list", "--at", "2026-03-28T12:00:00Z", "--format", "json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {n: r["state"] for n, r in rows.items()} == {
        "berlin": "active",
        "later": "pending",
        "over": "expired",
    }
    assert rows["berlin"]["next"] == "2026-03-29T03:00:00+02:00"
    assert rows["later"]["next_utc"] == "2030-01-01T09:00:00.000000Z"
    assert rows["over"]["next"] is None
    table = run_cli(["schedules", "list", "--at", "2026-03-28T12:00:00Z", "--format", "table"])
    assert "pending" in table.stdout and "expired" in table.stdout


def test_tick_twice_emits_once_and_reports(project: Path) -> None:
    write_rules(project, BERLIN)
    assert run_cli(["tick", "--now", "2026-03-28T12:00:00Z"]).exit_code == 0
    first = run_cli(["tick", "--now", "2026-03-29T01:00:10Z", "--format", "json"])
    assert first.exit_code == 0, first.stderr
    [event] = json.loads(first.stdout)
    assert event["id"] == "schedule:berlin:2026-03-29T01:00:00Z"
    assert event["triggered"] == []
    assert "1 occurrence(s) emitted" in first.stderr
    again = run_cli(["tick", "--now", "2026-03-29T01:00:10Z"])
    assert again.stdout == "" and "0 occurrence(s)" in again.stderr
    assert run_cli(["tick", "--now", "yesterday"]).exit_code == 2


def test_concurrent_tick_processes_record_each_occurrence_once(project: Path) -> None:
    write_rules(project, BERLIN.replace('"30 2 * * *"', '"*/5 * * * *"\n    catchup: all'))
    assert run_cli(["tick", "--now", "2026-01-01T00:00:00Z"]).exit_code == 0
    now = ["tick", "--now", "2026-01-01T02:00:00Z", "--format", "jsonl"]
    procs = [
        subprocess.Popen([evflow_exe(), *now], cwd=project, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    ids = [json.loads(line)["id"] for out in outputs for line in out.splitlines()]
    assert len(ids) == 24 and len(set(ids)) == 24
    log = run_cli(["log", "--format", "jsonl"])
    assert len(log.stdout.splitlines()) == 24


def test_the_shop_example_nightly_report(project: Path) -> None:
    shutil.copytree(REPO / "rules", project / "rules")
    preview = run_cli(
        [
            "schedules",
            "preview",
            "nightly-sales-report",
            "--next",
            "3",
            "--from",
            "2026-03-28T00:00:00Z",
        ]
    )
    assert [r["local"] for r in json.loads(preview.stdout)] == [
        "2026-03-29T02:00:00+09:00",
        "2026-03-30T02:00:00+09:00",
        "2026-03-31T02:00:00+09:00",
    ]
    assert run_cli(["tick", "--now", "2026-03-28T00:00:00Z"]).exit_code == 0
    result = run_cli(["tick", "--now", "2026-03-30T18:00:00Z", "--format", "json"])
    [event] = json.loads(result.stdout)  # catchup latest: the most recent missed night only
    assert event["type"] == "report.requested"
    assert event["data"] == {"period": "daily", "scheduled_for": "2026-03-30T17:00:00.000000Z"}
