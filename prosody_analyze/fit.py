"""Resource model: metric = slope × participants + intercept, with the uncertainty stated.

Why each part is there:

* **OLS** (``scipy.stats.linregress``) gives slope and intercept with standard errors; the
  95 % confidence intervals use Student's t with n − 2 degrees of freedom. R² and the
  residuals are kept so a reader can see how straight the line really is.
* **Theil–Sen** (``scipy.stats.theilslopes``), the median of pairwise slopes, sits beside OLS:
  one bad plateau moves OLS but barely moves it. When the two disagree, look at the outliers.
* **Outliers**: externally studentized residuals, flagged when |t| exceeds the Bonferroni
  critical value t(1 − 0.025/n, n − 3).
* **Linearity**: a piecewise-linear model with one breakpoint (both a continuous bend and
  two separate lines, i.e. a jump, are tried; the breakpoint is scanned over the x range)
  is compared with the straight line by BIC (n·ln(SSE/n) + k·ln n). The breakpoint is reported
  when the piecewise model has the lower BIC; then the straight line should not be
  extrapolated past it.
* **Capacity**: the participants at which the line reaches ``limit``, with a 95 % prediction
  interval obtained by inverting the prediction band of a new observation (Fieller-style):
  ``low`` is where the band's upper edge reaches the limit, ``high`` where its lower edge does.
  Null bounds mean the slope is too uncertain for a finite interval.

Plateaus (:func:`find_plateaus`): when the input is a metric time series, each load level
(participants joined, from :mod:`prosody_analyze.load`) gives one point: the samples taken
after the level began plus a settling time (default 10 s, at most half the level's length)
are reduced to their median; levels with fewer than 3 such samples are dropped.

``fit.json`` (written to the analysis directory when one is given) holds
``FitResult.to_dict()``::

    {"metric": str, "unit": str (unit of values, e.g. "MiB"), "n": int,
     "slope": float, "intercept": float, "slope_stderr": float, "intercept_stderr": float,
     "slope_ci95": [lo, hi], "intercept_ci95": [lo, hi], "r2": float,
     "residuals": [float, ...] (in points order),
     "points": [{"participants": float, "value": float}, ...],
     "plateaus": [{"participants", "value", "samples", "start", "end"}, ...],  # from a time series:
                                         # each point's load level and its window (ISO 8601, UTC)
     "robust": {"method": "theil-sen", "slope": float, "intercept": float},
     "outliers": [{"participants", "value", "studentized"}, ...],
     "breakpoint": {"participants", "kind": "bend"|"jump", "bic_linear", "bic_piecewise",
                    "slopes": [before, after]} or null,
     "capacity": {"limit", "participants", "low", "high"} or null,
     "line": {"participants": [...], "values": [...]},          # fitted line, for plots
     "band": {"participants": [...], "low": [...], "high": [...]},  # 95 % confidence band
     "notes": [str, ...]}                                            # assumptions made
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .errors import UserError
from .load import load_over_time
from .metrics import is_counter, rate, read_metrics, read_points
from .schema import METRICS_FILE, SESSIONS_FILE

FIT_FILE = "fit.json"
MIB = 2**20
# Metrics tried, in order, when --metric is not given: Prosody's own RSS, then the cluster's WSS.
DEFAULT_METRICS = ("process_resident_memory_bytes", "container_memory_working_set_bytes")
DEFAULT_SETTLE_S = 10.0
MIN_PLATEAU_SAMPLES = 3
# The breakpoint is searched for, which favours the piecewise model: ask for "very strong"
# evidence (Kass & Raftery: ΔBIC > 10) before calling the data bent.
BIC_MARGIN = 10.0


@dataclass
class FitResult:
    metric: str
    unit: str
    n: int
    slope: float
    intercept: float
    slope_stderr: float
    intercept_stderr: float
    slope_ci95: list[float]
    intercept_ci95: list[float]
    r2: float
    residuals: list[float]
    points: list[dict[str, float]]
    robust: dict[str, Any]
    outliers: list[dict[str, float]] = field(default_factory=list)
    breakpoint: dict[str, Any] | None = None
    capacity: dict[str, Any] | None = None
    line: dict[str, list[float]] = field(default_factory=dict)
    band: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # assumptions made, in words
    plateaus: list[dict[str, Any]] = field(default_factory=list)  # the points' windows (time series)

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _bic(sse: float, n: int, params: int, scale: float) -> float:
    """BIC with σ counted as a parameter; SSE floored so an exact fit does not give −∞."""
    return n * math.log(max(sse, 1e-12 * scale) / n) + (params + 1) * math.log(n)


def _studentized(x: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Externally studentized residuals of a simple linear regression."""
    n = x.size
    sxx = float(((x - x.mean()) ** 2).sum())
    leverage = 1 / n + (x - x.mean()) ** 2 / sxx
    sse = float((residuals**2).sum())
    loo_var = (sse - residuals**2 / (1 - leverage)) / (n - 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return residuals / np.sqrt(np.clip(loo_var, 1e-300, None) * (1 - leverage))


def _sse_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """SSE and slope of the OLS line through (x, y)."""
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(((y - design @ coef) ** 2).sum()), float(coef[1])


def _breakpoint(x: np.ndarray, y: np.ndarray, sse_linear: float) -> dict[str, Any] | None:
    """Best one-breakpoint model (bend or jump) if its BIC beats the straight line's."""
    n = x.size
    distinct = np.unique(x)
    if n < 6 or distinct.size < 6:
        return None
    scale = float(((y - y.mean()) ** 2).sum()) or 1.0
    bic_linear = _bic(sse_linear, n, 2, scale)
    # Each segment keeps at least 3 distinct x.
    candidates = np.unique(np.concatenate([distinct[2:-3], np.linspace(distinct[2], distinct[-4], 200)]))
    best: dict[str, Any] | None = None
    for cut in candidates:
        hinge = np.maximum(0.0, x - cut)
        design = np.column_stack([np.ones_like(x), x, hinge])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse_bend = float(((y - design @ coef) ** 2).sum())
        left = x <= cut
        sse_left, slope_left = _sse_line(x[left], y[left])
        sse_right, slope_right = _sse_line(x[~left], y[~left])
        options = [
            (_bic(sse_bend, n, 4, scale), "bend", [float(coef[1]), float(coef[1] + coef[2])]),
            (_bic(sse_left + sse_right, n, 5, scale), "jump", [slope_left, slope_right]),
        ]
        for bic, kind, slopes in options:
            if best is None or bic < best["bic_piecewise"]:
                best = {"participants": float(cut), "kind": kind, "bic_piecewise": bic, "slopes": slopes}
    if best is None or best["bic_piecewise"] > bic_linear - BIC_MARGIN:
        return None
    return {**best, "bic_linear": bic_linear}


def _capacity(
    limit: float, slope: float, intercept: float, x: np.ndarray, sigma: float, t: float
) -> dict[str, Any]:
    """Participants where the line reaches ``limit``, with a 95 % prediction interval."""
    n = x.size
    center = (limit - intercept) / slope if slope > 0 else math.inf
    sxx = float(((x - x.mean()) ** 2).sum())
    spread = (t * sigma) ** 2
    # (limit - a - b·p)² = t²σ²(1 + 1/n + (p - x̄)²/Sxx), a quadratic in p.
    gap = limit - intercept
    a = slope**2 - spread / sxx
    b = -2 * slope * gap + 2 * spread * x.mean() / sxx
    c = gap**2 - spread * (1 + 1 / n) - spread * x.mean() ** 2 / sxx
    low = high = math.nan
    if a > 0 and slope > 0 and b * b - 4 * a * c >= 0:
        root = math.sqrt(b * b - 4 * a * c)
        low, high = (-b - root) / (2 * a), (-b + root) / (2 * a)
    return {"limit": limit, "participants": float(center), "low": float(low), "high": float(high)}


def fit_linear(
    x: Any, y: Any, unit: str = "MiB", limit: float | None = None, metric: str = "value"
) -> FitResult:
    """OLS + Theil–Sen + outliers + breakpoint test + capacity (see the module docstring).

    ``limit`` is in the unit of ``y``.
    """
    from scipy import stats  # here, not at the top: it takes a second to import, and only fitting needs it

    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    if xs.size < 3 or np.unique(xs).size < 2:
        raise UserError(
            f"need at least 3 points at 2 different participant counts to fit a line, got {xs.size}"
        )
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    n = xs.size
    ols = stats.linregress(xs, ys)
    t = float(stats.t.ppf(0.975, n - 2))
    fitted = ols.intercept + ols.slope * xs
    residuals = ys - fitted
    sse = float((residuals**2).sum())
    sigma = math.sqrt(sse / (n - 2)) if n > 2 else math.nan
    theil = stats.theilslopes(ys, xs)
    outliers: list[dict[str, float]] = []
    if n >= 4:
        student = _studentized(xs, residuals)
        critical = float(stats.t.ppf(1 - 0.025 / n, n - 3))
        flagged = np.flatnonzero(np.abs(student) > critical)
        outliers = [
            {"participants": float(xs[i]), "value": float(ys[i]), "studentized": float(student[i])}
            for i in flagged
        ]
    grid = np.linspace(0.0, float(xs.max()), 50)
    sxx = float(((xs - xs.mean()) ** 2).sum())
    half = t * sigma * np.sqrt(1 / n + (grid - xs.mean()) ** 2 / sxx)
    line_y = ols.intercept + ols.slope * grid
    return FitResult(
        metric=metric,
        unit=unit,
        n=int(n),
        slope=float(ols.slope),
        intercept=float(ols.intercept),
        slope_stderr=float(ols.stderr),
        intercept_stderr=float(ols.intercept_stderr),
        slope_ci95=[float(ols.slope - t * ols.stderr), float(ols.slope + t * ols.stderr)],
        intercept_ci95=[
            float(ols.intercept - t * ols.intercept_stderr),
            float(ols.intercept + t * ols.intercept_stderr),
        ],
        r2=float(ols.rvalue**2),
        residuals=[float(r) for r in residuals],
        points=[{"participants": float(a), "value": float(b)} for a, b in zip(xs, ys, strict=True)],
        robust={"method": "theil-sen", "slope": float(theil.slope), "intercept": float(theil.intercept)},
        outliers=outliers,
        breakpoint=_breakpoint(xs, ys, sse),
        capacity=None if limit is None else _capacity(float(limit), ols.slope, ols.intercept, xs, sigma, t),
        line={"participants": grid.tolist(), "values": line_y.tolist()},
        band={
            "participants": grid.tolist(),
            "low": (line_y - half).tolist(),
            "high": (line_y + half).tolist(),
        },
    )


def find_plateaus(
    series: pl.DataFrame,
    load: pl.DataFrame,
    settle_s: float = DEFAULT_SETTLE_S,
    load_column: str = "joined",
    min_samples: int = MIN_PLATEAU_SAMPLES,
) -> pl.DataFrame:
    """One (participants, value) point per stable load level of a metric series.

    ``series`` has ``ts`` and ``value``; ``load`` is :func:`load_over_time`'s step table. Each
    run of samples under one load step is a level; samples within the settling time after
    the step (at most half the level's length) are dropped and the rest reduced to the median.
    Returns participants, value, samples, start, end (UTC), in time order.
    """
    samples = series.select("ts", "value").drop_nulls().sort("ts")
    if samples.height == 0:
        return pl.DataFrame(
            schema={
                "participants": pl.Int64,
                "value": pl.Float64,
                "samples": pl.UInt32,
                "start": pl.Datetime("us", "UTC"),
                "end": pl.Datetime("us", "UTC"),
            }
        )
    level = pl.col(load_column)
    # A step is a change of this load column (connections coming and going alone do not end a level).
    steps = (
        load.sort("ts")
        .filter(level.ne_missing(level.shift(1)))
        .select(
            pl.col("ts").alias("step_ts"),
            level.alias("participants"),
            pl.col("ts").shift(-1).alias("next_step_ts"),
        )
    )
    series_start, series_end = samples["ts"].min(), samples["ts"].max()
    before_load = pl.col("step_ts").is_null()  # the idle baseline: nothing to settle from
    tagged = (
        samples.join_asof(steps, left_on="ts", right_on="step_ts", strategy="backward")
        .with_columns(
            pl.col("participants").fill_null(0),
            pl.when(before_load)
            .then(pl.duration(seconds=0))
            .otherwise(
                pl.min_horizontal(
                    pl.duration(seconds=settle_s),
                    (pl.col("next_step_ts").fill_null(series_end) - pl.col("step_ts")) / 2,
                )
            )
            .alias("settle"),
            pl.col("step_ts").fill_null(series_start),
        )
        .filter(pl.col("ts") >= pl.col("step_ts") + pl.col("settle"))
    )
    return (
        tagged.group_by("step_ts", "participants")
        .agg(
            pl.col("value").median().alias("value"),
            pl.len().alias("samples"),
            pl.col("ts").min().alias("start"),
            pl.col("ts").max().alias("end"),
        )
        .filter(pl.col("samples") >= min_samples)
        .sort("step_ts")
        .select(pl.col("participants").cast(pl.Int64), "value", "samples", "start", "end")
    )


def _display_unit(unit: str) -> tuple[str, float]:
    """Bytes are fitted in MiB (what dashboards and the study show); other units as they are."""
    return ("MiB", 1 / MIB) if unit in ("bytes", "B") else (unit, 1.0)


def _read_metric_table(path: Path) -> pl.DataFrame:
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return read_metrics(path, tz=None)


def _choose_metric(table: pl.DataFrame, metric: str | None) -> str:
    names = table["metric"].unique().sort().to_list()
    if metric is not None:
        if metric not in names:
            raise UserError(f"metric {metric!r} not found; available: {', '.join(names[:20])}")
        return metric
    found = next((name for name in DEFAULT_METRICS if name in names), None)
    if found is None and len(names) == 1:
        found = names[0]
    if found is None:
        raise UserError(f"choose one with --metric; available: {', '.join(names[:20])}")
    return found


def _windows(plateaus: pl.DataFrame, factor: float) -> list[dict[str, Any]]:
    """Each plateau with the time window it was read from, so a point can be checked on a graph."""
    iso = "%Y-%m-%dT%H:%M:%S%.fZ"
    return plateaus.select(
        pl.col("participants").cast(pl.Float64),
        pl.col("value") * factor,
        pl.col("samples").cast(pl.Int64),
        pl.col("start").dt.strftime(iso),
        pl.col("end").dt.strftime(iso),
    ).to_dicts()


def _read_participant_points(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    participants, values, unit = read_points(path)
    return np.asarray(participants, dtype=float), np.asarray(values, dtype=float), unit or ""


def _limit_for(limit: float | str | None, unit: str, factor: float) -> tuple[float | None, str]:
    """The limit in the fitted unit, and that unit.

    A float is in base units. A quantity string (``15000Mi``) is parsed; when the values have
    no known unit (a bare participants,value table), a binary byte suffix says what they are
    in (``--limit 15000Mi`` → values in MiB), as a user writing it means.
    """
    if limit is None:
        return None, unit
    if isinstance(limit, str):
        from .units import parse_quantity

        binary = re.fullmatch(r"\s*([0-9.]+)\s*(Ki|Mi|Gi|Ti)\s*", limit)
        if not unit and binary:
            return float(binary[1]), f"{binary[2]}B"
        limit = parse_quantity(limit)
    return limit * factor, unit


def fit_resource(
    source: Path | str | pl.DataFrame,
    load_dir: Path | str | None = None,
    metric: str | None = None,
    limit: float | str | None = None,
    out_dir: Path | str | None = None,
    settle_s: float = DEFAULT_SETTLE_S,
) -> FitResult:
    """Fit a resource against participants and write ``fit.json``.

    ``source`` is a ``participants,value`` table (CSV), or metrics (an analysis directory, its
    metrics.parquet, a metric file, or a METRIC_SCHEMA frame) with ``load_dir`` the analysis
    directory whose sessions give the load; plateaus are then found by :func:`find_plateaus`.
    A counter (``…_total``, e.g. CPU seconds) is fitted as its per-second rate (cores).
    ``limit`` is in the metric's base unit (bytes for memory) or a Kubernetes quantity string
    (see :func:`_limit_for`). ``fit.json`` goes to ``out_dir``,
    else ``load_dir``, else ``source`` when it is a directory; nowhere if none applies.
    """
    load_path = Path(load_dir) if load_dir is not None else None
    if isinstance(source, str | Path) and Path(source).is_dir() and load_path is None:
        load_path = Path(source)
    if load_path is None:
        if not isinstance(source, str | Path):
            raise UserError("a metric series needs --load ANALYSIS_DIR to know the participants")
        participants, values, base_unit = _read_participant_points(Path(source))
        unit, factor = _display_unit(base_unit)
        fitted_limit, unit = _limit_for(limit, unit, factor)
        result = fit_linear(
            participants, values * factor, unit=unit, metric=metric or Path(source).stem, limit=fitted_limit
        )
        if not base_unit and unit:
            result.notes.append(f"{Path(source).name} names no unit: its values taken in {unit}, as --limit")
    else:
        table = source if isinstance(source, pl.DataFrame) else _read_metric_table(Path(source))
        name = _choose_metric(table, metric)
        if is_counter(name):  # CPU seconds counted up: fit the rate, in cores
            chosen = rate(table, name)
            name = chosen["metric"].first() or name
        else:
            chosen = table.filter(pl.col("metric") == name)
        base_unit = (chosen["unit"].drop_nulls().first() or "") if "unit" in chosen.columns else ""
        unit, factor = _display_unit(base_unit)
        # Several label sets (e.g. pods) at one time add up to the resource of the whole service.
        series = chosen.group_by("ts").agg(pl.col("value").sum())
        sessions_path = load_path / SESSIONS_FILE
        if not sessions_path.exists():
            raise UserError(f"{load_path}: no {SESSIONS_FILE}; run `prosody-analyze ingest` first")
        plateaus = find_plateaus(series, load_over_time(pl.read_parquet(sessions_path)), settle_s=settle_s)
        fitted_limit, unit = _limit_for(limit, unit, factor)
        result = fit_linear(
            plateaus["participants"], plateaus["value"] * factor, unit=unit, metric=name, limit=fitted_limit
        )
        result.plateaus = _windows(plateaus, factor)
    target = Path(out_dir) if out_dir is not None else load_path
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        (target / FIT_FILE).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result
