"""ingest(): its outputs and contract, bad input, and the `ingest` command as a user runs it."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from prosody_analyze.errors import UserError
from prosody_analyze.ingest import ingest
from prosody_analyze.schema import (
    CLIENT_ONLY_COLUMNS,
    EVENT_SCHEMA,
    SESSION_SCHEMA,
    scan_events,
    stored_event_schema,
)

PROSODY_LINES = [
    "Nov 28 21:05:25 c2s557e4341b270\tinfo\tClient connected",
    "Nov 28 21:05:25 c2s557e4341b270\tinfo\tAuthenticated as anon@localhost",
    "Nov 28 21:05:25 c2s557e4341b270\tdebug\tResource bound: anon@localhost/abc",
    "Nov 28 21:05:28 c2s557e4341b270\tinfo\tClient disconnected: connection closed",
]


def write_log(path: Path, lines: list[str], ending: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ending.join(lines).encode() + ending.encode())
    return path


def events_of(out: Path) -> pl.DataFrame:
    return scan_events(out / "events.parquet").collect().sort("file", "seq")


def test_outputs_follow_the_schema_and_summary_contract(tmp_path, fixtures):
    out = tmp_path / "analysis"
    summary = ingest([fixtures], out, year=2026)
    stored = pl.read_parquet(out / "events.parquet")
    events = scan_events(out / "events.parquet").collect()
    sessions = pl.read_parquet(out / "sessions.parquet")
    saved = json.loads((out / "ingest.json").read_text())
    files = [f["path"] for f in saved["files"]]  # `file` is stored as an enum of them, in this order
    assert dict(stored.schema) == stored_event_schema(files)  # sparse columns as categories
    assert dict(events.schema) == EVENT_SCHEMA
    assert stored.cast(EVENT_SCHEMA).equals(events)
    assert dict(sessions.schema) == SESSION_SCHEMA
    assert saved == json.loads(json.dumps(summary.to_dict()))
    by_path = {f["path"]: f for f in saved["files"]}
    small = by_path[str(fixtures / "local-prosody" / "prosody_small_debug.log")]
    raw = (fixtures / "local-prosody" / "prosody_small_debug.log").read_bytes()
    assert small["sha256"] == hashlib.sha256(raw).hexdigest()
    assert small["size_bytes"] == len(raw)
    assert (small["format"], small["lines"], small["events"], small["unparsed"]) == (
        "prosody-file",
        378,
        378,
        0,
    )
    assert small["first_ts"] == "2026-11-28T21:05:24Z"
    assert by_path[str(fixtures / "README.md")]["format"] == "unrecognised"
    assert by_path[str(fixtures / "jitsi-k8s" / "log_server.txt")]["first_ts"] is None
    assert sum(f["events"] for f in saved["files"]) == events.height == saved["events"]
    assert saved["sessions"] == sessions.height
    assert set(events["file"]) == {f["path"] for f in saved["files"] if f["events"]}  # walked recursively
    in_order = events.group_by("file").agg((pl.col("seq").diff().drop_nulls() > 0).all().alias("ordered"))
    assert in_order["ordered"].all()  # rows come in line order within each file


def test_a_column_every_file_leaves_empty_is_stored_as_null(tmp_path, fixtures):
    server = fixtures / "local-prosody" / "prosody_small_debug.log"
    pod = tmp_path / "logs" / "pod.log"  # `kubectl logs --prefix`: the pod's name goes to `shard`
    pod.parent.mkdir()
    pod.write_text("".join(f"[pod/prosody-0/prosody] {line}\n" for line in server.read_text().splitlines()))
    runs = {
        "alone": [server],
        "with_pod": [server, pod],
        "with_client": [server, pod, fixtures / "local-prosody" / "jxs_2x50_ok.log"],
    }
    null_columns, read = {}, {}
    for name, paths in runs.items():
        ingest(paths, tmp_path / name, year=2026)
        stored = pl.read_parquet_schema(tmp_path / name / "events.parquet")
        null_columns[name] = [column for column, dtype in stored.items() if dtype == pl.Null]
        read[name] = scan_events(tmp_path / name / "events.parquet").collect()
        assert dict(read[name].schema) == EVENT_SCHEMA  # read back as if stored whole
    assert null_columns == {
        "alone": ["shard", *CLIENT_ONLY_COLUMNS],
        "with_pod": CLIENT_ONLY_COLUMNS,
        "with_client": [],
    }
    assert set(read["with_pod"]["shard"]) == {None, "prosody-0"}  # null on the plain log's rows
    for name in ("with_pod", "with_client"):
        assert read[name].filter(pl.col("file") == str(server)).equals(read["alone"])
    assert read["with_client"]["participant"].drop_nulls().n_unique() == 100  # the client log's 2 x 50


def test_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such file or directory: .*nope"):
        ingest([tmp_path / "nope"], tmp_path / "out")


def test_directory_without_logs_is_an_error(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "notes.txt").write_text("just some notes\nnothing to see\n")
    (tmp_path / "logs" / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    with pytest.raises(UserError, match="no log file could be ingested"):
        ingest([tmp_path / "logs"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no files found"):
        ingest([tmp_path / "empty"], tmp_path / "out")


def test_empty_and_binary_files_are_listed_and_skipped(tmp_path):
    logs = tmp_path / "logs"
    write_log(logs / "prosody.log", PROSODY_LINES)
    (logs / "empty.log").write_bytes(b"")
    (logs / "core.bin").write_bytes(bytes(range(256)) * 100)
    summary = ingest([logs], tmp_path / "out", year=2026)
    files = {Path(f.path).name: f for f in summary.files}
    assert files["empty.log"].format == "unrecognised" and files["empty.log"].notes == ["empty file"]
    assert files["core.bin"].format == "unrecognised" and "binary" in files["core.bin"].notes[0]
    assert files["prosody.log"].events == 4
    assert events_of(tmp_path / "out")["file"].unique().to_list() == [str(logs / "prosody.log")]


def test_invalid_utf8_is_kept_and_reported(tmp_path):
    log = tmp_path / "prosody.log"
    body = "\n".join(PROSODY_LINES).encode()
    log.write_bytes(
        body + b"\nNov 28 21:05:29 c2s557e4341b270\tdebug\tbad \xff\xfe bytes\n\xc3\x28\xa0 garbage\n"
    )
    summary = ingest([log], tmp_path / "out", year=2026)
    result = summary.files[0]
    assert result.events == 6 and result.unparsed == 1
    assert any("invalid UTF-8" in note for note in result.notes)
    events = events_of(tmp_path / "out")
    assert events["message"][4] == "bad \ufffd\ufffd bytes"
    assert events.row(5, named=True)["kind"] == "unknown" and "garbage" in events["message"][5]


def test_a_logged_replacement_character_is_not_invalid_utf8(tmp_path):
    line = "Nov 28 21:05:29 c2s557e4341b270\tdebug\tnick \ufffd"  # the character itself, in UTF-8
    log = write_log(tmp_path / "prosody.log", [*PROSODY_LINES, line])
    result = ingest([log], tmp_path / "out", year=2026).files[0]
    assert (result.events, result.unparsed, result.notes) == (5, 0, [])
    assert events_of(tmp_path / "out")["message"][-1] == "nick \ufffd"


@pytest.mark.parametrize("name,lines", [("prosody.log", PROSODY_LINES), ("jxs.log", None)])
def test_crlf_endings_read_like_lf(tmp_path, fixtures, name, lines):
    lines = lines or (fixtures / "local-prosody" / "jxs_small_client.log").read_text().splitlines()
    unix = write_log(tmp_path / "lf" / name, lines)
    dos = write_log(tmp_path / "crlf" / name, lines, ending="\r\n")
    ingest([unix], tmp_path / "out-lf", year=2026)
    ingest([dos], tmp_path / "out-crlf", year=2026)
    lf, crlf = events_of(tmp_path / "out-lf"), events_of(tmp_path / "out-crlf")
    assert not crlf["message"].str.contains("\r", literal=True).any()
    columns = [c for c in EVENT_SCHEMA if c not in ("file", "participant", "session", "source")]
    assert crlf.select(columns).equals(lf.select(columns))


def test_a_ten_megabyte_line_is_kept_whole(tmp_path):
    huge = "x" * (10 << 20)
    log = write_log(
        tmp_path / "prosody.log",
        [*PROSODY_LINES[:2], f"Nov 28 21:05:26 http.server\tdebug\t{huge}", huge, *PROSODY_LINES[2:]],
    )
    summary = ingest([log], tmp_path / "out", year=2026)
    assert (summary.files[0].events, summary.files[0].unparsed) == (6, 1)
    lengths = events_of(tmp_path / "out")["message"].str.len_bytes().to_list()
    assert lengths[2] == len(huge) and lengths[3] == len(huge)


def test_truncated_gzip_keeps_what_was_readable(tmp_path, fixtures):
    data = gzip.compress((fixtures / "local-prosody" / "prosody_small_debug.log").read_bytes())
    log = tmp_path / "prosody.log.2.gz"
    log.write_bytes(data[: len(data) * 2 // 3])
    summary = ingest([log], tmp_path / "out", year=2026)
    result = summary.files[0]
    assert result.format == "prosody-file+gzip"
    assert any("truncated gzip" in note for note in result.notes)
    assert 100 < result.events < 378
    assert events_of(tmp_path / "out")["seq"].max() == result.lines


def test_format_change_mid_file_counts_the_foreign_lines(tmp_path, fixtures):
    jxs_lines = (fixtures / "local-prosody" / "jxs_small_client.log").read_text().splitlines()[14:18]
    log = write_log(tmp_path / "mixed.log", [*PROSODY_LINES, *jxs_lines, *PROSODY_LINES])
    summary = ingest([log], tmp_path / "out", year=2026)
    result = summary.files[0]
    assert (result.format, result.events, result.unparsed) == ("prosody-file", 12, 4)
    foreign = events_of(tmp_path / "out").filter(pl.col("level").is_null())
    assert foreign["message"].to_list() == jxs_lines
    assert (foreign["kind"] == "unknown").all()


def test_ingest_again_replaces_previous_output(tmp_path, fixtures):
    out = tmp_path / "out"
    ingest([fixtures / "pm2"], out)
    ingest([fixtures / "local-prosody" / "jxs_small_client.log"], out)
    assert pl.read_parquet(out / "sessions.parquet").height == 3
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # scratch files removed


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prosody_analyze", "ingest", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_a_table_and_json(tmp_path, fixtures):
    done = cli(str(fixtures), "--out", str(tmp_path / "a"), "--year", "2026")
    assert done.returncode == 0, done.stderr
    for expected in ("prosody-console", "prosody-file", "jxs+pm2", "jxs-debug-dump", "unrecognised", "UTC"):
        assert expected in done.stdout
    done = cli(str(fixtures / "pm2"), "--out", str(tmp_path / "b"), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {f["format"] for f in summary["files"]} == {"jxs", "jxs+pm2"}
    assert summary["sessions"] == 20


@pytest.mark.parametrize("setup", ["missing", "no-logs"])
def test_cli_bad_input_is_one_line_no_traceback(tmp_path, setup):
    target = tmp_path / "input"
    if setup == "no-logs":
        target.mkdir()
        (target / "notes.txt").write_text("hello\n")
    done = cli(str(target), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("prosody-analyze: error: ")
    assert "Traceback" not in done.stderr + done.stdout


def test_chunks_are_whole_lines_and_cover_the_file(tmp_path):
    from prosody_analyze.parsers.source import ReadNotes, iter_byte_chunks

    data = (
        b"".join(b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(2000)) + b"y" * 5000 + b"\nno newline"
    )
    path = tmp_path / "f.log"
    path.write_bytes(data)
    chunks = list(iter_byte_chunks(path, ReadNotes(), chunk_bytes=1000))
    assert b"".join(chunks) == data
    assert all(chunk.endswith(b"\n") for chunk in chunks[:-1]) and len(chunks) > 50


def test_small_chunks_give_the_same_tables(tmp_path, fixtures, monkeypatch):
    """Chunk boundaries (line numbers, joins already asked for, figures) do not change the result."""
    import prosody_analyze.parsers as parsers

    log = fixtures / "local-prosody" / "prosody_small_debug.log"
    whole = ingest([log], tmp_path / "whole", year=2026)
    monkeypatch.setattr(parsers, "CHUNK_BYTES", 2000)
    chunked = ingest([log], tmp_path / "chunked", year=2026)
    assert chunked.files[0].lines == whole.files[0].lines and chunked.events == whole.events
    assert chunked.files[0].sha256 == hashlib.sha256(log.read_bytes()).hexdigest()  # hashed chunk by chunk
    events = [scan_events(tmp_path / name / "events.parquet").collect() for name in ("whole", "chunked")]
    assert events[1].equals(events[0])
    sessions = [pl.read_parquet(tmp_path / name / "sessions.parquet") for name in ("whole", "chunked")]
    assert sessions[1].equals(sessions[0])


def test_a_file_with_more_lines_than_can_be_numbered_keeps_what_came_before(tmp_path, monkeypatch):
    """Line numbers are stored in 32 bits: past that a file stops, with its first lines kept."""
    import prosody_analyze.parsers as parsers

    log = write_log(tmp_path / "logs" / "prosody.log", PROSODY_LINES * 3)
    monkeypatch.setattr(parsers, "CHUNK_BYTES", 100)  # about one line per chunk
    monkeypatch.setattr(parsers, "MAX_LINES", 5)
    summary = ingest([log], tmp_path / "out", year=2026)
    (only,) = summary.files
    assert only.lines == only.events == 5
    assert "stopped after line 5" in only.notes[-1] and "more than 5 lines" in only.notes[-1]
    assert events_of(tmp_path / "out")["seq"].to_list() == [1, 2, 3, 4, 5]
    assert only.sha256 == hashlib.sha256(log.read_bytes()).hexdigest()  # of the whole file all the same


def test_sessions_built_in_passes_are_the_same(tmp_path, fixtures, monkeypatch):
    """Huge logs aggregate their sessions a share at a time and write the table pass by pass
    (bounded memory): the same sessions, in time order within each pass only."""
    import prosody_analyze.sessions as sessions

    whole = ingest([fixtures], tmp_path / "whole", year=2026)
    monkeypatch.setattr(sessions, "ONE_PASS_ROWS", 7)
    monkeypatch.setattr(sessions, "ROWS_PER_PASS", 7)
    passes = ingest([fixtures], tmp_path / "passes", year=2026)
    assert whole.sessions == passes.sessions > 200
    tables = [pl.read_parquet(tmp_path / name / "sessions.parquet") for name in ("whole", "passes")]
    tables = [table.sort("origin", "session") for table in tables]  # in time order within a pass
    assert_frame_equal(tables[1], tables[0])  # durations may differ in the last bit (polars' kernels)


def test_files_report_their_bytes_as_they_are_read(tmp_path, fixtures, monkeypatch):
    """What drives the progress bar: a plain Prosody log reports its bytes chunk by chunk as its
    events are written, a gzipped one and a client log the whole file once read; each adds up to
    the file's size on disk."""
    import prosody_analyze.parsers as parsers
    from prosody_analyze.parsers.source import ReadNotes

    plain = fixtures / "local-prosody" / "prosody_small_debug.log"
    packed = tmp_path / "prosody.log.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    client = fixtures / "local-prosody" / "jxs_small_client.log"
    monkeypatch.setattr(parsers, "CHUNK_BYTES", 4000)
    files = [str(path) for path in (plain, packed, client)]
    for path in (plain, packed, client):
        reports: list[int] = []
        _, events, _ = parsers.parse_file(
            path, str(path), parsers.sniff(path), ReadNotes(), tmp_path, files, 2026, reports.append
        )
        if path != client:
            assert reports == []  # a Prosody log is read while its events are consumed
            events.collect()
        assert sum(reports) == path.stat().st_size
        assert len(reports) > 5 if path == plain else len(reports) == 1


def test_the_progress_bar_does_not_change_the_outputs(tmp_path, fixtures):
    """A terminal gets a progress bar over the input bytes; the tables are the same with it."""
    quiet = ingest([fixtures], tmp_path / "quiet", year=2026)
    shown = ingest([fixtures], tmp_path / "shown", year=2026, progress=True)
    assert shown.to_dict() | {"out_dir": ""} == quiet.to_dict() | {"out_dir": ""}
    events = [scan_events(tmp_path / name / "events.parquet").collect() for name in ("quiet", "shown")]
    assert events[1].equals(events[0])
