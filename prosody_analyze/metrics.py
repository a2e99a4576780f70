"""Metrics from wherever people keep them, as one long table (METRIC_SCHEMA, values in base units).

:func:`read_metrics` sniffs the file's content (not its name):

* Grafana panel CSV, "Series joined by time" (``Time`` then one column per series) or not
  joined (``Series,Time,Value``), raw (epoch ms) or "formatted data" (``16.4 MiB``, local
  dates: pass ``tz``, else UTC is assumed); CRLF, quoted headers, frames separated by a blank
  line, the Excel variant (UTF-16LE, BOM, TABs) and the older ``sep=,`` first line;
* Prometheus HTTP API ``query_range`` / ``query`` JSON (matrix or vector);
* OpenMetrics / Prometheus text exposition (a scrape): per-sample timestamps when present,
  else the file's modification time; ``_created`` samples are dropped;
* the swarm's ``metrics.csv`` (``ts,metric,labels,value``) and plain ``timestamp,value`` CSV;
* a ``.parquet`` already in METRIC_SCHEMA.

A series named ``name{k="v"}`` gives metric and labels; a legend or a bare ``value`` column
is the metric name (``value`` takes the file's stem). Without a unit in the cells the unit
comes from the Prometheus suffix (``_bytes``, ``_seconds``). Rows without a time or a finite
value are dropped (a cell that is not empty but not understood, with an
:class:`UnreadValuesWarning`), duplicates (same time, metric, labels) keep the last, rows are sorted.
``participants,value`` tables are another shape: :func:`read_points`.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from .errors import UserError
from .ingest import metric_unit
from .schema import METRIC_SCHEMA, conform
from .units import UNITS, parse_values

TIME_COLUMNS = {"time", "timestamp", "ts", "date", "datetime", "time (utc)", "_time"}
POINT_COLUMNS = {"participants", "participant", "users", "clients", "load", "n"}
GENERIC_VALUE_COLUMNS = {"value", "values", "y", "metric", ""}
_SERIES_NAME = r"^([A-Za-z_:][A-Za-z0-9_:]*)?\{(.*)\}$"
_SAMPLE_LINE = (
    r"^(?P<metric>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+(?P<ts>\S+))?\s*$"
)
_HEADER_UNIT = re.compile(r"[\(\[]\s*([^\)\]]+?)\s*[\)\]]\s*$")


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    head = data[:200]
    if head and head.count(b"\x00") * 3 >= len(head):  # UTF-16 without a BOM
        return data.decode("utf-16-le" if head[1:2] == b"\x00" else "utf-16-be", errors="replace")
    if b"\x00" in head:
        raise UserError(f"{path}: a binary file, not metrics (CSV, Prometheus JSON or a scrape)")
    return data.decode("utf-8-sig", errors="replace")


def _epoch(values: pl.Expr) -> pl.Expr:
    """Epoch numbers in s, ms, µs or ns (told apart by magnitude) as UTC datetimes."""
    magnitude = values.abs().max()
    micros = (
        pl.when(magnitude > 1e17)
        .then(values / 1e3)
        .when(magnitude > 1e14)
        .then(values)
        .when(magnitude > 1e11)
        .then(values * 1e3)
        .otherwise(values * 1e6)
    )
    return pl.from_epoch(micros.round().cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC")


class UnreadValuesWarning(UserWarning):
    """Cells of an export that are neither empty nor a number with a known unit: left out."""


class NaiveDatesWarning(UserWarning):
    """An export's dates have no UTC offset and no ``tz`` was given: they are taken as UTC."""


