"""Prosody's console sink, as ``docker logs`` / ``kubectl logs`` show it.

``c2s5648e2de8a80<spaces>info<TAB>Client connected``: the source is padded to a column that
grows with the longest source seen, so the line is split as "source, spaces, level, TAB",
never at fixed columns. Images since 2023 put ``YYYY-MM-DD HH:MM:SS`` in front; without it
(and without ``kubectl logs --timestamps``) ``ts`` is null and ``seq`` keeps the order.
"""

from __future__ import annotations

import re

import polars as pl

from .context import FileContext
from .prosody_server import CONTINUATION, classify, group_continuations

NAME = "prosody-console"
HEAD = r"^(?:(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) )?(\S+)\s+(debug|info|warn|error)$"
LINE_RE = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d )?\S+\s+(?:debug|info|warn|error)\t")


def parse(frame: pl.DataFrame, context: FileContext) -> pl.DataFrame:
    line = pl.col("line")
    parts = line.str.splitn("\t", 2)
    head = parts.struct.field("field_0").str.extract_groups(HEAD)
    frame = frame.with_columns(
        stamp=head.struct.field("1").str.strptime(
            pl.Datetime("us", "UTC"), "%Y-%m-%d %H:%M:%S", strict=False
        ),
        source=head.struct.field("2"),
        level=head.struct.field("3"),
        body=parts.struct.field("field_1"),
    ).with_columns(parsed=pl.col("level").is_not_null() & pl.col("body").is_not_null())
    ts = pl.coalesce("stamp", "wrap_ts") if "wrap_ts" in frame.columns else pl.col("stamp")
    frame = frame.with_columns(
        ts=ts,
        line=pl.when(pl.col("parsed")).then(pl.col("body")).otherwise(line),
        start=pl.col("parsed") | ~line.str.contains(CONTINUATION),
    ).drop("stamp", "body")
    frame = group_continuations(frame).with_columns(
        level=pl.when(pl.col("parsed")).then(pl.col("level")).when(pl.col("orphan")).then(pl.lit("error")),
        parsed=pl.col("parsed") | (pl.col("orphan") & pl.col("line").str.contains(CONTINUATION)),
    )
    return classify(frame.rename({"line": "message"})).drop("orphan")
