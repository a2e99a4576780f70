"""Render a :class:`~prosody_analyze.report.Report` as one self-contained HTML page, or as markdown.

Safety rules, each enforced in one place: table cells go through :func:`cell` (HTML-escaped),
plot labels through :func:`plot_text` (escaped, since plotly.js reads labels as HTML), and figure
JSON through plotly's encoder, which writes ``<``, ``>`` and ``/`` as ``\\u003c``-style escapes so
no string can close the ``<script>`` it sits in. A Content-Security-Policy forbids every network
fetch: the page runs only its own inline scripts (plotly.js included).
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.io.json import to_json_plotly
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from .report import Report, burst_window, parse_time

CSS_FILE = Path(__file__).parent / "report_templates" / "report.css"
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)
COLORS = {"connected": "#94a3b8", "joined": "#2563eb", "server": "#0f766e", "client": "#2563eb"}
STAGE_COLORS = {"connect": "#0ea5e9", "auth": "#8b5cf6", "bind": "#f59e0b", "join": "#10b981"}
ERROR_COLORS = {
    "http_error": "#dc2626",
    "traceback": "#7c2d12",
    "stanza_error": "#f97316",
    "conference_error": "#eab308",
    "conference_timeout": "#a855f7",
    "hibernation_timeout": "#64748b",
}
MAX_BATCH_LINES = 20  # beyond this, batch starts are only markers on the time axis
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def cell(value: Any) -> str:
    """A value as escaped HTML text: the only way log text reaches a table."""
    if value is None:
        return '<span class="muted">–</span>'
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, datetime):
        return html.escape(value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])
    if isinstance(value, list | dict):
        return html.escape(json.dumps(value, default=str, ensure_ascii=False))
    return html.escape(str(value))


def plot_text(value: Any, width: int = 90) -> str:
    """A label for plotly (legend, hover, annotation): plotly.js renders a subset of HTML, so escape ``<>&``
    (it decodes those entities back for display; quotes need no escaping outside attributes). Long labels
    are cut so a legend stays one line."""
    text = str(value)
    return html.escape(text if len(text) <= width else text[: width - 1] + "…", quote=False)


def duration(seconds: float | None, short: bool = False) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min" + ("" if short else f" {secs:02d} s")
    return f"{minutes} min {secs:02d} s"


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], numeric: set[str] = frozenset()) -> str:
    head = "".join(
        f'<th class="{"num" if key in numeric else ""}">{html.escape(label)}</th>' for key, label in columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if key in numeric else ""}">{cell(row.get(key))}</td>' for key, _ in columns
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _layout(fig: go.Figure, title: str, height: int = 380, **extra: Any) -> go.Figure:
    settings = {
        "title": {"text": plot_text(title), "x": 0.01, "font": {"size": 15}},
        "template": "plotly_white",
        "height": height,
        "margin": {"l": 60, "r": 30, "t": 50, "b": 45},
        "legend": {"orientation": "h", "y": -0.18},
        "hovermode": "x unified",
        "font": {"family": "system-ui, sans-serif"},
    }
    fig.update_layout(**{**settings, **extra})
    return fig


def _load_traces(report: Report, fig: go.Figure, **where: Any) -> None:
    for origin, curve in report.participants.items():
        fig.add_trace(
            go.Scatter(
                x=curve["ts"].to_list(),
                y=curve["joined"].to_list(),
                name=f"joined ({origin})",
                mode="lines",
                line={"color": COLORS[origin], "width": 2, "shape": "hv"},
                fill="tozeroy" if origin == "client" else None,
                fillcolor="rgba(37,99,235,0.08)",
            ),
            **where,
        )
        fig.add_trace(
            go.Scatter(
                x=curve["ts"].to_list(),
                y=curve["connected"].to_list(),
                name=f"connected ({origin})",
                mode="lines",
                line={"color": COLORS[origin], "width": 1.5, "dash": "dot", "shape": "hv"},
            ),
            **where,
        )


def participants_figure(report: Report) -> go.Figure | None:
    if not report.participants:
        return None
    fig = go.Figure()
    _load_traces(report, fig)
    for batch in report.batches if len(report.batches) <= MAX_BATCH_LINES else []:
        fig.add_vline(x=batch["start"], line={"color": "#cbd5e1", "width": 1, "dash": "dash"})
    if report.batches:
        fig.add_trace(
            go.Scatter(
                x=[b["start"] for b in report.batches],
                y=[0] * len(report.batches),
                mode="markers",
                marker={"symbol": "triangle-up", "size": 9, "color": "#475569"},
                name="ramp batch start",
                text=[f"batch {b['batch']}: {b['participants']} participant(s)" for b in report.batches],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    return _layout(fig, "Participants over time (UTC)", yaxis_title="participants")


def latency_distribution_figure(report: Report) -> go.Figure | None:
    if not report.latency_histograms:
        return None
    fig = go.Figure()
    for stage, (edges, counts) in report.latency_histograms.items():
        centres = [(a * b) ** 0.5 * 1000 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        fig.add_trace(
            go.Scatter(
                x=centres,
                y=counts,
                name=stage,
                mode="lines",
                line={"shape": "hvh", "color": STAGE_COLORS[stage]},
            )
        )
    return _layout(
        fig,
        "Join latency by stage: distribution",
        xaxis={"type": "log", "title": "latency (ms)"},
        yaxis_title="sessions",
        hovermode="closest",
    )


def latency_time_figure(report: Report) -> go.Figure | None:
    frame = report.latency_over_time
    if frame is None:
        return None
    stages = [s for s in STAGE_COLORS if f"{s}_s_p50" in frame.columns]
    columns = 2 if len(stages) > 1 else 1
    rows = (len(stages) + 1) // columns
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=stages, vertical_spacing=0.14)
    ts = frame["first_ts"].to_list()
    mode = "lines" if frame.height > 30 else "markers"  # a few bins (batches): no lines across the gaps
    for number, stage in enumerate(stages):
        for quantile, dash in (("p50", "solid"), ("p95", "dash"), ("p99", "dot")):
            fig.add_trace(
                go.Scatter(
                    x=ts,
                    y=(frame[f"{stage}_s_{quantile}"] * 1000).to_list(),
                    name=f"{stage} {quantile}",
                    line={"color": STAGE_COLORS[stage], "dash": dash},
                    mode=mode,
                    marker={"size": 4},
                    legendgroup=quantile,
                    showlegend=number == 0,
                ),
                row=number // columns + 1,
                col=number % columns + 1,
            )
    fig.update_yaxes(type="log", title_text="ms")
    fig.for_each_trace(lambda t: t.update(name=t.name.split(" ")[1]) if t.showlegend else None)
    title = "Join latency p50 / p95 / p99 over time (by session start, UTC)"
    return _layout(fig, title, height=260 * rows + 120, legend={"orientation": "h", "y": -0.12})


def metric_figures(report: Report) -> list[tuple[str, go.Figure]]:
    figures = []
    for group in ("RAM", "CPU", "bandwidth"):
        series = [s for s in report.metrics if s.group == group]
        if not series:
            continue
        unit = series[0].unit
        fig = make_subplots(
            rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.06
        )
        for s in series:
            fig.add_trace(go.Scatter(x=s.ts, y=s.values, name=plot_text(s.name), mode="lines"), row=1, col=1)
        _load_traces(report, fig, row=2, col=1)
        fig.update_yaxes(title_text=unit, row=1, col=1)
        fig.update_yaxes(title_text="participants", row=2, col=1)
        figures.append((group, _layout(fig, f"{group} ({unit}) under the load (UTC)", height=460)))
    return figures


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def scatter_figure(report: Report) -> go.Figure | None:
    """Raw samples, the fit's plateau points and outliers, its line and band, breakpoint and capacity."""
    scatter, fit = report.scatter, report.fit or {}
    if scatter is None and not fit:
        return None
    fig = go.Figure()
    if scatter:
        fig.add_trace(
            go.Scatter(
                x=scatter["participants"],
                y=scatter["values"],
                mode="markers",
                name=plot_text(f"samples: {scatter['metric']}"),
                marker={"size": 4, "color": "rgba(37,99,235,0.30)"},
            )
        )
    band = fit.get("band") or {}
    if all(isinstance(band.get(k), list) for k in ("participants", "low", "high")):
        fig.add_trace(
            go.Scatter(
                x=band["participants"] + band["participants"][::-1],
                y=band["high"] + band["low"][::-1],
                fill="toself",
                mode="lines",
                fillcolor="rgba(220,38,38,0.12)",
                line={"width": 0},
                name="95 % confidence band",
                hoverinfo="skip",
            )
        )
    line = fit.get("line") or {}
    if isinstance(line.get("participants"), list):
        fig.add_trace(
            go.Scatter(
                x=line["participants"],
                y=line["values"],
                mode="lines",
                name="fitted line (OLS)",
                line={"color": "#dc2626", "width": 2},
            )
        )
    slope, intercept = _number(fit.get("slope")), _number(fit.get("intercept"))
    capacity = fit.get("capacity") or {}
    reach = _number(capacity.get("participants"))
    if slope is not None and intercept is not None and reach is not None and line.get("participants"):
        start = max(line["participants"])
        fig.add_trace(
            go.Scatter(
                x=[start, reach],
                y=[intercept + slope * start, intercept + slope * reach],
                mode="lines",
                name="extrapolated",
                line={"color": "#dc2626", "width": 1.5, "dash": "dash"},
            )
        )
    robust = fit.get("robust") or {}
    if _number(robust.get("slope")) is not None and line.get("participants"):
        xs = [min(line["participants"]), max(line["participants"])]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[robust["intercept"] + robust["slope"] * x for x in xs],
                mode="lines",
                name="Theil–Sen (robust)",
                line={"color": "#475569", "width": 1, "dash": "dot"},
            )
        )
    points = fit.get("points") or []
    if points:
        fig.add_trace(
            go.Scatter(
                x=[p["participants"] for p in points],
                y=[p["value"] for p in points],
                mode="markers",
                name="plateaus (fitted points)",
                marker={"size": 9, "color": "#1d4ed8", "line": {"width": 1, "color": "#fff"}},
            )
        )
    outliers = fit.get("outliers") or []
    if outliers:
        fig.add_trace(
            go.Scatter(
                x=[o["participants"] for o in outliers],
                y=[o["value"] for o in outliers],
                mode="markers",
                name="outliers",
                marker={"size": 12, "symbol": "x", "color": "#dc2626"},
            )
        )
    breakpoint = fit.get("breakpoint") or {}
    if _number(breakpoint.get("participants")) is not None:
        fig.add_vline(
            x=breakpoint["participants"],
            line={"color": "#f59e0b", "dash": "dash"},
            annotation_text=f"breakpoint ≈ {breakpoint['participants']:,.0f}",
        )
    limit = _number(capacity.get("limit"))
    if limit is not None:
        fig.add_hline(
            y=limit,
            line={"color": "#7c2d12", "dash": "dot"},
            annotation_position="bottom left",
            annotation_text=f"limit {limit:,.0f} {plot_text(fit.get('unit', ''))}",
        )
    low, high = _number(capacity.get("low")), _number(capacity.get("high"))
    if low is not None and high is not None:
        fig.add_vrect(x0=low, x1=high, fillcolor="rgba(124,45,18,0.08)", line_width=0)
    if reach is not None:
        fig.add_vline(
            x=reach,
            line={"color": "#7c2d12", "dash": "dot"},
            annotation_text=f"capacity ≈ {reach:,.0f} participants",
            annotation_position="bottom right",
        )
    unit = fit.get("unit") or (scatter or {}).get("unit") or ""
    return _layout(
        fig,
        "Memory vs participants joined",
        xaxis_title="participants joined",
        yaxis_title=plot_text(unit),
        hovermode="closest",
    )


