"""The replay's row cache past its bounds (issue 16): rows kept as text, the oldest dropped and
read back when needed; the snapshot is the same as with a cache that holds everything."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from evflow.services import replay as replay_module
from evflow.services.replay import replay
from evflow.store import open_store
from tests.test_replay import COUNTER, append, rules, stored


def _events(n: int, keys: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = f"k{rng.randrange(keys)}"
        roll = rng.random()
        if roll < 0.1:
            out.append({"type": "t.del", "data": {"k": k}})
        elif roll < 0.2:
            out.append({"type": "t.set", "data": {"k": k, "n": 0, "v": rng.randrange(9)}})
        else:
            out.append({"type": "t.add", "data": {"k": k, "n": rng.randrange(1, 5)}})
    return out


@pytest.mark.parametrize(("hot", "total"), [(3, 5), (3, 1_000), (0, 2)])
def test_a_small_cache_gives_the_same_snapshot(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hot: int, total: int
) -> None:
    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    events = _events(400, 40, seed=hot + total)
    append(store, events[:250])
    append(store, events[250:])
    replay(store, rs, batch_size=17)
    expected = stored(store, "totals")
    monkeypatch.setattr(replay_module, "CACHE_ROWS", hot)
    monkeypatch.setattr(replay_module, "CACHE_TEXT_ROWS", total)
    replay(store, rs, rebuild=True, batch_size=17)
    assert stored(store, "totals") == expected
    # and incrementally, with new events on top of a rebuilt snapshot
    append(store, _events(100, 40, seed=7))
    replay(store, rs, batch_size=9)
    got = stored(store, "totals")
    monkeypatch.undo()
    replay(store, rs, rebuild=True)
    assert got == stored(store, "totals")


def test_a_rebuild_aside_writes_every_aside_write_every_events_and_resumes(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild built aside holds what it folded and writes rows and checkpoint every
    ASIDE_WRITE_EVERY events (not every batch): interrupted, the aside stands at its last write,
    equal to the log folded up to there, the live snapshot untouched; resumed, it ends equal to a
    clean rebuild."""
    from evflow.services.query import as_of
    from evflow.store import snapshots

    store, rs = open_store(db_url), rules(tmp_path, COUNTER)
    append(store, _events(200, 30, seed=3))
    replay(store, rs, batch_size=17)
    before = stored(store, "totals")
    append(store, _events(100, 30, seed=4))
    monkeypatch.setattr(replay_module, "ASIDE_WRITE_EVERY", 50)
    written: list[int] = []
    save = replay_module.snapshots.save_checkpoint

    def spy(store_: object, name: str, position: int, digest: str) -> None:
        written.append(position)
        save(store_, name, position, digest)  # type: ignore[arg-type]

    monkeypatch.setattr(replay_module.snapshots, "save_checkpoint", spy)

    class Stop(Exception):
        pass

    def stop_after_five(done: int, total: int) -> None:
        if done >= 5 * 17:
            raise Stop

    with pytest.raises(Stop):
        replay(store, rs, rebuild=True, batch_size=17, progress=stop_after_five)
    assert written == [51]  # 17 and 34 held; 51 - 0 >= 50 written; 68 and 85 held
    aside = snapshots.checkpoints(store)["totals~rebuild"]
    assert aside.position == 51
    assert stored(store, "totals~rebuild") == {
        r.key: (r.state, r.seq) for r in as_of(store, rs, "totals", seq=51)
    }
    assert stored(store, "totals") == before  # readers still see the old snapshot

    written.clear()
    (result,) = replay(store, rs, batch_size=17)  # resumes the rebuild aside
    assert result.rebuilt == "resumed rebuild"
    # a resumed rebuild reads its rows back as an incremental replay does: a write per batch
    assert written == [*range(68, 300, 17), 300]
    got = stored(store, "totals")
    monkeypatch.undo()
    replay(store, rs, batch_size=1_000, rebuild=True)
    assert got == stored(store, "totals")
    assert "totals~rebuild" not in snapshots.checkpoints(store)
