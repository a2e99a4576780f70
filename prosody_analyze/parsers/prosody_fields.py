"""Reading Prosody logs, a chunk at a time, as tab-separated fields with polars' CSV reader.

Both Prosody sinks separate source/level/message with TABs, so the multi-threaded CSV reader
splits the lines for us (no quoting, CRLF handled, invalid UTF-8 replaced). A message holding
more than one TAB keeps its first two; a line without TAB is one field, kept for ``message``.
"""

from __future__ import annotations

import polars as pl

from .source import KUBECTL_PREFIX, KUBECTL_TIME, Wrapping

FIELDS = ["a", "b", "c", "d"]


def read_fields(chunk: bytes, first_seq: int, ascii: bool = False) -> pl.LazyFrame:
    """Whole lines as fields ``a``..``d`` (null when absent or empty), numbered from ``first_seq``.

    ``ascii``: the caller saw that the chunk is plain ASCII, so the cheaper strict decoder will do.
    """
    fields = pl.read_csv(
        chunk,
        has_header=False,
        separator="\t",
        quote_char=None,
        truncate_ragged_lines=True,
        encoding="utf8" if ascii else "utf8-lossy",
        schema=dict.fromkeys(FIELDS, pl.String),
        missing_columns="insert",
        raise_if_empty=False,
    )
    return (
        fields.lazy()
        .with_row_index("seq", offset=first_seq)
        .with_columns(pl.col("seq").cast(pl.Int64))
        .filter(pl.col("a").is_not_null() | pl.col("b").is_not_null())  # blank lines carry nothing
    )


def joined(first: str, second: str) -> pl.Expr:
    """Two fields glued back with the TAB the scanner split them at."""
    return pl.coalesce(pl.concat_str(pl.col(first), pl.lit("\t"), pl.col(second)), pl.col(first))


def unwrap_head(frame: pl.LazyFrame, wrapping: Wrapping) -> pl.LazyFrame:
    """Move ``kubectl logs --prefix/--timestamps`` wrappers off field ``a`` into ``shard`` / ``wrap_ts``."""
    head = pl.col("a")
    if wrapping.kubectl_prefix:
        frame = frame.with_columns(
            shard=head.str.extract(KUBECTL_PREFIX, 1), a=head.str.replace(KUBECTL_PREFIX, "")
        )
    if wrapping.kubectl_time:
        frame = frame.with_columns(
            wrap_ts=head.str.extract(KUBECTL_TIME, 1).str.to_datetime(
                "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False
            ),
            a=head.str.replace(KUBECTL_TIME, ""),
        )
    if wrapping.kubectl_prefix and wrapping.kubectl_time:  # either order
        frame = frame.with_columns(
            shard=pl.coalesce("shard", head.str.extract(KUBECTL_PREFIX, 1)),
            a=head.str.replace(KUBECTL_PREFIX, ""),
        )
    return frame


def continues(head: pl.Expr) -> pl.Expr:
    """A line that continues the record above it (a Lua traceback): indented, or its heading."""
    return (head.str.starts_with(" ") & (head.str.strip_chars() != "")) | head.str.starts_with(
        "stack traceback:"
    )
