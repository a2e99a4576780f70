"""What a Prosody log line means: its event kind and the session, JID, room or HTTP request in it.

Shared by the file format and the console (``kubectl logs``) format, which differ only in how
time, source and level are laid out. Only cheap literal tests run on every line; the regular
expressions run on the few rows whose kind needs a field pulled out (see :func:`classify`).
"""

from __future__ import annotations

import polars as pl

LEVEL_NAMES = ("debug", "info", "warn", "error")
# Lines that continue the record above them (a Lua traceback) rather than start one.
CONTINUATION = r"^(?:\s|stack traceback:)"

# Presence the server sends to a session; the first one from the occupant the session asked to
# join as is its self-presence: the MUC join succeeded (the status 110 is not in the log line).
PRESENCE_OUT = "presence_out"

msg = pl.col("message")
src = pl.col("source")


def _kind() -> pl.Expr:
    starts = msg.str.starts_with

    def has(text: str) -> pl.Expr:
        return msg.str.contains(text, literal=True)

    return (
        pl.when(starts("Client connected"))
        .then(pl.lit("connection_opened"))
        .when(starts("Websocket received frame: opcode=9"))
        .then(pl.lit("ping"))
        .when(starts("Websocket received frame"))
        .then(pl.lit("websocket_frame"))
        .when(starts("Authenticated as "))
        .then(pl.lit("authenticated"))
        .when(starts("Resource bound: "))
        .then(pl.lit("resource_bound"))
        .when(starts("Sending[c2s]: <enabled "))
        .then(pl.lit("sm_enabled"))
        .when(starts("Received[c2s]: <iq ") & has("to='focus."))
        .then(pl.lit("conference_request"))
        .when(starts("Sending[c2s]: <iq ") & has("type='error'") & has("from='focus."))
        .then(pl.lit("conference_error"))
        .when(starts("Received[c2s]: <presence ") & has("@") & ~has("type='"))
        .then(pl.lit("muc_join_sent"))
        .when(starts("Sending[c2s]: <") & has("type='error'"))
        .then(pl.lit("stanza_error"))
        .when(starts("Sending[c2s]: <presence ") & ~has("type='"))
        .then(pl.lit(PRESENCE_OUT))
        .when(starts("Client disconnected"))
        .then(pl.lit("disconnected"))
        .when(starts("mod_smacks hibernation timeout reached"))
        .then(pl.lit("hibernation_timeout"))
        .when(
            starts("Destroying session for ")
            | starts("Destroying unbound session")
            | starts("Unbinding resource for ")
        )
        .then(pl.lit("session_destroyed"))
        .when(starts("Firing event: "))
        .then(pl.lit("http_request"))
        .when(starts("Traceback[") | (pl.col("level") == "error"))
        .then(pl.lit("traceback"))
        .otherwise(pl.lit("unknown"))
    )


DETAIL_KINDS = [
    "authenticated",
    "resource_bound",
    "muc_join_sent",
    PRESENCE_OUT,
    "stanza_error",
    "conference_error",
    "session_destroyed",
    "hibernation_timeout",
    "http_request",
    "traceback",
]


