"""`evflow rules test`: passing and failing cases of every expectation kind, windows with `at`,
invalid test files, output formats, and the example rules' own tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from evflow.services.ruletest import matches, parse_tests, run_tests
from tests.conftest import REPO, run_cli

RULES = """\
version: 1
rules:
  - name: greet
    on: user.joined
    if: data.age >= 18
    active: {from: "2020-01-01", timezone: Asia/Seoul}
    then:
      - emit: user.greeted
        subject: ${{ data.name }}
        data: {name: "${{ data.name }}", age: "${{ data.age }}"}
      - run: [echo, "hi ${{ data.name }}"]
        env: {WHO: "${{ data.name }}"}
      - http: http://example.invalid/users/${{ data.name }}
        headers: {X-Age: "${{ data.age }}"}
        body: {name: "${{ data.name }}"}
  - name: welcome-back
    on: user.returned
    then:
      - http: http://example.invalid/back
projections:
  - name: users
    key: data.name
    on:
      user.joined: upsert
      user.left: delete
"""

JOINED = """\
      - type: user.joined
        time: 2020-06-01T00:00:00Z
        data: {name: ann, age: 30}
"""


@pytest.fixture(autouse=True)
def wired() -> None:
    """The rules group with this module's commands (a no-op once the lead wires them in)."""
    from evflow.cli import rules_cmds, ruletools_cmds

    names = {c.name for c in rules_cmds.rules_app.registered_commands}
    if "test" not in names:
        ruletools_cmds.register(rules_cmds.rules_app)


def write_case(project: Path, expect: str, given: str = JOINED, extra: str = "") -> Path:
    (project / "rules" / "tests").mkdir(parents=True, exist_ok=True)
    (project / "rules" / "users.yaml").write_text(RULES, encoding="utf-8")
    text = (
        "tests:\n  - name: the case\n"
        + textwrap.indent(extra, "    ")
        + "    given:\n"
        + given
        + "    expect:\n"
        + textwrap.indent(textwrap.dedent(expect), "      ")
    )
    path = project / "rules" / "tests" / "users_test.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def failures(project: Path) -> list[str]:
    report = run_tests(None, project / "rules")
    assert not report.problems, report.problems
    return [f for r in report.results for f in r.failures]


# -- the example --------------------------------------------------------------------------------


