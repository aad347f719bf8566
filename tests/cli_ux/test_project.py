"""The right project, never a silent new log: discovery from a subfolder, read-only commands
that never create a database, --version, ``evflow config``, global options anywhere, init."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_ux.conftest import clean_env, copy_shop, evflow, ok, write_rules

RULE = """\
version: 1
rules:
  - name: echo
    on: ping
    then:
      - emit: pong
"""


def test_a_subfolder_uses_the_project_above(home: Path) -> None:
    write_rules(home, RULE)
    ok(["init"], home)
    sub = home / "scripts" / "deep"
    sub.mkdir(parents=True)
    out = ok(["emit", "ping"], sub)
    assert "pong" in out  # the project's rules ran
    assert not (sub / ".evflow").exists() and not (home / "scripts" / ".evflow").exists()
    assert [e["type"] for e in map(json.loads, ok(["log"], home).splitlines())] == ["ping", "pong"]
    # and the read commands see the same log from there
    assert len(ok(["log"], sub).splitlines()) == 2


def test_a_folder_with_only_rules_or_only_evflow_is_a_project(home: Path) -> None:
    write_rules(home, RULE)  # rules/ but no database yet
    sub = home / "a"
    sub.mkdir()
    ok(["emit", "ping"], sub)
    assert (home / ".evflow").is_dir() and not (sub / ".evflow").exists()

    other = home.parent / "other"
    (other / ".evflow").mkdir(parents=True)  # .evflow/ but no rules
    (other / "x").mkdir()
    ok(["emit", "solo"], other / "x")
    assert (other / ".evflow" / "evflow.db").exists() and not (other / "x" / ".evflow").exists()


def test_discovery_stops_at_the_repository_root(home: Path) -> None:
    write_rules(home, RULE)  # a project above the repository: not this repository's
    ok(["init"], home)
    repo = home / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    proc = evflow(["log"], repo / "src")
    assert proc.returncode == 4, proc.stderr  # no database found for this repository
    config = ok(["config"], repo / "src")
    assert str(home / "rules") not in config.replace(str(repo), "")


def test_explicit_settings_win_over_discovery(home: Path) -> None:
    write_rules(home, RULE)
    sub = home / "sub"
    sub.mkdir()
    ok(["--db", "own.db", "emit", "x"], sub)
    assert (sub / "own.db").exists() and not (home / ".evflow" / "evflow.db").exists()
    env = clean_env(EVFLOW_DB=str(home / "env.db"))
    ok(["emit", "x"], sub, env=env)
    assert (home / "env.db").exists()


READ_ONLY = [
    ["log"],
    ["show", "1"],
    ["query", "members"],
    ["stats"],
    ["deliveries"],
    ["timers"],
]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a))
def test_read_only_commands_never_create_a_database(home: Path, args: list[str]) -> None:
    copy_shop(home)
    proc = evflow(args, home)
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.search(r"no evflow database at .*evflow\.db", lines[0]), lines[0]
    assert "evflow init" in lines[0] and "--db" in lines[0]
    assert not (home / ".evflow" / "evflow.db").exists()


@pytest.mark.parametrize("args", [["rules", "list"], ["schedules", "list"]], ids=" ".join)
def test_definition_listings_need_no_database_and_create_none(home: Path, args: list[str]) -> None:
    """They list what the rule files define (a schedule's last tick is then "never")."""
    copy_shop(home)
    proc = evflow(args, home)
    assert proc.returncode == 0, proc.stderr
    assert not (home / ".evflow" / "evflow.db").exists()


def test_a_named_database_in_a_missing_folder_is_not_created(home: Path) -> None:
    proc = evflow(["--db", "/nonexistent/dir/x.db", "stats"], home)
    assert proc.returncode == 4
    assert "no evflow database at /nonexistent/dir/x.db" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not Path("/nonexistent").exists()


def test_version(home: Path) -> None:
    from importlib.metadata import version

    out = ok(["--version"], home)
    assert out.strip() == f"evflow {version('evflow')}"


def test_config_says_where_everything_comes_from(home: Path) -> None:
    copy_shop(home)
    ok(["init"], home)
    sub = home / "scripts"
    out = ok(["config"], sub)
    from importlib.metadata import version

    assert version("evflow") in out
    assert str(home / ".evflow" / "evflow.db") in out
    assert re.search(r"reachable.*yes", out, re.I), out
    assert str(home / "rules") in out and "discover" in out.lower()
    assert re.search(r"\b3 rules?\b", out) and re.search(r"\b1 schedules?\b", out), out
    assert re.search(r"\b2 projections?\b", out), out
    assert "cache" in out.lower() and "postgres" in out and "nats" in out

    out = ok(["--rules", str(home / "rules"), "config"], home)
    assert "--rules" in out
    out = ok(["config"], home, env=clean_env(EVFLOW_RULES=str(home / "rules")))
    assert "EVFLOW_RULES" in out

    data = json.loads(ok(["config", "--format", "json"], sub))
    assert data["version"] == version("evflow")
    assert data["database"]["reachable"] is True
    assert data["rules"]["path"] == str(home / "rules")
    assert data["rules"]["source"] == "discovery"
    assert (data["rules"]["rules"], data["rules"]["schedules"], data["rules"]["projections"]) == (
        3, 1, 2
    )  # fmt: skip
    assert set(data["extras"]) == {"postgres", "nats", "serve", "mysql"}


def test_config_masks_passwords_and_says_unreachable(home: Path) -> None:
    url = "postgresql://user:s3cret@127.0.0.1:1/nothing"
    proc = evflow(["--db", url, "config"], home)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    assert "postgresql://user:***@127.0.0.1:1/nothing" in proc.stdout
    assert re.search(r"reachable.*no", proc.stdout, re.I), proc.stdout


def test_config_in_an_empty_folder_creates_nothing(home: Path) -> None:
    out = ok(["config"], home)
    assert "default" in out.lower()
    assert not (home / ".evflow").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["log", "--db", "x.db", "--format", "jsonl"],
        ["log", "--format", "jsonl", "--rules", "rules", "--db", "x.db"],
        ["--db", "x.db", "log", "--format", "jsonl"],
        ["--format", "jsonl", "--db", "x.db", "log"],
        ["stats", "--db", "x.db", "--format", "json"],
    ],
    ids=str,
)
def test_global_options_before_or_after_the_command(home: Path, args: list[str]) -> None:
    write_rules(home, RULE)
    ok(["emit", "ping", "--db", "x.db"], home)  # emit's fast path takes them after, too
    ok(["emit", "--db=x.db", "ping"], home)
    assert not (home / ".evflow" / "evflow.db").exists()
    proc = evflow(args, home)
    assert proc.returncode == 0, proc.stderr
    assert "pong" in proc.stdout or '"events": 4' in proc.stdout


def test_traceback_after_the_command(home: Path) -> None:
    ok(["init"], home)
    proc = evflow(["show", "999", "--traceback"], home)
    assert proc.returncode != 0 and "Traceback (most recent call last)" in proc.stderr
    proc = evflow(["show", "999"], home)
    assert "Traceback" not in proc.stderr and "--traceback" not in proc.stderr


def test_init_leaves_existing_rule_files_alone(home: Path) -> None:
    write_rules(home, RULE, name="mine.yaml")
    proc = evflow(["init"], home)
    assert proc.returncode == 0
    assert sorted(p.name for p in (home / "rules").glob("*.yaml")) == ["mine.yaml"]
    assert "--example" in proc.stdout + proc.stderr  # it says why, and how to get them
    assert (home / ".evflow" / "evflow.db").exists()
    ok(["init", "--example"], home)
    assert len(list((home / "rules").glob("*.yaml"))) > 1


def test_init_in_an_empty_folder_writes_the_example(home: Path) -> None:
    out = ok(["init"], home)
    assert list((home / "rules").glob("*.yaml")) and "wrote" in out
