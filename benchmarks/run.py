"""evflow against its peer and the floor: one command, one run, a table of times and ratios.

    .venv/bin/python benchmarks/run.py [--events N] [--only emit,import,replay,memory]
                                       [--db-url URL] [--runs 30] [--big] [--json out.json]

The peer is the Python library evflow's users would otherwise pick: ``eventsourcing`` with its
SQLite persistence (benchmarks/peer.py; install the extra: ``pip install -e '.[bench]'``). The
floor is what the hardware allows with the same data and the same interpreter
(``sys.executable``): raw ``sqlite3`` in WAL mode, no evflow. All three sides run with the same
interpreter on the same generated events, and the replay rows check that their snapshots agree
(a digest of the sorted rows). See docs/benchmarks.md for what each row measures. This is a
report, not a test: nothing here asserts a timing, and it is not collected by pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from generate import write_jsonl  # benchmarks/ is sys.path[0] when run as a script

from evflow.core.text import redact

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# the venv's console script; EVFLOW_BENCH_BIN points the benchmark at another build of it
EVFLOW = os.environ.get("EVFLOW_BENCH_BIN") or str(Path(sys.executable).parent / "evflow")
EMIT_DATA = json.dumps({"orderId": "1001", "userid": "u1", "productId": "p-7", "orderAmt": 120})
# targets (issue 16): ratios to the floor; and ahead of the peer (>= 1.0x) on every row
EMIT_TARGET = 2.0  # evflow emit wall time <= 2x the floor's, three rules on the event type
EMIT_EMPTY_TARGET = 1.6  # ... <= 1.6x with an empty rules folder
IMPORT_TARGET = 0.5  # evflow import throughput >= 0.5x the floor's, no rules
IMPORT_RULES_TARGET = 0.3  # ... >= 0.3x with the example rules (~2.2 rows written per event)
REPLAY_TARGET = 0.5  # evflow replay throughput >= 0.5x the floor's, process start included
PEER_TARGET = 1.0  # evflow ahead of the peer: throughput ratio >= 1, time ratio <= 1
MEMORY_TARGET_MB = 200  # peak RSS of a 1,000,000-event replay (issue 4)
ALL = ("emit", "import", "replay", "memory")

# -- the floor ------------------------------------------------------------------------------------

FLOOR_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL, subject TEXT,
        time TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (source, id))""",
    "CREATE INDEX IF NOT EXISTS events_type ON events (type, seq)",
    "CREATE INDEX IF NOT EXISTS events_subject ON events (subject, seq)",
    "CREATE INDEX IF NOT EXISTS events_time ON events (time)",
    """CREATE TABLE IF NOT EXISTS snapshots (
        projection TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (projection, key))""",
]
INSERT = "INSERT INTO events (id, source, type, subject, time, body) VALUES (?, ?, ?, ?, ?, ?)"

# The emit floor, run as `python -c FLOOR_EMIT DB JSON`: a whole process that opens the same kind
# of SQLite file (WAL, busy timeout), takes the write lock, appends one row, commits.
FLOOR_EMIT = """\
import json, sqlite3, sys, uuid
from datetime import datetime, timezone
con = sqlite3.connect(sys.argv[1], timeout=120, isolation_level=None)
con.execute("PRAGMA busy_timeout = 120000")
if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
    con.execute("PRAGMA journal_mode = WAL")
con.execute("BEGIN IMMEDIATE")
con.execute('''CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, source TEXT NOT NULL,
    type TEXT NOT NULL, subject TEXT, time TEXT NOT NULL, body TEXT NOT NULL,
    UNIQUE (source, id))''')
now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
ev = {"specversion": "1.0", "type": "order.placed", "source": "evflow:cli",
      "id": str(uuid.uuid4()), "time": now, "data": json.loads(sys.argv[2])}
con.execute("INSERT INTO events (id, source, type, subject, time, body) VALUES (?,?,?,?,?,?)",
            (ev["id"], ev["source"], ev["type"], None, now, json.dumps(ev)))
con.execute("COMMIT")
print(con.execute("SELECT max(seq) FROM events").fetchone()[0], ev["id"])
"""

