"""What ``--help`` shows beyond each command's docstring: examples (gh-style), placeholders that
read as words, the terminal's width, and shell completion of rule, projection and schedule names.

A new command adds its examples to :data:`EXAMPLES` (``tests/cli_ux/test_help.py`` checks that
every command has a summary, an example and word placeholders).
"""

from __future__ import annotations

import shutil
from typing import Any

#: command path -> example command lines (shown under "Examples:")
EXAMPLES: dict[str, list[str]] = {
    "": [
        "evflow init",
        "evflow emit order.placed -f orderId=7 -f orderAmt=150",
        "evflow log --tail 20",
        "evflow query member_orders",
    ],
    "init": ["evflow init", "evflow init --example          # add the example rules anyway"],
    "config": ["evflow config", "evflow config --format json"],
    "emit": [
        "evflow emit order.placed -f orderId=7 -f orderAmt=150",
        "evflow emit release.made -s version=1.10      # -s keeps the value as text",
        "evflow emit order.placed --data @order.json --subject u1",
        "evflow emit order.placed -f orderAmt=150 --dry-run",
    ],
    "import": [
        "evflow import events.jsonl",
        "evflow log --format jsonl | evflow --db copy.db import -",
    ],
    "log": [
        "evflow log --tail 20",
        "evflow log -t 'order.*' --since 2016-10-01",
        "evflow log --reverse --limit 5",
        "evflow log --follow",
    ],
    "show": ["evflow show 12", "evflow show 12 --depth 1", "evflow show 0190f… --format json"],
    "stats": ["evflow stats", "evflow stats --format json"],
    "deliveries": [
        "evflow deliveries --status dead",
        "evflow deliveries --rule mail-on-order --reverse --limit 10",
    ],
    "retry": ["evflow retry 3 4", "evflow retry --dead"],
    "redeliver": [
        "evflow redeliver --rule mail-on-order --since 2016-10-01 --dry-run",
        "evflow redeliver --rule mail-on-order --since 120",
    ],
    "run": ["evflow run", "evflow run --once --strict     # cron, CI"],
    "replay": ["evflow replay", "evflow replay members --rebuild"],
    "query": [
        "evflow query member_orders",
        "evflow query members u1 --format json",
        "evflow query member_orders --where 'state.amount > 100'",
        "evflow query members --as-of 2016-10-07",
    ],
    "tick": ["evflow tick", "evflow tick --now 2026-03-30T18:00:00Z"],
    "rules": ["evflow rules validate", "evflow rules test", "evflow rules list"],
    "rules validate": ["evflow rules validate", "evflow rules validate --format github"],
    "rules list": ["evflow rules list", "evflow rules list --at 2016-09-30"],
    "rules explain": [
        "evflow rules explain order.placed -f orderAmt=150 --time 2016-10-02T00:00:00Z",
    ],
    "rules test": ["evflow rules test", "evflow rules test rules/tests/shop_test.yaml"],
    "rules schema": [
        "evflow rules schema > .evflow/rules.schema.json",
        "evflow rules schema --tests",
    ],
    "rules graph": [
        "evflow rules graph",
        "evflow rules graph --format dot | dot -Tsvg > rules.svg",
    ],
    "schedules": ["evflow schedules list", "evflow schedules preview nightly-sales-report"],
    "schedules list": ["evflow schedules list", "evflow schedules list --at 2016-10-01"],
    "schedules preview": [
        "evflow schedules preview nightly-sales-report --next 5",
        "evflow schedules preview nightly-sales-report --from 2026-03-28T00:00:00Z",
    ],
    "timers": ["evflow timers --status pending", "evflow timers --rule trial-ends --format json"],
    "timers cancel": ["evflow timers cancel 3 4"],
    "serve": [
        "evflow serve",
        "EVFLOW_TOKENS='{\"s3cret\": [\"ingest\", \"read\"]}' evflow serve --host 0.0.0.0",
    ],
    "bridge": ["evflow bridge nats --once"],
    "bridge nats": [
        "evflow bridge nats --once",
        "evflow bridge nats --ingest 'shop.>' --durable shop-in",
    ],
}

#: option name -> placeholder, for options that do not name their own
PLACEHOLDERS = {
    "--db": "URL",
    "--rules": "DIR",
    "--format": "FORMAT",
    "--data": "JSON",
    "--field": "KEY=VALUE",
    "--set": "KEY=VALUE",
    "--subject": "SUBJECT",
    "--source": "URI",
    "--time": "TIME",
    "--id": "ID",
    "--at": "TIME",
    "--now": "TIME",
    "--from": "TIME",
    "--since": "SEQ|TIME",
    "--until": "SEQ|TIME",
    "--as-of": "SEQ|TIME",
    "--limit": "N",
    "--tail": "N",
    "--next": "N",
    "--depth": "N",
    "--batch": "N",
    "--type": "TYPE",
    "--status": "STATUS",
    "--rule": "RULE",
    "--where": "CEL",
    "--interval": "SECONDS",
    "--lease": "SECONDS",
    "--worker-id": "NAME",
    "--url": "URL",
    "--stream": "NAME",
    "--subject-prefix": "PREFIX",
    "--durable": "NAME",
    "--max-body": "BYTES",
    "--key": "KEY",
}


def _names(ctx: Any, kind: str) -> list[str]:
    """Rule, projection or schedule names for completion, read with the root's --db/--rules."""
    try:
        from evflow.app import Evflow

        root = ctx.find_root()
        rules = root.params.get("rules")
        flow = Evflow(rules=rules, create=False)
        ruleset = flow.ruleset
        if kind == "rule":
            return [r.name for r in ruleset.rules]
        if kind == "projection":
            return [p.name for p in ruleset.projections]
        return [s.name for s in ruleset.schedules]
    except Exception:  # noqa: BLE001 - completion never complains
        return []


def _completer(kind: str) -> Any:
    def complete(ctx: Any, param: Any, incomplete: str) -> list[str]:
        return [n for n in _names(ctx, kind) if n.startswith(incomplete)]

    return complete


#: (command path, parameter name) -> what it names
NAMED = {
    ("query", "name"): "projection",
    ("replay", "names"): "projection",
    ("schedules preview", "name"): "schedule",
}


def polish(command: Any, path: str = "") -> None:
    """Examples, placeholders, width and completion for ``command`` and its subcommands."""
    command.context_settings.setdefault("max_content_width", max(80, _columns()))
    lines = EXAMPLES.get(path)
    if lines:
        body = "\n".join(f"  $ {line}" for line in lines)
        command.epilog = f"Examples:\n\n\b\n{body}"
    for param in command.params:
        kind_of = getattr(param, "param_type_name", "")
        if kind_of == "option" and param.metavar is None and not getattr(param, "is_flag", False):
            long = next((o for o in param.opts if o.startswith("--")), None)
            if long is not None:
                param.metavar = PLACEHOLDERS.get(long, long.lstrip("-").upper().replace("-", "_"))
        elif kind_of == "argument":
            if param.metavar is None:
                name = (param.name or "").upper()
                param.metavar = f"[{name}]..." if param.nargs == -1 else name
            # the Arguments section names them; a Python type (<str>) says nothing more
            param.display_type_rich = lambda ctx: ""
        kind = NAMED.get((path, param.name or "")) or ("rule" if param.name == "rule" else None)
        if kind is not None:
            param._custom_shell_complete = _completer(kind)
    for name, sub in getattr(command, "commands", {}).items():
        polish(sub, f"{path} {name}".strip())


def _columns() -> int:
    return shutil.get_terminal_size((80, 24)).columns
