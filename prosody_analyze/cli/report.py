"""`report` command: a thin wrapper over :func:`prosody_analyze.report.write_report`."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .app import app


@app.command("report")
def report_command(
    analysis_dir: Annotated[
        Path, typer.Argument(help="Directory written by `ingest` (and the analysis commands).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write (default: reports/<UTC date>-prosody.html, or .md)."),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format", help="html (one self-contained file with plots) or markdown (for a ticket)."
        ),
    ] = "html",
    redact: Annotated[
        bool,
        typer.Option("--redact", help="Replace JIDs, domains, IP addresses and room names by pseudonyms."),
    ] = False,
    limit: Annotated[
        str | None, typer.Option(help="Memory limit for the capacity estimate, e.g. 15000Mi or 16Gi.")
    ] = None,
    failed: Annotated[int, typer.Option(help="How many failed sessions to list.", min=0)] = 50,
    title: Annotated[str | None, typer.Option(help="Report title (default: date of the run).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write the incident-review report: summary, load, latency, resources, fit, error bursts, failures."""
    from ..report import write_report  # here: plotly and numpy load only for this command

    if out is None:
        suffix = "md" if format == "markdown" else "html"
        out = Path("reports") / f"{datetime.now(UTC):%Y-%m-%d}-prosody.{suffix}"
    console = Console(stderr=True)
    with console.status("writing report", spinner="dots") if not as_json else contextlib.nullcontext():
        result = write_report(
            analysis_dir, out, format=format, redact=redact, limit=limit, failed_limit=failed, title=title
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    console = Console()
    console.print(
        f"{result.format} report → {result.path}: {_size(result.size_bytes)} "
        f"in {result.seconds:.1f} s; sections: {', '.join(result.sections)}"
    )
    for key, note in result.notes.items():
        console.print(f"  [yellow]not included[/] {key}: {note}", highlight=False)


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 2**20:.2f} MiB" if size_bytes >= 2**20 else f"{size_bytes / 2**10:.1f} KiB"
