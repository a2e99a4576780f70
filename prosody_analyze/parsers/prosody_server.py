"""What a Prosody log line means: its event kind and the session, JID, room or HTTP request in it.

Shared by the file format and the console (``kubectl logs``) format, which differ only in how
time, source and level are laid out. It works in two passes so that gigabytes stream through:

1. :func:`coarse_kind` runs on every line of a chunk, with a prefix lookup and literal tests
   only. Lines that need more (a JID to pull out, a stanza to look into, the line above an
   error, a traceback to fold) get a provisional kind and ``detail = true``.
2. :func:`refine` runs on those few rows only, with regular expressions and windows, and gives
   them their final kind and fields; :func:`drop_repeated_joins` then carries what one chunk
   knows about joins to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from .context import FileContext

LEVEL_NAMES = ["debug", "info", "warn", "error"]
# Provisional kinds of pass 1, resolved by `refine`.
IQ_IN, PRESENCE_IN, MESSAGE_OUT, ERROR_OUT = "iq_in", "presence_in", "message_out", "error_out"
CONTINUATION, UNPARSED, CONTEXT = "continuation", "unparsed", "context"
DETAIL_KINDS = [
    # lifecycle kinds that need nothing more, kept here so sessions read them from the small table
    "connection_opened",
    "sm_enabled",
    "disconnected",
    "authenticated",
    "resource_bound",
    IQ_IN,
    PRESENCE_IN,
    MESSAGE_OUT,
    ERROR_OUT,
    "session_destroyed",
    "hibernation_timeout",
    "http_request",
    "traceback",
    CONTINUATION,
    UNPARSED,
    CONTEXT,
]
OCCUPANT_TO = r" to='([^']+/[^']*)'"
# Sources whose lines explain the error reply logged right after them.
CONTEXT_SOURCES = ["stanzarouter"]

msg = pl.col("message")
src = pl.col("source")
kind_col = pl.col("kind")


# Message openings (their first PREFIX_LENGTH characters) that name a kind, or a family of kinds
# told apart by the full opening in CONFIRM.
PREFIX_LENGTH = 16
BY_PREFIX = {
    "Client connected": "connection_opened",
    "Websocket receiv": "websocket_frame",
    "Authenticated as": "authenticated",
    "Resource bound: ": "resource_bound",
    "Sending[c2s]: <e": "sm_enabled",
    "Received[c2s]: <": "received",
    "Sending[c2s]: <m": MESSAGE_OUT,
    "Client disconnec": "disconnected",
    "mod_smacks hiber": "hibernation_timeout",
    "Destroying sessi": "session_destroyed",
    "Destroying unbou": "session_destroyed",
    "Unbinding resour": "session_destroyed",
}
CONFIRM = {
    "Sending[c2s]: <enabled ": "sm_enabled",
    "Received[c2s]: <iq ": IQ_IN,
    "Received[c2s]: <presence ": PRESENCE_IN,
    "Sending[c2s]: <message ": MESSAGE_OUT,
}
NEEDS_CONFIRM = ["sm_enabled", "received", MESSAGE_OUT]


KIND_CODES = sorted(
    {*BY_PREFIX.values(), *CONFIRM.values(), *DETAIL_KINDS, "ping", "unknown", "http_request"}
)
CODE = {name: index for index, name in enumerate(KIND_CODES)}


def prefix_code() -> pl.Expr:
    """The kind (or family) code of the message's first PREFIX_LENGTH characters, null when none.

    Callers put it in a column before :func:`coarse_kind` reads it several times: as an inline
    expression it would be computed once per use.
    """
    return msg.str.head(PREFIX_LENGTH).replace_strict(
        {opening: CODE[name] for opening, name in BY_PREFIX.items()}, default=None, return_dtype=pl.UInt8
    )


def coarse_kind(parsed: pl.Expr, continuation: pl.Expr, by_prefix: pl.Expr) -> pl.Expr:
    """Pass 1: the kind from the opening of ``message`` (provisional where ``refine`` must look).

    One hash lookup on the first characters (``by_prefix``, a column of :func:`prefix_code`), then
    a few literal tests, on small integer codes (a chain of string columns would cost more than
    all the tests): cheap enough for every line.
    """

    def lit(name: str) -> pl.Expr:
        return pl.lit(CODE[name], pl.UInt8)

    starts = msg.str.starts_with
    confirmed = lit("unknown")
    for opening, name in CONFIRM.items():
        confirmed = pl.when(starts(opening)).then(lit(name)).otherwise(confirmed)
    needs_confirm = by_prefix.is_in([CODE[name] for name in NEEDS_CONFIRM])
    coded = (
        pl.when(~parsed)
        .then(pl.when(continuation).then(lit(CONTINUATION)).otherwise(lit(UNPARSED)))
        .when(starts("Sending[c2s]: <") & msg.str.contains("type='error'", literal=True))
        .then(lit(ERROR_OUT))
        .when(needs_confirm)
        .then(confirmed)
        .when(by_prefix == CODE["websocket_frame"])
        .then(pl.when(starts("Websocket received frame: opcode=9")).then(lit("ping")).otherwise(by_prefix))
        .when(by_prefix.is_not_null())
        .then(by_prefix)
        .when(starts("Firing event: "))
        .then(lit("http_request"))
        .when(starts("Traceback[") | (pl.col("level") == "error"))
        .then(lit("traceback"))
        .when(src.is_in(CONTEXT_SOURCES))
        .then(lit(CONTEXT))
        .otherwise(lit("unknown"))
    )
    return coded.replace_strict(list(range(len(KIND_CODES))), KIND_CODES, return_dtype=pl.String)


def session_of(source: pl.Expr) -> pl.Expr:
    """The c2s session id a line belongs to, when its source is one."""
    return pl.when(source.str.starts_with("c2s")).then(source)


def _fold_tracebacks(rows: pl.DataFrame) -> pl.DataFrame:
    """Fold continuation lines into the traceback (or error line) right above them."""
    follows = (pl.col("seq") - pl.col("seq").shift(1) == 1) & pl.col("kind").shift(1).is_in(
        ["traceback", CONTINUATION]
    )
    start = ~((kind_col == CONTINUATION) & follows)
    if rows.select(start.all()).item():
        return rows
    others = [c for c in rows.columns if c != "message"]
    return (
        rows.with_columns(record=start.cast(pl.Int64).cum_sum())
        .group_by("record", maintain_order=True)
        .agg(pl.col("message").str.join("\n"), *[pl.col(c).first() for c in others])
        .drop("record")
    )


def _iq_in(rows: pl.DataFrame) -> pl.DataFrame:
    to_focus = msg.str.contains("to='focus.", literal=True)
    return rows.with_columns(
        kind=pl.when(to_focus).then(pl.lit("conference_request")).otherwise(pl.lit("unknown"))
    )


@dataclass
class RefineState:
    """What one chunk of a file leaves for its next chunks."""

    # "<c2s id> <room@muc/nick>" already asked to join: later presences there are status updates.
    asked: pl.Series = field(default_factory=lambda: pl.Series("key", [], pl.String))


def _presence_in(rows: pl.DataFrame) -> pl.DataFrame:
    """A presence without type to ``room@muc/nick`` is a join request, or a status update once joined.

    Only the first per session and occupant in these rows is a join; :func:`drop_repeated_joins`
    sees to later chunks of the file.
    """
    rows = rows.with_columns(occupant=msg.str.extract(OCCUPANT_TO, 1))
    request = ~msg.str.contains("type='", literal=True) & pl.col("occupant").is_not_null()
    key = pl.when(request).then(pl.concat_str("session", pl.lit(" "), "occupant"))
    first = request & key.is_first_distinct()
    return rows.with_columns(
        kind=pl.when(first).then(pl.lit("muc_join_sent")).otherwise(pl.lit("unknown")),
        room=pl.when(first).then(pl.col("occupant").str.extract(r"^([^@]+)@", 1)),
    ).drop("occupant")


def drop_repeated_joins(events: pl.DataFrame, state: RefineState) -> pl.DataFrame:
    """In file order, chunk after chunk: a join to an occupant the session already asked for is an update."""
    joins = pl.col("kind") == "muc_join_sent"
    keys = events.filter(joins).select(
        pl.col("seq"), pl.concat_str("session", pl.lit(" "), msg.str.extract(OCCUPANT_TO, 1)).alias("key")
    )
    if keys.height == 0:
        return events
    repeated = keys.filter(pl.col("key").is_in(state.asked.implode()))["seq"]
    state.asked = pl.concat([state.asked, keys["key"]])
    if repeated.len() == 0:
        return events
    again = pl.col("seq").is_in(repeated.implode())
    return events.with_columns(
        kind=pl.when(again).then(pl.lit("unknown")).otherwise(pl.col("kind")).cast(events.schema["kind"]),
        room=pl.when(again).then(None).otherwise(pl.col("room")),
    )


def _message_out(rows: pl.DataFrame) -> pl.DataFrame:
    """The room's subject goes to an occupant once, right after its self-presence: it has joined."""
    sender = msg.str.extract(r" from='([^']*)'", 1)
    subject = msg.str.contains("type='groupchat'", literal=True) & ~sender.str.contains("/", literal=True)
    return rows.with_columns(
        kind=pl.when(subject).then(pl.lit("muc_joined")).otherwise(pl.lit("unknown")),
        room=pl.when(subject).then(sender.str.extract(r"^([^@]+)@", 1)),
    )


