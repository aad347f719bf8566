"""YAML as YAML defines it: merge keys (``<<``) with explicit keys winning (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli

RULES = Path(__file__).parent / "rulefiles" / "valid"


def listed(project: Path, fixture: str) -> dict[str, dict]:
    rules = project / "rules"
    rules.mkdir()
    (rules / fixture).write_text((RULES / fixture).read_text())
    result = run_cli(["rules", "validate"])
    assert result.exit_code == 0, result.stdout + result.stderr
    out = run_cli(["rules", "list", "--format", "json"])
    assert out.exit_code == 0, out.stderr
    return {r["name"]: r for r in json.loads(out.stdout)}


def test_merged_rule_takes_the_anchor_keys(project: Path) -> None:
    rules = listed(project, "merge-keys.yaml")
    assert set(rules) == {"ship-a", "ship-b"}
    assert rules["ship-a"]["on"] == rules["ship-b"]["on"]
    assert rules["ship-a"]["actions"] == rules["ship-b"]["actions"]


def test_explicit_keys_win_over_merged_ones(project: Path) -> None:
    rules = listed(project, "merge-override.yaml")
    base, over = rules["base-rule"], rules["override"]
    assert "order.placed" in json.dumps(base["on"]) and "order.confirmed" in json.dumps(over["on"])
    assert "data.amount > 100" in json.dumps(over) and "data.amount > 10" in json.dumps(base)
    assert over["actions"] == base["actions"]


def test_a_list_of_merges_takes_the_first_map_first(project: Path) -> None:
    rules = listed(project, "merge-list.yaml")
    three = rules["three"]
    assert three["description"] == "first"  # *one comes before *two in the list
    assert three["on"] == rules["one"]["on"]


def test_merged_rules_fire(project: Path) -> None:
    listed(project, "merge-keys.yaml")
    result = run_cli(["emit", "order.placed", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rules = sorted(t["rule"] for t in json.loads(result.stdout)["triggered"])
    assert rules == ["ship-a", "ship-b"]
