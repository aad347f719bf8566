"""Running one action: real programs written by the tests, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evflow.app import Evflow
from evflow.services.dispatch import dispatch
from tests.fixtures.dispatch.helpers import PY, jsonq, script, webhook, write_rules


def soon(seconds: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def flow_with(project: Path, db_url: str, rules: str) -> Evflow:
    write_rules(project, rules)
    return Evflow(db=db_url, rules=project / "rules")


def test_run_passes_argv_env_stdin_and_runs_in_the_project_folder(
    project: Path, db_url: str
) -> None:
    prog = script(
        project / "probe.py",
        "json.dump({'argv': sys.argv[1:], 'stdin': sys.stdin.read(), 'cwd': os.getcwd(),"
        " 'env': {k: v for k, v in os.environ.items() if k.startswith(('EVFLOW_', 'X_'))}},"
        " open(os.environ['OUT'], 'w'))\n",
    )
    out = project / "out.json"
    rules = f"""
  - name: probe
    on: order.placed
    then:
      - run: [{jsonq(PY)}, {jsonq(prog)}, "${{{{ data.orderId }}}}", "n=${{{{ data.n }}}}",
              "${{{{ data.n }}}}"]
        env: {{OUT: {jsonq(str(out))}, X_USER: "${{{{ data.user }}}}"}}
"""
    with flow_with(project, db_url, rules) as flow:
        outcome = flow.emit(
            {"type": "order.placed", "id": "e1", "data": {"orderId": "o-1", "n": 5, "user": "kim"}}
        )
        [result] = dispatch(flow.store, flow.ruleset, [d["id"] for d in outcome.deliveries])
        assert result.ok, result.error
        seen = json.loads(out.read_text())
        assert seen["argv"] == ["o-1", "n=5", "5"]
        assert json.loads(seen["stdin"])["id"] == "e1"
        assert Path(seen["cwd"]) == project
        seen["env"].pop("EVFLOW_TEST_PG", None)
        seen["env"].pop("EVFLOW_CEILING_DIRECTORIES", None)  # set by tests/conftest.py
        assert seen["env"] == {
            "EVFLOW_DELIVERY_ID": "e1:probe:0",
            "EVFLOW_EVENT_ID": "e1",
            "EVFLOW_EVENT_TYPE": "order.placed",
            "X_USER": "kim",
        }
        [d] = flow.store.deliveries()
        assert (d.status, d.attempts, d.last_error) == ("done", 1, None)


def test_shell_metacharacters_reach_the_program_literally(
    project: Path, db_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    nasty = ['"; rm -rf / #"', f"$(touch {marker})", f"`touch {marker}`; touch {marker}"]
    prog = script(
        project / "echo.py",
        "json.dump({'argv': sys.argv[1:], 'env': os.environ['NASTY'], 'stdin': sys.stdin.read()},"
        " open('seen.json', 'w'))\n",
    )
    rules = f"""
  - name: echo
    on: x.y
    then:
      - run: [{jsonq(PY)}, {jsonq(prog)}, "${{{{ data.a }}}}", "${{{{ data.b }}}}",
              "${{{{ data.c }}}}"]
        env: {{NASTY: "${{{{ data.b }}}}"}}
        stdin: "${{{{ data.a }}}}"
"""
    with flow_with(project, db_url, rules) as flow:
        outcome = flow.emit({"type": "x.y", "data": dict(zip("abc", nasty, strict=True))})
        [result] = dispatch(flow.store, flow.ruleset, [d["id"] for d in outcome.deliveries])
    assert result.ok, result.error
    seen = json.loads((project / "seen.json").read_text())
    assert seen == {"argv": nasty, "env": nasty[1], "stdin": nasty[0]}
    assert not marker.exists()


def test_non_zero_exit_keeps_the_tail_of_stderr(project: Path, db_url: str) -> None:
    prog = script(
        project / "fail.py", "sys.stderr.write('x' * 5000 + 'smtp refused'); sys.exit(3)\n"
    )
    rules = f"""
  - name: failing
    on: x.y
    then:
      - run: [{jsonq(PY)}, {jsonq(prog)}]
