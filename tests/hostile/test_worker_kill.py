"""Issue 13 §2/§3: a worker killed with SIGKILL in the middle of an attempt.

Two workers (``evflow run``) each hold a delivery when they are killed: one runs a program that
hangs (its rule allows two attempts), the other calls a webhook whose server never answers (one
attempt allowed). A new worker then:

- runs a later delivery at once: the two dead workers' leases block nothing else;
- takes each held delivery back when its lease lapses (the action's timeout + 30 s): the
  program's second attempt runs and succeeds; the webhook, whose one attempt was used, is dead
  with the reason, never called again;
- never lets ``attempts`` pass the rule's limit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import evflow_exe
from tests.fixtures.dispatch.helpers import PY, http_server, script
from tests.hostile.helpers import deliveries, ok, write_rules

pytestmark = [pytest.mark.usefixtures("each_backend"), pytest.mark.slow]

TIMEOUT = 3  # seconds: each action's timeout; a claim's lease is then 33 s


def hang(release: threading.Event) -> Callable[[BaseHTTPRequestHandler], None]:
    """A server that takes the request and never answers (until the test ends)."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        release.wait(120)

    return respond


def worker(project: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [evflow_exe(), "run", "--interval", "0.05", "--lease", "1", *extra],
        cwd=project, env=dict(os.environ), text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_for(what: Callable[[], bool], seconds: float, why: str) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds:g}s for {why}")
        time.sleep(0.01)


def by_rule() -> dict[str, dict[str, Any]]:
    return {d["rule"]: d for d in deliveries()}


def test_a_worker_killed_mid_attempt_leaves_nothing_stuck_or_over_its_limit(
    project: Path,
) -> None:
    release = threading.Event()
    started = project / "started.txt"
    # the first attempt hangs (until the test ends); the second succeeds at once
    hanging = script(
        project / "hanging.py",
        "import time\n"
        "open('started.txt', 'a').write(os.environ['EVFLOW_DELIVERY_ID'] + '\\n')\n"
        "if not os.path.exists('first-done'):\n"
        "    open('first-done', 'w').close()\n"
        "    while not os.path.exists('release') and time.sleep(0.05) is None:\n"
        "        pass\n",
    )
    quick = script(project / "quick.py", "open('quick.txt', 'a').write('ok\\n')\n")
    with http_server(hang(release)) as server:
        write_rules(
            project,
            "rules:\n"
            "  - name: retried\n    on: job.retried\n    then:\n"
            f"      - run: [{json.dumps(PY)}, {json.dumps(hanging)}]\n"
            f"        timeout: {TIMEOUT}s\n"
            "    retry: {attempts: 2, backoff: 1s}\n"
            "  - name: hook\n    on: job.hooked\n    then:\n"
            f"      - http: {json.dumps(server.url + '/hook')}\n"
            f"        timeout: {TIMEOUT}s\n"
            "    retry: {attempts: 1}\n"
            "  - name: quick\n    on: job.quick\n    then:\n"
            f"      - run: [{json.dumps(PY)}, {json.dumps(quick)}]\n",
        )
        ok("emit", "job.retried", "--no-dispatch")
        ok("emit", "job.hooked", "--no-dispatch")
        first = [worker(project), worker(project)]
        try:
            # both in the middle of their attempt (well before its timeout): kill -9 both
            wait_for(lambda: len(lines(started)) == 1 and server.count() == 1, TIMEOUT - 0.5,
                     "both deliveries to be in hand")  # fmt: skip
        finally:
            for proc in first:
                proc.send_signal(signal.SIGKILL)
            for proc in first:
                proc.wait(30)
        held = by_rule()
        assert {r: (d["status"], d["attempts"]) for r, d in held.items()} == {
            "retried": ("running", 1), "hook": ("running", 1),
        }  # fmt: skip

        # a new worker: a later delivery is not blocked by the dead workers' leases
        ok("emit", "job.quick", "--no-dispatch")
        second = worker(project, "--worker-id", "second")
        try:
            wait_for(lambda: lines(project / "quick.txt") == ["ok"], 15, "the later delivery")
            assert by_rule()["quick"]["status"] == "done"
            assert {by_rule()[r]["status"] for r in ("retried", "hook")} == {"running"}
            # the held ones are taken back once their leases lapse
            wait_for(
                lambda: all(d["status"] != "running" for d in deliveries()),
                TIMEOUT + 30 + 30,
                "the leases to lapse and the held deliveries to end",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=30)
            release.set()
            (project / "release").touch()
        assert second.returncode == 0, err
        final = by_rule()
        limits = {"retried": 2, "hook": 1, "quick": 3}
        assert all(final[r]["attempts"] <= limits[r] for r in final), final
        # the program: its second (last allowed) attempt ran and succeeded, same key as the first
        assert (final["retried"]["status"], final["retried"]["attempts"]) == ("done", 2)
        key = lines(started)
        assert len(key) == 2 and key[0] == key[1]
        # the webhook: its one attempt was used by the dead worker: dead, with the reason
        hook = final["hook"]
        assert (hook["status"], hook["attempts"]) == ("dead", 1)
        assert "attempt 1 of 1 stopped before it finished" in hook["last_error"]
        assert server.count() == 1
        assert (final["quick"]["status"], final["quick"]["attempts"]) == ("done", 1)
        # and retry brings the dead one back with a fresh attempt, as for any dead delivery
        ok("retry", str(hook["id"]))
        assert by_rule()["hook"]["status"] == "pending"
