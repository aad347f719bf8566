"""``evflow rules schema`` and ``evflow rules validate`` agree, checked with check-jsonschema.

Every fixture under ``rulefiles/`` (and the loader's own ``tests/fixtures/loading``) gets the same
verdict from ``check-jsonschema --schemafile <(evflow rules schema)`` as from
``evflow rules validate``, except those under ``rulefiles/semantic/``: checks that JSON Schema
cannot express. Each of those names its kind on its first line, and docs/rules.md lists it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

HERE = Path(__file__).parent / "rulefiles"
VALID = sorted((HERE / "valid").glob("*.yaml")) + sorted(
    (REPO / "tests" / "fixtures" / "loading").glob("*.yaml")
)
INVALID = sorted((HERE / "invalid").glob("*.yaml"))
SEMANTIC = sorted((HERE / "semantic").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema_verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bool]:
    """File -> valid by check-jsonschema, one run over every fixture."""
    result = run_cli(["rules", "schema"])
    assert result.exit_code == 0, result.stderr
    schema = tmp_path_factory.mktemp("schema") / "rules.schema.json"
    schema.write_text(result.stdout)
    files = [str(p) for p in VALID + INVALID + SEMANTIC]
    checker = Path(sys.executable).parent / "check-jsonschema"
    proc = subprocess.run(
        [str(checker), "-o", "json", "--schemafile", str(schema), *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    bad = {e["filename"] for e in report.get("errors", []) + report.get("parse_errors", [])}
    return {f: f not in bad for f in files}


def validate(path: Path) -> tuple[bool, str]:
    result = run_cli(["rules", "validate", str(path), "--format", "json"])
    assert result.exit_code in (0, 3), (path, result.exit_code, result.stderr)
    problems = json.loads(result.stdout or "[]")
    return result.exit_code == 0, "; ".join(p["message"] for p in problems)


def test_enough_fixtures() -> None:
    assert len(VALID) + len(INVALID) + len(SEMANTIC) >= 40
    assert len(VALID) >= 10 and len(INVALID) >= 25


@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_same_verdict(path: Path, schema_verdicts: dict[str, bool], project: Path) -> None:
    expected = path.parent.name != "invalid"
    valid, problems = validate(path)
    assert valid == expected, f"rules validate: {problems or 'no problem'}"
    assert schema_verdicts[str(path)] == expected, "check-jsonschema disagrees"


@pytest.mark.parametrize("path", SEMANTIC, ids=lambda p: p.name)
def test_checks_beyond_json_schema(
    path: Path, schema_verdicts: dict[str, bool], project: Path
) -> None:
    valid, _ = validate(path)
    assert not valid, "rules validate must refuse it"
    assert schema_verdicts[str(path)], "the schema accepts it: JSON Schema cannot say this"
    kind = path.read_text().splitlines()[0].lstrip("# ").strip()
    docs = (REPO / "docs" / "rules.md").read_text()
    section = docs[docs.index("JSON Schema cannot") :]
    assert kind in section, f"docs/rules.md does not list {kind!r} among the checks beyond it"