# The peer, run as a module from the bytecode cache (like evflow's own modules): peer.py's
# __main__ block does the same, this only spares compiling the script on every emit.
PEER = [
    sys.executable,
    "-c",
    f"import sys; sys.path.insert(0, {str(HERE)!r}); import peer; raise SystemExit(peer.main())",
]


def has_peer() -> bool:
    return importlib.util.find_spec("eventsourcing") is not None


# Runs argv as its only child and reports that child's peak RSS: a fresh process, so that
# RUSAGE_CHILDREN holds nothing but the command measured.
RSS_WRAPPER = """\
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(json.dumps({"rc": p.returncode, "seconds": time.perf_counter() - t,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def floor_open(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=120, isolation_level=None)
    con.execute("PRAGMA busy_timeout = 120000")
    con.execute("PRAGMA journal_mode = WAL")
    for statement in FLOOR_SCHEMA:
        con.execute(statement)
    return con


def floor_import(jsonl: Path, db: Path) -> int:
    """Parse the file and insert every event (body + indexed columns) in one transaction."""
    con = floor_open(db)
    count = 0

    def rows() -> Any:
        nonlocal count
        with jsonl.open(encoding="utf-8") as lines:
            for line in lines:
                ev = json.loads(line)
                count += 1
                yield (
                    ev["id"],
                    ev["source"],
                    ev["type"],
                    ev.get("subject"),
                    ev["time"],
                    json.dumps(ev, separators=(",", ":")),
                )

    con.execute("BEGIN IMMEDIATE")
    con.executemany(INSERT, rows())
    con.execute("COMMIT")
    con.close()
    return count


def floor_replay(db: Path) -> dict[str, int]:
    """The example projections folded in plain Python from a scan, then stored as snapshots.

    members: member.created upsert (state = data), member.updated merge, member.deleted delete,
    keyed by data.userid. member_orders: per data.userid, count and sum of orderAmt, last
    productId and last order time.
    """
    con = sqlite3.connect(db, isolation_level=None)
    members: dict[str, tuple[dict[str, Any], int]] = {}
    orders: dict[str, tuple[dict[str, Any], int]] = {}
    wanted = {"member.created", "member.updated", "member.deleted", "order.placed"}
    scanned = 0
    for seq, type_, body in con.execute("SELECT seq, type, body FROM events ORDER BY seq"):
        scanned += 1
        if type_ not in wanted:
            continue
        ev = json.loads(body)
        data = ev["data"]
        key = str(data["userid"])
        if type_ == "order.placed":
            old = orders.get(key)
            state = dict(old[0]) if old else {}
            state["orders"] = state.get("orders", 0) + 1
            state["amount"] = state.get("amount", 0) + data["orderAmt"]
            state["last_product"] = data["productId"]
            state["last_order_time"] = ev["time"]
            orders[key] = (state, seq)
        elif type_ == "member.created":
            members[key] = (dict(data), seq)
        elif type_ == "member.updated":
            current = members.get(key)
            members[key] = ({**(current[0] if current else {}), **data}, seq)
        else:
            members.pop(key, None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("DELETE FROM snapshots")
    con.executemany(
        "INSERT INTO snapshots (projection, key, state, seq) VALUES (?, ?, ?, ?)",
        [
            (name, key, json.dumps(state), seq)
            for name, table in (("members", members), ("member_orders", orders))
            for key, (state, seq) in table.items()
        ],
    )
    con.execute("COMMIT")
    con.close()
    return {"scanned": scanned, "members": len(members), "member_orders": len(orders)}


# -- snapshots: the same rows on every side ------------------------------------------------------


def _canonical(state: dict[str, Any]) -> dict[str, Any]:
    """A state with its event time in one spelling (evflow stores ``…03.000000Z`` for ``…03Z``)."""
    t = state.get("last_order_time")
    if isinstance(t, str):
        state = {**state, "last_order_time": datetime.fromisoformat(t).astimezone(UTC).isoformat()}
    return state


def digest(rows: list[tuple[str, str, dict[str, Any]]]) -> dict[str, str]:
    """Per projection: ``"ROWS:HASH"``, HASH over the sorted ``[key, state]`` rows (seq left out:
    each side numbers its own log)."""
    by_projection: dict[str, list[str]] = {}
    for projection, key, state in rows:
        by_projection.setdefault(projection, []).append(
            json.dumps([key, _canonical(state)], sort_keys=True, separators=(",", ":"))
        )
    out = {}
    for name, lines in sorted(by_projection.items()):
        text = "\n".join(sorted(lines))
        out[name] = f"{len(lines)}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return out


def table_snapshots(db: Path) -> dict[str, str]:
    """The digest of a ``snapshots`` table (the floor's, and the peer's, which uses its layout)."""
    con = sqlite3.connect(db)
    try:
        rows = [
            (p, k, json.loads(st))
            for p, k, st in con.execute("SELECT projection, key, state FROM snapshots")
        ]
    finally:
        con.close()
    return digest(rows)


def evflow_snapshots(ctx: Context, db: str) -> dict[str, str]:
    """The digest of ``evflow query NAME --format jsonl`` for the example projections."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for projection in PROJECTIONS:
        _, proc = run(evflow_cmd(db, ctx.rules, "query", projection, "--format", "jsonl"), ctx.tmp)
        for line in proc.stdout.splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append((projection, str(row["key"]), row["state"]))
    return digest(rows)