def _error_out(rows: pl.DataFrame) -> pl.DataFrame:
    """An error reply: from focus to a conference request, else a stanza error (from a room: join refused)."""
    sender = msg.str.extract(r" from='([^']*)'", 1)
    from_focus = msg.str.starts_with("Sending[c2s]: <iq ") & sender.str.starts_with("focus.")
    return rows.with_columns(
        kind=pl.when(from_focus).then(pl.lit("conference_error")).otherwise(pl.lit("stanza_error")),
        room=pl.when(sender.str.contains("/", literal=True)).then(sender.str.extract(r"^([^@]+)@", 1)),
        error=pl.coalesce("context_text", pl.lit("error reply")),
    )


JID_PATTERNS = {
    "authenticated": r"^Authenticated as (\S+)",
    "resource_bound": r"^Resource bound: (\S+)",
    "session_destroyed": r"^(?:Destroying session for |Unbinding resource for "
    r"|Destroying unbound session for <?)([^ >()]+@[^ >()]+)",
}


def _jid(pattern: str):
    return lambda rows: rows.with_columns(jid=msg.str.extract(pattern, 1))


def _http_request(rows: pl.DataFrame) -> pl.DataFrame:
    request = msg.str.extract_groups(r"^Firing event: ([A-Z]+) (\S+)")
    return rows.with_columns(http_method=request.struct.field("1"), http_path=request.struct.field("2"))


