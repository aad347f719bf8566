"""Replay with SQL read-model tables, beside the JSON-only replay (issue 17).

    .venv/bin/python benchmarks/tables.py [--events 100000] [--runs 3]
                                         [--pg postgresql://postgres@127.0.0.1:5432/test]

For each backend (SQLite, and PostgreSQL when --pg is given or EVFLOW_TEST_PG is set), the same
log is replayed from scratch (``evflow replay --rebuild``, the whole process) into the example
projections ``members`` and ``member_orders``: once as JSON snapshots only, once with both kept
as typed tables too, in the same database as the log. It prints the median wall time of --runs
runs, the throughput, and the ratio table/JSON (the target: at most 2x). A report, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.generate import write_jsonl  # noqa: E402

EVFLOW = os.environ.get("EVFLOW_BENCH_BIN") or str(Path(sys.executable).parent / "evflow")

PROJECTIONS = """\
version: 1
projections:
  - name: members
    key: data.userid
    on:
      member.created: upsert
      member.updated: merge
      member.deleted: delete
{members_table}
  - name: member_orders
    key: data.userid
    on:
      order.placed:
        inc: {{orders: 1, amount: "${{{{ data.orderAmt }}}}"}}
        set: {{last_product: "${{{{ data.productId }}}}", last_order_time: "${{{{ event.time }}}}"}}
{orders_table}
"""
MEMBERS_TABLE = """\
    table:
      columns: {userid: text, name: text, email: text}
      state_column: state
"""
ORDERS_TABLE = """\
    table:
      columns: {orders: integer, amount: numeric, last_product: text, last_order_time: timestamp}
      indexes: [[amount], [last_order_time]]
"""


def write_rules(folder: Path, tables: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = PROJECTIONS.format(
        members_table=MEMBERS_TABLE if tables else "",
        orders_table=ORDERS_TABLE if tables else "",
    )
    (folder / "projections.yaml").write_text(text)
    return folder


def evflow(db: str, rules: Path, *args: str, cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [EVFLOW, "--db", db, "--rules", str(rules), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"evflow {' '.join(args)} failed: {proc.stderr.strip()}")
    return elapsed


def measure(db: str, tmp: Path, runs: int) -> tuple[float, float]:
    """Median seconds of `replay --rebuild`: JSON only, then with tables."""
    json_rules = write_rules(tmp / "rules-json", tables=False)
    table_rules = write_rules(tmp / "rules-tables", tables=True)
    evflow(db, table_rules, "replay", cwd=tmp)  # creates the tables (untimed)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(runs):  # interleaved, so that a noisy moment hits both
        for tables, rules in ((False, json_rules), (True, table_rules)):
            times[tables].append(evflow(db, rules, "replay", "--rebuild", cwd=tmp))
    return statistics.median(times[False]), statistics.median(times[True])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("EVFLOW_TEST_PG"))
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="evflow-tables-"))
    schema = f"evflow_bench_{uuid.uuid4().hex[:8]}"
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" load {os.getloadavg()[0]:.2f}, {args.events:,} events, median of {args.runs}"
    )
    try:
        events = tmp / "events.jsonl"
        write_jsonl(events, args.events)
        backends = [("SQLite", str(tmp / "evflow.db"))]
        if args.pg:
            sep = "&" if "?" in args.pg else "?"
            backends.append(("PostgreSQL", f"{args.pg}{sep}schema={schema}"))
        print(f"{'backend':<12} {'JSON only':>18} {'with tables':>18} {'ratio':>7}")
        for label, db in backends:
            evflow(db, write_rules(tmp / "rules-json", False), "import", str(events),
                   "--no-dispatch", cwd=tmp)
            plain, tables = measure(db, tmp, args.runs)
            print(
                f"{label:<12} {plain:7.2f} s {args.events / plain:>7,.0f}/s"
                f" {tables:7.2f} s {args.events / tables:>7,.0f}/s {tables / plain:6.2f}x"
            )
    finally:
        if args.pg:
            subprocess.run(
                ["psql", args.pg, "-q", "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                capture_output=True,
            )
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
