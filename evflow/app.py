"""The library facade: one object that holds a log and its rules, with every use case.

It is one cohesive thing, whatever its length: the list of what a program can ask of evflow.

The CLI, the NATS bridge (and any program) call these methods; nothing else reaches into the store.
Each method wires a service (:mod:`evflow.services`) to this log's store, rules and project folder.
It is over 500 lines because it is one cohesive thing: the one public surface, a few lines per use
case; the work is in the services.

>>> from evflow import Evflow
>>> flow = Evflow(db="shop.db", rules="rules")
>>> result = flow.emit({"type": "order.placed", "data": {"orderId": "o-1", "orderAmt": 120}})
>>> result.event["seq"]
1
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evflow.core.events import DEFAULT_SOURCE, Event, normalize
from evflow.core.routing import Outcome
from evflow.errors import EvflowError, InvalidBatchItem, InvalidEvent, UsageError
from evflow.services.importing import ImportResult
from evflow.settings import Settings, resolve

if TYPE_CHECKING:
    import threading

    from evflow.core.records import Delivery, EventFilter, Stats
    from evflow.core.rules import RuleSet
    from evflow.core.timers import TimerRecord
    from evflow.errors import Problem
    from evflow.services.control import RedeliverReport, RetryReport
    from evflow.services.query import Row
    from evflow.services.replay import Notice, Progress, ReplayResult, Staleness
    from evflow.services.results import Result
    from evflow.services.ruletest import Report
    from evflow.services.ticking import Ticker, TickReport
    from evflow.services.timers import FireReport
    from evflow.store.sql import SqlStore

__all__ = ["Evflow", "ImportResult", "Outcome"]


class Evflow:
    """An event log (``db``: URL or path) with the rules in ``rules`` (a folder).

    What is not given is taken from ``EVFLOW_DB``/``EVFLOW_RULES``, then the defaults
    (:mod:`evflow.settings`).
    """

    def __init__(
        self,
        db: str | None = None,
        rules: str | os.PathLike[str] | None = None,
        *,
        ruleset: RuleSet | None = None,
        settings: Settings | None = None,
        create: bool = True,
    ) -> None:
        self.settings = settings or resolve(db, rules)
        #: whether opening the store may create the log (commands that only read pass False)
        self.create = create
        self._store: SqlStore | None = None
        self._ruleset = ruleset
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._ticker: Ticker | None = None

    # -- resources ----------------------------------------------------------------------------

    @property
    def db_url(self) -> str:
        return self.settings.db_url

    @property
    def rules_dir(self) -> Path:
        return self.settings.rules_dir

    @property
    def project_dir(self) -> Path:
        """The rules folder's parent: where run actions and python handlers are found."""
        return self.settings.project_dir

    @property
    def cache_dir(self) -> Path | None:
        return self.settings.cache_dir

    @property
    def store(self) -> SqlStore:
        """The storage (for the services and tests; programs use the methods below)."""
        if self._store is None:
            from evflow.store import open_store

            self._store = open_store(self.db_url, create=self.create)
        return self._store

    @property
    def display_url(self) -> str:
        """The database URL as it may be printed (no password)."""
        return self.store.display_url

    @property
    def ruleset(self) -> RuleSet:
        if self._ruleset is None:
            from evflow.rulefiles.loader import load_rules

            if self.settings.rules_named and not self.rules_dir.exists():
                raise UsageError(
                    f"--rules: no such folder {self.rules_dir} (from --rules or EVFLOW_RULES)",
                    hint="create it ('evflow init' writes the example rules) or fix the path",
                )
            self._fingerprint = self._rules_fingerprint()
            self._ruleset = load_rules(self.rules_dir, cache_dir=self.cache_dir)
        return self._ruleset

    def _rules_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        from evflow.rulefiles.loader import rule_files

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
            from evflow.rulefiles.loader import load_rules

            fingerprint = self._rules_fingerprint()
            try:
                self._ruleset = load_rules(self.rules_dir, cache_dir=self.cache_dir)
            finally:
                # a broken edit is reported once, not every turn; a file caught half-written
                # (changed while loading) is loaded again on the next turn
                changed = self._rules_fingerprint() != fingerprint
                self._fingerprint = () if changed else fingerprint
        return self.ruleset

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
        from evflow.core.events import check_outside_source
        from evflow.services.append import Appender

        check_outside_source(event)
        normalized = normalize(event, default_source=default_source)
        appender = Appender(self.ruleset, at=at)
        try:
            with self.store.write() as tx:
                outcome = appender.append(tx, normalized)
                if dry_run:
                    raise _Rollback(outcome)
        except _Rollback as rollback:
            return rollback.outcome
        return outcome

    def emit_batch(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Append events in order, and what their rules trigger, in one transaction: all of
        them, or none when one is invalid (:class:`InvalidBatchItem` names its position). An
        event already recorded (or repeated within the batch) is a duplicate, as for :meth:`emit`.
        """
        from evflow.core.events import check_outside_source
        from evflow.services.append import Appender

        normalized = []
        for index, raw in enumerate(events):
            try:
                check_outside_source(raw)  # as for emit: evflow's own sources are not for outside
                normalized.append(normalize(raw))
            except InvalidEvent as exc:
                raise InvalidBatchItem(index, exc) from None
        appender = Appender(self.ruleset)
        outcomes = []
        with self.store.write() as tx:
            for index, event in enumerate(normalized):
                try:
                    outcomes.append(appender.append(tx, event))
                except InvalidEvent as exc:
                    raise InvalidBatchItem(index, exc) from None
        return outcomes

    def emit_each(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome | EvflowError]:
        """Append events in one transaction, each on its own (a savepoint each): one that is
        invalid or fails is undone alone and returned as its error, in its place. For servers
        that commit the events of concurrent requests together (one sync to disk for all)."""
        from evflow.core.events import check_outside_source

        items: list[tuple[str, Event | InvalidEvent]] = []
        for index, raw in enumerate(events):
            try:
                check_outside_source(raw)
                items.append((str(index), normalize(raw)))
            except InvalidEvent as exc:
                items.append((str(index), exc))
        return [outcome for _, outcome in self.ingest(items)]

    def import_events(
        self,
        lines: Iterable[tuple[str, Any]] | Callable[[], Iterable[tuple[str, Any]]],
        *,
        skip_invalid: bool = False,
        reroute: bool = False,
        progress: Callable[[int], None] | None = None,
        chunk: int | None = None,
    ) -> ImportResult:
        """Append events in order, in one transaction, or in transactions of ``chunk`` events
        (then ``lines`` is a function giving the lines afresh: they are read twice, checked
        first); see :func:`evflow.services.importing.import_events`."""
        from evflow.services.importing import import_events

        return import_events(
            self.store, self.ruleset, lines, skip_invalid=skip_invalid, reroute=reroute,
            progress=progress, chunk=chunk,
        )  # fmt: skip

    def ingest(
        self, items: Sequence[tuple[str, Event | InvalidEvent]]
    ) -> list[tuple[str, Outcome | EvflowError]]:
        """Append a batch of events from another system in one transaction, each on its own: one
        that fails is undone alone and returned as its error (for bridges)."""
        from evflow.services.importing import ingest

        return ingest(self.store, self.ruleset, items)

    def dispatch(self, ids: list[int]) -> list[str]:
        """Run these deliveries now (after their commit); one line per failed delivery."""
        from evflow.services.dispatch import dispatch

        results = dispatch(self.store, self.ruleset, ids, base_dir=self.project_dir)
        return [r.describe() for r in results if not r.ok]

    def run_worker(
        self,
        *,
        once: bool = False,
        interval: float = 1.0,
        lease: float = 60.0,
        worker_id: str | None = None,
        stop: threading.Event | None = None,
        on_result: Callable[[Result], None] | None = None,
        warn: Callable[[str], None] | None = None,
        on_invalid_rules: Callable[[Exception], None] | None = None,
        on_start: Callable[[int | None], None] | None = None,
    ) -> int:
        """``evflow run``: tick schedules and dispatch due deliveries until ``stop`` is set
        (``once``: one round). Changed rule files are reloaded between rounds; invalid ones are
        reported to ``on_invalid_rules`` and the rules loaded before stay in force."""
        from evflow.errors import InvalidRules
        from evflow.services.dispatch import run_worker

        def refresh() -> RuleSet:
            try:
                return self.refresh_rules()
            except InvalidRules as exc:
                if on_invalid_rules is not None:
                    on_invalid_rules(exc)
                return self.ruleset

        return run_worker(
            self.store, self.ruleset, once=once, interval=interval, lease=lease,
            worker_id=worker_id, base_dir=self.project_dir, stop=stop, on_result=on_result,
            tick=lambda: self.tick(warn=warn), refresh=refresh, on_start=on_start,
        )  # fmt: skip

    @staticmethod
    def new_worker_id() -> str:
        """``host:pid:random``: a worker's name in the leases it takes."""
        from evflow.services.dispatch import new_worker_id

        return new_worker_id()

    def tick(self, now: datetime | None = None, warn: Callable[[str], None] | None = None) -> None:
        """Emit the schedule occurrences and fire the timers that are due (cheap when none is:
        one indexed query for timers); for workers, who dispatch the deliveries afterwards."""
        from evflow.services.ticking import Ticker

        if self._ticker is None:
            self._ticker = Ticker()
        self._ticker.tick(self.store, self.ruleset, now, warn=warn)
        fired = self.fire_timers(now)
        for error in fired.errors:
            if warn is not None:
                warn(f"evflow: error: {error}")
        for warning in fired.warnings:
            if warn is not None:
                warn(f"evflow: warning: {warning}")

    def fire_timers(
        self,
        now: datetime | None = None,
        on_batch: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> FireReport:
        """Fire every timer due at ``now`` (default: the clock), once each, in due order;
        ``on_batch`` gets the outcomes of each committed batch of fired emit timers."""
        from evflow.services.timers import fire_due

        return fire_due(self.store, self.ruleset, now, on_batch=on_batch)

    def timers(self, **selection: Any) -> Iterator[TimerRecord]:
        """Timers in id order, streamed; narrowed by ``status``, ``rule``, ``key``, ``cause_seq``,
        ``cancelled_by``, ``limit``."""
        from evflow.store.timers import select

        return select(self.store, **selection)

    def cancel_timers(self, ids: Sequence[int]) -> dict[int, str | None]:
        """Cancel pending timers by hand: each id -> None, or why not (its status, ``unknown``)."""
        from evflow.store.timers import cancel_ids

        with self.store.write() as tx:
            return cancel_ids(tx, ids)

    def tick_report(self, now: datetime | None = None) -> TickReport:
        """Tick every schedule at ``now`` (default: the clock); what was emitted, what failed."""
        from evflow.services.ticking import tick_report

        return tick_report(self.store, self.ruleset, now)

    def schedule_ticks(self) -> dict[str, datetime]:
        """Each known schedule's last tick."""
        from evflow.services.ticking import ticks

        return ticks(self.store)

    def retry(self, ids: Iterable[int] = (), *, dead: bool = False) -> RetryReport:
        """Failed and dead deliveries (``ids``, or every dead one) back to pending."""
        from evflow.services.control import retry

        return retry(self.store, ids, dead=dead)

    def redeliver(self, rule: str, **selection: Any) -> RedeliverReport:
        """Owe ``rule``'s run/http actions to past events it matches now (see the service)."""
        from evflow.services.control import redeliver

        return redeliver(self.store, self.ruleset, rule, **selection)

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

    def caused(
        self, event: Event, *, depth: int, limit: int
    ) -> tuple[list[tuple[int, Event]], int]:
        """Events caused by ``event``, depth-first with their depth (1 = direct), at most
        ``depth`` levels and ``limit`` events; and how many more there are just past those
        bounds (counted one level down, so a huge tree is never read whole)."""
        out: list[tuple[int, Event]] = []
        hidden = 0

        def walk(parent: Event, level: int) -> None:
            nonlocal hidden
            children = self.store.caused_by(parent["id"])
            if level > depth:
                hidden += len(children)
                return
            for child in children:
                if len(out) >= limit:
                    hidden += 1
                    continue
                out.append((level, child))
                walk(child, level + 1)

        walk(event, 1)
        return out, hidden

    def stream_deliveries(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> Iterator[Delivery]:
        """Deliveries in id order (``reverse``: newest first), streamed."""
        return self.store.stream_deliveries(status=status, rule=rule, limit=limit, reverse=reverse)

    def rule_errors(self, event_seq: int) -> list[tuple[str, str]]:
        """(rule, message) for each rule that failed on this event (filter, emit action)."""
        return self.store.rule_errors(event_seq)

    def deliveries(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        event_seq: int | None = None,
    ) -> list[Delivery]:
        return self.store.deliveries(status=status, rule=rule, event_seq=event_seq)

    def stats(self) -> Stats:
        return self.store.stats()

    def last_seq(self) -> int:
        return self.store.last_seq()

    def positions(self) -> dict[str, dict[str, int]]:
        """Every reader with a checkpoint (projections, bridges): its position and its lag."""
        from evflow.store.snapshots import checkpoints

        last = self.store.last_seq()
        return {
            name: {"position": cp.position, "lag": last - cp.position}
            for name, cp in checkpoints(self.store).items()
            if not name.endswith("~rebuild")  # a rebuild in progress, not a reader of its own
        }

    # -- projections --------------------------------------------------------------------------

    def replay(
        self,
        names: Sequence[str] | None = None,
        *,
        rebuild: bool = False,
        progress: Progress | None = None,
        notice: Notice | None = None,
    ) -> list[ReplayResult]:
        """Bring projections (all, or ``names``) up to date from the log."""
        from evflow.services.replay import replay

        return replay(
            self.store, self.ruleset, names, rebuild=rebuild, progress=progress, notice=notice,
            project_dir=str(self.project_dir),
        )  # fmt: skip

    def catch_up(self, names: Sequence[str]) -> Staleness:
        """Bring ``names`` up to date for a read; what is left stale when a handler fails."""
        from evflow.services.replay import catch_up

        return catch_up(self.store, self.ruleset, names, project_dir=str(self.project_dir))

    def check_projection(self, name: str) -> None:
        """Raise :class:`~evflow.services.replay.UnknownProjection` unless ``name`` is defined."""
        from evflow.services.replay import select

        select(self.ruleset, [name])

    def query(
        self, name: str, key: str | None = None, *, where: str | None = None
    ) -> Iterator[Row]:
        """Rows of the stored snapshot (in key order); see :meth:`catch_up` for freshness."""
        from evflow.services.query import query

        return query(self.store, self.ruleset, name, key, where=where)

    def sql(self, name: str, statement: str) -> tuple[list[str], list[list[Any]]]:
        """Run one read statement (read-only) against projection ``name``'s SQL table: column
        names and rows of JSON-ready values. See :meth:`catch_up` for freshness."""
        from evflow.services.replay import select
        from evflow.services.tables import read_only

        projection = select(self.ruleset, [name])[0]
        return read_only(self.store, projection, statement, str(self.project_dir))

    def as_of(
        self,
        name: str,
        *,
        seq: int | None = None,
        time: str | None = None,
        key: str | None = None,
        where: str | None = None,
    ) -> list[Row]:
        """The projection as it was at ``seq`` or ``time``, folded from the log in memory."""
        from evflow.services.query import as_of

        return as_of(
            self.store, self.ruleset, name, seq=seq, time=time, key=key, where=where,
            project_dir=str(self.project_dir),
        )  # fmt: skip

    # -- rule files ---------------------------------------------------------------------------

    def validate_rules(self, paths: Sequence[Path]) -> list[Problem]:
        """Every problem (errors and warnings) in these rule files; never raises for bad rules."""
        from evflow.rulefiles.loader import validate

        return validate(list(paths), default=self.rules_dir)

    def rule_files(self, folder: Path | None = None) -> list[Path]:
        """The rule files of ``folder`` (default: the rules folder), in load order."""
        from evflow.rulefiles.loader import rule_files

        return rule_files(folder if folder is not None else self.rules_dir)

    def run_rule_tests(self, paths: Sequence[str | Path] | None = None) -> Report:
        """Run the rule tests of ``paths`` (default: the rules folder's ``tests/``)."""
        from evflow.services.ruletest import run_tests

        return run_tests(paths, self.rules_dir)

    @staticmethod
    def rules_schema(tests: bool = False) -> dict[str, Any]:
        """The JSON Schema of rule files (``tests``: of rule test files), for editors."""
        from evflow.rulefiles.jsonschema import rules_schema, tests_schema

        return tests_schema() if tests else rules_schema()

    def install_example(self) -> list[Path]:
        """Write the example rules, their tests and the mail script; never overwrite a file."""
        from evflow.rulefiles.example import install_example

        return install_example(self.rules_dir)

    # -- the installation -------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """What ``evflow config`` reports: version, database (password masked) and whether it is
        reachable, the rules folder and how each was chosen, the definitions, the cache, the
        optional extras. Never creates the database."""
        import importlib.util
        from importlib.metadata import PackageNotFoundError, version

        from evflow.store import display_url, is_sqlite, sqlite_path

        s = self.settings
        try:
            evflow_version = version("evflow")
        except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
            evflow_version = "0+unknown"
        database: dict[str, Any] = {
            "url": sqlite_path(s.db_url) if is_sqlite(s.db_url) else display_url(s.db_url),
            "source": s.db_from,
        }
        try:
            with Evflow(settings=s, create=False) as probe:
                database["reachable"] = True
                database["events"] = probe.last_seq()
                database["status"] = "yes"
        except EvflowError as exc:
            database["reachable"] = False
            database["status"] = f"no: {exc.message}"
        rules: dict[str, Any] = {"path": str(s.rules_dir.absolute()), "source": s.rules_from}
        try:
            from evflow.rulefiles.loader import load_rules

            # read without writing the compiled-rules cache: config creates nothing
            ruleset = self._ruleset or load_rules(self.rules_dir, cache_dir=None)
            rules.update(
                rules=len(ruleset.rules),
                schedules=len(ruleset.schedules),
                projections=len(ruleset.projections),
                files=len(ruleset.files),
                valid=True,
            )
        except EvflowError as exc:
            rules.update(valid=False, problem=exc.message)
        return {
            "version": evflow_version,
            "project": str(s.project) if s.project else None,
            "database": database,
            "rules": rules,
            "cache": str(s.cache_dir.absolute()) if s.cache_dir else None,
            "extras": {  # pyproject's optional dependencies, each by what it installs
                name: all(importlib.util.find_spec(module) is not None for module in modules)
                for name, modules in (
                    ("postgres", ("psycopg",)),
                    ("nats", ("nats",)),
                    ("serve", ("starlette", "uvicorn")),
                    ("mysql", ("pymysql",)),
                )
            },
        }

    # -- bridges ------------------------------------------------------------------------------

    def instance_id(self) -> str:
        """This database's identity (what bridges stamp on what they publish)."""
        from evflow.store.bridges import instance_id

        return instance_id(self.store)

    def bridge_position(self, name: str) -> int:
        from evflow.store.bridges import read_position

        return read_position(self.store, name)

    def save_bridge_position(
        self, name: str, position: int, definition: dict[str, Any] | None = None
    ) -> None:
        """Record a bridge's position; never moves it backwards."""
        from evflow.store.bridges import save_position

        save_position(self.store, name, position, definition)

    def bridge_stats(self) -> dict[str, dict[str, Any]]:
        """Every bridge's position, the log's last seq and the lag between them."""
        from evflow.store.bridges import bridge_stats

        return bridge_stats(self.store)


class _Rollback(Exception):
    """Unwinds a dry run's transaction, carrying what it would have done."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("dry run")
        self.outcome = outcome
