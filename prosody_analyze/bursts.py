"""Error bursts: runs of errors whose rate stands well above the run's own baseline.

Method (quoted by the README):

1. Error events are ``http_error`` (clients' refused WebSocket upgrades such as
   ``Unexpected server response: 500``, server-side HTTP errors), ``stanza_error``,
   ``conference_error``/``conference_timeout``, ``traceback``, ``hibernation_timeout`` and
   ``disconnected`` events that carry an error. They are grouped in families (http, stanza,
   conference, traceback, hibernation, disconnect).
2. Timed events are counted per family in fixed bins (default 10 s) from the first to the
   last event of the run, empty bins included. Events without a time (``kubectl logs`` of the
   console sink) cannot be placed in time: they are binned by their order in their file
   (``seq``, 100 events a bin), per file, and their bursts give lines, not times.
3. Each family's baseline rate λ is the mean count of its bins that are not flagged, floored
   at one event per run (1 / number of bins) so that a family that is silent outside its
   burst still has a finite baseline. A bin is flagged when P(X ≥ count | Poisson(λ)) is below
   alpha / (bins × families) — Bonferroni over every test made, so with the default
   alpha = 0.001 a whole run has less than a 0.1 % chance of one false burst. Flagged bins are
   left out of the baseline and the test repeated until the flags no longer change (a burst
   must not inflate its own baseline).
4. Adjacent flagged bins (any family) merge into one burst; its count, kinds, files, batches
   and rooms cover every error event in its window, and the server events in the window
   (hibernation timeouts, sessions destroyed, tracebacks, HTTP errors) are counted beside.

``bursts.json`` (``BurstReport.to_dict()``)::

    {"method": str, "bin_s": float, "alpha": float,
     "baseline_per_s": float,                     # all timed families together
     "baseline_by_family": {family: per_s},
     "errors_by_kind": {kind: n},                 # the whole run
     "untimed_files": [file, ...],                # binned by line order, not time
     "bursts": [{"start": ISO UTC | null, "end": ISO UTC | null,
                 "file": str | null, "start_seq": int | null, "end_seq": int | null,  # untimed
                 "count": int, "expected": float, "p_value": float,
                 "peak_rate_per_s": float | null, "kinds": {kind: n}, "http_statuses": {status: n},
                 "files": [...], "batches": [...], "rooms": [...],
                 "participants_connected_at_start": int | null,
                 "server_events": {kind: n}, "examples": [message, ...],
                 "signatures": [signature, ...]}],
     "signatures": [{"name", "explanation", "count", "first_ts", "examples"}]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from .errors import UserError
from .load import load_at, load_over_time
from .schema import EVENTS_FILE, SESSIONS_FILE, scan_events
from .signatures import example_text, http_500_signature, signature_hits, summarize
from .swarm.config import parse_duration

BURSTS_FILE = "bursts.json"
SEQ_BIN = 100  # events per bin for files without times
EXAMPLES = 3
MAX_LISTED = 50  # rooms/files/batches listed per burst
ERROR_FAMILIES = {
    "http_error": "http",
    "stanza_error": "stanza",
    "conference_error": "conference",
    "conference_timeout": "conference",
    "traceback": "traceback",
    "hibernation_timeout": "hibernation",
    "disconnected": "disconnect",
}
SERVER_CONTEXT_KINDS = ["hibernation_timeout", "session_destroyed", "traceback", "http_error"]
TIMED = ""  # the group of every timed event; untimed events are grouped by their file


def is_error() -> pl.Expr:
    kind = pl.col("kind").cast(pl.String)
    plain = [k for k in ERROR_FAMILIES if k != "disconnected"]
    disconnect_error = (kind == "disconnected") & (pl.col("error").fill_null("") != "")
    return kind.is_in(plain) | disconnect_error


def _server_context() -> pl.Expr:
    return (pl.col("origin") == "server") & pl.col("kind").cast(pl.String).is_in(SERVER_CONTEXT_KINDS)


def _client_500() -> pl.Expr:
    return (pl.col("origin") == "client") & (pl.col("kind") == "http_error") & (pl.col("http_status") == 500)


def _server_traceback() -> pl.Expr:
    return (pl.col("origin") == "server") & (pl.col("kind") == "traceback")


@dataclass
class BurstReport:
    method: str
    bin_s: float
    alpha: float
    baseline_per_s: float
    baseline_by_family: dict[str, float] = field(default_factory=dict)
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    untimed_files: list[str] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)
    signatures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _method(bin_s: float, alpha: float) -> str:
    return (
        f"error counts per family in {bin_s:g} s bins (untimed files: {SEQ_BIN} events a bin, by line "
        f"order); a bin is a burst when P(X >= count) under Poisson(baseline) < {alpha:g} / (bins x "
        "families); baseline = mean of the unflagged bins (at least 1 event per run), recomputed "
        "without flagged bins until stable; adjacent flagged bins merged"
    )


def _flag(counts: pl.DataFrame, alpha: float) -> pl.DataFrame:
    """Poisson test of each (group, family, bin) count against its family's robust baseline.

    ``counts`` has group, family, bin, n (non-zero counts only) and bins (bins in the group).
    Returns it with lam (baseline per bin), p and flagged.
    """
    from scipy import stats  # here, not at the top: it takes a second to import, and only bursts need it

    families = counts.group_by("group").agg(pl.col("family").n_unique().alias("families"))
    frame = (
        counts.join(families, on="group")
        .with_columns(pl.lit(False).alias("flagged"))
        .sort("group", "family", "bin")  # joins do not keep row order: every pass re-reads the columns
    )
    for _ in range(50):
        frame = frame.drop("lam", strict=False).join(
            frame.group_by("group", "family").agg(
                pl.max_horizontal(
                    pl.col("n").filter(~pl.col("flagged")).sum()
                    / (pl.col("bins").first() - pl.col("flagged").sum()),
                    1 / pl.col("bins").first(),
                ).alias("lam")
            ),
            on=["group", "family"],
            maintain_order="left",
        )
        p = stats.poisson.sf(frame["n"].to_numpy() - 1, frame["lam"].to_numpy())
        flagged = p < (alpha / (frame["bins"] * frame["families"])).to_numpy()
        done = bool((flagged == frame["flagged"].to_numpy()).all())
        frame = frame.with_columns(pl.Series("p", p), pl.Series("flagged", flagged))
        if done:
            break
    return frame


def _merge(flagged: pl.DataFrame) -> pl.DataFrame:
    """Adjacent flagged bins of a group become one burst: group, bin, burst."""
    bins = flagged.select("group", "bin").unique().sort("group", "bin")
    new_burst = (pl.col("group") != pl.col("group").shift(1)) | (pl.col("bin") - pl.col("bin").shift(1) > 1)
    return bins.with_columns(new_burst.fill_null(True).cum_sum().alias("burst"))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _counts(frame: pl.DataFrame, column: str) -> dict[str, dict[str, int]]:
    """burst -> {value: n} for a column, most frequent first."""
    rows = (
        frame.filter(pl.col(column).is_not_null())
        .group_by("burst", column)
        .len()
        .sort("burst", "len", descending=[False, True])
    )
    result: dict[str, dict[str, int]] = {}
    for burst, value, n in rows.iter_rows():
        result.setdefault(burst, {})[str(value)] = n
    return result


def _distinct(frame: pl.DataFrame, column: str) -> dict[int, list[Any]]:
    rows = (
        frame.filter(pl.col(column).is_not_null())
        .group_by("burst")
        .agg(pl.col(column).unique().sort().head(MAX_LISTED))
    )
    return dict(rows.iter_rows())


def _load_at_starts(analysis_dir: Path, starts: list[datetime | None]) -> list[int | None]:
    sessions_path = analysis_dir / SESSIONS_FILE
    timed = [s for s in starts if s is not None]
    if not timed or not sessions_path.exists():
        return [None] * len(starts)
    load = load_over_time(pl.read_parquet(sessions_path))
    at = load_at(load, pl.DataFrame({"ts": timed}, schema={"ts": pl.Datetime("us", "UTC")}))
    connected = dict(zip(at["ts"].to_list(), at["connected"].to_list(), strict=True))
    return [connected.get(s) if s is not None else None for s in starts]


def find_bursts(
    analysis_dir: Path | str, bin: str | float = "10s", alpha: float = 0.001, write: bool = True
) -> BurstReport:
    """Detect error bursts in an analysis directory and write ``bursts.json`` (module docstring)."""
    analysis_dir = Path(analysis_dir)
    bin_s = parse_duration(bin) if isinstance(bin, str) else float(bin)
    if bin_s <= 0:
        raise UserError(f"--bin must be positive, got {bin!r}")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be between 0 and 1, got {alpha}")
    events_path = analysis_dir / EVENTS_FILE
    if not events_path.exists():
        raise UserError(f"{analysis_dir}: no {EVENTS_FILE}; run `prosody-analyze ingest` first")
    events = scan_events(events_path)
    spans = events.select(
        pl.col("ts").min().alias("first"),
        pl.col("ts").max().alias("last"),
    ).collect()
    first, last = spans.row(0)
    if first is not None:  # bins on the clock (…:00, …:10), not on the first event
        first = first - timedelta(microseconds=int(first.timestamp() * 1_000_000) % int(bin_s * 1_000_000))
    files = (
        events.filter(pl.col("ts").is_null())
        .group_by("file")
        .agg((pl.col("seq").max() // SEQ_BIN + 1).alias("bins"))
        .collect()
    )
    untimed_files = sorted(files["file"].to_list())
    timed_bins = int((last - first).total_seconds() // bin_s) + 1 if first is not None else 0
    bin_us = int(bin_s * 1_000_000)

    timed = pl.col("ts").is_not_null()
    offset_bin = (pl.col("ts") - pl.lit(first)).dt.total_microseconds() // bin_us if first else pl.lit(0)
    context = (
        events.filter(is_error() | _server_context())
        .select(
            "ts",
            "file",
            "seq",
            "origin",
            "batch",
            "room",
            "kind",
            "http_status",
            example_text().alias("message"),
            is_error().alias("is_error"),
            pl.col("kind").cast(pl.String).replace_strict(ERROR_FAMILIES, default="other").alias("family"),
            pl.when(timed).then(pl.lit(TIMED)).otherwise(pl.col("file")).alias("group"),
            pl.when(timed).then(offset_bin).otherwise(pl.col("seq") // SEQ_BIN).cast(pl.Int64).alias("bin"),
        )
        .collect()
    )
    errors = context.filter("is_error")
    group_bins = pl.concat(
        [
            pl.DataFrame(
                {"group": [TIMED], "bins": [timed_bins]}, schema={"group": pl.String, "bins": pl.Int64}
            ),
            files.select(pl.col("file").alias("group"), pl.col("bins").cast(pl.Int64)),
        ]
    )
    counts = (
        errors.group_by("group", "family", "bin")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .join(group_bins, on="group")
    )
    tested = _flag(counts, alpha) if counts.height else counts
    baseline_by_family: dict[str, float] = {}
    if counts.height:
        baselines = tested.filter(pl.col("group") == TIMED).group_by("family").agg(pl.col("lam").first())
        baseline_by_family = {family: lam / bin_s for family, lam in baselines.sort("family").iter_rows()}

    hits = signature_hits(events).collect()
    report = BurstReport(
        method=_method(bin_s, alpha),
        bin_s=bin_s,
        alpha=alpha,
        baseline_per_s=sum(baseline_by_family.values()),
        baseline_by_family=baseline_by_family,
        errors_by_kind=dict(errors.group_by("kind").len().sort("len", descending=True).iter_rows()),
        untimed_files=untimed_files,
        signatures=summarize(hits),
    )
    tracebacks = context.filter(_server_traceback()).height
    overall_500 = http_500_signature(context.filter(_client_500()), tracebacks)
    if overall_500:
        report.signatures.append(overall_500)

    flagged = tested.filter("flagged") if counts.height else counts
    if flagged.height:
        report.bursts = _describe(analysis_dir, context, tested, _merge(flagged), hits, first, bin_s)
    if write:
        (analysis_dir / BURSTS_FILE).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def _describe(
    analysis_dir: Path,
    context: pl.DataFrame,
    tested: pl.DataFrame,
    burst_bins: pl.DataFrame,
    hits: pl.DataFrame,
    first: datetime | None,
    bin_s: float,
) -> list[dict[str, Any]]:
    """The per-burst figures of the module docstring, one dict per burst in time order."""
    windows = (
        burst_bins.group_by("burst")
        .agg(
            pl.col("group").first(),
            pl.col("bin").min().alias("first_bin"),
            pl.col("bin").max().alias("last_bin"),
        )
        .sort("burst")
    )
    inside = context.join(burst_bins, on=["group", "bin"])
    errors = inside.filter("is_error").sort("ts", "file", "seq", nulls_last=True)
    server = inside.filter(_server_context())
    summary = errors.group_by("burst").agg(
        pl.len().alias("count"),
        pl.col("message").head(EXAMPLES).alias("examples"),
    )
    per_bin = errors.group_by("burst", "bin").len().group_by("burst").agg(pl.col("len").max().alias("peak"))
    # Expected count: every family's baseline over the burst's bins; p: the strongest flagged bin.
    lam = (
        tested.group_by("group", "family")
        .agg(pl.col("lam").first())
        .group_by("group")
        .agg(pl.col("lam").sum().alias("lam_all"))
    )
    strongest = (
        tested.filter("flagged")
        .join(burst_bins, on=["group", "bin"])
        .group_by("burst")
        .agg(pl.col("p").min())
    )
    table = (
        windows.join(summary, on="burst", how="left")
        .join(per_bin, on="burst", how="left")
        .join(lam, on="group", how="left")
        .join(strongest, on="burst", how="left")
        .sort("burst")
    )
    kinds = _counts(errors, "kind")
    statuses = _counts(errors, "http_status")
    server_kinds = _counts(server, "kind")
    files, batches, rooms = (_distinct(errors, c) for c in ("file", "batch", "room"))

    bursts: list[dict[str, Any]] = []
    starts: list[datetime | None] = []
    for row in table.iter_rows(named=True):
        is_timed = row["group"] == TIMED and first is not None
        start = first + timedelta(seconds=row["first_bin"] * bin_s) if is_timed else None
        end = first + timedelta(seconds=(row["last_bin"] + 1) * bin_s) if is_timed else None
        start_seq = None if is_timed else row["first_bin"] * SEQ_BIN
        end_seq = None if is_timed else (row["last_bin"] + 1) * SEQ_BIN - 1
        if is_timed:
            in_window = (pl.col("ts") >= start) & (pl.col("ts") < end)
        else:
            in_window = (pl.col("file") == row["group"]) & pl.col("seq").is_between(start_seq, end_seq)
        starts.append(start)
        burst_id = row["burst"]
        in_burst = inside.filter(pl.col("burst") == burst_id)
        signatures = summarize(hits.filter(in_window))
        http_500 = http_500_signature(
            in_burst.filter(_client_500()), in_burst.filter(_server_traceback()).height
        )
        bursts.append(
            {
                "start": _iso(start),
                "end": _iso(end),
                "file": None if is_timed else row["group"],
                "start_seq": start_seq,
                "end_seq": end_seq,
                "count": row["count"] or 0,
                "expected": float(row["lam_all"] * (row["last_bin"] - row["first_bin"] + 1)),
                "p_value": float(row["p"]),
                "peak_rate_per_s": row["peak"] / bin_s if is_timed and row["peak"] else None,
                "kinds": kinds.get(burst_id, {}),
                "http_statuses": statuses.get(burst_id, {}),
                "files": files.get(burst_id, []),
                "batches": batches.get(burst_id, []),
                "rooms": rooms.get(burst_id, []),
                "participants_connected_at_start": None,
                "server_events": server_kinds.get(burst_id, {}),
                "examples": row["examples"] or [],
                "signatures": signatures + ([http_500] if http_500 else []),
            }
        )
    for burst, connected in zip(bursts, _load_at_starts(analysis_dir, starts), strict=True):
        burst["participants_connected_at_start"] = connected
    return sorted(
        bursts, key=lambda b: (b["start"] is None, b["start"] or "", b["file"] or "", b["start_seq"] or 0)
    )