PROJECTIONS = ("members", "member_orders")


# -- plumbing -------------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    evflow: str
    floor: str
    ratio: str  # evflow against the floor
    target: str
    status: str  # met / NOT met / n/a ... / skipped ... / - (no target)
    details: dict[str, Any] = field(default_factory=dict)
    peer: str = "-"  # eventsourcing
    vs_peer: str = "-"  # evflow against the peer
    load: str = field(default_factory=lambda: f"{os.getloadavg()[0]:.1f}")  # 1-min, row start


@dataclass
class Context:
    tmp: Path
    events: int
    runs: int
    rules: Path
    rules_origin: str
    db_url: str | None
    big: bool
    big_events: int
    files: dict[int, Path] = field(default_factory=dict)
    imported: dict[int, str] = field(default_factory=dict)  # events -> evflow db holding them
    floor_dbs: dict[int, Path] = field(default_factory=dict)
    plain: dict[int, str] = field(default_factory=dict)  # events -> evflow db, imported w/o rules
    peer_dbs: dict[int, Path] = field(default_factory=dict)  # events -> the peer's SQLite file
    peer: bool = False  # eventsourcing installed

    def jsonl(self, n: int) -> Path:
        if n not in self.files:
            path = self.tmp / f"events-{n}.jsonl"
            note(f"generating {n:,} events -> {path.name}")
            write_jsonl(path, n)
            self.files[n] = path
        return self.files[n]

    schemas: list[str] = field(default_factory=list)  # PostgreSQL schemas to drop at the end

    def evflow_db(self, name: str) -> str:
        """A fresh SQLite file per measure; with a PostgreSQL --db-url, a fresh schema in it."""
        if self.db_url and self.db_url.startswith(("postgresql:", "postgres:")):
            schema = f"evflow_bench_{name.replace('-', '_')}_{os.getpid()}"
            self.schemas.append(schema)
            sep = "&" if "?" in self.db_url else "?"
            return f"{self.db_url}{sep}schema={schema}"
        if self.db_url:
            return self.db_url
        directory = self.tmp / name
        directory.mkdir(parents=True, exist_ok=True)
        return str(directory / "evflow.db")

    def floor_db(self, n: int) -> Path:
        """A floor database holding the ``n`` generated events (built untimed if needed)."""
        if n not in self.floor_dbs:
            path = self.tmp / f"floor-{n}" / "floor.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            floor_import(self.jsonl(n), path)
            self.floor_dbs[n] = path
        return self.floor_dbs[n]


