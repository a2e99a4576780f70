"""Ingest: every log file under the given paths -> events.parquet, sessions.parquet, ingest.json.

Files are sniffed, parsed chunk by chunk into part files (so memory does not grow with the
logs), then the parts are streamed into one ``events.parquet``. Swarm captures add their
``manifest.json`` to the summary and their ``metrics.csv`` to ``metrics.parquet``. A bad file is
reported and skipped; a bad line is counted as unparsed and kept in ``message``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from .capture import MANIFEST_FILE, METRICS_CSV
from .errors import UserError
from .parsers import parse_file, sniff
from .parsers.source import ReadNotes
from .schema import (
    EVENT_SCHEMA,
    EVENTS_FILE,
    METRIC_SCHEMA,
    METRICS_FILE,
    SESSION_SCHEMA,
    SESSIONS_FILE,
    conform,
)
from .sessions import build_sessions

SUMMARY_FILE = "ingest.json"
METRICS_HEADER = "ts,metric,labels,value"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass
class FileSummary:
    path: str
    size_bytes: int
    sha256: str
    format: str  # e.g. "prosody-file+gzip"; "unrecognised" or "error" when nothing was read
    lines: int = 0
    events: int = 0
    unparsed: int = 0
    first_ts: str | None = None  # ISO 8601 UTC
    last_ts: str | None = None
    notes: list[str] = field(default_factory=list)  # why it was skipped, truncation, bad bytes

    @property
    def ingested(self) -> bool:
        return self.format not in ("unrecognised", "error", "capture-manifest", "metrics")


@dataclass
class IngestSummary:
    out_dir: str
    files: list[FileSummary]
    captures: list[dict[str, Any]]  # contents of each capture's manifest.json
    events: int
    sessions: int
    metrics: int

    @property
    def ingested_files(self) -> list[FileSummary]:
        return [f for f in self.files if f.ingested]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "events": self.events,
            "sessions": self.sessions,
            "metrics": self.metrics,
            "files": [asdict(f) for f in self.files],
            "captures": self.captures,
        }


def _walk(paths: list[Path], out_dir: Path) -> Iterator[Path]:
    """Every regular file under ``paths`` (directories recursively, sorted), skipping our own output."""
    seen: set[Path] = set()
    out = out_dir.resolve()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(path)
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved in seen or out in resolved.parents:
                continue
            seen.add(resolved)
            yield candidate


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _is_metrics_csv(path: Path) -> bool:
    if path.name != METRICS_CSV:
        return False
    with open(path, "rb") as handle:
        return handle.readline().decode("utf-8", errors="replace").strip() == METRICS_HEADER


def metric_unit(metric: pl.Expr) -> pl.Expr:
    """Base unit from the Prometheus name suffix: ``_bytes`` -> bytes, ``_seconds[_total]`` -> seconds."""
    return (
        pl.when(metric.str.ends_with("_bytes"))
        .then(pl.lit("bytes"))
        .when(metric.str.ends_with("_seconds") | metric.str.ends_with("_seconds_total"))
        .then(pl.lit("seconds"))
        .otherwise(pl.lit(""))
    )


def read_metrics_csv(path: Path, display: str) -> pl.DataFrame:
    """A capture's ``metrics.csv`` (``ts,metric,labels,value``) in METRIC_SCHEMA; bad rows are dropped."""
    raw = pl.read_csv(
        path,
        schema={"ts": pl.String, "metric": pl.String, "labels": pl.String, "value": pl.String},
        has_header=True,
        truncate_ragged_lines=True,
    )
    table = raw.with_columns(
        ts=pl.col("ts").str.to_datetime(time_unit="us", time_zone="UTC", strict=False),
        value=pl.col("value").cast(pl.Float64, strict=False),
        labels=pl.col("labels").fill_null(""),
        unit=metric_unit(pl.col("metric")),
        file=pl.lit(display),
    ).filter(pl.col("ts").is_not_null() & pl.col("metric").is_not_null() & pl.col("value").is_not_null())
    return conform(table, METRIC_SCHEMA)


