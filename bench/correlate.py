"""Time `correlate` on a large synthetic run (default 10 million sessions) and print the figures.

Half the sessions are clients (as the load generator logs them), half the server's view of the
same participants (same JID, joined 2.5 s earlier on the server's clock, whole seconds like
Prosody's file log), so the clock offset estimate runs on millions of pairs too. Participants
join in waves over 24 hours and stay 10-30 minutes; RSS and a CPU-seconds counter are sampled
each second (metrics.parquet) and a Grafana-like ``timestamp,value`` CSV holds RSS each 15 s.
The bench checks the load at a few times by direct count and the offset against the planted skew.

    .venv/bin/python bench/correlate.py [--sessions 10000000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from prosody_analyze.correlate import clock_offset, correlate, load_at_times
from prosody_analyze.schema import METRIC_SCHEMA, METRICS_FILE, SESSION_SCHEMA, SESSIONS_FILE, conform

START = datetime(2026, 1, 1, tzinfo=UTC)
RUN_S = 24 * 3600
SKEW_S = 2.5  # client clock ahead of the server's


def synthetic_sessions(per_side: int) -> pl.DataFrame:
    """Clients joining at random times over the run, and the same participants seen by the server."""
    index = pl.int_range(per_side, eager=True)
    join_us = (pl.Series(index).hash(1) % (RUN_S * 1_000_000)).cast(pl.Int64)
    stay_us = (pl.Series(index).hash(2) % (1200 * 1_000_000) + 600 * 1_000_000).cast(pl.Int64)
    base = pl.DataFrame({"i": index, "join_us": join_us, "stay_us": stay_us}).with_columns(
        jid=pl.format("u{}@localhost/r", "i"),
        room=pl.format("room-{}", pl.col("i") % 1000),
    )
    start = pl.lit(START)

    def side(origin: str, shift_s: float, whole_seconds: bool) -> pl.DataFrame:
        joined = start + pl.duration(microseconds=pl.col("join_us") + int(shift_s * 1e6))
        if whole_seconds:
            joined = joined.dt.truncate("1s")
        return base.select(
            origin=pl.lit(origin),
            session=pl.format("{}-{}", pl.lit(origin), "i"),
            jid="jid",
            room="room",
            first_ts=joined - pl.duration(seconds=1),
            connected_ts=joined - pl.duration(seconds=1),
            joined_ts=joined,
            left_ts=joined + pl.duration(microseconds="stay_us"),
            last_ts=joined + pl.duration(microseconds="stay_us"),
        )

    return conform(pl.concat([side("client", SKEW_S, False), side("server", 0.0, True)]), SESSION_SCHEMA)


def synthetic_metrics() -> pl.DataFrame:
    """RSS and a CPU counter each second over the run."""
    ts = pl.datetime_range(START, START + timedelta(seconds=RUN_S), "1s", eager=True, time_zone="UTC")
    seconds = pl.int_range(ts.len(), eager=True).cast(pl.Float64)
    rss = pl.DataFrame({"ts": ts, "metric": "process_resident_memory_bytes", "labels": 'pid="1"',
                        "value": 17e6 + seconds * 100.0, "unit": "bytes", "file": "bench"})
    cpu = rss.with_columns(metric=pl.lit("process_cpu_seconds_total"), value=seconds * 0.05,
                           unit=pl.lit("seconds"))
    return conform(pl.concat([rss, cpu]), METRIC_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000_000, help="sessions in all (half clients)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        analysis = Path(scratch)
        began = time.perf_counter()
        sessions = synthetic_sessions(args.sessions // 2)
        sessions.write_parquet(analysis / SESSIONS_FILE)
        metrics = synthetic_metrics()
        metrics.write_parquet(analysis / METRICS_FILE)
        ram_csv = analysis / "ram.csv"
        metrics.filter(pl.col("metric") == "process_resident_memory_bytes").gather_every(15).select(
            timestamp=pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ"), value="value"
        ).write_csv(ram_csv)
        print(f"generated {sessions.height:,} sessions and {metrics.height:,} metric samples "
              f"in {time.perf_counter() - began:.1f} s")

        began = time.perf_counter()
        connected, joined, _ = load_at_times(sessions, metrics["ts"])
        load_s = time.perf_counter() - began
        began = time.perf_counter()
        offset = clock_offset(sessions)
        offset_s = time.perf_counter() - began
        # Check a few sample times by counting the client sessions in the room at that instant.
        clients = sessions.filter(pl.col("origin") == "client")
        for index in range(0, metrics.height // 2, metrics.height // 10):
            at = metrics["ts"][index]
            inside = clients.filter((pl.col("joined_ts") <= at) & (pl.col("left_ts") > at)).height
            if inside != joined[index]:
                raise SystemExit(f"load at {at}: {joined[index]} joined, counted {inside}")
        del sessions, clients

        began = time.perf_counter()
        result = correlate(analysis, [ram_csv], out_dir=analysis, every="10m")
        total_s = time.perf_counter() - began
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"load_at_times: load at {metrics.height:,} sample times in {load_s:.2f} s; "
          f"peak joined {joined.max():,}, connected {connected.max():,}")
    print(f"clock_offset: {offset.pairs:,} pairs by {offset.matched_by} in {offset_s:.2f} s; "
          f"offset {offset.seconds:+.3f} s (planted {SKEW_S:+.1f} s)")
    print(f"correlate (read {args.sessions:,} sessions + metrics, load, as-of join, rates, offset, "
          f"write correlated.parquet, per-10m table): {total_s:.2f} s")
    print(f"correlated samples: {result.samples:,}; intervals: {result.intervals.height:,}; "
          f"peak RSS of this process: {peak_mib:,.0f} MiB")
    if abs(offset.seconds - SKEW_S) > 0.01:
        raise SystemExit(f"offset {offset.seconds} differs from the planted {SKEW_S}")


if __name__ == "__main__":
    main()
