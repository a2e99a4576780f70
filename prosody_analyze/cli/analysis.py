"""`bursts` and `fit` commands: thin wrappers over :mod:`..bursts` and :mod:`..fit`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .app import app

if TYPE_CHECKING:
    from ..fit import FitResult


def _time(value: str | None) -> str:
    """ISO UTC to ``2026-11-29 01:39:32`` (whole seconds: bins are seconds wide)."""
    return value.replace("T", " ").replace("Z", "")[:19] if value else "—"


def _mapping(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in counts.items())


@app.command("bursts")
def bursts_command(
    analysis_dir: Annotated[Path, typer.Argument(help="Analysis directory written by `ingest`.")],
    bin: Annotated[str, typer.Option("--bin", help="Bin width for counting errors (e.g. 10s, 1m).")] = "10s",
    alpha: Annotated[
        float, typer.Option("--alpha", help="Chance of one false burst in the whole run (Bonferroni).")
    ] = 0.001,
    as_json: Annotated[bool, typer.Option("--json", help="Print bursts.json instead of tables.")] = False,
) -> None:
    """Find bursts of errors (HTTP 500s, stanza errors, timeouts…) and known failure signatures."""
    from ..bursts import BURSTS_FILE, find_bursts

    with Console(stderr=True).status("finding error bursts…"):
        report = find_bursts(analysis_dir, bin=bin, alpha=alpha)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    console = Console()
    if not report.bursts:
        console.print(f"no error bursts in {analysis_dir} ({report.bin_s:g} s bins, alpha {report.alpha:g})")
    table = Table(title=f"error bursts in {analysis_dir} ({report.bin_s:g} s bins)")
    table.add_column("window (UTC)", no_wrap=True)
    for column in ("errors (expected)", "peak /s", "kinds", "HTTP", "connected", "batches", "server events"):
        table.add_column(column, overflow="fold")
    for burst in report.bursts:
        if burst["start"]:
            start, end = _time(burst["start"]), _time(burst["end"])
            window = f"{start} → {end[11:] if end[:10] == start[:10] else end}"
        else:
            window = f"{burst['file']} lines {burst['start_seq']}–{burst['end_seq']}"
        connected = burst["participants_connected_at_start"]
        table.add_row(
            window,
            f"{burst['count']:,} ({burst['expected']:.2g})",
            f"{burst['peak_rate_per_s']:.2f}" if burst["peak_rate_per_s"] is not None else "—",
            _mapping(burst["kinds"]),
            _mapping(burst["http_statuses"]),
            "—" if connected is None else f"{connected:,}",
            ", ".join(map(str, burst["batches"])),
            _mapping(burst["server_events"]),
        )
    if report.bursts:
        console.print(table)
    console.print(
        f"{len(report.bursts)} burst(s); baseline {report.baseline_per_s:.3g} errors/s; "
        f"errors: {_mapping(report.errors_by_kind) or 'none'}"
    )
    if report.untimed_files:
        console.print(f"no times in {len(report.untimed_files)} file(s): binned by line order")
    if report.signatures:
        signatures = Table(title="known failure signatures")
        for column in ("signature", "count", "first (UTC)", "meaning"):
            signatures.add_column(column, overflow="fold")
        for signature in report.signatures:
            signatures.add_row(
                signature["name"],
                f"{signature['count']:,}",
                _time(signature["first_ts"]),
                signature["explanation"],
            )
        console.print(signatures)
    console.print(f"→ {Path(analysis_dir) / BURSTS_FILE}")


def _per_participant(slope: float, unit: str) -> str:
    """MiB slopes below 1 MiB read better in KiB per participant."""
    if unit == "MiB" and abs(slope) < 1:
        return f"{slope * 1024:.3g} KiB/participant ({slope:.4g} MiB)"
    return f"{slope:.4g} {unit}/participant"


def _interval(bounds: list[float]) -> str:
    low, high = bounds
    return f"{low:.4g} – {high:.4g}" if math.isfinite(low) and math.isfinite(high) else "not finite"


def _print_fit(result: FitResult, console: Console) -> None:
    unit = result.unit
    console.print(f"[bold]{result.metric}[/] = slope × participants + intercept, {result.n} points")
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}")
    console.print(
        f"slope      {_per_participant(result.slope, unit)}  ± {result.slope_stderr:.3g} {unit} (stderr), "
        f"95 % CI {_interval(result.slope_ci95)} {unit}"
    )
    console.print(
        f"intercept  {result.intercept:.4g} {unit}  ± {result.intercept_stderr:.3g}, "
        f"95 % CI {_interval(result.intercept_ci95)} {unit}"
    )
    console.print(f"R²         {result.r2:.4f}")
    console.print(
        f"robust     {result.robust['method']}: {_per_participant(result.robust['slope'], unit)}, "
        f"intercept {result.robust['intercept']:.4g} {unit}"
    )
    table = Table(title="points")
    for column in ("participants", f"value ({unit})", "residual", "outlier"):
        table.add_column(column, justify="right")
    outliers = {o["participants"] for o in result.outliers}
    for point, residual in zip(result.points, result.residuals, strict=True):
        table.add_row(
            f"{point['participants']:,.0f}",
            f"{point['value']:.4g}",
            f"{residual:+.3g}",
            "yes" if point["participants"] in outliers else "",
        )
    console.print(table)
    breakpoint = result.breakpoint
    if breakpoint:
        console.print(
            f"[yellow]not linear[/]: {breakpoint['kind']} at ≈ {breakpoint['participants']:,.0f} "
            "participants "
            f"(slopes {breakpoint['slopes'][0]:.4g} → {breakpoint['slopes'][1]:.4g} {unit}/participant; "
            f"BIC {breakpoint['bic_piecewise']:.1f} vs {breakpoint['bic_linear']:.1f} for the line)"
        )
    else:
        console.print("linear: no breakpoint preferred by BIC")
    capacity = result.capacity
    if capacity:

        def shown(value: float | None) -> str:
            return "—" if value is None or value != value else f"{value:,.0f}"

        console.print(
            f"capacity   {shown(capacity['participants'])} participants under "
            f"{capacity['limit']:,.6g} {unit} "
            f"(95 % prediction interval {shown(capacity['low'])} – {shown(capacity['high'])})"
        )


@app.command("fit")
def fit_command(
    source: Annotated[
        Path,
        typer.Argument(help="participants,value table, or metrics (file or analysis dir) with --load."),
    ],
    load: Annotated[
        Path | None, typer.Option("--load", help="Analysis directory whose sessions give the participants.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric to fit (default: process RSS, else container WSS).")
    ] = None,
    limit: Annotated[
        str | None,
        typer.Option("--limit", help="Resource limit, Kubernetes quantity (15000Mi, 2Gi, 1500m)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory for fit.json (default: --load).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print fit.json instead of text.")] = False,
) -> None:
    """Fit metric = slope × participants + intercept, with CIs, a robust fit, a linearity test, capacity."""
    from ..fit import fit_resource

    result = fit_resource(source, load_dir=load, metric=metric, limit=limit, out_dir=out)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    _print_fit(result, Console())
