"""Reading log files as chunks of lines, whatever their wrapping.

Files may be gzipped (possibly truncated), have CRLF endings, invalid UTF-8 or very long
lines; a chunk reader turns them into polars frames of ``(seq, line)`` with bounded memory.
Wrappers that tools put in front of the real log line (``kubectl logs --timestamps`` /
``--prefix``, ``pm2 logs``' ``ID|NAME |`` and its colours) are recognised here once, so each
format parser only sees the line its program wrote.
"""

from __future__ import annotations

import functools
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

GZIP_MAGIC = b"\x1f\x8b"
RAW_READ = 4 << 20
CHUNK_BYTES = 16 << 20
SAMPLE_BYTES = 64 << 10

ANSI_PATTERN = r"\x1b\[[0-9;]*[A-Za-z]"
KUBECTL_PREFIX = r"^\[pod/[^/\]]+/[^\]]*\] "  # [pod/NAME/CONTAINER]
KUBECTL_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z "
KUBECTL_TIME_WIDTH = 31  # kubectl always writes 9 fractional digits: the time and its space
PM2_PREFIX = r"^(\d+\|\S+?|PM2)\s*\| "

ANSI_RE = re.compile(ANSI_PATTERN)
KUBECTL_PREFIX_RE = re.compile(KUBECTL_PREFIX)
KUBECTL_TIME_RE = re.compile(KUBECTL_TIME)
PM2_PREFIX_RE = re.compile(PM2_PREFIX)


@dataclass
class ReadNotes:
    """What went wrong while reading a file, without stopping the read."""

    truncated_gzip: bool = False
    invalid_utf8_lines: int = 0
    messages: list[str] = field(default_factory=list)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def iter_bytes(path: Path, notes: ReadNotes, read_size: int = RAW_READ) -> Iterator[bytes]:
    """Yield the file's (decompressed) bytes; a truncated or corrupt gzip yields what it could."""
    gz = is_gzip(path)
    with open(path, "rb") as handle:
        if not gz:
            while block := handle.read(read_size):
                yield block
            return
        decoder = zlib.decompressobj(wbits=31)
        while True:
            raw = handle.read(RAW_READ)
            if not raw:
                break
            try:
                while raw:
                    out = decoder.decompress(raw)
                    if out:
                        yield out
                    raw = decoder.unused_data if decoder.eof else b""
                    if decoder.eof and raw:  # concatenated gzip members
                        decoder = zlib.decompressobj(wbits=31)
            except zlib.error as error:
                notes.truncated_gzip = True
                notes.messages.append(f"corrupt gzip data ({error}); kept what was readable")
                return
        tail = decoder.flush()
        if tail:
            yield tail
        if not decoder.eof:
            notes.truncated_gzip = True
            notes.messages.append("truncated gzip: the stream ends early; kept what was readable")


def read_sample(path: Path, limit: int = SAMPLE_BYTES) -> bytes:
    """The first ``limit`` bytes of the (decompressed) file, for sniffing."""
    notes = ReadNotes()
    parts: list[bytes] = []
    size = 0
    for block in iter_bytes(path, notes):
        parts.append(block)
        size += len(block)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


# How a line that continues the record above it opens (Lua tracebacks): chunks never start there.
CONTINUATION_OPENINGS = (b"\t", b" ")
TRACEBACK_HEADING = b"stack traceback:"
RECORD_SEARCH = 256 << 10  # how far back from a chunk's nominal end to look for a record's start


def _continues_at(data: bytes, start: int) -> bool:
    """Whether the line at ``start`` continues the record above (or is too short to tell)."""
    head = data[start : start + len(TRACEBACK_HEADING)]
    if head[:1] in CONTINUATION_OPENINGS:
        return True
    return (
        TRACEBACK_HEADING.startswith(head)
        if len(head) < len(TRACEBACK_HEADING)
        else head == TRACEBACK_HEADING
    )


def record_start(data: bytes, end: int, floor: int = 0) -> int | None:
    """The last line start in ``data[floor + 1 : end + 1]`` whose line opens a record, or None.

    A chunk cut there keeps each traceback whole: its lines all go to the next chunk.
    """
    while end > floor:
        newline = data.rfind(b"\n", floor, end)
        if newline < 0:
            return None
        start = newline + 1
        if not _continues_at(data, start):
            return start
        end = newline
    return None


