"""The dashboard at ``/``: one server-rendered HTML page, a little JavaScript, no build step.

Every list is in the HTML, so the page works without JavaScript (reload to refresh). With it, new
events arrive over server-sent events (``GET /events`` as ``text/event-stream``) and the other
sections are refreshed every few seconds from the page itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

_STYLE = """
:root{color-scheme:light dark;--line:#8884;--muted:#777}
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:1200px;
  overflow-wrap:break-word}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.05em;margin:1.2em 0 .4em}
header p{overflow-wrap:anywhere}
.wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;font-size:.85em;color:var(--muted)}
code{font-size:.9em}
.muted{color:var(--muted)}
.state-active,.status-done{color:#2a7}.state-pending,.status-pending{color:#b80}
.state-expired,.status-dead,.status-failed{color:#c33}
ul.graph{padding-left:1.1em;margin:.2em 0}
.new{animation:flash 2s}@keyframes flash{from{background:#fd45}to{background:none}}
@media (max-width:640px){
  body{padding:8px;font-size:14px}
  thead{display:none}
  table,tbody,tr,td{display:block;width:100%}
  tr{border-bottom:1px solid var(--line);padding:4px 0}
  td{border:0;padding:1px 0;display:flex;gap:.6em}
  td:empty{display:none}
  td::before{content:attr(data-label);flex:0 0 5.5em;color:var(--muted);font-size:.85em}
  td>span{min-width:0;overflow-wrap:anywhere}
  tr.empty td::before{content:none}
}
"""

_SCRIPT = """
(function(){
  var body = document.querySelector('#events tbody');
  var last = parseInt(document.body.dataset.lastSeq || '0', 10);
  var labels = ['seq', 'time', 'type', 'id', 'subject', 'source'];
  function cell(text, i) {
    var td = document.createElement('td'), span = document.createElement('span');
    if (text != null && text !== '') {
      span.textContent = String(text);
      td.appendChild(span);
    }
    td.setAttribute('data-label', labels[i]);
    if (i > 3) td.className = 'wide';
    return td;
  }
  function add(ev) {
    if (ev.seq <= last) return;
    last = ev.seq;
    var tr = document.createElement('tr');
    tr.className = 'new';
    [ev.seq, ev.time, ev.type, ev.id, ev.subject, ev.source]
      .forEach(function (v, i) { tr.appendChild(cell(v, i)); });
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > LIMIT) body.deleteRow(body.rows.length - 1);
    var empty = document.getElementById('no-events');
    if (empty) empty.remove();
  }
  if (window.EventSource) {
    var es = new EventSource('events?since=' + last);
    es.onmessage = function (m) { try { add(JSON.parse(m.data)); } catch (e) {} };
  }
  var ids = ['rules', 'graph', 'deliveries', 'projections', 'schedules', 'timers'];
  function refresh(html) {
    if (!html) return;
    var doc = new DOMParser().parseFromString(html, 'text/html');
    ids.forEach(function (id) {
      var a = document.getElementById(id), b = doc.getElementById(id);
      if (a && b) a.innerHTML = b.innerHTML;
    });
  }
  setInterval(function () {
    fetch(location.pathname, {headers: {'Accept': 'text/html'}, credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(refresh)
      .catch(function () {});
  }, REFRESH);
})();
"""


def _e(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    return escape(value)


Cell = tuple[Any, str]  # (value, CSS class)


def _table(columns: list[str], rows: Iterable[list[Cell]], empty: str, empty_id: str = "") -> str:
    """A table that becomes one card per row on a phone (each cell labelled by its column)."""
    heads = "".join(f"<th>{escape(c)}</th>" for c in columns)
    out = []
    for cells in rows:
        tds = []
        for column, (value, cls) in zip(columns, cells, strict=True):
            attr = f' class="{cls}"' if cls else ""
            text = _e(value)
            inner = f"<span>{text}</span>" if text else ""
            tds.append(f'<td data-label="{escape(column)}"{attr}>{inner}</td>')
        out.append(f"<tr>{''.join(tds)}</tr>")
    if not out:
        ident = f' id="{empty_id}"' if empty_id else ""
        out.append(
            f'<tr class="empty"{ident}><td colspan="{len(columns)}" class="muted">'
            f"{escape(empty)}</td></tr>"
        )
    return (
        f'<div class="wrap"><table><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(out)}</tbody></table></div>"
    )


def _graph(rules: list[dict[str, Any]], schedules: list[dict[str, Any]]) -> str:
    """event type -> rule -> what it emits or does, one line per edge."""
    lines = []
    for r in rules:
        for trigger in r["on"]:
            for action in r.get("actions") or ["(no action)"]:
                target = action.removeprefix("emit ")
                lines.append(
                    f"<li><code>{_e(trigger)}</code> → <b>{_e(r['name'])}</b> → "
                    f"<code>{_e(target)}</code></li>"
                )
    for s in schedules:
        lines.append(
            f"<li><i>{_e(s['name'])}</i> ({_e(s['cron'])}) → <code>{_e(s.get('emit'))}</code></li>"
        )
    if not lines:
        return '<p class="muted">no rules</p>'
    return f'<ul class="graph">{"".join(lines)}</ul>'


def render(page: Mapping[str, Any], *, event_limit: int, refresh_ms: int = 5000) -> str:
    """The page for ``page``: ``events`` (newest first), ``last_seq``, ``rules``, ``schedules``,
    ``deliveries``, ``delivery_counts``, ``projections``, ``timers`` (the pending ones),
    ``database``, ``version``."""
    events_html = _table(
        ["seq", "time", "type", "id", "subject", "source"],
        (
            [(e.get("seq"), ""), (e.get("time"), ""), (e.get("type"), ""), (e.get("id"), ""),
             (e.get("subject"), "wide"), (e.get("source"), "wide")]
            for e in page["events"]
        ),
        "no events yet",
        empty_id="no-events",
    )  # fmt: skip
    rules_html = _table(
        ["rule", "state", "on", "if", "window", "actions"],
        (
            [(r["name"], ""), (r["state"], f"state-{r['state']}"), (", ".join(r["on"]), ""),
             (r.get("if"), ""), (r.get("window"), ""), ("; ".join(r.get("actions", [])), "")]
            for r in page["rules"]
        ),
        "no rules",
    )  # fmt: skip
    counts = page["delivery_counts"]
    count_text = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
    deliveries_html = f"<p>{escape(count_text)}</p>" + _table(
        ["id", "status", "rule", "event", "attempts", "last error"],
        (
            [(d["id"], ""), (d["status"], f"status-{d['status']}"), (d["rule"], ""),
             (d["event_id"], ""), (d["attempts"], ""), (d.get("last_error"), "")]
            for d in page["deliveries"]
        ),
        "no deliveries waiting or failed",
    )  # fmt: skip
    projections_html = _table(
        ["projection", "position", "lag"],
        ([(p["name"], ""), (p["position"], ""), (p["lag"], "")] for p in page["projections"]),
        "no projections",
    )
    schedules_html = _table(
        ["schedule", "state", "cron", "next", "last tick"],
        (
            [(s["name"], ""), (s["state"], f"state-{s['state']}"),
             (f"{s['cron']} {s['timezone']}", ""), (s.get("next"), ""), (s.get("last_tick"), "")]
            for s in page["schedules"]
        ),
        "no schedules",
    )  # fmt: skip
    timers_html = _table(
        ["timer", "rule", "action", "key", "due", "cause"],
        (
            [(t.get("id"), ""), (t.get("rule"), ""), (t.get("kind"), ""), (t.get("key"), ""),
             (t.get("due"), ""), (t.get("cause_id"), "")]
            for t in page["timers"]
        ),
        "no pending timers",
    )  # fmt: skip
    script = _SCRIPT.replace("LIMIT", str(event_limit)).replace("REFRESH", str(refresh_ms))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>evflow</title><style>{_STYLE}</style></head>
<body data-last-seq="{int(page["last_seq"])}">
<header><h1>evflow</h1><p class="muted">{_e(page["database"])} · evflow {_e(page["version"])}
· <a href="">reload</a></p></header>
<section><h2>Recent events</h2><div id="events">{events_html}</div></section>
<section><h2>Rules</h2><div id="rules">{rules_html}</div></section>
<section><h2>Graph</h2><div id="graph">{_graph(page["rules"], page["schedules"])}</div></section>
<section><h2>Deliveries</h2><div id="deliveries">{deliveries_html}</div></section>
<section><h2>Projections</h2><div id="projections">{projections_html}</div></section>
<section><h2>Schedules</h2><div id="schedules">{schedules_html}</div></section>
<section><h2>Timers</h2><div id="timers">{timers_html}</div></section>
<script>{script}</script>
</body></html>
"""
