"""Log formats: the sniffer that tells them apart and the registry of their parsers.

Each format module has ``NAME`` and ``LINE_RE`` (a line of that format, once any ``kubectl``/pm2
wrapping is removed). Prosody's formats have ``fields(lines, context)`` and are streamed chunk by
chunk (bounded memory whatever the file size, see :func:`_stream` and ``prosody_server``); the client
formats (small, with multi-line records) have ``parse(frame, context)`` turning a frame of
``(seq, line)`` into event columns plus a boolean ``parsed``, run on the whole file at once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from ..schema import STORED_SEQ, conform, server_stored_schema, stored_event_schema
from ..sessions import lifecycle_rows
from . import capture, jxs, jxs_dump, pm2, prosody_console, prosody_file, prosody_server, ws_errors
from .context import FileContext
from .prosody_fields import read_lines
from .source import (
    SAMPLE_BYTES,
    ReadNotes,
    Wrapping,
    is_gzip,
    iter_byte_chunks,
    iter_bytes,
    iter_line_frames,
    read_sample,
    reused_buffers,
    strip_wrapping_text,
    unwrap,
)

FORMATS = {
    module.NAME: module for module in (prosody_file, prosody_console, jxs, jxs_dump, capture, ws_errors)
}
STREAMED = {prosody_file.NAME, prosody_console.NAME}
MIN_SHARE = 0.2  # share of the sampled lines the winning format must match
SNIFF_LINES = 2000
# Bytes of a Prosody log parsed at a time: bounds memory. Each chunk costs a fixed share of work
# besides its lines; 32 MB ran 4-9 % faster than 16 MB for about 150 MiB more peak RSS (~700 MiB).
# Under 32 MiB, so that glibc's malloc can reuse freed chunk buffers (see `source.reused_buffers`).
CHUNK_BYTES = 31 << 20
PARALLEL_CHUNKS = 2  # chunks parsed at once (one per core here) while the previous one is written
MAX_LINES = 2**32 - 1  # lines of one file that events.parquet can number (schema.STORED_SEQ)


@dataclass(frozen=True)
class Sniffed:
    """The sniffer's verdict on one file."""

    format: str | None  # a key of FORMATS, or None when not recognised
    wrapping: Wrapping
    gzip: bool
    reason: str = ""  # why it was not recognised
    first_line: str | None = None  # first line of the format, unwrapped

    @property
    def label(self) -> str:
        """Format as shown to users, e.g. ``prosody-console+kubectl-timestamps+gzip``."""
        if self.format is None:
            return "unrecognised"
        return "+".join([self.format, *self.wrapping.labels(), *(["gzip"] if self.gzip else [])])


def _looks_binary(sample: bytes, text: str) -> bool:
    return b"\x00" in sample or text.count("\ufffd") > len(text) / 10


def sniff(path: Path) -> Sniffed:
    """Recognise a file's format from its first 64 KiB (decompressed)."""
    gz = is_gzip(path)
    sample = read_sample(path)
    if not sample.strip():
        return Sniffed(None, Wrapping(), gz, reason="empty file")
    text = sample.decode("utf-8", errors="replace")
    if _looks_binary(sample, text):
        return Sniffed(None, Wrapping(), gz, reason="binary data, not a text log")
    lines = text.splitlines()
    if len(sample) >= SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the sample may end mid-line
    counts = dict.fromkeys(FORMATS, 0)
    first: dict[str, str] = {}
    flags = {"ansi": False, "kubectl_prefix": False, "kubectl_time": False, "pm2": False}
    nonblank = 0
    for raw in lines[:SNIFF_LINES]:
        if not raw.strip():
            continue
        nonblank += 1
        inner, wrapping = strip_wrapping_text(raw)
        for flag in flags:
            flags[flag] |= getattr(wrapping, flag)
        if wrapping.pm2 and pm2.DAEMON_LINE_RE.match(inner):
            counts[jxs.NAME] += 1
            continue
        for name, module in FORMATS.items():
            if module.LINE_RE.search(inner):
                counts[name] += 1
                first.setdefault(name, inner)
                break
    best = max(counts, key=lambda name: counts[name])
    if counts[best] == 0 or counts[best] < MIN_SHARE * nonblank:
        return Sniffed(None, Wrapping(**flags), gz, reason="no known log format in its first lines")
    return Sniffed(best, Wrapping(**flags), gz, first_line=first.get(best))


