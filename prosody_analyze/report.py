"""The report: one self-contained HTML file (or a markdown summary) from an analysis directory.

Every number is computed on the full tables (lazily, so 10 million events fit); only the
plotted curves are binned to a few thousand points. Sections whose inputs are missing are left
out with a note saying which command adds them. Log text reaches the page only through
:mod:`prosody_analyze.report_render`, which escapes it; ``redact`` pseudonymises it first.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import __version__
from .errors import UserError
from .load import LOAD_SCHEMA, load_at, load_over_time, load_sessions
from .redact import Redactor
from .schema import (
    EVENT_KINDS,
    EVENT_SCHEMA,
    EVENTS_FILE,
    METRIC_SCHEMA,
    METRICS_FILE,
    SESSION_SCHEMA,
    SESSIONS_FILE,
    scan_events,
)

SUMMARY_FILE = "ingest.json"
BURSTS_FILE = "bursts.json"
FIT_FILE = "fit.json"
CORRELATED_FILE = "correlated.parquet"
# The columns of correlated.parquet the report reads (see prosody_analyze.correlate).
CORRELATED_COLUMNS = {"ts": None, "metric": None, "labels": None, "value": None, "joined": None}

# Plotted series are binned to at most this many points (the numbers never are).
MAX_PLOT_POINTS = 1500
ERROR_BINS = 300  # bars, so fewer and wider than the curves' points
LATENCY_STAGES = {"connect": "connect_s", "auth": "auth_s", "bind": "bind_s", "join": "join_s"}
QUANTILES = (0.5, 0.95, 0.99)
ERROR_KINDS = [
    "http_error",
    "traceback",
    "stanza_error",
    "conference_error",
    "conference_timeout",
    "hibernation_timeout",
]
FAILED_COLUMNS = [
    "origin",
    "participant",
    "session",
    "file",
    "first_ts",
    "failed_stage",
    "error",
    "http_status",
    "jid",
    "room",
]
QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T|m)?\s*$")
QUANTITY_FACTORS = {
    None: 1.0,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "m": 1e-3,
}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity (``15000Mi``, ``2Gi``, ``1500m`` cores, ``2``) in base units."""
    match = QUANTITY.match(text)
    if not match:
        raise UserError(f"--limit {text!r} is not a quantity like 15000Mi, 2Gi, 1500m or 2")
    return float(match[1]) * QUANTITY_FACTORS[match[2]]


@dataclass
class MetricSeries:
    """One metric as plotted: a display name, its group (memory/cpu/bandwidth), unit and binned points."""

    name: str  # shown (redacted) name: metric{labels}
    metric: str
    labels: str
    group: str
    unit: str
    ts: list[datetime]
    values: list[float]
    peak: float
    mean: float


@dataclass
class Report:
    """Everything the renderers need, already computed and redacted; ``notes`` say what is missing and why."""

    title: str
    generated: str
    analysis_dir: str
    redacted: bool
    summary: dict[str, Any]
    files: list[dict[str, Any]]
    captures: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    participants: dict[str, pl.DataFrame]  # origin -> binned ts, connected, joined
    batches: list[dict[str, Any]]
    latency_table: list[dict[str, Any]]
    latency_histograms: dict[str, tuple[list[float], list[int]]]  # stage -> bin edges (s), counts
    latency_over_time: pl.DataFrame | None
    metrics: list[MetricSeries]
    scatter: dict[str, Any] | None  # metric vs participants, with the fit where there is one
    fit: dict[str, Any] | None  # fit.json's shape (see prosody_analyze.fit)
    fit_source: str
    error_timeline: pl.DataFrame | None
    error_bin_seconds: float
    error_counts: list[dict[str, Any]]
    bursts: list[dict[str, Any]]  # bursts.json's "bursts" (see prosody_analyze.bursts)
    burst_signatures: list[dict[str, Any]]  # known signatures found in the whole run, with explanations
    burst_method: str
    bursts_source: str
    failed: list[dict[str, Any]]
    failed_total: int
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class ReportResult:
    path: str
    format: str
    size_bytes: int
    seconds: float
    sections: list[str]
    notes: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bin_width(first: datetime | None, last: datetime | None, points: int = MAX_PLOT_POINTS) -> str:
    """A polars duration that cuts [first, last] into at most ``points`` bins (at least 1 ms)."""
    if first is None or last is None:
        return "1000000us"
    span_us = max(int((last - first) / timedelta(microseconds=1)), 1)
    # group_by_dynamic starts at a truncated boundary, which can add one bin: aim for points - 1.
    return f"{max(span_us // (points - 1) + 1, 1000)}us"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not readable JSON: {error}") from None


