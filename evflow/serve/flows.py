"""Evflow objects for request handlers: one per worker thread.

A database connection belongs to the thread that opened it (SQLite insists), so each worker thread
of the pool keeps its own :class:`Evflow`; handlers await :meth:`Flows.run`. A storage failure
drops that thread's object, so the next request reconnects (a database that was down and is back
needs no restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from evflow.app import Evflow
from evflow.errors import InvalidRules, StorageUnavailable

T = TypeVar("T")
#: how often a thread looks at the rule files' times (a changed file is reloaded)
RULES_CHECK_SECONDS = 1.0


def is_storage_error(exc: BaseException) -> bool:
    """The database is unreachable or failed (a driver error that evflow did not translate)."""
    if isinstance(exc, StorageUnavailable):
        return True
    return type(exc).__module__.startswith(("sqlite3", "psycopg"))


class Flows:
    """A thread pool whose threads each hold an :class:`Evflow` made by ``factory``."""

    def __init__(
        self,
        factory: Callable[[], Evflow],
        threads: int = 8,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._factory = factory
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="evflow")
        self._warn = warn or (lambda text: None)
        self._rules_problem: str | None = None

    def _flow(self) -> Evflow:
        local = self._local
        flow: Evflow | None = getattr(local, "flow", None)
        if flow is None:
            flow = local.flow = self._factory()
            local.checked = time.monotonic()
        elif time.monotonic() - local.checked > RULES_CHECK_SECONDS:
            local.checked = time.monotonic()
            try:
                flow.refresh_rules()
                self._rules_problem = None
            except InvalidRules as exc:
                # the rules loaded before stay in force; say so once, not on every request
                if self._rules_problem != exc.message:
                    self._rules_problem = exc.message
                    self._warn(f"changed rule files are invalid, keeping the rules loaded: {exc}")
        return flow

    def _call(self, fn: Callable[[Evflow], T]) -> T:
        flow = self._flow()
        try:
            return fn(flow)
        except BaseException as exc:
            if is_storage_error(exc):
                self._local.flow = None
                with contextlib.suppress(Exception):  # the connection is already broken
                    flow.close()
            raise

    async def run(self, fn: Callable[[Evflow], T]) -> T:
        """``fn(flow)`` on a worker thread, with that thread's Evflow."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn))

    def close(self) -> None:
        """Wait for the calls in hand to finish (connections close with the process)."""
        self._executor.shutdown(wait=True)