def _last_text(path: Path, limit: int = SAMPLE_BYTES) -> str:
    """The end of the (decompressed) file, to see the month of its last line."""
    if not is_gzip(path):
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - limit))
            return handle.read().decode("utf-8", errors="replace")
    tail = b""
    for block in iter_bytes(path, ReadNotes()):
        tail = (tail + block)[-limit:]
    return tail.decode("utf-8", errors="replace")


def _year_and_month(path: Path, sniffed: Sniffed, year: int | None) -> tuple[int, int]:
    """Year and month of the first line for yearless formats: ``--year``, else the mtime's year,
    minus one when the file runs from one year into the next (its last month is before its first)."""
    first_month = prosody_file.first_month(sniffed.first_line or "") or 1
    if year is not None:
        return year, first_month
    mtime_year = datetime.fromtimestamp(path.stat().st_mtime, UTC).year
    if sniffed.format != prosody_file.NAME:
        return mtime_year, first_month
    last_month = first_month
    for line in reversed(_last_text(path).splitlines()):
        month = prosody_file.first_month(strip_wrapping_text(line)[0])
        if month:
            last_month = month
            break
    return (mtime_year - 1 if last_month < first_month else mtime_year), first_month


@dataclass
class FileResult:
    lines: int = 0
    events: int = 0
    unparsed: int = 0
    invalid_utf8_lines: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    manifests: list[dict] = field(default_factory=list)  # swarm manifests found inside the log
    error: str = ""  # why parsing stopped early (what came before is kept)
    sha256: str = ""  # of the file's bytes, when reading it whole gave them (see `hashed_while_read`)


def hashed_while_read(sniffed: Sniffed) -> bool:
    """Whether parsing reads the file's own bytes, in order, so that its SHA-256 comes with them
    (a plain Prosody log): no second read of a big file."""
    return sniffed.format in STREAMED and not sniffed.gzip


def _scratch_file(scratch: Path, prefix: str, suffix: str = ".parquet") -> Path:
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=scratch)
    os.close(handle)
    return Path(name)


def _write_lifecycle(events: pl.DataFrame, scratch: Path) -> Path:
    """The rows sessions are built from, to an Arrow IPC file in ``scratch`` (read back with
    ``pl.scan_ipc``). Written out, not kept: rows filtered from a chunk would hold on to all of its
    strings. IPC, not Parquet: a quarter of the CPU, for files that live a minute."""
    part = _scratch_file(scratch, "lifecycle-", ".arrow")
    rows = lifecycle_rows(events).collect(engine=prosody_server.CHUNK_ENGINE)
    rows.write_ipc(part, compression="uncompressed")
    return part


# Told how many bytes of the file have been read, from whichever thread reads them (a progress bar).
OnRead = Callable[[int], None] | None


