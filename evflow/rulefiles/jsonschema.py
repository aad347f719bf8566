"""JSON Schemas (draft 2020-12) of rule files and rule test files, for editors and CI.

Written by hand rather than derived from the loader, so that every key carries a description an
editor can show; ``tests/test_schema_graph.py`` keeps them in sync with the loader's allowed keys
(:mod:`evflow.rulefiles.builder`) and with the test runner's (:mod:`evflow.services.ruletest`).

The schema checks shape only: CEL compiling, window bounds, name uniqueness and the like are left
to ``evflow rules validate``, which reports them with file, line and column.
"""

from __future__ import annotations

from typing import Any

from evflow.core.windows import BOUND_PATTERN

DRAFT = "https://json-schema.org/draft/2020-12/schema"
RULES_ID = "https://evflow.dev/schema/rules.schema.json"
TESTS_ID = "https://evflow.dev/schema/rules-test.schema.json"

NAME_PATTERN = "^[a-z0-9][a-z0-9._-]*$"
# CloudEvents types: any non-empty text without control characters; '*' is a glob in `on` only
TYPE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f*]+$"
GLOB_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
PYTHON_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _text(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _obj(
    properties: dict[str, Any], required: tuple[str, ...] = (), description: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["properties"] = properties
    if required:
        out["required"] = list(required)
    out["additionalProperties"] = False
    return out


_ANY_VALUE = {"description": "Any value; strings may hold ${{ expr }} templates."}
# values are text; a number or boolean counts as written
_STRING_MAP = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
_DURATION = {
    "description": "A duration: 30s, 10m, 2h, 1d, 500ms, 1h30m, or a number of seconds.",
    "anyOf": [
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*)+$"},
        {"type": "number", "minimum": 0},
    ],
}
# a timeout must be more than 0: a digit other than 0 somewhere
_POSITIVE_DURATION = {
    "description": "A duration more than 0: 30s, 10m, 2h, 1d, 500ms, 1h30m, or seconds.",
    "anyOf": [
        {"type": "string", "pattern": r"^(?=.*[1-9])\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*)+$"},
        {"type": "number", "exclusiveMinimum": 0},
    ],
}
_BOUND = {
    "description": "A date (midnight in the window's timezone) or a date-time (with an optional"
    " offset; without one, in the window's timezone).",
    "type": "string",
    "pattern": f"^\\s*{BOUND_PATTERN}\\s*$",
}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


def _window(with_cron: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "from": {**_BOUND, "description": "Start (inclusive). " + _BOUND["description"]},
        "until": {**_BOUND, "description": "End (exclusive). " + _BOUND["description"]},
    }
    if with_cron:
        properties["timezone"] = _text("IANA timezone name (default: the file's defaults)")
        properties["cron"] = _text(
            '5-field cron: the minutes it matches, e.g. "* 9-17 * * MON-FRI"'
        )
    return _obj(properties, description="The window [from, until) an event's time must fall in.")


_TYPES = {
    "anyOf": [
        {"type": "string", "pattern": GLOB_PATTERN},
        {"type": "array", "items": {"type": "string", "pattern": GLOB_PATTERN}, "minItems": 1},
    ]
}
#: any action may be a timer: due later, cancellable by a later event with the same key
_TIMER = {
    "after": {**_DURATION, "description": "A timer: due this long after the cause's time."},
    "at": _text("A timer: due at this RFC 3339 time (a template, e.g. ${{ data.trial_end }})."),
    "key": _text("The timer's key (templated; default: the cause's subject)."),
    "cancel_on": {
        **_TYPES,
        "description": "Event types (or globs) that cancel pending timers with the same key.",
    },
    "cancel_key": _text("A cancelling event's key (templated; default: its subject)."),
}


def _action(kind: str, properties: dict[str, Any], description: str) -> dict[str, Any]:
    return _obj({**properties, **_TIMER}, (kind,), description)


_ACTIONS = {
    "emit": _action(
        "emit",
        {
            "emit": _text("The derived event's type.", pattern=TYPE_PATTERN),
            "data": {
                "description": "The derived event's data: a mapping (templated) or one ${{ }}.",
                "type": ["object", "string"],
            },
            "subject": _text("The derived event's subject (templated)."),
            "source": _text("The derived event's source (default evflow:rule/NAME)."),
        },
        "Append a derived event in the same transaction.",
    ),
    "run": _action(
        "run",
        {
            "run": {
                "description": "The argv list (never a shell); items may hold ${{ }}.",
                "type": "array",
                "items": {"type": ["string", "number", "boolean"]},
                "minItems": 1,
            },
            "env": {**_STRING_MAP, "description": "Extra environment variables (templated)."},
            "cwd": _text("Working folder, relative to the rule file's folder."),
            "timeout": {**_POSITIVE_DURATION},
            "stdin": {**_ANY_VALUE, "description": "Standard input (default: the event JSON)."},
            "emit_result": _text(
                "Turn the program's stdout (a JSON object) into an event of this type.",
                pattern=TYPE_PATTERN,
            ),
        },
        "Run a program after the commit.",
    ),
    "http": _action(
        "http",
        {
            "http": _text("The webhook URL (templated)."),
            "method": {
                "description": "HTTP method (default POST; case does not matter).",
                "type": "string",
                "pattern": "^(" + "|".join(_any_case(m) for m in HTTP_METHODS) + ")$",
            },
            "headers": {**_STRING_MAP, "description": "Request headers (templated)."},
            "body": {**_ANY_VALUE, "description": "Request body (default: the event JSON)."},
            "timeout": {**_POSITIVE_DURATION},
        },
        "Call a webhook after the commit; 2xx is success.",
    ),
}

_OPS = ("set", "inc", "append", "unset")
_HANDLER = {
    "description": "upsert, merge, delete, or a mapping of operations.",
    "anyOf": [
        {"enum": ["upsert", "merge", "delete"]},
        {
            # at least one operation, or python (which takes only `if` beside it)
            "anyOf": [
                {"required": ["python"], "not": {"anyOf": [{"required": [op]} for op in _OPS]}},
                {"anyOf": [{"required": [op]} for op in _OPS], "not": {"required": ["python"]}},
            ],
            **_obj(
            {
                "set": {"type": "object", "description": "Fields to set (templated)."},
                "inc": {"type": "object", "description": "Fields to add to (templated)."},
                "append": {"type": "object", "description": "Lists to append to (templated)."},
                "unset": {
                    "description": "Fields to remove.",
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                },
                "if": _text("CEL condition (variables data, event, state, key)."),
                "python": _text(
                    "package.module:function called as function(state, event).",
                    pattern=PYTHON_PATTERN,
                ),
            }
            ),
        },
    ],
}

_RULE = _obj(
    {
        "name": _text("Unique name.", pattern=NAME_PATTERN),
        "description": _text("What the rule is for."),
        "on": {
            "description": "An event type, a glob (order.*), or a list of them.",
            "anyOf": [
                {"type": "string", "pattern": GLOB_PATTERN},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": GLOB_PATTERN},
                    "minItems": 1,
                },
            ],
        },
        "if": _text("CEL boolean filter (variables data, event)."),
        "active": {"$ref": "#/$defs/window"},
        "then": {
            "type": "array",
            "description": "The actions, in order.",
            "minItems": 1,
            "items": {"$ref": "#/$defs/action"},
        },
        "retry": _obj(
            {
                "attempts": {"type": "integer", "minimum": 1, "description": "Default 3."},
                "backoff": {**_DURATION},
                "max_backoff": {**_DURATION},
            },
            description="Retries of run and http actions.",
        ),
    },
    ("name", "on", "then"),
)

