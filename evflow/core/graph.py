"""The rules as a graph (``evflow rules graph``): event type -> rule -> emitted type or action.

Projections are sinks of the types they fold, schedules sources of the type they emit, and a glob
trigger (``order.*``) is its own node that the concrete types it matches point to. The output is
deterministic: nodes and edges come in the order of the rule files, so a committed graph only
changes when the rules do.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from evflow.core.rules import EmitAction, HttpAction, Rule, RuleSet, RunAction
from evflow.core.text import redact


@dataclass(frozen=True, slots=True)
class GraphNode:
    id: str
    kind: str  # type | rule | action | projection | schedule
    label: str  # first line: the name; further lines: details


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    label: str = ""
    dashed: bool = False


@dataclass(slots=True)
class Graph:
    nodes: dict[tuple[str, ...], GraphNode] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def node(self, kind: str, key: tuple[str, ...], label: str) -> str:
        full = (kind, *key)
        if full not in self.nodes:
            count = sum(1 for n in self.nodes.values() if n.kind == kind) + 1
            self.nodes[full] = GraphNode(f"{kind[0]}{count}", kind, label)
        return self.nodes[full].id

    def edge(self, source: str, target: str, label: str = "", dashed: bool = False) -> None:
        edge = Edge(source, target, label, dashed)
        if edge not in self.edges:
            self.edges.append(edge)


def _rule_label(rule: Rule) -> str:
    lines = [rule.name]
    if rule.condition is not None:
        lines.append(f"if {rule.condition.source}")
    if rule.window is not None:
        lines.append(rule.window.describe())
    return "\n".join(lines)


def _action_label(action: RunAction | HttpAction) -> str:
    if isinstance(action, RunAction):
        argv = action.argv.source
        program = argv[0] if isinstance(argv, list) and argv else "?"
        return f"run {program}"
    return f"http {action.method} {redact(str(action.url.source))}"


def build(ruleset: RuleSet) -> Graph:
    graph = Graph()

    def etype(name: str) -> str:
        return graph.node("type", (name,), name)

    for rule in ruleset.rules:
        triggers = [etype(t) for t in rule.on]
        node = graph.node("rule", (rule.name,), _rule_label(rule))
        for trigger in triggers:
            graph.edge(trigger, node)
        for index, action in enumerate(rule.actions):
            timing = action.timing
            # a timer's edge says when ("after 14d"; an at-time is data, so just "at")
            when = "" if timing is None else (" at" if timing.at else f" after {timing.after_text}")
            for cancel in timing.cancel_on if timing is not None else ():
                graph.edge(etype(cancel), node, "cancels", dashed=True)
            if isinstance(action, EmitAction):
                graph.edge(node, etype(action.type), "emit" + when)
            else:
                target = graph.node("action", (rule.name, str(index)), _action_label(action))
                graph.edge(node, target, when.strip())
                if isinstance(action, RunAction) and action.emit_result:
                    graph.edge(target, etype(action.emit_result), "result")
    for schedule in ruleset.schedules:
        label = f"{schedule.name}\ncron {schedule.cron} {schedule.timezone}"
        node = graph.node("schedule", (schedule.name,), label)
        graph.edge(node, etype(schedule.emit), "emit")
    for projection in ruleset.projections:
        node = graph.node("projection", (projection.name,), projection.name)
        for pattern, handler in projection.handlers:
            graph.edge(etype(pattern), node, handler.kind if handler.kind != "ops" else "")
    types = [key[1] for key, n in graph.nodes.items() if n.kind == "type"]
    for glob in (t for t in types if "*" in t):
        for concrete in types:
            if concrete != glob and "*" not in concrete and fnmatch.fnmatchcase(concrete, glob):
                graph.edge(etype(concrete), etype(glob), "matches", dashed=True)
    return graph


_MERMAID_SHAPES = {
    "type": ('(["', '"])'),
    "rule": ('["', '"]'),
    "action": ('[/"', '"/]'),
    "projection": ('[("', '")]'),
    "schedule": ('{{"', '"}}'),
}

_MERMAID_STYLES = {
    "type": "fill:#e8f0fe,stroke:#4a6fa5",
    "rule": "fill:#fff4e0,stroke:#c77d00",
    "action": "fill:#fde8e8,stroke:#b03030",
    "projection": "fill:#e6f4ea,stroke:#2e7d32",
    "schedule": "fill:#f3e8fd,stroke:#6a1b9a",
}


def _mermaid_text(text: str) -> str:
    # entity codes keep quotes and angle brackets from ending the label or reading as HTML
    for char, code in (("&", "#38;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text.replace("\n", "<br/>")


def mermaid(ruleset: RuleSet) -> str:
    """A Mermaid flowchart (GitHub renders it in Markdown)."""
    graph = build(ruleset)
    lines = ["flowchart LR"]
    for node in graph.nodes.values():
        start, end = _MERMAID_SHAPES[node.kind]
        lines.append(f"  {node.id}{start}{_mermaid_text(node.label)}{end}")
    for edge in graph.edges:
        if edge.dashed:
            arrow = f"-. {edge.label} .->" if edge.label else "-.->"
        else:
            arrow = f"-->|{_mermaid_text(edge.label)}|" if edge.label else "-->"
        lines.append(f"  {edge.source} {arrow} {edge.target}")
    for kind, style in _MERMAID_STYLES.items():
        ids = [n.id for n in graph.nodes.values() if n.kind == kind]
        if ids:
            lines.append(f"  classDef {kind} {style}")
            lines.append(f"  class {','.join(ids)} {kind}")
    return "\n".join(lines) + "\n"


_DOT_SHAPES = {
    "type": "ellipse",
    "rule": "box",
    "action": "parallelogram",
    "projection": "cylinder",
    "schedule": "hexagon",
}


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot(ruleset: RuleSet) -> str:
    """A Graphviz digraph (``evflow rules graph --format dot | dot -Tsvg > rules.svg``)."""
    graph = build(ruleset)
    lines = ["digraph evflow {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node in graph.nodes.values():
        lines.append(
            f"  {node.id} [label={_dot_text(node.label)}, shape={_DOT_SHAPES[node.kind]}];"
        )
    for edge in graph.edges:
        attrs = [f"label={_dot_text(edge.label)}"] if edge.label else []
        if edge.dashed:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {edge.source} -> {edge.target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"