def _stream(
    path: Path,
    display: str,
    module,
    context: FileContext,
    notes: ReadNotes,
    scratch: Path,
    files: list[str],
    on_read: OnRead,
):
    """Prosody formats: chunk by chunk, memory bounded by a chunk whatever the file size.

    Each chunk of whole lines is split by polars' CSV reader into lines (or, for plain records,
    straight into fields) and turned into events (``prosody_server``) in worker threads; then, in
    file order, what carries across chunks is applied and the chunk goes on to the Parquet writer,
    through an IO source, as the returned frame is consumed (rows in line order). The figures and
    the lifecycle rows (for sessions) fill in meanwhile.
    """
    result = FileResult()
    plain = not is_gzip(path)  # then the chunks are the file's own bytes
    digest = hashlib.sha256() if plain else None
    lifecycle: list[Path] = []
    state = prosody_server.CarryState()
    stored = server_stored_schema(files, pod_names=context.wrapping.kubectl_prefix)
    constants = {"file": pl.lit(display, stored["file"]), "origin": pl.lit("server")}  # Prosody logs only

    def parse_chunk(chunk: bytes) -> tuple[pl.DataFrame, dict, int]:
        """One chunk's events (lines numbered from 1), figures and line count, in a worker thread
        (polars releases the GIL)."""
        events = None
        # Plain records come split by the CSV reader itself, which decodes strictly: a chunk read so
        # is UTF-8. A chunk holding a line of unknown shape is read again as lines, so that such a
        # line keeps its whole text in `message`.
        records = prosody_file.read_records(chunk, context) if module is prosody_file else None
        valid_utf8 = records is not None
        if records is not None:
            count = records.height
            events = prosody_server.event_columns(module.fields(records, context), constants, stored)
            if events["unparsed"].any():
                events = None
        if events is None:
            # A quick scan that spares lossy decoding and the U+FFFD count.
            valid_utf8 = valid_utf8 or chunk.isascii()
            lines, count = read_lines(chunk, valid_utf8)
            events = prosody_server.event_columns(module.fields(lines, context), constants, stored)
        figures = _figures(events, count_invalid=not valid_utf8)
        return prosody_server.fold_tracebacks(events.drop("unparsed")), figures, count

    def in_order(done: Future) -> pl.DataFrame:
        """File order: number the lines, carry joins over, note the lifecycle rows for sessions."""
        events, figures, count = done.result()
        if result.lines + count > MAX_LINES:
            raise ValueError(f"more than {MAX_LINES:,} lines: split the file (e.g. split -l)")
        events = events.with_columns(pl.col("seq") + pl.lit(result.lines, STORED_SEQ))
        _merge(result, figures)
        result.lines += count
        events = prosody_server.carry_over(events, state)
        result.events += events.height
        lifecycle.append(_write_lifecycle(events, scratch))
        return events

    def batches(with_columns, predicate, n_rows, batch_size):
        # Chunks are read in a thread of their own, so that their buffers all come from one malloc
        # arena, where a freed one is reused (`reused_buffers`); polars calls this generator from
        # any of its threads.
        with (
            ThreadPoolExecutor(max_workers=PARALLEL_CHUNKS) as pool,
            ThreadPoolExecutor(1) as reader,
            reused_buffers(),
        ):
            queued: deque[Future] = deque()
            chunks = iter_byte_chunks(path, notes, CHUNK_BYTES)
            try:
                while (chunk := reader.submit(next, chunks, None).result()) is not None:
                    queued.append(pool.submit(parse_chunk, chunk))
                    if plain:
                        digest.update(chunk)  # chunks cover the file in order
                        if on_read:
                            on_read(len(chunk))
                    if len(queued) > PARALLEL_CHUNKS:
                        yield _select(in_order(queued.popleft()), with_columns, predicate)
                while queued:
                    yield _select(in_order(queued.popleft()), with_columns, predicate)
                if plain:
                    result.sha256 = digest.hexdigest()
                elif on_read:  # a gzip stream's chunks are decompressed bytes: the file is read now
                    on_read(path.stat().st_size)
            except Exception as error:  # one bad file must not sink the others: keep what was read, say why
                result.error = f"stopped after line {result.lines}: {type(error).__name__}: {error}"
                for future in queued:
                    future.cancel()

    frame = register_io_source(batches, schema=stored, explain_name=f"{module.NAME} {display}")
    return result, frame, lifecycle


