"""Reading projections: the stored snapshot (``evflow query``), and the projection as it was at a
time or position (``--as-of``), folded from the log in memory without touching the snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from evflow.core.expressions import ExpressionError, compile_expression
from evflow.core.projections import SKIP, CompiledProjection, Vars
from evflow.errors import BadFilter, EvflowError
from evflow.services.replay import Row, select
from evflow.store import rows as codec
from evflow.store import snapshots

if TYPE_CHECKING:
    from evflow.core.rules import RuleSet
    from evflow.store.interface import Store


def _where(source: str | None) -> Callable[[Row], bool] | None:
    if source is None:
        return None
    try:
        expression = compile_expression(source, frozenset({"state", "key"}))
    except ExpressionError as exc:
        raise BadFilter(str(exc)) from None

    def keep(row: Row) -> bool:
        try:
            return expression.evaluate_bool({"state": row.state, "key": row.key})
        except EvflowError:
            return False  # as for rules: an expression failing on a row does not match

    return keep


def query(
    store: Store,
    ruleset: RuleSet,
    name: str,
    key: str | None = None,
    *,
    where: str | None = None,
) -> Iterator[Row]:
    """Rows of the stored snapshot (in key order), optionally one key and a CEL ``where`` over
    ``state`` and ``key``. Does not catch up: see :func:`catch_up`."""
    select(ruleset, [name])
    keep = _where(where)
    for k, state, seq in snapshots.rows(store, name, key):
        row = Row(k, codec.loads(state), seq)
        if keep is None or keep(row):
            yield row


def as_of(
    store: Store,
    ruleset: RuleSet,
    name: str,
    *,
    seq: int | None = None,
    time: str | None = None,
    key: str | None = None,
    where: str | None = None,
    project_dir: str | None = None,
) -> list[Row]:
    """The projection as it was at ``seq`` (inclusive) or at ``time`` (canonical UTC text: events
    whose own time is at or before it), folded in memory; the stored snapshot is not touched.

    The fold starts from the nearest copy kept by replay at or before ``seq`` whose events are all
    at or before ``time``: the same rows as folding from seq 1, for the cost of the distance."""
    (projection,) = select(ruleset, [name])
    compiled = CompiledProjection(projection, project_dir)
    keep = _where(where)
    until = seq if seq is not None else store.last_seq()
    rows: dict[str, tuple[Any, int]] = {}
    # from the nearest kept copy of the snapshot (see replay's COPY_EVERY), else from seq 1
    start = 0
    for _ in range(5):  # a copy read while a rebuild drops or redoes it is read again
        mark = snapshots.nearest_mark(
            store, projection.name, projection.definition_hash, seq=until, time=time
        )
        if mark is None:
            break
        copied = {k: (codec.loads(state), q) for k, state, q in snapshots.copy_rows(store, mark)}
        if snapshots.mark_stands(store, mark):
            start, rows = mark.position, copied
            break
    decode = codec.bulk_decoder(until - start)
    for event_seq, recorded, etype, body in store.scan_until(until, time, after=start):
        fold = compiled.fold_for(etype)
        if fold is None:
            continue
        v = Vars(decode(event_seq, recorded, body))
        row_key, _ = compiled.key(v)
        if row_key is None:
            continue
        row = rows.get(row_key)
        state = row[0] if row is not None else None
        v.set_state(state)
        new = compiled.step(fold, state, v, event_seq, etype)
        if new is SKIP:
            continue
        if new is None:
            rows.pop(row_key, None)
        else:
            # through JSON, so the result is exactly what a stored row would read back as
            rows[row_key] = (codec.loads(codec.dump_state(new)), event_seq)
    out = [Row(k, s, q) for k, (s, q) in sorted(rows.items())]
    if key is not None:
        out = [r for r in out if r.key == key]
    return [r for r in out if keep is None or keep(r)]
