"""Prosody's file sink: ``Nov 28 21:03:03 c2s55d2c2e4a8e0<TAB>info<TAB>Client connected``.

The time has no year: it comes from ``--year`` or the file's mtime (see ``ingest``), and a
line whose month is before the first line's month belongs to the next year (Dec -> Jan).
The server's local time is taken as UTC. This is the high-volume format: it is parsed with
polars string kernels chunk by chunk, never row by row in Python.
"""

from __future__ import annotations

import re

import polars as pl

from .context import FileContext
from .prosody_server import CONTINUATION, LEVEL_NAMES, classify, group_continuations

NAME = "prosody-file"
LINE_RE = re.compile(r"^[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d \S+\t(?:debug|info|warn|error)\t")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def first_month(line: str) -> int | None:
    """Month (1-12) of a file-format line, or None."""
    return MONTHS.index(line[:3]) + 1 if LINE_RE.match(line) else None


def parse(frame: pl.DataFrame, context: FileContext) -> pl.DataFrame:
    line = pl.col("line")
    parts = line.str.splitn("\t", 3)
    head = parts.struct.field("field_0")
    stamp = pl.concat_str(pl.lit(f"{context.first_year} "), head.str.slice(0, 15)).str.strptime(
        pl.Datetime("us", "UTC"), "%Y %b %d %H:%M:%S", strict=False
    )
    frame = frame.with_columns(
        stamp=stamp,
        source=head.str.slice(16),
        level=parts.struct.field("field_1"),
        body=parts.struct.field("field_2"),
    ).with_columns(
        parsed=pl.col("stamp").is_not_null()
        & pl.col("level").is_in(LEVEL_NAMES)
        & pl.col("body").is_not_null()
        & (head.str.slice(15, 1) == " ")
    )
    frame = frame.with_columns(
        ts=pl.when(pl.col("stamp").dt.month() < context.first_month)
        .then(pl.col("stamp").dt.offset_by("1y"))
        .otherwise(pl.col("stamp")),
        line=pl.when(pl.col("parsed")).then(pl.col("body")).otherwise(line),
        start=pl.col("parsed") | ~line.str.contains(CONTINUATION),
    ).drop("stamp", "body")
    if "wrap_ts" in frame.columns:
        frame = frame.with_columns(ts=pl.coalesce("ts", "wrap_ts"))
    frame = group_continuations(frame)
    frame = frame.with_columns(
        source=pl.when(pl.col("parsed")).then(pl.col("source")),
        level=pl.when(pl.col("parsed")).then(pl.col("level")).when(pl.col("orphan")).then(pl.lit("error")),
        parsed=pl.col("parsed") | (pl.col("orphan") & pl.col("line").str.contains(CONTINUATION)),
    ).rename({"line": "message"})
    return classify(frame).drop("orphan")