def _details(rows: pl.DataFrame) -> pl.DataFrame:
    """Pull JID, room, HTTP request and error text out of the (few) rows whose kind has them."""
    kind = pl.col("kind")
    to_room = msg.str.extract(r" to='([^@']+)@", 1)
    from_room = msg.str.extract(r" from='([^@']+)@[^'/]*/", 1)
    first_word_after = {
        "authenticated": "Authenticated as ",
        "resource_bound": "Resource bound: ",
        "session_destroyed": r"(?:Destroying session for |Unbinding resource for "
        r"|Destroying unbound session for <?)",
    }
    jid = pl.lit(None, pl.String)
    for name, lead in first_word_after.items():
        jid = pl.when(kind == name).then(msg.str.extract(f"^{lead}([^ >]+)", 1)).otherwise(jid)
    jid = pl.when(jid.str.contains("@", literal=True) | (kind != "session_destroyed")).then(jid)
    room = (
        pl.when(kind == "muc_join_sent")
        .then(to_room)
        .when(kind.is_in(["stanza_error", PRESENCE_OUT]))
        .then(from_room)
    )
    occupant = (
        pl.when(kind == "muc_join_sent")
        .then(msg.str.extract(r" to='([^']+/[^']*)'", 1))
        .when(kind == PRESENCE_OUT)
        .then(msg.str.extract(r" from='([^']+/[^']*)'", 1))
    )
    # Later presences to the same occupant are status updates, not joins.
    rows = rows.with_columns(occupant=occupant).with_columns(
        kind=pl.when(
            (kind == "muc_join_sent")
            & (pl.col("seq").rank("ordinal").over(["session", "occupant", "kind"]) > 1)
        )
        .then(pl.lit("unknown"))
        .otherwise(kind)
    )
    occupant = pl.col("occupant")
    asked = pl.when(kind == "muc_join_sent").then(occupant).forward_fill().over("session")
    join_number = (kind == "muc_join_sent").cast(pl.Int32).cum_sum().over("session")
    self_presence = (kind == PRESENCE_OUT) & occupant.eq_missing(asked) & occupant.is_not_null()
    first_self = self_presence & (self_presence.cast(pl.Int32).cum_sum().over(["session", join_number]) == 1)
    request = msg.str.extract_groups(r"^Firing event: ([A-Z]+) (\S+)")
    error = (
        pl.when(kind.is_in(["stanza_error", "conference_error"]) & (pl.col("prev_source") == "stanzarouter"))
        .then(pl.col("prev_message"))
        .when(kind.is_in(["stanza_error", "conference_error"]))
        .then(pl.lit("error reply"))
        .when(kind == "traceback")
        .then(msg.str.split("\n").list.first())
        .when(kind == "hibernation_timeout")
        .then(pl.lit("smacks hibernation timeout"))
    )
    return rows.with_columns(
        kind=pl.when(first_self)
        .then(pl.lit("muc_joined"))
        .when(kind == PRESENCE_OUT)
        .then(pl.lit("unknown"))
        .otherwise(kind),
        jid=jid,
        room=room,
        http_method=pl.when(kind == "http_request").then(request.struct.field("1")),
        http_path=pl.when(kind == "http_request").then(request.struct.field("2")),
        http_status=pl.when(msg.str.starts_with("Traceback[httpserver]")).then(pl.lit(500, pl.Int16)),
        error=error,
    ).drop("occupant")


def group_continuations(frame: pl.DataFrame) -> pl.DataFrame:
    """Fold lines that continue a record (``start`` false) into the record above, joined by newlines.

    Rows get a boolean ``orphan`` when a continuation has no record above it in this frame.
    """
    if frame.height == 0 or frame["start"].all():
        return frame.with_columns(orphan=pl.lit(False)).drop("start")
    record = pl.col("start").cast(pl.Int64).cum_sum()
    rest = [c for c in frame.columns if c not in ("line", "start")]
    return (
        frame.with_columns(record=record)
        .group_by("record", maintain_order=True)
        .agg(
            pl.col("line").str.join("\n"),
            pl.col("start").first().alias("begins"),
            *[pl.col(c).first() for c in rest],
        )
        .with_columns(orphan=~pl.col("begins"))
        .drop("record", "begins")
    )


def classify(frame: pl.DataFrame) -> pl.DataFrame:
    """Add server-event columns to a frame of ``seq, ts, source, level, message, parsed``."""
    frame = frame.with_columns(
        origin=pl.lit("server"),
        kind=pl.when(pl.col("parsed")).then(_kind()).otherwise(pl.lit("unknown")),
        session=pl.when(src.str.starts_with("c2s")).then(src),
        prev_source=src.shift(1),
        prev_message=msg.shift(1),
    )
    wanted = pl.col("kind").is_in(DETAIL_KINDS)
    detailed = _details(frame.filter(wanted))
    return (
        pl.concat([frame.filter(~wanted), detailed], how="diagonal_relaxed")
        .sort("seq")
        .drop("prev_source", "prev_message")
    )
