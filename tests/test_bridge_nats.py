"""The NATS JetStream bridge, against the real server on 127.0.0.1:4222 (marked ``nats``).

Each test gets its own stream and subject prefix, deleted afterwards. Without a server the tests
are skipped, unless CI is set: there a missing server is a failure.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evflow.app import Evflow
from evflow.bridge.nats import (
    NatsOptions,
    event_from_message,
    ingest,
    message_id,
    publish_log,
)
from evflow.core.records import EventFilter
from evflow.errors import InvalidEvent
from evflow.store.bridges import bridge_stats, instance_id, read_position
from tests.conftest import evflow_exe, run_cli, unique
from tests.fixtures.nats_server import (
    NATS_URL,
    delete_streams,
    publish_raw,
    require_nats,
    stream_messages,
)

URL = NATS_URL


# -- the message format, no server needed ----------------------------------------------------


def test_message_id_is_source_slash_id_or_a_hash() -> None:
    assert message_id("svc://orders", "o-1") == "svc://orders/o-1"
    hashed = message_id("svc", "a/b")  # a '/' in the id would make the text ambiguous
    assert hashed.startswith("sha256-") and "/" not in hashed
    assert message_id("svc", "x" * 300).startswith("sha256-")
    assert message_id("svc", "has space").startswith("sha256-")
    assert message_id("a", "b/c") != message_id("a/b", "c")


def test_plain_json_takes_its_type_from_the_subject() -> None:
    event = event_from_message(
        "evflow.order.placed",
        b'{"orderId": "o-1"}',
        None,
        prefix="evflow",
        stream="S",
        stream_seq=7,
        timestamp="2024-05-01T00:00:00.000000Z",
    )
    assert event["type"] == "order.placed"
    assert event["source"] == "nats:evflow.order.placed"
    assert event["id"] == "S:7:2024-05-01T00:00:00.000000Z"
    assert event["time"] == "2024-05-01T00:00:00.000000Z"
    assert event["data"] == {"orderId": "o-1"}
    outside = event_from_message(
        "mail.sent",
        b"{}",
        {"Nats-Msg-Id": "m-1"},
        prefix="evflow",
        stream="S",
        stream_seq=1,
        timestamp=None,
    )
    assert (outside["type"], outside["id"]) == ("mail.sent", "m-1")


def test_cloudevents_structured_and_binary() -> None:
    ce = {"specversion": "1.0", "type": "a.b", "source": "svc", "id": "1", "data": {"x": 1}}
    event = event_from_message(
        "any.thing",
        json.dumps(ce).encode(),
        None,
        prefix="evflow",
        stream="S",
        stream_seq=1,
        timestamp=None,
    )
    assert (event["type"], event["source"], event["id"], event["data"]) == (
        "a.b",
        "svc",
        "1",
        {"x": 1},
    )
    headers = {"ce-specversion": "1.0", "ce-type": "c.d", "ce-source": "svc", "ce-id": "2"}
    binary = event_from_message(
        "any.thing", b'{"y": 2}', headers, prefix="evflow", stream="S", stream_seq=2, timestamp=None
    )
    assert (binary["type"], binary["id"], binary["data"]) == ("c.d", "2", {"y": 2})


@pytest.mark.parametrize(
    "payload", [b"not json", b"[1, 2]", b'{"specversion": "1.0", "type": ""}']
)
def test_messages_that_are_not_events_are_rejected(payload: bytes) -> None:
    with pytest.raises(InvalidEvent):
        event_from_message(
            "evflow.x", payload, None, prefix="evflow", stream="S", stream_seq=1, timestamp=None
        )


def test_missing_nats_py_names_the_extra(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    result = run_cli(["bridge", "nats", "--once"])
    assert result.exit_code == 1
    assert "nats-py is not installed" in result.stderr
    assert "evflow[nats]" in result.stderr


# -- against the server ----------------------------------------------------------------------


@pytest.fixture
def target() -> Iterator[NatsOptions]:
    """A fresh stream and subject prefix on the server; deleted afterwards."""
    require_nats(URL)
    options = NatsOptions(url=URL, stream=unique("EVT"), prefix=unique("evt"), batch=1000)
    yield options
    asyncio.run(delete_streams([options.stream]))


def _log_with(path: Path, count: int, rules: Path | None = None) -> Evflow:
    (path.parent / "no-rules").mkdir(exist_ok=True)
    flow = Evflow(db=str(path), rules=str(rules or path.parent / "no-rules"))
    result = flow.import_events(
        (f"gen:{i}", {"type": f"t.k{i % 3}", "source": "test", "id": f"e{i}", "data": {"i": i}})
        for i in range(1, count + 1)
    )
    assert result.recorded == count
    return flow


@pytest.mark.nats
def test_publishes_every_event_once_in_order(tmp_path: Path, target: NatsOptions) -> None:
    flow = _log_with(tmp_path / "log.db", 10_000)
    report = asyncio.run(publish_log(flow, target, once=True))
    assert (report.published, report.position) == (10_000, 10_000)
    messages = asyncio.run(stream_messages(target.stream))
    assert len(messages) == 10_000
    seqs = [json.loads(m.data)["seq"] for m in messages]
    assert seqs == list(range(1, 10_001))
    first = messages[0]
    assert first.subject == f"{target.prefix}.t.k1"
    assert first.headers["Nats-Msg-Id"] == "test/e1"
    assert first.headers["Evflow-Origin"] == instance_id(flow.store)
    assert first.headers["Evflow-Seq"] == "1"
    assert json.loads(first.data)["specversion"] == "1.0"
    assert read_position(flow.store, target.checkpoint) == 10_000
    assert bridge_stats(flow.store)[target.checkpoint]["lag"] == 0
    again = asyncio.run(publish_log(flow, target, once=True))
    assert again.published == 0


@pytest.mark.nats
def test_sigkilled_bridge_resumes_and_the_stream_holds_each_event_once(
    tmp_path: Path, target: NatsOptions
) -> None:
    db = tmp_path / "log.db"
    _log_with(db, 10_000).close()
    args = [
        evflow_exe(),
        "--db",
        str(db),
        "bridge",
        "nats",
        "--url",
        URL,
        "--stream",
        target.stream,
        "--subject-prefix",
        target.prefix,
    ]
    proc = subprocess.Popen([*args, "--batch", "50"], cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        position = 0
        deadline = time.monotonic() + 60
        while position < 2000 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
            with sqlite3.connect(db) as conn:
                row = conn.execute(
                    "SELECT position FROM checkpoints WHERE name = ?", (target.checkpoint,)
                ).fetchone()
            position = row[0] if row else 0
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
    assert 2000 <= position < 10_000, f"checkpoint at kill: {position}"
    done = subprocess.run(
        [*args, "--once"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    messages = asyncio.run(stream_messages(target.stream))
    seqs = [json.loads(m.data)["seq"] for m in messages]
    assert seqs == list(range(1, 10_001))
    with sqlite3.connect(db) as conn:
        (final,) = conn.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (target.checkpoint,)
        ).fetchone()
    assert final == 10_000


@pytest.mark.nats
def test_ingest_valid_duplicate_and_malformed_messages(tmp_path: Path, target: NatsOptions) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "x.yaml").write_text(
        "version: 1\nrules:\n  - name: pong\n    on: ext.ping\n    then:\n      - emit: ext.pong\n"
    )
    flow = Evflow(db=str(tmp_path / "log.db"), rules=str(rules))
    flow.emit({"type": "ext.known", "source": "svc", "id": "known"})
    ping = {"specversion": "1.0", "type": "ext.ping", "source": "svc", "id": "p1", "data": {"n": 1}}
    asyncio.run(ensure_only(target))
    asyncio.run(
        publish_raw(
            f"{target.prefix}.in",
            [
                (json.dumps(ping).encode(), None),
                (json.dumps(ping).encode(), None),  # redelivered by a publisher: same source+id
                (json.dumps({**ping, "type": "ext.known", "id": "known"}).encode(), None),
                (b"not json", None),
                (b"[1, 2]", None),
                (json.dumps({**ping, "id": "p2", "type": ""}).encode(), None),
            ],
        )
    )
    asyncio.run(publish_raw(f"{target.prefix}.shop.order", [(b'{"orderId": "o-9"}', None)]))
    problems: list[str] = []
    report = asyncio.run(ingest(flow, target, f"{target.prefix}.>", once=True, log=problems.append))
    assert (report.appended, report.duplicates, report.terminated, report.own) == (2, 2, 3, 0)
    assert len(problems) == 3 and all("terminated" in p for p in problems)
    assert any("malformed JSON" in p for p in problems)
    types = [e["type"] for e in flow.events(EventFilter())]
    assert types == ["ext.known", "ext.ping", "ext.pong", "shop.order"]  # routed: ping -> pong
    order = flow.get(4)
    assert order is not None and order["data"] == {"orderId": "o-9"}
    # everything was acked or terminated: nothing comes back
    again = asyncio.run(ingest(flow, target, f"{target.prefix}.>", once=True))
    assert (again.appended, again.duplicates, again.terminated) == (0, 0, 0)


async def ensure_only(target: NatsOptions) -> None:
    import nats

    from evflow.bridge.nats import ensure_stream

    nc = await nats.connect(URL)
    try:
        await ensure_stream(nc.jetstream(), target)
    finally:
        await nc.close()


@pytest.mark.nats
def test_both_directions_at_once_without_loops(tmp_path: Path, target: NatsOptions) -> None:
    db = tmp_path / "log.db"
    _log_with(db, 100).close()
    # two handles on one database, as two processes would have
    (tmp_path / "no-rules").mkdir(exist_ok=True)
    out_flow = Evflow(db=str(db), rules=str(tmp_path / "no-rules"))
    in_flow = Evflow(db=str(db), rules=str(tmp_path / "no-rules"))
    subject = f"{target.prefix}.>"
    asyncio.run(ensure_only(target))  # ingest needs the stream; only publishing makes it

    async def scenario() -> tuple[Any, Any]:
        stop = asyncio.Event()
        publisher = asyncio.create_task(publish_log(out_flow, target, stop=stop))
        consumer = asyncio.create_task(ingest(in_flow, target, subject, stop=stop))
        await asyncio.sleep(0.3)
        foreign = [
            (
                json.dumps(
                    {
                        "specversion": "1.0",
                        "type": "ext.hello",
                        "source": "other",
                        "id": f"f{i}",
                        "data": {"i": i},
                    }
                ).encode(),
                None,
            )
            for i in range(10)
        ]
        await publish_raw(f"{target.prefix}.ext.hello", foreign)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if (
                out_flow.store.last_seq() == 110
                and read_position(out_flow.store, target.checkpoint) == 110
            ):
                break
        await asyncio.sleep(1.5)  # long enough for a loop to show
        stop.set()
        return await publisher, await consumer

    published, ingested = asyncio.run(scenario())
    assert out_flow.store.last_seq() == 110  # each foreign event appended once, nothing else
    assert ingested.appended == 10
    assert ingested.own == published.published == 110  # our own messages were all skipped
    messages = asyncio.run(stream_messages(target.stream))
    ours = [m for m in messages if m.headers and m.headers.get("Evflow-Origin")]
    assert len(messages) == 120 and len(ours) == 110
    assert sorted(json.loads(m.data)["seq"] for m in ours) == list(range(1, 111))


@pytest.mark.nats
def test_cli_once_and_stats(project: Path, target: NatsOptions) -> None:
    db = str(project / "log.db")
    assert (
        run_cli(["--db", db, "emit", "order.placed", "--data", '{"orderId": "o-1"}']).exit_code == 0
    )
    args = [
        "--db",
        db,
        "bridge",
        "nats",
        "--url",
        URL,
        "--stream",
        target.stream,
        "--subject-prefix",
        target.prefix,
        "--once",
    ]
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr
    assert "published 1 event(s)" in result.stderr
    flow = Evflow(db=db)
    assert bridge_stats(flow.store) == {
        target.checkpoint: {
            "position": 1,
            "last_seq": 1,
            "lag": 0,
            "updated_at": bridge_stats(flow.store)[target.checkpoint]["updated_at"],
        }
    }
    bad = run_cli(["--db", db, "bridge", "nats", "--url", "nats://127.0.0.1:1", "--once"])
    assert bad.exit_code == 1
    assert "cannot connect to NATS at nats://127.0.0.1:1" in bad.stderr