def error_figure(report: Report) -> go.Figure | None:
    timeline = report.error_timeline
    if timeline is None and not report.bursts:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    load = report.participants.get(report.summary["load_origin"] or "")
    if load is not None:  # the load behind the errors, faint, on its own axis
        fig.add_trace(
            go.Scatter(
                x=load["ts"].to_list(),
                y=load["joined"].to_list(),
                name="participants joined",
                mode="lines",
                line={"color": "#94a3b8", "width": 1.5, "shape": "hv"},
            ),
            secondary_y=True,
        )
    if timeline is not None:
        for kind in sorted(set(timeline["kind"].to_list())):
            rows = timeline.filter(timeline["kind"] == kind)
            fig.add_trace(
                go.Bar(
                    x=rows["ts"].to_list(),
                    y=rows["events"].to_list(),
                    name=kind,
                    width=report.error_bin_seconds * 1000,
                    marker_color=ERROR_COLORS.get(kind, "#334155"),
                ),
                secondary_y=False,
            )
    for number, burst in enumerate(report.bursts or [], start=1):
        start, end = burst_window(burst)
        if start and end:
            fig.add_vrect(
                x0=start,
                x1=end,
                fillcolor="rgba(220,38,38,0.12)",
                line_width=0,
                annotation_text=f"burst {number}",
                annotation_position="top left",
            )
    fig.update_yaxes(title_text="error events per bin", secondary_y=False)
    fig.update_yaxes(
        title_text="participants", secondary_y=True, showgrid=False, rangemode="tozero", tickformat=",.0f"
    )
    return _layout(fig, "Errors over time, bursts shaded (UTC)", barmode="stack", bargap=0)


