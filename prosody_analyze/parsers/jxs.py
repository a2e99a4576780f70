"""JXS (jitsi/jxs) output, today's and 2022's, plain or through pm2.

Today: ``2026-11-28T19:56:23.123Z Participant[id=0-3] joined`` (also ``error:…``,
``Error inviting jicofo:…``, ``offline``, ``All joined, took S seconds.`` and a multi-line
``Running with config: {…}``). 2022: no time, ``Participant 1 from ROOM room:  is joining!``.

JXS numbers participants ``room-index`` per process, so the participant key is
``<process>/<id>`` (process: the pm2 app, else the file name). JXS names room ``j`` of a run
``<roomPrefix>-<j>``, so the room comes from the config dump when the log has it.
Lines without a time (the config's JSON, stack frames) continue the record above them.
"""

from __future__ import annotations

import re

import polars as pl

from .context import FileContext
from .ws_errors import http_status

NAME = "jxs"
ISO_TIME = r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) "
OLD_PARTICIPANT = r"^Participant (\d+) from (\S+) room: +(.*)$"
LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z |^Participant \d+ from \S+ room:")
# Lines that belong to the record above: JSON of the config dump, stack frames.
CONTINUATION = r"^(?:\s|[}\]],?$)"
# pm2's own lines: its daemon log (process "PM2") and the headings of `pm2 logs`.
PM2_HEADING = r"^\[TAILING\]|^\S+ last \d+ lines:$"


def _kind(rest: pl.Expr, body: pl.Expr, status: pl.Expr) -> pl.Expr:
    starts = rest.str.starts_with
    return (
        pl.when(status.is_not_null())
        .then(pl.lit("http_error"))
        .when(rest == "joined")
        .then(pl.lit("muc_joined"))
        .when(starts("offline") | starts("is offline"))
        .then(pl.lit("disconnected"))
        .when(starts("Error inviting jicofo") & rest.str.contains("Timeout", literal=True))
        .then(pl.lit("conference_timeout"))
        .when(starts("Error inviting jicofo"))
        .then(pl.lit("conference_error"))
        .when(starts("is online"))
        .then(pl.lit("resource_bound"))
        .when(starts("is inviting jicofo"))
        .then(pl.lit("conference_request"))
        .when(starts("is joining"))
        .then(pl.lit("muc_join_sent"))
        .when(starts("error:") | starts(" error:"))
        .then(pl.lit("traceback"))
        .when(body.str.starts_with("All joined"))
        .then(pl.lit("all_joined"))
        .when(
            body.str.contains(r"^(?:Running with config|Setting timeout|All offline|PM2 log:)")
            | body.str.contains(PM2_HEADING)
            | (pl.col("process") == "PM2")
        )
        .then(pl.lit("run_info"))
        .when(body.str.contains(r"(?i)^(?:\w*Error\b|node:|\s*throw\b|Uncaught)"))
        .then(pl.lit("traceback"))
        .otherwise(pl.lit("unknown"))
    )


def records(frame: pl.DataFrame) -> pl.DataFrame:
    """Group continuation lines into the record above (within one process) and add the record's time."""
    line = pl.col("line")
    new_process = pl.col("process").ne_missing(pl.col("process").shift(1))
    start = ~line.str.contains(CONTINUATION) | new_process | (pl.col("seq") == pl.col("seq").min())
    return (
        frame.with_columns(record=start.cast(pl.Int64).cum_sum())
        .group_by("record", maintain_order=True)
        .agg(pl.col("line").str.join("\n"), *[pl.col(c).first() for c in frame.columns if c != "line"])
        .drop("record")
    )


def parse(frame: pl.DataFrame, context: FileContext) -> pl.DataFrame:
    if "process" not in frame.columns:
        frame = frame.with_columns(process=pl.lit(None, pl.String))
    frame = records(frame.with_columns(pl.col("process").fill_null(context.process)))
    line = pl.col("line")
    stamp = line.str.extract(ISO_TIME, 1).str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False
    )
    body = line.str.replace(ISO_TIME, "")
    now_id = body.str.extract(r"^Participant\[id=(\d+-\d+)\] ?", 1)
    old = body.str.extract_groups(OLD_PARTICIPANT)
    frame = frame.with_columns(
        ts=pl.coalesce(stamp, "wrap_ts") if "wrap_ts" in frame.columns else stamp,
        body=body,
        local_id=pl.coalesce(now_id, old.struct.field("1")),
        named_room=old.struct.field("2"),
        rest=pl.coalesce(
            pl.when(now_id.is_not_null()).then(body.str.replace(r"^Participant\[id=\d+-\d+\] ?", "")),
            old.struct.field("3"),
            pl.lit(""),
        ),
        room_prefix=body.str.extract(r'"roomPrefix":\s*"([^"]*)"', 1),
    )
    status = http_status(pl.col("body"))
    frame = frame.with_columns(
        kind=_kind(pl.col("rest"), pl.col("body"), status),
        http_status=status,
        room_prefix=pl.col("room_prefix").forward_fill().over("process"),
    )
    error_text = (
        pl.when(pl.col("rest").str.starts_with("Error inviting jicofo"))
        .then(pl.col("rest").str.replace(r"^Error inviting jicofo:?\s*", ""))
        .when(pl.col("rest").str.contains(r"^\s?error:"))
        .then(pl.col("rest").str.replace(r"^\s?error:\s*", ""))
        .when(pl.col("kind").is_in(["http_error", "traceback"]))
        .then(pl.col("body").str.split("\n").list.first())
    )
    room_index = pl.col("local_id").str.extract(r"^(\d+)-", 1)
    return frame.with_columns(
        origin=pl.lit("client"),
        source=pl.col("process"),
        level=pl.when(
            pl.col("kind").is_in(["http_error", "traceback", "conference_timeout", "conference_error"])
        )
        .then(pl.lit("error"))
        .otherwise(pl.lit("info")),
        participant=pl.when(pl.col("local_id").is_not_null()).then(
            pl.concat_str(pl.col("process"), pl.lit("/"), pl.col("local_id"))
        ),
        room=pl.coalesce(
            "named_room",
            pl.when(room_index.is_not_null()).then(
                pl.concat_str(pl.col("room_prefix"), pl.lit("-"), room_index)
            ),
        ),
        error=error_text,
        message=pl.col("line"),
        parsed=pl.col("kind") != "unknown",
    ).with_columns(session=pl.col("participant"))