def drop_schemas(url: str | None, schemas: list[str]) -> None:
    """Remove the PostgreSQL schemas the measures created (psycopg: the evflow[postgres] extra)."""
    if not url or not schemas:
        return
    import psycopg

    base = url.split("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def note(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("EVFLOW_DB", None)
    env.pop("EVFLOW_RULES", None)
    # this sandbox sets PYTHONDONTWRITEBYTECODE; a user's machine keeps .pyc files, so both
    # sides run with the bytecode cache, as a shell script calling evflow would
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:8])}… exited {proc.returncode}: {proc.stderr.strip()[-800:]}"
        )
    return elapsed, proc


def evflow_cmd(db: str, rules: Path, *args: str) -> list[str]:
    return [EVFLOW, "--db", db, "--rules", str(rules), *args]


def has_command(name: str, cwd: Path) -> bool:
    """True when ``evflow --help`` lists the command ``name``."""
    _, proc = run([EVFLOW, "--help"], cwd)
    return re.search(rf"^[\s│|]*{re.escape(name)}\s", proc.stdout, re.MULTILINE) is not None


def replay_cmd(db: str, rules: Path, cwd: Path) -> list[str]:
    _, proc = run([EVFLOW, "replay", "--help"], cwd)
    rebuild = ["--rebuild"] if "--rebuild" in proc.stdout else []
    return evflow_cmd(db, rules, "replay", *rebuild)


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} ev/s"


def example_rules() -> tuple[Path | None, str]:
    """The repo's rules/ if it holds YAML, else the bundled examples (what `evflow init` writes)."""
    for path, origin in (
        (REPO / "rules", "rules/"),
        (REPO / "evflow" / "example" / "rules", "evflow/example/rules/"),
    ):
        if any(path.glob("*.yaml")) or any(path.glob("*.yml")):
            return path, origin
    return None, "none found (rows that need them are n/a)"


# -- the measures ---------------------------------------------------------------------------------


def ensure_imported(ctx: Context, n: int, rules: bool = True) -> str:
    """An evflow database holding the ``n`` generated events (imported untimed if needed); with
    ``rules``, imported with the example rules (it then also holds the events they derive)."""
    done = ctx.imported if rules else ctx.plain
    if n not in done:
        db = ctx.evflow_db(f"setup-{n}-{'rules' if rules else 'plain'}")
        note(f"setup (untimed): evflow import of {n:,} events")
        folder = ctx.rules if rules else ctx.tmp / "empty-rules"
        run(evflow_cmd(db, folder, "import", str(ctx.jsonl(n)), "--no-dispatch"), ctx.tmp)
        done[n] = db
    return done[n]


def peer_import(ctx: Context, n: int) -> tuple[float, dict[str, Any]]:
    """The peer's import of the ``n`` events into a fresh SQLite file: whole-process seconds and
    what it printed."""
    db = ctx.tmp / f"peer-{n}" / "peer.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    seconds, proc = run([*PEER, "import", str(ctx.jsonl(n)), str(db)], ctx.tmp)
    ctx.peer_dbs[n] = db
    return seconds, json.loads(proc.stdout)


def peer_db(ctx: Context, n: int) -> Path:
    if n not in ctx.peer_dbs:
        note(f"setup (untimed): peer import of {n:,} events")
        peer_import(ctx, n)
    return ctx.peer_dbs[n]


def verdict(checks: list[tuple[str, bool | None]]) -> str:
    """``met`` when every check with a value passed, else what was missed."""
    missed = [name for name, ok in checks if ok is False]
    if not missed:
        return "met"
    return "NOT met: " + ", ".join(missed)