def sections(report: Report) -> list[str]:
    present = ["summary", "files", "failed sessions"]
    present += ["participants"] if report.participants else []
    present += ["latency"] if report.latency_table else []
    present += ["metrics"] if report.metrics else []
    present += ["fit"] if report.fit else []
    present += ["errors"] if report.error_timeline is not None or report.error_counts else []
    present += ["bursts"]
    return present


# --- HTML -----------------------------------------------------------------------------------------


class _Figures:
    """Collects figures as escaped JSON blocks and the divs that show them."""

    def __init__(self) -> None:
        self.blocks: list[str] = []

    def div(self, fig: go.Figure | None) -> str:
        if fig is None:
            return ""
        number = len(self.blocks)
        payload = to_json_plotly({"data": fig.data, "layout": fig.layout})
        self.blocks.append(f'<script type="application/json" id="figure-data-{number}">{payload}</script>')
        return f'<div class="plot" id="figure-{number}" data-figure="{number}"></div>'


def _note(report: Report, *keys: str) -> str:
    texts = [report.notes[k] for k in keys if k in report.notes]
    return "".join(f'<p class="note">{html.escape(t)}</p>' for t in texts)


def _tiles(report: Report) -> str:
    summary = report.summary
    peak = summary["peak"].get(summary["load_origin"] or "", {})
    tiles = [
        ("duration", duration(summary["duration_s"], short=True)),
        ("peak joined", f"{peak.get('joined', 0):,}" if peak else "–"),
        ("peak connected", f"{peak.get('connected', 0):,}" if peak else "–"),
        ("sessions", f"{summary['sessions']:,}"),
        ("failed sessions", f"{summary['failed_sessions']:,}"),
        ("HTTP 500", f"{summary['http_500']:,}"),
        ("events", f"{summary['events']:,}"),
    ]
    return (
        '<div class="tiles">'
        + "".join(
            f'<div class="tile"><div class="tile-value">{html.escape(v)}</div>'
            f'<div class="tile-label">{html.escape(k)}</div></div>'
            for k, v in tiles
        )
        + "</div>"
    )


