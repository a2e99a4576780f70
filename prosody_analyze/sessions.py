"""Sessions: one row per server c2s session and per client participant, with the stages reached.

Server sessions are keyed by c2s id *and* first-seen time (``"<id>@<first ts>"``, or
``"<id>@<file>:<line>"`` without times), because Prosody reuses ids: a new ``Client connected``
on a known id starts a new session. Client sessions are keyed by the participant key, already
unique per process (``"<process>/<room>-<index>"``) or across shards (swarm).
Only the lifecycle events are read, so this stays small next to the events table.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from .schema import EVENT_SCHEMA, SESSION_SCHEMA, STAGE_KIND, STAGES, conform

LIFECYCLE_KINDS = [
    "connecting",
    "connection_opened",
    "authenticated",
    "resource_bound",
    "sm_enabled",
    "conference_request",
    "conference_error",
    "conference_timeout",
    "muc_join_sent",
    "muc_joined",
    "stanza_error",
    "disconnected",
    "session_destroyed",
    "hibernation_timeout",
    "http_error",
    "traceback",
    "retry",
]
LEAVE_KINDS = ["disconnected", "session_destroyed"]
COLUMNS = [
    "origin",
    "file",
    "seq",
    "ts",
    "session",
    "participant",
    "shard",
    "batch",
    "kind",
    "jid",
    "room",
    "stage",
    "http_status",
    "error",
]


def _failure(kind: pl.Expr) -> pl.Expr:
    """Events that mean the participant did not make it (a refused MUC join: presence error from a room)."""
    return kind.is_in(["http_error", "traceback", "hibernation_timeout", "conference_timeout"]) | (
        (kind == "stanza_error") & pl.col("room").is_not_null()
    )


def _aggregate(rows: pl.DataFrame, key: str) -> pl.DataFrame:
    kind = pl.col("kind")
    first_ts = pl.col("ts").min()

    def reached(stage: str) -> pl.Expr:
        kinds = LEAVE_KINDS if stage == "left" else [STAGE_KIND[stage]]
        return pl.col("ts").filter(kind.is_in(kinds)).min().alias(f"{stage}_ts")

    def seen(kinds: list[str]) -> pl.Expr:
        return kind.is_in(kinds).any()

    failures = _failure(kind)
    table = rows.group_by(key, maintain_order=True).agg(
        pl.col("origin").first(),
        pl.col("file").first(),
        pl.col("shard").drop_nulls().first(),
        pl.col("batch").drop_nulls().first(),
        pl.coalesce(
            pl.col("jid").filter(kind == "resource_bound").first(), pl.col("jid").drop_nulls().first()
        ).alias("jid"),
        pl.coalesce(
            pl.col("room").filter(kind.is_in(["muc_joined", "muc_join_sent"])).first(),
            pl.col("room").drop_nulls().first(),
        ).alias("room"),
        pl.col("participant").drop_nulls().first(),
        first_ts.alias("first_ts"),
        pl.col("ts").max().alias("last_ts"),
        pl.col("seq").min().alias("first_seq"),
        pl.col("seq").max().alias("last_seq"),
        *[reached(stage) for stage in STAGES],
        *[seen([STAGE_KIND[s]]).alias(f"has_{s}") for s in STAGES if s != "left"],
        seen(LEAVE_KINDS).alias("has_left"),
        failures.any().alias("has_failure"),
        pl.col("stage").filter(failures).drop_nulls().first().alias("reported_stage"),
        pl.coalesce(
            pl.col("error").filter(failures).drop_nulls().first(), pl.col("error").drop_nulls().first()
        ).alias("error"),
        pl.col("http_status").drop_nulls().first(),
    )
    # The stage after the last one reached. A log that begins mid-session shows no connect line,
    # but a session holding a full JID got at least that far.
    order = ["connected", "authenticated", "bound", "joined"]
    level = (
        pl.when(pl.col("jid").str.contains("/", literal=True))
        .then(3)
        .when(pl.col("jid").is_not_null())
        .then(2)
        .otherwise(0)
    )
    for index, stage in enumerate(order):
        level = pl.when(pl.col(f"has_{stage}")).then(pl.max_horizontal(level, index + 1)).otherwise(level)
    next_stage = level.replace_strict(list(range(len(order))), order, default=None, return_dtype=pl.String)
    failed = ~pl.col("has_joined") & (pl.col("has_failure") | pl.col("has_left"))
    seconds = lambda end, start: (pl.col(end) - pl.col(start)).dt.total_microseconds() / 1e6  # noqa: E731
    return table.with_columns(
        outcome=pl.when(pl.col("has_joined"))
        .then(pl.lit("joined"))
        .when(failed)
        .then(pl.lit("failed"))
        .otherwise(pl.lit("open")),
        failed_stage=pl.when(failed).then(pl.coalesce("reported_stage", next_stage, pl.lit("joined"))),
        connect_s=seconds("connected_ts", "first_ts"),
        auth_s=seconds("authenticated_ts", "connected_ts"),
        bind_s=seconds("bound_ts", "authenticated_ts"),
        join_s=seconds("joined_ts", "bound_ts"),
        total_s=seconds("joined_ts", "first_ts"),
    )


def _server(rows: pl.DataFrame) -> pl.DataFrame:
    bound = (
        rows.filter(pl.col("kind") == "resource_bound")
        .select(pl.col("jid"), pl.col("session").alias("bound_session"))
        .unique("jid", keep="first")
    )
    # MUC lines name the occupant's full JID, not its c2s id: attach them through the bound JID.
    rows = (
        rows.join(bound, on="jid", how="left", maintain_order="left")
        .with_columns(session=pl.coalesce("session", "bound_session"))
        .drop("bound_session")
        .filter(pl.col("session").is_not_null())
    )
    # Prosody reuses ids: a connection opened on an id seen before starts another session there.
    # Counting connections per id costs a window over every row, so only when an id is reused.
    opened = pl.col("kind") == "connection_opened"
    reused = rows.select((opened & ~pl.col("session").is_first_distinct()).any()).item()
    if reused:
        segment = opened.cast(pl.Int32).cum_sum().over("session").alias("segment")
        table = _aggregate(rows.with_columns(key=pl.struct("session", segment)), "key")
        session = pl.col("key").struct.field("session")
    else:
        table = _aggregate(rows.with_columns(key=pl.col("session")), "key")
        session = pl.col("key").alias("session")
    first = table.select(session, pl.col("first_ts"), pl.col("file"), pl.col("first_seq"))
    name = pl.concat_str(
        first["session"],
        pl.lit("@"),
        pl.coalesce(
            first["first_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
            pl.concat_str(first["file"], pl.lit(":"), first["first_seq"].cast(pl.String)),
        ),
    )
    return table.with_columns(session=first.select(name).to_series()).drop("key")


def lifecycle_rows(events: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """The only rows and columns sessions are built from: events of a lifecycle kind that name a
    session, a participant or a JID (columns picked first, so the filter copies no message), in
    EVENT_SCHEMA's dtypes (events on their way to events.parquet hold some as categories)."""
    return (
        events.lazy()
        .select(COLUMNS)
        .filter(
            pl.col("kind").is_in(LIFECYCLE_KINDS)
            & (
                pl.col("session").is_not_null()
                | pl.col("participant").is_not_null()
                | pl.col("jid").is_not_null()
            )
        )
        .cast({name: EVENT_SCHEMA[name] for name in COLUMNS})
    )


