"""`correlate` command: a thin wrapper over :func:`..correlate.correlate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..correlate import correlate
from ..units import format_value
from .app import app


@app.command("correlate")
def correlate_command(
    analysis_dir: Annotated[Path, typer.Argument(help="Analysis directory written by `ingest`.")],
    metrics: Annotated[
        list[Path] | None,
        typer.Option("--metrics", help="Grafana CSV, Prometheus JSON, scrape or CSV file; repeatable."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory for correlated.parquet (default: ANALYSIS_DIR).")
    ] = None,
    tolerance: Annotated[
        str, typer.Option("--tolerance", help="How far outside the logged period a sample still gets a load.")
    ] = "30s",
    every: Annotated[str, typer.Option("--every", help="Interval of the printed table (10s, 1m…).")] = "10s",
    tz: Annotated[
        str | None, typer.Option("--tz", help="Zone of exported dates without an offset (Europe/Paris).")
    ] = None,
    metrics_clock: Annotated[
        str,
        typer.Option(
            "--metrics-clock",
            help="Clock of the --metrics files: server (Prometheus, Grafana beside Prosody) or client "
            "(the load generator's host). On the server's, they are moved by the estimated clock offset.",
        ),
    ] = "server",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Join metrics to the load (participants connected/joined) in time; write correlated.parquet."""
    result = correlate(
        analysis_dir,
        metrics or [],
        out_dir=out or analysis_dir,
        tolerance=tolerance,
        every=every,
        tz=tz,
        metrics_clock=metrics_clock,
    )
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    console = Console()
    table = Table(title=f"metrics vs participants ({result.load_source} sessions), per {every}, times UTC")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("connected", justify="right", no_wrap=True)
    table.add_column("joined", justify="right", no_wrap=True)
    # Intervals outside the logged period have no load to show against; they stay in the parquet.
    rows = result.intervals.filter(pl.col("joined").is_not_null())
    units = {series: unit for series, unit in result.units.items() if rows[series].null_count() < rows.height}
    for series, unit in units.items():
        table.add_column(escape(f"{series} [{unit or '-'}]"), justify="right", overflow="fold")
    for row in rows.iter_rows(named=True):
        table.add_row(
            row["ts"].strftime("%Y-%m-%d %H:%M:%S"),
            "—" if row["connected"] is None else f"{row['connected']:,}",
            "—" if row["joined"] is None else f"{row['joined']:,}",
            *(format_value(row[series], unit) for series, unit in units.items()),
        )
    if result.samples_without_load < result.samples:
        console.print(table)
    else:
        console.print(f"no metric sample within {tolerance} of the logged period: wrong --tz or clock?")
    console.print(
        f"{result.samples:,} samples, {result.samples_without_load:,} outside the logged period "
        f"(± {tolerance}) without a load; wrote {result.out_path}"
    )
    if result.clock is not None:
        clock = result.clock
        console.print(
            f"clock offset: client − server = {clock.seconds:+.3f} s (median of {clock.pairs:,} joins "
            f"matched by {clock.matched_by}, IQR {clock.spread_s:.3f} s, server times at "
            f"{clock.resolution_s:g} s resolution)"
        )
        if result.clock_applied_s:
            console.print(
                f"--metrics samples read against the load at their time {result.clock_applied_s:+.3f} s "
                "(the clients' clock)"
            )
        elif metrics:
            why = (
                "the --metrics files follow the clients' clock"
                if metrics_clock == "client"
                else f"it is within the server log's {clock.resolution_s:g} s time resolution"
            )
            console.print(f"offset not applied: {why}")
