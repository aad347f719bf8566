"""`evflow rules schema` kept in sync with the loader and the test runner; `evflow rules graph`."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from evflow.core.graph import dot, mermaid
from evflow.rulefiles import builder as loader
from evflow.rulefiles.jsonschema import rules_schema
from evflow.rulefiles.jsonschema import tests_schema as schema_of_tests
from evflow.rulefiles.loader import load_rules, parse_text
from evflow.services import ruletest
from tests.conftest import REPO, run_cli


@pytest.fixture(autouse=True)
def wired() -> None:
    """The rules group with this module's commands (a no-op once the lead wires them in)."""
    from evflow.cli import rules_cmds, ruletools_cmds

    if "schema" not in {c.name for c in rules_cmds.rules_app.registered_commands}:
        ruletools_cmds.register(rules_cmds.rules_app)


# The schemas checked by the jsonschema library (draft 2020-12), which check-jsonschema (a dev
# dependency, the oracle of tests/conformance) brings.


def _messages(error: Any) -> list[str]:
    at = "$" + "".join(f".{p}" for p in error.absolute_path)
    out = [f"{at}: {error.message}"]
    for sub in error.context or ():
        out += _messages(sub)
    return out


def check(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> list[str]:
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.FORMAT_CHECKER
    validator = Draft202012Validator(root or schema, format_checker=checker)
    errors: list[str] = []
    for error in validator.iter_errors(value):
        errors += _messages(error)
    return errors


def as_json(value: Any) -> Any:
    """YAML as an editor's YAML 1.2 reading sees it: dates are strings."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value.isoformat() if isinstance(value, date) else value


class _Loader(yaml.SafeLoader):
    """Like the rules loader, takes `on` as the text "on" (YAML 1.1 would read it as true)."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    return as_json(yaml.load(text, Loader=_Loader))  # noqa: S506


def read_yaml(path: Path) -> Any:
    return load_yaml(path.read_text(encoding="utf-8"))


def props(schema: dict[str, Any], *path: str) -> set[str]:
    node: Any = schema
    for step in path:
        node = node["$defs"][step] if step in node.get("$defs", {}) else node["properties"][step]
    return set(node["properties"])


# -- the rules schema against the loader --------------------------------------------------------


def test_rules_schema_has_every_key_the_loader_accepts() -> None:
    schema = rules_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == set(loader.TOP_KEYS)
    assert props(schema, "defaults") == {"timezone"}
    assert props(schema, "rule") == set(loader.RULE_KEYS)
    assert props(schema, "window") == set(loader.WINDOW_KEYS)
    assert props(schema, "rule", "retry") == set(loader.RETRY_KEYS)
    for kind, keys in loader.ACTION_KEYS.items():
        assert props(schema, f"{kind}_action") == set(keys), kind
    assert props(schema, "schedule") == set(loader.SCHEDULE_KEYS)
    assert props(schema, "schedule", "active") == {"from", "until"}
    assert props(schema, "projection") == set(loader.PROJECTION_KEYS)
    handler_ops = schema["$defs"]["handler"]["anyOf"]
    assert handler_ops[0]["enum"] == list(loader.HANDLER_NAMES)
    assert set(handler_ops[1]["properties"]) == set(loader.HANDLER_KEYS)
    method = schema["$defs"]["http_action"]["properties"]["method"]["pattern"]
    for name in loader.HTTP_METHODS:
        assert re.fullmatch(method, name) and re.fullmatch(method, name.capitalize()), name
    catchup = schema["$defs"]["schedule"]["properties"]["catchup"]["enum"]
    assert catchup == list(loader.CATCHUP)


FULL = """\
version: 1
defaults: {timezone: UTC}
rules:
  - name: r
    description: d
    on: [a.b]
    if: data.x > 1
    active: {from: 2020-01-01, until: 2021-01-01, timezone: UTC, cron: "* * * * *"}
    retry: {attempts: 2, backoff: 1s, max_backoff: 2s}
    then:
      - {emit: c.d, data: {y: 1}, subject: s, source: src}
      - {run: [echo], env: {A: b}, cwd: ., timeout: 5s, stdin: x, emit_result: e.f}
      - {http: "http://x", method: PUT, headers: {H: v}, body: {}, timeout: 5}
schedules:
  - name: s1
    description: d
    cron: "0 2 * * *"
    timezone: UTC
    active: {from: 2020-01-01, until: 2021-01-01}
    emit: g.h
    data: {k: v}
    subject: s
    catchup: all
    max_catchup: 3
projections:
  - name: p
    description: d
    key: data.k
    on:
      a.b: upsert
      c.d: {set: {a: 1}, inc: {n: 1}, append: {l: 1}, unset: [z], if: "true"}
      e.f: {python: "pkg.mod:fn"}
"""


def test_a_file_using_every_schema_key_is_valid_for_both() -> None:
    _, problems = parse_text(FULL, "full.yaml")
    assert [str(p) for p in problems if p.severity == "error"] == []
    document = load_yaml(FULL)
    assert check(document, rules_schema(), rules_schema()) == []


@pytest.mark.parametrize(
    "text",
    [
        "rules: [{name: r, on: a, then: [{emit: b}], colour: red}]\n",
        "colour: red\n",
        "rules: [{name: r, on: a, then: [{emit: b, colour: red}]}]\n",
        "projections: [{name: p, key: data.k, on: {a: {set: {}, colour: red}}}]\n",
    ],
)
def test_an_unknown_key_is_refused_by_loader_and_schema(text: str) -> None:
    _, problems = parse_text(text, "x.yaml")
    assert any("unknown key 'colour'" in p.message for p in problems)
    document = load_yaml(text)
    assert any("colour" in e for e in check(document, rules_schema(), rules_schema()))


def test_the_example_rules_validate_against_the_schema() -> None:
    schema = rules_schema()
    document = read_yaml(REPO / "rules" / "shop.yaml")
    assert check(document, schema, schema) == []
    document["rules"][0]["then"][0]["emitt"] = "x"
    assert check(document, schema, schema) != []


# -- the test-file schema against the runner ----------------------------------------------------


def test_tests_schema_has_every_key_the_runner_accepts() -> None:
    schema = schema_of_tests()
    assert set(schema["properties"]) == set(ruletest.TEST_FILE_KEYS)
    case = schema["properties"]["tests"]["items"]
    assert set(case["properties"]) == set(ruletest.CASE_KEYS)
    event, tick = case["properties"]["given"]["items"]["anyOf"]
    assert set(event["properties"]) == set(ruletest.GIVEN_KEYS)
    assert set(tick["properties"]) == {ruletest.TICK}
    expect = case["properties"]["expect"]["properties"]
    assert set(expect) == set(ruletest.EXPECT_KEYS)
    assert set(expect["events"]["items"]["properties"]) == set(ruletest.EVENT_KEYS)
    assert set(expect["deliveries"]["items"]["properties"]) == set(ruletest.DELIVERY_KEYS)
    assert set(expect["timers"]["items"]["properties"]) == set(ruletest.TIMER_KEYS)


def test_the_example_tests_validate_against_the_schema() -> None:
    schema = schema_of_tests()
    document = read_yaml(REPO / "rules" / "tests" / "shop_test.yaml")
    assert check(document, schema, schema) == []


def test_schema_command(project: Path) -> None:
    result = run_cli(["rules", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == rules_schema()
    result = run_cli(["rules", "schema", "--tests"])
    assert json.loads(result.stdout)["title"] == "evflow rule test file"


# -- graph --------------------------------------------------------------------------------------

EXAMPLE_MERMAID = """\
flowchart LR
  t1(["order.placed"])
  r1["ship-on-order"]
  t2(["shipment.requested"])
  r2["mail-on-order<br/>from 2016-10-01 00:00 Asia/Seoul"]
  a1[/"run ./scripts/send_mail.sh"/]
  r3["big-order-to-sales<br/>if data.orderAmt #gt; 100"]
  t3(["sales.notified"])
  a2[/"http POST http://127.0.0.1:8080/sales/notify"/]
  s1{{"nightly-sales-report<br/>cron 0 2 * * * Asia/Seoul"}}
  t4(["report.requested"])
  p1[("members")]
  t5(["member.created"])
  t6(["member.updated"])
  t7(["member.deleted"])
  p2[("member_orders")]
  t1 --> r1
  r1 -->|emit| t2
  t1 --> r2
  r2 --> a1
  t1 --> r3
  r3 -->|emit| t3
  r3 --> a2
  s1 -->|emit| t4
  t5 -->|upsert| p1
  t6 -->|merge| p1
  t7 -->|delete| p1
  t1 --> p2
"""


def test_mermaid_graph_of_the_example() -> None:
    text = mermaid(load_rules(REPO / "rules"))
    assert text.startswith(EXAMPLE_MERMAID)
    assert "  class t1,t2,t3,t4,t5,t6,t7 type\n" in text
    assert text == mermaid(load_rules(REPO / "rules"))  # deterministic


def test_dot_graph_of_the_example() -> None:
    text = dot(load_rules(REPO / "rules"))
    assert text.startswith("digraph evflow {\n  rankdir=LR;\n")
    assert '  r3 [label="big-order-to-sales\\nif data.orderAmt > 100", shape=box];\n' in text
    assert '  r1 -> t2 [label="emit"];\n' in text
    assert "  t1 -> p2;\n" in text
    assert text.endswith("}\n")


def test_globs_and_emit_result(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        """\
rules:
  - name: any-order
    on: order.*
    then: [{run: [./x.sh], emit_result: order.checked}]
  - name: placed
    on: order.placed
    then: [{emit: order.done, data: {q: '"quoted" <b>'}}]
""",
        encoding="utf-8",
    )
    text = mermaid(load_rules(tmp_path))
    assert "  a1 -->|result| t2\n" in text  # t1 order.*, t2 order.checked
    assert "  t2 -. matches .-> t1\n" in text
    assert "  t3 -. matches .-> t1\n" in text  # order.placed
    assert "  t4 -. matches .-> t1\n" in text  # order.done


def test_graph_command(project: Path) -> None:
    result = run_cli(["--rules", str(REPO / "rules"), "rules", "graph"])
    assert result.exit_code == 0
    assert result.stdout == mermaid(load_rules(REPO / "rules"))
    result = run_cli(["--rules", str(REPO / "rules"), "rules", "graph", "--format", "dot"])
    assert result.stdout.startswith("digraph evflow {")
    assert run_cli(["rules", "graph", "--format", "png"]).exit_code == 2


def test_the_graph_in_the_docs_is_current() -> None:
    docs = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    block = re.search(r"```mermaid\n(.*?)```", docs, flags=re.S)
    assert block is not None
    assert block.group(1) == mermaid(load_rules(REPO / "rules"))
