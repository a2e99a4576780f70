"""Prosody's console sink, as ``docker logs`` / ``kubectl logs`` show it.

``c2s5648e2de8a80<spaces>info<TAB>Client connected``: the source is padded to a column that
grows with the longest source seen, so the head is read as "source, spaces, level" before the
TAB, never at fixed columns. Images since 2023 put ``YYYY-MM-DD HH:MM:SS`` in front; without it
(and without ``kubectl logs --timestamps``) ``ts`` is null and ``seq`` keeps the order.
"""

from __future__ import annotations

import re

import polars as pl

from ..schema import LEVELS
from .context import FileContext
from .prosody_fields import split_tabs
from .source import unwrap_kubectl

NAME = "prosody-console"
LINE_RE = re.compile(r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d )?\S+\s+(?:debug|info|warn|error)\t")


def fields(lines: pl.DataFrame, context: FileContext) -> pl.LazyFrame:
    """A chunk's ``(seq, line)`` -> ``ts, source, level, message, parsed`` (see ``prosody_server``)."""
    frame = unwrap_kubectl(lines, context.wrapping).lazy()
    head, message = split_tabs(pl.col("line"), 2)
    frame = frame.with_columns(head=head, message=message)
    head = pl.col("head")
    dated = (head.str.slice(4, 1) == "-") & (head.str.slice(10, 1) == " ") & (head.str.slice(13, 1) == ":")
    frame = frame.with_columns(
        stamp=pl.when(dated).then(
            head.str.slice(0, 19).str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%d %H:%M:%S", strict=False)
        ),
        rest=pl.when(dated).then(head.str.slice(20)).otherwise(head),
    )
    rest = pl.col("rest")
    level = pl.lit(None, pl.String)
    for name in LEVELS:
        level = pl.when(rest.str.ends_with(f" {name}")).then(pl.lit(name)).otherwise(level)
    frame = frame.with_columns(
        ts=pl.coalesce("stamp", "wrap_ts") if context.wrapping.kubectl_time else pl.col("stamp"),
        source=rest.str.splitn(" ", 2).struct.field("field_0"),
        level=level,
        message=pl.col("message").fill_null(""),
        parsed=level.is_not_null() & pl.col("message").is_not_null(),
    )
    return frame