def _ingest_one(
    path: Path,
    scratch: Path,
    year: int | None,
    parts: list[pl.LazyFrame],
    lifecycles: list[pl.LazyFrame],
    captures: list[dict[str, Any]],
) -> FileSummary:
    display = str(path)
    summary = FileSummary(display, path.stat().st_size, _sha256(path), "unrecognised")
    sniffed = sniff(path)
    if sniffed.format is None:
        summary.notes.append(sniffed.reason)
        return summary
    summary.format = sniffed.label
    notes = ReadNotes()
    try:
        result, events, lifecycle = parse_file(path, display, sniffed, notes, scratch, year=year)
    except Exception as error:  # a file we cannot parse must not stop the others
        summary.format = "error"
        summary.notes.append(f"could not parse as {sniffed.label}: {type(error).__name__}: {error}")
        return summary
    if events is not None:
        parts.append(events)
    if lifecycle is not None:
        lifecycles.append(lifecycle)
    captures.extend({"path": display, **manifest} for manifest in result.manifests)
    summary.lines, summary.events, summary.unparsed = result.lines, result.events, result.unparsed
    summary.first_ts, summary.last_ts = _iso(result.first_ts), _iso(result.last_ts)
    summary.notes.extend(notes.messages)
    if result.invalid_utf8_lines:
        summary.notes.append(f"{result.invalid_utf8_lines} line(s) with invalid UTF-8, shown as U+FFFD")
    return summary


def ingest(
    paths: list[Path], out_dir: Path, year: int | None = None, progress: bool = False
) -> IngestSummary:
    """Parse every log file under ``paths`` into ``out_dir``; see the module docstring."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"no such file or directory: {', '.join(missing)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = list(_walk(paths, out_dir))
    if not files:
        raise UserError(f"no files found under {', '.join(map(str, paths))}")
    summaries: list[FileSummary] = []
    captures: list[dict[str, Any]] = []
    metric_tables: list[pl.DataFrame] = []
    scratch = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    try:
        parts: list[pl.LazyFrame] = []
        lifecycles: list[pl.LazyFrame] = []
        for path in _progress(files, progress):
            if path.name == MANIFEST_FILE:
                summaries.append(_manifest(path, captures))
                continue
            if _is_metrics_csv(path):
                table = read_metrics_csv(path, str(path))
                metric_tables.append(table)
                summaries.append(
                    FileSummary(str(path), path.stat().st_size, _sha256(path), "metrics", lines=table.height)
                )
                continue
            summaries.append(_ingest_one(path, scratch, year, parts, lifecycles, captures))
        summary = IngestSummary(str(out_dir), summaries, captures, 0, 0, 0)
        if not summary.ingested_files:
            reasons = "; ".join(f"{f.path}: {', '.join(f.notes) or f.format}" for f in summaries[:5])
            raise UserError(f"no log file could be ingested ({reasons})")
        events_path = out_dir / EVENTS_FILE
        if parts:
            pl.concat(parts).sink_parquet(events_path, compression="lz4")
        else:
            pl.DataFrame(schema=EVENT_SCHEMA).write_parquet(events_path)
        sessions = (
            build_sessions(pl.concat(lifecycles)) if lifecycles else pl.DataFrame(schema=SESSION_SCHEMA)
        )
        sessions.write_parquet(out_dir / SESSIONS_FILE)
        summary.events = sum(f.events for f in summaries if f.ingested)
        summary.sessions = sessions.height
        if metric_tables:
            metrics = pl.concat(metric_tables)
            metrics.write_parquet(out_dir / METRICS_FILE)
            summary.metrics = metrics.height
        (out_dir / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
        return summary
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _manifest(path: Path, captures: list[dict[str, Any]]) -> FileSummary:
    summary = FileSummary(str(path), path.stat().st_size, _sha256(path), "capture-manifest")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        summary.format = "unrecognised"
        summary.notes.append(f"manifest.json is not valid JSON: {error}")
        return summary
    captures.append(
        {"path": str(path.parent), **(manifest if isinstance(manifest, dict) else {"manifest": manifest})}
    )
    return summary


def _progress(files: list[Path], enabled: bool) -> Iterator[Path]:
    if not enabled:
        yield from files
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("ingesting", total=len(files))
        for path in files:
            bar.update(task, description=f"ingesting {path.name}")
            yield path
            bar.advance(task)
