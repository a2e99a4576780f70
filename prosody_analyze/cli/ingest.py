"""`ingest` command: a thin wrapper over :func:`prosody_analyze.ingest.ingest`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..ingest import IngestSummary, ingest
from .app import app


def _span(first: str | None, last: str | None) -> str:
    """``2026-11-28 21:05:24 → 21:05:28`` (UTC), the end's date shown only when it differs."""
    if not first or not last:
        return "no times in the log"
    start, end = (datetime.fromisoformat(value.replace("Z", "+00:00")) for value in (first, last))
    shown_end = end.strftime("%H:%M:%S" if end.date() == start.date() else "%Y-%m-%d %H:%M:%S")
    return f"{start:%Y-%m-%d %H:%M:%S} → {shown_end}"


def _table(summary: IngestSummary) -> Table:
    table = Table(title=f"ingest → {summary.out_dir} (times UTC)")
    for column, justify in (
        ("file", "left"),
        ("format", "left"),
        ("lines", "right"),
        ("events", "right"),
        ("unparsed", "right"),
        ("time span (UTC)", "left"),
        ("notes", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")
    for f in summary.files:
        shown = f.ingested or f.format in ("metrics", "capture-manifest")
        table.add_row(
            f.path,
            f.format if shown else f"[yellow]{f.format}[/]",
            f"{f.lines:,}",
            f"{f.events:,}",
            f"{f.unparsed:,}",
            _span(f.first_ts, f.last_ts) if f.ingested else "",
            "; ".join(f.notes),
        )
    return table


@app.command("ingest")
def ingest_command(
    paths: Annotated[list[Path], typer.Argument(help="Log files or directories (walked recursively).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for events.parquet, sessions.parquet, ingest.json.")
    ],
    year: Annotated[
        int | None, typer.Option(help="Year of the first line of Prosody file logs (default: file mtime).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON, not a table.")] = False,
) -> None:
    """Sniff and parse Prosody, JXS, pm2 and swarm logs into event and session tables."""
    summary = ingest(paths, out, year=year, progress=not as_json and sys.stderr.isatty())
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    console = Console()
    if not console.is_terminal:  # piped: long lines beat file names folded over three rows
        console = Console(width=200)
    console.print(_table(summary))
    metrics = f", {summary.metrics:,} metric samples" if summary.metrics else ""
    console.print(
        f"{len(summary.ingested_files)} file(s) ingested: {summary.events:,} events, "
        f"{summary.sessions:,} sessions{metrics} → {out}"
    )
