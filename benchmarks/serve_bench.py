"""``evflow serve`` under load: requests/s and latency over HTTP, against ``evflow emit``.

    .venv/bin/python benchmarks/serve_bench.py [--clients 8] [--singles 2000] [--batches 40]
                                               [--db-url URL] [--rules empty|example]
                                               [--json out.json]

A real server (``evflow serve`` on a free loopback port, in a fresh temp dir) and an httpx client
pool (one keep-alive connection per client thread) posting CloudEvents in structured mode: single
events, then batches of 100. Every request is checked (201) and, at the end, the log is checked to
hold every event once with gapless seqs. The comparison is ``evflow emit --no-dispatch`` as a
whole process, run one after the other and ``--clients`` at a time. A report, not a test:
nothing here asserts a timing. Traffic goes to 127.0.0.1 only; every loop is bounded by count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EVFLOW = os.environ.get("EVFLOW_BENCH_BIN") or str(Path(sys.executable).parent / "evflow")
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def event(client: int, n: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"c{client}-{n}",
        "source": "https://bench.example/orders",
        "type": "order.placed",
        "time": "2026-11-30T10:00:00Z",
        "subject": f"o-{client}-{n}",
        "data": {"orderId": f"o-{client}-{n}", "userid": f"u{n % 97}", "productId": "p-7",
                 "orderAmt": 20 + n % 200},
    }  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_clients(url: str, clients: int, requests: int, batch: int, offset: int) -> dict[str, Any]:
    """``clients`` threads share ``requests`` POSTs of ``batch`` events each (1: structured)."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def work(c: int) -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=120) as http:
            for r in range(per_client):
                if batch == 1:
                    body = json.dumps(event(c, offset + r))
                    headers = STRUCTURED
                else:
                    first = offset + r * batch
                    body = json.dumps([event(c, first + i) for i in range(batch)])
                    headers = BATCH
                start = time.perf_counter()
                answer = http.post("/events", content=body, headers=headers)
                mine.append(time.perf_counter() - start)
                if answer.status_code != 201:
                    raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")
        with lock:
            latencies.extend(mine)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    wall = time.perf_counter() - start
    done = per_client * clients
    return {
        "requests": done,
        "events": done * batch,
        "seconds": round(wall, 3),
        "requests_per_s": round(done / wall, 1),
        "events_per_s": round(done * batch / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def emit_processes(folder: Path, db: str, runs: int, parallel: int) -> dict[str, Any]:
    """``evflow emit`` as a whole process, ``parallel`` at a time, ``runs`` in all."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        data = json.dumps(event(999, n)["data"])
        argv = [EVFLOW, "--db", db, "emit", "order.placed", "--data", data, "--id", f"emit-{n}",
                "--source", "https://bench.example/cli", "--no-dispatch"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(argv, cwd=folder, check=True, capture_output=True)
        with lock:
            latencies.append(time.perf_counter() - start)

    one(-1)  # warm-up: the rules cache, the page cache
    latencies.clear()
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(runs)))
    wall = time.perf_counter() - start
    return {
        "requests": runs,
        "events": runs,
        "seconds": round(wall, 3),
        "requests_per_s": round(runs / wall, 1),
        "events_per_s": round(runs / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def check_log(url: str, expected: int) -> str:
    with (
        httpx.Client(base_url=url, timeout=300) as http,
        http.stream("GET", "/events", headers={"Accept": "application/x-ndjson"}) as r,
    ):
        seqs = [json.loads(line)["seq"] for line in r.iter_lines() if line]
        ids_ok = len(seqs) >= expected
    gapless = seqs == list(range(1, len(seqs) + 1))
    return "ok" if gapless and ids_ok else f"CHECK FAILED ({len(seqs)} events, gapless={gapless})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--singles", type=int, default=2000, help="single-event requests")
    parser.add_argument("--batches", type=int, default=40, help="requests of 100 events")
    parser.add_argument("--emits", type=int, default=40, help="evflow emit processes")
    parser.add_argument("--db-url", default=None, help="default: SQLite in the temp dir")
    parser.add_argument("--rules", choices=("empty", "example"), default="example")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="evflow-serve-bench-"))
    try:
        rules = folder / "rules"
        if args.rules == "example":  # the shop: derived events and deliveries on each order
            subprocess.run([EVFLOW, "init"], cwd=folder, check=True, capture_output=True)
        else:
            rules.mkdir()
        db = args.db_url or str(folder / "serve.db")
        emit_db = args.db_url or str(folder / "emit.db")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [EVFLOW, "--db", db, "serve", "--port", str(port), "--max-body", str(8 << 20)],
            cwd=folder, stdout=log, stderr=log,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            rows = {}
            rows["HTTP, single events"] = run_clients(url, args.clients, args.singles, 1, 0)
            rows["HTTP, batches of 100"] = run_clients(url, args.clients, args.batches, 100, 10**6)
            expected = (
                rows["HTTP, single events"]["events"] + rows["HTTP, batches of 100"]["events"]
            )
            check = check_log(url, expected)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            log.close()
        rows["evflow emit, one process at a time"] = emit_processes(folder, emit_db, args.emits, 1)
        rows[f"evflow emit, {args.clients} processes at a time"] = emit_processes(
            folder, emit_db, args.emits, args.clients
        )
        load = os.getloadavg()
        print(
            f"evflow serve benchmark: Python {platform.python_version()}, {os.cpu_count()} CPUs,"
            f" load {load[0]:.2f}, rules: {args.rules},"
            f" database: {'PostgreSQL' if args.db_url else 'SQLite'}, clients: {args.clients}"
        )
        print(f"log check after the HTTP rows: {check}")
        header = (
            f"{'row':44} {'requests':>8} {'events/s':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        )
        print(header)
        for name, r in rows.items():
            print(f"{name:44} {r['requests']:>8} {r['events_per_s']:>9} {r['requests_per_s']:>8}"
                  f" {r['p50_ms']:>8} {r['p99_ms']:>8}")  # fmt: skip
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "check": check}, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
