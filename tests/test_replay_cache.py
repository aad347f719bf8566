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