def _summary_html(report: Report) -> str:
    s = report.summary
    peaks = (
        "; ".join(
            f"{origin}: {p['joined']:,} joined, {p['connected']:,} connected"
            for origin, p in s["peak"].items()
        )
        or None
    )
    rows = [
        ("What was tested", s["what"]),
        ("When (UTC)", f"{s['start']} → {s['end']}" if s["start"] else "no timestamps in the logs"),
        ("How long", duration(s["duration_s"])),
        ("Peak participants", peaks),
        ("Load curve from", s["load_origin"]),
        (
            "Events",
            f"{s['events']:,} ({s['unrecognised_events']:,} of kind unknown (routine debug lines), "
            f"{s['unparsed_lines']:,} unparsed lines)",
        ),
        ("Tool version", ", ".join(s["tool_versions"]) or "not recorded (logs only)"),
        (
            "Report",
            f"{s['report_version']}, generated {report.generated}"
            + (", names pseudonymised (--redact)" if report.redacted else ""),
        ),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{cell(v)}</td></tr>" for k, v in rows)
    outcomes = table(
        report.outcomes, [("origin", "origin"), ("outcome", "outcome"), ("len", "sessions")], {"len"}
    )
    return f'<table class="facts">{body}</table><h3>Outcomes</h3>{outcomes}'


def _files_html(report: Report) -> str:
    rows = [
        {
            **f,
            "size": f.get("size_bytes"),
            "span": f"{f.get('first_ts') or ''} → {f.get('last_ts') or ''}" if f.get("first_ts") else None,
            "notes": "; ".join(f.get("notes") or []) or None,
        }
        for f in report.files
    ]
    files = table(
        rows,
        [
            ("path", "file"),
            ("format", "format"),
            ("size", "bytes"),
            ("lines", "lines"),
            ("events", "events"),
            ("unparsed", "unparsed"),
            ("span", "time span (UTC)"),
            ("sha256", "SHA-256"),
            ("notes", "notes"),
        ],
        {"size", "lines", "events", "unparsed"},
    )
    manifests = "".join(
        f"<details><summary>capture manifest: {cell(c.get('path'))}</summary>"
        f"<pre>{html.escape(json.dumps(c, indent=2, default=str, ensure_ascii=False))}</pre></details>"
        for c in report.captures
    )
    return files + manifests


def _latency_html(report: Report, figures: _Figures) -> str:
    if not report.latency_table:
        return _note(report, "latency")
    numeric = {"count", "p50_ms", "p95_ms", "p99_ms", "max_ms"}
    origin = report.summary["load_origin"]
    seen_by = f'<p class="lead">as the {html.escape(origin)} sessions saw it</p>' if origin else ""
    columns = [
        ("stage", "stage"),
        ("count", "sessions"),
        ("p50_ms", "p50 (ms)"),
        ("p95_ms", "p95 (ms)"),
        ("p99_ms", "p99 (ms)"),
        ("max_ms", "max (ms)"),
    ]
    return (
        seen_by
        + table(report.latency_table, columns, numeric)
        + figures.div(latency_distribution_figure(report))
        + figures.div(latency_time_figure(report))
    )


def _metrics_html(report: Report, figures: _Figures) -> str:
    if not report.metrics:
        return _note(report, "metrics")
    rows = [
        {"name": s.name, "group": s.group, "unit": s.unit, "peak": s.peak, "mean": s.mean}
        for s in report.metrics
    ]
    summary = table(
        rows,
        [("name", "metric"), ("group", "kind"), ("unit", "unit"), ("peak", "peak"), ("mean", "mean")],
        {"peak", "mean"},
    )
    return summary + "".join(figures.div(fig) for _, fig in metric_figures(report))


def _fit_facts(fit: dict[str, Any], source: str) -> list[tuple[str, str]]:
    """The model in sentences a reviewer can quote, from fit.json's fields."""
    unit = fit.get("unit") or ""
    rows = [("model", f"{fit.get('metric', '?')} = slope × participants + intercept"), ("from", source)]
    slope, ci = _number(fit.get("slope")), fit.get("slope_ci95") or [None, None]
    if slope is not None:
        interval = f" (95 % CI {ci[0]:.4g} – {ci[1]:.4g})" if None not in ci else ""
        rows.append(("slope", f"{slope:.4g} {unit} per participant{interval}"))
    intercept, ci = _number(fit.get("intercept")), fit.get("intercept_ci95") or [None, None]
    if intercept is not None:
        interval = f" (95 % CI {ci[0]:.4g} – {ci[1]:.4g})" if None not in ci else ""
        rows.append(("intercept", f"{intercept:.4g} {unit}{interval}"))
    if _number(fit.get("r2")) is not None:
        rows.append(("R²", f"{fit['r2']:.4f} over {fit.get('n', '?')} plateau point(s)"))
    robust = fit.get("robust") or {}
    if _number(robust.get("slope")) is not None:
        rows.append(("robust slope", f"{robust['slope']:.4g} {unit} per participant (Theil–Sen)"))
    rows.append(("outliers", f"{len(fit.get('outliers') or [])}"))
    breakpoint = fit.get("breakpoint")
    if isinstance(breakpoint, dict) and _number(breakpoint.get("participants")) is not None:
        slopes = breakpoint.get("slopes") or []
        change = (
            f"; slope {slopes[0]:.4g} → {slopes[1]:.4g} {unit} per participant" if len(slopes) == 2 else ""
        )
        rows.append(
            (
                "breakpoint",
                f"at {breakpoint['participants']:,.0f} participants "
                f"({breakpoint.get('kind', '?')}){change}: do not extrapolate past it",
            )
        )
    else:
        rows.append(("breakpoint", "none: a straight line explains the points best (BIC)"))
    capacity = fit.get("capacity")
    if isinstance(capacity, dict) and _number(capacity.get("participants")) is not None:
        low, high = _number(capacity.get("low")), _number(capacity.get("high"))
        interval = (
            f" (95 % prediction {low:,.0f} – {high:,.0f})" if low is not None and high is not None else ""
        )
        rows.append(
            (
                "capacity",
                f"{capacity['participants']:,.0f} participants at the limit "
                f"{capacity.get('limit', 0):,.0f} {unit}{interval}",
            )
        )
    else:
        rows.append(("capacity", "no limit given (--limit 15000Mi)"))
    return rows


def _fit_html(report: Report, figures: _Figures) -> str:
    notes = _note(report, "fit", "scatter")
    if not report.fit:
        return notes + figures.div(scatter_figure(report))
    facts = "".join(
        f"<tr><th>{cell(k)}</th><td>{cell(v)}</td></tr>" for k, v in _fit_facts(report.fit, report.fit_source)
    )
    return notes + f'<table class="facts">{facts}</table>' + figures.div(scatter_figure(report))


def _signatures(found: list[Any]) -> str:
    items = [
        f"<li><b>{cell(sig.get('name'))}</b> {cell(sig.get('explanation'))}</li>"
        for sig in found
        if isinstance(sig, dict)
    ]
    return f"<ul>{''.join(items)}</ul>" if items else cell(None)


def _examples(lines: list[Any], label: str = "examples") -> str:
    if not lines:
        return cell(None)
    text = "\n".join(str(line) for line in lines)
    return f"<details><summary>{html.escape(label)} ({len(lines)})</summary><pre>{cell(text)}</pre></details>"


def _counts(counts: Any) -> str:
    """``{"http_error": 12, ...}`` as ``http_error 12, ...``."""
    if not isinstance(counts, dict) or not counts:
        return cell(None)
    return cell(", ".join(f"{key} {value:,}" for key, value in counts.items()))


def _window(burst: dict[str, Any]) -> tuple[str, str]:
    """When (UTC) and how long, or where in an untimed file (by event order)."""
    start, end = burst_window(burst)
    if start and end:
        return f"{cell(start)} → {cell(end)}", cell(duration((end - start).total_seconds()))
    return cell(f"{burst.get('file')}: events {burst.get('start_seq')}–{burst.get('end_seq')} (no times)"), ""


def _burst_row(number: int, burst: dict[str, Any]) -> str:
    window, length = _window(burst)
    expected, p_value = burst.get("expected"), burst.get("p_value")
    errors = f"{burst.get('count', 0):,}"
    if isinstance(expected, int | float):
        errors += f" (expected {expected:.3g}"
        errors += f", p = {p_value:.2g})" if isinstance(p_value, int | float) else ")"
    where = [
        ("batches", ", ".join(map(str, burst.get("batches") or [])) or None),
        ("rooms", ", ".join(map(str, burst.get("rooms") or [])) or None),
        ("files", ", ".join(map(str, burst.get("files") or [])) or None),
    ]
    context = "".join(f"<div><b>{k}</b> {cell(v)}</div>" for k, v in where if v)
    return (
        f"<tr><td class='num'>{number}</td><td>{window}</td><td>{length}</td><td>{cell(errors)}</td>"
        f"<td>{_counts(burst.get('kinds'))}<br>{_counts(burst.get('http_statuses'))}</td>"
        f"<td class='num'>{cell(burst.get('participants_connected_at_start'))}</td>"
        f"<td>{context}<div><b>server</b> {_counts(burst.get('server_events'))}</div></td>"
        f"<td>{_signatures(burst.get('signatures') or [])}</td>"
        f"<td>{_examples(burst.get('examples') or [])}</td></tr>"
    )


def _bursts_html(report: Report, figures: _Figures) -> str:
    counts = table(
        report.error_counts,
        [
            ("kind", "error kind"),
            ("http_status", "HTTP"),
            ("events", "events"),
            ("first", "first (UTC)"),
            ("last", "last (UTC)"),
        ],
        {"events"},
    )
    parts = [
        figures.div(error_figure(report)),
        "<h3>Error events by kind</h3>",
        counts,
        f"<h3>Bursts</h3><p class='lead'>{cell(report.burst_method)} — from {cell(report.bursts_source)}</p>",
    ]
    if report.bursts:
        head = "".join(
            f"<th>{label}</th>"
            for label in (
                "#",
                "window (UTC)",
                "duration",
                "errors",
                "kinds",
                "connected at start",
                "where",
                "known signatures",
                "examples",
            )
        )
        rows = "".join(_burst_row(number, burst) for number, burst in enumerate(report.bursts, start=1))
        parts.append(
            f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    else:
        parts.append('<p class="note">no error burst: no error rate stood out from the run\'s baseline</p>')
    parts.append("<h3>Known signatures in the whole run</h3>")
    if report.burst_signatures:
        rows = "".join(
            f"<tr><td><b>{cell(sig.get('name'))}</b></td><td class='num'>{cell(sig.get('count'))}</td>"
            f"<td>{cell(parse_time(sig.get('first_ts')))}</td><td>{cell(sig.get('explanation'))}</td>"
            f"<td>{_examples(sig.get('examples') or [])}</td></tr>"
            for sig in report.burst_signatures
        )
        parts.append(
            "<div class='table-wrap'><table><thead><tr><th>signature</th><th class='num'>events</th>"
            "<th>first (UTC)</th><th>explanation</th><th>examples</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    else:
        parts.append('<p class="note">no known failure signature in the logs</p>')
    return "".join(parts)


def _failed_html(report: Report) -> str:
    if not report.failed:
        return '<p class="note">no failed session</p>'
    columns = [
        ("first_ts", "first seen (UTC)"),
        ("origin", "origin"),
        ("participant", "participant"),
        ("session", "session"),
        ("failed_stage", "failed stage"),
        ("error", "error"),
        ("http_status", "HTTP"),
        ("jid", "JID"),
        ("room", "room"),
        ("file", "file"),
    ]
    more = (
        f'<p class="note">first {len(report.failed):,} of {report.failed_total:,} failed sessions</p>'
        if report.failed_total > len(report.failed)
        else ""
    )
    return more + table(report.failed, columns, {"http_status"})


def render_html(report: Report) -> str:
    figures = _Figures()
    body = [
        ("summary", "Run summary", _tiles(report) + _summary_html(report)),
        ("files", "Input files", _note(report, "summary") + _files_html(report)),
        (
            "participants",
            "Participants over time",
            _note(report, "participants", "batches") + figures.div(participants_figure(report)),
        ),
        ("latency", "Join latency by stage", _latency_html(report, figures)),
        ("metrics", "Resources under the load", _metrics_html(report, figures)),
        ("fit", "Memory vs participants", _fit_html(report, figures)),
        ("errors", "Errors and bursts", _bursts_html(report, figures)),
        ("failed", "Failed sessions", _failed_html(report)),
    ]
    nav = "".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in body)
    sections_html = "".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2>{content}</section>'
        for key, title, content in body
    )
    css = CSS_FILE.read_text(encoding="utf-8")
    redacted = '<span class="badge">redacted</span>' if report.redacted else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(report.title)}</title>
