"""Helpers of the adversarial suite: the CLI as a user drives it, and raw SQL (fault injection).

Scripted HTTP servers and run-action programs are shared with the delivery tests:
:mod:`tests.fixtures.dispatch.helpers`.

Every test here is black-box: it drives ``evflow`` through its command line (in process with
``run_cli``, or as a real process where bytes, signals or users matter) and judges what a user
sees: exit statuses, one-line errors, the log, deliveries and what a webhook received.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Result, evflow_exe, run_cli


def cli(*args: str, stdin: str | None = None) -> Result:
    return run_cli(list(args), stdin=stdin)


def ok(*args: str, stdin: str | None = None) -> Result:
    """A command that must succeed (exit 0)."""
    result = run_cli(list(args), stdin=stdin)
    assert result.exit_code == 0, (args, result.exit_code, result.stdout[-2000:], result.stderr)
    return result


def as_json(*args: str, stdin: str | None = None) -> Any:
    """A command's ``--format json`` output, parsed (the command must succeed)."""
    return json.loads(ok(*args, "--format", "json", stdin=stdin).stdout)


def events(*global_opts: str) -> list[dict[str, Any]]:
    """Every event of the log, in seq order (``log --format jsonl``). A log that was never
    created (input refused before any database was opened) holds none: ``log`` says so, exit 4,
    and creates nothing (issue 15)."""
    result = run_cli([*global_opts, "log", "--format", "jsonl"])
    if result.exit_code == 4 and result.stderr.startswith("evflow: error: no evflow database"):
        return []
    assert result.exit_code == 0, (global_opts, result.exit_code, result.stderr)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def deliveries(*global_opts: str) -> list[dict[str, Any]]:
    return as_json(*global_opts, "deliveries")  # type: ignore[no-any-return]


def rule_errors(ref: str | int, *global_opts: str) -> list[dict[str, Any]]:
    """What ``evflow show`` records about the rules that failed on one event."""
    shown = as_json(*global_opts, "show", str(ref))
    return shown["rule_errors"]  # type: ignore[no-any-return]


def assert_one_line_error(result: Result, code: int = 2, *names: str) -> None:
    """A bad input: exit ``code``, one line on stderr naming ``names``, never a traceback hint."""
    assert result.exit_code == code, (result.exit_code, result.stdout[-500:], result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("hint:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and "--traceback" not in result.stderr, result.stderr
    for name in names:
        assert name in errors[0], (name, errors[0])


def write_rules(project: Path, text: str, name: str = "x.yaml") -> Path:
    folder = project / "rules"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("version: 1\n" + text)
    return folder


def run_bytes(
    args: list[bytes | str],
    cwd: Path,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """evflow as a process, with arguments and stdin as raw bytes (invalid UTF-8 included)."""
    return subprocess.run(
        [evflow_exe(), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


# -- raw SQL on the test's database (fault injection) ------------------------------------------


def database_url(project: Path) -> str:
    """The log the CLI uses in this test: EVFLOW_DB (PostgreSQL) or the default SQLite file."""
    return os.environ.get("EVFLOW_DB") or str(project / ".evflow" / "evflow.db")


def sql(url: str, *statements: str) -> list[list[tuple[Any, ...]]]:
    """Run statements on the log's database directly (outside evflow); rows of each. ``url``:
    the log's (a SQLite path or a PostgreSQL URL with ``?schema=``) or a MariaDB/MySQL URL."""
    out: list[list[tuple[Any, ...]]] = []
    if url.startswith("postgresql"):
        from urllib.parse import parse_qs, urlsplit, urlunsplit

        import psycopg

        parts = urlsplit(url)
        schema = parse_qs(parts.query).get("schema", ["public"])[0]
        with psycopg.connect(urlunsplit(parts._replace(query="")), autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            for statement in statements:
                cur = conn.execute(statement)
                out.append(list(cur.fetchall()) if cur.description else [])
        return out
    if url.startswith("mysql"):
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                for statement in statements:
                    result = conn.exec_driver_sql(statement)
                    out.append([tuple(r) for r in result] if result.returns_rows else [])
        finally:
            engine.dispose()
        return out
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        for statement in statements:
            out.append(list(conn.execute(statement).fetchall()))
    finally:
        conn.close()
    return out


def fail_writes(url: str, table: str, when: str = "TRUE", name: str = "hostile_fault") -> None:
    """Make every INSERT/UPDATE on ``table`` (whose new row satisfies ``when``) fail: a fault
    injected in the database itself, so evflow meets it exactly where a full disk would be.
    (On MariaDB/MySQL, quote a column named ``key`` in ``when``: ``NEW.`key```.)"""
    message = f"injected fault on {table}"
    if url.startswith("postgresql"):
        sql(
            url,
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF {when} THEN RAISE EXCEPTION '{message}'; END IF;"
            " RETURN NEW; END $$",
            f'CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON "{table}"'
            f" FOR EACH ROW EXECUTE FUNCTION {name}()",
        )
        return
    if url.startswith("mysql"):
        sql(
            url,
            *(
                f"CREATE TRIGGER {name}_{op[0].lower()} BEFORE {op} ON `{table}` FOR EACH ROW"
                f" BEGIN IF {when} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}';"
                " END IF; END"
                for op in ("INSERT", "UPDATE")
            ),
        )
        return
    when_sql = when.replace("TRUE", "1")
    sql(
        url,
        f'CREATE TRIGGER {name}_i BEFORE INSERT ON "{table}" WHEN {when_sql}'
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END",
        f'CREATE TRIGGER {name}_u BEFORE UPDATE ON "{table}" WHEN {when_sql}'
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END",
    )


def heal(url: str, table: str, name: str = "hostile_fault") -> None:
    if url.startswith("postgresql"):
        sql(
            url,
            f'DROP TRIGGER IF EXISTS {name} ON "{table}"',
            f"DROP FUNCTION IF EXISTS {name}()",
        )
        return
    sql(url, f"DROP TRIGGER IF EXISTS {name}_i", f"DROP TRIGGER IF EXISTS {name}_u")
