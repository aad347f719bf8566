"""CloudEvents 1.0 (JSON event format), checked with the standard's own tools (issue 14).

Events are made by the official Python SDK (``cloudevents``), imported with ``evflow import``,
read back with ``evflow log --format jsonl`` and parsed by the SDK again: every attribute and the
data must come back equal. Every exported line is validated with ``check-jsonschema`` against the
CloudEvents JSON schema (``cloudevents.schema.json`` beside this file). What the format forbids
is refused with one line naming the attribute, and nothing is recorded.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("each_backend")

SCHEMA = Path(__file__).parent / "cloudevents.schema.json"
#: what evflow adds to an event from outside: its place in the log, and its lineage (SPEC §1)
ADDED = {"seq", "recordedtime", "correlationid"}
FORMAT = JSONFormat()
SEOUL = timezone(timedelta(hours=9))


def sdk_event(attributes: dict[str, Any], data: Any = None) -> CloudEvent:
    base = {
        "specversion": "1.0",
        "source": "/conformance",
        "time": datetime(2024, 5, 1, tzinfo=UTC),
    }
    return CloudEvent({**base, **attributes}, data)


def sdk_events() -> list[CloudEvent]:
    """Every attribute kind the format has, and every kind of data."""
    return [
        # required attributes only: no data, no datacontenttype
        CloudEvent(
            {"specversion": "1.0", "id": "min-1", "source": "/x", "type": "order.placed"}, None
        ),
        # every optional attribute, an offset time with microseconds, object data
        sdk_event(
            {
                "id": "all-1",
                "type": "com.example.order.placed",
                "source": "https://shop.example.com/orders",
                "subject": "order/42",
                "dataschema": "https://shop.example.com/schemas/order.json",
                "datacontenttype": "application/json",
                "time": datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=SEOUL),
            },
            {"orderId": "o-42", "amount": 12.5, "tags": ["a", "b"], "nested": {"x": None}},
        ),
        # any non-empty type string
        sdk_event({"id": "type-1", "type": "com.example.order:placed/v1"}, {"ok": True}),
        # data that is any JSON value, not only an object
        sdk_event({"id": "arr-1", "type": "list.made"}, [1, "two", {"three": 3}, None]),
        sdk_event({"id": "num-1", "type": "number.made"}, 42),
        sdk_event({"id": "flt-1", "type": "number.made"}, -0.25),
        sdk_event({"id": "str-1", "type": "string.made"}, "just text"),
        sdk_event({"id": "bool-1", "type": "bool.made"}, False),
        # any JSON media type, with parameters
        sdk_event(
            {"id": "mt-1", "type": "x.y", "datacontenttype": "application/vnd.api+json"},
            {"data": [{"id": "1"}]},
        ),
        sdk_event(
            {"id": "mt-2", "type": "x.y", "datacontenttype": "application/json; charset=utf-8"},
            {"a": 1},
        ),
        sdk_event({"id": "mt-3", "type": "x.y", "datacontenttype": "text/json"}, ["t"]),
        # non-JSON media types with string data
        sdk_event({"id": "txt-1", "type": "note.written", "datacontenttype": "text/plain"}, "hé"),
        sdk_event(
            {"id": "xml-1", "type": "doc.sent", "datacontenttype": "application/xml"},
            '<much wow="xml"/>',
        ),
        # binary data: data_base64
        sdk_event(
            {"id": "bin-1", "type": "blob.stored", "datacontenttype": "application/octet-stream"},
            bytes(range(256)),
        ),
        sdk_event(
            {"id": "bin-2", "type": "image.taken", "datacontenttype": "image/png"}, b"\x89PNG"
        ),
        sdk_event({"id": "bin-3", "type": "blob.empty"}, b"\x00"),
        # extension attributes of every type the CloudEvents type system has in JSON
        sdk_event(
            {
                "id": "ext-1",
                "type": "ext.all",
                "extstring": "text with spaces",
                "extbool": True,
                "extfalse": False,
                "extint": 2147483647,
                "extneg": -2147483648,
                "exturi": "https://example.com/a?b=c",
                "exttime": "2024-05-01T00:00:00Z",
                "extbinary": base64.b64encode(b"bytes").decode(),
                # longer than 20 characters: a SHOULD of the spec, not a MUST
                "averyveryverylongextensionattributename": "kept",
            },
            {"k": "v"},
        ),
        # sources of every URI-reference shape the spec shows
        sdk_event({"id": "src-1", "type": "s.t", "source": "urn:uuid:6e8bc430-9c3a-11d9-9669"}),
        sdk_event({"id": "src-2", "type": "s.t", "source": "mailto:cncf-wg@lists.cncf.io"}),
        sdk_event({"id": "src-3", "type": "s.t", "source": "1-555-123-4567"}),
        sdk_event({"id": "src-4", "type": "s.t", "source": "cloudevents/spec/pull/123"}),
        # text beyond ASCII everywhere it may appear
        sdk_event({"id": "uni-ü-1", "type": "ünï.cödé", "subject": "Zoë 😀"}, {"name": "Zoë 😀"}),
    ]


def import_lines(lines: list[str]) -> Any:
    return run_cli(["import", "-"], stdin="".join(line + "\n" for line in lines))


def exported() -> list[str]:
    result = run_cli(["log", "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def assert_same_event(sent: CloudEvent, line: str) -> None:
    back = FORMAT.read(None, line)
    original = sent.get_attributes()
    got = back.get_attributes()
    for name, value in original.items():
        assert got.get(name) == value, f"{original['id']}: attribute {name}"
    extra = set(got) - set(original)
    assert extra <= ADDED, f"{original['id']}: added {extra - ADDED}"
    assert back.get_data() == sent.get_data(), f"{original['id']}: data"
    raw = json.loads(line)
    if sent.get_data() is None:
        assert "data" not in raw and "data_base64" not in raw, f"{original['id']}: gained data"


def assert_schema_valid(lines: list[str], tmp: Path) -> None:
    files = []
    for i, line in enumerate(lines):
        path = tmp / f"event-{i}.json"
        path.write_text(line)
        files.append(str(path))
    checker = Path(sys.executable).parent / "check-jsonschema"
    proc = subprocess.run(
        [str(checker), "--schemafile", str(SCHEMA), *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sdk_events_come_back_attribute_by_attribute(project: Path) -> None:
    events = sdk_events()
    lines = [FORMAT.write(e).decode() for e in events]
    result = import_lines(lines)
    assert result.exit_code == 0, result.stderr
    back = exported()
    assert len(back) == len(events)
    for sent, line in zip(events, back, strict=True):
        assert_same_event(sent, line)
    assert_schema_valid(back, project)


def test_a_batch_line_imports_every_event_in_order(project: Path) -> None:
    """The JSON batch format (``application/cloudevents-batch+json``): an array of events."""
    events = sdk_events()[:6]
    batch = "[" + ",".join(FORMAT.write(e).decode() for e in events) + "]"
    single = FORMAT.write(sdk_event({"id": "after-batch", "type": "x.y"}, {"n": 1})).decode()
    result = import_lines([batch, single])
    assert result.exit_code == 0, result.stderr
    back = exported()
    assert [json.loads(x)["id"] for x in back] == [e.get_id() for e in events] + ["after-batch"]
    for sent, line in zip(events, back, strict=False):
        assert_same_event(sent, line)
    assert_schema_valid(back, project)


def test_every_kind_of_data_shows_in_the_table(project: Path) -> None:
    assert import_lines([FORMAT.write(e).decode() for e in sdk_events()]).exit_code == 0
    result = run_cli(["log", "--format", "table"])
    assert result.exit_code == 0, result.stderr
    assert "<256 bytes>" in result.stdout and '[1, "two"' in result.stdout
    for seq in ("1", "14", "4"):
        shown = run_cli(["show", seq])
        assert shown.exit_code == 0, shown.stderr


def test_export_imports_again_unchanged(project: Path) -> None:
    """``log --format jsonl`` is valid import input, and what it prints stays as it was."""
    assert import_lines([FORMAT.write(e).decode() for e in sdk_events()]).exit_code == 0
    first = exported()
    assert import_lines(first).exit_code == 0  # every identity is known: nothing new
    assert exported() == first


def test_emitted_and_derived_events_validate(project: Path) -> None:
    rules = project / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        "version: 1\nrules:\n  - name: ship\n    on: order.placed\n    then:\n"
        "      - emit: shipment.requested\n        data: {o: '${{ data.o }}'}\n"
    )
    assert run_cli(["emit", "order.placed", "-f", "o=1", "--subject", "u1"]).exit_code == 0
    assert run_cli(["emit", "ping"]).exit_code == 0
    lines = exported()
    assert len(lines) == 3
    assert_schema_valid(lines, project)


# -- keeping what an event carries -----------------------------------------------------------


def test_no_data_stays_without_data(project: Path) -> None:
    lines = [
        '{"specversion":"1.0","id":"n1","source":"/s","type":"a.b"}',
        '{"specversion":"1.0","id":"n2","source":"/s","type":"a.b","data":null}',
    ]
    assert import_lines(lines).exit_code == 0
    for line in exported():
        event = json.loads(line)
        assert "data" not in event and "data_base64" not in event, line
        assert "datacontenttype" not in event, line


def test_null_attributes_are_absent(project: Path) -> None:
    line = json.dumps(
        {
            "specversion": "1.0",
            "id": "nul-1",
            "source": "/s",
            "type": "a.b",
            "subject": None,
            "dataschema": None,
            "datacontenttype": None,
            "time": None,
            "myext": None,
            "data": {"k": 1},
        }
    )
    result = import_lines([line])
    assert result.exit_code == 0, result.stderr
    (back,) = [json.loads(x) for x in exported()]
    for name in ("subject", "dataschema", "datacontenttype", "myext"):
        assert name not in back
    assert back["data"] == {"k": 1}
    assert None not in back.values()


def _instant_ns(text: str) -> tuple[datetime, int]:
    """An RFC 3339 time as (UTC instant to the second, nanoseconds): no precision lost."""
    head, _, rest = text.partition(".")
    if rest:
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        tail = rest
    else:
        digits, tail = "", head[19:]
        head = head[:19]
    second = datetime.fromisoformat(head[:19] + (tail.replace("z", "Z") or "Z"))
    return second.astimezone(UTC), int(digits.ljust(9, "0")[:9] or 0)


@pytest.mark.parametrize(
    "sent",
    [
        "2024-05-01T10:20:30.123456789Z",
        "2024-05-01T19:20:30.000000001+09:00",
        "2024-05-01T10:20:30.1Z",
        "2024-05-01T10:20:30Z",
        "2024-05-01T05:20:30.5-05:00",
        "2024-05-01t10:20:30.25z",
        "1985-04-12T23:20:50.52Z",
        "1996-12-19T16:39:57-08:00",
        "1990-12-31T23:59:59.999999999Z",
    ],
)
def test_time_keeps_its_instant_and_precision(project: Path, sent: str) -> None:
    line = json.dumps({"specversion": "1.0", "id": "t", "source": "/s", "type": "a", "time": sent})
    result = import_lines([line])
    assert result.exit_code == 0, result.stderr
    (back,) = [json.loads(x) for x in exported()]
    assert _instant_ns(back["time"]) == _instant_ns(sent)
    assert back["time"].endswith("Z")


def test_times_order_the_log_queries(project: Path) -> None:
    """Nanoseconds take part in --since/--until by time."""
    lines = [
        json.dumps({"specversion": "1.0", "id": f"q{i}", "source": "/s", "type": "a", "time": t})
        for i, t in enumerate(
            [
                "2024-05-01T00:00:00.000000001Z",
                "2024-05-01T00:00:00.000001Z",
                "2024-05-01T00:00:01Z",
            ]
        )
    ]
    assert import_lines(lines).exit_code == 0
    result = run_cli(["log", "--since", "2024-05-01T00:00:00.000000500Z", "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    assert [json.loads(x)["id"] for x in result.stdout.splitlines()] == ["q1", "q2"]


# -- refusing what the format forbids ---------------------------------------------------------

BASE = {"specversion": "1.0", "id": "bad-1", "source": "/s", "type": "a.b"}


def _refused(project: Path, event: dict[str, Any], attribute: str) -> None:
    good = json.dumps({**BASE, "id": "good-1"})
    result = import_lines([good, json.dumps(event)])
    assert result.exit_code in (1, 2), (event, result.stdout, result.stderr)  # SPEC §5: 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert ":2:" in message and attribute in message, message
    assert "Traceback" not in message
    assert exported() == []  # the import is atomic: the good line is not recorded either


@pytest.mark.parametrize(
    "time",
    [
        "2016-10-02",  # a date
        "2016-10-02T10Z",  # no minutes
        "2016-10-02T10:00Z",  # no seconds
        "2016-10-02T10:00:00",  # no offset
        "2016-10-02 10:00:00Z",  # a space for T
        "2016-10-02T10:00:00,5Z",  # a comma fraction
        "2016-W40-7T10:00:00Z",  # an ISO week date
        "2016-276T10:00:00Z",  # an ordinal date
        "20161002T100000Z",  # the basic format
        "2016-10-02T10:00:00+0900",  # an offset without a colon
        "2016-10-02T10:00:00+09",  # an hour-only offset
        "2016-02-30T10:00:00Z",  # no such day
        "2016-10-02T24:00:00Z",  # no such hour
        "2016-10-02T10:00:00.Z",  # an empty fraction
        " 2016-10-02T10:00:00Z",  # padding
        "",
    ],
)
def test_time_must_be_rfc3339(project: Path, time: str) -> None:
    _refused(project, {**BASE, "time": time}, "time")


def test_time_must_be_a_string(project: Path) -> None:
    _refused(project, {**BASE, "time": 1475402400}, "time")


@pytest.mark.parametrize("attribute", ["subject", "dataschema", "datacontenttype"])
def test_optional_attributes_may_not_be_empty(project: Path, attribute: str) -> None:
    _refused(project, {**BASE, attribute: ""}, attribute)


@pytest.mark.parametrize("source", ["has space", "%zz", "http://[::1", "a\nb", "<x>", 'q"uote'])
def test_source_must_be_a_uri_reference(project: Path, source: str) -> None:
    _refused(project, {**BASE, "source": source}, "source")


@pytest.mark.parametrize("schema", ["has space", "relative/path.json", "http://[bad", "%zz"])
def test_dataschema_must_be_a_uri(project: Path, schema: str) -> None:
    _refused(project, {**BASE, "dataschema": schema}, "dataschema")


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1, 2], 1.5, 2147483648, -2147483649, 1e3],
)
def test_extension_values_stay_in_the_type_system(project: Path, value: Any) -> None:
    _refused(project, {**BASE, "myext": value}, "myext")


@pytest.mark.parametrize("name", ["MyExt", "my-ext", "my_ext", "ü"])
def test_extension_names_are_lowercase_letters_and_digits(project: Path, name: str) -> None:
    _refused(project, {**BASE, name: "v"}, name)


def test_data_and_data_base64_together_are_refused(project: Path) -> None:
    _refused(project, {**BASE, "data": {"a": 1}, "data_base64": "AAE="}, "data_base64")


@pytest.mark.parametrize("text", ["not base64!", "AAE", 5])
def test_data_base64_must_be_base64(project: Path, text: Any) -> None:
    _refused(project, {**BASE, "data_base64": text}, "data_base64")


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("type", ""), ("id", ""), ("source", ""), ("specversion", "0.3"), ("type", 5)],
)
def test_required_attributes(project: Path, attribute: str, value: Any) -> None:
    _refused(project, {**BASE, attribute: value}, attribute)


def test_string_data_needs_no_json_media_type(project: Path) -> None:
    """Text data with a JSON media type is a JSON string; with text/plain it is the text."""
    lines = [
        json.dumps({**BASE, "id": "j", "datacontenttype": "application/json", "data": "s"}),
        json.dumps({**BASE, "id": "p", "datacontenttype": "text/plain", "data": "s"}),
    ]
    assert import_lines(lines).exit_code == 0
    back = [json.loads(x) for x in exported()]
    assert [(e["datacontenttype"], e["data"]) for e in back] == [
        ("application/json", "s"),
        ("text/plain", "s"),
    ]


# -- what rules and projections see ---------------------------------------------------------


def test_rules_see_binary_data_as_bytes_and_any_json_data(project: Path) -> None:
    rules = project / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        """\
