"""`swarm`: the built-in load generator (thin wrapper over :func:`prosody_analyze.swarm.run_swarm`)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UserError
from ..swarm import SwarmConfig, SwarmSummary, parse_duration, parse_shard, parse_start_at, run_swarm
from .app import app


@app.command(no_args_is_help=False)
def swarm(
    counts: Annotated[
        list[int] | None,
        typer.Argument(
            help="[ROOMS [PARTICIPANTS]] as JXS takes them after its config file: "
            "`--config config.json 2 50`.",
            show_default=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A JXS config.json, used as is (its keys and units); options given here override it.",
        ),
    ] = None,
    service: Annotated[
        str | None,
        typer.Option(help="WebSocket URL (default: wss://DOMAIN/xmpp-websocket); ?room=ROOM is appended."),
    ] = None,
    domain: Annotated[str | None, typer.Option(help="XMPP domain (required unless --local).")] = None,
    muc: Annotated[str | None, typer.Option(help="MUC domain (default: conference.DOMAIN).")] = None,
    room_prefix: Annotated[
        str | None, typer.Option(help="Room names are PREFIX-N (default: jxs-test-RANDOM).")
    ] = None,
    rooms: Annotated[int | None, typer.Option(help="Rooms per batch (default: 1).")] = None,
    participants: Annotated[int | None, typer.Option(help="Participants per room (default: 2).")] = None,
    delay: Annotated[
        str | None,
        typer.Option(
            help="Between participants of a room; a bare number is in "
            "milliseconds as in JXS (50, 50ms, 1s) (default: 0)."
        ),
    ] = None,
    conference_request_target: Annotated[
        str | None,
        typer.Option(
            help="Focus JID for the conference request IQ, or an http(s):// URL to POST it to before "
            "logging in (default: focus.DOMAIN)."
        ),
    ] = None,
    join_muc: Annotated[
        bool | None,
        typer.Option("--join-muc/--no-join-muc", help="Join the room (default: join).", show_default=False),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            help="Hold after everyone joined or failed, then leave "
            "(10m, 90s, bare number = seconds) (default: until Ctrl-C)."
        ),
    ] = None,
    enable_debug: Annotated[
        bool, typer.Option("--enable-debug", help="Print every participant event on stderr.")
    ] = False,
    enable_xmpp_log: Annotated[
        bool,
        typer.Option(
            "--enable-xmpp-log",
            help="Log every frame in and out to xmpp.log in the capture (stderr with --out -).",
        ),
    ] = False,
    batches: Annotated[
        int | None, typer.Option(help="Batches of ROOMS x PARTICIPANTS, each in new rooms (default: 1).")
    ] = None,
    batch_interval: Annotated[
        str | None, typer.Option(help="Between batch starts (60s, 1m) (default: 60s).")
    ] = None,
    max_connecting: Annotated[
        int | None, typer.Option(help="Cap on simultaneous connection attempts (default: 100).")
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(help="Retries of a participant that failed before joining, with backoff (default: 0)."),
    ] = None,
    retry_backoff: Annotated[
        str | None, typer.Option(help="First retry wait, doubled each time (default: 1s).")
    ] = None,
    source_address: Annotated[
        list[str] | None,
        typer.Option(
            help="Local addresses to spread connections "
            "over, comma-separated or repeated "
            "(127.0.0.2,127.0.0.3)."
        ),
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Per-stage timeout (connect, auth, bind, join) (default: 30s).")
    ] = None,
    conference_timeout: Annotated[
        str | None, typer.Option(help="Conference request timeout (default: 30s).")
    ] = None,
    ping_interval: Annotated[
        str | None, typer.Option(help="XMPP ping interval once in (default: 10s).")
    ] = None,
    metrics_url: Annotated[
        str | None, typer.Option(help="Prosody OpenMetrics URL scraped during the run into metrics.csv.")
    ] = None,
    metrics_interval: Annotated[str | None, typer.Option(help="Scrape interval (default: 1s).")] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Start a sandboxed Prosody on 127.0.0.1 (Debian's prosody "
            "package) and aim at it; its log and metrics go in the capture.",
        ),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Accept a TLS certificate that does not verify (a test deployment's self-signed one).",
        ),
    ] = False,
    shard: Annotated[
        str | None, typer.Option(help="Run shard K/N of the plan (K from 0, as JOB_COMPLETION_INDEX).")
    ] = None,
    start_at: Annotated[
        str | None,
        typer.Option(help="Shared ramp start: ISO time (2026-11-28T21:00:00Z) or +DELAY from now (+30s)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", help="Capture directory, or - for JSON lines on stdout (default: swarm-UTCTIME)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Live progress bar on stderr.")] = True,
) -> None:
    """Simulate Jitsi participants over XMPP/WebSocket, JXS-compatible, and write a capture for `ingest`.

    Times print in UTC. Exit status 0 when every participant joined and none was dropped, 1 otherwise.
    """
    counts = counts or []
    if len(counts) > 2:
        raise UserError("at most two numbers after the options: ROOMS PARTICIPANTS (as JXS takes them)")
    overrides = {
        "domain": domain,
        "service": service,
        "muc": muc,
        "room_prefix": room_prefix,
        "rooms": rooms if rooms is not None else (counts[0] if counts else None),
        "participants": participants
        if participants is not None
        else (counts[1] if len(counts) > 1 else None),
        "delay": None if delay is None else parse_duration(delay, default_unit="ms"),
        "conference_request_target": conference_request_target,
        "join_muc": join_muc,
        "duration": None if duration is None else parse_duration(duration),
        "enable_debug": enable_debug or None,
        "enable_xmpp_log": enable_xmpp_log or None,
        "batches": batches,
        "batch_interval": None if batch_interval is None else parse_duration(batch_interval),
        "max_connecting": max_connecting,
        "retries": retries,
        "retry_backoff": None if retry_backoff is None else parse_duration(retry_backoff),
        "source_addresses": tuple(
            a.strip() for item in source_address or [] for a in item.split(",") if a.strip()
        )
        or None,
        "stage_timeout": None if timeout is None else parse_duration(timeout),
        "conference_timeout": None if conference_timeout is None else parse_duration(conference_timeout),
        "ping_interval": None if ping_interval is None else parse_duration(ping_interval),
        "metrics_url": metrics_url,
        "metrics_interval": None if metrics_interval is None else parse_duration(metrics_interval),
        "local": local or None,
        "insecure": insecure or None,
        "start_at": None if start_at is None else parse_start_at(start_at),
    }
    if shard is not None:
        overrides["shard_index"], overrides["shard_count"] = parse_shard(shard)
    config = (
        SwarmConfig.from_file(config_file, **overrides)
        if config_file
        else SwarmConfig.from_jxs({}, **overrides)
    )
    if config.extra:
        print(f"swarm: ignoring unknown config keys: {', '.join(sorted(config.extra))}", file=sys.stderr)
    if out is None:
        out = "swarm-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    summary = run_swarm(config, out, progress=progress)
    to_stdout = out == "-"
    console = Console(stderr=to_stdout)
    if as_json:
        console.print_json(json.dumps(summary.to_dict()))
    elif to_stdout:
        # kubectl logs mixes stderr into the capture: one line there, the full summary is in
        # the capture's final manifest line.
        print(
            f"swarm: {summary.joined}/{summary.target} joined, {summary.failed} failed, "
            f"{summary.dropped} dropped, shard {summary.shard or '-'}",
            file=sys.stderr,
        )
    else:
        print_summary(console, summary)
    if summary.error:
        print(f"prosody-analyze: error: {summary.error}", file=sys.stderr)
    raise typer.Exit(summary.exit_code)


def print_summary(console: Console, summary: SwarmSummary) -> None:
    title = f"swarm {summary.started_at} → {summary.ended_at} (UTC)"
    if summary.shard:
        title += f", shard {summary.shard}"
    outcomes = Table(title=title, show_header=False)
    outcomes.add_column("what")
    outcomes.add_column("value", justify="right")
    rows = [
        ("target", summary.service),
        ("participants planned", summary.target),
        ("joined", summary.joined),
        ("failed", summary.failed),
        ("dropped after joining", summary.dropped),
        ("left cleanly", summary.left),
        ("not finished (stopped)", summary.interrupted),
        ("retries", summary.retries),
        ("all joined after", "-" if summary.all_joined_s is None else f"{summary.all_joined_s:.3f} s"),
        ("joins per second", "-" if summary.joins_per_s is None else f"{summary.joins_per_s:.1f}"),
        ("run time", f"{summary.duration_s:.1f} s"),
        ("ended because", summary.end_reason),
        ("capture", summary.capture),
    ]
    for stage, count in sorted(summary.failures_by_stage.items()):
        rows.append((f"failed at stage {stage}", count))
    for status, count in sorted(summary.http_statuses.items()):
        rows.append((f"HTTP {status} on upgrade", count))
    for error, count in summary.top_errors:
        rows.append((f"error ×{count}", error))
    for what, value in rows:
        outcomes.add_row(what, str(value))
    console.print(outcomes)
    stages = Table(title="stage latency (ms)")
    for column in ("stage", "count", "p50", "p95", "p99", "max"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for stage, row in summary.stage_seconds.items():
        cells = [str(row["count"])]
        cells += [
            "-" if row[key] is None else f"{row[key] * 1000:.1f}" for key in ("p50", "p95", "p99", "max")
        ]
        stages.add_row(stage, *cells)
    console.print(stages)
