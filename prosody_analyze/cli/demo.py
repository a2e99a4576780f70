"""`demo` command: a thin wrapper over :func:`prosody_analyze.demo.run_demo`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..demo import DemoResult, run_demo
from .app import app


def _lines(result: DemoResult) -> list[str]:
    swarm = result.swarm
    lines = [
        f"demo {result.started_at} → {result.ended_at} (UTC), {result.run_seconds:.0f} s; "
        f"Prosody started in {result.prosody_start_seconds:.2f} s",
        f"swarm: {swarm.get('joined', 0)}/{swarm.get('target', 0)} joined, {swarm.get('failed', 0)} failed, "
        f"{swarm.get('retries', 0)} retries, HTTP 500 seen {result.http_500} time(s)",
    ]
    fit = result.fit or {}
    if "kib_per_participant" in fit:
        bounds = fit.get("slope_ci95_kib") or []
        ci = f" (95 % CI {bounds[0]:.1f}–{bounds[1]:.1f})" if None not in bounds and len(bounds) == 2 else ""
        lines.append(
            f"RAM ≈ {fit['kib_per_participant']:.1f} KiB per participant{ci} "
            f"+ {fit['base_mib']:.1f} MiB base, from {fit['points']} plateaus"
        )
    else:
        lines.append(f"RAM model: not fitted ({fit.get('error', 'no plateaus')})")
    for burst in result.bursts:
        kinds = ", ".join(f"{count} {kind}" for kind, count in (burst.get("kinds") or {}).items())
        lines.append(
            f"burst {burst['start']} → {burst['end']}: {burst['count']} errors ({kinds}) with "
            f"{burst.get('participants_connected_at_start')} participants connected"
        )
        for signature in burst.get("signatures") or []:
            lines.append(f"  {signature.get('name')}: {signature.get('explanation')}")
    lines.append(f"capture: {result.capture_dir}")
    lines.append(f"report: {result.report_path}")
    return lines


@app.command("demo")
def demo_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="A small, fast run (3 batches of 20, 10 s apart).")
    ] = False,
    via_proxy: Annotated[
        bool,
        typer.Option(
            "--via-proxy",
            help="Put nginx in front of Prosody, failing a share of WebSocket upgrades "
            "with HTTP 500 past a connection threshold (the study's 500 burst).",
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default demo-run/<UTC time>/).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Report file (default reports/<date>-demo.html).")
    ] = None,
    batches: Annotated[int | None, typer.Option(help="Number of batches (default 5, quick 3).")] = None,
    rooms: Annotated[int | None, typer.Option(help="Rooms per batch (default 2).")] = None,
    participants: Annotated[
        int | None, typer.Option(help="Participants per room (default 50, quick 10).")
    ] = None,
    batch_interval: Annotated[
        float | None, typer.Option(help="Seconds between batches (default 60, quick 10).")
    ] = None,
    proxy_threshold: Annotated[
        int | None,
        typer.Option(
            help="With --via-proxy: connections past which upgrades may fail (default 250, quick 45)."
        ),
    ] = None,
    proxy_fail_share: Annotated[
        float | None,
        typer.Option(
            help="With --via-proxy: share of upgrades refused past the threshold (default 0.5, quick 0.6)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the whole study on a sandboxed local Prosody and write the report."""
    result = run_demo(
        out,
        quick=quick,
        via_proxy=via_proxy,
        report_path=report,
        progress=not as_json,
        batches=batches,
        rooms=rooms,
        participants=participants,
        batch_interval_s=batch_interval,
        proxy_threshold=proxy_threshold,
        proxy_fail_share=proxy_fail_share,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in _lines(result):
        typer.echo(line)
