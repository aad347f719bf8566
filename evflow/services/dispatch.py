"""Dispatching deliveries: claim with a lease, run the action, record done, failed or dead.

The outbox rows are written by routing in the append transaction; everything after that is here.

- **Claim.** A worker takes one delivery at a time with an atomic ``UPDATE ... WHERE due`` checked
  by its row count (:func:`evflow.store.outbox.claim`), so two workers never run one delivery at
  the same time. The claim holds a lease of ``max(lease, action timeout + 30 s)``: a worker that
  dies leaves its delivery ``running`` until the lease lapses, then any worker takes it again.
  Delivery is therefore at least once; programs and webhooks get a stable idempotency key.
- **Retry.** A failed attempt ``n`` (counted at the claim) of a rule with
  ``retry: {attempts, backoff, max_backoff}`` is due again after
  ``min(max_backoff, backoff * 2**(n-1) * (1 + 0.2 * U[0,1)))``: never sooner than the backoff,
  never later than ``max_backoff``, with up to 20 % jitter so that retries of a burst spread out.
  After the last attempt it is ``dead`` until ``evflow retry``. A template that fails on the event
  is dead at once (retrying cannot help; fix the rule, then retry).
- **Time** is the store's clock (PostgreSQL: the server's, shared by every machine) unless ``now``
  is given, which tests use to step through backoffs without sleeping.
- **Working folder** of a ``run`` action without ``cwd``: the rules folder's parent, i.e. the
  project folder, so ``[./scripts/x.sh]`` works as written in the README.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evflow.core.events import Event, check_json, format_time, normalize, parse_time
from evflow.core.records import Delivery
from evflow.core.rules import EmitAction, HttpAction, Retry, RuleSet, RunAction
from evflow.core.text import redact_text
from evflow.errors import EvflowError
from evflow.rulefiles.loader import project_dir
from evflow.services import actions
from evflow.services.results import Result
from evflow.store import outbox

if TYPE_CHECKING:
    from evflow.store.interface import Store

DEFAULT_LEASE = 60.0  # seconds; the lease of a claim is at least the action's timeout + margin
LEASE_MARGIN = 30.0
DEFAULT_INTERVAL = 1.0
BATCH = 100
JITTER = 0.2


def new_worker_id() -> str:
    """``host:pid:random``: readable in ``evflow deliveries``, unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff_delay(retry: Retry, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before the retry that follows failed attempt number ``attempt`` (1-based)."""
    base = retry.backoff * 2 ** max(0, min(attempt - 1, 62))
    jitter = 1 + JITTER * (rng or random).random()
    return min(retry.max_backoff, base * jitter)


def _as_datetime(now: datetime | str | None) -> datetime | None:
    if now is None or isinstance(now, datetime):
        return now
    return parse_time(now)


class Dispatcher:
    """Claims and runs deliveries of one store for one worker."""

    def __init__(
        self,
        store: Store,
        ruleset: RuleSet,
        *,
        worker_id: str | None = None,
        lease: float = DEFAULT_LEASE,
        base_dir: Path | None = None,
        stop: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.ruleset = ruleset
        self.worker_id = worker_id or new_worker_id()
        self.lease = lease
        self.base_dir = base_dir or project_dir(ruleset.directory)
        self.stop = stop or threading.Event()
        #: told the id of the delivery whose action starts, and None when it ends
        self.on_start: Callable[[int | None], None] | None = None
        self.rng = rng or random.Random()
        # drain() hands the next delivery of its list to the transaction that records the one
        # before (one commit per delivery instead of two); whether that claim was won
        self._then_claim: Delivery | None = None
        self._next_claimed = False

    def now(self, fixed: datetime | None) -> datetime:
        return fixed if fixed is not None else parse_time(self.store.clock())

    # -- entry points -------------------------------------------------------------------------

    def run_ids(self, ids: Iterable[int], now: datetime | str | None = None) -> list[Result]:
        """Run these deliveries (those due), plus the ones their emit_result events create."""
        fixed = _as_datetime(now)
        queue = deque(ids)
        results: list[Result] = []
        while queue and not self.stop.is_set():
            delivery = outbox.get(self.store, queue.popleft())
            if delivery is None:
                continue
            result = self.attempt(delivery, fixed)
            if result is not None:
                results.append(result)
                queue.extend(result.follow)
        return results

    def drain(
        self,
        now: datetime | str | None = None,
        on_result: Callable[[Result], None] | None = None,
    ) -> list[Result]:
        """Run everything due until nothing is (or ``stop`` is set between two deliveries)."""
        fixed = _as_datetime(now)
        results: list[Result] = []
        while not self.stop.is_set():
            batch = outbox.due(self.store, format_time(self.now(fixed)), BATCH)
            if not batch:
                break
            claimed = 0
            queue = deque(batch)  # oldest first
            ours = False  # queue[0] was claimed by the transaction that recorded the last one
            while queue:
                if self.stop.is_set():
                    if ours:
                        outbox.release(self.store, queue[0].id, self.worker_id)
                    break
                delivery = queue.popleft()
                self._then_claim = queue[0] if queue else None
                try:
                    result = self.attempt(delivery, fixed, claimed=ours)
                finally:
                    ours, self._next_claimed = self._next_claimed, False
                    self._then_claim = None
                if result is None:
                    # another worker took it: likely it is working down this same list, so
                    # go on from elsewhere rather than race it for every next row
                    queue.rotate(self.rng.randrange(len(queue) or 1))
                    continue
                claimed += 1
                results.append(result)
                if on_result is not None:
                    try:
                        on_result(result)
                    except BaseException:  # a closed stdout (… | head -1), a second Ctrl-C
                        if ours:  # claimed with this result's record, not started: give it back
                            outbox.release(self.store, queue[0].id, self.worker_id)
                        raise
            if not claimed and len(batch) < BATCH:
                break  # every due one was taken by another worker meanwhile
        return results

    # -- one delivery -------------------------------------------------------------------------

    def attempt(
        self, delivery: Delivery, fixed: datetime | None = None, *, claimed: bool = False
    ) -> Result | None:
        """Claim and run one delivery; None when it is not due or another worker has it.
        ``claimed``: this worker holds it already (see drain)."""
        rule = self.ruleset.rule(delivery.rule)
        action = self._action(delivery)
        if not claimed and not self._claim(delivery, action, fixed):
            return None
        held = outbox.get(self.store, delivery.id) or delivery
        retry = rule.retry if rule is not None else Retry()
        if rule is None or action is None:
            problem = (
                f"rule {delivery.rule} no longer exists in {self.ruleset.directory or 'the rules'}"
                if rule is None
                else f"rule {delivery.rule} has no {delivery.kind} action {delivery.action} now"
            )
            # not permanent: the rule may come back (a worker reloads changed rule files)
            return self._record(held, retry, fixed, False, problem)
        event = self.store.get(delivery.event_seq)
        if event is None or event["id"] != delivery.event_id:
            problem = f"event seq {delivery.event_seq} ({delivery.event_id}) is not in the log"
            return self._record(held, retry, fixed, False, problem, permanent=True)
        if isinstance(action, EmitAction):
            return self._record_derivation(held, retry, fixed, action, event)
        if self.on_start is not None:
            self.on_start(delivery.id)
        try:
            outcome = actions.execute(action, event, held, self.base_dir)
        except KeyboardInterrupt:
            # aborted (a second Ctrl-C): give the delivery back now rather than leave it
            # 'running' until its lease lapses; the attempt it took does not count
            outbox.release(self.store, delivery.id, self.worker_id)
            raise
        except Exception as exc:  # noqa: BLE001 - one bad delivery never stops the worker
            # what the action could not survive (a NUL in an argv, a header that is not ASCII,
            # …) is this delivery's failure, recorded with its reason; the worker goes on
            reason = f"{type(exc).__name__}: {redact_text(' '.join(str(exc).split()))}"
            outcome = actions.ActionResult(
                False, reason, permanent=isinstance(exc, ValueError | TypeError)
            )
        finally:
            if self.on_start is not None:
                self.on_start(None)
        if outcome.ok and outcome.output is not None and isinstance(action, RunAction):
            return self._record_result_event(held, retry, fixed, action, event, outcome.output)
        return self._record(
            held, retry, fixed, outcome.ok, outcome.error, permanent=outcome.permanent
        )

    def _action(self, delivery: Delivery) -> RunAction | HttpAction | EmitAction | None:
        rule = self.ruleset.rule(delivery.rule)
        if rule is not None and 0 <= delivery.action < len(rule.actions):
            candidate = rule.actions[delivery.action]
            if candidate.kind == delivery.kind:
                return candidate
        return None

    def _claim(
        self,
        delivery: Delivery,
        action: RunAction | HttpAction | EmitAction | None,
        fixed: datetime | None,
    ) -> bool:
        timeout = action.timeout if isinstance(action, RunAction | HttpAction) else 0.0
        # longer than the action can take (an http timeout is a total deadline): two workers
        # never run one delivery at once
        lease = max(self.lease, timeout + LEASE_MARGIN)
        start = self.now(fixed)
        lease_until = format_time(start + timedelta(seconds=lease))
        rule = self.ruleset.rule(delivery.rule)
        limit = (rule.retry if rule is not None else Retry()).attempts
        if delivery.status == "running" and delivery.attempts >= limit:
            # its worker died during the last allowed attempt: dead, never attempted past the
            # limit (False: nothing for this worker to run)
            outbox.give_up(
                self.store, delivery.id, format_time(start),
                f"{delivery.last_error or 'no result'}; the worker running attempt"
                f" {delivery.attempts} of {limit} stopped before it finished",
            )  # fmt: skip
            return False
        return outbox.claim(
            self.store, delivery.id, self.worker_id, format_time(start), lease_until
        )

    def _record(
        self,
        d: Delivery,
        retry: Retry,
        fixed: datetime | None,
        ok: bool,
        error: str | None,
        *,
        permanent: bool = False,
    ) -> Result:
        now = self.now(fixed)
        now_text = format_time(now)
        next_at: str | None = None
        if ok:
            status = "done"
        elif permanent or d.attempts >= retry.attempts:
            status = "dead"
        else:
            status = "failed"
            next_at = format_time(
                now + timedelta(seconds=backoff_delay(retry, d.attempts, self.rng))
            )
        following = self._then_claim
        if following is None:
            won = outbox.finish(self.store, d.id, self.worker_id, now_text, status, error, next_at)
        else:
            # one transaction, one commit: this outcome, and the claim of drain's next delivery.
            # Not waiting for the disk (synced=False): only a power loss or an OS crash can undo
            # it, and that stops every program too; the deliveries then run again (at least once)
            with self.store.write(synced=False):
                won = outbox.finish(
                    self.store, d.id, self.worker_id, now_text, status, error, next_at
                )
                self._next_claimed = self._claim(following, self._action(following), fixed)
        return self._result(d, retry, status if won else "lost", error, next_at)

    def _record_result_event(
        self,
        d: Delivery,
        retry: Retry,
        fixed: datetime | None,
        action: RunAction,
        cause: Event,
        output: dict[str, Any],
    ) -> Result:
        """Append the program's result event and mark the delivery done, in one transaction."""
        from evflow.core.routing import derived_id
        from evflow.services.append import Appender

        assert action.emit_result is not None
        raw = {
            "type": action.emit_result,
            "data": output,
            "source": f"evflow:rule/{d.rule}",
            # the id a retry of this delivery would compute too: it never appends twice
            "id": derived_id(cause, d.rule, d.action),
            "time": cause["time"],
            "causationid": cause["id"],
            "correlationid": cause.get("correlationid", cause["id"]),
            "evflowrule": d.rule,
        }
        try:
            event = normalize(raw)
            with self.store.write() as tx:
                appended = Appender(self.ruleset).append(tx, event)
                now_text = format_time(self.now(fixed))
                won = outbox.finish(tx, d.id, self.worker_id, now_text, "done")
        except (EvflowError, ValueError, RecursionError) as exc:
            # output evflow cannot record (lone surrogates, huge integers…) fails the delivery
            return self._record(d, retry, fixed, False, f"emit_result {action.emit_result}: {exc}")
        follow = tuple(int(x["id"]) for x in appended.deliveries)
        return self._result(d, retry, "done" if won else "lost", None, None, (event["id"],), follow)

    def _record_derivation(
        self,
        d: Delivery,
        retry: Retry,
        fixed: datetime | None,
        action: EmitAction,
        cause: Event,
    ) -> Result:
        """Re-run an ``emit`` action that failed when its cause was appended (brought back by
        ``evflow retry`` once the rule is fixed): the derived event gets the id, time, causation
        and correlation it would have had, and is routed in turn."""
        from evflow.core.expressions import bind
        from evflow.core.routing import derive
        from evflow.core.rules import event_variables
        from evflow.services.append import Appender

        try:
            child = derive(cause, d.rule, d.action, action, bind(event_variables(cause)))
            check_json(child["data"], "data")
            with self.store.write() as tx:
                appended = Appender(self.ruleset).append(tx, child)
                now_text = format_time(self.now(fixed))
                won = outbox.finish(tx, d.id, self.worker_id, now_text, "done")
        except (EvflowError, ValueError, RecursionError) as exc:
            message = str(exc).removeprefix(f"rule {d.rule}: ")
            return self._record(d, retry, fixed, False, message, permanent=True)
        follow = tuple(int(x["id"]) for x in appended.deliveries)
        return self._result(d, retry, "done" if won else "lost", None, None, (child["id"],), follow)

    @staticmethod
    def _result(
        d: Delivery,
        retry: Retry,
        status: str,
        error: str | None,
        next_at: str | None,
        derived: tuple[str, ...] = (),
        follow: tuple[int, ...] = (),
    ) -> Result:
        return Result(
            d.id, d.event_id, d.rule, d.action, d.kind, status, d.attempts,
            max(retry.attempts, d.attempts), error, next_at, derived, follow,
        )  # fmt: skip


# -- the library entry points -----------------------------------------------------------------


def dispatch(
    store: Store,
    ruleset: RuleSet,
    ids: Iterable[int] | None = None,
    *,
    worker_id: str | None = None,
    now: datetime | str | None = None,
    lease: float = DEFAULT_LEASE,
    base_dir: Path | None = None,
    stop: threading.Event | None = None,
) -> list[Result]:
    """Run the deliveries ``ids`` (those due), or with ``ids=None`` everything due."""
    dispatcher = Dispatcher(
        store, ruleset, worker_id=worker_id, lease=lease, base_dir=base_dir, stop=stop
    )
    return dispatcher.drain(now) if ids is None else dispatcher.run_ids(ids, now)


def run_worker(
    store: Store,
    ruleset: RuleSet,
    *,
    once: bool = False,
    interval: float = DEFAULT_INTERVAL,
    lease: float = DEFAULT_LEASE,
    worker_id: str | None = None,
    base_dir: Path | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[Result], None] | None = None,
    tick: Callable[[], Any] | None = None,
    refresh: Callable[[], RuleSet] | None = None,
    on_start: Callable[[int | None], None] | None = None,
) -> int:
    """``evflow run``: dispatch what is due, wait ``interval``, repeat until ``stop`` is set.

    ``once`` drains what is due and returns. ``tick`` (schedules) is called before each round,
    after ``refresh``, which returns the rules to use (reloaded when their files changed).
    Returns how many attempts were made.
    """
    stop = stop or threading.Event()
    dispatcher = Dispatcher(
        store, ruleset, worker_id=worker_id, lease=lease, base_dir=base_dir, stop=stop
    )
    dispatcher.on_start = on_start
    count = 0
    while not stop.is_set():
        if refresh is not None:
            dispatcher.ruleset = refresh()
        if tick is not None:
            tick()
        count += len(dispatcher.drain(on_result=on_result))
        if once:
            break
        stop.wait(interval)
    return count
