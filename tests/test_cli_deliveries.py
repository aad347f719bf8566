"""The delivery commands: deliveries, retry, redeliver, run; and emit dispatching after commit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.fixtures.dispatch.helpers import PY, jsonq, script, write_rules

# the CLI must behave the same on every backend (SQLite; PostgreSQL with EVFLOW_TEST_PG)
pytestmark = pytest.mark.usefixtures("each_backend")


def flaky_rules(project: Path, attempts: int = 1) -> None:
    prog = script(project / "p.py", "sys.exit(0 if os.path.exists('fixed') else 4)\n")
    write_rules(
        project,
        "  - name: flaky\n    on: job.queued\n    then:\n"
        f"      - run: [{jsonq(PY)}, {jsonq(prog)}]\n"
        f"    retry: {{attempts: {attempts}}}\n",
    )


def test_emit_dispatches_and_reports_failures(project: Path) -> None:
    flaky_rules(project)
    result = run_cli(["emit", "job.queued", "--id", "j1"])
    assert result.exit_code == 0
    assert "delivery failed: delivery 1 (run action 0 of rule flaky, event j1)" in result.stderr
    assert "exit 4" in result.stderr and "evflow retry 1" in result.stderr
    strict = run_cli(["emit", "job.queued", "--id", "j2", "--strict"])
    assert strict.exit_code == 1
    listed = run_cli(["deliveries", "--format", "json"])
    assert json.loads(listed.stdout) == [
        {"id": 1, "event_id": "j1", "rule": "flaky", "action": 0, "kind": "run", "status": "dead",
         "attempts": 1, "last_error": json.loads(listed.stdout)[0]["last_error"]},
        {"id": 2, "event_id": "j2", "rule": "flaky", "action": 0, "kind": "run", "status": "dead",
         "attempts": 1, "last_error": json.loads(listed.stdout)[1]["last_error"]},
    ]  # fmt: skip
    assert "exit 4" in json.loads(listed.stdout)[0]["last_error"]


def test_no_dispatch_leaves_them_to_run_once(project: Path) -> None:
    flaky_rules(project)
    (project / "fixed").touch()
    assert run_cli(["emit", "job.queued", "--no-dispatch"]).exit_code == 0
    assert json.loads(run_cli(["deliveries", "--status", "pending", "--format", "json"]).stdout)
    ran = run_cli(["run", "--once"])
    assert ran.exit_code == 0 and "done" in ran.stdout
    assert run_cli(["deliveries", "--status", "pending", "--format", "jsonl"]).stdout == ""


def test_retry_brings_a_dead_delivery_back(project: Path) -> None:
    flaky_rules(project)
    run_cli(["emit", "job.queued"])
    (project / "fixed").touch()
    assert run_cli(["retry"]).exit_code == 2
    retried = run_cli(["retry", "--dead"])
    assert retried.exit_code == 0 and "1 delivery pending" in retried.stdout
    assert run_cli(["run", "--once"]).exit_code == 0
    [d] = json.loads(run_cli(["deliveries", "--format", "json"]).stdout)
    assert (d["status"], d["attempts"], d["last_error"]) == ("done", 1, None)
    again = run_cli(["retry", "1", "7"])
    assert again.exit_code == 1
    assert (
        "delivery 1: it is done" in again.stderr and "delivery 7: no such delivery" in again.stderr
    )


def test_redeliver_skips_what_succeeded_and_covers_a_rule_added_later(project: Path) -> None:
    flaky_rules(project)
    run_cli(["emit", "job.queued", "--id", "a"])  # fails: dead
    (project / "fixed").touch()
    run_cli(["emit", "job.queued", "--id", "b"])  # done
    run_cli(["emit", "other.thing", "--id", "c"])
    dry = run_cli(["redeliver", "--rule", "flaky", "--dry-run", "--format", "json"])
    assert json.loads(dry.stdout) | {"ids": []} == {
        "rule": "flaky", "dry_run": True, "matched": 2, "created": 0, "reset": 1,
        "skipped_done": 1, "skipped_running": 0, "ids": [],
    }  # fmt: skip
    real = run_cli(["redeliver", "--rule", "flaky", "--format", "json"])
    assert json.loads(real.stdout)["ids"] == [1]
    assert run_cli(["run", "--once"]).exit_code == 0
    # a rule added later: past events get deliveries only when redelivered
    rules = (project / "rules" / "x.yaml").read_text()
    (project / "rules" / "x.yaml").write_text(
        rules + "  - name: later\n    on: job.queued\n    then:\n      - run: [/bin/true]\n"
    )
    assert json.loads(run_cli(["deliveries", "--rule", "later", "--format", "json"]).stdout) == []
    made = run_cli(["redeliver", "--rule", "later", "--since", "1", "--format", "json"])
    assert json.loads(made.stdout)["created"] == 1  # only b (seq 2): --since is exclusive
    assert run_cli(["run", "--once"]).exit_code == 0
    statuses = {
        (d["rule"], d["event_id"]): d["status"]
        for d in json.loads(run_cli(["deliveries", "--format", "json"]).stdout)
    }
    assert statuses == {("flaky", "a"): "done", ("flaky", "b"): "done", ("later", "b"): "done"}
    assert run_cli(["redeliver", "--rule", "nope"]).exit_code == 1


def test_deliveries_rejects_an_unknown_status(project: Path) -> None:
    result = run_cli(["deliveries", "--status", "lost"])
    assert result.exit_code == 2 and "--status" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sales_server() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "sales_webhook.py"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None and "listening" in proc.stderr.readline()
    yield port, proc
    proc.terminate()
    proc.wait(timeout=10)


def test_example_mail_and_sales_actions_end_to_end(
    project: Path, sales_server: tuple[int, subprocess.Popen[str]]
) -> None:
    port, proc = sales_server
    (project / "scripts").mkdir()
    mail = project / "scripts" / "send_mail.sh"
    mail.write_bytes((REPO / "scripts" / "send_mail.sh").read_bytes())
    mail.chmod(0o755)
    shop = (REPO / "evflow" / "example" / "rules" / "shop.yaml").read_text()
    (project / "rules").mkdir()
    (project / "rules" / "shop.yaml").write_text(
        shop.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    )
    data = '{"orderId": "o-1", "userid": "kim", "productId": "p-1", "orderAmt": 120}'
    result = run_cli(["emit", "order.placed", "--data", data, "--time", "2017-01-01T00:00:00Z"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert "to=kim" in (project / ".evflow" / "mail.log").read_text()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "POST /sales/notify" in line and '"orderId": "o-1"' in line
