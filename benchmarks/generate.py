"""Deterministic shop-shaped events for the benchmarks (not part of the test suite).

    python benchmarks/generate.py N out.jsonl [--seed 42]

The stream looks like a small shop: members are created, updated and deleted (``data.userid``,
``name``, ``email``), live members place orders (``orderId``, ``userid``, ``productId``,
``orderAmt``: integers 5..500, log-uniform so that about a third are over 100) and shipments are
requested for earlier orders. Every event has a ``source``, a unique ``id``, a ``subject`` (the
member) and an increasing ``time`` starting 2016-09-01T00:00:00Z (1..60 s apart, so 100,000
events span about five weeks and cross the example rules' 2016-10-01 window start).
The same seed always gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

START = datetime(2016, 9, 1, tzinfo=UTC)
FIRST_NAMES = ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim"]
GIVEN_NAMES = ["Minji", "Jun", "Seo-yeon", "Ji-ho", "Ha-eun", "Do-yun", "Su-ah", "Ye-jun"]
LOG_MIN, LOG_MAX = math.log(5), math.log(500)


def _amount(rng: random.Random) -> int:
    """5..500, log-uniform: P(> 100) = ln(5) / ln(100) ~ 0.35."""
    return max(5, min(500, round(math.exp(rng.uniform(LOG_MIN, LOG_MAX)))))


def events(n: int, seed: int = 42) -> Iterator[dict[str, Any]]:
    """The first ``n`` events of the stream for ``seed``."""
    rng = random.Random(seed)
    now = START
    live: list[str] = []  # userids of current members
    orders: list[str] = []  # recent orders awaiting shipment
    next_user = next_order = 1
    counters = {"m": 0, "o": 0, "s": 0}

    def make(
        kind: str, type_: str, source: str, subject: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        counters[kind] += 1
        return {
            "specversion": "1.0",
            "type": type_,
            "source": source,
            "id": f"{kind}-{counters[kind]:08d}",
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        }

    for _ in range(n):
        now += timedelta(seconds=rng.randint(1, 60))
        roll = rng.random()
        if not live or roll < 0.10:
            userid = f"u{next_user}"
            next_user += 1
            live.append(userid)
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(GIVEN_NAMES)}"
            email = f"{userid}@example.com"
            yield make("m", "member.created", "shop/members", userid,
                       {"userid": userid, "name": name, "email": email})
        elif roll < 0.15:
            userid = rng.choice(live)
            yield make("m", "member.updated", "shop/members", userid,
                       {"userid": userid, "email": f"{userid}.{rng.randint(1, 99)}@example.org"})
        elif roll < 0.17 and len(live) > 1:
            userid = live.pop(rng.randrange(len(live)))
            yield make("m", "member.deleted", "shop/members", userid, {"userid": userid})
        elif roll < 0.80 or not orders:
            userid = rng.choice(live)
            order_id = str(next_order)
            next_order += 1
            orders.append(order_id)
            if len(orders) > 1000:
                del orders[:500]
            yield make("o", "order.placed", "shop/orders", userid, {
                "orderId": order_id,
                "userid": userid,
                "productId": f"p-{rng.randint(1, 200)}",
                "orderAmt": _amount(rng),
            })
        else:
            order_id = orders.pop(rng.randrange(len(orders)))
            yield make("s", "shipment.requested", "shop/shipping", order_id,
                       {"orderId": order_id, "carrier": rng.choice(["cj", "hanjin", "post"])})


def write_jsonl(path: Path, n: int, seed: int = 42) -> int:
    """Write ``n`` events to ``path`` as JSON lines; returns ``n``."""
    with path.open("w", encoding="utf-8") as out:
        for event in events(n, seed):
            out.write(json.dumps(event, separators=(",", ":")))
            out.write("\n")
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("n", type=int, help="number of events")
    parser.add_argument("out", type=Path, help="output .jsonl file")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    write_jsonl(args.out, args.n, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
