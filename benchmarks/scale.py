"""Costs that grow with the log or with the number of writers (issue 16), one measure at a time.

    .venv/bin/python benchmarks/scale.py emitters [--k 1,2,4,8] [--per 10] [--db-url URL]
    .venv/bin/python benchmarks/scale.py worker [--n 1000]
    .venv/bin/python benchmarks/scale.py asof [--events 200000] [--db-url URL]
    .venv/bin/python benchmarks/scale.py import-lock [--events 200000] [--db-url URL]
    .venv/bin/python benchmarks/scale.py rebuild [--events 100000,400000]

- ``emitters``: K processes each run ``evflow emit`` PER times in a row (empty rules folder,
  ``--no-dispatch``) against one database; events/s over the wall time, failed emits, and the
  client CPU per emit (user+sys of the children / emits).
- ``worker``: N pending deliveries of a ``run: [true]`` rule, drained by one ``evflow run
  --once``; deliveries/s, against the rate at which this Python spawns and reaps ``true``.
- ``asof``: ``evflow query members --as-of SEQ`` at 10%, 50% and 90% of a log of EVENTS events
  (after a ``replay``, so any stored snapshots exist), and the same with a time.
- ``import-lock``: an ``evflow emit`` started one second into an ``evflow import`` of EVENTS
  events: how long it waited and whether it failed.
- ``rebuild``: ``evflow replay --rebuild`` per event at each log size (flat is the goal).

Every figure is one run on a shared machine: the output says the load. A report, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from generate import write_jsonl  # benchmarks/ is sys.path[0] when run as a script

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EVFLOW = os.environ.get("EVFLOW_BENCH_BIN") or str(Path(sys.executable).parent / "evflow")
EMIT_DATA = json.dumps({"orderId": "1001", "userid": "u1", "productId": "p-7", "orderAmt": 120})


def env() -> dict[str, str]:
    e = {**os.environ, "NO_COLOR": "1"}
    for name in ("EVFLOW_DB", "EVFLOW_RULES", "PYTHONDONTWRITEBYTECODE"):
        e.pop(name, None)
    return e


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def note(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


class Dbs:
    """Fresh SQLite files in a temp dir, or fresh schemas in a PostgreSQL database."""

    def __init__(self, tmp: Path, url: str | None) -> None:
        self.tmp, self.url, self.schemas = tmp, url, []  # type: ignore[var-annotated]

    def new(self, name: str) -> str:
        if self.url:
            schema = f"evflow_scale_{name}_{os.getpid()}".replace("-", "_")
            self.schemas.append(schema)
            sep = "&" if "?" in self.url else "?"
            return f"{self.url}{sep}schema={schema}"
        folder = self.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / "evflow.db")

    def drop(self) -> None:
        if not self.url or not self.schemas:
            return
        import psycopg

        with psycopg.connect(self.url.split("?", 1)[0], autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def evflow(db: str, rules: Path, *args: str) -> list[str]:
    return [EVFLOW, "--db", db, "--rules", str(rules), *args]


def check(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}… exited {proc.returncode}: {proc.stderr[-500:]}")
    return proc


# -- measures -------------------------------------------------------------------------------------


def emitters(tmp: Path, dbs: Dbs, ks: list[int], per: int) -> list[dict[str, Any]]:
    empty = tmp / "empty-rules"
    empty.mkdir(exist_ok=True)
    worker = (
        "import subprocess, sys, json\n"
        "cmd = json.loads(sys.argv[1]); n = int(sys.argv[2]); bad = 0\n"
        "for _ in range(n):\n"
        "    bad += subprocess.run(cmd, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL).returncode != 0\n"
        "print(bad)\n"
    )
    rows = []
    for k in ks:
        db = dbs.new(f"emitters-{k}")
        cmd = evflow(db, empty, "emit", "order.placed", "--data", EMIT_DATA, "--no-dispatch")
        check(cmd, tmp)  # creates the database
        note(f"emitters: K={k}, {per} emits each (load {load()})")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", worker, json.dumps(cmd), str(per)],
                cwd=tmp,
                env=env(),
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(k)
        ]
        failed = sum(int(p.communicate()[0].strip() or 0) for p in procs)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        total = k * per
        rows.append(
            {
                "k": k,
                "emits": total,
                "failed": failed,
                "wall_s": round(wall, 3),
                "events_per_s": round((total - failed) / wall, 1),
                "client_cpu_ms_per_emit": round(cpu / total * 1000, 1),
                "load": load(),
            }
        )
    return rows


def worker_drain(tmp: Path, dbs: Dbs, n: int) -> dict[str, Any]:
    rules = tmp / "worker-rules"
    rules.mkdir(exist_ok=True)
    (rules / "w.yaml").write_text(
        "version: 1\nrules:\n  - name: t\n    on: job.queued\n    then:\n      - run: [true]\n",
        encoding="utf-8",
    )
    db = dbs.new("worker")
    events = tmp / "jobs.jsonl"
    events.write_text(
        "".join(json.dumps({"type": "job.queued", "data": {"i": i}}) + "\n" for i in range(n)),
        encoding="utf-8",
    )
    check(evflow(db, rules, "import", str(events), "--no-dispatch"), tmp)
    note(f"worker: run --once over {n:,} pending deliveries (load {load()})")
    start = time.perf_counter()
    check(evflow(db, rules, "run", "--once"), tmp)
    ours = time.perf_counter() - start
    note(f"worker: floor: {n:,} x subprocess.run(['true'])")
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"], check=False)
    floor = time.perf_counter() - start
    return {
        "deliveries": n,
        "evflow_s": round(ours, 3),
        "evflow_per_s": round(n / ours, 1),
        "spawn_true_per_s": round(n / floor, 1),
        "ratio": round((n / ours) / (n / floor), 3),
        "load": load(),
    }


def imported(tmp: Path, dbs: Dbs, n: int, name: str) -> tuple[str, Path]:
    jsonl = tmp / f"events-{n}.jsonl"
    if not jsonl.exists():
        note(f"generating {n:,} events")
        write_jsonl(jsonl, n)
    db = dbs.new(name)
    empty = tmp / "empty-rules"
    empty.mkdir(exist_ok=True)
    note(f"setup (untimed): import of {n:,} events")
    check(evflow(db, empty, "import", str(jsonl), "--no-dispatch"), tmp)
    return db, jsonl


def asof(tmp: Path, dbs: Dbs, n: int) -> list[dict[str, Any]]:
    db, jsonl = imported(tmp, dbs, n, f"asof-{n}")
    rules = REPO / "rules"
    check(evflow(db, rules, "replay"), tmp)
    times = []
    with jsonl.open(encoding="utf-8") as lines:
        for i, line in enumerate(lines, 1):
            if i in (n // 10, n // 2, n * 9 // 10):
                times.append((i, json.loads(line)["time"]))
    rows = []
    for seq, at_time in times:
        for label, value in (("seq", str(seq)), ("time", at_time)):
            start = time.perf_counter()
            check(evflow(db, rules, "query", "members", "--as-of", value, "--format", "jsonl"), tmp)
            rows.append(
                {
                    "events": n,
                    "as_of": f"{label} {value}",
                    "position": seq,
                    "seconds": round(time.perf_counter() - start, 3),
                    "load": load(),
                }
            )
    return rows


def import_lock(tmp: Path, dbs: Dbs, n: int) -> dict[str, Any]:
    jsonl = tmp / f"events-{n}.jsonl"
    if not jsonl.exists():
        write_jsonl(jsonl, n)
    db = dbs.new("import-lock")
    empty = tmp / "empty-rules"
    empty.mkdir(exist_ok=True)
    check(evflow(db, empty, "emit", "warm.up"), tmp)
    note(f"import-lock: emit one second into an import of {n:,} events (load {load()})")
    start = time.perf_counter()
    importer = subprocess.Popen(
        evflow(db, empty, "import", str(jsonl), "--no-dispatch"),
        cwd=tmp,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    emit_start = time.perf_counter()
    proc = subprocess.run(
        evflow(db, empty, "emit", "order.placed", "--data", EMIT_DATA, "--no-dispatch"),
        cwd=tmp,
        env=env(),
        capture_output=True,
        text=True,
        check=False,
    )
    emit_s = time.perf_counter() - emit_start
    importer.wait()
    return {
        "events": n,
        "import_s": round(time.perf_counter() - start, 3),
        "import_rc": importer.returncode,
        "emit_wait_s": round(emit_s, 3),
        "emit_rc": proc.returncode,
        "load": load(),
    }


def rebuild(tmp: Path, dbs: Dbs, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        db, _ = imported(tmp, dbs, n, f"rebuild-{n}")
        note(f"rebuild: replay --rebuild over {n:,} events (load {load()})")
        start = time.perf_counter()
        check(evflow(db, REPO / "rules", "replay", "--rebuild"), tmp)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "events": n,
                "seconds": round(seconds, 3),
                "us_per_event": round(seconds / n * 1e6, 2),
                "load": load(),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("measure", choices=["emitters", "worker", "asof", "import-lock", "rebuild"])
    parser.add_argument("--k", default="1,2,4,8")
    parser.add_argument("--per", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--events", default="200000")
    parser.add_argument("--db-url")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print(f"load at start: {load()}; cpus {os.cpu_count()}; db {args.db_url or 'SQLite files'}")
    tmp = Path(tempfile.mkdtemp(prefix="evflow-scale-"))
    dbs = Dbs(tmp, args.db_url)
    try:
        if args.measure == "emitters":
            result: Any = emitters(tmp, dbs, [int(k) for k in args.k.split(",")], args.per)
        elif args.measure == "worker":
            result = worker_drain(tmp, dbs, args.n)
        elif args.measure == "asof":
            result = asof(tmp, dbs, int(args.events.split(",")[0]))
        elif args.measure == "import-lock":
            result = import_lock(tmp, dbs, int(args.events.split(",")[0]))
        else:
            result = rebuild(tmp, dbs, [int(x) for x in args.events.split(",")])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        dbs.drop()
    for row in result if isinstance(result, list) else [result]:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"load at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