def _times(column: pl.Expr, sample: pl.Series, tz: str | None, path: Path) -> pl.Expr:
    """Epoch numbers or date strings as UTC; strings without an offset are in ``tz`` (else UTC,
    with a :class:`NaiveDatesWarning`: Grafana writes them in the browser's zone)."""
    numeric = sample.cast(pl.Float64, strict=False)
    if sample.len() and numeric.null_count() == sample.null_count():
        return _epoch(column.cast(pl.Float64, strict=False))
    parsed = sample.drop_nulls().str.strip_chars().head(1000).str.to_datetime(time_unit="us", strict=False)
    text = column.str.strip_chars()
    if isinstance(parsed.dtype, pl.Datetime) and parsed.dtype.time_zone is not None:
        return text.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    if tz is None:
        warnings.warn(
            f"{path}: dates without a UTC offset, taken as UTC; pass --tz with the zone of the export",
            NaiveDatesWarning,
            stacklevel=2,
        )
    naive = text.str.to_datetime(time_unit="us", strict=False)
    local = naive.dt.replace_time_zone(tz or "UTC", ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def _series_name(name: pl.Expr, stem: str) -> tuple[pl.Expr, pl.Expr]:
    """(metric, labels) of a header: ``name{k="v"}``, ``{k="v"}`` or a legend (``value`` -> file stem)."""
    header = name.str.strip_chars()
    parts = header.str.extract_groups(_SERIES_NAME)
    labelled = parts.struct.field("2").is_not_null()
    generic = labelled | header.str.to_lowercase().is_in(list(GENERIC_VALUE_COLUMNS))
    bare = pl.when(generic).then(pl.lit(stem)).otherwise(header)
    return pl.coalesce(parts.struct.field("1"), bare), parts.struct.field("2").fill_null("")


def _long(
    frame: pl.DataFrame, ts_raw: str, metric: pl.Expr, labels: pl.Expr, value: str, tz: str | None, path: Path
) -> pl.DataFrame:
    """Rows of (time text, series name, value text) into METRIC_SCHEMA with parsed times, values and units."""
    parsed, unit = parse_values(pl.col(value))
    table = frame.select(
        ts=_times(pl.col(ts_raw), frame[ts_raw], tz, path),
        metric=metric,
        labels=labels,
        value=parsed,
        cell_unit=unit,
        cell=pl.col(value).str.strip_chars(),
    )
    unread = table.filter(pl.col("value").is_null() & (pl.col("cell").fill_null("") != ""))
    if unread.height:  # an empty cell is a missing point; anything else should have been a number
        cell, series = unread["cell"][0], unread["metric"][0]
        warnings.warn(
            f"{path}: {unread.height} value(s) not understood, left out (e.g. {cell!r} in {series})",
            UnreadValuesWarning,
            stacklevel=2,
        )
    return table.drop("cell").with_columns(
        unit=pl.when(pl.col("cell_unit").is_in(["", None]).not_())
        .then("cell_unit")
        .otherwise(metric_unit(pl.col("metric")))
    )


def _csv_block(block: str, separator: str | None, tz: str | None, path: Path) -> pl.DataFrame:
    header = block.split("\n", 1)[0]
    sep = separator or max(["\t", ";", ","], key=header.count)
    table = pl.read_csv(
        io.StringIO(block), separator=sep, infer_schema=False, truncate_ragged_lines=True, quote_char='"'
    )
    # polars keeps a quoted header's doubled quotes: name{k=""v""} -> name{k="v"}
    table = table.rename({name: name.replace('""', '"') for name in table.columns})
    names = {name.strip().lower(): name for name in table.columns}
    stem = path.stem
    if {"ts", "metric", "labels", "value"} <= names.keys():  # the swarm's metrics.csv
        return _long(
            table,
            names["ts"],
            pl.col(names["metric"]),
            pl.col(names["labels"]).fill_null(""),
            names["value"],
            tz,
            path,
        )
    series_col = names.get("series") or names.get("metric") or names.get("name")
    time_col = next((names[n] for n in names if n in TIME_COLUMNS), None)
    if series_col and time_col and "value" in names:  # Grafana, not joined by time
        metric, labels = _series_name(pl.col(series_col), stem)
        return _long(table, time_col, metric, labels, names["value"], tz, path)
    first = table.columns[0].strip().lower()
    if first in POINT_COLUMNS:
        raise UserError(f"{path}: a participants,value table, not a time series (for `fit`)")
    if time_col is None:
        raise UserError(f"{path}: no time column ({', '.join(sorted(TIME_COLUMNS))}): not metrics")
    wide = table.unpivot(index=time_col, variable_name="_series", value_name="_value")
    metric, labels = _series_name(pl.col("_series"), stem)
    return _long(wide, time_col, metric, labels, "_value", tz, path)


def _read_csv(text: str, tz: str | None, path: Path) -> pl.DataFrame:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    separator = None
    first, _, rest = text.lstrip("\n").partition("\n")
    if first.lower().startswith("sep=") and len(first) >= 5:
        separator, text = first[4], rest
    blocks = [b.strip("\n") for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    if not blocks:
        raise UserError(f"{path}: empty file, no metrics")
    try:
        return pl.concat([_csv_block(b, separator, tz, path) for b in blocks], how="vertical_relaxed")
    except pl.exceptions.PolarsError as error:
        raise UserError(f"{path}: not a metrics CSV ({str(error).splitlines()[0][:120]})") from None


def _read_prometheus_json(text: str, path: Path) -> pl.DataFrame:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: broken JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(document, dict) and document.get("status") == "error":
        raise UserError(f"{path}: Prometheus answered an error: {document.get('error', '?')}")
    if not isinstance(document, dict) or "data" not in document:
        raise UserError(f"{path}: JSON but not a Prometheus API answer (no 'data')")
    data = document["data"]
    kind = data.get("resultType") if isinstance(data, dict) else None
    if kind not in ("matrix", "vector"):
        raise UserError(f"{path}: Prometheus resultType {kind!r}; want matrix (query_range) or vector")
    frames = []
    for series in data.get("result", []):
        labels = dict(series.get("metric", {}))
        name = labels.pop("__name__", path.stem)
        points = series.get("values") or ([series["value"]] if "value" in series else [])
        if not points:
            continue
        frames.append(
            pl.DataFrame(
                {"t": [p[0] for p in points], "v": [p[1] for p in points]},
                schema={"t": pl.Float64, "v": pl.String},
                strict=False,
            ).with_columns(
                metric=pl.lit(name),
                labels=pl.lit(",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))),
            )
        )
    if not frames:
        raise UserError(f"{path}: the Prometheus answer holds no series")
    table = pl.concat(frames)
    return table.select(
        ts=_epoch(pl.col("t")),
        metric="metric",
        labels="labels",
        value=pl.col("v").cast(pl.Float64, strict=False),
        unit=metric_unit(pl.col("metric")),
    )


def _read_exposition(text: str, path: Path) -> pl.DataFrame:
    lines = pl.DataFrame({"line": text.replace("\r\n", "\n").split("\n")})
    samples = lines.filter(~pl.col("line").str.starts_with("#") & (pl.col("line").str.strip_chars() != ""))
    parts = samples.select(pl.col("line").str.extract_groups(_SAMPLE_LINE).alias("s")).unnest("s")
    parts = parts.filter(pl.col("metric").is_not_null())
    scraped = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    stamps = pl.col("ts").cast(pl.Float64, strict=False)
    return parts.select(
        ts=pl.when(stamps.is_not_null())
        .then(_epoch(stamps))
        .otherwise(pl.lit(scraped).dt.cast_time_unit("us")),
        metric="metric",
        labels=pl.col("labels").fill_null(""),
        value=pl.col("value").cast(pl.Float64, strict=False),
        unit=metric_unit(pl.col("metric")),
    )


def _is_exposition(text: str) -> bool:
    for line in text.splitlines()[:50]:
        if not line.strip():
            continue
        if line.startswith(("# HELP", "# TYPE", "# UNIT", "# EOF")):
            return True
        if line.startswith("#"):
            continue
        return re.match(_SAMPLE_LINE, line) is not None and "\t" not in line
    return False


def _tidy(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    table = conform(frame.with_columns(file=pl.lit(str(path))), METRIC_SCHEMA)
    table = table.filter(
        pl.col("ts").is_not_null()
        & pl.col("metric").is_not_null()
        & pl.col("value").is_finite()
        & ~pl.col("metric").str.ends_with("_created")  # OpenMetrics creation times, not values
    )
    if table.height == 0:
        raise UserError(f"{path}: no metric samples with a time and a number — not metrics?")
    table = table.unique(["ts", "metric", "labels"], keep="last", maintain_order=True)
    return table.sort("metric", "labels", "ts")


def check_tz(tz: str | None) -> None:
    """Refuse a time zone name the system does not know, before any parsing."""
    if tz is None:
        return
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"--tz {tz!r} is not a time zone name like Europe/Paris") from None


def read_metrics(path: Path | str, tz: str | None = None) -> pl.DataFrame:
    """Any supported metrics file (see the module docstring) as METRIC_SCHEMA, UTC, base units, sorted."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    check_tz(tz)
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError):
            raise UserError(f"{path}: not a readable parquet file") from None
        if not set(METRIC_SCHEMA) - {"file"} <= set(frame.columns):
            raise UserError(f"{path}: a parquet file without the metric columns {', '.join(METRIC_SCHEMA)}")
        return _tidy(frame.drop("file", strict=False), path)
    text = _decode(path)
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        frame = _read_prometheus_json(stripped, path)
    elif _is_exposition(text):
        frame = _read_exposition(text, path)
    else:
        frame = _read_csv(text, tz, path)
    return _tidy(frame, path)


def read_points(path: Path | str) -> tuple[list[float], list[float], str]:
    """A ``participants,value`` table: (participants, values in base units, base unit or "").

    Values may carry units (``16.4 MiB``) or the header may name one (``RAM (MiB)``); either
    way they come back in base units (bytes). Rows without two numbers are skipped; those with a
    cell that is not a number, with an :class:`UnreadValuesWarning`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    text = _decode(path).replace("\r\n", "\n")
    first, _, rest = text.lstrip("\n").partition("\n")
    separator = first[4] if first.lower().startswith("sep=") and len(first) >= 5 else None
    if separator:
        text = rest
    header = text.lstrip("\n").split("\n", 1)[0]
    sep = separator or max(["\t", ";", ","], key=header.count)
    try:
        table = pl.read_csv(io.StringIO(text), separator=sep, infer_schema=False, truncate_ragged_lines=True)
    except pl.exceptions.PolarsError:
        raise UserError(f"{path}: not a participants,value CSV") from None
    if table.width < 2:
        raise UserError(f"{path}: want two columns, participants and value")
    if table.columns[0].strip().lower() in TIME_COLUMNS:
        raise UserError(f"{path}: a time series, not participants,value; add --load ANALYSIS_DIR")
    value_col = table.columns[1]
    values, units = parse_values(pl.col(value_col))
    header_unit = _HEADER_UNIT.search(value_col)
    factor, base = UNITS.get(header_unit[1], (1.0, "")) if header_unit else (1.0, "")
    cells = [pl.col(name).str.strip_chars().fill_null("") for name in table.columns[:2]]
    rows = table.select(
        participants=cells[0].cast(pl.Float64, strict=False),
        value=values,
        unit=units,
        unread=(cells[0].cast(pl.Float64, strict=False).is_null() & (cells[0] != ""))
        | (values.is_null() & (cells[1] != "")),
        text=pl.concat_str(cells, separator=","),
    )
    unread = rows.filter("unread")["text"]
    if unread.len():  # a row with an empty cell is a missing point; anything else should be numbers
        warnings.warn(
            f"{path}: {unread.len()} row(s) not understood, left out (e.g. {unread[0]!r})",
            UnreadValuesWarning,
            stacklevel=2,
        )
    points = rows.filter(pl.col("participants").is_not_null() & pl.col("value").is_finite())
    if points.height == 0:
        raise UserError(f"{path}: no rows with two numbers (participants, value)")
    cell_units = [u for u in points["unit"].unique().to_list() if u]
    if len(cell_units) > 1:
        raise UserError(f"{path}: values in several units ({', '.join(cell_units)})")
    if cell_units:
        return points["participants"].to_list(), points["value"].to_list(), cell_units[0]
    return points["participants"].to_list(), (points["value"] * factor).to_list(), base


def is_counter(metric: str) -> bool:
    """Prometheus counters (``_total``) only make sense as rates."""
    return metric.endswith("_total")


RATE_UNITS = {"seconds": "cores", "bytes": "bytes/s", "": "/s"}


def rate(frame: pl.DataFrame, metric: str) -> pl.DataFrame:
    """Per-second rate of a counter, per label set: CPU seconds become cores, bytes become bytes/s.

    The rate at a sample is the increase since the previous sample of the same series over the
    time between them; a counter reset (a decrease) drops that one sample. The metric is named
    ``<name without _total>:rate``.
    """
    rows = frame.filter(pl.col("metric") == metric).sort("labels", "ts")
    seconds = pl.col("ts").diff().dt.total_microseconds().over("labels") / 1e6
    increase = pl.col("value").diff().over("labels")
    return (
        rows.with_columns(value=increase / seconds, _increase=increase, _seconds=seconds)
        .filter((pl.col("_seconds") > 0) & (pl.col("_increase") >= 0))
        .with_columns(
            metric=pl.lit(metric.removesuffix("_total") + ":rate"),
            unit=pl.col("unit").fill_null("").replace_strict(RATE_UNITS, default=pl.col("unit") + "/s"),
        )
        .select(frame.columns)
    )


def with_rates(frame: pl.DataFrame) -> pl.DataFrame:
    """Counters replaced by their rates (see :func:`rate`); gauges as they are."""
    counters = [m for m in frame["metric"].unique().to_list() if is_counter(m)]
    if not counters:
        return frame
    rates = [rate(frame, m) for m in counters]
    return pl.concat([frame.filter(~pl.col("metric").is_in(counters)), *rates])