def _traceback(rows: pl.DataFrame) -> pl.DataFrame:
    """Prosody answers HTTP 500 exactly when an HTTP handler fails with ``Traceback[httpserver]``."""
    return rows.with_columns(
        kind=pl.lit("traceback"),
        level=pl.col("level").fill_null("error"),
        error=msg.str.split("\n").list.first(),
        http_status=pl.when(msg.str.starts_with("Traceback[httpserver]")).then(pl.lit(500, pl.Int16)),
    )


def _orphan(rows: pl.DataFrame) -> pl.DataFrame:
    """A continuation with no traceback above it (in this chunk): a traceback, unless it is blank."""
    blank = msg.str.strip_chars() == ""
    return _traceback(rows).with_columns(
        kind=pl.when(blank).then(pl.lit("unknown")).otherwise(pl.col("kind")),
        level=pl.when(blank).then(None).otherwise(pl.col("level")),
        error=pl.when(blank).then(None).otherwise(pl.col("error")),
    )


HANDLERS = {
    IQ_IN: _iq_in,
    PRESENCE_IN: _presence_in,
    MESSAGE_OUT: _message_out,
    ERROR_OUT: _error_out,
    **{kind: _jid(pattern) for kind, pattern in JID_PATTERNS.items()},
    "http_request": _http_request,
    "traceback": _traceback,
    CONTINUATION: _orphan,
    "hibernation_timeout": lambda rows: rows.with_columns(error=pl.lit("smacks hibernation timeout")),
    UNPARSED: lambda rows: rows.with_columns(kind=pl.lit("unknown")),
    CONTEXT: lambda rows: rows.with_columns(kind=pl.lit("unknown")),
}
OUTPUT = {
    "jid": pl.String,
    "room": pl.String,
    "error": pl.String,
    "http_method": pl.String,
    "http_path": pl.String,
    "http_status": pl.Int16,
}


def refine(rows: pl.DataFrame) -> pl.DataFrame:
    """Pass 2 on the ``detail`` rows (in ``seq`` order): final kinds, JIDs, rooms, requests, error texts."""
    not_a_record = kind_col.is_in([UNPARSED, CONTINUATION])
    rows = rows.with_columns(
        # Such lines were split at tabs like the others: put the original text back together.
        message=pl.when(not_a_record)
        .then(pl.concat_str(["raw_a", "level", "message"], separator="\t", ignore_nulls=True))
        .otherwise(msg),
        level=pl.when(not_a_record).then(None).otherwise(pl.col("level")),
        source=pl.when(not_a_record).then(None).otherwise(src),
        session=pl.when(not_a_record).then(None).otherwise(pl.col("session")),
        parsed=kind_col != UNPARSED,
        **{name: pl.lit(None, dtype) for name, dtype in OUTPUT.items()},
    ).drop("raw_a")
    rows = _fold_tracebacks(rows)
    previous_is_context = (pl.col("seq").shift(1) == pl.col("seq") - 1) & (kind_col.shift(1) == CONTEXT)
    rows = rows.with_columns(context_text=pl.when(previous_is_context).then(msg.shift(1)))
    parts = [
        HANDLERS[kind](group) if kind in HANDLERS else group
        for (kind,), group in rows.group_by("kind", maintain_order=True)
    ]
    refined = pl.concat(parts, how="vertical_relaxed").sort("seq") if parts else rows
    return refined.drop("context_text")


def provisional_rows(frame: pl.LazyFrame, continuation: pl.Expr, context: FileContext) -> pl.LazyFrame:
    """Common end of pass 1 for both Prosody sinks: provisional kind, session and detail flag."""
    frame = frame.with_columns(prefix_code=prefix_code())
    kind = coarse_kind(pl.col("parsed"), continuation, pl.col("prefix_code"))
    keep = ["seq", "ts", "source", "level", "message", "raw_a",
            *(["shard"] if context.wrapping.kubectl_prefix else [])]
    return frame.select(
        *keep,
        kind.alias("kind"),
        session_of(pl.col("source")).alias("session"),
    ).with_columns(detail=pl.col("kind").is_in(DETAIL_KINDS), origin=pl.lit("server"))
