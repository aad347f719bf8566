"""Issue 13 §2/§3: NATS ingest terminates a message it cannot record and records the rest.

Today one bad message in a batch rolls the whole batch back, and ingest crashes on it again on
every start. A message evflow cannot record (lone surrogates, an invalid event, an integer beyond
Python's digit limit, an ``evflow:`` source) is terminated and reported; the others are recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.conftest import NatsTarget, publish
from tests.hostile.helpers import cli, events, write_rules

pytestmark = [pytest.mark.nats, pytest.mark.usefixtures("each_backend")]


def ce(i: str, **extra: object) -> bytes:
    event = {"specversion": "1.0", "type": "ext.ping", "source": "svc", "id": i, "data": {"i": i}}
    return json.dumps({**event, **extra}).encode()


BAD_MESSAGES = {
    "lone-surrogate": b'{"specversion": "1.0", "type": "ext.ping", "source": "svc", "id": "s1",'
    b' "data": {"s": "\\ud800"}}',
    "invalid-utf8": b'{"specversion": "1.0", "type": "ext.ping", "source": "svc", "id": "u1",'
    b' "data": {"s": "\xff"}}',
    "huge-int": b'{"specversion": "1.0", "type": "ext.ping", "source": "svc", "id": "h1",'
    b' "data": {"n": ' + b"9" * 5000 + b"}}",
    "too-deep": b'{"specversion": "1.0", "type": "ext.ping", "source": "svc", "id": "d1",'
    b' "data": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
    "bad-time": ce("t1", time="0001-01-01T00:00:00+01:00"),
    "evflow-source": ce("f1", source="evflow:rule/pong"),
    "nan": b'{"specversion": "1.0", "type": "ext.ping", "source": "svc", "id": "n1",'
    b' "data": {"x": NaN}}',
}


def ingest(target: NatsTarget) -> object:
    return cli(
        "bridge", "nats", "--url", target.url, "--stream", target.stream,
        "--subject-prefix", target.prefix, "--ingest", f"{target.prefix}.>", "--once",
    )  # fmt: skip


@pytest.mark.parametrize("bad", sorted(BAD_MESSAGES))
def test_a_bad_message_is_terminated_and_the_batch_recorded(
    project: Path, nats_target: NatsTarget, bad: str
) -> None:
    write_rules(
        project,
        "rules:\n  - name: pong\n    on: ext.ping\n    then:\n      - emit: ext.pong\n",
    )
    publish(f"{nats_target.prefix}.in", [ce("a"), BAD_MESSAGES[bad], ce("b")])
    result = ingest(nats_target)
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert "bridge: terminated" in stderr and "Traceback" not in stderr
    recorded = [(e["type"], e["id"]) for e in events() if e["type"] == "ext.ping"]
    assert recorded == [("ext.ping", "a"), ("ext.ping", "b")]
    assert len([e for e in events() if e["type"] == "ext.pong"]) == 2
    # nothing comes back: the bad message was terminated, the others acknowledged
    again = ingest(nats_target)
    assert again.exit_code == 0, again.stderr  # type: ignore[attr-defined]
    assert "bridge: terminated" not in again.stderr  # type: ignore[attr-defined]
    assert len(events()) == 4
