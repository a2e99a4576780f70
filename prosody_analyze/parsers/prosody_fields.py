"""Reading Prosody logs a chunk at a time: whole lines through polars' CSV reader, then split at TABs.

The multi-threaded CSV reader, told to split at a byte the chunk does not hold, cuts the chunk
into lines for us (CRLF handled, invalid UTF-8 replaced, blank lines kept as nulls so line
numbers stay right). Each format then splits a line at its first TABs only (``splitn``), so a
message holding TABs keeps them all, and a line that is not a record is still there, whole,
for ``message``.
"""

from __future__ import annotations

import polars as pl

from ..schema import EVENT_SCHEMA, LEVELS, STORED_SEQ
from .source import ReadNotes, lines_frame

# Control bytes that no log line should hold; the reader splits "fields" at one the chunk lacks.
SPLIT_BYTES = [bytes([code]) for code in (*range(1, 9), *range(14, 32), 127)]


def read_lines(chunk: bytes, valid_utf8: bool = False) -> tuple[pl.DataFrame, int]:
    """The chunk's lines as ``(seq, line)`` numbered from 1, blank lines left out, and how many
    lines it has (blank ones included).

    ``valid_utf8``: the caller knows the chunk is UTF-8 (plain ASCII, say), so the cheaper strict
    decoder will do.
    """
    separator = next((byte for byte in SPLIT_BYTES if chunk.find(byte) < 0), None)
    if separator is None:  # every control byte present: not text anyone logged, read it the slow way
        lines = lines_frame(chunk, 1, ReadNotes()).with_columns(line=pl.col("line").replace("", None))
    else:
        lines = pl.read_csv(
            chunk,
            has_header=False,
            separator=separator.decode(),
            quote_char=None,
            encoding="utf8" if valid_utf8 else "utf8-lossy",
            schema={"line": pl.String},
            raise_if_empty=False,
        )
        lines = lines.rechunk().with_row_index("seq", offset=1)  # see read_records
    numbered = lines.with_columns(pl.col("seq").cast(STORED_SEQ))
    return numbered.filter(pl.col("line").is_not_null()), lines.height


# The level read straight as its enum: cheaper to read, test and write than a string, and a line
# with any other level fails the read (the chunk then goes to the line reader).
RECORD_SCHEMA = {"head": pl.String, "level": EVENT_SCHEMA["level"], "message": pl.String}
LEVEL_BYTES = pl.lit(pl.Series([len(name) for name in LEVELS], dtype=pl.UInt32))  # by enum index


def read_records(chunk: bytes) -> pl.DataFrame | None:
    """A chunk of plain UTF-8 ``head<TAB>level<TAB>message`` lines as ``(seq, head, level, message)``,
    split by polars' CSV reader itself: one copy of the text, where lines then fields take two.

    None when a line is not that simple (a third TAB, fewer than two, an empty message, a blank
    line, a CR, bytes that are not UTF-8): :func:`read_lines` then reads the chunk. The reader
    drops what follows a third TAB, so the fields' bytes must add up to the chunk's; with no short
    line, nothing can offset a dropped byte.
    """
    if b"\r" in chunk:
        return None
    try:
        records = pl.read_csv(
            chunk,
            has_header=False,
            separator="\t",
            quote_char=None,
            schema=RECORD_SCHEMA,
            truncate_ragged_lines=True,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:  # invalid UTF-8, another level, the first line has a third TAB
        return None
    texts = pl.col("head", "message")
    level_bytes = LEVEL_BYTES.gather(pl.col("level").to_physical())
    field_bytes, missing = records.select(
        (pl.sum_horizontal(texts.str.len_bytes().sum()) + level_bytes.sum()).alias("bytes"),
        pl.sum_horizontal(pl.col("head", "level", "message").null_count()).alias("missing"),
    ).row(0)
    line_bytes = (field_bytes or 0) + 3 * records.height  # two TABs and a newline each
    if missing or line_bytes != len(chunk) + (not chunk.endswith(b"\n")):
        return None
    # The reader gives each column in pieces (17 for 31 MiB): joined once here, not again by every
    # query on the chunk and by the Parquet writer (-2 to -4 % wall and CPU on a 1 GB log).
    return records.rechunk().with_row_index("seq", offset=1).with_columns(pl.col("seq").cast(STORED_SEQ))


def split_tabs(line: pl.Expr, fields: int) -> list[pl.Expr]:
    """The line's first ``fields - 1`` TAB-separated fields and the rest (TABs kept), null when absent."""
    parts = line.str.splitn("\t", fields)
    return [parts.struct.field(f"field_{index}") for index in range(fields)]


def continues(line: pl.Expr) -> pl.Expr:
    """A line that continues the record above it (a Lua traceback): indented, or its heading."""
    indented = line.str.starts_with("\t") | line.str.starts_with(" ")
    return (indented & (line.str.strip_chars() != "")) | line.str.starts_with("stack traceback:")
