"""The one event schema: every parser produces it, every analysis consumes it.

Two tables come out of `ingest`:

* **events** — one row per log record (a line, or a multi-line record such as a
  stanza dump or a traceback), from the server (Prosody) or a client (JXS, swarm).
* **sessions** — one row per server c2s session and per client participant, with
  the time each stage of joining a conference was reached.

Times are UTC (`ts` is null where the log has no time, e.g. `kubectl logs` of the
console sink; `seq` then keeps the order).
"""

from __future__ import annotations

import polars as pl

ORIGINS = ["server", "client"]

# Event kinds, in the order a participant normally goes through them, then the rest.
EVENT_KINDS = [
    "connecting",  # the load client starts opening a connection (so connect time is measured)
    "connection_opened",  # TCP/WebSocket connection accepted (server) or opened (client)
    "websocket_frame",  # a WebSocket frame received by mod_websocket
    "authenticated",  # SASL success (`Authenticated as JID`)
    "resource_bound",  # resource bind result (`Resource bound: FULLJID`)
    "sm_enabled",  # XEP-0198 stream management enabled
    "conference_request",  # conference request IQ sent to focus (Jicofo)
    "conference_error",  # conference request answered with an error
    "conference_timeout",  # conference request not answered in time
    "muc_join_sent",  # MUC join presence sent to room@muc/nick
    "muc_joined",  # self-presence (status 110) received: in the room
    "stanza_error",  # presence or IQ of type error (text in `error`)
    "ping",  # XMPP ping (XEP-0199)
    "disconnected",  # client or server side disconnect / client offline
    "session_destroyed",  # server destroyed the session
    "hibernation_timeout",  # mod_smacks hibernation timeout reached
    "http_request",  # HTTP request (`http_method`, `http_path`)
    "http_error",  # HTTP error status (`http_status`), e.g. a refused WebSocket upgrade
    "traceback",  # error, exception or traceback (`level` error or a stack trace)
    "retry",  # the load client retried a failed stage
    "all_joined",  # the load client reports every participant joined
    "run_info",  # run metadata: config dump, start/stop lines
    "unknown",  # anything else
]

LEVELS = ["debug", "info", "warn", "error"]
HTTP_METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "file": pl.String(),
    "seq": pl.Int64(),
    "origin": pl.Enum(ORIGINS),
    "shard": pl.String(),  # swarm shard "K/N" (or pod); null when the run had one process
    "batch": pl.Int32(),  # ramp batch of the participant (swarm); null when unknown
    "source": pl.String(),  # Prosody module / c2s id; client: process (pm2 app, file stem, "swarm")
    "level": pl.Enum(LEVELS),  # null for a line of unknown shape
    "kind": pl.Enum(EVENT_KINDS),
    "session": pl.String(),  # server: c2s id; client: participant key (see `participant`)
    "jid": pl.String(),
    "room": pl.String(),
    "participant": pl.String(),  # unique within a run: "<process>/<room-index>-<index>"
    "stage": pl.String(),  # for failures: the stage that failed (see STAGES)
    "http_status": pl.Int16(),
    "http_method": pl.String(),
    "http_path": pl.String(),
    "error": pl.String(),  # error condition/text of an error event
    "message": pl.String(),  # the original text (the whole line for unparsed lines)
}

# Columns events.parquet stores as categories: null on almost every row, or one value per file
# (`shard`, the pod).
# As strings they cost the Parquet writer a dictionary pass over every row of every row group (on
# a 64 MB chunk of bench/ingest.py's log: 217 ms to write, 174 ms with them as categories). `file`
# is stored as an enum of the run's files and `http_method` as one of HTTP_METHODS: the writer turns
# an enum into Parquet's dictionary in a quarter to a half of a category's time (a category's ids
# must be mapped row by row).
# Read the file with `scan_events`, which gives them back as EVENT_SCHEMA's strings.
STORED_AS_CATEGORIES = [
    "shard",
    "jid",
    "room",
    "participant",
    "stage",
    "http_path",
    "error",
]
# Line numbers are stored in 32 bits: written in a third of the time of 64 (zstd has half
# the bytes to squeeze), and room for 4.29 billion lines (a 400 GB log) in one file; past that,
# ingest stops reading the file and says so.
STORED_SEQ = pl.UInt32()


def stored_event_schema(files: list[str]) -> dict[str, pl.DataType]:
    """How events.parquet stores EVENT_SCHEMA's columns, for a run of these files (as named in `file`)."""
    stored = {"file": pl.Enum(files), "seq": STORED_SEQ, "http_method": pl.Enum(HTTP_METHODS)}
    return {
        name: stored.get(name, pl.Categorical() if name in STORED_AS_CATEGORIES else dtype)
        for name, dtype in EVENT_SCHEMA.items()
    }