def _select(events: pl.DataFrame, with_columns: list[str] | None, predicate: pl.Expr | None) -> pl.DataFrame:
    """What an IO source owes polars: the rows and columns the query asked for."""
    if predicate is not None:
        events = events.filter(predicate)
    return events.select(with_columns) if with_columns else events


def _figures(events: pl.DataFrame, count_invalid: bool = True) -> dict:
    """A chunk's share of the file's figures (an ASCII chunk has no invalid UTF-8 to count)."""
    line = pl.concat_str("source", "message", ignore_nulls=True)
    invalid = line.str.contains("\ufffd", literal=True).sum() if count_invalid else pl.lit(0)
    return events.select(
        pl.col("unparsed").sum().alias("unparsed"),
        pl.col("ts").min().alias("first_ts"),
        pl.col("ts").max().alias("last_ts"),
        invalid.alias("invalid_utf8_lines"),
    ).row(0, named=True)


def _merge(result: FileResult, figures: dict) -> None:
    result.unparsed += figures["unparsed"]
    result.invalid_utf8_lines += figures["invalid_utf8_lines"]
    for name, pick in (("first_ts", min), ("last_ts", max)):
        value, known = figures[name], getattr(result, name)
        if value is not None:
            setattr(result, name, value if known is None else pick(known, value))


def _whole(
    path: Path,
    display: str,
    module,
    context: FileContext,
    notes: ReadNotes,
    scratch: Path,
    files: list[str],
    on_read: OnRead,
):
    """Client formats (small, multi-line records): all lines at once, in memory."""
    frames = [frame.filter(pl.col("line").str.contains(r"\S")) for frame in iter_line_frames(path, notes)]
    if on_read:
        on_read(path.stat().st_size)
    frames = [frame for frame in frames if frame.height]
    if not frames:
        return FileResult(invalid_utf8_lines=notes.invalid_utf8_lines), None, []
    lines = frames[-1]["seq"].max()
    parsed = module.parse(unwrap(pl.concat(frames), context.wrapping), context)
    events = conform(parsed.with_columns(file=pl.lit(display)), stored_event_schema(files)).sort("seq")
    stamps = events["ts"].drop_nulls()
    result = FileResult(
        lines=lines,
        events=events.height,
        unparsed=int((~parsed["parsed"]).sum()),
        invalid_utf8_lines=notes.invalid_utf8_lines,
        first_ts=stamps.min() if stamps.len() else None,
        last_ts=stamps.max() if stamps.len() else None,
    )
    if module is capture:
        result.manifests = capture.manifests(events)
    part = _scratch_file(scratch, "whole-")
    events.write_parquet(part, compression="lz4")
    return result, pl.scan_parquet(part), [_write_lifecycle(events, scratch)]


def parse_file(
    path: Path,
    display: str,
    sniffed: Sniffed,
    notes: ReadNotes,
    scratch: Path,
    files: list[str],
    year: int | None = None,
    on_read: OnRead = None,
) -> tuple[FileResult, pl.LazyFrame | None, list[Path]]:
    """Parse one recognised file: its figures, a lazy frame of its events (``stored_event_schema``
    of the run's ``files``; a Prosody log's in ``server_stored_schema``) and a list of Arrow IPC
    files holding its session lifecycle rows (for ``build_sessions``).

    The frame reads files in ``scratch``, which must live until it is consumed. For Prosody logs
    the figures and the lifecycle list are complete only once the frame has been consumed, and
    ``on_read`` hears of the file's bytes as the frame reads them (a plain log chunk by chunk).
    """
    assert sniffed.format is not None
    module = FORMATS[sniffed.format]
    first_year, first_month = _year_and_month(path, sniffed, year)
    context = FileContext(display, pm2.process_name(path), sniffed.wrapping, first_year, first_month)
    parse = _stream if sniffed.format in STREAMED else _whole
    return parse(path, display, module, context, notes, scratch, files, on_read)
