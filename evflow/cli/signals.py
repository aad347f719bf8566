"""Signals for long-running commands (``evflow run``): a first Ctrl-C asks to stop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stop_on_signals(
    stop: threading.Event, on_first: Callable[[], None] | None = None
) -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set ``stop`` (the action in hand finishes and is recorded); a second
    SIGINT/SIGTERM gives up at once (that delivery's lease lapses and another worker retries it)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if on_first is not None:
            on_first()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
