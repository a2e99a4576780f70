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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from .capture import MANIFEST_FILE, METRICS_CSV
from .errors import UserError
from .parsers import FileResult, OnRead, hashed_while_read, parse_file, sniff
from .parsers.source import ReadNotes
from .schema import (
    EVENTS_FILE,
    METRIC_SCHEMA,
    METRICS_FILE,
    SESSIONS_FILE,
    conform,
    empty_sessions,
    run_stored_schema,
)
from .sessions import write_sessions

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
    """The file's SHA-256, or "" when it cannot be read (the file is then reported as such)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError:
        return ""
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


@dataclass
class _Pending:
    """A file being parsed: its figures are final once the events have been written."""

    summary: FileSummary
    result: FileResult
    notes: ReadNotes

    def finish(self) -> None:
        summary, result = self.summary, self.result
        summary.lines, summary.events, summary.unparsed = result.lines, result.events, result.unparsed
        summary.first_ts, summary.last_ts = _iso(result.first_ts), _iso(result.last_ts)
        summary.sha256 = result.sha256
        summary.notes.extend(self.notes.messages)
        if result.invalid_utf8_lines:
            summary.notes.append(f"{result.invalid_utf8_lines} line(s) with invalid UTF-8, shown as U+FFFD")
        if result.error:
            summary.notes.append(result.error)


def _start(
    path: Path, summary: FileSummary, scratch: Path, year: int | None, run: _Run, on_read: OnRead
) -> bool:
    """Sniff and start parsing one file; whether its SHA-256 will come from that parse. ``on_read``
    hears of its bytes as they are read (not at all for a file that is not parsed)."""
    try:
        sniffed = sniff(path)
    except OSError as error:
        summary.format = "error"
        summary.notes.append(f"cannot read: {error.strerror or error}")
        return False
    if sniffed.format is None:
        summary.notes.append(sniffed.reason)
        return False
    summary.format = sniffed.label
    notes = ReadNotes()
    try:
        result, events, lifecycle = parse_file(
            path, summary.path, sniffed, notes, scratch, run.files, year, on_read
        )
    except Exception as error:  # a file we cannot parse must not stop the others
        summary.format = "error"
        summary.notes.append(f"could not parse as {sniffed.label}: {type(error).__name__}: {error}")
        return False
    if events is not None:
        run.parts.append(events)
    run.lifecycles.append(lifecycle)
    run.pending.append(_Pending(summary, result, notes))
    return hashed_while_read(sniffed)


@dataclass
class _Run:
    files: list[str]  # every file of the run, as the `file` column names them
    parts: list[pl.LazyFrame] = field(default_factory=list)
    lifecycles: list[list[Path]] = field(default_factory=list)  # filled while events are written
    pending: list[_Pending] = field(default_factory=list)
    captures: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[pl.DataFrame] = field(default_factory=list)


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
    scratch = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    # A plain Prosody log is hashed as it is parsed; other files beside parsing (hashlib releases
    # the GIL), at the cost of a second read.
    with ThreadPoolExecutor(max_workers=1) as hasher:
        try:
            digests: dict[str, Future[str]] = {}
            summaries = [FileSummary(str(path), path.stat().st_size, "", "unrecognised") for path in files]
            run = _Run([summary.path for summary in summaries])
            with _Progress(progress, sum(summary.size_bytes for summary in summaries)) as bar:
                for path, summary in zip(files, summaries, strict=True):
                    bar.step(f"reading {path.name}")
                    parsed = len(run.pending)
                    if path.name == MANIFEST_FILE:
                        _manifest(path, summary, run.captures)
                    elif _is_metrics_csv(path):
                        table = read_metrics_csv(path, str(path))
                        run.metrics.append(table)
                        summary.format, summary.lines = "metrics", table.height
                    elif _start(path, summary, scratch, year, run, bar.reading(path.name)):
                        continue
                    if len(run.pending) == parsed:  # not parsed: its bytes count as read now
                        bar.advance(summary.size_bytes)
                    digests[summary.path] = hasher.submit(_sha256, path)
                if not run.pending:
                    reasons = "; ".join(f"{f.path}: {', '.join(f.notes) or f.format}" for f in summaries[:5])
                    raise UserError(f"no log file could be ingested ({reasons})")
                bar.step(f"writing {EVENTS_FILE}")
                # zstd at level 1: half the size of snappy for no more CPU on Prosody logs (bench/ingest.py).
                # No min/max statistics: for the message text they cost 3 % of the whole ingest, and no
                # analysis here skips row groups by them (null counts stay, they come for free).
                pl.concat(_stored(run.parts)).sink_parquet(
                    out_dir / EVENTS_FILE,
                    compression="zstd",
                    compression_level=1,
                    statistics={"min": False, "max": False, "null_count": True},
                )
                bar.step(f"writing {SESSIONS_FILE}")
                for pending in run.pending:
                    pending.finish()
                lifecycle = [part for parts in run.lifecycles for part in parts]
                if lifecycle:
                    sessions = write_sessions(pl.scan_ipc(lifecycle), out_dir / SESSIONS_FILE, scratch)
                else:
                    empty_sessions().write_parquet(out_dir / SESSIONS_FILE)
                    sessions = 0
            for summary in summaries:
                if summary.path in digests:
                    summary.sha256 = digests[summary.path].result()
                elif not summary.sha256:  # its parse stopped early, before reading all of it
                    summary.sha256 = _sha256(Path(summary.path))
            for pending in run.pending:
                for manifest in pending.result.manifests:
                    run.captures.append({"path": pending.summary.path, **manifest})
            summary = IngestSummary(str(out_dir), summaries, run.captures, 0, sessions, 0)
            summary.events = sum(f.events for f in summaries if f.ingested)
            if run.metrics:
                metrics = pl.concat(run.metrics)
                metrics.write_parquet(out_dir / METRICS_FILE)
                summary.metrics = metrics.height
            (out_dir / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
            return summary
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _stored(parts: list[pl.LazyFrame]) -> list[pl.LazyFrame]:
    """The parts in one stored schema, where a column is Null only if it is Null in every part
    (see ``server_stored_schema``)."""
    schemas = [dict(part.collect_schema()) for part in parts]
    stored = run_stored_schema(schemas)
    return [part if own == stored else part.cast(stored) for part, own in zip(parts, schemas, strict=True)]


def _manifest(path: Path, summary: FileSummary, captures: list[dict[str, Any]]) -> None:
    summary.format = "capture-manifest"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        summary.format = "unrecognised"
        summary.notes.append(f"manifest.json is not valid JSON: {error}")
        return
    captures.append(
        {"path": str(path.parent), **(manifest if isinstance(manifest, dict) else {"manifest": manifest})}
    )


class _Progress:
    """A rich progress bar over the input files' bytes, naming the step under way (on stderr), or
    nothing. Prosody logs are read while events.parquet is written: their bytes move the bar then."""

    def __init__(self, enabled: bool, total_bytes: int):
        self.enabled = enabled
        self.total_bytes = total_bytes

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("ingest", total=self.total_bytes)
        return self

    def step(self, description: str) -> None:
        if self.enabled:
            self.bar.update(self.task, description=description)

    def advance(self, count: int) -> None:
        if self.enabled:
            self.bar.update(self.task, advance=count)

    def reading(self, name: str) -> OnRead:
        """What a parser calls with the bytes of ``name`` it has read (from any thread)."""
        if not self.enabled:
            return None
        return lambda count: self.bar.update(self.task, description=f"reading {name}", advance=count)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
