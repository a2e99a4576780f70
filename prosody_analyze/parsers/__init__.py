"""Log formats: the sniffer that tells them apart and the registry of their parsers.

Each format module has ``NAME``, ``LINE_RE`` (a line of that format, once any ``kubectl``/pm2
wrapping is removed) and ``parse(frame, context)`` turning a frame of ``(seq, line)`` into
event columns plus a boolean ``parsed``. Prosody's formats are parsed chunk by chunk, with
bounded memory whatever the file size; the client formats (small, with multi-line records)
are parsed whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from ..schema import EVENT_SCHEMA, conform
from . import capture, jxs, jxs_dump, pm2, prosody_console, prosody_file, ws_errors
from .context import FileContext
from .source import (
    SAMPLE_BYTES,
    ReadNotes,
    Wrapping,
    is_gzip,
    iter_bytes,
    iter_line_frames,
    read_sample,
    strip_wrapping_text,
    unwrap,
)

FORMATS = {
    module.NAME: module for module in (prosody_file, prosody_console, jxs, jxs_dump, capture, ws_errors)
}
CHUNKED = {prosody_file.NAME, prosody_console.NAME}
MIN_SHARE = 0.2  # share of the sampled lines the winning format must match
SNIFF_LINES = 2000


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
    first_ts: datetime | None = None
    last_ts: datetime | None = None


def _merge_span(result: FileResult, events: pl.DataFrame) -> None:
    stamps = events["ts"].drop_nulls()
    if stamps.len():
        low, high = stamps.min(), stamps.max()
        result.first_ts = low if result.first_ts is None else min(result.first_ts, low)
        result.last_ts = high if result.last_ts is None else max(result.last_ts, high)


def parse_file(
    path: Path,
    display: str,
    sniffed: Sniffed,
    notes: ReadNotes,
    write: Callable[[pl.DataFrame], None],
    year: int | None = None,
) -> FileResult:
    """Parse one recognised file, handing each chunk of schema-conformant events to ``write``."""
    assert sniffed.format is not None
    module = FORMATS[sniffed.format]
    first_year, first_month = _year_and_month(path, sniffed, year)
    context = FileContext(display, pm2.process_name(path), sniffed.wrapping, first_year, first_month)
    result = FileResult()
    frames: Iterator[pl.DataFrame] = iter_line_frames(path, notes)
    if sniffed.format not in CHUNKED:  # small files with multi-line records: parse them whole
        whole = list(frames)
        frames = iter([pl.concat(whole)] if whole else [])
    for frame in frames:
        result.lines += frame.height
        frame = frame.filter(pl.col("line").str.contains(r"\S"))  # blank lines carry nothing
        if frame.height == 0:
            continue
        parsed = module.parse(unwrap(frame, sniffed.wrapping), context)
        events = conform(parsed.with_columns(file=pl.lit(display)), EVENT_SCHEMA)
        result.events += events.height
        result.unparsed += int((~parsed["parsed"]).sum())
        _merge_span(result, events)
        write(events)
    return result