_SCHEDULE = _obj(
    {
        "name": _text("Unique name.", pattern=NAME_PATTERN),
        "description": _text("What the schedule is for."),
        "cron": _text('Cron expression (croniter syntax), e.g. "0 2 * * *".'),
        "timezone": _text("IANA timezone name (default: the file's defaults)."),
        "active": _window(with_cron=False),
        "emit": _text("The event type it appends.", pattern=TYPE_PATTERN),
        "data": {"type": "object", "description": "Event data (variable: schedule)."},
        "subject": _text("Event subject (templated)."),
        "catchup": {"enum": ["latest", "all", "none"], "description": "Missed occurrences."},
        "max_catchup": {"type": "integer", "minimum": 1},
    },
    ("name", "cron", "emit"),
)

_COLUMN = "^[a-z_][a-z0-9_]{0,62}$"
_TABLE = _obj(
    {
        "name": _text(
            "Table name (default: the projection's name, '.' and '-' as '_').",
            pattern="^[A-Za-z_][A-Za-z0-9_]{0,47}$",
        ),
        "database": _text(
            "Database URL (default: the evflow database): postgresql://…[?schema=S], mysql://…,"
            " mariadb://…, sqlite:///path, a path, or any SQLAlchemy URL; ${NAME} is replaced by"
            " the environment variable NAME when replay runs."
        ),
        "columns": {
            "type": "object",
            "description": "State fields kept as typed columns (besides key and seq).",
            "propertyNames": {"pattern": _COLUMN, "not": {"enum": ["key", "seq"]}},
            "additionalProperties": {
                "enum": ["text", "integer", "bigint", "numeric", "float", "boolean",
                         "timestamp", "date", "json"],
            },
        },
        "state_column": _text(
            "A column holding the whole state as JSON too (JSONB on PostgreSQL).", pattern=_COLUMN
        ),
        "indexes": {
            "type": "array",
            "description": "Indexes, each a list of columns, e.g. [[amount], [last_order_time]].",
            "items": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
    },
    description="Keep this projection as a typed SQL table too (exactly once, rebuilt aside).",
)

_PROJECTION = _obj(
    {
        "name": _text("Unique name.", pattern=NAME_PATTERN),
        "description": _text("What the projection holds."),
        "key": _text("CEL expression giving the row key, e.g. data.userid."),
        "on": {
            "type": "object",
            "description": "Event types (or globs) mapped to handlers.",
            "propertyNames": {"pattern": GLOB_PATTERN},
            "additionalProperties": {"$ref": "#/$defs/handler"},
            "minProperties": 1,
        },
        "table": _TABLE,
    },
    ("name", "key", "on"),
)


def rules_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file (``rules/*.yaml``); an empty file is a valid one."""
    schema = _rules_schema()
    schema["type"] = ["object", "null"]
    return schema


def _rules_schema() -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "$id": RULES_ID,
        "title": "evflow rule file",
        **_obj(
            {
                "version": {"const": 1, "description": "The file format version (1)."},
                "defaults": _obj(
                    {"timezone": _text("IANA timezone for every window and schedule here.")}
                ),
                "rules": {"type": ["array", "null"], "items": {"$ref": "#/$defs/rule"}},
                "schedules": {"type": ["array", "null"], "items": {"$ref": "#/$defs/schedule"}},
                "projections": {
                    "type": ["array", "null"],
                    "items": {"$ref": "#/$defs/projection"},
                },
            }
        ),
        "$defs": {
            "rule": _RULE,
            "window": _window(with_cron=True),
            "action": {"oneOf": list(_ACTIONS.values())},
            **{f"{kind}_action": schema for kind, schema in _ACTIONS.items()},
            "schedule": _SCHEDULE,
            "projection": _PROJECTION,
            "handler": _HANDLER,
        },
    }


_GIVEN = _obj(
    {
        "type": _text("Event type.", pattern=TYPE_PATTERN),
        "data": {"type": "object", "description": "Event data."},
        "time": _text("RFC 3339 time (default: the case's at, else now)."),
        "subject": _text("Event subject."),
        "id": _text("Event id (default: a new one)."),
        "source": _text("Event source (default evflow:test)."),
    },
    ("type",),
)

_EXPECTED_EVENT = _obj(
    {
        "type": _text("Derived event type.", pattern=TYPE_PATTERN),
        "data": {"type": "object", "description": "A subset of the derived event's data."},
        "subject": _text("The derived event's subject."),
        "source": _text("The derived event's source."),
        "rule": _text("The rule that emitted it."),
        "time": _text("Its time (a fired timer's: the due time), compared as an instant."),
    }
)

_EXPECTED_TIMER = _obj(
    {
        "rule": _text("The rule whose timed action set it."),
        "action": {"type": "integer", "minimum": 0, "description": "Index in the rule's then."},
        "kind": {"enum": ["emit", "run", "http"]},
        "status": {"enum": ["pending", "fired", "cancelled"]},
        "due": _text("Its due time, compared as an instant."),
        "key": {"type": ["string", "null"], "description": "Its key."},
        "event": _text("Type of the event that set it."),
    }
)

_TICK = _obj(
    {"tick": _text("Fire the timers due at or before this RFC 3339 time (time travel).")},
    ("tick",),
)

_EXPECTED_DELIVERY = _obj(
    {
        "rule": _text("The rule whose action would run."),
        "kind": {"enum": ["run", "http"]},
        "action": {"type": "integer", "minimum": 0, "description": "Index in the rule's then."},
        "event": _text("Type of the event that triggered it."),
        "argv": {"type": "array", "description": "Rendered argv (run)."},
        "env": {"type": "object", "description": "A subset of the rendered env (run)."},
        "cwd": _text("Resolved working folder (run)."),
        "stdin": {"description": "Rendered stdin (run; default the event JSON)."},
        "url": _text("Rendered URL (http)."),
        "method": _text("HTTP method (http)."),
        "headers": {"type": "object", "description": "A subset of the rendered headers (http)."},
        "body": {"description": "Rendered body, a subset when a mapping (http)."},
    }
)

_NAMES = {"type": "array", "items": {"type": "string"}}

_CASE = _obj(
    {
        "name": _text("What the case shows."),
        "description": _text("More words about it."),
        "at": _text("Judge windows as of this time (default: each event's own time)."),
        "given": {
            "type": "array",
            "description": "Events appended in order, each routed through the rules, and ticks.",
            "items": {"anyOf": [_GIVEN, _TICK]},
        },
        "expect": _obj(
            {
                "events": {
                    "type": "array",
                    "description": "Each must be derived (a subset match); [] means none at all.",
                    "items": _EXPECTED_EVENT,
                },
                "deliveries": {
                    "type": "array",
                    "description": "Each must be due (a subset match); [] means none at all.",
                    "items": _EXPECTED_DELIVERY,
                },
                "timers": {
                    "type": "array",
                    "description": "Each must be set (a subset match); [] means none at all.",
                    "items": _EXPECTED_TIMER,
                },
                "matched": {**_NAMES, "description": "Rules that must match some event."},
                "not_matched": {**_NAMES, "description": "Rules that must match no event."},
                "projections": {
                    "type": "object",
                    "description": "{projection: {key: subset of state, absent: [keys]}}",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"absent": {"type": "array"}},
                        "additionalProperties": {"type": "object"},
                    },
                },
            }
        ),
    },
    ("name", "given"),
)


def tests_schema() -> dict[str, Any]:
    """The JSON Schema of a rule test file (``rules/tests/*.yaml``)."""
    return {
        "$schema": DRAFT,
        "$id": TESTS_ID,
        "title": "evflow rule test file",
        **_obj(
            {
                "version": {"const": 1},
                "rules": _text("The rules folder or file to test, relative to this file."),
                "tests": {"type": "array", "items": _CASE},
            },
            ("tests",),
        ),
    }