"""
    with flow_with(project, db_url, rules) as flow:
        flow.emit({"type": "x.y"})
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
        assert result.status == "failed"
        assert result.error is not None and result.error.endswith(
            "exit 3: " + "x" * 988 + "smtp refused"
        )
        [d] = flow.store.deliveries()
        assert d.status == "failed" and d.attempts == 1 and d.last_error == result.error


def test_the_longest_timeout_runs_the_program(project: Path, db_url: str) -> None:
    """24d, the most a rule may say, is a wait the OS takes (25d used to fail each delivery
    with an OverflowError; it is refused when the rules load now)."""
    rules = (
        "\n  - name: long\n    on: x.y\n    then:\n      - run: [/bin/true]\n        timeout: 24d\n"
    )
    with flow_with(project, db_url, rules) as flow:
        flow.emit({"type": "x.y"})
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
        assert result.status == "done", result.error


def test_timeout_kills_the_whole_process_group(project: Path, db_url: str) -> None:
    late = project / "late.txt"
    child = f"import time; time.sleep(1.0); open({str(late)!r}, 'w').write('too late')"
    prog = script(
        project / "slow.py",
        "import subprocess, time\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(30)\n",
    )
    rules = f"""
  - name: slow
    on: x.y
    then:
      - run: [{jsonq(PY)}, {jsonq(prog)}]
        timeout: 0.5s
"""
    with flow_with(project, db_url, rules) as flow:
        flow.emit({"type": "x.y"})
        started = time.monotonic()
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
        assert time.monotonic() - started < 10
    assert result.status == "failed"
    assert "timed out after 0.5s" in (result.error or "")
    time.sleep(1.5)  # longer than the grandchild would have waited
    assert not late.exists()


def test_the_exit_of_a_program_that_closed_its_output_is_awaited_without_polling(
    project: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a program's output ends, the worker waits for its exit in poll() on a pidfd: Popen's
    own timed wait polls waitpid with sleeps that double up to 50 ms (issue 16). A program that
    closes its output and lives on is still timed out and its group killed."""
    quiet = script(
        project / "quiet.py", "import os, time\nos.close(1); os.close(2)\ntime.sleep(0.3)\n"
    )
    hang = script(
        project / "hang.py", "import os, time\nos.close(1); os.close(2)\ntime.sleep(30)\n"
    )
    rules = f"""
  - name: quiet
    on: x.quiet
    then:
      - run: [{jsonq(PY)}, {jsonq(quiet)}]
  - name: hang
    on: x.hang
    then:
      - run: [{jsonq(PY)}, {jsonq(hang)}]
        timeout: 0.5s
"""

    def no_sleeping(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}s waiting for a program")

    with flow_with(project, db_url, rules) as flow:
        flow.emit({"type": "x.quiet"})
        monkeypatch.setattr(subprocess.time, "sleep", no_sleeping)  # Popen's polling wait
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
        monkeypatch.undo()
        assert result.status == "done", result.error
        flow.emit({"type": "x.hang"})
        started = time.monotonic()
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
        assert time.monotonic() - started < 10
    assert result.status == "failed"
    assert "timed out after 0.5s" in (result.error or "")


def test_emit_result_appends_a_derived_event_once(project: Path, db_url: str) -> None:
    prog = script(
        project / "quote.py",
        "ev = json.load(sys.stdin); print(json.dumps({'quoted': ev['data']['n'] * 2}))\n",
    )
    rules = f"""
  - name: quote
    on: quote.asked
    then:
      - run: [{jsonq(PY)}, {jsonq(prog)}]
        emit_result: quote.given
"""
    with flow_with(project, db_url, rules) as flow:
        cause = flow.emit({"type": "quote.asked", "id": "q1", "data": {"n": 21}}).event
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
        assert result.ok and len(result.derived) == 1
        [derived] = flow.store.caused_by("q1")
        assert derived["type"] == "quote.given" and derived["data"] == {"quoted": 42}
        assert derived["correlationid"] == "q1" and derived["evflowrule"] == "quote"
        assert derived["time"] == cause["time"]
        # a delivery that runs again (a worker died before recording it) appends nothing new
        flow.store.execute("UPDATE deliveries SET status = 'pending', next_attempt_at = created_at")
        [again] = dispatch(flow.store, flow.ruleset, now=soon(2))
        assert again.ok and again.derived == result.derived
        assert len(flow.store.caused_by("q1")) == 1


def test_emit_result_that_is_not_an_object_fails(project: Path, db_url: str) -> None:
    prog = script(project / "bad.py", "print('[1, 2]')\n")
    rules = f"""
  - name: bad
    on: x.y
    then:
      - run: [{jsonq(PY)}, {jsonq(prog)}]
        emit_result: x.done
"""
    with flow_with(project, db_url, rules) as flow:
        flow.emit({"type": "x.y"})
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
    assert result.status == "failed" and "must be a JSON object" in (result.error or "")


def test_missing_program_is_a_failure_not_a_crash(project: Path, db_url: str) -> None:
    rules = """
  - name: nothing
    on: x.y
    then:
      - run: [./no-such-program]
"""
    with flow_with(project, db_url, rules) as flow:
        flow.emit({"type": "x.y"})
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
    assert result.status == "failed" and "cannot run ./no-such-program" in (result.error or "")


