"""``evflow emit``: the per-event command scripts call, kept light to start.

It is reached two ways: a fast path (:func:`fast_main`, plain ``argparse``) that spares scripts
the ~150 ms of importing typer for every event, and the typer command (for ``--help`` and for
anything the fast path does not understand). Both build an :class:`EmitOptions` and call
:func:`run_emit`, so they cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from evflow.cli.output import Output
from evflow.core.structs import dataclass, field
from evflow.errors import InvalidEvent, UsageError


@dataclass
class EmitOptions:
    type: str
    data: str | None = None
    fields: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)  # -s key=value: always text
    subject: str | None = None
    source: str | None = None
    time: str | None = None
    id: str | None = None
    dry_run: bool = False
    at: str | None = None
    no_dispatch: bool = False
    strict: bool = False
    format: str | None = None


def read_data(
    spec: str | None, fields: list[str], stdin: Any = None, sets: list[str] | None = None
) -> dict[str, Any]:
    """``--data`` (JSON, ``@file`` or ``-``) merged with ``-f key=value`` pairs (values parsed as
    JSON when they parse) and ``-s key=value`` pairs (values kept as text: ``version=1.10``)."""
    from evflow.core.events import parse_json_object

    data: dict[str, Any] = {}
    if spec is not None:
        if spec == "-":
            try:
                text = (stdin or sys.stdin).read()
            except UnicodeDecodeError as exc:
                raise InvalidEvent(
                    "--data (stdin)", f"not UTF-8 text (byte {exc.start + 1})"
                ) from None
            data = parse_json_object(text, "--data (stdin)")
        elif spec.startswith("@"):
            path = Path(spec[1:])
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--data: cannot read {path}: {exc.strerror}") from None
            except UnicodeDecodeError as exc:
                raise InvalidEvent(
                    f"--data ({path})", f"not UTF-8 text (byte {exc.start + 1})"
                ) from None
            data = parse_json_object(text, f"--data ({path})")
        else:
            data = parse_json_object(spec, "--data")
    for item in fields:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-f: expected key=value (got {item!r})")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        data[key] = value
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-s: expected key=value (got {item!r})")
        data[key] = raw
    return data


def build_event(opts: EmitOptions, stdin: Any = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "type": opts.type,
        "data": read_data(opts.data, opts.fields, stdin, opts.sets),
    }
    raw["datacontenttype"] = "application/json"  # emit makes JSON data
    for name in ("subject", "source", "time", "id"):
        value = getattr(opts, name)
        if value is not None:
            raw[name] = value
    return raw


def run_emit(opts: EmitOptions, db: str | None, rules: str | None, out: Output) -> int:
    from evflow.app import Evflow
    from evflow.core.events import check_outside_source, normalize
    from evflow.core.positions import parse_time_option

    fmt = out.resolve(opts.format, piped="table")
    try:
        raw = build_event(opts)
        check_outside_source(raw)
        normalize(raw)  # validate before opening anything: bad input records nothing
    except InvalidEvent as exc:
        raise UsageError(str(exc)) from None
    at = None
    if opts.at is not None:
        if not opts.dry_run:
            raise UsageError("--at goes with --dry-run (a recorded event is judged at its time)")
        at = parse_time_option(opts.at, "--at")
    with Evflow(db=db, rules=rules) as flow:
        outcome = flow.emit(
            raw, dry_run=opts.dry_run, at=at, default_source=opts.source or "evflow:cli"
        )
        failures: list[str] = []
        if not opts.dry_run and not opts.no_dispatch and outcome.deliveries:
            failures = flow.dispatch([d["id"] for d in outcome.deliveries])
    event = outcome.event
    if fmt in ("json", "jsonl"):
        payload = dict(event)
        payload["triggered"] = outcome.triggered_json()
        if outcome.duplicate:
            payload["duplicate"] = True
        if opts.dry_run:
            payload["dry_run"] = True
            payload["matches"] = [
                {"rule": m.rule.name, "matched": m.matched, "stage": m.stage, "reason": m.reason}
                for m in outcome.matches
            ]
        if fmt == "json":
            out.json(payload)
        else:
            out.jsonl([payload])
    else:
        verb = (
            "would record"
            if opts.dry_run
            else ("already recorded" if outcome.duplicate else "recorded")
        )
        out.line(f"{verb} {event['type']} seq {event['seq']} id {event['id']}")
        for match in outcome.matches if opts.dry_run else []:
            mark = "match" if match.matched else f"no ({match.stage})"
            out.line(f"  rule {match.rule.name}: {mark}: {match.reason}")
        for derived in outcome.derived:
            out.line(
                f"  -> {derived['type']} seq {derived['seq']} id {derived['id']}"
                f" (rule {derived.get('evflowrule')})"
            )
        for d in outcome.deliveries:
            out.line(
                f"  -> {d['type']} action {d['action']} of rule {d['rule']} (delivery {d['id']})"
            )
        for t in outcome.timers:
            key = f", key {t['key']}" if t["key"] is not None else ""
            out.line(
                f"  -> timer {t['id']}: action {t['action']} of rule {t['rule']}"
                f" due {t['due']}{key}"
            )
        for t in outcome.cancelled:
            out.line(
                f"  -> cancelled timer {t['id']} of rule {t['rule']} (key {t['key']},"
                f" set by seq {t['cause_seq']})"
            )
    for warning in outcome.warnings():
        out.warn(f"evflow: warning: {warning}")
    for failure in failures:
        out.warn(f"evflow: delivery failed: {failure}")
    # the event is recorded whatever failed; --strict makes a failure the script's concern
    return 1 if ((failures or outcome.failures) and opts.strict) else 0


_VALUED = {
    "--data": "data",
    "-d": "data",
    "--field": "fields",
    "-f": "fields",
    "--set": "sets",
    "-s": "sets",
    "--subject": "subject",
    "--source": "source",
    "--time": "time",
    "--id": "id",
    "--at": "at",
    "--format": "format",
}
_FLAGS = {"--dry-run": "dry_run", "--no-dispatch": "no_dispatch", "--strict": "strict"}


def parse_fast(args: list[str]) -> EmitOptions | None:
    """The options of ``emit ARGS`` in their plain spellings, or None for anything else (typer
    then parses the line, with its own messages): a plain loop rather than argparse, which costs
    emit ~2 ms to import and knows abbreviations (``--dry``) that typer does not."""
    values: dict[str, Any] = {"fields": [], "sets": []}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAGS and not eq:
            values[_FLAGS[name]] = True
            continue
        if not name.startswith("--") and len(name) > 2 and name[:2] in _VALUED:
            name, eq, value = name[:2], "=", name[2:]  # -fkey=value
            if value.startswith("="):
                return None
        if name not in _VALUED:
            return None  # unknown, abbreviated, --, -h: typer's to judge
        if not eq:
            if i >= len(args) or (args[i].startswith("-") and args[i] != "-"):
                return None
            value = args[i]
            i += 1
        key = _VALUED[name]
        if key in ("fields", "sets"):
            values[key].append(value)
        else:
            values[key] = value
    if len(positional) != 1:
        return None
    return EmitOptions(type=positional[0], **values)


def split_globals(argv: list[str]) -> tuple[str | None, str | None, bool, list[str]]:
    """``[--db X] [--rules X] [--traceback] COMMAND …`` -> (db, rules, traceback, the rest)."""
    db = rules = None
    traceback = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--db", "--rules") and i + 1 < len(argv):
            if arg == "--db":
                db = argv[i + 1]
            else:
                rules = argv[i + 1]
            i += 2
        elif arg.startswith(("--db=", "--rules=")):
            name, _, value = arg.partition("=")
            db, rules = (value, rules) if name == "--db" else (db, value)
            i += 1
        elif arg == "--traceback":
            traceback = True
            i += 1
        elif arg == "--no-pager":
            i += 1
        else:
            break
    return db, rules, traceback, argv[i:]


def fast_main(argv: list[str]) -> int | None:
    """Handle ``[--db X] [--rules X] [--traceback] emit …`` without typer; None: not handled."""
    db, rules, traceback, rest = split_globals(argv)
    if not rest or any(a in ("-h", "--help") for a in rest):
        return None
    if rest[0] == "replay":
        from evflow.cli.fast_replay import fast_replay

        return fast_replay(rest[1:], db, rules, traceback)
    if rest[0] != "emit":
        return None
    opts = parse_fast(rest[1:])
    if opts is None:
        return None
    out = Output()
    try:
        return run_emit(opts, db, rules, out)
    except BaseException as exc:  # noqa: BLE001 - the one place errors become exit codes
        if traceback or isinstance(exc, SystemExit):
            raise
        from evflow.cli.errors import report

        return report(exc, out.stderr)
