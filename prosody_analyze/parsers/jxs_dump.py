"""The 2022 JXS debug dump (``enableDebug``): ``status …`` lines and ``IN`` / ``OUT`` markers,
each followed by one XML stanza on the next line, plus stack traces. No times: ``seq`` orders it.

A dump holds one participant's XMPP conversation; when the file names exactly one
participant (``Participant N from ROOM room: …``) every record is attributed to it.
"""

from __future__ import annotations

import re

import polars as pl

from .context import FileContext

NAME = "jxs-debug-dump"
LINE_RE = re.compile(
    r"^(?:status (?:connecting|connect|opening|open|online|offline|disconnect)\b|IN$|OUT$|Room name:)"
)


def parse(frame: pl.DataFrame, context: FileContext) -> pl.DataFrame:
    line = pl.col("line")
    marker = line.shift(1).is_in(["IN", "OUT"])
    start = ~marker & ~line.str.contains(r"^\s")
    frame = (
        frame.with_columns(record=start.cast(pl.Int64).cum_sum())
        .group_by("record", maintain_order=True)
        .agg(pl.col("line").str.join("\n"), *[pl.col(c).first() for c in frame.columns if c != "line"])
        .drop("record")
    )
    direction = line.str.extract(r"^(IN|OUT)\n", 1)
    stanza = line.str.replace(r"^(?:IN|OUT)\n", "")
    status = line.str.extract(r"^status (\w+)", 1)
    number = line.str.extract(r"^Participant (\d+) from ", 1)
    named_room = pl.coalesce(
        line.str.extract(r"^Room name:\s*(\S+)", 1), line.str.extract(r" from (\S+) room:", 1)
    )
    is_in = direction == "IN"
    is_out = direction == "OUT"
    has = stanza.str.contains
    kind = (
        pl.when(status == "connect")
        .then(pl.lit("connection_opened"))
        .when(status.is_in(["offline", "disconnect"]))
        .then(pl.lit("disconnected"))
        .when(status.is_not_null() | number.is_not_null() | line.str.starts_with("Room name:"))
        .then(pl.lit("run_info"))
        .when(is_in & has("<success ", literal=True))
        .then(pl.lit("authenticated"))
        .when(is_in & has("<bind ", literal=True) & has("<jid>", literal=True))
        .then(pl.lit("resource_bound"))
        .when(is_in & has("<enabled ", literal=True))
        .then(pl.lit("sm_enabled"))
        .when(is_out & has("<conference ", literal=True))
        .then(pl.lit("conference_request"))
        .when(
            is_out
            & stanza.str.starts_with("<presence ")
            & has("http://jabber.org/protocol/muc", literal=True)
        )
        .then(pl.lit("muc_join_sent"))
        .when(is_in & stanza.str.starts_with("<presence ") & has('code="110"', literal=True))
        .then(pl.lit("muc_joined"))
        .when(
            is_in & stanza.str.starts_with("<iq ") & has('type="error"', literal=True) & has('from="focus.')
        )
        .then(pl.lit("conference_error"))
        .when(is_in & has('type="error"', literal=True))
        .then(pl.lit("stanza_error"))
        .when(is_in & stanza.str.starts_with("<iq ") & has('type="get"', literal=True) & has("urn:xmpp:ping"))
        .then(pl.lit("ping"))
        .when(line.str.contains(r"^\w*Error\b") & line.str.contains("_inviteJicofo", literal=True))
        .then(pl.lit("conference_timeout"))
        .when(line.str.contains(r"^\w*Error\b"))
        .then(pl.lit("traceback"))
        .when(direction.is_not_null())
        .then(pl.lit("unknown"))
        .otherwise(pl.lit(None, pl.String))
    )
    frame = frame.with_columns(kind=kind, number=number, named_room=named_room, stanza=stanza)
    numbers = frame["number"].drop_nulls().unique()
    only = numbers[0] if numbers.len() == 1 else None
    rooms = frame["named_room"].drop_nulls().unique()
    stanza_col = pl.col("stanza")
    error = (
        pl.when(pl.col("kind").is_in(["stanza_error", "conference_error"]))
        .then(
            pl.coalesce(
                stanza_col.str.extract(r"<text[^>]*>([^<]*)</text>", 1),
                stanza_col.str.extract(r"<error[^>]*><([\w-]+) ", 1),
            )
        )
        .when(pl.col("kind").is_in(["traceback", "conference_timeout"]))
        .then(pl.col("line").str.split("\n").list.first())
    )
    participant = pl.lit(f"{context.process}/{only}" if only is not None else None, pl.String)
    return frame.with_columns(
        origin=pl.lit("client"),
        source=pl.lit(context.process),
        parsed=pl.col("kind").is_not_null(),
        kind=pl.col("kind").fill_null("unknown"),
        level=pl.when(
            pl.col("kind").is_in(["stanza_error", "conference_error", "traceback", "conference_timeout"])
        )
        .then(pl.lit("error"))
        .otherwise(pl.lit("debug")),
        jid=pl.coalesce(
            stanza_col.str.extract(r"<jid>([^<]+)</jid>", 1), line.str.extract(r"^status online (\S+)", 1)
        ),
        room=pl.coalesce(
            stanza_col.str.extract(r'\b(?:to|from|room)="([^"@]+)@conference\.', 1),
            pl.lit(rooms[0] if rooms.len() == 1 else None, pl.String),
        ),
        error=error,
        message=pl.col("line"),
        participant=participant,
        session=participant,
        ts=pl.lit(None, pl.Datetime("us", "UTC")),
    )