def test_http_sends_templated_body_and_idempotency_key(project: Path, db_url: str) -> None:
    with webhook() as hook:
        rules = f"""
  - name: sales
    on: order.placed
    then:
      - http: {hook.url}/sales/${{{{ data.orderId }}}}
        headers: {{X-Team: sales}}
        body: {{orderId: "${{{{ data.orderId }}}}", amount: "${{{{ data.amt }}}}"}}
      - http: {hook.url}/raw
"""
        with flow_with(project, db_url, rules) as flow:
            flow.emit({"type": "order.placed", "id": "o9", "data": {"orderId": "o-9", "amt": 120}})
            results = dispatch(flow.store, flow.ruleset, now=soon())
        assert [r.status for r in results] == ["done", "done"]
        first, second = sorted(hook.requests, key=lambda r: r["path"])
        assert second["path"] == "/sales/o-9"
        assert json.loads(second["body"]) == {"orderId": "o-9", "amount": 120}
        assert second["headers"]["Idempotency-Key"] == "o9:sales:0"
        assert second["headers"]["X-Team"] == "sales"
        assert json.loads(first["body"])["id"] == "o9"  # the default body: the event JSON
        assert first["headers"]["Idempotency-Key"] == "o9:sales:1"


def test_http_500_then_200_is_retried_after_the_backoff(project: Path, db_url: str) -> None:
    with webhook() as hook:
        hook.answers = [(500, "database down, try later")]
        rules = f"""
  - name: sales
    on: order.placed
    then:
      - http: {hook.url}/notify
    retry: {{attempts: 3, backoff: 10s, max_backoff: 1m}}
"""
        with flow_with(project, db_url, rules) as flow:
            flow.emit({"type": "order.placed"})
            t0 = soon()
            [first] = dispatch(flow.store, flow.ruleset, now=t0)
            assert first.status == "failed"
            assert first.error is not None and first.error.endswith(
                "HTTP 500: database down, try later"
            )
            # not due before the backoff
            assert dispatch(flow.store, flow.ruleset, now=t0 + timedelta(seconds=9)) == []
            [second] = dispatch(flow.store, flow.ruleset, now=t0 + timedelta(seconds=13))
            assert second.ok and second.attempts == 2
            [d] = flow.store.deliveries()
            assert d.status == "done"
        assert len(hook.requests) == 2
        assert (
            hook.requests[0]["headers"]["Idempotency-Key"]
            == hook.requests[1]["headers"]["Idempotency-Key"]
        )


def test_http_unreachable_is_a_failure(project: Path, db_url: str) -> None:
    rules = """
  - name: nowhere
    on: x.y
    then:
      - http: http://127.0.0.1:9/x
        timeout: 2s
"""
    with flow_with(project, db_url, rules) as flow:
        flow.emit({"type": "x.y"})
        [result] = dispatch(flow.store, flow.ruleset, now=soon())
    assert result.status == "failed" and "ConnectError" in (result.error or "")


def test_webhook_passwords_are_never_printed_or_stored(project: Path) -> None:
    from evflow.core.text import redact

    assert redact("http://alice:Sup3rSecret@127.0.0.1:9/notify?to=a@b") == (
        "http://alice:***@127.0.0.1:9/notify?to=a@b"
    )
    assert redact("http://127.0.0.1:8080/x?email=a@b") == "http://127.0.0.1:8080/x?email=a@b"
    write_rules(
        project,
        "  - {name: hook, on: h.x, then: [{http: 'http://alice:Sup3rSecret@127.0.0.1:9/n'}]}\n",
    )
    from tests.conftest import run_cli

    r = run_cli(["emit", "h.x"])
    assert "Sup3rSecret" not in r.stderr and "alice:***@" in r.stderr
    for args in (
        ["deliveries", "--format", "json"],
        ["rules", "list", "--format", "json"],
        ["rules", "graph"],
    ):
        out = run_cli(args).stdout
        assert "Sup3rSecret" not in out, args


def test_an_encoded_answer_body_decodes_no_further_than_the_cap() -> None:
    import gzip
    import zlib

    from evflow.services.actions import MAX_BODY, body_text

    text = "database down " * 10
    assert body_text(gzip.compress(text.encode()), "gzip") == text
    assert body_text(zlib.compress(text.encode()), "deflate") == text
    raw = zlib.compressobj(wbits=-15)
    assert body_text(raw.compress(text.encode()) + raw.flush(), "Deflate") == text
    assert len(body_text(gzip.compress(bytes(10 * MAX_BODY)), "gzip")) == MAX_BODY
    assert body_text(b"\x00garbage", "gzip") == "(gzip-encoded body that does not decode)"
    assert body_text(b"...", "br") == "(br-encoded body)"
    assert body_text(b"plain", "") == "plain"