<style>{css}</style>
</head><body>
<header><h1>{html.escape(report.title)} {redacted}</h1>
<p class="sub">{cell(report.summary["what"])} · {cell(report.summary["start"] or "no timestamps")}
 · analysis {cell(report.analysis_dir)}</p><nav>{nav}</nav></header>
<main>{sections_html}</main>
<footer>{cell(report.summary["report_version"])} · generated {cell(report.generated)} · times in UTC</footer>
<script>{get_plotlyjs()}</script>
{"".join(figures.blocks)}
<script>
(function () {{
  var plots = document.querySelectorAll("div.plot");
  var pending = [];
  plots.forEach(function (div) {{
    var figure = JSON.parse(document.getElementById("figure-data-" + div.dataset.figure).textContent);
    pending.push(Plotly.newPlot(div, figure.data, figure.layout, {json.dumps(PLOT_CONFIG)}));
  }});
  Promise.all(pending).then(function () {{ document.body.dataset.plotsRendered = String(plots.length); }});
}})();
</script>
</body></html>
"""


# --- markdown -------------------------------------------------------------------------------------


def md(value: Any) -> str:
    """A markdown table cell: escaped like HTML (tickets render it) and without pipes or newlines."""
    if value is None:
        return "–"
    return (
        cell(value)
        .replace("|", "\\|")
        .replace("\n", " ")
        .replace("`", "\\`")
        .replace("*", "\\*")
        .replace("_", "\\_")
    )


def md_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(label for _, label in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(md(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _md_window(burst: dict[str, Any]) -> str:
    start, end = burst_window(burst)
    if start and end:
        return f"{start:%Y-%m-%d %H:%M:%S} → {end:%H:%M:%S}"
    return f"{burst.get('file')}: events {burst.get('start_seq')}–{burst.get('end_seq')} (no times)"


def render_markdown(report: Report) -> str:
    s = report.summary
    peaks = "; ".join(
        f"{o}: {p['joined']:,} joined, {p['connected']:,} connected" for o, p in s["peak"].items()
    )
    out = [
        f"## {md(report.title)}",
        "",
        f"- **What was tested:** {md(s['what'])}",
        f"- **When (UTC):** {md(s['start'])} → {md(s['end'])} ({duration(s['duration_s'])})",
        f"- **Peak participants:** {md(peaks or None)}",
        f"- **Sessions:** {s['sessions']:,}, failed {s['failed_sessions']:,}; HTTP 500: {s['http_500']:,}",
        f"- **Events:** {s['events']:,} ({s['unparsed_lines']:,} unparsed lines)",
        f"- **Tool version:** {md(', '.join(s['tool_versions']) or 'not recorded')}; "
        f"{md(s['report_version'])}" + (" (names pseudonymised)" if report.redacted else ""),
        "",
        "### Outcomes",
        md_table(report.outcomes, [("origin", "origin"), ("outcome", "outcome"), ("len", "sessions")]),
        "### Input files",
        md_table(
            report.files,
            [
                ("path", "file"),
                ("format", "format"),
                ("size_bytes", "bytes"),
                ("events", "events"),
                ("unparsed", "unparsed"),
                ("sha256", "SHA-256"),
            ],
        ),
        "### Join latency by stage",
        md_table(
            report.latency_table,
            [
                ("stage", "stage"),
                ("count", "sessions"),
                ("p50_ms", "p50 ms"),
                ("p95_ms", "p95 ms"),
                ("p99_ms", "p99 ms"),
                ("max_ms", "max ms"),
            ],
        ),
    ]
    if report.metrics:
        out += [
            "### Resources",
            md_table(
                [{"name": m.name, "unit": m.unit, "peak": m.peak, "mean": m.mean} for m in report.metrics],
                [("name", "metric"), ("unit", "unit"), ("peak", "peak"), ("mean", "mean")],
            ),
        ]
    if report.fit:
        out += [
            "### Memory vs participants",
            md_table(
                [{"key": k, "value": v} for k, v in _fit_facts(report.fit, report.fit_source)],
                [("key", "what"), ("value", "value")],
            ),
        ]
    out += [
        "### Errors by kind",
        md_table(
            report.error_counts,
            [
                ("kind", "kind"),
                ("http_status", "HTTP"),
                ("events", "events"),
                ("first", "first (UTC)"),
                ("last", "last (UTC)"),
            ],
        ),
    ]
    if report.bursts:
        rows = [
            {
                "n": number,
                "window": _md_window(burst),
                "count": burst.get("count"),
                "kinds": ", ".join(f"{k} {v}" for k, v in (burst.get("kinds") or {}).items()),
                "signatures": ", ".join(str(g.get("name")) for g in burst.get("signatures") or []) or None,
            }
            for number, burst in enumerate(report.bursts, start=1)
        ]
        out += [
            "### Error bursts",
            md_table(
                rows,
                [
                    ("n", "#"),
                    ("window", "window (UTC)"),
                    ("count", "errors"),
                    ("kinds", "kinds"),
                    ("signatures", "known signatures"),
                ],
            ),
        ]
    if report.burst_signatures:
        out += [
            "### Known signatures",
            md_table(
                report.burst_signatures,
                [("name", "signature"), ("count", "events"), ("explanation", "explanation")],
            ),
        ]
    out += [
        "### Error bursts",
        md_table(
            rows,
            [
                ("n", "#"),
                ("start", "start (UTC)"),
                ("end", "end (UTC)"),
                ("signatures", "known signatures"),
            ],
        ),
    ]
    out += [
        f"### Failed sessions (first {len(report.failed):,} of {report.failed_total:,})",
        md_table(
            report.failed,
            [
                ("first_ts", "first seen (UTC)"),
                ("origin", "origin"),
                ("participant", "participant"),
                ("session", "session"),
                ("failed_stage", "stage"),
                ("error", "error"),
                ("http_status", "HTTP"),
            ],
        ),
    ]
    notes = [f"- {md(text)}" for text in report.notes.values()]
    if notes:
        out += ["### Not in this report", *notes, ""]
    return "\n".join(out)
