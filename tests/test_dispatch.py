"""Claims, leases, retries and workers: delivery survives failing targets and dying workers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evflow.app import Evflow
from evflow.core.rules import Retry
from evflow.services.dispatch import Dispatcher, backoff_delay, dispatch, run_worker
from evflow.store import outbox
from tests.conftest import evflow_exe
from tests.fixtures.dispatch.helpers import PY, jsonq, script, write_rules

# a cheap action: the shell is the program here, event data never reaches it (only the env var)
APPEND_ID = '[/bin/sh, -c, \'printf "%s\\n" "$EVFLOW_DELIVERY_ID" >> ids.txt\']'


def soon(seconds: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def ids_written(project: Path) -> Counter[str]:
    path = project / "ids.txt"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def load(flow: Evflow, count: int, etype: str = "job.queued") -> None:
    flow.import_events((f"t:{i}", {"type": etype, "id": f"e{i}"}) for i in range(count))


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    retry = Retry(attempts=10, backoff=10, max_backoff=600)
    rng = random.Random(7)
    for attempt, base in [(1, 10), (2, 20), (3, 40), (4, 80)]:
        delays = [backoff_delay(retry, attempt, rng) for _ in range(50)]
        assert all(base <= d <= base * 1.2 for d in delays)
        assert len(set(delays)) > 1
    assert backoff_delay(retry, 9, rng) == 600
    assert backoff_delay(retry, 1000, rng) == 600


def test_a_delivery_is_claimed_by_one_worker_only(project: Path, db_url: str) -> None:
    write_rules(project, "  - name: r\n    on: job.queued\n    then:\n      - run: [/bin/true]\n")
    with Evflow(db=db_url, rules=project / "rules") as flow:
        load(flow, 1)
        [d] = flow.store.deliveries()
        now = "9999-01-01T00:00:00.000000Z"
        until = "9999-01-01T00:01:00.000000Z"
        assert outbox.claim(flow.store, d.id, "a", now, until)
        assert not outbox.claim(flow.store, d.id, "b", now, until)
        # the lease lapses: another worker may take it, and the first can no longer record
        later = "9999-01-01T00:02:00.000000Z"
        assert outbox.claim(flow.store, d.id, "b", later, "9999-01-01T00:03:00.000000Z")
        assert not outbox.finish(flow.store, d.id, "a", later, "done")
        assert outbox.finish(flow.store, d.id, "b", later, "done")
        [d] = flow.store.deliveries()
        assert (d.status, d.attempts, d.lease_owner) == ("done", 2, None)


def test_failures_back_off_then_die_and_retry_brings_them_back(project: Path, db_url: str) -> None:
    flag = project / "fixed"
    prog = script(project / "p.py", f"sys.exit(0 if os.path.exists({str(flag)!r}) else 7)\n")
    write_rules(
        project,
        f"  - name: r\n    on: job.queued\n    then:\n      - run: [{jsonq(PY)}, {jsonq(prog)}]\n"
        "    retry: {attempts: 2, backoff: 1m, max_backoff: 5m}\n",
    )
    with Evflow(db=db_url, rules=project / "rules") as flow:
        load(flow, 1)
        t = soon()
        [r1] = dispatch(flow.store, flow.ruleset, now=t)
        assert (r1.status, r1.attempts) == ("failed", 1)
        assert r1.next_attempt_at is not None and "attempt 1 of 2" in r1.describe()
        [r2] = dispatch(flow.store, flow.ruleset, now=t + timedelta(minutes=2))
        assert (r2.status, r2.attempts) == ("dead", 2) and "exit 7" in (r2.error or "")
        assert dispatch(flow.store, flow.ruleset, now=t + timedelta(days=1)) == []
        from evflow.services.control import retry

        flag.touch()
        report = retry(flow.store, dead=True)
        assert report.requeued == [r1.id]
        [r3] = dispatch(flow.store, flow.ruleset, now=t + timedelta(days=1))
        assert r3.ok and r3.attempts == 1
        [d] = flow.store.deliveries()
        assert d.status == "done" and d.last_error is None


def test_a_rule_that_is_gone_fails_its_deliveries_until_the_last_attempt(
    project: Path, db_url: str
) -> None:
    """Retried, not dead at once: the rule may come back (a worker reloads changed rules)."""
    write_rules(project, "  - name: old\n    on: job.queued\n    then:\n      - run: [/bin/true]\n")
    with Evflow(db=db_url, rules=project / "rules") as flow:
        load(flow, 1)
    write_rules(project, "  - name: new\n    on: other\n    then:\n      - run: [/bin/true]\n")
    with Evflow(db=db_url, rules=project / "rules") as flow:
        [r] = dispatch(flow.store, flow.ruleset, now=soon())
        assert r.status == "failed" and "rule old no longer exists" in (r.error or "")
        later = [soon(86_400), soon(2 * 86_400)]
        statuses = [dispatch(flow.store, flow.ruleset, now=t)[0].status for t in later]
        assert statuses == ["failed", "dead"]


def test_stop_lets_the_action_in_hand_finish(project: Path, db_url: str) -> None:
    write_rules(project, f"  - name: r\n    on: job.queued\n    then:\n      - run: {APPEND_ID}\n")
    with Evflow(db=db_url, rules=project / "rules") as flow:
        load(flow, 5)
        stop = threading.Event()

        def on_start(delivery_id: int | None) -> None:
            if delivery_id is not None:
                stop.set()  # as a signal handler would, while the first action is in hand

        run_worker(flow.store, flow.ruleset, stop=stop, on_start=on_start, interval=0.01)
        statuses = Counter(d.status for d in flow.store.deliveries())
        assert statuses == {"done": 1, "pending": 4}
        assert sum(ids_written(project).values()) == 1


def test_worker_killed_mid_batch_loses_nothing(project: Path, db_url: str) -> None:
    slow = '[/bin/sh, -c, \'sleep 0.05; printf "%s\\n" "$EVFLOW_DELIVERY_ID" >> ids.txt\']'
    rules = write_rules(
        project, f"  - name: r\n    on: job.queued\n    then:\n      - run: {slow}\n"
    )
    with Evflow(db=db_url, rules=rules) as flow:
        load(flow, 30)
    worker = subprocess.Popen(
        [evflow_exe(), "--db", db_url, "--rules", str(rules), "run", "--interval", "0.05"],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while sum(ids_written(project).values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    time.sleep(0.3)  # an orphaned program of the dead worker may still be finishing
    with Evflow(db=db_url, rules=rules) as flow:
        in_hand = {d.idempotency_key for d in flow.store.deliveries(status="running")}
        assert len(in_hand) <= 1
        assert Counter(d.status for d in flow.store.deliveries())["done"] >= 4
        # the next worker takes the rest, and the one in hand once its lease has lapsed
        dispatch(flow.store, flow.ruleset, now=soon(3600))
        deliveries = flow.store.deliveries()
        assert all(d.status == "done" for d in deliveries)
        written = ids_written(project)
        assert set(written) == {d.idempotency_key for d in deliveries}
        assert {key for key, n in written.items() if n > 1} <= in_hand


def test_two_workers_drain_a_thousand_deliveries_each_once(project: Path, db_url: str) -> None:
    rules = write_rules(
        project, f"  - name: r\n    on: job.queued\n    then:\n      - run: {APPEND_ID}\n"
    )
    with Evflow(db=db_url, rules=rules) as flow:
        load(flow, 1000)
    workers = [
        subprocess.Popen(
            [
                evflow_exe(),
                "--db",
                db_url,
                "--rules",
                str(rules),
                "run",
                "--once",
                "--worker-id",
                name,
                "--format",
                "jsonl",
            ],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in ("w1", "w2")
    ]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    written = ids_written(project)
    assert len(written) == 1000 and set(written.values()) == {1}
    per_worker = [len(out.splitlines()) for out, _ in outputs]
    assert sum(per_worker) == 1000
    with Evflow(db=db_url, rules=rules) as flow:
        assert Counter(d.status for d in flow.store.deliveries()) == {"done": 1000}
        assert {d.attempts for d in flow.store.deliveries()} == {1}


def test_run_ids_skips_deliveries_that_are_not_due(project: Path, db_url: str) -> None:
    write_rules(project, f"  - name: r\n    on: job.queued\n    then:\n      - run: {APPEND_ID}\n")
    with Evflow(db=db_url, rules=project / "rules") as flow:
        load(flow, 2)
        first, second = flow.store.deliveries()
        worker = Dispatcher(flow.store, flow.ruleset, worker_id="solo")
        assert [r.id for r in worker.run_ids([first.id], now=soon())] == [first.id]
        assert worker.run_ids([first.id], now=soon()) == []  # done already
        assert [r.id for r in worker.run_ids([second.id, 999], now=soon())] == [second.id]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_exits_cleanly_on_a_signal(project: Path, signum: int) -> None:
    rules = write_rules(
        project, "  - name: r\n    on: job.queued\n    then:\n      - run: [/bin/true]\n"
    )
    worker = subprocess.Popen(
        [evflow_exe(), "--rules", str(rules), "run", "--interval", "0.05"],
        cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert worker.stderr is not None
    assert "polling every" in worker.stderr.readline()  # handlers are installed
    worker.send_signal(signum)
    out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err


def test_a_running_worker_picks_up_changed_rule_files(project: Path) -> None:
    """A rule added (or an action edited) after `evflow run` started is used, not killed."""
    rules = write_rules(project, "  - {name: old, on: a.x, then: [{emit: a.y}]}\n")
    worker = Evflow(db=str(project / "w.db"), rules=rules)
    assert [r.name for r in worker.ruleset.rules] == ["old"]
    mark = project / "ran.txt"
    prog = script(project / "p.py", f"open({str(mark)!r}, 'a').write('NEW')\n")
    (rules / "y.yaml").write_text(
        f"version: 1\nrules:\n  - {{name: added-later, on: n.x, then: [{{run: [{PY}, {prog}]}}]}}\n"
    )
    with Evflow(db=str(project / "w.db"), rules=rules) as emitter:
        emitter.emit({"type": "n.x"})  # records the delivery; the worker is to run it
    run_worker(worker.store, worker.ruleset, once=True, refresh=worker.refresh_rules)
    assert mark.read_text() == "NEW"
    assert [d.status for d in worker.store.deliveries()] == ["done"]


def test_an_invalid_edit_keeps_the_rules_loaded_before(project: Path) -> None:
    from evflow.errors import InvalidRules

    rules = write_rules(project, "  - {name: old, on: a.x, then: [{emit: a.y}]}\n")
    flow = Evflow(db=str(project / "w.db"), rules=rules)
    assert [r.name for r in flow.ruleset.rules] == ["old"]
    (rules / "x.yaml").write_text("version: 1\nrules:\n  - {name: old, on: a.x, thn: []}\n")
    with pytest.raises(InvalidRules):
        flow.refresh_rules()
    assert [r.name for r in flow.refresh_rules().rules] == ["old"]  # reported once, kept
