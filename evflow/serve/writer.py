"""One writer per process: the appends of concurrent requests, committed together.

Single events that arrive while a transaction is being written wait for the next one, and go in
together (group commit): one transaction, one sync to disk, for all of them, each in its own
savepoint so that an event that is refused is refused alone (the facade's ``emit_each``). Batches
keep their own all-or-nothing transaction. Every write of this process goes through here, one at
a time, so the worker threads never queue inside SQLite's busy handler (whose sleeps grow to
100 ms); other processes (``evflow emit``, other servers) still take their turn through the
database's lock as before.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from evflow.app import Evflow, Outcome
from evflow.errors import EvflowError
from evflow.serve.flows import Flows

#: most events committed in one transaction
MAX_GROUP = 200


def _emit_each(flow: Evflow, events: Sequence[Mapping[str, Any]]) -> list[Outcome | EvflowError]:
    return flow.emit_each(events)


def _emit_batch(flow: Evflow, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
    return flow.emit_batch(events)


class Writer:
    def __init__(self, flows: Flows) -> None:
        self._flows = flows
        self._lock = asyncio.Lock()
        self._pending: list[tuple[Mapping[str, Any], asyncio.Future[Outcome]]] = []
        self._draining = False

    async def emit(self, event: Mapping[str, Any]) -> Outcome:
        """Append one event (with the others waiting); its outcome, or its error raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((event, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await future

    async def emit_batch(self, events: Sequence[Mapping[str, Any]]) -> list[Outcome]:
        """Append a batch in its own transaction: all of it or none."""
        async with self._lock:
            return await self._flows.run(functools.partial(_emit_batch, events=events))

    async def _drain(self) -> None:
        try:
            while self._pending:
                group = self._pending[:MAX_GROUP]
                del self._pending[:MAX_GROUP]
                events = [event for event, _ in group]
                try:
                    async with self._lock:
                        results = await self._flows.run(
                            functools.partial(_emit_each, events=events)
                        )
                except Exception as exc:  # noqa: BLE001 - the whole transaction failed: tell all
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if future.done():  # the client went away; its event is recorded all the same
                        continue
                    if isinstance(result, Outcome):
                        future.set_result(result)
                    else:
                        future.set_exception(result)
        finally:
            self._draining = False
