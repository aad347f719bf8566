"""Rule files: YAML text -> definitions, problems at file:line:column, and the parse cache."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evflow.core.expressions import Expression, Template
from evflow.core.rules import EmitAction, HttpAction, RunAction
from evflow.errors import InvalidRules, Problem
from evflow.rulefiles.loader import load_rules, parse_text, rule_files, validate

FIXTURES = Path(__file__).parent / "fixtures" / "loading"


def check(text: str, filename: str = "rules/a.yaml") -> list[str]:
    """Every problem of one file's text, as the CLI prints them."""
    _, problems = parse_text(textwrap.dedent(text), filename)
    return [str(p) for p in problems]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def shape(obj: Any) -> Any:
    """A definition as plain data, so that two loads can be compared (templates have no ==)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        return {f.name: shape(getattr(obj, f.name)) for f in fields if not f.name.startswith("_")}
    if isinstance(obj, Template):
        return {"template": shape(obj._node)}
    if isinstance(obj, Expression):
        return {"cel": obj.source}
    if isinstance(obj, list | tuple):
        return [shape(x) for x in obj]
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


# The SPEC §3 example ------------------------------------------------------------------------------


def test_spec_example_loads_cleanly() -> None:
    assert validate(FIXTURES) == []
    rules = load_rules(FIXTURES)
    assert rules.directory == str(FIXTURES)
    assert rules.files == (str(FIXTURES / "example.yaml"),)
    assert [r.name for r in rules.rules] == ["ship-on-order", "mail-on-order", "big-order-to-sales"]
    ship, mail, sales = rules.rules
    assert ship.on == ("order.placed",) and ship.description == "Every order is shipped"
    (emit,) = ship.actions
    assert isinstance(emit, EmitAction) and emit.type == "shipment.requested"
    event = {"type": "order.placed", "data": {"orderId": 7, "productId": "p1"}}
    assert emit.render({"data": event["data"], "event": event}, "ship-on-order") == {
        "type": "shipment.requested",
        "data": {"orderId": 7, "productId": "p1"},
        "subject": "7",
        "source": "evflow:rule/ship-on-order",
    }
    # dates are midnight in the file's default timezone (Asia/Seoul, UTC+9)
    assert mail.window is not None and mail.window.timezone == "Asia/Seoul"
    assert mail.window.start == datetime(2016, 9, 30, 15, tzinfo=UTC)
    assert mail.window.end == datetime(2029, 12, 31, 15, tzinfo=UTC)
    (run,) = mail.actions
    assert isinstance(run, RunAction) and run.timeout == 30.0 and run.cwd is None
    assert run.argv.render({"data": {"userid": "u1"}, "event": {}}) == [
        "./scripts/send_mail.sh",
        "u1",
    ]
    assert sales.condition is not None and sales.condition.source == "data.orderAmt > 100"
    (http,) = sales.actions
    assert isinstance(http, HttpAction) and (http.method, http.timeout) == ("POST", 10.0)
    assert http.body is not None
    assert http.body.render({"data": {"orderId": 7}, "event": {}}) == {"orderId": 7}
    assert (sales.retry.attempts, sales.retry.backoff, sales.retry.max_backoff) == (5, 10, 600)

    (nightly,) = rules.schedules
    assert (nightly.name, nightly.cron, nightly.timezone) == (
        "nightly-sales-report",
        "0 2 * * *",
        "Asia/Seoul",
    )
    assert (nightly.emit, nightly.catchup, nightly.max_catchup) == (
        "report.requested",
        "latest",
        100,
    )
    assert nightly.data is not None and nightly.data.render({"schedule": {}}) == {"period": "daily"}
    assert nightly.window is not None and nightly.window.start == datetime(
        2016, 9, 30, 15, tzinfo=UTC
    )

    members, orders = rules.projections
    assert members.name == "members" and members.key.source == "data.userid"
    assert [(t, h.kind) for t, h in members.handlers] == [
        ("member.created", "upsert"),
        ("member.updated", "merge"),
        ("member.deleted", "delete"),
    ]
    assert orders.name == "member_orders"
    ((etype, handler),) = orders.handlers
    assert etype == "order.placed" and handler.kind == "ops"
    assert handler.inc is not None and handler.set is not None
    assert handler.inc.render({"data": {"orderAmt": 150}, "event": {}}) == {
        "orders": 1,
        "amount": 150,
    }
    assert len(members.definition_hash) == 64 and members.definition_hash != orders.definition_hash


# Problems, each at its place ----------------------------------------------------------------------


def test_unknown_key_suggests_the_close_one() -> None:
    assert check(
        """\
        rules:
          - name: r
            on: a
            actve: {from: 2020-01-01}
            then: [{emit: b}]
        """
    ) == ["rules/a.yaml:4:5: error: unknown key 'actve' (did you mean 'active'?)"]


def test_problems_carry_the_definition_name() -> None:
    _, problems = parse_text(
        "rules:\n  - on: a\n    then: [{emit: b}]\n    name: r1\n    iff: x\n", "f"
    )
    assert problems == [Problem("f", 5, 5, "unknown key 'iff' (did you mean 'if'?)", "r1")]


def test_unknown_top_level_key_lists_the_choices() -> None:
    assert check("version: 1\nzzz: 1\n") == [
        "rules/a.yaml:2:1: error: unknown key 'zzz' "
        "(expected one of: version, defaults, rules, schedules, projections)"
    ]


def test_unknown_action() -> None:
    assert check(
        """\
        rules:
          - name: r
            on: a
            then:
              - notfy: sales
              - emt: b
              - emit: b
                run: [x]
        """
    ) == [
        "rules/a.yaml:5:9: error: unknown action 'notfy' (expected one of: emit, run, http)",
        "rules/a.yaml:6:9: error: unknown action 'emt' (did you mean 'emit'?)",
        "rules/a.yaml:8:9: error: an action takes one of emit, run, http (found emit and run)",
    ]


def test_unknown_key_in_an_action() -> None:
    assert check("rules:\n- name: r\n  on: a\n  then:\n  - run: [x]\n    timout: 3s\n") == [
        "rules/a.yaml:6:5: error: unknown key 'timout' (did you mean 'timeout'?)"
    ]


def test_run_takes_an_argv_list() -> None:
    assert check("rules:\n- name: r\n  on: a\n  then:\n  - run: ./send.sh --now\n") == [
        "rules/a.yaml:5:10: error: run takes an argv list, never a shell command line"
    ]


def test_version() -> None:
    assert check("version: 2\n") == ["rules/a.yaml:1:10: error: version must be 1, got int 2"]
    assert check("version: '1'\n") == ["rules/a.yaml:1:10: error: version must be 1, got str '1'"]
    assert check("version: 1\n") == []
    assert check("rules: []\n") == []  # version may be left out
    assert check("") == []  # an empty file defines nothing


def test_names() -> None:
    assert check("rules:\n- name: Bad Name\n  on: a\n  then: [{emit: b}]\n") == [
        "rules/a.yaml:2:9: error: bad name 'Bad Name' (lowercase letters, digits, '.', '_' "
        "and '-', starting with a letter or digit)"
    ]
    assert check("rules:\n- on: a\n  then: [{emit: b}]\n") == [
        "rules/a.yaml:2:3: error: rule needs a name"
    ]


def test_missing_parts() -> None:
    assert check("rules:\n- name: r\n") == [
        "rules/a.yaml:2:3: error: rule needs 'on' (an event type, a glob, or a list of them)",
        "rules/a.yaml:2:3: error: rule needs 'then' (a list of actions)",
    ]
    assert check("rules:\n- name: r\n  on: a\n  then: []\n") == [
        "rules/a.yaml:4:9: error: then must be a list of at least one action"
    ]


def test_event_types() -> None:
    # any CloudEvents type: 'b c' and 'x:y/v1' are types; '*' is a glob in `on` only
    assert check("rules:\n- name: r\n  on: [a.*, 'b c', 'x:y/v1']\n  then: [{emit: x.*}]\n") == [
        "rules/a.yaml:4:17: error: bad event type 'x.*' in emit "
        "(any text without control characters; no '*')",
    ]
    assert check("rules:\n- name: r\n  on: ['', 5]\n  then: [{emit: x}]\n") == [
        "rules/a.yaml:3:8: error: on: an event type is a non-empty string",
        "rules/a.yaml:3:12: error: on must be a string, got int 5",
    ]


def test_yaml_syntax_error_is_one_problem_at_its_place() -> None:
    assert check("rules:\n  - name: a\n    on: [x\n") == [
        "rules/a.yaml:4:1: error: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"
    ]


def test_duplicate_keys() -> None:
    assert check("rules: []\nrules: []\n") == [
        "rules/a.yaml:2:1: error: duplicate key 'rules' (first at line 1)"
    ]


def test_retry_and_durations() -> None:
    text = "rules:\n- name: r\n  on: a\n  then: [{http: 'http://x', timeout: 3 weeks}]\n"
    text += "  retry: {attempts: 0, backoff: 1m, max_backoff: 10s}\n"
    assert check(text) == [
        "rules/a.yaml:4:38: error: timeout: invalid duration '3 weeks' "
        "(expected e.g. 30s, 10m, 2h, 1d, 500ms, 1h30m)",
        "rules/a.yaml:5:21: error: retry.attempts must be at least 1, got 0",
        "rules/a.yaml:5:50: error: retry.max_backoff must not be less than backoff",
    ]


def test_a_timeout_is_at_most_24_days() -> None:
    """Longer does not fit the OS's wait (milliseconds in 31 bits): it used to fail each
    delivery with 'OverflowError: timeout is too large' instead of the rule file."""
    text = "rules:\n- name: r\n  on: a\n  then:\n  - {run: [x], timeout: 25d}\n"
    text += "  - {http: 'http://x', timeout: 24d1s}\n  - {run: [x], timeout: 24d}\n"
    assert check(text) == [
        "rules/a.yaml:5:25: error: timeout must be at most 24d",
        "rules/a.yaml:6:33: error: timeout must be at most 24d",
    ]


# Windows ------------------------------------------------------------------------------------------


def test_window_dates_use_the_file_default_timezone() -> None:
    text = """\
        defaults: {timezone: Asia/Seoul}
        rules:
          - {name: seoul, on: a, active: {from: 2016-10-01}, then: [{emit: b}]}
          - {name: utc, on: a, active: {from: 2016-10-01, timezone: UTC}, then: [{emit: b}]}
          - {name: exact, on: a, active: {until: "2016-10-01T12:00:00+00:00"}, then: [{emit: b}]}
        """
    rules, problems = parse_text(textwrap.dedent(text), "a.yaml")
    assert problems == []
    seoul, utc, exact = (r.window for r in rules.rules)
    assert seoul is not None and seoul.start == datetime(2016, 9, 30, 15, tzinfo=UTC)
    assert utc is not None and utc.start == datetime(2016, 10, 1, tzinfo=UTC)
    assert exact is not None and exact.end == datetime(2016, 10, 1, 12, tzinfo=UTC)
    assert exact.start is None
    rules, _ = parse_text(
        "rules: [{name: r, on: a, active: {from: 2016-10-01}, then: [{emit: b}]}]", "f"
    )
    assert rules.rules[0].window is not None and rules.rules[0].window.timezone == "UTC"


def test_until_must_be_after_from() -> None:
    text = """\
        rules:
          - name: r
            on: a
            active:
              from: 2020-01-02
              until: 2020-01-01
            then: [{emit: b}]
        """
    assert check(text) == ["rules/a.yaml:6:14: error: active.until must be after active.from"]


def test_unknown_timezone() -> None:
    text = """\
        defaults: {timezone: Mars/Base}
        rules:
          - {name: r, on: a, active: {from: 2020-01-01, timezone: Moon/Crater}, then: [{emit: b}]}
        """
    assert check(text) == [
        "rules/a.yaml:1:22: error: unknown timezone 'Mars/Base'",
        "rules/a.yaml:3:59: error: unknown timezone 'Moon/Crater'",
    ]


def test_bad_cron() -> None:
    text = """\
        rules:
          - {name: r, on: a, active: {cron: "61 * * * *"}, then: [{emit: b}]}
        schedules:
          - name: s
            cron: "0 2 * *"
            emit: report.requested
        """
    assert check(text) == [
        "rules/a.yaml:2:37: error: bad cron expression '61 * * * *': minute 61: out of range 0-59",
        "rules/a.yaml:5:11: error: bad cron expression '0 2 * *': expected 5 fields "
        "(minute hour day-of-month month day-of-week), got 4",
    ]


def test_business_hours_cron_window() -> None:
    rules, problems = parse_text(
        'rules: [{name: r, on: a, active: {cron: "* 9-17 * * MON-FRI"}, then: [{emit: b}]}]', "f"
    )
    assert problems == []
    window = rules.rules[0].window
    assert window is not None and window.cron == "* 9-17 * * MON-FRI"
    assert window.check(datetime(2024, 1, 1, 10, tzinfo=UTC)).ok  # a Monday
    assert not window.check(datetime(2024, 1, 6, 10, tzinfo=UTC)).ok  # a Saturday


# Expressions and templates ------------------------------------------------------------------------


def test_bad_cel_in_if_is_located_in_the_file() -> None:
    text = """\
        rules:
          - name: plain
            on: a
            if: data.x > > 1
            then: [{emit: b}]
          - name: quoted
            on: a
            if: "data.x == dta"
            then: [{emit: b}]
          - name: block
            on: a
            if: |
              data.x > 1 &&
                nope.y
            then: [{emit: b}]
        """
    assert check(text) == [
        "rules/a.yaml:4:18: error: if: Syntax error: extraneous input '>'",
        "rules/a.yaml:8:20: error: if: undeclared reference to 'dta'",
        "rules/a.yaml:14:13: error: if: undeclared reference to 'nope.y'",
    ]


def test_bad_template_is_located_at_its_string() -> None:
    text = """\
        rules:
          - name: r
            on: a
            then:
              - emit: b
                data:
                  ok: ${{ data.x }}
                  nested: {deep: "id ${{ data.y + }}"}
              - run: [./x, "${{ dat.a }}"]
        """
    problems = check(text)
    assert problems == [
        "rules/a.yaml:8:42: error: data: Syntax error: unexpected end of expression",
        "rules/a.yaml:9:28: error: run: undeclared reference to 'dat.a'",
    ]


def test_projection_problems() -> None:
    text = """\
        projections:
          - name: p
            key: data.userid +
            on:
              a.b: upsrt
              c.d: {python: nope}
              e.f: {set: {x: "${{ stat.x }}"}, if: "state.x ==="}
              g.h: {if: "true"}
          - name: q
            on: {a: merge}
        """
    assert check(text) == [
        "rules/a.yaml:3:23: error: key: Syntax error: unexpected end of expression",
        "rules/a.yaml:5:12: error: unknown handler 'upsrt' (did you mean 'upsert'?; "
        "or a mapping of set, inc, append, unset)",
        "rules/a.yaml:6:21: error: python must be package.module:function, got 'nope'",
        "rules/a.yaml:7:31: error: set: undeclared reference to 'stat.x'",
        "rules/a.yaml:7:55: error: if: Syntax error: token recognition error at: '='",
        "rules/a.yaml:8:12: error: a handler needs one of: set, inc, append, unset (or python)",
        "rules/a.yaml:9:5: error: projection needs 'key' (a CEL expression giving the row key, "
        "e.g. data.userid)",
    ]


def test_projection_handlers_and_hash() -> None:
    text = """\
        projections:
          - name: p
            key: data.userid
            on:
              "member.*": {python: "pkg.mod:fold", if: "data.ok == true"}
              order.placed: {append: {orders: "${{ data.id }}"}, unset: [draft]}
        """
    rules, problems = parse_text(textwrap.dedent(text), "f")
    assert problems == []
    (projection,) = rules.projections
    (_, python), (_, ops) = projection.handlers
    assert (python.kind, python.python) == ("python", "pkg.mod:fold")
    assert python.condition is not None and python.condition.source == "data.ok == true"
    assert projection.handler_for("member.created") is python
    assert ops.kind == "ops" and ops.unset == ("draft",) and ops.append is not None
    # the hash ignores layout and comments, and changes with any part of the definition
    moved, _ = parse_text("# a comment\n\n" + textwrap.dedent(text), "g")
    changed, _ = parse_text(textwrap.dedent(text).replace("draft", "drafts"), "f")
    assert moved.projections[0].definition_hash == projection.definition_hash
    assert changed.projections[0].definition_hash != projection.definition_hash


def test_run_cwd_env_and_emit_result(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        """\
        rules:
          - name: r
            on: a
            then:
              - run: [./x.sh, 1]
                cwd: scripts
                env: {USER_ID: "${{ data.userid }}", N: 1}
                stdin: "${{ data }}"
                emit_result: a.done
        """,
    )
    (rule,) = load_rules(tmp_path).rules
    (run,) = rule.actions
    assert isinstance(run, RunAction)
    assert run.cwd == str(tmp_path / "scripts") and os.path.isabs(run.cwd)
    assert (run.timeout, run.emit_result) == (60.0, "a.done")
    variables = {"data": {"userid": "u1"}, "event": {}}
    assert run.argv.render(variables) == ["./x.sh", "1"]
    assert run.env is not None and run.env.render(variables) == {"USER_ID": "u1", "N": "1"}


def test_schedule_defaults() -> None:
    text = """\
        defaults: {timezone: Europe/Paris}
        schedules:
          - name: s
            cron: "@hourly"
            emit: tick
            subject: "${{ schedule.time }}"
            catchup: all
          - {name: t, cron: "0 0 * * *", emit: tock, catchup: som, max_catchup: 0}
        """
    rules, problems = parse_text(textwrap.dedent(text), "f")
    assert [str(p) for p in problems] == [
        "f:8:55: error: unknown catchup 'som' (expected one of: latest, all, none)",
        "f:8:73: error: max_catchup must be at least 1, got 0",
    ]
    (schedule,) = rules.schedules
    assert (schedule.timezone, schedule.catchup, schedule.window) == ("Europe/Paris", "all", None)
    assert schedule.subject is not None


# Across files -------------------------------------------------------------------------------------


def test_every_problem_of_every_file_in_one_run(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n- name: r\n  on: a\n  iff: x\n  then: [{notfy: b}]\n")
    write(tmp_path, "b.yml", "version: 3\nschedules:\n- {name: s, cron: nope, emit: x}\n")
    write(tmp_path, "c.yaml", "rules: [\n")
    problems = [str(p) for p in validate(tmp_path)]
    assert problems == [
        f"{tmp_path}/a.yaml:4:3: error: unknown key 'iff' (did you mean 'if'?)",
        f"{tmp_path}/a.yaml:5:11: error: unknown action 'notfy' (expected one of: emit, run, http)",
        f"{tmp_path}/b.yml:1:10: error: version must be 1, got int 3",
        f"{tmp_path}/b.yml:3:19: error: bad cron expression 'nope': expected 5 fields "
        "(minute hour day-of-month month day-of-week), got 1",
        f"{tmp_path}/c.yaml:2:1: error: invalid YAML: expected the node content, but found "
        "'<stream end>' (while parsing a flow node)",
    ]
    with pytest.raises(InvalidRules) as caught:
        load_rules(tmp_path)
    assert [str(p) for p in caught.value.problems] == problems
    assert str(caught.value) == problems[0] + " (and 4 more)"


def test_duplicate_names_across_files_and_kinds(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n  - name: x\n    on: a\n    then: [{emit: b}]\n")
    write(tmp_path, "b.yaml", "rules:\n  - {name: x, on: a, then: [{emit: b}]}\n")
    write(tmp_path, "c.yaml", "projections:\n  - {name: x, key: data.id, on: {a: upsert}}\n")
    assert [str(p) for p in validate(tmp_path)] == [
        f"{tmp_path}/b.yaml:2:12: error: duplicate rule name 'x' "
        f"(first defined at {tmp_path}/a.yaml:2:11)",
        f"{tmp_path}/c.yaml:2:12: error: duplicate projection name 'x' "
        f"(first defined as a rule at {tmp_path}/a.yaml:2:11)",
    ]


def test_emit_cycle_is_a_warning(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        """\
        rules:
          - {name: ping, on: ping, then: [{emit: pong}]}
          - {name: pong, on: "po*", then: [{emit: ping}]}
          - {name: loop, on: "loop.*", then: [{emit: loop.again}]}
          - {name: fine, on: pong, then: [{emit: done}]}
        """,
    )
    problems = validate(tmp_path)
    assert [(p.severity, p.rule, p.line, p.column) for p in problems] == [
        ("warning", "ping", 2, 36),
        ("warning", "loop", 4, 40),
    ]
    assert problems[0].message.startswith("emit cycle: ping -> pong -> ping (")
    assert problems[1].message.startswith("emit cycle: loop -> loop (")
    assert len(load_rules(tmp_path).rules) == 4  # warnings do not stop loading


def test_rule_files_and_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("b.yml", "a.yaml", "notes.txt"):
        (tmp_path / name).write_text("rules: []\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.yaml").write_text("not: [rules\n")
    assert rule_files(tmp_path) == [tmp_path / "a.yaml", tmp_path / "b.yml"]
    assert load_rules(tmp_path / "missing").rules == ()
    assert validate(tmp_path / "missing") == [
        Problem(str(tmp_path / "missing"), 1, 1, "no such file or directory")
    ]
    monkeypatch.setenv("EVFLOW_RULES", str(tmp_path))  # settings decide the folder, once
    from evflow.settings import resolve

    assert load_rules(resolve().rules_dir).files == (
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yml"),
    )
    only = load_rules(paths=[tmp_path / "b.yml"])
    assert (only.directory, only.files) == ("", (str(tmp_path / "b.yml"),))


# The cache ----------------------------------------------------------------------------------------

_CACHE_PROBE = """
import json, sys
from pathlib import Path
from evflow.rulefiles.loader import load_rules
rules = load_rules(sys.argv[1], cache_dir=Path(sys.argv[2]))
yaml_imported = "yaml" in sys.modules or "croniter" in sys.modules
sys.path.insert(0, sys.argv[3])
from test_loading import shape
print(json.dumps({"yaml": yaml_imported, "rules": shape(rules)}))
"""


def _probe(rules_dir: Path, cache_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _CACHE_PROBE,
            str(rules_dir),
            str(cache_dir),
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_cache_hit_skips_yaml_and_gives_equal_definitions(tmp_path: Path) -> None:
    rules_dir, cache = tmp_path / "rules", tmp_path / "cache"
    rules_dir.mkdir()
    write(rules_dir, "example.yaml", (FIXTURES / "example.yaml").read_text())
    first = _probe(rules_dir, cache)
    assert first["yaml"] is True  # a miss parses
    (cached,) = cache.glob("rules-*")
    second = _probe(rules_dir, cache)
    assert second["yaml"] is False  # a hit does not even import yaml (nor croniter)
    assert second["rules"] == first["rules"]
    assert json.loads(json.dumps(shape(load_rules(rules_dir)))) == first["rules"]
    assert list(cache.glob("rules-*")) == [cached]


def test_changed_file_invalidates_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write(tmp_path, "a.yaml", "rules: [{name: r, on: a, then: [{emit: b}]}]\n")
    assert load_rules(tmp_path, cache_dir=cache).rules[0].on == ("a",)
    (old,) = cache.glob("rules-*")
    path.write_text("rules: [{name: r, on: z, then: [{emit: b}]}]\n")
    assert load_rules(tmp_path, cache_dir=cache).rules[0].on == ("z",)
    (new,) = cache.glob("rules-*")  # the old one is gone
    assert new != old
    write(tmp_path, "b.yaml", "rules: [{name: s, on: b, then: [{emit: c}]}]\n")  # a new file
    assert [r.name for r in load_rules(tmp_path, cache_dir=cache).rules] == ["r", "s"]


def test_corrupt_cache_is_ignored_and_problems_survive_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write(tmp_path, "a.yaml", "rules: [{name: r, on: a, actve: {}, then: [{emit: b}]}]\n")
    first = validate(tmp_path, cache_dir=cache)
    assert [p.message for p in first] == ["unknown key 'actve' (did you mean 'active'?)"]
    assert validate(tmp_path, cache_dir=cache) == first  # from the cache
    (cached,) = cache.glob("rules-*")
    cached.write_text("{not a cache")
    assert validate(tmp_path, cache_dir=cache) == first
    assert pickle.loads(cached.read_bytes())[2] == first  # rewritten


def test_cache_keeps_dates_and_places(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write(
        tmp_path,
        "a.yaml",
        "rules:\n- name: r\n  on: a\n  active: {from: 2016-10-01, until: 2017-01-01 10:00:00}\n"
        "  if: data.x >\n  then: [{emit: b, data: {day: 2016-10-01}}]\n",
    )
    first = validate(tmp_path, cache_dir=cache)
    assert validate(tmp_path, cache_dir=cache) == first
    assert [(p.line, p.column) for p in first] == [(5, 15)]
    write(tmp_path, "a.yaml", (tmp_path / "a.yaml").read_text().replace("data.x >", "data.x > 1"))
    one = shape(load_rules(tmp_path, cache_dir=cache))
    assert shape(load_rules(tmp_path, cache_dir=cache)) == one
    rule = load_rules(tmp_path, cache_dir=cache).rules[0]
    assert rule.window is not None and rule.window.end == datetime(2017, 1, 1, 10, tzinfo=UTC)
    (emit,) = rule.actions
    assert isinstance(emit, EmitAction) and emit.data is not None
    assert emit.data.render({"data": {}, "event": {}}) == {"day": "2016-10-01"}


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    (problem,) = check("rules: " + "[" * 100 + "]" * 100 + "\n")
    assert problem.endswith("error: invalid YAML: too deeply nested or too big")


def test_emit_data_must_be_an_object() -> None:
    assert check("rules:\n- name: r\n  on: a\n  then: [{emit: b, data: [1]}]\n") == [
        "rules/a.yaml:4:26: error: data must be a mapping (or one ${{ }}), got a list"
    ]
    assert check("rules:\n- name: r\n  on: a\n  then: [{emit: b, data: '${{ data }}'}]\n") == []
    assert check("defaults:\nrules:\n") == []


def test_event_data_choosing_the_program_or_host_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "version: 1\nrules:\n"
        "  - name: prog\n    on: x.y\n    then:\n"
        "      - run: ['${{ data.prog }}', '${{ data.arg }}']\n"
        "  - name: host\n    on: x.y\n    then:\n"
        "      - http: 'http://${{ data.host }}/hook'\n"
        "  - name: fine\n    on: x.y\n    then:\n"
        "      - run: [./send.sh, '${{ data.arg }}']\n"
        "      - http: 'http://127.0.0.1/hook/${{ data.id }}'\n"
    )
    problems = validate([tmp_path / "r.yaml"])
    assert [(p.rule, p.severity, p.line) for p in problems] == [
        ("prog", "warning", 6),
        ("host", "warning", 10),
    ]
    assert "argv[0]" in problems[0].message and "whoever can emit x.y" in problems[0].message
    assert load_rules(tmp_path).rule("prog") is not None  # a warning: still loaded
