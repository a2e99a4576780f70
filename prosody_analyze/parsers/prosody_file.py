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
from .prosody_fields import continues, joined, unwrap_head
from .prosody_server import LEVEL_NAMES, provisional_rows

NAME = "prosody-file"
LINE_RE = re.compile(r"^[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d \S+\t(?:debug|info|warn|error)\t")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def first_month(line: str) -> int | None:
    """Month (1-12) of a file-format line, or None."""
    return MONTHS.index(line[:3]) + 1 if LINE_RE.match(line) else None


def pass1(fields: pl.LazyFrame, context: FileContext) -> pl.LazyFrame:
    """Pass 1 over a chunk's fields (see ``prosody_fields``): one row per line, provisional kinds."""
    frame = unwrap_head(fields, context.wrapping)
    head = pl.col("a")
    year = pl.lit(f"{context.first_year} ")
    if context.first_month > 1:  # months before the first line's are in the next year
        next_year = head.str.head(3).is_in(MONTHS[: context.first_month - 1])
        year = pl.when(next_year).then(pl.lit(f"{context.first_year + 1} ")).otherwise(year)
    frame = frame.with_columns(
        ts=pl.concat_str(year, head.str.head(15)).str.strptime(
            pl.Datetime("us", "UTC"), "%Y %b %d %H:%M:%S", strict=False
        )
    )
    parsed = pl.col("ts").is_not_null() & pl.col("b").is_in(LEVEL_NAMES) & (head.str.slice(15, 1) == " ")
    ts = pl.coalesce("ts", "wrap_ts") if context.wrapping.kubectl_time else pl.col("ts")
    continuation = (head.is_null() & pl.col("b").is_not_null()) | continues(head)
    frame = frame.with_columns(
        ts=ts,
        source=head.str.slice(16),
        level=pl.col("b"),
        message=pl.when(parsed).then(joined("c", "d").fill_null("")).otherwise(joined("c", "d")),
        parsed=parsed,
        raw_a=pl.when(~parsed).then(head),
    )
    return provisional_rows(frame, continuation, context)
