"""Issue 13 §4: limits that protect the process.

A rule file over the size limit is refused before it is parsed; ``max_catchup`` has an upper
bound; a 6-field cron is refused (cron is 5 fields); read-only commands work on a database in a
read-only folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import evflow_exe
from tests.hostile.helpers import cli, write_rules

RULE = "  - name: r{i}\n    on: t{i}\n    then:\n      - emit: u{i}\n"


def big_rule_file(project: Path, size: int) -> Path:
    folder = project / "rules"
    folder.mkdir(exist_ok=True)
    path = folder / "big.yaml"
    with path.open("w") as fh:
        fh.write("version: 1\nrules:\n")
        i = 0
        written = 0
        while written < size:
            chunk = "".join(RULE.format(i=i + k) for k in range(1000))
            fh.write(chunk)
            written += len(chunk)
            i += 1000
    return path


@pytest.mark.usefixtures("each_backend")
def test_a_rule_file_over_the_size_limit_is_refused_before_parsing(project: Path) -> None:
    path = big_rule_file(project, 12 * 1024 * 1024)
    for args in (["rules", "validate"], ["emit", "t1"], ["log"]):
        started = time.monotonic()
        result = cli(*args)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"{args}: {elapsed:.1f}s on a {path.stat().st_size} byte file"
        if args[0] == "log":
            continue  # a read of the log needs no rules
        assert result.exit_code == 3, result.stderr
        said = result.stdout + result.stderr
        assert "big.yaml" in said and "too large" in said
        assert "Traceback" not in result.stderr


def test_a_rule_file_under_the_limit_still_loads(project: Path) -> None:
    big_rule_file(project, 200 * 1024)
    assert cli("rules", "validate").exit_code == 0


@pytest.mark.parametrize("value", [100_000_000, 2**63])
def test_max_catchup_has_an_upper_bound(project: Path, value: int) -> None:
    write_rules(
        project,
        "schedules:\n  - name: s\n    cron: '* * * * *'\n    emit: t.t\n"
        f"    catchup: all\n    max_catchup: {value}\n",
    )
    result = cli("rules", "validate")
    assert result.exit_code == 3 and "max_catchup" in result.stderr + result.stdout


@pytest.mark.parametrize(
    "where",
    [
        "schedules:\n  - name: s\n    cron: '0 0 2 * * *'\n    emit: t.t\n",
        "schedules:\n  - name: s\n    cron: '0 2 * * * 2024'\n    emit: t.t\n",
        "rules:\n  - name: r\n    on: t\n    active: {cron: '0 * 9-17 * * MON-FRI'}\n"
        "    then:\n      - emit: u\n",
    ],
    ids=["seconds-first", "year-last", "window"],
)
def test_a_six_field_cron_is_refused(project: Path, where: str) -> None:
    write_rules(project, where)
    result = cli("rules", "validate")
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "5 fields" in result.stdout + result.stderr


# -- read-only folder ------------------------------------------------------------------------


@pytest.fixture
def readonly_project() -> Iterator[Path]:
    """A project whose folder (and database) a non-root user may read but not write."""
    folder = Path(tempfile.mkdtemp(prefix="evflow-ro-"))
    try:
        os.chmod(folder, 0o755)
        yield folder
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def as_reader(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """evflow run by a user who cannot write the folder (root ignores permissions)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVFLOW_")}
    env["HOME"] = "/nonexistent"
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv is missing")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run(
        [*prefix, evflow_exe(), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_read_only_commands_work_in_a_read_only_folder(readonly_project: Path) -> None:
    project = readonly_project
    write_rules(project, "projections:\n  - name: p\n    key: data.k\n    on:\n      a: upsert\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVFLOW_")}
    for i in range(3):
        subprocess.run([evflow_exe(), "emit", "a", "--data", json.dumps({"k": i})], cwd=project,
                       env=env, check=True, capture_output=True)  # fmt: skip
    subprocess.run([evflow_exe(), "replay"], cwd=project, env=env, check=True,
                   capture_output=True)  # fmt: skip
    # a reader may read every file, write none: folders 555, files 444
    for path in [project, *project.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    for args in (
        ["log", "--format", "jsonl"],
        ["show", "1"],
        ["stats"],
        ["query", "p", "--format", "json"],
        ["deliveries"],
        ["rules", "list"],
        ["rules", "validate"],
        ["schedules", "list"],
    ):
        result = as_reader(args, project)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    rows = json.loads(as_reader(["query", "p", "--format", "json"], project).stdout)
    assert [r["key"] for r in rows] == [0, 1, 2] or [r["key"] for r in rows] == ["0", "1", "2"]
    # a write says why it cannot, in one line
    denied = as_reader(["emit", "a"], project)
    assert denied.returncode in (1, 4) and "Traceback" not in denied.stderr
