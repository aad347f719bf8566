"""Issue 13 §3: one bad delivery never jams the worker.

Every failure of an action is the delivery's own: a NUL in an argv or env value, a header value
that is not ASCII, a template over CEL's budget, ``emit_result`` output evflow cannot record.
The delivery is failed (then dead) with the reason, ``attempts`` never passes the rule's limit,
and the worker goes on to the next delivery.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fixtures.dispatch.helpers import PY, answer, http_server, script
from tests.hostile.helpers import cli, deliveries, events, ok, write_rules

pytestmark = pytest.mark.usefixtures("each_backend")

BUDGET = "${{ data.xs.map(x, data.xs.map(y, x * y)).size() }}"


def good_rule(project: Path) -> str:
    prog = script(project / "good.py", "open('good.txt', 'a').write('ok\\n')\n")
    return (
        "  - name: good\n    on: good\n    then:\n"
        f"      - run: [{json.dumps(PY)}, {json.dumps(prog)}]\n"
    )


def emit_result_program(project: Path, stdout: str) -> str:
    path = project / "out.json"
    path.write_bytes(stdout.encode("utf-8", "surrogateescape"))
    return script(
        project / "result.py", f"sys.stdout.buffer.write(open({str(path)!r}, 'rb').read())\n"
    )


CASES = {
    "nul-in-argv": (
        "then:\n      - run: [/bin/echo, '${{ data.x }}']\n",
        {"x": "a\u0000b"},
    ),
    "nul-in-env": (
        "then:\n      - run: [/bin/true]\n        env: {X: '${{ data.x }}'}\n",
        {"x": "a\u0000b"},
    ),
    "non-ascii-header": (
        "then:\n      - http: HOOK\n        headers: {X-Name: '${{ data.x }}'}\n",
        {"x": "Zoë ☃"},
    ),
    "header-with-newline": (
        "then:\n      - http: HOOK\n        headers: {X-Name: '${{ data.x }}'}\n",
        {"x": "a\r\nX-Injected: 1"},
    ),
    "cel-budget-in-argv": (
        f"then:\n      - run: [/bin/echo, '{BUDGET}']\n",
        {"xs": list(range(3000))},
    ),
    "cel-budget-in-body": (
        f"then:\n      - http: HOOK\n        body: {{n: '{BUDGET}'}}\n",
        {"xs": list(range(3000))},
    ),
    "bad-url": (
        "then:\n      - http: 'http://${{ data.host }}/x'\n",
        {"host": "exa mple\u0000.com:99999"},
    ),
}

EMIT_RESULT_OUTPUTS = {
    "lone-surrogate": '{"s": "\\ud800"}',
    "int-over-4300-digits": '{"n": ' + "7" * 5000 + "}",
    "too-deep": '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "not-json": "hello",
    "invalid-utf8-free-text": "\udcff",
    "nan": '{"x": NaN}',
}


def run_until_settled(rounds: int = 3, pause: float = 0.4) -> None:
    """Worker rounds spaced past the rules' 200 ms backoff (240 ms at most with its jitter): each
    due retry gets its attempt."""
    for i in range(rounds):
        result = cli("run", "--once")
        assert result.exit_code == 0, result.stderr
        assert "Traceback" not in result.stderr
        if i + 1 < rounds:
            time.sleep(pause)


def check_survived(project: Path) -> None:
    listed = {d["rule"]: d for d in deliveries()}
    bad, good = listed["bad"], listed["good"]
    assert good["status"] == "done"
    assert (project / "good.txt").read_text() == "ok\n"
    assert bad["status"] == "dead", bad
    assert bad["attempts"] <= 2 and bad["last_error"], bad


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_worker_survives_a_failing_action(project: Path, case: str) -> None:
    then, data = CASES[case]
    with http_server(answer(200)) as hook:
        write_rules(
            project,
            "rules:\n  - name: bad\n    on: bad\n    "
            + then.replace("HOOK", hook.url + "/h")
            + "    retry: {attempts: 2, backoff: 200ms}\n"
            + good_rule(project),
        )
        ok("emit", "bad", "--data", json.dumps(data), "--no-dispatch")
        ok("emit", "good", "--no-dispatch")
        run_until_settled()
        check_survived(project)
        for request in hook.requests:  # nothing was smuggled into a request
            assert "X-Injected" not in request["headers"]


@pytest.mark.parametrize("output", sorted(EMIT_RESULT_OUTPUTS))
def test_the_worker_survives_emit_result_output_it_cannot_record(
    project: Path, output: str
) -> None:
    prog = emit_result_program(project, EMIT_RESULT_OUTPUTS[output])
    write_rules(
        project,
        "rules:\n  - name: bad\n    on: bad\n    then:\n"
        f"      - run: [{json.dumps(PY)}, {json.dumps(prog)}]\n        emit_result: got.result\n"
        "    retry: {attempts: 2, backoff: 200ms}\n" + good_rule(project),
    )
    ok("emit", "bad", "--no-dispatch")
    ok("emit", "good", "--no-dispatch")
    run_until_settled()
    check_survived(project)
    assert [e["type"] for e in events()] == ["bad", "good"]
    for line in ok("log", "--format", "jsonl").stdout.splitlines():
        json.loads(line)  # the log still reads back


def test_emit_dispatching_a_bad_action_reports_and_exits_0(project: Path) -> None:
    write_rules(
        project,
        "rules:\n  - name: bad\n    on: bad\n    then:\n      - run: [/bin/echo, '${{ data.x }}']\n"
        "    retry: {attempts: 2, backoff: 1s}\n",
    )
    result = cli("emit", "bad", "--data", json.dumps({"x": "a\u0000b"}))
    assert result.exit_code == 0 and "delivery failed" in result.stderr
    assert "Traceback" not in result.stderr
    [d] = deliveries()
    assert d["status"] in ("failed", "dead") and d["attempts"] == 1