def bench_emit(ctx: Context, label: str, rules: Path, target: float) -> Row:
    """Whole-process `evflow emit` vs the peer's one-event process vs a whole-process raw sqlite3
    insert, interleaved so that a burst of load hits all three."""
    name = f"emit-{label.split()[0]}"
    db = ctx.evflow_db(name)
    floor_db = ctx.tmp / name / "floor.db"
    floor_db.parent.mkdir(parents=True, exist_ok=True)
    cmd = evflow_cmd(db, rules, "emit", "order.placed", "--data", EMIT_DATA, "--no-dispatch")
    floor_cmd = [sys.executable, "-c", FLOOR_EMIT, str(floor_db), EMIT_DATA]
    peer_cmd = [*PEER, "emit", str(ctx.tmp / name / "peer.db"), EMIT_DATA] if ctx.peer else None
    note(f"emit ({label}): warm-up, then {ctx.runs} runs each, interleaved")
    load = f"{os.getloadavg()[0]:.1f}"
    run(cmd, ctx.tmp)  # creates the database and the compiled-rules cache
    run(floor_cmd, ctx.tmp)
    if peer_cmd:
        run(peer_cmd, ctx.tmp)
    ours: list[float] = []
    floor: list[float] = []
    peer: list[float] = []
    for _ in range(ctx.runs):
        ours.append(run(cmd, ctx.tmp)[0])
        if peer_cmd:
            peer.append(run(peer_cmd, ctx.tmp)[0])
        floor.append(run(floor_cmd, ctx.tmp)[0])
    ratio = statistics.median(ours) / statistics.median(floor)
    vs_peer = statistics.median(ours) / statistics.median(peer) if peer else None
    return Row(
        measure=f"emit, whole process ({label})",
        evflow=f"{ms(statistics.median(ours))} (p90 {ms(p90(ours))})",
        floor=f"{ms(statistics.median(floor))} (p90 {ms(p90(floor))})",
        ratio=f"{ratio:.2f}x time",
        target=f"<= {target:g}x floor, <= {PEER_TARGET:g}x peer",
        status=verdict(
            [
                ("floor", ratio <= target),
                ("peer", None if vs_peer is None else vs_peer <= PEER_TARGET),
            ]
        ),
        peer=f"{ms(statistics.median(peer))} (p90 {ms(p90(peer))})" if peer else "n/a",
        vs_peer=f"{vs_peer:.2f}x time" if vs_peer is not None else "-",
        load=load,
        details={
            "runs": ctx.runs,
            "rules": str(rules),
            "evflow_median_s": statistics.median(ours),
            "evflow_p90_s": p90(ours),
            "evflow_min_s": min(ours),
            "floor_median_s": statistics.median(floor),
            "floor_p90_s": p90(floor),
            "floor_min_s": min(floor),
            "peer_median_s": statistics.median(peer) if peer else None,
            "peer_p90_s": p90(peer) if peer else None,
            "peer_min_s": min(peer) if peer else None,
            "ratio": ratio,
            "vs_peer": vs_peer,
        },
    )


