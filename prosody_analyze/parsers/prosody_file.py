"""Prosody's file sink: ``Nov 28 21:03:03 c2s55d2c2e4a8e0<TAB>info<TAB>Client connected``.

The time has no year: it comes from ``--year`` or the file's mtime (see ``parsers``), and a
line whose month is before the first line's month belongs to the next year (Dec -> Jan).
The server's local time is taken as UTC. This is the high-volume format: it streams through
polars (:mod:`.prosody_fields`, :mod:`.prosody_server`), never row by row in Python.
"""

from __future__ import annotations

import re

import polars as pl

from .context import FileContext
from .prosody_fields import split_tabs, unwrap_line
from .prosody_server import LEVEL_NAMES

NAME = "prosody-file"
LINE_RE = re.compile(r"^[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d \S+\t(?:debug|info|warn|error)\t")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def first_month(line: str) -> int | None:
    """Month (1-12) of a file-format line, or None."""
    return MONTHS.index(line[:3]) + 1 if LINE_RE.match(line) else None


def _timestamp(head: pl.Expr, context: FileContext) -> pl.Expr:
    """``Nov 28 21:03:03`` at the start of ``head`` in the file's year (or the next, after Dec -> Jan)."""
    year = pl.lit(f"{context.first_year} ")
    if context.first_month > 1:  # months before the first line's are in the next year
        next_year = head.str.head(3).is_in(MONTHS[: context.first_month - 1])
        year = pl.when(next_year).then(pl.lit(f"{context.first_year + 1} ")).otherwise(year)
    return pl.concat_str(year, head.str.head(15)).str.strptime(
        pl.Datetime("us", "UTC"), "%Y %b %d %H:%M:%S", strict=False
    )


def fields(lines: pl.DataFrame, context: FileContext) -> pl.LazyFrame:
    """A chunk's ``(seq, line)`` -> ``ts, source, level, message, parsed`` (see ``prosody_server``)."""
    frame = unwrap_line(lines, context.wrapping).lazy()
    head, level, message = split_tabs(pl.col("line"), 3)
    frame = frame.with_columns(head=head, level=level, message=message).with_columns(
        ts=_timestamp(pl.col("head"), context)
    )
    frame = frame.with_columns(
        ts=pl.coalesce("ts", "wrap_ts") if context.wrapping.kubectl_time else pl.col("ts"),
        source=pl.col("head").str.slice(16),
        message=pl.col("message").fill_null(""),
        parsed=pl.col("level").is_in(LEVEL_NAMES) & pl.col("ts").is_not_null(),
    )
    return frame
