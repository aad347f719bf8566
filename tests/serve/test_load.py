"""Ingest under concurrency: gapless seq, no duplicates, nothing lost on SIGTERM.

Bounded loads (counts, not durations) on loopback only; timings are measured by
``benchmarks/serve_bench.py``, never asserted here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_process
from tests.serve.ce import make, post_structured
from tests.serve.server import Server, serve

CLIENTS = 8
PER_CLIENT = 200


def _send_all(url: str, client_no: int, count: int) -> list[tuple[str, int]]:
    """POST ``count`` events on one keep-alive connection; the (id, seq) of each answer."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(count):
            event = make("load.tick", {"client": client_no, "i": i}, id=f"c{client_no}-{i}")
            r = post_structured(c, event)
            assert r.status_code == 201, r.text
            out.append((r.json()["id"], r.json()["seq"]))
    return out


def _all_events(server: Server) -> list[dict]:
    with (
        server.client() as c,
        c.stream("GET", "/events", headers={"Accept": "application/x-ndjson"}) as r,
    ):
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line]


def _check_gapless(answers: list[tuple[str, int]], events: list[dict], total: int) -> None:
    assert len(answers) == total
    assert len({seq for _, seq in answers}) == total  # no two answers share a seq
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, total + 1))
    assert sorted(e["id"] for e in events) == sorted(i for i, _ in answers)
    by_id = {e["id"]: e["seq"] for e in events}
    assert all(by_id[i] == seq for i, seq in answers)  # each answer told the truth


@pytest.mark.slow
def test_concurrent_clients_get_gapless_seqs(bare: Path, db_url: str) -> None:
    with serve(bare, db=db_url) as s:
        with ThreadPoolExecutor(CLIENTS) as pool:
            parts = list(pool.map(lambda n: _send_all(s.url, n, PER_CLIENT), range(CLIENTS)))
        answers = [a for part in parts for a in part]
        _check_gapless(answers, _all_events(s), CLIENTS * PER_CLIENT)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("EVFLOW_TEST_PG"), reason="needs EVFLOW_TEST_PG")
def test_two_servers_share_one_postgres_log(bare: Path) -> None:
    from tests.pg import fresh_schema_url

    with fresh_schema_url() as url, serve(bare, db=url) as a, serve(bare, db=url) as b:
        urls = [a.url, b.url] * (CLIENTS // 2)
        with ThreadPoolExecutor(CLIENTS) as pool:
            parts = list(pool.map(lambda n: _send_all(urls[n], n, 100), range(CLIENTS)))
        answers = [x for part in parts for x in part]
        _check_gapless(answers, _all_events(a), CLIENTS * 100)
        assert _all_events(b) == _all_events(a)


@pytest.mark.slow
def test_sigterm_mid_load_loses_nothing_answered(bare: Path, db_url: str) -> None:
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(url: str, n: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                for i in range(400):
                    if stop.is_set():
                        return
                    event = make("load.term", {"client": n, "i": i}, id=f"t{n}-{i}")
                    r = post_structured(c, event)
                    if r.status_code in (200, 201):
                        with lock:
                            acked.append(event.get_id())
                    else:
                        assert r.status_code == 503, r.text  # shutting down: said so
        except httpx.TransportError:
            return  # the server went away: this request was never answered 2xx

    with serve(bare, db=db_url) as s:
        threads = [threading.Thread(target=client, args=(s.url, n)) for n in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < 150 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(acked) >= 150, "the load never got going"
        code = s.terminate(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert code == 0, s.stderr()
        assert "Traceback" not in s.stderr()

    p = run_process(["--db", db_url, "log", "--format", "jsonl"], bare)
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    recorded = {e["id"]: e for e in events}
    missing = [i for i in acked if i not in recorded]
    assert missing == []
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for e in events:  # whole: nothing half-written
        client_no, i = e["id"][1:].split("-")
        assert e["data"] == {"client": int(client_no), "i": int(i)}


def test_a_bad_event_among_concurrent_ones_is_refused_alone(bare: Path) -> None:
    """Events that arrive together may be committed together: one refused event must not take
    the others with it, nor take their place."""

    def send(n: int) -> tuple[int, int]:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            bad = n % 4 == 0
            body = make("mixed.load", {"n": n}, id=f"m-{n}")
            r = post_structured(c, body) if not bad else c.post(
                "/events",
                headers={"Content-Type": "application/cloudevents+json"},
                content=json.dumps({"specversion": "1.0", "id": f"m-{n}", "source": "/s",
                                    "type": "mixed.load", "time": "not a time"}),
            )  # fmt: skip
            return n, r.status_code

    with serve(bare) as s:
        with ThreadPoolExecutor(8) as pool:
            answers = dict(pool.map(send, range(64)))
        events = _all_events(s)
    assert {n for n, status in answers.items() if status == 400} == set(range(0, 64, 4))
    assert all(status == 201 for n, status in answers.items() if n % 4)
    assert sorted(e["data"]["n"] for e in events) == [n for n in range(64) if n % 4]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