def bench_import(ctx: Context, label: str = "example rules", rules: Path | None = None) -> Row:
    """`evflow import` (whole process) vs parse + executemany; with the example rules, evflow
    also writes the derived events and deliveries they cause, which the floor does not. Without
    rules, the peer's import (whole process) too."""
    n = ctx.events
    jsonl = ctx.jsonl(n)
    with_rules = rules is None
    db = ctx.evflow_db("import" if with_rules else "import-norules")
    load = f"{os.getloadavg()[0]:.1f}"
    note(f"import ({label}): evflow import of {n:,} events (whole process, --no-dispatch)")
    ours, proc = run(
        evflow_cmd(
            db, rules or ctx.rules, "import", str(jsonl), "--no-dispatch", "--format", "json"
        ),
        ctx.tmp,
    )
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        summary = {"stdout": proc.stdout[-300:]}
    (ctx.imported if with_rules else ctx.plain)[n] = db
    peer: float | None = None
    peer_summary: dict[str, Any] = {}
    if ctx.peer and not with_rules:
        note(f"import: peer (eventsourcing, {n:,} events, one save, whole process)")
        peer, peer_summary = peer_import(ctx, n)
    floor_db = ctx.tmp / f"floor-{n}-{'rules' if with_rules else 'norules'}" / "floor.db"
    floor_db.parent.mkdir(parents=True, exist_ok=True)
    note(f"import: floor (parse + executemany of {n:,} events, one transaction)")
    start = time.perf_counter()
    floor_import(jsonl, floor_db)
    floor = time.perf_counter() - start
    ctx.floor_dbs.setdefault(n, floor_db)
    ratio = (n / ours) / (n / floor)
    vs_peer = peer / ours if peer else None  # throughput ratio
    target = IMPORT_RULES_TARGET if with_rules else IMPORT_TARGET
    return Row(
        measure=f"import {n:,} events, {label}",
        evflow=f"{ours:.2f} s = {rate(n, ours)}",
        floor=f"{floor:.2f} s = {rate(n, floor)}",
        ratio=f"{ratio:.2f}x throughput",
        target=f">= {target:g}x floor" + ("" if with_rules else f", >= {PEER_TARGET:g}x peer"),
        status=verdict(
            [
                ("floor", ratio >= target),
                ("peer", None if vs_peer is None else vs_peer >= PEER_TARGET),
            ]
        ),
        peer=f"{peer:.2f} s = {rate(n, peer)}" if peer else ("n/a" if not ctx.peer else "-"),
        vs_peer=f"{vs_peer:.2f}x throughput" if vs_peer is not None else "-",
        load=load,
        details={
            "events": n,
            "evflow_s": ours,
            "floor_s": floor,
            "peer_s": peer,
            "ratio": ratio,
            "vs_peer": vs_peer,
            "evflow_eps": n / ours,
            "floor_eps": n / floor,
            "evflow_summary": summary,
            "peer_summary": peer_summary,
        },
    )


def bench_replay(ctx: Context, derived: bool) -> Row:
    """`evflow replay --rebuild` (whole process) into the example projections vs the floor's fold
    (in-process) and the peer's replay through its notification log (whole process); the
    snapshots' digests must agree. ``derived``: evflow's log is the one the example rules filled
    (input + derived events, the peer has no such log); else the log holds just the input."""
    n = ctx.events
    label = (
        f"replay {n:,} events + derived (example-rules log), example projections"
        if derived
        else f"replay {n:,} events, example projections"
    )
    if not has_command("replay", ctx.tmp):
        return Row(label, "n/a (not implemented yet)", "-", "-", "-", "n/a")
    db = ensure_imported(ctx, n, rules=derived)
    floor_db = ctx.floor_db(n)
    pdb = peer_db(ctx, n) if ctx.peer and not derived else None
    cmd = replay_cmd(db, ctx.rules, ctx.tmp)
    load = f"{os.getloadavg()[0]:.1f}"
    note(f"replay: {' '.join(cmd[-2:])} over {n:,} events (whole process)")
    ours, _ = run(cmd, ctx.tmp)
    peer: float | None = None
    peer_summary: dict[str, Any] = {}
    if pdb is not None:
        note("replay: peer (notification log -> mapper -> fold -> snapshots, whole process)")
        peer, proc = run([*PEER, "replay", str(pdb)], ctx.tmp)
        peer_summary = json.loads(proc.stdout)
    note("replay: floor (scan + json decode + fold in plain Python + store snapshots)")
    start = time.perf_counter()
    folded = floor_replay(floor_db)
    floor = time.perf_counter() - start
    digests = {"floor": table_snapshots(floor_db)}
    if has_command("query", ctx.tmp):
        digests["evflow"] = evflow_snapshots(ctx, db)
    if pdb is not None:
        digests["peer"] = table_snapshots(pdb)
    agree = len({json.dumps(d, sort_keys=True) for d in digests.values()}) == 1
    ratio = floor / ours  # throughput, like the import row
    vs_peer = peer / ours if peer else None
    status = verdict(
        [
            ("floor", ratio >= REPLAY_TARGET),
            ("peer", None if vs_peer is None else vs_peer >= PEER_TARGET),
        ]
    )
    return Row(
        measure=label,
        evflow=f"{ours:.2f} s = {rate(n, ours)}",
        floor=f"{floor:.2f} s = {rate(n, floor)}",
        ratio=f"{ratio:.2f}x throughput",
        target=f">= {REPLAY_TARGET:g}x floor" + ("" if derived else f", >= {PEER_TARGET:g}x peer"),
        status=status if agree else f"SNAPSHOTS DIFFER ({status})",
        peer=f"{peer:.2f} s = {rate(n, peer)}" if peer else ("n/a" if not ctx.peer else "-"),
        vs_peer=f"{vs_peer:.2f}x throughput" if vs_peer is not None else "-",
        load=load,
        details={
            "events": n,
            "evflow_s": ours,
            "floor_s": floor,
            "peer_s": peer,
            "ratio": ratio,
            "vs_peer": vs_peer,
            "command": cmd[3:],
            "floor_fold": folded,
            "peer_fold": peer_summary,
            "digests": digests,
            "snapshots_agree": agree,
        },
    )


