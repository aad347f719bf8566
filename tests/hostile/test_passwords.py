"""Issue 13 §4/§5: a password in a database URL is never printed, whatever characters it holds.

Asserted on what the commands print (stdout and stderr, table and JSON): ``stats``, ``config``,
errors of every kind, driver errors, ``--help``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import run_cli
from tests.hostile.helpers import run_bytes

# distinctive halves, so that a leak of either half is seen, around the awkward character
PASSWORDS = ["Zq9#Xw7", "Zq9/Xw7", "Zq9@Xw7", "Zq9%Xw7", "Zq9:Xw7", "Zq9?Xw7", "Zq9 Xw7"]
FRAGMENTS = ("Zq9", "Xw7")

COMMANDS = [
    ["stats"],
    ["stats", "--format", "json"],
    ["config"],
    ["config", "--format", "json"],
    ["log"],
    ["emit", "x.y"],
    ["deliveries", "--format", "json"],
    ["query", "p"],
    ["replay"],
    ["run", "--once"],
    ["tick"],
    ["init"],
]


def assert_no_password(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, text


@pytest.fixture(params=PASSWORDS)
def password(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("encoded", [False, True], ids=["raw", "percent-encoded"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_unreachable_database_errors_hide_the_password(
    project: Path, password: str, encoded: bool, command: list[str]
) -> None:
    secret = quote(password, safe="") if encoded else password
    url = f"postgresql://evflow:{secret}@127.0.0.1:1/db"
    (project / "rules").mkdir()
    result = run_cli(["--db", url, *command])
    assert_no_password(result.stdout + result.stderr)
    assert "Traceback" not in result.stderr


def test_the_environment_variable_is_not_shown_by_help(project: Path, password: str) -> None:
    url = f"postgresql://evflow:{password}@127.0.0.1:1/db"
    result = run_bytes(["--help"], project, env={"EVFLOW_DB": url})
    assert_no_password(result.stdout.decode() + result.stderr.decode())
    result = run_bytes(["emit", "--help"], project, env={"EVFLOW_DB": url})
    assert_no_password(result.stdout.decode() + result.stderr.decode())


@pytest.mark.postgres
@pytest.mark.parametrize(
    "command",
    [c for c in COMMANDS if c[0] != "init"]
    + [["init"], ["show", "1"], ["log", "--format", "json"]],
    ids=lambda c: "-".join(c),
)
def test_a_working_database_url_is_masked_in_every_output(
    project: Path, password: str, command: list[str]
) -> None:
    base = os.environ.get("EVFLOW_TEST_PG")
    if not base:
        pytest.skip("EVFLOW_TEST_PG is not set")
    from tests.pg import fresh_schema_url

    # the test server trusts local connections: any password is accepted, and must be hidden
    scheme, rest = base.split("://", 1)
    user, _, host = rest.rpartition("@")
    with fresh_schema_url() as url:
        query = url.split("?", 1)[1]
        secret_url = f"{scheme}://{user or 'postgres'}:{quote(password, safe='')}@{host}?{query}"
        (project / "rules").mkdir()
        (project / "rules" / "x.yaml").write_text(
            "version: 1\nprojections:\n  - name: p\n    key: data.k\n    on:\n      x.y: upsert\n"
        )
        run_cli(["--db", secret_url, "emit", "x.y", "--data", '{"k": 1}'])
        result = run_cli(["--db", secret_url, *command])
        assert_no_password(result.stdout + result.stderr)
        assert result.exit_code == 0, result.stderr
        if command[0] in ("stats", "config"):
            assert "***" in result.stdout  # the database is named, its password masked


@pytest.mark.postgres
def test_driver_errors_hide_the_password(project: Path, password: str) -> None:
    base = os.environ.get("EVFLOW_TEST_PG")
    if not base:
        pytest.skip("EVFLOW_TEST_PG is not set")
    scheme, rest = base.split("://", 1)
    user, _, hostpath = rest.rpartition("@")
    host = hostpath.split("/", 1)[0]
    url = f"{scheme}://{user or 'postgres'}:{quote(password, safe='')}@{host}/no_such_db_zq9"
    for command in (["stats"], ["emit", "x.y"], ["config"], ["config", "--format", "json"]):
        result = run_cli(["--db", url, *command])
        assert_no_password(result.stdout + result.stderr)
        if command[0] == "config":  # reports the database as unreachable, and why
            assert result.exit_code == 0, result.stderr
            assert "***" in result.stdout and "no_such_db_zq9" in result.stdout, result.stdout
        else:
            assert result.exit_code == 4, result.stderr
            assert "***" in result.stderr, result.stderr


@pytest.mark.parametrize("encoded", [False, True], ids=["raw", "percent-encoded"])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_config_masks_a_password_from_the_environment(
    project: Path, password: str, encoded: bool, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``evflow config`` names the database it would use and where that came from (EVFLOW_DB
    here), and why it cannot reach it: the URL is shown with its password masked, whatever
    characters the password holds."""
    secret = quote(password, safe="") if encoded else password
    monkeypatch.setenv("EVFLOW_DB", f"postgresql://evflow:{secret}@127.0.0.1:1/db")
    (project / "rules").mkdir()
    result = run_cli(["config", "--format", fmt])
    assert result.exit_code == 0, result.stderr
    assert_no_password(result.stdout + result.stderr)
    if fmt == "json":
        database = json.loads(result.stdout)["database"]
        assert database["source"] == "environment" and database["reachable"] is False
        assert database["url"].startswith("postgresql://evflow:***@127.0.0.1:1/db"), database
    else:
        assert "postgresql://evflow:***@127.0.0.1:1/db (from EVFLOW_DB)" in result.stdout