def _check_dir(analysis_dir: Path) -> None:
    if not analysis_dir.is_dir():
        raise UserError(
            f"{analysis_dir} is not a directory (run `prosody-analyze ingest ... -o {analysis_dir}`)"
        )
    missing = [name for name in (EVENTS_FILE, SESSIONS_FILE) if not (analysis_dir / name).is_file()]
    if missing:
        raise UserError(
            f"{analysis_dir} has no {' or '.join(missing)}; "
            f"run `prosody-analyze ingest LOGS -o {analysis_dir}` first"
        )


def _checked_table(path: Path, schema: dict[str, Any]) -> Path:
    """``path`` if it is a Parquet table with the schema's columns; else one clear error."""
    try:
        present = pl.read_parquet_schema(path)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise UserError(f"{path} is not a readable Parquet table: {error}") from None
    missing = [name for name in schema if name not in present]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; re-run `prosody-analyze ingest`")
    return path


# --- participants ---------------------------------------------------------------------------------


def _bin_curve(curve: pl.DataFrame, every: str) -> pl.DataFrame:
    """The curve's peak in each bin, so downsampling never hides a maximum."""
    return curve.group_by_dynamic("ts", every=every).agg(pl.col("connected").max(), pl.col("joined").max())


# --- latency --------------------------------------------------------------------------------------