def peak_rss(cmd: Sequence[str], cwd: Path) -> dict[str, Any]:
    _, proc = run([sys.executable, "-c", RSS_WRAPPER, *cmd], cwd)
    result: dict[str, Any] = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}… exited {result['rc']}")
    return result


def bench_memory(ctx: Context) -> Row:
    """HOOK: peak RSS of a replay of --big-events (default 1,000,000), via RUSAGE_CHILDREN."""
    n = ctx.big_events
    label = f"replay {n:,} events, peak RSS"
    if not ctx.big:
        return Row(label, "skipped (use --big)", "-", "-", "-", "skipped")
    if not has_command("replay", ctx.tmp):
        return Row(label, "n/a (not implemented yet)", "-", "-", "-", "n/a")
    db = ensure_imported(ctx, n)
    floor_db = ctx.floor_db(n)
    cmd = replay_cmd(db, ctx.rules, ctx.tmp)
    note(f"memory: peak RSS of {' '.join(cmd[-2:])} over {n:,} events")
    ours = peak_rss(cmd, ctx.tmp)
    note("memory: peak RSS of the floor fold (a child process)")
    floor = peak_rss(
        [sys.executable, str(Path(__file__).resolve()), "--floor-replay", str(floor_db)], ctx.tmp
    )
    mb_ours, mb_floor = ours["maxrss_kb"] / 1024, floor["maxrss_kb"] / 1024
    return Row(
        measure=label,
        evflow=f"{mb_ours:.0f} MB ({ours['seconds']:.1f} s)",
        floor=f"{mb_floor:.0f} MB ({floor['seconds']:.1f} s)",
        ratio=f"{mb_ours / mb_floor:.2f}x memory",
        target=f"< {MEMORY_TARGET_MB} MB",
        status="met" if mb_ours < MEMORY_TARGET_MB else "NOT met",
        details={"events": n, "evflow": ours, "floor": floor},
    )


# -- report ---------------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine() -> dict[str, Any]:
    version = _version("evflow") or "?"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "evflow": version,
        "eventsourcing": _version("eventsourcing"),
        "interpreter": sys.executable,
    }


