"""Benchmark: write the HTML report from an analysis directory holding 10 million events.

Generates (vectorised, not timed) events.parquet, sessions.parquet, metrics.parquet and ingest.json
for a two-hour ramp of 500 000 sessions; with no fit.json or bursts.json, the timed report also runs
the fit module's plateau fit and the bursts module's detection itself. Then times ``write_report``
(plain and ``--redact``) in a child process and prints the file size, seconds and the child's peak
RSS. Targets: under 10 MB and under 30 s. Everything lives in a temporary directory.

    .venv/bin/python bench/report.py [--events 10000000] [--sessions 500000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from prosody_analyze.schema import EVENT_SCHEMA, METRIC_SCHEMA, SESSION_SCHEMA, conform

START = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)
RUN_S = 2 * 3600
BATCHES = 50


def _sessions(count: int) -> pl.DataFrame:
    index = pl.int_range(0, count, eager=True).alias("i")
    frame = pl.DataFrame(index)
    # Batches like the swarm's: each batch joins within 10 s, then the load holds until the next one.
    per_batch = count // BATCHES
    batch_window_us = RUN_S * 0.8 * 1e6 / BATCHES
    start_us = (
        (pl.col("i") // per_batch) * batch_window_us + (pl.col("i") % per_batch) * (10e6 / per_batch)
    ).cast(pl.Int64)
    first = pl.lit(START) + pl.duration(microseconds=start_us)
    failed = (pl.col("i") % 47) == 0
    jitter = (pl.col("i") * 7919 % 1000).cast(pl.Float64) / 1000
    return conform(
        frame.with_columns(
            origin=pl.lit("server"),
            session=pl.format("c2s{}@x", pl.col("i")),
            file=pl.lit("prosody.log"),
            batch=(pl.col("i") * BATCHES // count).cast(pl.Int32),
            jid=pl.format("user{}@meet.example.org/res{}", pl.col("i"), pl.col("i") % 97),
            room=pl.format("room-{}", pl.col("i") // 50),
            first_ts=first,
            connected_ts=first + pl.duration(milliseconds=5),
            authenticated_ts=first + pl.duration(milliseconds=25),
            bound_ts=first + pl.duration(milliseconds=40),
            joined_ts=pl.when(~failed).then(first + pl.duration(milliseconds=200)),
            left_ts=pl.when(~failed).then(pl.lit(START) + pl.duration(seconds=RUN_S)),
            last_ts=pl.lit(START) + pl.duration(seconds=RUN_S),
            connect_s=0.005 + jitter * 0.01,
            auth_s=0.02 + jitter * 0.05,
            bind_s=0.015 + jitter * 0.01,
            join_s=pl.when(~failed).then(0.1 + jitter * 0.5),
            outcome=pl.when(failed).then(pl.lit("failed")).otherwise(pl.lit("joined")),
            failed_stage=pl.when(failed).then(pl.lit("joined")),
            error=pl.when(failed).then(pl.lit("server rejected WebSocket connection: HTTP 500")),
            http_status=pl.when(failed).then(pl.lit(500)),
        ),
        SESSION_SCHEMA,
    )


ROUTINE_KINDS = ["websocket_frame", "ping", "unknown", "websocket_frame", "sm_enabled", "unknown", "ping"]


def _events(count: int, sessions: int) -> pl.DataFrame:
    """Routine traffic, with HTTP 500s in one burst (minute 40 to 42) and a trickle elsewhere."""
    frame = pl.DataFrame(pl.int_range(0, count, eager=True).alias("seq"))
    offset_us = (pl.col("seq") * (RUN_S * 1e6 / count)).cast(pl.Int64)
    in_burst = offset_us.is_between(2400 * 10**6, 2520 * 10**6)
    error = ((pl.col("seq") % 9973) == 0) | (in_burst & ((pl.col("seq") % 37) == 0))
    routine = (pl.col("seq") % len(ROUTINE_KINDS)).replace_strict(dict(enumerate(ROUTINE_KINDS)))
    session = pl.col("seq") * sessions // count
    return conform(
        frame.with_columns(
            ts=pl.lit(START) + pl.duration(microseconds=offset_us),
            file=pl.lit("prosody.log"),
            origin=pl.lit("server"),
            source=pl.format("c2s{}", session),
            level=pl.lit("debug"),
            kind=pl.when(error).then(pl.lit("http_error")).otherwise(routine),
            session=pl.format("c2s{}@x", session),
            http_status=pl.when(error).then(pl.lit(500)),
            message=pl.format("Received[c2s]: <r xmlns='urn:xmpp:sm:3'/> #{}", pl.col("seq")),
        ),
        EVENT_SCHEMA,
    )


def _metrics() -> pl.DataFrame:
    """RSS, CPU counter and network counter every second, RSS growing with the ramp."""
    seconds = pl.DataFrame(pl.int_range(0, RUN_S, eager=True).alias("s"))
    ts = pl.lit(START) + pl.duration(seconds=pl.col("s"))
    batch_s = RUN_S * 0.8 / BATCHES
    ramp = pl.min_horizontal(
        (pl.col("s") // batch_s + 1) / BATCHES, pl.lit(1.0)
    )  # RSS steps with the batches
    frames = [
        seconds.select(
            ts=ts,
            metric=pl.lit("process_resident_memory_bytes"),
            value=(60 + 9000 * ramp) * 2**20,
            unit=pl.lit("bytes"),
        ),
        seconds.select(
            ts=ts, metric=pl.lit("process_cpu_seconds_total"), value=pl.col("s") * 0.6, unit=pl.lit("seconds")
        ),
        seconds.select(
            ts=ts,
            metric=pl.lit("container_network_transmit_bytes_total"),
            value=pl.col("s").cast(pl.Float64) * 250_000,
            unit=pl.lit("bytes"),
        ),
    ]
    return conform(
        pl.concat(frames).with_columns(labels=pl.lit(""), file=pl.lit("metrics.csv")), METRIC_SCHEMA
    )


def generate(directory: Path, events: int, sessions: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _events(events, sessions).write_parquet(directory / "events.parquet", compression="lz4")
    _sessions(sessions).write_parquet(directory / "sessions.parquet")
    _metrics().write_parquet(directory / "metrics.parquet")
    files = [
        {
            "path": "prosody.log",
            "size_bytes": events * 120,
            "sha256": "0" * 64,
            "format": "prosody-file",
            "lines": events,
            "events": events,
            "unparsed": 0,
            "first_ts": START.isoformat(),
            "last_ts": (START + timedelta(seconds=RUN_S)).isoformat(),
            "notes": [],
        }
    ]
    (directory / "ingest.json").write_text(
        json.dumps({"events": events, "sessions": sessions, "files": files, "captures": []})
    )


CHILD = """
import json, sys, time
from pathlib import Path
from prosody_analyze.report import write_report
started = time.perf_counter()
result = write_report(sys.argv[1], sys.argv[2], redact=sys.argv[3] == "1", limit="15000Mi")
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) generating parent.
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
peak_mib = int(hwm.split()[1]) / 1024
print(json.dumps({"seconds": seconds, "size_bytes": result.size_bytes, "peak_rss_mib": peak_mib}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sessions", type=int, default=500_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        started = time.perf_counter()
        generate(work / "analysis", args.events, args.sessions)
        size = sum(p.stat().st_size for p in (work / "analysis").iterdir()) / 2**20
        print(
            f"generated {args.events:,} events, {args.sessions:,} sessions ({size:,.0f} MiB of parquet) "
            f"in {time.perf_counter() - started:.1f} s (not timed below)"
        )
        for redact in (False, True):
            out = work / f"report{'-redacted' if redact else ''}.html"
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(work / "analysis"), str(out), str(int(redact))],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            verdict = "OK" if figures["size_bytes"] < 10e6 and figures["seconds"] < 30 else "OVER TARGET"
            print(
                f"report{' --redact' if redact else ''}: {figures['size_bytes'] / 1e6:.2f} MB, "
                f"{figures['seconds']:.1f} s, peak RSS {figures['peak_rss_mib']:,.0f} MiB "
                f"(targets < 10 MB, < 30 s: {verdict})"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
