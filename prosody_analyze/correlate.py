"""Metrics against the load: how many participants were there when each sample was taken.

:func:`correlate` reads an analysis directory (``sessions.parquet`` from ``ingest``, and its
``metrics.parquet`` when present) and metric files (anything :func:`metrics.read_metrics`
reads), turns counters into rates (CPU seconds -> cores), attaches to each sample the load in
force at its time, and writes ``correlated.parquet``:

``correlated.parquet`` — long form, one row per metric sample, sorted by metric, labels, ts:

======== ======================= ==========================================================
ts       Datetime(us, UTC)       time of the sample
metric   String                  metric name; a counter ``x_total`` appears as ``x:rate``
labels   String                  Prometheus-style ``k="v",…`` ("" when none)
unit     String                  base unit of value: bytes, bytes/s, seconds, cores, %, ""
value    Float64                 value in that unit
connected Int64                  participants connected at ts (load.load_over_time)
joined   Int64                   participants joined (in a room) at ts
file     String                  the file the sample came from
======== ======================= ==========================================================

The load is the step function of :func:`load.load_over_time` (it holds until the next join or
leave), so each sample takes the last step at or before it — an as-of join, computed as
"sessions started by then minus sessions ended by then" with two binary searches over the
sorted starts and ends, which needs no step table (seconds on 10 million sessions).
``tolerance`` bounds how far outside the logged period a sample still gets a load
(0 participants before the first and after the last session): samples further away get
null ``connected``/``joined``, they are not guessed.

When both client and server sessions exist, :func:`clock_offset` estimates how far the
client's clock is ahead of the server's from the same participants' joins. The load then follows
the client's clock, so a ``--metrics`` sample taken on the server's clock (Prometheus, Grafana:
``metrics_clock="server"``) gets the load in force at its time on the client's clock. An offset
within the server log's time resolution is not applied, nor to the capture's own metrics (the
swarm samples them on the client's host).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from .errors import UserError
from .load import load_sessions
from .metrics import check_tz, read_metrics, with_rates
from .schema import METRICS_FILE, SESSIONS_FILE

CORRELATED_FILE = "correlated.parquet"
METRICS_CLOCKS = ("server", "client")  # which clock the --metrics files' times follow
# Per interval, the analysis dir's own metrics show only these units (its scrape has dozens of series);
# every series of a --metrics file is shown.
RESOURCE_UNITS = ("bytes", "bytes/s", "cores")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
OFFSET_SAMPLE = 100_000  # client joins matched at most for the clock offset
_SESSION_COLUMNS = ["origin", "jid", "room", "first_ts", "last_ts", "connected_ts", "joined_ts", "left_ts"]


def parse_duration(text: str, option: str) -> timedelta:
    """``30s``, ``1m30s``, ``500ms``, ``2h`` (polars' duration syntax) as a timedelta."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UserError(f"{option} {text!r} is not a duration like 30s, 1m30s, 500ms or 2h")
    total = timedelta()
    for number, unit in parts:
        total += timedelta(**{_DURATION_UNITS[unit]: int(number)})
    if total <= timedelta():
        raise UserError(f"{option} {text!r} must be longer than zero")
    return total


@dataclass
class ClockOffset:
    """Client clock minus server clock, median over matched joins (seconds)."""

    seconds: float
    pairs: int
    matched_by: str  # "jid" or "order in room"
    spread_s: float  # interquartile range of the differences
    resolution_s: float  # 1.0 when server times are whole seconds (file log), else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "pairs": self.pairs,
            "matched_by": self.matched_by,
            "spread_s": self.spread_s,
            "resolution_s": self.resolution_s,
        }


