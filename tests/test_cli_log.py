"""The log commands as a user runs them: emit, import, log, show, stats, init; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, run_process

# the CLI must behave the same on every backend (SQLite; PostgreSQL with EVFLOW_TEST_PG)
pytestmark = pytest.mark.usefixtures("each_backend")


def test_emit_prints_seq_and_id_and_records(project: Path) -> None:
    r = run_cli(["emit", "order.placed", "--data", '{"orderId": "o1"}', "--subject", "u1"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("recorded order.placed seq 1 id ")
    r = run_cli(["log", "--format", "jsonl"])
    (event,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert event["data"] == {"orderId": "o1"} and event["subject"] == "u1" and event["seq"] == 1


def test_emit_data_sources(project: Path) -> None:
    (project / "d.json").write_text('{"a": 1}')
    assert run_cli(["emit", "t", "--data", "@d.json"]).exit_code == 0
    assert run_cli(["emit", "t", "--data", "-"], stdin='{"b": 2}').exit_code == 0
    assert (
        run_cli(
            ["emit", "t", "-f", "n=3", "-f", "s=text", "-f", 'o={"x":1}', "-f", "t=true"]
        ).exit_code
        == 0
    )
    data = [
        json.loads(x)["data"] for x in run_cli(["log", "--format", "jsonl"]).stdout.splitlines()
    ]
    assert data == [{"a": 1}, {"b": 2}, {"n": 3, "s": "text", "o": {"x": 1}, "t": True}]


def test_emit_json_prints_the_whole_event(project: Path) -> None:
    r = run_cli(
        [
            "emit",
            "a.b",
            "--id",
            "e1",
            "--source",
            "ci/job",
            "--time",
            "2020-01-01T09:00:00+09:00",
            "--format",
            "json",
        ]
    )
    event = json.loads(r.stdout)
    assert event["id"] == "e1" and event["source"] == "ci/job" and event["seq"] == 1
    assert event["time"] == "2020-01-01T00:00:00.000000Z" and event["triggered"] == []


def test_reemitting_an_id_records_nothing_and_reports_the_seq(project: Path) -> None:
    run_cli(["emit", "a", "--id", "same"])
    run_cli(["emit", "b"])
    r = run_cli(["emit", "a", "--id", "same", "--format", "json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["seq"] == 1 and json.loads(r.stdout)["duplicate"] is True
    assert run_cli(["emit", "a", "--id", "same"]).stdout.startswith("already recorded a seq 1")
    assert len(run_cli(["log", "--format", "jsonl"]).stdout.splitlines()) == 2


def test_bad_input_is_one_line_and_records_nothing(project: Path) -> None:
    cases = [
        (["emit", "t", "--data", "{bad"], 2, "--data: malformed JSON"),
        (["emit", "t", "--data", "[1, 2]"], 2, "--data: must be a JSON object, got an array"),
        (["emit", "t", "--data", "5"], 2, "got a number"),
        (["emit", "t", "--time", "tomorrow"], 2, "time: not an RFC 3339 time"),
        (["emit", "tab\there"], 2, "type: must not contain control characters"),
        (["emit", "t", "--data", "@missing.json"], 2, "cannot read missing.json"),
        (["emit", "t", "-f", "novalue"], 2, "expected key=value"),
    ]
    for args, code, message in cases:
        r = run_cli(args)
        assert r.exit_code == code, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    assert run_cli(["log", "--format", "jsonl"]).stdout == ""


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_import_is_atomic_and_names_the_bad_line(project: Path) -> None:
    f = write_jsonl(
        project / "ev.jsonl", [{"type": "a"}, {"type": "b", "time": "2016-10-02"}, {"type": "c"}]
    )
    r = run_cli(["import", str(f)])
    assert r.exit_code == 2  # bad input (issue 13)
    assert f"{f}:2: time: not an RFC 3339 time" in r.stderr
    assert run_cli(["log", "--format", "jsonl"]).stdout == ""


def test_import_skip_invalid_reports_every_bad_line(project: Path) -> None:
    f = write_jsonl(project / "ev.jsonl", [{"type": "a"}, "{nope", {"type": "b"}, {"data": {}}])
    r = run_cli(["import", str(f), "--skip-invalid", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["recorded"] == 2 and json.loads(r.stdout)["invalid"] == 2
    assert f"{f}:2: line: malformed JSON" in r.stderr and f"{f}:4: type: missing" in r.stderr


def test_reimport_skips_known_ids(project: Path) -> None:
    f = write_jsonl(project / "ev.jsonl", [{"type": "a", "id": "1"}, {"type": "a", "id": "2"}])
    run_cli(["import", str(f)])
    r = run_cli(["import", str(f), "--format", "json"])
    assert json.loads(r.stdout)["duplicates"] == 2 and json.loads(r.stdout)["recorded"] == 0


def test_import_from_stdin(project: Path) -> None:
    r = run_cli(["import", "-"], stdin='{"type": "a"}\n\n{"type": "b"}\n')
    assert r.exit_code == 0 and "recorded 2 event(s)" in r.stdout


def test_log_jsonl_round_trips_through_import(project: Path) -> None:
    run_cli(["import", str(REPO / "sample_events.jsonl")])
    exported = run_cli(["log", "--format", "jsonl"]).stdout
    r = run_cli(["--db", "other.db", "import", "-"], stdin=exported)
    assert r.exit_code == 0, r.stderr
    again = run_cli(["--db", "other.db", "log", "--format", "jsonl"]).stdout
    strip = lambda text: [  # noqa: E731
        {k: v for k, v in json.loads(x).items() if k != "recordedtime"} for x in text.splitlines()
    ]
    assert strip(again) == strip(exported)


def test_log_filters_and_formats(project: Path) -> None:
    run_cli(["import", str(REPO / "sample_events.jsonl")])

    def seqs(*args: str) -> list[int]:
        r = run_cli(["log", "--format", "jsonl", *args])
        assert r.exit_code == 0, r.stderr
        return [json.loads(x)["seq"] for x in r.stdout.splitlines()]

    members = seqs("--type", "member.*")
    assert members and all(isinstance(s, int) for s in members)
    typed = [
        json.loads(x)["type"]
        for x in run_cli(["log", "--format", "jsonl", "--type", "member.*"]).stdout.splitlines()
    ]
    assert all(t.startswith("member.") for t in typed)
    assert seqs("--since", "2", "--until", "4") == [3, 4]
    assert seqs("--limit", "2") == [1, 2]
    assert seqs("--subject", "u3")
    assert seqs("--since", "2016-10-05T00:00:00Z") == [
        s for s in seqs() if s >= seqs("--since", "2016-10-05T00:00:00Z")[0]
    ]
    as_json = json.loads(run_cli(["log", "--format", "json", "--limit", "1"]).stdout)
    assert isinstance(as_json, list) and as_json[0]["seq"] == 1
    table = run_cli(["log", "--format", "table"]).stdout
    assert "member.created" in table and "seq" in table
    bad = run_cli(["log", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "--since" in bad.stderr
    assert run_cli(["log", "--format", "xml"]).exit_code == 2


def test_show_by_seq_and_id(project: Path) -> None:
    run_cli(["emit", "a", "--id", "evt-1"])
    by_id = json.loads(run_cli(["show", "evt-1", "--format", "json"]).stdout)
    by_seq = json.loads(run_cli(["show", "1", "--format", "json"]).stdout)
    assert by_id == by_seq and by_id["event"]["id"] == "evt-1"
    missing = run_cli(["show", "nope"])
    assert missing.exit_code == 1 and "no event with id or seq 'nope'" in missing.stderr


def test_stats(project: Path) -> None:
    run_cli(["import", str(REPO / "sample_events.jsonl")])
    s = json.loads(run_cli(["stats", "--format", "json"]).stdout)
    assert s["by_type"]["member.created"] == 3
    assert s["first_time"] == "2016-09-20T00:00:00.000000Z"
    assert s["events"] == s["last_seq"] >= 10
    assert "member.created" in run_cli(["stats", "--format", "table"]).stdout


def test_init_is_safe_to_run_twice(project: Path, each_backend: str) -> None:
    assert run_cli(["init"]).exit_code == 0
    assert (project / "rules").is_dir()
    if each_backend == "sqlite":
        assert (project / ".evflow" / "evflow.db").exists()
    assert json.loads(run_cli(["stats", "--format", "json"]).stdout)["events"] == 0
    before = {p.name: p.read_text() for p in (project / "rules").glob("*.yaml")}
    assert run_cli(["init"]).exit_code == 0
    assert {p.name: p.read_text() for p in (project / "rules").glob("*.yaml")} == before


def test_env_db_and_unsupported_scheme(project: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EVFLOW_DB", str(project / "env.db"))
    run_cli(["emit", "a"])
    assert (project / "env.db").exists()
    r = run_cli(["--db", "mysql://u:secret@h/db", "log"])
    assert r.exit_code == 2 and "secret" not in r.stderr and "***" in r.stderr


def test_traceback_flag_shows_a_traceback(project: Path) -> None:
    r = run_process(["--traceback", "emit", "t", "--data", "[1]"], cwd=project)
    assert r.returncode != 0 and "Traceback" in r.stderr
    r = run_process(["emit", "t", "--data", "[1]"], cwd=project)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_python_dash_m_and_help(project: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "evflow", "--help"], capture_output=True, text=True, cwd=project
    )
    assert r.returncode == 0 and "emit" in r.stdout and "Exit status" in r.stdout
    r = run_process(["emit", "--help"], cwd=project)
    assert r.returncode == 0 and "--data" in r.stdout


def test_storage_unavailable_exit_code(project: Path) -> None:
    (project / "blocker").write_text("a file where a folder should be")
    r = run_cli(["--db", str(project / "blocker" / "x.db"), "log"])
    assert r.exit_code == 4, r.stderr


def test_stats_show_projection_lag(project: Path) -> None:
    import shutil

    shutil.copytree(REPO / "rules", project / "rules")
    run_cli(["import", str(REPO / "sample_events.jsonl"), "--no-dispatch"])
    assert run_cli(["replay"]).exit_code == 0
    run_cli(["emit", "member.created", "-f", "userid=u9"])
    s = json.loads(run_cli(["stats", "--format", "json"]).stdout)
    assert s["projections"]["members"] == {"position": s["last_seq"] - 1, "lag": 1}
    assert s["deliveries"]["pending"] >= 1
    assert "lag" in run_cli(["stats", "--format", "table"]).stdout


def test_emit_fast_path_imports_no_heavy_library(project: Path) -> None:
    """Scripts pay for emit per event: typer, rich, yaml, sqlalchemy, croniter stay unloaded."""
    import subprocess
    import sys

    code = (
        "import sys; from evflow.cli.emit import fast_main\n"
        "code = fast_main(['emit', 'order.placed', '-f', 'n=1'])\n"
        "heavy = [m for m in ('typer', 'rich', 'yaml', 'sqlalchemy', 'croniter', 'httpx')"
        " if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 []"


def test_a_duplicate_emit_reports_the_recorded_event_not_the_one_sent(project: Path) -> None:
    run_cli(["emit", "a.b", "--id", "k1"])
    r = run_cli(
        ["emit", "other.type", "--id", "k1", "--data", '{"different": 1}', "--format", "json"]
    )
    event = json.loads(r.stdout)
    assert (event["type"], event["data"], event["duplicate"]) == ("a.b", {}, True)
    assert run_cli(["emit", "other.type", "--id", "k1"]).stdout.startswith(
        "already recorded a.b seq 1"
    )


def test_a_rules_folder_named_on_purpose_must_exist(project: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    r = run_cli(["--rules", "nope", "emit", "a.b"])
    assert r.exit_code == 2 and "--rules: no such folder nope" in r.stderr
    monkeypatch.setenv("EVFLOW_RULES", "missing")
    assert run_cli(["emit", "a.b"]).exit_code == 2
    monkeypatch.delenv("EVFLOW_RULES")
    assert run_cli(["emit", "a.b"]).exit_code == 0  # no ./rules: a log without rules is fine
    assert run_cli(["log", "--format", "jsonl"]).stdout.count("\n") == 1


def test_import_reports_a_line_that_is_not_utf8_or_holds_nan(project: Path) -> None:
    f = project / "bad.jsonl"
    f.write_bytes(b'{"type":"a.b"}\n\xff\xfe{"type":"a.b"}\n{"type":"c","data":{"x":NaN}}\n')
    r = run_cli(["import", str(f), "--skip-invalid"])
    assert r.exit_code == 0, r.stderr
    assert f"{f}:2: line: not UTF-8 text (byte 1)" in r.stderr
    assert f"{f}:3: line: malformed JSON: NaN is not JSON" in r.stderr
    assert run_cli(["log", "--format", "jsonl"]).stdout.count("\n") == 1
    r = run_cli(["emit", "t.y", "--data", '{"x": NaN}'])
    assert r.exit_code == 2 and "NaN is not JSON" in r.stderr


def test_show_an_id_made_of_digits_and_log_limit_zero(project: Path) -> None:
    run_cli(["emit", "a.b"])
    run_cli(["emit", "a.b", "--id", "777"])
    assert json.loads(run_cli(["show", "777", "--format", "json"]).stdout)["event"]["seq"] == 2
    assert json.loads(run_cli(["show", "1", "--format", "json"]).stdout)["event"]["seq"] == 1
    assert run_cli(["log", "--limit", "-1"]).exit_code == 2
    assert run_cli(["log", "--limit", "0", "--format", "jsonl"]).stdout == ""


def test_init_writes_a_working_example(project: Path) -> None:
    assert run_cli(["init"]).exit_code == 0
    for name in ("rules/shop.yaml", "rules/tests/shop_test.yaml", "scripts/send_mail.sh"):
        assert (project / name).read_text() == (REPO / name).read_text(), name
    r = run_cli(
        [
            "emit",
            "order.placed",
            "--time",
            "2016-10-02T00:00:00Z",
            "--data",
            '{"orderId": "1", "orderAmt": 5, "productId": "p", "userid": "u1"}',
        ]
    )
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    assert "to=u1" in (project / ".evflow" / "mail.log").read_text()
    assert run_cli(["rules", "test"]).exit_code == 0


def test_skip_invalid_skips_lines_the_database_could_not_store(project: Path) -> None:
    f = write_jsonl(
        project / "ev.jsonl",
        [
            {"type": "q", "id": "n1"},
            {"type": "q", "id": "n2", "subject": "a\u0000b"},
            {"type": "q", "id": "n3", "causationid": {"a": 1}},
            {"type": "q", "id": "n4"},
        ],
    )
    r = run_cli(["import", str(f), "--skip-invalid", "--format", "json"])
    assert r.exit_code == 0, r.stderr
    assert (json.loads(r.stdout)["recorded"], json.loads(r.stdout)["invalid"]) == (2, 2)
    assert f"{f}:2: subject: must not contain control characters" in r.stderr