# Columns a Prosody log leaves empty: those only load-client logs fill, and `shard` unless the log
# comes from `kubectl logs --prefix` (the pod's name). Where every file of a run leaves one empty,
# events.parquet stores it as type Null, which the Parquet writer passes over: as a category it
# walks its every row (each such column: about 2 % of the instructions of a Prosody log's ingest).
# `scan_events` gives them back as EVENT_SCHEMA's types.
CLIENT_ONLY_COLUMNS = ["batch", "participant", "stage"]


def server_stored_schema(files: list[str], pod_names: bool) -> dict[str, pl.DataType]:
    """The stored schema of a Prosody log's events: Null for the columns it leaves empty."""
    empty = [*CLIENT_ONLY_COLUMNS, *([] if pod_names else ["shard"])]
    return {
        name: pl.Null() if name in empty else dtype for name, dtype in stored_event_schema(files).items()
    }


def run_stored_schema(schemas: list[dict[str, pl.DataType]]) -> dict[str, pl.DataType]:
    """One stored schema for the events of a run's files: each column's own type, Null only where
    every file's is Null."""
    return {
        name: next((schema[name] for schema in schemas if schema[name] != pl.Null), pl.Null())
        for name in EVENT_SCHEMA
    }


# Stages of joining, in order; session rows carry `<stage>_ts` for each.
STAGES = ["connected", "authenticated", "bound", "joined", "left"]
# The event kind that marks each stage being reached.
STAGE_KIND = {
    "connected": "connection_opened",
    "authenticated": "authenticated",
    "bound": "resource_bound",
    "joined": "muc_joined",
    "left": "disconnected",
}
OUTCOMES = ["joined", "failed", "open"]

SESSION_SCHEMA: dict[str, pl.DataType] = {
    "origin": pl.Enum(ORIGINS),
    "session": pl.String(),  # server: "<c2s id>@<first seen>"; client: participant key
    "file": pl.String(),
    "shard": pl.String(),
    "batch": pl.Int32(),
    "jid": pl.String(),
    "room": pl.String(),
    "participant": pl.String(),
    "first_ts": pl.Datetime("us", "UTC"),
    "last_ts": pl.Datetime("us", "UTC"),
    "first_seq": pl.Int64(),
    "last_seq": pl.Int64(),
    **{f"{stage}_ts": pl.Datetime("us", "UTC") for stage in STAGES},
    "connect_s": pl.Float64(),  # first seen -> connected
    "auth_s": pl.Float64(),  # connected -> authenticated
    "bind_s": pl.Float64(),  # authenticated -> bound
    "join_s": pl.Float64(),  # bound -> joined
    "total_s": pl.Float64(),  # first seen -> joined
    "outcome": pl.Enum(OUTCOMES),  # joined / failed (at failed_stage) / open at end of log
    "failed_stage": pl.String(),
    "error": pl.String(),
    "http_status": pl.Int16(),
}

EVENTS_FILE = "events.parquet"
SESSIONS_FILE = "sessions.parquet"


def scan_events(path) -> pl.LazyFrame:
    """``events.parquet`` in EVENT_SCHEMA: its categories back to strings, Null columns (a run of
    Prosody logs alone) to their types. A file that older versions wrote (all strings, `level`
    too) reads the same."""
    return pl.scan_parquet(path).cast(EVENT_SCHEMA)


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def empty_sessions() -> pl.DataFrame:
    return pl.DataFrame(schema=SESSION_SCHEMA)


def conform(frame: pl.DataFrame | pl.LazyFrame, schema: dict[str, pl.DataType] = EVENT_SCHEMA):
    """Add missing columns as nulls, cast to the schema's dtypes and order columns.

    Parsers only fill the columns they know; this makes every output identical in shape.
    """
    present = set(frame.collect_schema().names())
    return frame.select(
        [
            (pl.col(name) if name in present else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


# Metrics, from any source (Grafana CSV, Prometheus JSON, OpenMetrics scrapes, the swarm's
# samples), as one long table. Values are in base units: bytes, seconds, cores, bytes/s.
METRIC_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "metric": pl.String(),  # e.g. process_resident_memory_bytes, container_memory_working_set_bytes
    "labels": pl.String(),  # Prometheus style without braces: key="value",key2="value2"
    "value": pl.Float64(),
    "unit": pl.String(),  # base unit of value: bytes, seconds, cores, bytes/s, or "" when unitless
    "file": pl.String(),
}
METRICS_FILE = "metrics.parquet"