version: 1
rules:
  - name: bytes-seen
    on: blob.stored
    if: data == b'abc' && event.data_base64 == 'YWJj'
    then:
      - emit: blob.seen
  - name: list-seen
    on: list.made
    if: size(data) == 2 && data[0] == 1
    then:
      - emit: list.seen
        data: ${{ data }}
"""
    )
    lines = [
        FORMAT.write(sdk_event({"id": "b", "type": "blob.stored"}, b"abc")).decode(),
        FORMAT.write(sdk_event({"id": "l", "type": "list.made"}, [1, 2])).decode(),
    ]
    result = import_lines(lines)
    assert result.exit_code == 0, result.stderr
    back = [json.loads(x) for x in exported()]
    types = [e["type"] for e in back]
    assert types == ["blob.stored", "blob.seen", "list.made", "list.seen"], types
    assert back[3]["data"] == [1, 2]


def test_a_projection_that_needs_a_map_fails_clearly_on_other_data(project: Path) -> None:
    """As for a missing field: a key that cannot be read skips the event with a warning; a
    handler that needs a map stops the replay with one line naming the projection and seq."""
    rules = project / "rules"
    rules.mkdir()
    lines = [
        json.dumps({**BASE, "id": "m1", "type": "member.created", "subject": "u1",
                    "data": {"userid": "u1"}}),
        json.dumps({**BASE, "id": "m2", "type": "member.created", "subject": "u2",
                    "data": ["u2"]}),
        json.dumps({**BASE, "id": "m3", "type": "member.created", "subject": "u3", "data": "u3"}),
    ]
    assert import_lines(lines).exit_code == 0  # the facts are recorded whatever the rules say
    (rules / "p.yaml").write_text(
        "version: 1\nprojections:\n  - name: members\n    key: data.userid\n"
        "    on:\n      member.created: upsert\n"
    )
    result = run_cli(["replay"])
    assert result.exit_code == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert warning and "members" in warning[0] and "seq 2" in warning[0], result.stderr
    assert "not a map" in warning[0], result.stderr
    query = run_cli(["query", "members", "--format", "json"])
    assert [row["key"] for row in json.loads(query.stdout)] == ["u1"]

    (rules / "p.yaml").write_text(
        "version: 1\nprojections:\n  - name: by_subject\n    key: event.subject\n"
        "    on:\n      member.created: upsert\n"
    )
    result = run_cli(["replay"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) <= 2, message
    assert "by_subject" in message and "seq 2" in message and "map" in message, message
