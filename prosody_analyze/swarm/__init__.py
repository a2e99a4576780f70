"""The swarm: a built-in XMPP-over-WebSocket load generator (JXS parity and more).

``run_swarm(SwarmConfig(domain=..., rooms=2, participants=50), "capture/")`` runs a plan
and leaves a capture directory that ``ingest`` reads (see :mod:`prosody_analyze.capture`).
The protocol lives in :mod:`.xmpp` (sans-IO), the sockets and schedule in :mod:`.runner`.
"""

from __future__ import annotations

import contextlib
import platform
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from .. import __version__
from ..capture import METRICS_CSV, PROSODY_LOG, CaptureWriter, utc_now_iso
from .config import PlannedParticipant, SwarmConfig, build_plan, parse_duration, parse_shard, parse_start_at
from .summary import SwarmSummary

__all__ = [
    "PlannedParticipant",
    "SwarmConfig",
    "SwarmSummary",
    "build_plan",
    "parse_duration",
    "parse_shard",
    "parse_start_at",
    "run_swarm",
    "run_swarm_async",
]

XMPP_LOG = "xmpp.log"


def run_swarm(config: SwarmConfig, out: Path | str, progress: bool = True) -> SwarmSummary:
    """Run the plan of ``config`` against its service (or a sandboxed Prosody with ``config.local``),
    write the capture to ``out`` (a directory, or ``"-"`` for JSON lines on stdout) and return the
    summary. Ctrl-C / SIGTERM make every participant leave cleanly first."""
    import asyncio

    return asyncio.run(run_swarm_async(config, out, progress))


async def run_swarm_async(config: SwarmConfig, out: Path | str, progress: bool = True) -> SwarmSummary:
    # Here, not at the top: the sockets' libraries would cost every other command 30 ms to start.
    from .progress import LiveProgress
    from .runner import Swarm, install_signal_handlers

    to_stdout = str(out) == "-"
    with _target(config, None if to_stdout else Path(out)) as (config, prosody):
        config = config.resolved()
        plan = build_plan(config)
        _allow_open_files(len(plan))
        start_at = config.start_at or datetime.now(UTC)
        late_s = (datetime.now(UTC) - start_at).total_seconds()
        if late_s > 1:
            print(
                f"swarm: warning: the start time was {late_s:.1f} s ago; participants due by now "
                "start at once",
                file=sys.stderr,
            )
        writer = CaptureWriter(out, shard=config.shard)
        manifest = _manifest(config, plan, start_at, prosody)
        sampler = None
        with writer, _xmpp_log(config, writer) as xmpp_log:
            writer.write_manifest(manifest)
            writer.write(
                "run_info",
                message=f"swarm start: {len(plan)} participants planned "
                f"({config.planned_total} in the whole plan) against {config.service}",
            )
            metrics_url = config.metrics_url or (prosody.metrics_url if prosody else None)
            if writer.directory is not None and (metrics_url or prosody):
                from ..sampler import ServerSampler

                sampler = ServerSampler(
                    writer.directory / METRICS_CSV,
                    pid=prosody.pid if prosody else None,
                    metrics_url=metrics_url,
                    interval_s=config.metrics_interval,
                ).start()
            live = LiveProgress(enabled=progress)
            debug = live.print if config.enable_debug else None
            swarm = Swarm(config, plan, writer, xmpp_log=xmpp_log, debug=debug)
            remove_handlers = install_signal_handlers(swarm)
            try:
                with live:
                    summary = await swarm.run(start_at, live.update)
            finally:
                remove_handlers()
                if sampler is not None:
                    sampler.stop()
            summary.capture = "-" if to_stdout else str(out)
            writer.write(
                "run_info",
                message=f"swarm end: {summary.end_reason}; joined {summary.joined}/"
                f"{summary.target}, failed {summary.failed}, dropped {summary.dropped}",
            )
            manifest.update(end=summary.ended_at, summary=summary.to_dict())
            writer.write_manifest(manifest)
    return summary


def _allow_open_files(participants: int) -> None:
    """One socket per participant: lift the soft open-files limit (often 1024) up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = participants + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        if new_soft < wanted:
            print(
                f"swarm: warning: the open-files limit ({hard}) is below the {participants} participants "
                "planned; raise it (ulimit -Hn) or shard the run",
                file=sys.stderr,
            )


@contextlib.contextmanager
def _target(config: SwarmConfig, out: Path | None) -> Iterator[tuple[SwarmConfig, object | None]]:
    """With ``local``, a sandboxed Prosody (config and log in the capture) and a config aimed at it."""
    if not config.local:
        yield config, None
        return
    from ..local_prosody import LocalProsody

    domain = config.domain or "localhost"
    muc = config.muc or f"conference.{domain}"
    # With the capture on stdout, the sandbox (config and log) goes to a directory of its own, kept.
    workdir = out if out is not None else Path(tempfile.mkdtemp(prefix="prosody-analyze-local-"))
    try:
        with LocalProsody(workdir, domain=domain, muc=muc) as prosody:
            yield replace(config, domain=domain, muc=muc, service=prosody.websocket_url), prosody
    finally:
        log = workdir / PROSODY_LOG
        if out is None and log.is_file():
            print(f"swarm: the local Prosody's log is kept in {log}", file=sys.stderr)
        elif out is None:  # Prosody never started: nothing worth keeping
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _xmpp_log(config: SwarmConfig, writer: CaptureWriter) -> Iterator[IO[str] | None]:
    """Every frame in and out (JXS's enableXmppLog): xmpp.log in the capture, or stderr."""
    if not config.enable_xmpp_log:
        yield None
    elif writer.directory is None:
        yield sys.stderr
    else:
        with open(writer.directory / XMPP_LOG, "a", encoding="utf-8") as log:
            yield log


def _manifest(
    config: SwarmConfig, plan: list[PlannedParticipant], start_at: datetime, prosody: object | None
) -> dict:
    return {
        "tool": "prosody-analyze swarm",
        "version": __version__,
        "created": utc_now_iso(),
        "start": start_at.isoformat().replace("+00:00", "Z"),
        "end": None,
        "target": config.service,
        "domain": config.domain,
        "host": platform.node(),
        "python": platform.python_version(),
        "shard": config.shard,
        "participants_planned": len(plan),
        "participants_in_plan": config.planned_total,
        "local_prosody": {"pid": prosody.pid, "log": str(prosody.log_path)} if prosody else None,
        "config": config.to_dict(),
    }