def test_example_rules_pass_their_tests(project: Path) -> None:
    result = run_cli(["--rules", str(REPO / "rules"), "rules", "test"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS ") >= 9
    assert "FAIL" not in result.stdout
    assert "0 failed" in result.stdout  # the summary is the result: on stdout
    assert not (project / ".evflow").exists()  # no log was opened


# -- every expectation kind, passing and failing ------------------------------------------------


def test_expected_events_pass_as_subsets(project: Path) -> None:
    write_case(
        project,
        """\
        events:
          - type: user.greeted
            rule: greet
            subject: ann
            data: {age: 30}
        """,
    )
    assert failures(project) == []


def test_expected_event_missing_names_expected_and_actual(project: Path) -> None:
    write_case(project, "events:\n  - {type: user.greeted, data: {name: bob}}\n")
    [failure] = failures(project)
    assert failure == (
        'events: expected {"type": "user.greeted", "data": {"name": "bob"}};'
        ' actual {"type": "user.greeted", "data": {"name": "ann", "age": 30}}'
    )
    write_case(project, "events:\n  - {type: user.welcomed}\n")
    [failure] = failures(project)
    assert failure == (
        'events: expected {"type": "user.welcomed"}; none such derived (derived: user.greeted)'
    )


def test_empty_events_means_none_derived(project: Path) -> None:
    write_case(project, "events: []\n")
    [failure] = failures(project)
    assert failure.startswith('events: expected none derived; derived: {"type": "user.greeted"')


def test_each_expected_event_needs_its_own_match(project: Path) -> None:
    write_case(project, "events:\n  - {type: user.greeted}\n  - {type: user.greeted}\n")
    assert len(failures(project)) == 1


def test_deliveries_are_rendered_not_run(project: Path) -> None:
    write_case(
        project,
        """\
        deliveries:
          - {rule: greet, kind: run, action: 1, argv: [echo, hi ann], env: {WHO: ann}}
          - rule: greet
            kind: http
            event: user.joined
            url: http://example.invalid/users/ann
            method: POST
            headers: {X-Age: "30"}
            body: {name: ann}
        """,
    )
    assert failures(project) == []


def test_default_http_body_is_the_event(project: Path) -> None:
    given = "      - {type: user.returned, time: 2020-06-01T00:00:00Z, data: {name: ann}}\n"
    write_case(
        project,
        "deliveries:\n  - {rule: welcome-back, body: {type: user.returned, data: {name: ann}}}\n",
        given=given,
    )
    assert failures(project) == []


def test_delivery_mismatch_shows_what_would_be_delivered(project: Path) -> None:
    write_case(project, "deliveries:\n  - {rule: greet, kind: run, argv: [echo, hi bob]}\n")
    [failure] = failures(project)
    assert failure == (
        'deliveries: expected {"rule": "greet", "kind": "run", "argv": ["echo", "hi bob"]};'
        ' actual {"rule": "greet", "kind": "run", "argv": ["echo", "hi ann"]}'
    )


def test_empty_deliveries_fail_when_something_is_due(project: Path) -> None:
    write_case(project, "deliveries: []\n")
    [failure] = failures(project)
    assert failure.startswith("deliveries: expected none due; due: {")
    assert '"body": "<the event JSON>"' not in failure  # greet's body is templated
    assert '"stdin": "<the event JSON>"' in failure


def test_not_matched_and_matched(project: Path) -> None:
    write_case(project, "not_matched: [welcome-back]\nmatched: [greet]\n")
    assert failures(project) == []
    write_case(project, "not_matched: [greet]\nmatched: [welcome-back]\n")
    found = failures(project)
    assert found[0].startswith("not_matched: rule greet matched (caused by user.joined")
    assert found[1] == "matched: rule welcome-back matched no event (no event of its type)"


def test_filter_reason_when_a_rule_does_not_match(project: Path) -> None:
    given = "      - {type: user.joined, time: 2020-06-01T00:00:00Z, data: {name: kid, age: 9}}\n"
    write_case(project, "matched: [greet]\n", given=given)
    [failure] = failures(project)
    assert "filter data.age >= 18 is false" in failure


def test_unknown_rule_names_are_failures_not_silent_passes(project: Path) -> None:
    write_case(project, "not_matched: [gret]\n")
    [failure] = failures(project)
    assert "unknown rule 'gret' (known: greet, welcome-back)" in failure


def test_projections(project: Path) -> None:
    given = JOINED + (
        "      - {type: user.joined, time: 2020-06-02T00:00:00Z, data: {name: bob, age: 40}}\n"
        "      - {type: user.left, time: 2020-06-03T00:00:00Z, data: {name: bob}}\n"
    )
    write_case(project, "projections:\n  users:\n    ann: {age: 30}\n    absent: [bob]\n", given)
    assert failures(project) == []
    write_case(
        project,
        "projections:\n  users:\n    ann: {age: 31}\n    carl: {age: 1}\n    absent: [ann]\n",
        given,
    )
    found = failures(project)
    assert (
        'projections.users[ann]: expected {"age": 31}; actual {"name": "ann", "age": 30}' in found
    )
    assert any(
        f.startswith("projections.users[carl]: expected") and "no such row" in f for f in found
    )
    assert any(f.startswith("projections.users[ann]: expected no row") for f in found)


def test_unknown_projection(project: Path) -> None:
    write_case(project, "projections:\n  usres: {ann: {}}\n")
    [failure] = failures(project)
    assert "unknown projection 'usres' (known: users)" in failure


# -- windows and `at` ---------------------------------------------------------------------------


def test_window_boundary_in_the_rules_timezone(project: Path) -> None:
    # 2020-01-01 00:00 in Seoul is 2019-12-31T15:00:00Z
    before = "      - {type: user.joined, time: 2019-12-31T14:59:59Z, data: {name: a, age: 30}}\n"
    write_case(project, "not_matched: [greet]\n", given=before)
    assert failures(project) == []
    at_start = "      - {type: user.joined, time: 2019-12-31T15:00:00Z, data: {name: a, age: 30}}\n"
    write_case(project, "matched: [greet]\n", given=at_start)
    assert failures(project) == []


def test_at_judges_windows_at_that_time(project: Path) -> None:
    before = "      - {type: user.joined, time: 2019-06-01T00:00:00Z, data: {name: a, age: 30}}\n"
    write_case(project, "matched: [greet]\n", given=before, extra="at: 2020-02-01T00:00:00Z\n")
    assert failures(project) == []
    write_case(project, "matched: [greet]\n", given=before)
    [failure] = failures(project)
    assert "before" in failure or "window" in failure or "2020-01-01" in failure


def test_at_is_the_default_time_of_given_events(project: Path) -> None:
    given = "      - {type: user.joined, data: {name: a, age: 30}}\n"
    write_case(project, "events:\n  - {type: user.greeted}\n", given, "at: 2019-06-01T00:00:00Z\n")
    [failure] = failures(project)  # judged and timed before the window opens
    assert failure.startswith("events: expected")


# -- test files ---------------------------------------------------------------------------------


def test_invalid_test_file_reports_file_line_column(project: Path) -> None:
    problems = parse_tests(
        "tests:\n  - name: x\n    given: []\n    expect:\n      event: []\n", "t.yaml", "rules"
    )[1]
    assert [str(p) for p in problems] == [
        "t.yaml:5:7: error: unknown key 'event' in expect (did you mean 'events'?)"
    ]
    problems = parse_tests("tests:\n  - given:\n      - data: {}\n", "t.yaml", "rules")[1]
    assert [str(p) for p in problems] == [
        "t.yaml:2:5: error: a test case needs a 'name'",
        "t.yaml:3:9: error: a given event needs a 'type'",
    ]
    problems = parse_tests("tests: [{name: x, given: [], at: soon}]\n", "t.yaml", "rules")[1]
    assert str(problems[0]).startswith("t.yaml:1:34: error: at: ")
    problems = parse_tests("tests: [\n", "t.yaml", "rules")[1]
    assert "invalid YAML" in str(problems[0])


def test_invalid_test_file_exits_3(project: Path) -> None:
    path = write_case(project, "evnts: []\n")
    result = run_cli(["rules", "test"])
    assert result.exit_code == 3
    assert f"{Path('rules/tests/users_test.yaml')}:" in result.stdout
    assert "unknown key 'evnts'" in result.stdout
    assert path.exists()


def test_rules_key_names_another_rules_folder(project: Path) -> None:
    (project / "other").mkdir()
    (project / "other" / "r.yaml").write_text(
        "rules:\n  - {name: only, on: a.b, then: [{emit: c.d}]}\n", encoding="utf-8"
    )
    (project / "t.yaml").write_text(
        "rules: other\ntests:\n  - name: x\n    given: [{type: a.b}]\n"
        "    expect: {events: [{type: c.d, rule: only}]}\n",
        encoding="utf-8",
    )
    result = run_cli(["rules", "test", "t.yaml"])
    assert result.exit_code == 0, result.stdout + result.stderr


def test_invalid_rules_are_reported(project: Path) -> None:
    write_case(project, "events: []\n")
    (project / "rules" / "users.yaml").write_text("rules: [{name: x, on: a}]\n", encoding="utf-8")
    result = run_cli(["rules", "test"])
    assert result.exit_code == 3
    assert "rule needs 'then'" in result.stdout


def test_no_tests_and_missing_paths(project: Path) -> None:
    result = run_cli(["rules", "test"])
    assert result.exit_code == 0
    assert "no rule tests found" in result.stderr
    assert run_cli(["rules", "test", "nope.yaml"]).exit_code == 2
    assert run_cli(["rules", "test", "--format", "xml"]).exit_code == 2


# -- output formats -----------------------------------------------------------------------------


def test_text_output_names_the_failing_case(project: Path) -> None:
    write_case(project, "events: []\n")
    result = run_cli(["rules", "test"])
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert lines[0] == f"FAIL {Path('rules/tests/users_test.yaml')}:2: the case"
    assert lines[1].startswith("    events: expected none derived; derived: {")
    assert "0 passed, 1 failed in 1 file(s)" in result.stdout


def test_json_output(project: Path) -> None:
    write_case(project, "events: []\n")
    result = run_cli(["rules", "test", "--format", "json"])
    assert result.exit_code == 3
    [case] = json.loads(result.stdout)
    assert case["case"] == "the case" and case["passed"] is False
    assert set(case) == {"file", "case", "passed", "failures"}
    assert case["failures"][0].startswith("events: expected none derived")


def test_github_annotations(project: Path) -> None:
    write_case(project, "events: []\nmatched: [welcome-back]\n")
    result = run_cli(["rules", "test", "--format", "github"])
    assert result.exit_code == 3
    [line] = result.stdout.splitlines()
    assert line.startswith(
        f"::error file={Path('rules/tests/users_test.yaml')},line=2,title=rule test failed::"
        "the case: events: expected none"
    )
    assert "%0Amatched: rule welcome-back" in line


# -- subset matching ----------------------------------------------------------------------------


def test_matches() -> None:
    assert matches({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert not matches({"a": 1}, {"b": 1})
    assert matches([1, {"x": 1}], [1, {"x": 1, "y": 2}])
    assert not matches([1], [1, 2])
    assert not matches(True, 1) and not matches(1, True)
    assert matches(150, 150.0)
    assert not matches("150", 150)
    assert matches(None, None)