def clock_offset(sessions: pl.DataFrame) -> ClockOffset | None:
    """How far the clients' clock runs ahead of the server's, from the same participants' joins.

    A client participant and a server session match by full JID (the client logs the JID it
    was bound to); without JIDs, the k-th join of a room on one side matches the k-th on the
    other. The median difference resists the few mismatches. Server file logs have one-second
    resolution: their times then count from the middle of their second. None without both sides.
    """
    joins = sessions.filter(pl.col("joined_ts").is_not_null()).select("origin", "jid", "room", "joined_ts")
    client = joins.filter(pl.col("origin") == "client").drop("origin")
    server = joins.filter(pl.col("origin") == "server").drop("origin")
    if client.height == 0 or server.height == 0:
        return None
    if client.height > OFFSET_SAMPLE and client["jid"].null_count() < client.height:
        # A median over this many JID pairs is as good as over millions, and much quicker.
        client = client.filter(pl.col("jid").is_not_null())
        client = client.gather_every(max(1, client.height // OFFSET_SAMPLE))
        server = server.filter(pl.col("jid").is_in(client["jid"].implode()))
    whole_seconds = (server["joined_ts"].dt.microsecond() == 0).all()
    if whole_seconds:
        server = server.with_columns(pl.col("joined_ts") + timedelta(milliseconds=500))
    by_jid = client.filter(pl.col("jid").is_not_null()).join(
        server.filter(pl.col("jid").is_not_null()).unique("jid", keep="first"), on="jid", suffix="_server"
    )
    matched_by, pairs = "jid", by_jid
    if by_jid.height == 0:
        ranked = [
            side.filter(pl.col("room").is_not_null()).with_columns(
                rank=pl.col("joined_ts").rank("ordinal").over("room")
            )
            for side in (client, server)
        ]
        matched_by, pairs = "order in room", ranked[0].join(ranked[1], on=["room", "rank"], suffix="_server")
    if pairs.height == 0:
        return None
    differences = pairs.select(
        seconds=(pl.col("joined_ts") - pl.col("joined_ts_server")).dt.total_microseconds() / 1e6
    )["seconds"]
    spread = differences.quantile(0.75) - differences.quantile(0.25)
    return ClockOffset(
        float(differences.median()), pairs.height, matched_by, float(spread), 1.0 if whole_seconds else 0.0
    )


@dataclass
class CorrelateResult:
    """What :func:`correlate` found; ``intervals`` is what the CLI prints."""

    correlated: pl.DataFrame  # the long table written as correlated.parquet
    intervals: pl.DataFrame  # ts (interval start), connected, joined, one column per shown series
    units: dict[str, str]  # shown series column -> base unit
    every: str
    samples: int
    samples_without_load: int  # further than the tolerance outside the logged period
    load_source: str  # "client" or "server" sessions
    clock: ClockOffset | None
    clock_applied_s: float  # added to the --metrics samples' times to find their load (0: none)
    out_path: Path | None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "samples_without_load": self.samples_without_load,
            "load_source": self.load_source,
            "clock_offset": self.clock.to_dict() if self.clock else None,
            "clock_applied_s": self.clock_applied_s,
            "out": str(self.out_path) if self.out_path else None,
            "files": self.files,
            "every": self.every,
            "units": self.units,
            "intervals": [
                {**row, "ts": row["ts"].isoformat().replace("+00:00", "Z")}
                for row in self.intervals.iter_rows(named=True)
            ],
        }


def load_at_times(sessions: pl.DataFrame, times: pl.Series) -> tuple[pl.Series, pl.Series, tuple | None]:
    """(connected, joined) at each of ``times`` as load.load_at(load_over_time(sessions)) gives them,
    and the (first, last) time of the load's steps (None without sessions).

    A step at t counts at t (backward as-of): started-by-t is a right-side search in the sorted
    starts, ended-by-t the same in the sorted ends of the sessions that counted as started.
    """
    chosen = load_sessions(sessions)
    end = pl.coalesce("left_ts", "last_ts")
    counts, bounds = [], []
    for start in (pl.coalesce("connected_ts", "first_ts"), pl.col("joined_ts")):
        starts = chosen.select(start.alias("t")).drop_nulls().sort("t")["t"]
        ends = chosen.filter(start.is_not_null() & end.is_not_null() & (end >= start)).select(end.alias("t"))
        ends = ends.sort("t")["t"]
        started = starts.search_sorted(times, side="right").cast(pl.Int64)
        ended = ends.search_sorted(times, side="right").cast(pl.Int64)
        counts.append(started - ended)
        bounds += [s for s in (starts, ends) if s.len()]
    if not bounds:
        return counts[0], counts[1], None
    span = (min(s[0] for s in bounds), max(s[-1] for s in bounds))
    return counts[0].alias("connected"), counts[1].alias("joined"), span


def _applied_offset(clock: ClockOffset | None, metrics_clock: str) -> float:
    """Seconds to add to a --metrics sample's time to read the load at it: the clock offset (found
    only with client sessions, which the load then follows) when the samples follow the server's
    clock, and the offset is larger than the server log's time resolution (inside it, it is not
    known to be an offset at all)."""
    if clock is None or metrics_clock != "server":
        return 0.0
    return clock.seconds if abs(clock.seconds) > clock.resolution_s else 0.0


def _read_sessions(analysis_dir: Path) -> pl.DataFrame:
    path = analysis_dir / SESSIONS_FILE
    if not path.is_file():
        raise UserError(f"{analysis_dir}: no {SESSIONS_FILE}; run `prosody-analyze ingest` first")
    try:
        return pl.read_parquet(path, columns=_SESSION_COLUMNS)
    except (pl.exceptions.PolarsError, OSError):
        raise UserError(f"{path}: not a sessions table written by `prosody-analyze ingest`") from None


def _series_name(metric: pl.Expr, labels: pl.Expr) -> pl.Expr:
    with_labels = pl.concat_str(metric, pl.lit("{"), labels, pl.lit("}"))
    return pl.when(labels == "").then(metric).otherwise(with_labels)


def _intervals(correlated: pl.DataFrame, every: str) -> tuple[pl.DataFrame, dict[str, str]]:
    """Per interval: the most participants seen at the samples, and each shown series' mean."""
    shown = correlated.filter(pl.col("_from_file") | pl.col("unit").is_in(RESOURCE_UNITS)).with_columns(
        series=_series_name(pl.col("metric"), pl.col("labels"))
    )
    binned = correlated.with_columns(bin=pl.col("ts").dt.truncate(every))
    load = binned.group_by("bin").agg(pl.col("connected").max(), pl.col("joined").max())
    units = dict(shown.select("series", "unit").unique("series", keep="first").sort("series").iter_rows())
    if shown.height == 0:
        return load.rename({"bin": "ts"}).sort("ts"), units
    values = (
        shown.with_columns(bin=pl.col("ts").dt.truncate(every))
        .group_by("bin", "series")
        .agg(pl.col("value").mean())
        .pivot(on="series", index="bin", values="value")
    )
    table = load.join(values, on="bin", how="left").rename({"bin": "ts"}).sort("ts")
    return table.select("ts", "connected", "joined", *units), units


def correlate(
    analysis_dir: Path | str,
    metric_paths: list[Path] | list[str] | tuple = (),
    out_dir: Path | str | None = None,
    tolerance: str = "30s",
    every: str = "10s",
    tz: str | None = None,
    metrics_clock: str = "server",
) -> CorrelateResult:
    """Attach the load to every metric sample, write ``correlated.parquet`` to ``out_dir`` (see module doc).

    Metrics come from ``metric_paths`` plus ``analysis_dir/metrics.parquet`` when present.
    ``tz`` is the zone of exports whose dates have no offset (Grafana formatted data).
    ``metrics_clock`` says which clock the times of ``metric_paths`` follow: ``server`` or ``client``.
    """
    analysis_dir = Path(analysis_dir)
    slack = parse_duration(tolerance, "--tolerance")
    parse_duration(every, "--every")
    check_tz(tz)
    if metrics_clock not in METRICS_CLOCKS:
        raise UserError(f"--metrics-clock must be one of {', '.join(METRICS_CLOCKS)}, got {metrics_clock!r}")
    if not analysis_dir.is_dir():
        raise UserError(f"{analysis_dir}: not a directory (want the output of `prosody-analyze ingest`)")
    sessions = _read_sessions(analysis_dir)
    tables = [read_metrics(Path(p), tz=tz).with_columns(_from_file=pl.lit(True)) for p in metric_paths]
    own = analysis_dir / METRICS_FILE
    if own.is_file():
        tables.append(read_metrics(own).with_columns(_from_file=pl.lit(False)))
    if not tables:
        raise UserError(f"{analysis_dir}: no {METRICS_FILE} and no --metrics file: nothing to correlate")
    metrics = with_rates(pl.concat(tables, how="vertical_relaxed"))

    has_client = sessions.filter(pl.col("origin") == "client").height > 0
    clock = clock_offset(sessions)
    applied = _applied_offset(clock, metrics_clock)
    # The time on the load's clock at which each sample was taken.
    at = pl.col("ts") + pl.when(pl.col("_from_file")).then(timedelta(seconds=applied)).otherwise(timedelta())
    load_times = metrics.select(at.alias("at"))["at"]
    connected, joined_count, span = load_at_times(sessions, load_times)
    joined = metrics.with_columns(connected=connected, joined=joined_count)
    if span is None:
        joined = joined.with_columns(connected=pl.lit(None, pl.Int64), joined=pl.lit(None, pl.Int64))
    else:
        outside = (load_times < span[0] - slack) | (load_times > span[1] + slack)
        joined = joined.with_columns(
            pl.when(outside).then(None).otherwise(pl.col(c)).alias(c) for c in ("connected", "joined")
        )
    joined = joined.sort("metric", "labels", "ts")
    correlated = joined.select("ts", "metric", "labels", "unit", "value", "connected", "joined", "file")

    out_path = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        out_path = Path(out_dir) / CORRELATED_FILE
        correlated.write_parquet(out_path)
    intervals, units = _intervals(joined, every)
    return CorrelateResult(
        correlated=correlated,
        intervals=intervals,
        units=units,
        every=every,
        samples=correlated.height,
        samples_without_load=correlated["joined"].null_count(),
        load_source="client" if has_client else "server",
        clock=clock,
        clock_applied_s=applied,
        out_path=out_path,
        files=[str(p) for p in metric_paths] + ([str(own)] if own.is_file() else []),
    )
