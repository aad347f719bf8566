"""The library: one object that holds a log and its rules. Every CLI command calls one method.

>>> from evflow import Evflow
>>> flow = Evflow(db="shop.db", rules="rules")
>>> result = flow.emit({"type": "order.placed", "data": {"orderId": "o-1", "orderAmt": 120}})
>>> result.event["seq"]
1
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evflow.errors import EvflowError, InvalidEvent, UsageError
from evflow.events import DEFAULT_SOURCE, Event, normalize
from evflow.routing import Outcome, Router
from evflow.store import DEFAULT_DB, open_store
from evflow.store.base import EventFilter, Stats

if TYPE_CHECKING:
    from evflow.rules import RuleSet
    from evflow.store.sql import SqlStore, Transaction

DEFAULT_RULES = "rules"


@dataclass(slots=True)
class ImportResult:
    recorded: int = 0
    duplicates: int = 0
    derived: int = 0
    deliveries: list[int] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "FILE:LINE: problem", with --skip-invalid
    last_seq: int = 0


class Evflow:
    """An event log (``db``: URL or path) with the rules in ``rules`` (a folder)."""

    def __init__(
        self,
        db: str | None = None,
        rules: str | os.PathLike[str] | None = None,
        *,
        ruleset: RuleSet | None = None,
    ) -> None:
        self.db_url = db or os.environ.get("EVFLOW_DB") or DEFAULT_DB
        self.rules_dir = Path(rules or os.environ.get("EVFLOW_RULES") or DEFAULT_RULES)
        # a folder named on purpose must exist: a typo would otherwise switch every rule off
        self._rules_named = bool(rules or os.environ.get("EVFLOW_RULES"))
        self._store: SqlStore | None = None
        self._ruleset = ruleset
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()

    # -- resources ----------------------------------------------------------------------------

    @property
    def store(self) -> SqlStore:
        if self._store is None:
            self._store = open_store(self.db_url)
        return self._store

    @property
    def ruleset(self) -> RuleSet:
        if self._ruleset is None:
            from evflow.loading import load_rules

            if self._rules_named and not self.rules_dir.exists():
                raise UsageError(
                    f"--rules: no such folder {self.rules_dir} (from --rules or EVFLOW_RULES)",
                    hint="create it ('evflow init' writes the example rules) or fix the path",
                )
            self._fingerprint = self._rules_fingerprint()
            self._ruleset = load_rules(self.rules_dir, cache_dir=self.cache_dir)
        return self._ruleset

    def _rules_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        from evflow.loading import rule_files

        files = [self.rules_dir] if self.rules_dir.is_file() else rule_files(self.rules_dir)
        out = []
        for path in files:
            try:
                st = path.stat()
            except OSError:
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def refresh_rules(self) -> RuleSet:
        """The rules, reloaded if their files changed since they were loaded (for workers).

        Raises :class:`InvalidRules` when the changed files do not validate; the rules loaded
        before stay in force.
        """
        if self._ruleset is not None and self._rules_fingerprint() != self._fingerprint:
            from evflow.loading import load_rules

            fingerprint = self._rules_fingerprint()
            try:
                self._ruleset = load_rules(self.rules_dir, cache_dir=self.cache_dir)
            finally:
                # a broken edit is reported once, not every turn; a file caught half-written
                # (changed while loading) is loaded again on the next turn
                changed = self._rules_fingerprint() != fingerprint
                self._fingerprint = () if changed else fingerprint
        return self.ruleset

    @property
    def project_dir(self) -> Path:
        """The rules folder's parent: where run actions and python handlers are found."""
        folder = self.rules_dir.absolute()
        return folder.parent.parent if folder.is_file() else folder.parent

    @property
    def cache_dir(self) -> Path | None:
        """Compiled-rules cache beside a SQLite database (``.evflow/cache``), else none."""
        if "://" in self.db_url and not self.db_url.startswith("sqlite"):
            return Path(".evflow") / "cache"
        path = self.db_url.removeprefix("sqlite:///")
        if path == ":memory:":
            return None
        return Path(path).parent / "cache"

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Evflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------

    def emit(
        self,
        event: Mapping[str, Any],
        *,
        dry_run: bool = False,
        at: datetime | None = None,
        default_source: str = DEFAULT_SOURCE,
    ) -> Outcome:
        """Append one event and what its rules trigger, in one transaction.

        ``dry_run`` does all of it and rolls back: what it reports is exactly what a real emit
        would have done, and nothing is recorded. ``at`` judges windows as of that time.
        """
        normalized = normalize(event, default_source=default_source)
        router = Router(self.ruleset, at=at)
        try:
            with self.store.write() as tx:
                outcome = router.append(tx, normalized)
                if dry_run:
                    raise _Rollback(outcome)
        except _Rollback as rollback:
            return rollback.outcome
        return outcome

    def import_events(
        self,
        lines: Iterable[tuple[str, Any]],
        *,
        skip_invalid: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult:
        """Append events in order, in one transaction.

        ``lines`` yields ``(where, raw)`` pairs (``where`` is ``FILE:LINE``; ``raw`` a parsed
        JSON value, or an :class:`InvalidEvent` for a line that did not parse). Atomic: the
        first bad line raises and nothing is recorded, unless ``skip_invalid``, which records the
        good lines and lists every bad one.
        """
        result = ImportResult()
        router = Router(self.ruleset)
        self.store.prepare_bulk_write()
        with self.store.write() as tx:
            for count, (where, event) in enumerate(_checked(tx, lines), 1):
                try:
                    if isinstance(event, InvalidEvent):
                        raise event
                    if skip_invalid:
                        tx.savepoint()
                    try:
                        outcome = router.append(tx, event)
                    except EvflowError as exc:
                        if not skip_invalid:
                            raise EvflowError(f"{where}: {exc}") from None
                        tx.rollback_to_savepoint()
                        raise InvalidEvent("event", str(exc), where) from None
                    if skip_invalid:
                        tx.release()
                except InvalidEvent as exc:
                    if not skip_invalid:
                        raise
                    result.invalid.append(str(exc))
                    continue
                if outcome.duplicate:
                    result.duplicates += 1
                else:
                    result.recorded += 1
                    result.derived += len(outcome.derived)
                    result.last_seq = outcome.event["seq"]
                result.deliveries.extend(d["id"] for d in outcome.deliveries)
                if progress is not None and count % 500 == 0:
                    progress(count)
        return result

    def dispatch(self, ids: list[int]) -> list[str]:
        """Run these deliveries now (after their commit); one line per failed delivery."""
        from evflow.dispatch import dispatch_ids

        return dispatch_ids(self, ids)

    def tick(self, now: datetime | None = None, warn: Callable[[str], None] | None = None) -> None:
        """Emit the schedule occurrences that are due (cheap when none is); for workers."""
        from evflow.schedules import tick_once

        tick_once(self, now, warn=warn)

    # -- reading ------------------------------------------------------------------------------

    def events(self, flt: EventFilter | None = None) -> Iterator[Event]:
        return self.store.read(flt)

    def get(self, ref: str | int) -> Event | None:
        return self.store.get(ref)

    def caused_tree(self, event: Event, depth: int = 0) -> list[tuple[int, Event]]:
        """Events caused by ``event``, depth-first, with their depth (1 = direct)."""
        out: list[tuple[int, Event]] = []
        for child in self.store.caused_by(event["id"]):
            out.append((depth + 1, child))
            if depth + 1 < 64:
                out.extend(self.caused_tree(child, depth + 1))
        return out

    def stats(self) -> Stats:
        return self.store.stats()

    def positions(self) -> dict[str, dict[str, int]]:
        """Every reader with a checkpoint (projections, bridges): its position and its lag."""
        from evflow.store.snapshots import checkpoints

        last = self.store.last_seq()
        return {
            name: {"position": cp.position, "lag": last - cp.position}
            for name, cp in checkpoints(self.store).items()
            if not name.endswith("~rebuild")  # a rebuild in progress, not a reader of its own
        }


def _checked(
    tx: Transaction, lines: Iterable[tuple[str, Any]], chunk: int = 500
) -> Iterator[tuple[str, Event | InvalidEvent]]:
    """Lines normalized, a chunk at a time, with one lookup per chunk of which identities the
    log already holds (instead of one per event)."""
    pending: list[tuple[str, Event | InvalidEvent]] = []

    def flush() -> Iterator[tuple[str, Event | InvalidEvent]]:
        tx.known_absent([(e["source"], e["id"]) for _, e in pending if isinstance(e, dict)])
        yield from pending
        pending.clear()

    for where, raw in lines:
        if isinstance(raw, InvalidEvent):
            pending.append((where, raw))
        else:
            try:
                pending.append((where, normalize(raw, where=where)))
            except InvalidEvent as exc:
                pending.append((where, exc))
        if len(pending) >= chunk:
            yield from flush()
    yield from flush()


class _Rollback(Exception):
    """Unwinds a dry run's transaction, carrying what it would have done."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("dry run")
        self.outcome = outcome