ROWS_PER_PASS = 500_000  # lifecycle rows aggregated at a time (about 350 MiB): bounds memory on huge logs
# Up to this many, all rows are aggregated at once: no second read, no passes' tables to keep. With
# passes of 750,000 a 4.3 GB log peaked at 1,033 MiB; one such pass after a 1 GB log, at 700 MiB.
ONE_PASS_ROWS = 750_000


def build_sessions(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Sessions table (SESSION_SCHEMA) from an events table (EVENT_SCHEMA), in memory and sorted
    whole (``write_sessions`` writes that of a huge log with bounded memory)."""
    return _table([_compacted(part) for part in _passes(lifecycle_rows(events))])


def write_sessions(events: pl.LazyFrame, path: Path, scratch: Path) -> int:
    """The sessions table of ``events`` written to ``path`` (Parquet); its number of rows.

    Each pass's table (see ``_passes``) is sorted and goes to a file in ``scratch``; ``path`` is
    written from them one after the other. Up to ONE_PASS_ROWS lifecycle rows (a 1 GB log) there
    is one pass, and the table is the one ``build_sessions`` gives. Beyond, the rows are in time
    order within each pass, not across passes: sorting the whole table would hold every session
    in memory at once (an 8.6 GB log then peaked at 1.26 GB).
    """
    files, count = [], 0
    for index, part in enumerate(_passes(lifecycle_rows(events))):
        files.append(scratch / f"sessions-{index}.arrow")
        _table([part]).write_ipc(files[-1])
        count += part.height
    if files:
        pl.scan_ipc(files).sink_parquet(path)
    else:
        _table([]).write_parquet(path)
    return count


def _passes(lazy: pl.LazyFrame) -> Iterator[pl.DataFrame]:
    """Session rows of the lifecycle rows, in passes.

    Lifecycle rows are aggregated in passes, each over the sessions whose key hashes to it, so
    memory follows ROWS_PER_PASS rather than the size of the log. Rows that name only a JID go
    to every pass: the pass holding the session that bound that JID claims them.
    """
    first = lazy.head(ONE_PASS_ROWS + 1).collect()
    if first.height <= ONE_PASS_ROWS:  # all of them: one pass, read once
        yield from _sessions_of(first, _file_order(first.lazy()))
        return
    del first  # more than a pass: let go of it before the passes
    file_order = _file_order(lazy)
    passes = -(-lazy.select(pl.len()).collect().item() // ROWS_PER_PASS)
    key = pl.coalesce("session", "participant")
    for index in range(passes):
        rows = lazy.filter(key.is_null() | (key.hash() % passes == index)).collect()
        yield from _sessions_of(rows, file_order)
        del rows


def _compacted(part: pl.DataFrame) -> pl.DataFrame:
    """``part`` holding only its own bytes, to be kept while other passes run. Its strings were
    picked out of a pass's rows and point into all of their buffers, which every pass kept would
    hold until the end: memory would grow with the log after all (4 GB of log: 830 MiB, 630 MiB
    with this). An Arrow IPC copy keeps only the bytes used (``write_sessions`` writes each part
    to a file instead)."""
    buffer = io.BytesIO()
    part.write_ipc(buffer)
    buffer.seek(0)
    return pl.read_ipc(buffer)


def _file_order(rows: pl.LazyFrame) -> pl.DataFrame:
    """``(file_index, file)``: the files in the order given."""
    return rows.select(pl.col("file").unique(maintain_order=True)).with_row_index("file_index").collect()


def _table(parts: list[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=SESSION_SCHEMA)
    return conform(pl.concat([conform(p, SESSION_SCHEMA) for p in parts]), SESSION_SCHEMA).sort(
        ["origin", "first_ts", "first_seq"], nulls_last=True, maintain_order=True
    )


def _sessions_of(rows: pl.DataFrame, file_order: pl.DataFrame) -> list[pl.DataFrame]:
    """Server and client session rows of one pass's lifecycle rows."""
    rows = rows.with_columns(
        file_index=pl.col("file").replace_strict(file_order["file"], file_order["file_index"])
    )
    # A single log's lines usually come in time order: then there is nothing to sort.
    in_order = file_order.height == 1 and rows["ts"].null_count() == 0
    in_order = in_order and rows["ts"].is_sorted() and rows["seq"].is_sorted()
    if not in_order:
        rows = rows.sort(["ts", "file_index", "seq"], maintain_order=True)
    client = rows.filter((pl.col("origin") == "client") & pl.col("participant").is_not_null())
    server = rows.filter(pl.col("origin") == "server")
    del rows  # each origin's rows are a copy: let go of the whole before aggregating
    parts = []
    if server.height:
        parts.append(_server(server))
    if client.height:
        parts.append(
            _aggregate(client.with_columns(key=pl.col("participant")), "key").rename({"key": "session"})
        )
    return parts
