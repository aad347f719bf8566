"""Issue 13 §5: the blind spots of the suite, closed with positions rather than counts.

- ``import --skip-invalid`` keeps ``seq`` gapless when a line is rolled back to its savepoint.
- A projection's checkpoint commits with its rows: a fault injected in the database (a trigger
  that makes the row write or the checkpoint write fail) leaves the checkpoint unchanged, and a
  resume equals a clean rebuild. The NATS bridge's position likewise.
- ``query --as-of TIME`` is inclusive at exactly an event's time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.conftest import NatsTarget
from tests.hostile.helpers import (
    as_json,
    cli,
    database_url,
    events,
    fail_writes,
    heal,
    ok,
    write_rules,
)

pytestmark = pytest.mark.usefixtures("each_backend")


def line(i: str, **data: object) -> str:
    return json.dumps({"type": "item", "source": "s", "id": i, "data": data})


def test_skip_invalid_keeps_seq_gapless(project: Path) -> None:
    write_rules(
        project,
        "rules:\n"
        "  - name: ping\n    on: ping\n    then:\n      - emit: pong\n"
        "  - name: pong\n    on: pong\n    then:\n      - emit: ping\n"
        "  - name: echo\n    on: item\n    then:\n      - emit: item.seen\n"
        "        data: {k: '${{ data.k }}'}\n",
    )
    lines = [
        line("a", k=1),
        json.dumps({"type": "ping", "source": "s", "id": "loop"}),  # a chain too deep
        '{"type": "item", "source": "s", "id": "sur", "data": {"s": "\\ud800"}}',
        line("b", k=2),
        '{"type": "item", "source": "s", "id": "big", "data": {"n": ' + "9" * 5000 + "}}",
        line("c"),  # its rule's template fails: recorded, with the rule error
        line("d", k=4),
    ]
    result = cli("import", "-", "--skip-invalid", stdin="\n".join(lines))
    assert result.exit_code == 0, result.stderr
    recorded = events()
    seqs = [e["seq"] for e in recorded]
    assert seqs == list(range(1, len(recorded) + 1)), seqs
    position = {e["id"]: e["seq"] for e in recorded if e["source"] == "s"}
    assert "sur" not in position and "big" not in position
    # each cause is directly followed by what it caused: positions, not only counts
    assert recorded[position["a"]]["type"] == "item.seen"
    assert recorded[position["b"]]["type"] == "item.seen"
    assert position["b"] > position["a"] and position["d"] > position["c"] > position["b"]
    # and the next append continues right after the last one
    ok("emit", "item", "--id", "e", "--source", "s", "--data", '{"k": 5}', "--no-dispatch")
    assert [e["seq"] for e in events()] == list(range(1, len(recorded) + 3))


# -- fault injection: projections --------------------------------------------------------------

PROJECTION = """\
projections:
  - name: tally
    key: data.k
    on:
      item:
        inc: {n: 1}