def print_table(rows: list[Row]) -> None:
    headers = (
        "measure",
        "evflow",
        "peer (eventsourcing)",
        "floor (raw sqlite3)",
        "evflow/peer",
        "evflow/floor",
        "target",
        "load",
        "",
    )
    cells = [
        (r.measure, r.evflow, r.peer, r.floor, r.vs_peer, r.ratio, r.target, r.load, r.status)
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="evflow against raw sqlite3 (the floor).")
    parser.add_argument("--events", type=int, default=100_000, help="events for import/replay")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma list of {','.join(ALL)}")
    parser.add_argument(
        "--db-url",
        help="evflow database to use instead of fresh temp SQLite "
        "files (e.g. postgresql://…; must be empty and disposable)",
    )
    parser.add_argument("--runs", type=int, default=30, help="emit runs per variant")
    parser.add_argument("--big", action="store_true", help="also the 1,000,000-event memory row")
    parser.add_argument("--big-events", type=int, default=1_000_000, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--floor-replay", type=Path, help=argparse.SUPPRESS)  # child of `memory`
    args = parser.parse_args(argv)

    if args.floor_replay is not None:
        print(json.dumps(floor_replay(args.floor_replay)))
        return 0
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(ALL)})")
    if not Path(EVFLOW).exists():
        parser.error(f"{EVFLOW} not found: run with the venv's python (.venv/bin/python)")

    facts = machine()
    print(f"evflow benchmark, {facts['date']}")
    print(
        f"python {facts['python']} ({facts['implementation']}), sqlite {facts['sqlite']}, "
        f"{facts['cpus']} cpus ({facts['cpu_model']}), load {facts['loadavg']}, "
        f"{facts['platform']}"
    )
    rules, origin = example_rules()
    print(f"evflow {facts['evflow']} ({EVFLOW}); example rules: {origin}")
    peer = facts["eventsourcing"]
    print(
        f"peer: eventsourcing {peer} (SQLite persistence)"
        if peer
        else "peer: n/a (eventsourcing not installed: pip install -e '.[bench]')"
    )
    where = (
        f"{redact(args.db_url)} (a fresh schema per measure)"
        if args.db_url
        else "fresh SQLite files in a temp dir"
    )
    print(f"events: {args.events:,}; emit runs: {args.runs}; db: {where}\n", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="evflow-bench-"))
    empty = tmp / "empty-rules"
    empty.mkdir()
    ctx = Context(
        tmp=tmp,
        events=args.events,
        runs=args.runs,
        rules=rules or empty,
        rules_origin=origin,
        db_url=args.db_url,
        big=args.big,
        big_events=args.big_events,
        peer=has_peer(),
    )

    def needs_rules(measure: Callable[[], Row], label: str) -> Callable[[], Row]:
        if rules is not None:
            return measure
        return lambda: Row(label, "n/a (no example rules)", "-", "-", "-", "n/a")

    plan: list[tuple[str, Callable[[], Row]]] = [
        ("emit", lambda: bench_emit(ctx, "empty rules folder", empty, EMIT_EMPTY_TARGET)),
        (
            "emit",
            needs_rules(lambda: bench_emit(ctx, "example rules", ctx.rules, EMIT_TARGET), "emit"),
        ),
        ("import", lambda: bench_import(ctx, "empty rules folder", empty)),
        ("import", needs_rules(lambda: bench_import(ctx), "import")),
        ("replay", needs_rules(lambda: bench_replay(ctx, derived=False), "replay")),
        ("replay", needs_rules(lambda: bench_replay(ctx, derived=True), "replay")),
        ("memory", needs_rules(lambda: bench_memory(ctx), "memory")),
    ]
    rows: list[Row] = []
    try:
        for key, measure in plan:
            if key in only:
                try:
                    rows.append(measure())
                except RuntimeError as exc:
                    rows.append(
                        Row(key, f"error: {exc}"[:120], "-", "-", "-", "error", {"error": str(exc)})
                    )
    finally:
        if args.keep:
            note(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            drop_schemas(args.db_url, ctx.schemas)
    facts["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print_table(rows)
    print(f"\nload average at the start {facts['loadavg']}, at the end {facts['loadavg_end']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": facts,
                    "load_note": "each row's 'load' is the 1-minute load average at its start",
                    "events": args.events,
                    "runs": args.runs,
                    "rules": origin,
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        print(f"\nwrote {args.json}")
    return 1 if any(r.status == "error" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
