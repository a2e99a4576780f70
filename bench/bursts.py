"""Time `find_bursts` on a large synthetic run (default 10 million events) and print the figures.

The events look like a real ramp: mostly Prosody debug lines and client joins over two hours,
stray errors at a low rate, and one planted burst of 5,000 HTTP 500s in 30 s with hibernation
timeouts around it. The bench checks the burst is found where it was planted.

    .venv/bin/python bench/bursts.py [--events 10000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from prosody_analyze.bursts import find_bursts
from prosody_analyze.schema import EVENTS_FILE, SESSION_SCHEMA, SESSIONS_FILE, conform

START = datetime(2026, 1, 1, tzinfo=UTC)
RUN_S = 7200
BURST_AT_S, BURST_S, BURST_ERRORS = 4000, 30, 5000
MESSAGES = {
    "unknown": "Received[c2s]: <presence from='x@localhost/abc' to='demo0@conference.localhost/nick'>",
    "websocket_frame": "Websocket received frame: opcode=1, 412 bytes",
    "http_request": "GET /xmpp-websocket",
    "stanza_error": "Sending[c2s]: <presence type='error'> Could not route stanza to remote",
    "hibernation_timeout": "mod_smacks hibernation timeout reached...",
    "http_error": "Unexpected server response: 500",
}


def synthetic_events(count: int, rng: np.random.Generator) -> pl.DataFrame:
    """`count` events, 1 in 20,000 of them stray errors, plus the planted burst."""
    background = count - BURST_ERRORS
    kinds = rng.choice(
        ["unknown", "websocket_frame", "http_request", "stanza_error", "hibernation_timeout"],
        size=background,
        p=[0.6, 0.3, 0.09995, 0.00004, 0.00001],
    )
    seconds = np.concatenate(
        [rng.uniform(0, RUN_S, background), BURST_AT_S + rng.uniform(0, BURST_S, BURST_ERRORS)]
    )
    kinds = np.concatenate([kinds, np.full(BURST_ERRORS, "http_error")])
    frame = pl.DataFrame({"seconds": seconds, "kind": kinds}).with_columns(
        (pl.lit(START) + pl.duration(microseconds=(pl.col("seconds") * 1e6).cast(pl.Int64))).alias("ts"),
        pl.when(pl.col("kind") == "http_error").then(pl.lit("client")).otherwise(pl.lit("server")).alias(
            "origin"
        ),
        # Distinct texts, as real logs have (ids, stanzas): no dictionary-encoding shortcut.
        pl.format("{} id={}", pl.col("kind").replace_strict(MESSAGES), pl.int_range(pl.len())).alias(
            "message"
        ),
        pl.when(pl.col("kind") == "http_error").then(pl.lit(500)).alias("http_status"),
        (pl.col("seconds") // 600 + 1).cast(pl.Int32).alias("batch"),
        pl.format("demo{}", pl.int_range(pl.len()) % 200).alias("room"),
    )
    client = pl.col("origin") == "client"
    frame = frame.sort("ts").with_columns(
        pl.when(client).then(pl.lit("client.log")).otherwise(pl.lit("prosody.log")).alias("file"),
        pl.int_range(1, pl.len() + 1).cast(pl.Int64).alias("seq"),
    )
    return conform(frame)


def synthetic_sessions(count: int, rng: np.random.Generator) -> pl.DataFrame:
    starts = np.sort(rng.uniform(0, RUN_S - 600, count))
    return conform(
        pl.DataFrame({"start": starts}).select(
            pl.lit("client").alias("origin"),
            pl.format("p{}", pl.int_range(pl.len())).alias("session"),
            (pl.lit(START) + pl.duration(microseconds=(pl.col("start") * 1e6).cast(pl.Int64))).alias(
                "first_ts"
            ),
            (pl.lit(START) + pl.duration(seconds=RUN_S)).alias("last_ts"),
        ),
        SESSION_SCHEMA,
    )


def measure(analysis: Path) -> dict:
    """find_bursts in this (fresh) process: wall time and this process's peak RSS."""
    began = time.perf_counter()
    report = find_bursts(analysis, bin="10s")
    elapsed = time.perf_counter() - began
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
    status = Path("/proc/self/status").read_text()
    peak_kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    peak_rss_mb = int(peak_kib) / 1024
    return {"seconds": elapsed, "peak_rss_mb": peak_rss_mb, "report": report.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sessions", type=int, default=50_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    rng = np.random.default_rng(42)
    with tempfile.TemporaryDirectory() as scratch:
        analysis = Path(scratch)
        began = time.perf_counter()
        synthetic_events(args.events, rng).write_parquet(analysis / EVENTS_FILE)
        synthetic_sessions(args.sessions, rng).write_parquet(analysis / SESSIONS_FILE)
        generated = time.perf_counter() - began
        size_mb = (analysis / EVENTS_FILE).stat().st_size / 1e6
        # A fresh process, so the peak RSS is find_bursts' own, not the generator's.
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(analysis)], capture_output=True, text=True, check=True
        )
        measured = json.loads(child.stdout)
    report = measured["report"]
    elapsed = measured["seconds"]
    print(f"events: {args.events:,} ({size_mb:.0f} MB parquet, generated in {generated:.1f} s); "
          f"sessions: {args.sessions:,}")
    print(f"find_bursts: {elapsed:.2f} s ({args.events / elapsed / 1e6:.1f} M events/s), "
          f"peak RSS {measured['peak_rss_mb']:,.0f} MB")
    print(f"bursts found: {len(report['bursts'])}; baseline {report['baseline_per_s']:.3g} errors/s")
    for burst in report["bursts"]:
        print(
            f"  {burst['start']} → {burst['end']}: {burst['count']:,} errors, "
            f"peak {burst['peak_rate_per_s']:.0f}/s, kinds {burst['kinds']}, "
            f"{burst['participants_connected_at_start']:,} connected at start"
        )
    planted = START + timedelta(seconds=BURST_AT_S)
    found = any(
        datetime.fromisoformat(b["start"]) <= planted + timedelta(seconds=10)
        and datetime.fromisoformat(b["end"]) >= planted + timedelta(seconds=BURST_S)
        for b in report["bursts"]
    )
    print(f"planted burst at {planted:%H:%M:%S} UTC found: {'yes' if found else 'NO'}")


if __name__ == "__main__":
    main()
