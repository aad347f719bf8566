"""The NATS JetStream bridge: the log out to a stream, and messages of a stream into the log.

Out. Events are published in ``seq`` order to ``<prefix>.<type>`` as CloudEvents JSON (structured
mode), a batch at a time, asynchronously; once JetStream has acknowledged a batch the checkpoint
moves to the highest ``seq`` below which every message was acknowledged. A bridge killed between
the publish and the checkpoint publishes the tail again on restart; the ``Nats-Msg-Id`` header
(:func:`message_id`) makes JetStream drop those re-publishes within the stream's duplicate window.

In. A durable pull consumer hands over messages; each becomes an event (:func:`event_from_message`)
appended through the rules in a write transaction, and is acknowledged only after the commit. A
message that is not an event is terminated (never redelivered), one whose ``source`` + ``id`` is
already in the log is acknowledged without appending, and one that carries this database's own
``Evflow-Origin`` header is acknowledged and skipped, so running both directions never loops.

``nats-py`` is imported here only, and only when a bridge runs (extra ``evflow[nats]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evflow.bridge.natsformat import (
    CONTENT_TYPE,
    MAX_PLAIN_MSG_ID,
    MSG_ID_HEADER,
    ORIGIN_HEADER,
    SEQ_HEADER,
    TOKEN,
    encode,
    event_from_message,
    header_value,
    message_id,
    subject_for,
)
from evflow.core.events import Event, format_time
from evflow.core.records import EventFilter
from evflow.core.text import redact
from evflow.errors import EvflowError, InvalidEvent, MissingExtra, UsageError

if TYPE_CHECKING:
    from evflow.app import Evflow

__all__ = [
    "IngestReport",
    "NatsOptions",
    "PublishReport",
    "default_durable",
    "ensure_stream",
    "ingest",
    "publish_log",
    "run",
    # the message format (evflow.bridge.natsformat), for callers of this module
    "CONTENT_TYPE",
    "MAX_PLAIN_MSG_ID",
    "MSG_ID_HEADER",
    "ORIGIN_HEADER",
    "SEQ_HEADER",
    "encode",
    "event_from_message",
    "header_value",
    "message_id",
    "subject_for",
]

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "EVFLOW"
DEFAULT_PREFIX = "evflow"
POLL_SECONDS = 0.2
ACK_TIMEOUT_SECONDS = 10.0
_NAME = re.compile(r"[A-Za-z0-9_-]+")

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class NatsOptions:
    url: str = DEFAULT_URL
    stream: str = DEFAULT_STREAM
    prefix: str = DEFAULT_PREFIX
    batch: int = 1000

    def check(self) -> None:
        if not _NAME.fullmatch(self.stream):
            raise UsageError(
                f"--stream: a stream name is letters, digits, '-' and '_' (got {self.stream!r})"
            )
        if not all(TOKEN.fullmatch(t) for t in self.prefix.split(".")):
            raise UsageError(
                f"--subject-prefix: dot-separated tokens of letters, digits, '-' and '_'"
                f" (got {self.prefix!r})"
            )
        if self.batch < 1:
            raise UsageError(f"--batch: must be at least 1 (got {self.batch})")

    @property
    def checkpoint(self) -> str:
        return f"bridge:nats:{self.stream}:{self.prefix}"


@dataclass(slots=True)
class PublishReport:
    published: int = 0  # acknowledged by JetStream (re-publishes dropped as duplicates included)
    duplicates: int = 0  # of those, how many JetStream reported as already stored
    position: int = 0


@dataclass(slots=True)
class IngestReport:
    appended: int = 0
    duplicates: int = 0  # source+id already in the log: acknowledged, nothing appended
    own: int = 0  # published by this database: acknowledged and skipped
    terminated: int = 0  # not an event: terminated, with the reason logged
    reasons: list[str] = field(default_factory=list)


# -- running ---------------------------------------------------------------------------------


def _nats() -> Any:
    try:
        import nats
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "nats":
            raise MissingExtra("nats-py", "nats") from None
        raise
    return nats


async def _connect(url: str) -> Any:
    nats = _nats()
    errors: list[BaseException] = []

    async def remember(exc: Exception) -> None:
        # later connection trouble surfaces as failed publishes and fetches, reported there
        errors.append(exc)

    try:
        # fail fast when the server is not there at start, then reconnect forever once running
        nc = await nats.connect(
            servers=[url],
            connect_timeout=3,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=remember,
        )
    except Exception as exc:  # noqa: BLE001 - nats-py raises several unrelated types here
        cause = errors[-1] if errors else exc
        raise EvflowError(
            f"--url: cannot connect to NATS at {redact(url)}: {cause or type(cause).__name__}",
            hint="start the server (nats-server -js) or pass --url",
        ) from None
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = 1
    return nc


async def ensure_stream(js: Any, options: NatsOptions) -> None:
    """Use the stream ``options.stream``, creating it (subjects ``<prefix>.>``) when missing."""
    from nats.js.errors import BadRequestError, NotFoundError

    try:
        await js.stream_info(options.stream)
    except NotFoundError:
        try:
            await js.add_stream(name=options.stream, subjects=[f"{options.prefix}.>"])
        except BadRequestError:
            # another bridge created it between the two calls: use theirs
            await js.stream_info(options.stream)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # outside the main thread (a bridge run in-process by tests) only the event stops it
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def publish_log(
    flow: Evflow,
    options: NatsOptions,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
    log: Log | None = None,
) -> PublishReport:
    """Publish the log from the checkpoint on; with ``once`` stop at its end, else follow it."""
    options.check()
    stop = stop or asyncio.Event()
    origin = flow.instance_id()
    definition = {"url": redact(options.url), "stream": options.stream, "prefix": options.prefix}
    report = PublishReport(position=flow.bridge_position(options.checkpoint))
    nc = await _connect(options.url)
    try:
        js = nc.jetstream(publish_async_max_pending=max(options.batch, 1))
        await ensure_stream(js, options)
        delay = POLL_SECONDS
        while not stop.is_set():
            events = list(flow.events(EventFilter(since_seq=report.position, limit=options.batch)))
            if not events:
                if once:
                    break
                await _sleep_or_stop(stop, POLL_SECONDS)
                continue
            try:
                acked, duplicates = await _publish_batch(js, options, events, origin)
            except EvflowError as exc:
                if once or log is None:
                    raise
                log(f"evflow: bridge: {exc} (retrying in {delay:.1f}s)")
                await _sleep_or_stop(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = POLL_SECONDS
            report.published += acked
            report.duplicates += duplicates
            report.position = events[acked - 1]["seq"]
            flow.save_bridge_position(options.checkpoint, report.position, definition)
    finally:
        await nc.close()
    return report


async def _publish_batch(
    js: Any, options: NatsOptions, events: list[Event], origin: str
) -> tuple[int, int]:
    """Publish ``events``; the number acknowledged in order from the first, and duplicates among
    them. Raises when not even the first was acknowledged (the caller retries or fails)."""
    futures = []
    for event in events:
        payload, headers = encode(event, origin)
        futures.append(
            await js.publish_async(
                subject_for(options.prefix, event["type"]),
                payload,
                headers=headers,
                stream=options.stream,
            )
        )
    # one deadline for the whole batch (a timer per message costs more than the publish)
    _, pending = await asyncio.wait(futures, timeout=ACK_TIMEOUT_SECONDS)
    for future in pending:
        future.cancel()
    acked = duplicates = 0
    for future in futures:
        if future.cancelled() or future.exception() is not None:
            break
        acked += 1
        duplicates += bool(future.result().duplicate)
    if acked == 0:
        first = futures[0]
        error = None if first.cancelled() else first.exception()
        reason = (
            f"no acknowledgement within {ACK_TIMEOUT_SECONDS:g}s"
            if error is None
            else f"{type(error).__name__}: {error}".rstrip(": ")
        )
        raise EvflowError(
            f"JetStream did not acknowledge seq {events[0]['seq']} on stream"
            f" {options.stream} ({reason})",
            hint=f"check that stream {options.stream} takes subjects {options.prefix}.>",
        )
    return acked, duplicates


def default_durable(origin: str, subject: str) -> str:
    """One durable per database and subject: ``evflow-<instance8>-<subject with . * > as _>``."""
    return f"evflow-{origin[:8]}-" + re.sub(r"[^A-Za-z0-9_-]", "_", subject)


async def ingest(
    flow: Evflow,
    options: NatsOptions,
    subject: str,
    *,
    durable: str | None = None,
    once: bool = False,
    stop: asyncio.Event | None = None,
    log: Log | None = None,
) -> IngestReport:
    """Append the messages of ``subject`` (a durable consumer) to the log, acking after commit."""
    options.check()
    if durable is not None and not _NAME.fullmatch(durable):
        raise UsageError(f"--durable: letters, digits, '-' and '_' only (got {durable!r})")
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import NotFoundError

    stop = stop or asyncio.Event()
    origin = flow.instance_id()
    report = IngestReport()
    nc = await _connect(options.url)
    try:
        js = nc.jetstream()
        # only the stream that holds the subject: ingesting never makes the outbound stream
        try:
            stream = await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            raise EvflowError(
                f"--ingest: no JetStream stream takes subject {subject!r}",
                hint=f"create one: nats stream add --subjects '{subject}'",
            ) from None
        psub = await js.pull_subscribe(
            subject, durable=durable or default_durable(origin, subject), stream=stream
        )
        while not stop.is_set():
            try:
                msgs = await psub.fetch(options.batch, timeout=0.5 if once else 1.0)
            except (NatsTimeout, TimeoutError):
                if once:
                    break
                continue
            await _ingest_batch(flow, msgs, options, origin, report, log)
    finally:
        await nc.close()
    return report


async def _ingest_batch(
    flow: Evflow,
    msgs: list[Any],
    options: NatsOptions,
    origin: str,
    report: IngestReport,
    log: Log | None,
) -> None:
    to_ack: list[Any] = []
    to_term: list[tuple[Any, str]] = []
    items: list[tuple[str, Event | InvalidEvent]] = []
    taken: list[Any] = []  # the message of each item
    for msg in msgs:
        headers = msg.headers or {}
        if headers.get(ORIGIN_HEADER) == origin:
            report.own += 1
            to_ack.append(msg)
            continue
        meta = msg.metadata
        where = f"{msg.subject} (stream {meta.stream} seq {meta.sequence.stream})"
        try:
            event: Event | InvalidEvent = event_from_message(
                msg.subject,
                msg.data,
                headers,
                prefix=options.prefix,
                stream=meta.stream,
                stream_seq=meta.sequence.stream,
                timestamp=format_time(meta.timestamp) if meta.timestamp else None,
            )
        except InvalidEvent as exc:
            event = exc
        items.append((where, event))
        taken.append(msg)
    # one transaction, each message in a savepoint: one that fails is undone alone
    for msg, (where, outcome) in zip(taken, flow.ingest(items), strict=True):
        if isinstance(outcome, EvflowError):
            to_term.append((msg, f"{where}: {outcome}"))
            continue
        if outcome.duplicate:
            report.duplicates += 1
        else:
            report.appended += 1
        to_ack.append(msg)
    # after the commit: a crash before these acks redelivers, and the append is idempotent
    for msg in to_ack:
        await msg.ack()
    for msg, reason in to_term:
        await msg.term()
        report.terminated += 1
        report.reasons.append(reason)
        if log is not None:
            log(f"evflow: bridge: terminated {reason}")


def run(coro_factory: Callable[[asyncio.Event], Any]) -> Any:
    """Run a bridge coroutine until it ends or SIGINT/SIGTERM asks it to stop (then it finishes
    the batch in hand, saves its position and returns)."""

    async def main() -> Any:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        return await coro_factory(stop)

    return asyncio.run(main())
