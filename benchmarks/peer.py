"""The peer: the shop workload done with the `eventsourcing` library and its SQLite persistence.

    python benchmarks/peer.py import EVENTS.jsonl DB     # append every event, one transaction
    python benchmarks/peer.py replay DB                  # notification log -> snapshots table
    python benchmarks/peer.py emit DB JSON               # one order.placed event, one process

Needs the benchmark extra (``pip install -e '.[bench]'``: ``eventsourcing>=9.5``). Each command
prints one JSON object (counts and the in-process seconds). ``benchmarks/run.py`` runs these as
subprocesses with the same interpreter as evflow and the floor, and times the whole process.

How the shop maps onto the library (its documented, idiomatic use):

- a ``Member`` aggregate per ``data.userid`` (``Created``, ``Updated``, ``Deleted``) and an
  ``Order`` aggregate per ``data.orderId`` (``Placed``, ``ShipmentRequested``); every domain event
  carries the input event's ``data`` and its envelope (``id``, ``source``, ``subject``, ``time``),
  so the stored log holds what evflow's does;
- ``import`` keeps the aggregates in memory (no repository reads), collects each aggregate's
  pending event right after the command, in input order, and saves all of them with one
  ``Application.save`` call: one transaction, and the notification log keeps the input order;
- ``replay`` reads the application's notification log in sections of 10,000
  (``LocalNotificationLog.select``), turns each notification back into a domain event with the
  application's mapper (``Mapper.to_domain_event``: topic, JSON transcoder), folds ``members``
  and ``member_orders`` exactly as the floor does, and stores both snapshots in one transaction
  in a ``snapshots`` table of the same file (the floor's layout, so run.py digests both alike);
- ``emit`` opens the application on the same file and saves one new ``Order`` aggregate.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("6f1d4c4e-3c0b-4d8e-9f5a-0e6b1c2d3a4f")
SECTION = 10_000


def _envelope(ev: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ev["id"],
        "source": ev["source"],
        "subject": ev.get("subject"),
        "time": ev["time"],
    }


class Member(Aggregate):
    @staticmethod
    def create_id(userid: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"member/{userid}")

    @event("Created")
    def __init__(self, userid: str, data: dict[str, Any], envelope: dict[str, Any]) -> None:
        self.userid = userid
        self.state = dict(data)

    @event("Updated")
    def update(self, data: dict[str, Any], envelope: dict[str, Any]) -> None:
        self.state.update(data)

    @event("Deleted")
    def delete(self, data: dict[str, Any], envelope: dict[str, Any]) -> None:
        self.state = {}


class Order(Aggregate):
    @staticmethod
    def create_id(order_id: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"order/{order_id}")

    @event("Placed")
    def __init__(self, order_id: str, data: dict[str, Any], envelope: dict[str, Any]) -> None:
        self.order_id = order_id
        self.data = dict(data)
        self.shipments: list[dict[str, Any]] = []

    @event("ShipmentRequested")
    def request_shipment(self, data: dict[str, Any], envelope: dict[str, Any]) -> None:
        self.shipments.append(data)


class Shop(Application[uuid.UUID]):
    log_section_size = SECTION


def open_app(db: str) -> Shop:
    return Shop(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db})


def do_import(jsonl: Path, db: str) -> dict[str, Any]:
    start = time.perf_counter()
    app = open_app(db)
    members: dict[str, Member] = {}
    orders: dict[str, Order] = {}
    pending: list[Any] = []  # domain events in input order
    with jsonl.open(encoding="utf-8") as lines:
        for line in lines:
            ev = json.loads(line)
            type_, data, env = ev["type"], ev["data"], _envelope(ev)
            agg: Aggregate
            if type_ == "member.created":
                agg = members[data["userid"]] = Member(data["userid"], data, env)
            elif type_ == "member.updated":
                agg = members[data["userid"]]
                agg.update(data, env)
            elif type_ == "member.deleted":
                agg = members[data["userid"]]
                agg.delete(data, env)
            elif type_ == "order.placed":
                agg = orders[data["orderId"]] = Order(data["orderId"], data, env)
            elif type_ == "shipment.requested":
                agg = orders[data["orderId"]]
                agg.request_shipment(data, env)
            else:
                raise ValueError(f"unexpected type {type_}")
            pending.extend(agg.collect_events())
    app.save(*pending)  # one transaction
    return {"recorded": len(pending), "seconds": time.perf_counter() - start}


def do_replay(db: str) -> dict[str, Any]:
    start = time.perf_counter()
    app = open_app(db)
    to_event = app.mapper.to_domain_event
    log = app.notification_log
    members: dict[str, tuple[dict[str, Any], int]] = {}
    orders: dict[str, tuple[dict[str, Any], int]] = {}
    scanned = 0
    position = 1
    while True:
        section = log.select(position, SECTION)
        if not section:
            break
        for notification in section:
            scanned += 1
            seq = notification.id
            ev: Any = to_event(notification)
            kind = type(ev).__qualname__
            if kind == "Order.Placed":
                data = ev.data
                key = str(data["userid"])
                old = orders.get(key)
                state = dict(old[0]) if old else {}
                state["orders"] = state.get("orders", 0) + 1
                state["amount"] = state.get("amount", 0) + data["orderAmt"]
                state["last_product"] = data["productId"]
                state["last_order_time"] = ev.envelope["time"]
                orders[key] = (state, seq)
            elif kind == "Member.Created":
                members[str(ev.data["userid"])] = (dict(ev.data), seq)
            elif kind == "Member.Updated":
                key = str(ev.data["userid"])
                current = members.get(key)
                members[key] = ({**(current[0] if current else {}), **ev.data}, seq)
            elif kind == "Member.Deleted":
                members.pop(str(ev.data["userid"]), None)
        position = section[-1].id + 1
    with app.recorder.datastore.transaction(commit=True) as cur:  # type: ignore[attr-defined]
        cur.execute(
            "CREATE TABLE IF NOT EXISTS snapshots (projection TEXT NOT NULL, key TEXT NOT NULL,"
            " state TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (projection, key))"
        )
        cur.execute("DELETE FROM snapshots")
        cur.executemany(
            "INSERT INTO snapshots (projection, key, state, seq) VALUES (?, ?, ?, ?)",
            [
                (name, key, json.dumps(state), seq)
                for name, table in (("members", members), ("member_orders", orders))
                for key, (state, seq) in table.items()
            ],
        )
    return {
        "scanned": scanned,
        "members": len(members),
        "member_orders": len(orders),
        "seconds": time.perf_counter() - start,
    }


def do_emit(db: str, data_json: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    app = open_app(db)
    data = json.loads(data_json)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    env = {"id": str(uuid.uuid4()), "source": "evflow:cli", "subject": None, "time": now}
    order = Order(f"{data['orderId']}/{env['id']}", data, env)  # a new aggregate per process
    app.save(order)
    return {"id": str(order.id), "max_notification_id": app.recorder.max_notification_id()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[0] == "import":
        result = do_import(Path(args[1]), args[2])
    elif len(args) == 2 and args[0] == "replay":
        result = do_replay(args[1])
    elif len(args) == 3 and args[0] == "emit":
        result = do_emit(args[1], args[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    # Run as the module `peer` (not `__main__`): the stored topics are then `peer:Member.Created`
    # whichever way a process starts, and the module comes from the bytecode cache like evflow's.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peer

    raise SystemExit(peer.main())
