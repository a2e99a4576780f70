"""Prosody's file sink: ``Nov 28 21:03:03 c2s55d2c2e4a8e0<TAB>info<TAB>Client connected``.

The time has no year: it comes from ``--year`` or the file's mtime (see ``parsers``), and a
line whose month is before the first line's month belongs to the next year (Dec -> Jan).
The server's local time is taken as UTC. This is the high-volume format: it streams through
polars (:mod:`.prosody_fields`, :mod:`.prosody_server`), never row by row in Python.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta

import polars as pl

from ..schema import LEVELS
from . import prosody_fields
from .context import FileContext
from .prosody_fields import split_tabs
from .source import unwrap_kubectl

NAME = "prosody-file"
LINE_RE = re.compile(r"^[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d \S+\t(?:debug|info|warn|error)\t")
TIME = pl.Datetime("us", "UTC")
DAY = 86_400_000_000  # microseconds
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def first_month(line: str) -> int | None:
    """Month (1-12) of a file-format line, or None."""
    return MONTHS.index(line[:3]) + 1 if LINE_RE.match(line) else None


def _time_in_year_one(head: pl.Expr) -> pl.Expr:
    """``Nov 28 21:03:03`` at the start of ``head``, parsed without a year: polars then takes year 1,
    whose dates run like any common year's. A third of the cost of parsing with the year."""
    return head.str.head(15).str.strptime(TIME, "%b %d %H:%M:%S", strict=False)


def _in_file_year(stamp: pl.Expr, context: FileContext) -> pl.Expr:
    """A year-1 time (in a column: it is read several times) moved to the file's year, or the next
    one for months before the first line's (Dec -> Jan), by adding microseconds."""
    base = stamp.cast(pl.Int64)

    def in_year(year: int) -> pl.Expr:
        moved = base + (_micros(datetime(year, 1, 1)) - _micros(datetime(1, 1, 1)))
        if calendar.isleap(year):  # from March on, one day more than year 1 had
            moved = moved + pl.when(base >= _micros(datetime(1, 3, 1))).then(DAY).otherwise(0)
        return moved

    moved = in_year(context.first_year)
    if context.first_month > 1:
        next_year = base < _micros(datetime(1, context.first_month, 1))
        moved = pl.when(next_year).then(in_year(context.first_year + 1)).otherwise(moved)
    return moved.cast(TIME)


def _micros(moment: datetime) -> int:
    """Microseconds since 1970, as polars stores a datetime."""
    return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def _time_with_year(head: pl.Expr, context: FileContext) -> pl.Expr:
    """The same parsed with the year put in front: slower, but Feb 29 exists in leap years."""
    year = pl.lit(f"{context.first_year} ")
    if context.first_month > 1:
        next_year = head.str.head(3).is_in(MONTHS[: context.first_month - 1])
        year = pl.when(next_year).then(pl.lit(f"{context.first_year + 1} ")).otherwise(year)
    return pl.concat_str(year, head.str.head(15)).str.strptime(TIME, "%Y %b %d %H:%M:%S", strict=False)


def _leap_year_ahead(context: FileContext) -> bool:
    """Whether the file's lines can fall in a leap year. In any other, both ways of parsing give
    Feb 29 a null time, so the chunk need not be searched for it."""
    years = [context.first_year] + ([context.first_year + 1] if context.first_month > 1 else [])
    return any(calendar.isleap(year) for year in years)


def read_records(chunk: bytes, context: FileContext) -> pl.DataFrame | None:
    """The chunk already split into fields (:func:`.prosody_fields.read_records`) when it is plain
    records with no ``kubectl``/pm2 wrapping, else None."""
    wrapped = context.wrapping.labels() or context.wrapping.ansi
    return None if wrapped else prosody_fields.read_records(chunk)


def fields(lines: pl.DataFrame, context: FileContext) -> pl.LazyFrame:
    """A chunk's ``(seq, line)``, or its ``(seq, head, level, message)`` from :func:`read_records`
    (then ``line`` is null) -> ``ts, source, level, message, parsed`` (see ``prosody_server``)."""
    if "line" in lines.columns:
        lines = unwrap_kubectl(lines, context.wrapping)
        head, level, message = split_tabs(pl.col("line"), 3)
        frame = lines.lazy().with_columns(head=head, level=level, message=message)
        opening = lines["line"]
    else:
        frame = lines.lazy().with_columns(line=pl.lit(None, pl.String))
        opening = lines["head"]
    if _leap_year_ahead(context) and opening.str.starts_with("Feb 29").any():
        frame = frame.with_columns(ts=_time_with_year(pl.col("head"), context))
    else:
        frame = frame.with_columns(ts=_time_in_year_one(pl.col("head")))
        frame = frame.with_columns(ts=_in_file_year(pl.col("ts"), context))
    return frame.with_columns(
        ts=pl.coalesce("ts", "wrap_ts") if context.wrapping.kubectl_time else pl.col("ts"),
        source=pl.col("head").str.slice(16),
        message=pl.col("message").fill_null(""),
        parsed=pl.col("level").is_in(LEVELS) & pl.col("ts").is_not_null(),
    )