def latency_table(sessions: pl.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for stage, column in LATENCY_STAGES.items():
        values = sessions.get_column(column).drop_nulls()
        if values.len() == 0:
            continue
        rows.append(
            {
                "stage": stage,
                "count": values.len(),
                **{f"p{round(q * 100)}_ms": values.quantile(q, "linear") * 1000 for q in QUANTILES},
                "max_ms": values.max() * 1000,
            }
        )
    return rows


def _latency_histograms(sessions: pl.DataFrame) -> dict[str, tuple[list[float], list[int]]]:
    """Log-spaced histogram per stage (latencies span 1 ms to minutes)."""
    histograms = {}
    for stage, column in LATENCY_STAGES.items():
        values = sessions.get_column(column).drop_nulls().to_numpy()
        values = np.maximum(values, 1e-4)
        if values.size == 0:
            continue
        low, high = np.log10(values.min()), np.log10(values.max())
        edges = np.logspace(low, high if high > low else low + 1, 41)
        counts, edges = np.histogram(values, bins=edges)
        histograms[stage] = (edges.tolist(), counts.tolist())
    return histograms


def _latency_over_time(sessions: pl.DataFrame) -> pl.DataFrame | None:
    timed = sessions.filter(pl.col("first_ts").is_not_null()).sort("first_ts")
    present = [c for c in LATENCY_STAGES.values() if timed.get_column(c).drop_nulls().len()]
    if not present:
        return None
    every = _bin_width(timed["first_ts"].min(), timed["first_ts"].max(), 60)
    return timed.group_by_dynamic("first_ts", every=every).agg(
        [pl.col(c).quantile(q, "linear").alias(f"{c}_p{round(q * 100)}") for c in present for q in QUANTILES]
    )


# --- metrics --------------------------------------------------------------------------------------


def _metric_kind(metric: str, unit: str) -> tuple[str, str, float, bool] | None:
    """(group, display unit, factor from base unit, is a counter to differentiate) for the metrics we plot."""
    name = metric.lower()
    if unit == "cores":
        return "CPU", "cores", 1.0, False
    if unit == "bytes/s":
        return "bandwidth", "kB/s", 1e-3, False
    if name.endswith("_seconds_total") and "cpu" in name:
        return "CPU", "cores", 1.0, True
    if name.endswith("_bytes_total") and any(
        w in name for w in ("network", "receive", "transmit", "sent", "recv")
    ):
        return "bandwidth", "kB/s", 1e-3, True
    if unit == "bytes" and any(w in name for w in ("memory", "resident", "rss", "working_set")):
        return "RAM", "MiB", 1 / 2**20, False
    return None


def metric_series(metrics: pl.DataFrame) -> list[MetricSeries]:
    """RAM, CPU and bandwidth series in display units; counters become rates. Peak and mean on all samples."""
    series = []
    pairs = metrics.select("metric", "unit", "labels").unique().sort("metric", "labels").iter_rows()
    for metric, unit, labels in pairs:
        kind = _metric_kind(metric, unit or "")
        if kind is None:
            continue
        group, shown_unit, factor, counter = kind
        rows = metrics.filter(
            (pl.col("metric") == metric) & (pl.col("labels") == labels) & (pl.col("unit") == unit)
        ).sort("ts")
        if counter:
            seconds = pl.col("ts").diff().dt.total_microseconds() / 1e6
            rows = rows.with_columns(value=pl.col("value").diff() / seconds).filter(
                pl.col("value").is_not_null() & pl.col("value").is_finite() & (pl.col("value") >= 0)
            )
        rows = rows.with_columns(value=pl.col("value") * factor)
        if rows.height == 0:
            continue
        every = _bin_width(rows["ts"].min(), rows["ts"].max())
        # Plotted values keep 5 significant digits: no float noise on the axis, smaller JSON.
        binned = rows.group_by_dynamic("ts", every=every).agg(pl.col("value").max().round_sig_figs(5))
        name = metric + (f"{{{labels}}}" if labels else "")
        series.append(
            MetricSeries(
                name,
                metric,
                labels,
                group,
                shown_unit,
                binned["ts"].to_list(),
                binned["value"].to_list(),
                float(rows["value"].max()),
                float(rows["value"].mean()),
            )
        )
    return series


def _scatter(
    metrics: list[MetricSeries],
    curve: pl.DataFrame,
    raw: pl.DataFrame,
    fit: dict[str, Any] | None,
    correlated: pl.DataFrame | None,
) -> dict[str, Any] | None:
    """Each sample of the fitted metric (else the largest RAM series) against the participants joined
    at that time: the raw cloud the fit's plateau points summarise. The pairing is correlate's
    (correlated.parquet) when it has run, else load.load_at on the load curve."""
    ram = [s for s in metrics if s.group == "RAM"]
    fitted = [s for s in ram if fit and s.metric == fit.get("metric")]
    if not ram or curve.height == 0:
        return None
    chosen = max(fitted or ram, key=lambda s: s.peak)
    chosen_series = (pl.col("metric") == chosen.metric) & (pl.col("labels") == chosen.labels)
    if correlated is not None and correlated.filter(chosen_series).height:
        joined = correlated.filter(chosen_series).drop_nulls("joined").sort("ts")
    else:
        joined = load_at(curve, raw.filter(chosen_series).sort("ts"))
    if joined.height == 0:
        return None
    if joined.height > MAX_PLOT_POINTS * 2:
        joined = joined.gather_every(joined.height // (MAX_PLOT_POINTS * 2) + 1)
    return {
        "metric": chosen.name,
        "unit": "MiB",
        "participants": joined["joined"].to_list(),
        "values": (joined["value"] / 2**20).to_list(),
    }


# --- errors and bursts ------------------------------------------------------------------------------------


def _error_timeline(events: pl.LazyFrame, every: str) -> tuple[pl.DataFrame | None, list[dict[str, Any]]]:
    # Compare on the Enum's codes: casting 10 million kinds to strings first would cost a GB.
    errors = events.filter(
        pl.col("kind").is_in(pl.Series(ERROR_KINDS, dtype=pl.Enum(EVENT_KINDS)).implode())
    ).select("ts", pl.col("kind").cast(pl.String), "http_status")
    counts = (
        errors.group_by("kind", "http_status")
        .agg(pl.len().alias("events"), pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"))
        .sort("events", descending=True)
        .collect()
    )
    timed = errors.filter(pl.col("ts").is_not_null()).sort("ts")
    timeline = (
        timed.group_by_dynamic("ts", every=every, group_by="kind").agg(pl.len().alias("events")).collect()
    )
    return (timeline if timeline.height else None), counts.to_dicts()


def _bursts(analysis_dir: Path) -> tuple[dict[str, Any], str]:
    """Bursts and known signatures, in bursts.json's shape (see prosody_analyze.bursts), and their source:
    the file when ``prosody-analyze bursts`` has run, else the bursts module's defaults, written nowhere."""
    from .bursts import find_bursts

    path = analysis_dir / BURSTS_FILE
    if path.is_file():
        found = _read_json(path)
        if not isinstance(found, dict) or not isinstance(found.get("bursts"), list):
            raise UserError(f"{path} is not a bursts result (run `prosody-analyze bursts` again)")
        return found, f"{BURSTS_FILE} (prosody-analyze bursts)"
    found = find_bursts(analysis_dir, write=False).to_dict()
    return found, f"computed for this report with the defaults of `prosody-analyze bursts` (no {BURSTS_FILE})"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def burst_window(burst: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """A burst's start and end (UTC); None for bursts of untimed logs (placed by line order)."""
    return parse_time(burst.get("start")), parse_time(burst.get("end"))


# --- fit ------------------------------------------------------------------------------------------


def _fit(analysis_dir: Path, metrics: pl.DataFrame | None, limit: float | None) -> tuple[dict | None, str]:
    """The RAM model and where it came from.

    ``fit.json`` when ``prosody-analyze fit`` has run (refitted from its points by the fit module
    when ``--limit`` asks for a capacity it lacks); otherwise the fit module's default fit of this
    directory's metrics against its sessions, written nowhere. ``limit`` is in base units (bytes).
    """
    from .fit import fit_linear, fit_resource

    path = analysis_dir / FIT_FILE
    if path.is_file():
        fit = _read_json(path)
        if not isinstance(fit, dict):
            raise UserError(f"{path} is not a fit result (run `prosody-analyze fit` again)")
        points = fit.get("points") or []
        if limit is not None and not fit.get("capacity") and len(points) >= 3:
            factor = 1 / 2**20 if fit.get("unit") == "MiB" else 1.0
            refit = fit_linear(
                [p["participants"] for p in points],
                [p["value"] for p in points],
                unit=fit.get("unit", ""),
                limit=limit * factor,
                metric=fit.get("metric", "value"),
            )
            fit["capacity"] = refit.to_dict()["capacity"]
        return fit, f"{FIT_FILE} (prosody-analyze fit)"
    if metrics is None:
        return (
            None,
            f"no {FIT_FILE} and no metrics to fit: ingest a metrics export, then `prosody-analyze fit`",
        )
    try:
        with tempfile.TemporaryDirectory() as scratch:
            fit = fit_resource(metrics, load_dir=analysis_dir, limit=limit, out_dir=scratch).to_dict()
    except UserError as error:
        return None, f"no {FIT_FILE}, and the default fit failed: {error}"
    return fit, f"computed for this report with the defaults of `prosody-analyze fit` (no {FIT_FILE})"


# --- summary --------------------------------------------------------------------------------------


def _what_was_tested(
    captures: list[dict[str, Any]], files: list[dict[str, Any]], sessions: pl.DataFrame
) -> str:
    if captures:
        parts = []
        for capture in captures:
            config = capture.get("config") or {}
            shape = ""
            if isinstance(config, dict) and config.get("rooms") and config.get("participants"):
                shape = f"{config['rooms']} room(s) × {config['participants']} participant(s)"
                if config.get("batches"):
                    shape += f" in {config['batches']} batch(es)"
            target = capture.get("target") or capture.get("domain") or "?"
            parts.append(
                f"{capture.get('tool', 'load run')} against {target}" + (f": {shape}" if shape else "")
            )
        return "; ".join(parts)
    formats = sorted({f["format"] for f in files if f.get("events")})
    domains = (
        sessions.select(pl.col("jid").str.extract(r"@([^/]+)").alias("domain"))
        .drop_nulls()
        .get_column("domain")
        .value_counts(sort=True)
        .head(3)["domain"]
        .to_list()
    )
    where = f" for {', '.join(domains)}" if domains else ""
    return f"logs ({', '.join(formats) or 'none recognised'}){where}"


def _redactor(
    enabled: bool, sessions: pl.DataFrame, events: pl.LazyFrame, captures: list[dict[str, Any]]
) -> Redactor:
    """A redactor that knows this run's domains and rooms, so bare mentions (``localhost``) go too."""
    redactor = Redactor(enabled=enabled)
    if not enabled:
        return redactor
    jid_domains = sessions.select(pl.col("jid").str.extract(r"@\[?([^/\]]+)")).drop_nulls().unique()
    # Prosody sources such as `conference.meet.example.org:muc` name the host they serve.
    source_hosts = (
        events.select("source")
        .filter(pl.col("source").str.contains(":", literal=True))
        .unique()  # a few `host:module` sources among millions of c2s ids: extract after unique
        .collect()
        .select(pl.col("source").str.extract(r"^([^:\s]+\.[^:\s]+):\w+$"))
        .drop_nulls()
    )
    rooms = (
        pl.concat([sessions.select("room"), events.select("room").unique().collect()]).drop_nulls().unique()
    )
    configs = list(captures) + [c["config"] for c in captures if isinstance(c.get("config"), dict)]
    manifest_domains = [c[k] for c in configs for k in ("domain", "muc") if isinstance(c.get(k), str)]
    redactor.learn(
        domains=jid_domains.to_series().to_list() + source_hosts.to_series().to_list() + manifest_domains,
        rooms=rooms.to_series().to_list(),
    )
    return redactor


def build_report(
    analysis_dir: Path,
    redact: bool = False,
    limit: str | None = None,
    failed_limit: int = 50,
    title: str | None = None,
) -> Report:
    """Read an analysis directory and compute every section (see the module docstring)."""
    analysis_dir = Path(analysis_dir)
    _check_dir(analysis_dir)
    limit_value = parse_quantity(limit) if limit else None
    notes: dict[str, str] = {}
    ingest = _read_json(analysis_dir / SUMMARY_FILE) if (analysis_dir / SUMMARY_FILE).is_file() else {}
    if not ingest:
        notes["summary"] = f"no {SUMMARY_FILE}: input files and capture manifests unknown"
    files = [f for f in ingest.get("files", []) if isinstance(f, dict)]
    captures = [c for c in ingest.get("captures", []) if isinstance(c, dict)]

    events = scan_events(_checked_table(analysis_dir / EVENTS_FILE, EVENT_SCHEMA))
    sessions = pl.read_parquet(_checked_table(analysis_dir / SESSIONS_FILE, SESSION_SCHEMA))
    span = (
        events.select(
            pl.col("ts").min().alias("first"),
            pl.col("ts").max().alias("last"),
            pl.len().alias("events"),
            (pl.col("kind") == pl.lit("unknown", dtype=pl.Enum(EVENT_KINDS))).sum().alias("unknown"),
        )
        .collect()
        .row(0, named=True)
    )
    # Sessions may outlive the last logged event (a stage reached without its own event line).
    bounds = [t for t in (span["first"], sessions["first_ts"].min()) if t is not None]
    ends = [t for t in (span["last"], sessions["last_ts"].max(), sessions["left_ts"].max()) if t is not None]
    first, last = (min(bounds) if bounds else None), (max(ends) if ends else None)
    every = _bin_width(first, last)

    redactor = _redactor(redact, sessions, events, captures)

    # The load side is the one the load module counts (clients when present); both sides are drawn.
    load_side = load_sessions(sessions)
    origin = str(load_side["origin"][0]) if load_side.height else None
    participants: dict[str, pl.DataFrame] = {}
    load_curve = pl.DataFrame(schema=LOAD_SCHEMA)
    peaks: dict[str, dict[str, int]] = {}
    for name in ("client", "server"):
        curve = load_over_time(sessions.filter(pl.col("origin") == name)).drop_nulls("ts")
        if curve.height == 0:
            continue
        peaks[name] = {"connected": int(curve["connected"].max()), "joined": int(curve["joined"].max())}
        participants[name] = _bin_curve(curve, every)
        if name == origin:
            load_curve = curve
    if not participants:
        notes["participants"] = (
            "no session has a timestamp: the logs carry no times (e.g. kubectl logs of the "
            "console sink), so participants over time cannot be drawn"
        )

    batches = (
        sessions.filter(pl.col("batch").is_not_null() & pl.col("first_ts").is_not_null())
        .group_by("batch")
        .agg(pl.col("first_ts").min().alias("start"), pl.len().alias("participants"))
        .sort("batch")
        .to_dicts()
    )
    if participants and not batches:
        notes["batches"] = "no ramp batch in the logs (only swarm captures record them)"

    # One side's view of the stages: the clients' (what users wait for) when they logged them.
    timed_sessions = sessions.filter(pl.col("origin") == origin) if origin else sessions
    latency = latency_table(timed_sessions)
    if not latency:
        notes["latency"] = "no session has two timed stages, so no join latency"

    metrics_path = analysis_dir / METRICS_FILE
    raw_metrics = (
        pl.read_parquet(_checked_table(metrics_path, METRIC_SCHEMA)) if metrics_path.is_file() else None
    )
    series = metric_series(raw_metrics) if raw_metrics is not None else []
    for s in series:
        s.name = redactor.text(s.name)
    if raw_metrics is None:
        notes["metrics"] = f"no {METRICS_FILE}: ingest a capture's metrics.csv or a Grafana/Prometheus export"
    elif not series:
        notes["metrics"] = "no RAM, CPU or bandwidth metric among the ingested metrics"

    fit, fit_source = _fit(analysis_dir, raw_metrics, limit_value)
    if fit is None:
        notes["fit"] = fit_source
    else:
        fit = redactor.value(fit)
    correlated_path = analysis_dir / CORRELATED_FILE
    correlated = (
        pl.read_parquet(_checked_table(correlated_path, CORRELATED_COLUMNS))
        if correlated_path.is_file()
        else None
    )
    scatter = _scatter(series, load_curve, raw_metrics, fit, correlated) if raw_metrics is not None else None
    if scatter is None:
        notes["scatter"] = "needs a RAM metric and timed participants"

    error_every = _bin_width(first, last, ERROR_BINS)
    timeline, error_counts = _error_timeline(events, error_every)
    burst_report, bursts_source = _bursts(analysis_dir)
    burst_report = redactor.value(burst_report)

    failed_rows = sessions.filter(pl.col("outcome") == "failed").sort(
        "first_ts", "first_seq", nulls_last=True
    )
    failed = [
        {k: redactor.text(v) if isinstance(v, str) else v for k, v in row.items()}
        for row in failed_rows.head(failed_limit).select(FAILED_COLUMNS).to_dicts()
    ]
    outcomes = (
        sessions.group_by("origin", "outcome")
        .len()
        .sort("origin", "outcome")
        .with_columns(pl.col("origin").cast(pl.String), pl.col("outcome").cast(pl.String))
        .to_dicts()
    )
    duration = (last - first).total_seconds() if first and last else None
    tool_versions = sorted({f"{c.get('tool', '?')} {c.get('version', '?')}" for c in captures})
    summary = {
        "what": redactor.text(_what_was_tested(captures, files, sessions)),
        "start": _iso(first),
        "end": _iso(last),
        "duration_s": duration,
        "events": span["events"],
        "unrecognised_events": span["unknown"],
        "unparsed_lines": sum(int(f.get("unparsed") or 0) for f in files),
        "sessions": sessions.height,
        "load_origin": origin,
        "peak": peaks,
        "failed_sessions": failed_rows.height,
        "tool_versions": tool_versions,
        "report_version": f"prosody-analyze report {__version__}",
        "http_500": sum(c["events"] for c in error_counts if c.get("http_status") == 500),
    }
    for f in files:
        f["path"] = redactor.text(f.get("path"))
        f["notes"] = [redactor.text(n) for n in f.get("notes", []) if isinstance(n, str)]
    generated = datetime.now(UTC)
    return Report(
        title=title or f"Prosody load report {first.strftime('%Y-%m-%d') if first else ''}".strip(),
        generated=_iso(generated),
        analysis_dir=redactor.text(str(analysis_dir)),
        redacted=redact,
        summary=summary,
        files=files,
        captures=[redactor.value(c) for c in captures],
        outcomes=outcomes,
        participants=participants,
        batches=batches,
        latency_table=latency,
        latency_histograms=_latency_histograms(timed_sessions),
        latency_over_time=_latency_over_time(timed_sessions),
        metrics=series,
        scatter=scatter,
        fit=fit,
        fit_source=fit_source,
        error_timeline=timeline,
        error_bin_seconds=int(error_every.removesuffix("us")) / 1e6,
        error_counts=[{**c, "first": _iso(c["first"]), "last": _iso(c["last"])} for c in error_counts],
        bursts=burst_report["bursts"],
        burst_signatures=burst_report.get("signatures") or [],
        burst_method=burst_report.get("method") or "",
        bursts_source=bursts_source,
        failed=failed,
        failed_total=failed_rows.height,
        notes=notes,
    )


def write_report(
    analysis_dir: Path,
    out: Path,
    format: str = "html",
    redact: bool = False,
    limit: str | None = None,
    failed_limit: int = 50,
    title: str | None = None,
) -> ReportResult:
    """Build the report and write it to ``out`` (HTML with plots, or a markdown summary without)."""
    from .report_render import render_html, render_markdown, sections

    if format not in ("html", "markdown"):
        raise UserError(f"--format must be html or markdown, not {format!r}")
    started = time.perf_counter()
    report = build_report(analysis_dir, redact=redact, limit=limit, failed_limit=failed_limit, title=title)
    text = render_html(report) if format == "html" else render_markdown(report)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return ReportResult(
        str(out),
        format,
        out.stat().st_size,
        round(time.perf_counter() - started, 3),
        sections(report),
        report.notes,
    )
