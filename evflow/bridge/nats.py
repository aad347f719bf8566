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
import base64
import contextlib
import hashlib
import json
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evflow.core.events import (
    Event,
    format_time,
    is_json_media_type,
    normalize,
    parse_json,
    to_json,
)
from evflow.core.records import EventFilter
from evflow.core.text import redact
from evflow.errors import EvflowError, InvalidEvent, MissingExtra, UsageError

if TYPE_CHECKING:
    from evflow.app import Evflow

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "EVFLOW"
DEFAULT_PREFIX = "evflow"
ORIGIN_HEADER = "Evflow-Origin"
SEQ_HEADER = "Evflow-Seq"
MSG_ID_HEADER = "Nats-Msg-Id"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
POLL_SECONDS = 0.2
ACK_TIMEOUT_SECONDS = 10.0
MAX_PLAIN_MSG_ID = 200
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_PRINTABLE = re.compile(r"[\x21-\x7e]+")

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
        if not all(_TOKEN.fullmatch(t) for t in self.prefix.split(".")):
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


# -- the message format (no nats-py needed) ---------------------------------------------------


def subject_for(prefix: str, event_type: str) -> str:
    """``<prefix>.<type>``: a type whose dot-separated tokens are all letters, digits, ``-`` and
    ``_`` is its own subject (``order.placed``). Any other token is percent-encoded (UTF-8 bytes
    outside those characters as ``%XX``; an empty token as ``%``), so every type evflow accepts has
    a valid subject of its own (``order..placed`` -> ``order.%.placed``, ``a b`` -> ``a%20b``)."""
    tokens = event_type.split(".")
    return ".".join([prefix, *(t if _TOKEN.fullmatch(t) else _escape_token(t) for t in tokens)])


def _escape_token(token: str) -> str:
    if not token:
        return "%"
    return "".join(
        chr(b) if chr(b).isascii() and _TOKEN.fullmatch(chr(b)) else f"%{b:02X}"
        for b in token.encode("utf-8")
    )


def header_value(name: str, value: str) -> str:
    """A ``ce-`` header's attribute value (NATS binding §3.1.3.2): a double-quoted string
    unquoted, then one round of percent-decoding; bytes that are not UTF-8 are refused."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    if "%" not in value:
        return value
    from urllib.parse import unquote_to_bytes

    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(name, f"percent-encoding is not UTF-8: {value!r}") from None


def _payload_data(payload: bytes, media_type: str | None) -> dict[str, Any]:
    """A binary-mode payload as ``data`` (JSON, or text) or ``data_base64`` (other bytes), as its
    content type says; an empty payload is no data."""
    if not payload:
        return {}
    if is_json_media_type(media_type):
        try:
            return {"data": parse_json(payload.decode("utf-8"))}
        except (ValueError, UnicodeDecodeError) as exc:
            if media_type is not None:
                raise InvalidEvent("message", f"malformed JSON ({media_type}): {exc}") from None
    try:
        return {"data": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data_base64": base64.b64encode(payload).decode("ascii")}


def message_id(source: str, event_id: str) -> str:
    """The ``Nats-Msg-Id`` of an event: ``<source>/<id>``, or a hash when that would be unsafe.

    Plain when the id holds no ``/`` (so the text splits back unambiguously at its last ``/``) and
    the whole is printable ASCII without spaces, at most 200 characters; otherwise
    ``sha256-<hex of source + "\\n" + id>`` (never contains a ``/``, so the forms cannot collide).
    """
    plain = f"{source}/{event_id}"
    if "/" not in event_id and len(plain) <= MAX_PLAIN_MSG_ID and _PRINTABLE.fullmatch(plain):
        return plain
    digest = hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()
    return f"sha256-{digest}"


def encode(event: Event, origin: str) -> tuple[bytes, dict[str, str]]:
    """An event as a structured-mode CloudEvents message: JSON payload and headers."""
    headers = {
        MSG_ID_HEADER: message_id(event["source"], event["id"]),
        ORIGIN_HEADER: origin,
        SEQ_HEADER: str(event["seq"]),
        "Content-Type": CONTENT_TYPE,
    }
    return to_json(event).encode(), headers


def event_from_message(
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None,
    *,
    prefix: str,
    stream: str,
    stream_seq: int,
    timestamp: str | None,
) -> Event:
    """A received message as a normalized event; raises :class:`InvalidEvent` with the reason.

    - structured CloudEvents (a JSON object with ``specversion``): taken as is;
    - binary CloudEvents (``ce-specversion`` header): attributes from the ``ce-*`` headers
      (percent-decoded, NATS binding §3.1.3.2); the payload is ``data`` as its content type
      (``ce-datacontenttype``, else ``Content-Type``) says: JSON parsed, other text as a string,
      other bytes as ``data_base64``, nothing as no data;
    - any other JSON object is ``data``: ``type`` is the subject after ``<prefix>.`` (the whole
      subject when it is outside the prefix), ``source`` ``nats:<subject>``, ``time`` the
      message's JetStream timestamp.

    An event without an ``id`` gets ``Nats-Msg-Id`` when the publisher set one, else
    ``<stream>:<stream seq>:<timestamp>``: the same message redelivered gets the same id, so it is
    appended once.
    """
    headers = headers or {}
    ce_headers = {k.lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}
    if "ce-specversion" in ce_headers:
        # binary mode: attributes in the headers, the payload is the data as its type says
        raw: dict[str, Any] = {k[3:]: header_value(k, v) for k, v in ce_headers.items()}
        media = raw.get("datacontenttype") or next(
            (v for k, v in headers.items() if k.lower() == "content-type"), None
        )
        if media is not None:
            raw["datacontenttype"] = media
        raw.update(_payload_data(payload, media))
        raw.setdefault("source", f"nats:{subject}")
        if "id" not in raw:
            raw["id"] = headers.get(MSG_ID_HEADER) or f"{stream}:{stream_seq}:{timestamp or ''}"
        return normalize(raw)
    try:
        # strict JSON (no NaN), deep nesting and huge integers refused like any malformed JSON
        body = parse_json(payload.decode("utf-8")) if payload.strip() else {}
    except UnicodeDecodeError as exc:
        raise InvalidEvent("message", f"not UTF-8 text (byte {exc.start + 1})") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent("message", f"malformed JSON: {exc}") from None
    if isinstance(body, dict) and "specversion" in body:
        raw = dict(body)
    else:
        if not isinstance(body, dict):
            raise InvalidEvent("message", "must be a JSON object (CloudEvents or event data)")
        head = prefix + "."
        raw = {"type": subject[len(head) :] if subject.startswith(head) else subject, "data": body}
        if timestamp is not None:
            raw["time"] = timestamp
    raw.setdefault("source", f"nats:{subject}")
    if "id" not in raw:
        raw["id"] = headers.get(MSG_ID_HEADER) or f"{stream}:{stream_seq}:{timestamp or ''}"
    return normalize(raw)


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