def iter_byte_chunks(path: Path, notes: ReadNotes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Chunks of about ``chunk_bytes`` of whole records (each ends at a newline, except maybe the last).

    A plain file is read a chunk at a time at offsets found beforehand (one copy from the page
    cache); a gzip stream is gathered block by block. Either way a chunk ends where a record
    (not a traceback's continuation line) starts, when one is found near its nominal end.
    """
    if not is_gzip(path):
        yield from _plain_chunks(path, chunk_bytes)
        return
    blocks: list[bytes] = []
    size = 0
    for block in iter_bytes(path, notes, read_size=chunk_bytes):
        blocks.append(block)
        size += len(block)
        if size < chunk_bytes:
            continue
        data = b"".join(blocks)
        cut = record_start(data, len(data), max(0, len(data) - RECORD_SEARCH))
        if cut is None and len(data) < 4 * chunk_bytes:
            cut = 0  # one huge line or record so far: keep reading until it ends
        elif cut is None:
            cut = data.rfind(b"\n") + 1
        if cut == 0:
            blocks, size = [data], len(data)
            continue
        yield data[:cut]
        blocks, size = ([data[cut:]], len(data) - cut) if cut < len(data) else ([], 0)
    if size:
        yield b"".join(blocks)


def _plain_chunks(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as handle:
        descriptor, size, offset = handle.fileno(), os.fstat(handle.fileno()).st_size, 0
        while offset < size:
            cut = _plain_cut(descriptor, offset, min(size, offset + chunk_bytes), size)
            yield os.pread(descriptor, cut - offset, offset)
            offset = cut


def _plain_cut(descriptor: int, offset: int, nominal: int, size: int) -> int:
    """Where the chunk starting at ``offset`` ends: the last record start at or before ``nominal``,
    else (a record longer than the chunk) the first one after it, else the end of the file."""
    if nominal >= size:
        return size
    low = max(offset, nominal - RECORD_SEARCH)
    window = os.pread(descriptor, nominal - low + len(TRACEBACK_HEADING), low)
    start = record_start(window, nominal - low)
    if start is not None and low + start > offset:
        return low + start
    position = nominal
    while position < size:
        block = os.pread(descriptor, RAW_READ, position)
        newline = block.find(b"\n")
        if newline < 0:  # a line longer than the block: read on
            position += len(block)
            continue
        position += newline + 1
        head = os.pread(descriptor, len(TRACEBACK_HEADING), position)
        if position - nominal > RECORD_SEARCH or not _continues_at(head, 0):
            return position
    return size


# mallopt(3) parameters, and the values glibc starts from
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
DEFAULT_THRESHOLD = 128 << 10
HEAP_BUFFER_MAX = 32 << 20  # the largest M_MMAP_THRESHOLD glibc takes on 64-bit systems


@functools.cache
def _glibc():
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    import ctypes  # only here: most commands never read a big log

    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextmanager
def reused_buffers() -> Iterator[None]:
    """While a big file is read: glibc's malloc serves chunk buffers (under 32 MiB) from its heap
    and keeps the freed ones there, so that a chunk reuses pages already mapped instead of faulting
    in and zeroing fresh ones (about 14 ms per chunk). Its own sliding thresholds map the first
    buffers apart and hand a heap's free pages back as soon as two buffers are free: twice the page
    faults. After, glibc's starting values are set back (as fixed thresholds) and the kept memory
    goes back to the system: what follows (the sessions) must not stack on top of it."""
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, HEAP_BUFFER_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, 8 * HEAP_BUFFER_MAX)  # a heap holds at most 64 MiB: never trimmed
    try:
        yield
    finally:
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
        libc.malloc_trim(0)


def lines_frame(chunk: bytes, first_seq: int, notes: ReadNotes) -> pl.DataFrame:
    """Split a chunk into a ``(seq, line)`` frame; CR before LF is dropped, bad bytes become U+FFFD."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        text = chunk.decode("utf-8", errors="replace")
        notes.invalid_utf8_lines += sum(1 for line in text.split("\n") if "\ufffd" in line)
    if text.endswith("\n"):
        text = text[:-1]
    lines = pl.Series("line", [text]).str.split("\n").explode().str.strip_suffix("\r")
    return pl.DataFrame(
        {"seq": pl.int_range(first_seq, first_seq + len(lines), eager=True, dtype=pl.Int64), "line": lines}
    )


def iter_line_frames(path: Path, notes: ReadNotes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[pl.DataFrame]:
    """Frames of ``(seq, line)`` with 1-based line numbers, chunk by chunk."""
    seq = 1
    for chunk in iter_byte_chunks(path, notes, chunk_bytes):
        frame = lines_frame(chunk, seq, notes)
        seq += frame.height
        yield frame


@dataclass(frozen=True)
class Wrapping:
    """Which wrappers a file's lines carry (found by the sniffer)."""

    ansi: bool = False
    kubectl_prefix: bool = False
    kubectl_time: bool = False
    pm2: bool = False

    def labels(self) -> list[str]:
        return [
            label
            for label, present in (
                ("kubectl-prefix", self.kubectl_prefix),
                ("kubectl-timestamps", self.kubectl_time),
                ("pm2", self.pm2),
            )
            if present
        ]


def strip_wrapping_text(line: str) -> tuple[str, Wrapping]:
    """The sniffer's per-line version of :func:`unwrap`: the inner line and what wrapped it."""
    ansi = "\x1b[" in line
    if ansi:
        line = ANSI_RE.sub("", line)
    prefix = timestamp = pm2 = False
    for _ in range(2):  # kubectl writes the prefix before the timestamp; accept either order
        if match := KUBECTL_PREFIX_RE.match(line):
            prefix, line = True, line[match.end() :]
        if match := KUBECTL_TIME_RE.match(line):
            timestamp, line = True, line[match.end() :]
    if match := PM2_PREFIX_RE.match(line):
        pm2, line = True, line[match.end() :]
    return line, Wrapping(ansi, prefix, timestamp, pm2)


def kubectl_prefix(line: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The pod named by the ``kubectl logs --prefix`` opening of ``line`` (null where the line has
    none) and the line without it. The opening is matched whole, with no capture group (the regex
    engine's DFA alone), then taken apart and cut off by its length."""
    opening = line.str.extract(KUBECTL_PREFIX, 0)
    pod = opening.str.slice(len("[pod/")).str.splitn("/", 2).struct.field("field_0")
    return pod, pl.when(opening.is_not_null()).then(line.str.slice(opening.str.len_chars())).otherwise(line)


def kubectl_time(line: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The ``kubectl logs --timestamps`` time opening ``line`` (UTC, to the microsecond; null where
    the line has none) and the line without it.

    The time has a fixed width, so a regex only checks it (with no capture group: the regex engine's
    DFA alone), and it is cut off by position. Its second and its fraction are parsed apart: the
    seconds repeat from line to line, so polars' parse cache serves most of them, where whole
    nanosecond times are all different (a third of the cost, on a console log's chunk).
    """
    stamped = line.str.contains(KUBECTL_TIME)
    second = line.str.head(19).str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S", strict=False)
    micros = line.str.slice(20, 6).cast(pl.Int64, strict=False)
    stamp = pl.when(stamped).then(second + pl.duration(microseconds=micros))
    return stamp, pl.when(stamped).then(line.str.slice(KUBECTL_TIME_WIDTH)).otherwise(line)


def unwrap_kubectl(frame: pl.DataFrame, wrapping: Wrapping) -> pl.DataFrame:
    """Move ``kubectl logs --prefix/--timestamps`` wrappers off ``line`` into ``shard`` / ``wrap_ts``."""
    line = pl.col("line")
    both = wrapping.kubectl_prefix and wrapping.kubectl_time
    for attempt in range(2 if both else 1):
        # kubectl writes the prefix, then the time; a second pass takes them the other way round,
        # when a line still opens with either (seldom: the check costs a sixth of a pass).
        if attempt:
            wrapped = line.str.starts_with("[pod/") | line.str.contains(KUBECTL_TIME)
            if not frame.select(wrapped.any()).item():
                break
        if wrapping.kubectl_prefix:
            pod, rest = kubectl_prefix(line)
            frame = frame.with_columns(
                pl.coalesce(pod, *([pl.col("shard")] if "shard" in frame else [])).alias("shard"),
                rest.alias("line"),
            )
        if wrapping.kubectl_time:
            stamp, rest = kubectl_time(line)
            frame = frame.with_columns(
                pl.coalesce(stamp, *([pl.col("wrap_ts")] if "wrap_ts" in frame else [])).alias("wrap_ts"),
                rest.alias("line"),
            )
    return frame


def unwrap(frame: pl.DataFrame, wrapping: Wrapping) -> pl.DataFrame:
    """Move wrappers into columns: ``wrap_ts`` (kubectl time), ``shard`` (pod), ``process`` (pm2 app)."""
    line = pl.col("line")
    columns: dict[str, pl.Expr] = {}
    if wrapping.ansi:
        frame = frame.with_columns(line.str.replace_all(ANSI_PATTERN, ""))
    frame = unwrap_kubectl(frame, wrapping)
    if wrapping.pm2:
        name = line.str.extract(PM2_PREFIX, 1)
        columns["process"] = (
            pl.when(name == "PM2").then(pl.lit("PM2")).otherwise(name.str.extract(r"\|(.*)$", 1))
        )
        frame = frame.with_columns(**columns).with_columns(line.str.replace(PM2_PREFIX, ""))
    return frame
