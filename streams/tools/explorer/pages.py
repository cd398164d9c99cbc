"""The explorer's pages as HTML strings; every value from Redis or Kafka goes through
``escape``. Plots are inline SVG from :mod:`streams.tools.explorer.svg`."""

from __future__ import annotations

import math
import time
from html import escape
from typing import Any
from urllib.parse import quote

from streams.runtime.segment_history import Sample
from streams.tools.explorer import svg
from streams.tools.explorer.store import (
    Catalogue,
    behaviour_matrix,
    flows,
    sizes,
    window_volatility,
)

#: Lines drawn per segmentation's size chart (the largest segments; the table lists all).
MAX_LINES = 12
FIRST = ("lifecycle", "behavior", "rfm", "value_tier")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;
color:#1d1f23}
header{background:#1d2b3a;color:#fff;padding:10px 24px;display:flex;align-items:center;gap:24px}
header a{color:#fff;text-decoration:none;font-weight:600;font-size:18px}
header form{margin-left:auto}
input{padding:5px 8px;border:1px solid #99a;border-radius:4px;font-size:14px}
button{padding:5px 12px;border:0;border-radius:4px;background:#3b82f6;color:#fff;font-size:14px}
main{padding:16px 24px;max-width:1280px}
section{background:#fff;border-radius:8px;padding:12px 18px;margin-bottom:18px;
box-shadow:0 1px 3px #0002}
h2{margin:4px 0 8px;font-size:19px}h3{margin:10px 0 4px;font-size:15px;color:#444}
table{border-collapse:collapse;font-size:13px;width:100%}
th{text-align:left;color:#555;font-weight:600;border-bottom:2px solid #ddd;padding:4px 6px;
vertical-align:bottom}
td{border-bottom:1px solid #eee;padding:4px 6px;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}td.n{white-space:nowrap}
.row>div{min-width:0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.desc{color:#666;font-size:12px}.muted{color:#777;font-size:13px}
.row{display:flex;gap:20px;align-items:flex-start}
.kpis{display:flex;gap:22px;flex-wrap:wrap;margin:6px 0 10px}
.features{columns:4;column-gap:28px;font-size:13px}
.feature{display:flex;justify-content:space-between;border-bottom:1px solid #eee;padding:3px 2px;
break-inside:avoid}.feature b{font-weight:500;font-variant-numeric:tabular-nums}
.kpi b{display:block;font-size:20px}.kpi span{color:#666;font-size:12px}
"""


def layout(title: str, body: str, lookup: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{escape(title)} · segment explorer</title><style>{STYLE}</style></head>'
            f'<body><header><a href="/">Segment explorer</a>'
            f'<form id="lookup" action="/user" method="get"><label>User lookup '
            f'<input name="id" placeholder="user id" value="{escape(lookup)}" required>'
            f'</label> <button type="submit">Find</button></form></header>'
            f"<main>{body}</main></body></html>")


def overview(catalogue: Catalogue, histories: dict[str, list[Sample]]) -> str:
    if not catalogue:
        return layout("segments", "<section><h2>No segments yet</h2><p class=muted>No "
                      "worker has written segment profiles to this Redis yet.</p></section>")
    parts = [f'<p class="muted">{len(catalogue)} segmentations, read from Redis at '
             f'{time.strftime("%H:%M:%S", time.gmtime())} UTC. Sizes are sampled by the '
             f"workers (worker.history_interval_s); KPIs are the workers' counts "
             f"(docs/outputs.md).</p>"]
    for segmentation in sorted(catalogue, key=_rank):
        profiles = catalogue[segmentation]
        parts.append(_segmentation_section(segmentation, profiles,
                                           histories.get(segmentation, [])))
    return layout("segments", "".join(parts))


def _rank(segmentation: str) -> tuple[int, str]:
    """The segmentations marketers look at first come first; the rest by name."""
    return (FIRST.index(segmentation) if segmentation in FIRST else len(FIRST), segmentation)


def _segmentation_section(segmentation: str, profiles: dict[str, dict[str, Any]],
                          samples: list[Sample]) -> str:
    ranked = sorted(profiles, key=lambda s: -int(profiles[s].get("size", 0)))
    colours = {segment: svg.colour(i) for i, segment in enumerate(ranked)}
    lines = [svg.Series(s, sizes(samples, s), colours[s]) for s in ranked[:MAX_LINES]]
    chart = svg.line_chart([line for line in lines if line.points], width=430, height=200)
    section = (f'<section id="seg-{escape(segmentation)}" data-segmentation='
               f'"{escape(segmentation)}"><h2>{escape(segmentation)}</h2><div class="row">'
               f'<div class="chart size-chart">{chart}</div><div style="flex:1">'
               f"{_table(segmentation, ranked, profiles, samples, colours)}</div></div>")
    if segmentation == "behavior" and any(p.get("key_features") for p in profiles.values()):
        rows, columns, z, shown = behaviour_matrix(profiles)
        section += ('<h3>Behaviour profiles: each segment\'s typical value, coloured by how '
                    "far it lies from the other segments (blue below, red above, in standard "
                    "deviations)</h3>"
                    f'<div class="chart heatmap">{svg.heatmap(rows, columns, z, shown)}</div>')
    return section + "</section>"


def _table(segmentation: str, ranked: list[str], profiles: dict[str, dict[str, Any]],
           samples: list[Sample], colours: dict[str, str]) -> str:
    head = ("<tr><th>segment</th><th class=n>members</th><th class=n>in 7d</th>"
            "<th class=n>out 7d</th><th class=n title='of those who entered 7-37 days ago, "
            "the share who ordered within 7 days'>conversion</th><th class=n>revenue 30d</th>"
            "<th class=n>AOV</th><th class=n title='(entries + exits) / mean size over the "
            "sampled history'>volatility</th><th class=n title='exits within 7 days of "
            "entering, per entry, 30 days'>quick exits</th></tr>")
    rows = []
    for segment in ranked:
        p = profiles[segment]
        link = f"/segment/{quote(segmentation, safe='')}/{quote(segment, safe='')}"
        label = f"{segment}: {p['name']}" if p.get("name") else segment
        rows.append(
            f'<tr data-segment="{escape(segment)}"><td class="name"><span class="swatch" '
            f'style="background:{colours[segment]}"></span>'
            f'<a href="{escape(link)}">{escape(label)}</a>'
            f'<div class="desc">{escape(str(p.get("description", "")))}</div></td>'
            f'<td class="n size">{int(p.get("size", 0)):,}</td>'
            f'<td class=n>{int(p.get("entries_7d", 0)):,}</td>'
            f'<td class=n>{int(p.get("exits_7d", 0)):,}</td>'
            f'<td class=n>{_share(p.get("conversion"))}</td>'
            f'<td class=n>{_money(p.get("revenue_30d"))}</td>'
            f'<td class=n>{_money(p.get("aov_30d"))}</td>'
            f'<td class=n>{_share(window_volatility(samples, segment))}</td>'
            f'<td class=n>{_share(p.get("volatility_30d"))}</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def segment_page(segmentation: str, segment: str, profile: dict[str, Any] | None,
                 samples: list[Sample]) -> str:
    if profile is None:
        return layout("unknown segment", f"<section><h2>No segment {escape(segment)} in "
                      f"{escape(segmentation)}</h2></section>")
    entries, exits = flows(samples, segment)
    figures = [("members", f'{int(profile.get("size", 0)):,}'),
               ("entries, 7 days", f'{int(profile.get("entries_7d", 0)):,}'),
               ("exits, 7 days", f'{int(profile.get("exits_7d", 0)):,}'),
               ("conversion", _share(profile.get("conversion"))),
               ("revenue, 30 days", _money(profile.get("revenue_30d"))),
               ("AOV", _money(profile.get("aov_30d"))),
               ("share of revenue", _share(profile.get("revenue_share_30d"))),
               ("volatility (sampled window)", _share(window_volatility(samples, segment))),
               ("quick exits per entry, 30 days", _share(profile.get("volatility_30d")))]
    kpis = "".join(f'<div class="kpi"><b>{escape(v)}</b><span>{escape(k)}</span></div>'
                   for k, v in figures)
    line = svg.Series(segment, sizes(samples, segment), svg.colour(0))
    body = (f'<section data-segmentation="{escape(segmentation)}" data-segment='
            f'"{escape(segment)}"><h2>{escape(segmentation)} / {escape(segment)}'
            f'{": " + escape(str(profile["name"])) if profile.get("name") else ""}</h2>'
            f'<p>{escape(str(profile.get("description", "")))}</p><div class="kpis">{kpis}</div>'
            f'<h3>Members over time</h3><div class="chart size-chart">'
            f'{svg.line_chart([line] if line.points else [])}</div>'
            f'<h3>Entries and exits between samples</h3><div class="chart flow-chart">'
            f"{svg.flow_chart(entries, exits)}</div></section>")
    return layout(f"{segmentation}/{segment}", body)


def user_page(user_id: str, memberships: dict[str, str], catalogue: Catalogue,
              features: dict[str, float] | None, changes: list[dict[str, Any]]) -> str:
    if not memberships and features is None:
        return layout(user_id, f'<section id="user" data-found="false"><h2>{escape(user_id)}'
                      "</h2><p>Not found: in no segment and no stored record.</p></section>",
                      user_id)
    rows = "".join(
        f'<tr class="membership" data-segmentation="{escape(s)}" data-segment="{escape(seg)}">'
        f"<td>{escape(s)}</td><td><a href=\"/segment/{quote(s, safe='')}/{quote(seg, safe='')}"
        f'">{escape(seg)}</a></td><td class="desc">'
        f'{escape(str(catalogue.get(s, {}).get(seg, {}).get("description", "")))}</td></tr>'
        for s, seg in sorted(memberships.items()))
    body = (f'<section id="user" data-found="true"><h2>{escape(user_id)}</h2>'
            f"<h3>Segments</h3><table><tr><th>segmentation</th><th>segment</th>"
            f"<th>description</th></tr>{rows}</table></section>"
            f"<section>{_changes(changes)}</section><section>{_features(features)}</section>")
    return layout(user_id, body, user_id)


def _features(features: dict[str, Any] | None) -> str:
    if features is None:
        return "<h3>Features</h3><p class=muted>No stored record found.</p>"
    cells = "".join(f'<div class="feature"><span>{escape(name)}</span><b>{_value(value)}</b>'
                    f"</div>" for name, value in sorted(features.items()))
    return f'<h3>Features (now)</h3><div class="features">{cells}</div>'


def _changes(changes: list[dict[str, Any]]) -> str:
    if not changes:
        return "<h3>Recent changes</h3><p class=muted>None found.</p>"
    rows = "".join(
        f'<tr class="change"><td>{escape(str(c.get("ts", ""))[:19])}</td>'
        f'<td>{escape(str(c.get("segmentation")))}</td>'
        f'<td>{escape(str(c.get("previous") or "-"))} → {escape(str(c.get("current") or "-"))}'
        f'</td><td class="desc">{escape(str(c.get("cause", ""))[:40])}</td></tr>'
        for c in changes)
    return ("<h3>Recent changes (newest first)</h3><table><tr><th>event time</th>"
            f"<th>segmentation</th><th>change</th><th>cause</th></tr>{rows}</table>")


def _value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(str(value))
    if not math.isfinite(value):
        return "-"
    return f"{value:,}" if value == int(value) else f"{value:,.2f}"


def _share(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.0%}"


def _money(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:,.2f}"