"""


def tally() -> list[dict[str, object]]:
    return as_json("query", "tally")  # type: ignore[no-any-return]


def position(name: str) -> int:
    stats = as_json("stats")
    readers = stats.get("projections") or stats.get("readers") or {}
    return int(readers.get(name, {}).get("position", 0))


@pytest.mark.parametrize(
    ("table", "when"),
    [
        ("snapshots", "NEW.key = 'k3'"),  # a row write fails half-way through the batch
        ("checkpoints", "NEW.name = 'tally'"),  # the checkpoint write fails after the rows
    ],
    ids=["rows", "checkpoint"],
)
def test_a_failed_write_leaves_the_checkpoint_and_a_resume_equals_a_rebuild(
    project: Path, table: str, when: str
) -> None:
    write_rules(project, PROJECTION)
    for i in range(6):
        ok("emit", "item", "--data", json.dumps({"k": f"k{i % 4}"}), "--no-dispatch")
    ok("replay")
    before_rows, before_position = tally(), position("tally")
    assert before_position == 6
    for i in range(6, 12):
        ok("emit", "item", "--data", json.dumps({"k": f"k{i % 4}"}), "--no-dispatch")
    url = database_url(project)
    fail_writes(url, table, when)
    try:
        failed = cli("replay")
        assert failed.exit_code != 0 and "injected fault" in failed.stderr
        assert "Traceback" not in failed.stderr
        assert position("tally") == before_position
        assert as_json("query", "tally", "--as-of", "6") == before_rows
    finally:
        heal(url, table)
    ok("replay")
    resumed = tally()
    assert position("tally") == 12
    ok("replay", "--rebuild")
    assert tally() == resumed
    assert sorted((r["key"], r["state"]["n"]) for r in resumed) == [  # type: ignore[index]
        ("k0", 3), ("k1", 3), ("k2", 3), ("k3", 3),
    ]  # fmt: skip


def test_query_catch_up_under_a_fault_changes_nothing(project: Path) -> None:
    write_rules(project, PROJECTION)
    ok("emit", "item", "--data", '{"k": "a"}', "--no-dispatch")
    ok("replay")
    ok("emit", "item", "--data", '{"k": "a"}', "--no-dispatch")
    url = database_url(project)
    fail_writes(url, "checkpoints", "NEW.name = 'tally'")
    try:
        cli("query", "tally")  # may fall back to the stored rows or fail; never half-apply
        assert position("tally") == 1
    finally:
        heal(url, "checkpoints")
    [row] = tally()
    assert row["state"] == {"n": 2}


# -- fault injection: the NATS bridge's position ------------------------------------------------


@pytest.mark.nats
def test_a_failed_position_write_republishes_nothing_twice(
    project: Path, nats_target: NatsTarget
) -> None:
    from tests.fixtures.nats_server import NATS_URL

    write_rules(project, "rules: []\n")
    for i in range(5):
        ok("emit", "item", "--id", f"i{i}", "--source", "s", "--no-dispatch")
    args = ["bridge", "nats", "--url", NATS_URL, "--stream", nats_target.stream,
            "--subject-prefix", nats_target.prefix, "--once"]  # fmt: skip
    url = database_url(project)
    fail_writes(url, "checkpoints", "NEW.name <> 'tally'")
    try:
        failed = cli(*args)
        assert failed.exit_code != 0 and "injected fault" in failed.stderr
    finally:
        heal(url, "checkpoints")
    stats = as_json("stats")
    bridges = stats.get("bridges") or {}
    assert all(v["position"] == 0 for v in bridges.values())
    ok(*args)
    import asyncio

    async def count() -> int:
        import nats

        nc = await nats.connect(NATS_URL)
        try:
            info = await nc.jetstream().stream_info(nats_target.stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    assert asyncio.run(count()) == 5  # each event once, despite the retried publish


# -- --as-of TIME is inclusive ---------------------------------------------------------------


def test_as_of_time_is_inclusive_at_an_events_time(project: Path) -> None:
    write_rules(project, PROJECTION)
    times = ["2024-05-01T10:00:00Z", "2024-05-01T10:00:01.5Z", "2024-05-01T10:00:03Z"]
    for i, t in enumerate(times):
        ok("emit", "item", "--time", t, "--data", json.dumps({"k": "a", "i": i}), "--no-dispatch")

    def n_at(when: str) -> int:
        rows = as_json("query", "tally", "--as-of", when)
        return int(rows[0]["state"]["n"]) if rows else 0

    assert n_at("2024-05-01T09:59:59.999999Z") == 0
    assert n_at("2024-05-01T10:00:00Z") == 1
    assert n_at("2024-05-01T10:00:01.5Z") == 2
    assert n_at("2024-05-01T12:00:01.500000+02:00") == 2  # the same instant, with an offset
    assert n_at("2024-05-01T10:00:01.499999Z") == 1
    assert n_at("2024-05-01T10:00:03Z") == 3
    assert n_at("2") == 2 and n_at("3") == 3  # and by seq, inclusive as before
