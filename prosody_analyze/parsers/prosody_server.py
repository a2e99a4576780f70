"""What a Prosody log line means: its event kind and the session, JID, room or HTTP request in it.

Shared by the file format and the console (``kubectl logs``) format, which differ only in how
time, source and level are laid out (their ``fields`` give ``seq, line, ts, source, level,
message, parsed``). Gigabytes stream through, so the work per line must stay small:

* :func:`with_coarse_code` gives every line a kind code from the opening of its message, with a
  lookup and a few literal tests. Some codes are provisional: a stanza to look into, a JID
  to pull out, a line that is not a record.
* :func:`event_columns` resolves them in the same query. Each regular expression runs on a
  column masked to the lines of its kind (polars skips nulls), so it costs in proportion to
  those few lines, not to the chunk.
* Then, on the collected chunk: :func:`fold_tracebacks` (only when the chunk has traceback
  lines) and, in file order, :func:`carry_over`: what one chunk knows about joins and context
  lines, for the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ..schema import EVENT_KINDS, EVENT_SCHEMA, HTTP_METHODS
from .prosody_fields import continues

# Provisional kinds, resolved by `event_columns`.
IQ_IN, PRESENCE_IN, MESSAGE_OUT, ERROR_OUT = "iq_in", "presence_in", "message_out", "error_out"
UNPARSED, CONTEXT, STANZA_OUT, STANZA = "unparsed", "context", "stanza_out", "stanza"
# The source whose lines explain the error reply logged right after them.
CONTEXT_SOURCE = "stanzarouter"

msg = pl.col("message")
src = pl.col("source")
code_col = pl.col("code")

# Codes are small integers (a chain of string columns would cost more than all the tests); the
# event kinds come first, so a code below len(EVENT_KINDS) is final as it is.
PROVISIONAL = [IQ_IN, PRESENCE_IN, MESSAGE_OUT, ERROR_OUT, UNPARSED, CONTEXT, STANZA_OUT, STANZA]
PASS1_KINDS = [*EVENT_KINDS, *PROVISIONAL]
CODE = {name: index for index, name in enumerate(PASS1_KINDS)}

# Message openings (their first 16 characters) that name a kind.
BY_PREFIX = {
    "Client connected": "connection_opened",
    "Websocket receiv": "websocket_frame",
    "Authenticated as": "authenticated",
    "Resource bound: ": "resource_bound",
    "Client disconnec": "disconnected",
    "mod_smacks hiber": "hibernation_timeout",
    "Destroying sessi": "session_destroyed",
    "Destroying unbou": "session_destroyed",
    "Unbinding resour": "session_destroyed",
    **{f"Firing event: {method}"[:16]: "http_request" for method in HTTP_METHODS},
    # An iq, presence or message sent (only these can be error replies): looked into below.
    **{f"Sending[c2s]: <{element}"[:16]: STANZA_OUT for element in ("iq", "presence", "message")},
    # Other stanzas that STANZA_OPENINGS tell apart.
    "Sending[c2s]: <e": STANZA,
    "Received[c2s]: <": STANZA,
}
# Stanzas share their first 16 characters: told apart by a test each, cheaper than a second lookup,
# and only on the lines of a stanza.
STANZA_OPENINGS = {
    "Sending[c2s]: <enabled ": "sm_enabled",
    "Received[c2s]: <iq ": IQ_IN,
    "Received[c2s]: <presence ": PRESENCE_IN,
    "Sending[c2s]: <message ": MESSAGE_OUT,
}
JID_PATTERNS = {
    "authenticated": r"^Authenticated as (\S+)",
    "resource_bound": r"^Resource bound: (\S+)",
    "session_destroyed": r"^(?:Destroying session for |Unbinding resource for "
    r"|Destroying unbound session for <?)([^ >()]+@[^ >()]+)",
}


# A chunk's queries run on polars' in-memory engine, not the streaming one polars 2 picks by
# default: on a chunk's frames it sets up for less (1 GB log: -5 % wall, -6 % CPU, -90 MiB peak RSS).
CHUNK_ENGINE = "in-memory"

# Final codes are indexes into this: a gather turns them into kinds, 20 times cheaper than a lookup.
KINDS = pl.lit(pl.Series(EVENT_KINDS, dtype=EVENT_SCHEMA["kind"]))


def _attribute(value: pl.Expr, name: str, pattern: str = "[^']*") -> pl.Expr:
    """The value of `` name='...'`` in a logged tag, when it matches ``pattern``. Matched whole and
    then trimmed: a pattern without a group runs on the regex engine's DFA alone, two to three
    times faster than one that captures."""
    opening = f" {name}='"
    return value.str.extract(f"{opening}{pattern}'", 0).str.slice(len(opening)).str.head(-1)


def _occupant(value: pl.Expr) -> pl.Expr:
    """The ``room@muc/nick`` a presence is addressed to."""
    return _attribute(value, "to", "[^']+/[^']*")


def _room(jid: pl.Expr) -> pl.Expr:
    """``room`` of ``room@muc/nick`` (whole match, then trimmed, as in :func:`_attribute`)."""
    return jid.str.extract("^[^@]+@", 0).str.head(-1)


def _code(name: str) -> pl.Expr:
    return pl.lit(CODE[name], pl.UInt8)


def _is(*names: str, column: pl.Expr = code_col) -> pl.Expr:
    """Code test on the codes' own dtype (a Python int would make polars cast the whole column)."""
    if len(names) == 1:
        return column == _code(names[0])
    return column.is_in(pl.Series([CODE[name] for name in names], dtype=pl.UInt8).implode())


def _only(names: list[str], value: pl.Expr = msg, column: pl.Expr = code_col) -> pl.Expr:
    """``value`` on the lines of these kinds, empty elsewhere: a pattern fails there at once, while
    behind a null polars would still run it on the value."""
    return pl.when(_is(*names, column=column)).then(value).otherwise(pl.lit(""))


def _lookup(length: int, table: dict[str, str]) -> pl.Expr:
    """The code of the message's opening in ``table``, null when absent. The opening is cast to an
    enum of the table's keys (anything else becomes null) whose index picks the code: 2.5 times
    cheaper than ``replace_strict``."""
    openings = pl.Enum(list(table))
    codes = pl.lit(pl.Series([CODE[name] for name in table.values()], dtype=pl.UInt8))
    return codes.gather(msg.str.head(length).cast(openings, strict=False).to_physical())


def with_coarse_code(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``code``: the kind code from the opening of ``message`` (provisional where
    :func:`detail_columns` must look), with one lookup and a few literal tests.

    The lookup goes to a column first: inside the chain below it would be computed twice.
    """
    starts = msg.str.starts_with
    by_prefix = pl.col("by_prefix")
    stanza = pl.col("stanza")  # the message on stanza lines (STANZA_OUT, STANZA), else empty
    error_reply = (by_prefix == _code(STANZA_OUT)) & stanza.str.contains("type='error'", literal=True)
    code = pl.when(~pl.col("parsed")).then(_code(UNPARSED))
    code = code.when(error_reply).then(_code(ERROR_OUT))
    for opening, name in STANZA_OPENINGS.items():
        code = code.when(stanza.str.starts_with(opening)).then(_code(name))
    code = (
        code.when(starts("Websocket received frame: opcode=9"))
        .then(_code("ping"))
        .when(by_prefix < len(EVENT_KINDS))  # a final kind, not a stanza to look into
        .then(by_prefix)
        .when(starts("Traceback[") | (pl.col("level") == "error"))
        .then(_code("traceback"))
        .when(src == CONTEXT_SOURCE)
        .then(_code(CONTEXT))
        .otherwise(_code("unknown"))
    )
    return (
        frame.with_columns(by_prefix=_lookup(16, BY_PREFIX))
        .with_columns(stanza=_only([STANZA_OUT, STANZA], column=by_prefix))
        .with_columns(code=code)
        .drop("by_prefix", "stanza")
    )


# Kinds whose lines need a look past their opening: `detail_columns` runs on these lines only.
DETAIL_KINDS = [
    IQ_IN,
    PRESENCE_IN,
    MESSAGE_OUT,
    ERROR_OUT,
    UNPARSED,
    CONTEXT,
    *JID_PATTERNS,
    "http_request",
    "traceback",
    "hibernation_timeout",
]
DETAIL_CODES = pl.Series([CODE[name] for name in DETAIL_KINDS], dtype=pl.UInt8)
DETAIL_SCHEMA = {
    "final_code": pl.UInt8,
    "continuation": pl.Boolean,
    "jid": pl.String,
    "room": pl.String,
    "error": pl.String,
    "http_status": pl.Int16,
    "http_method": pl.String,
    "http_path": pl.String,
}


def detail_columns(rows: pl.DataFrame) -> pl.DataFrame:
    """On the detail lines of a chunk (``seq, line, message, code``, in line order): each line's
    final code, whether it continues a traceback, and the fields pulled out of it (DETAIL_SCHEMA)."""
    unparsed = _is(UNPARSED)
    frame = rows.lazy().with_columns(
        continuation=unparsed & continues(pl.col("line")),
        occupant=_occupant(_only([PRESENCE_IN])),
        sender=_attribute(_only([MESSAGE_OUT, ERROR_OUT]), "from"),
        context_text=pl.when(
            _is(ERROR_OUT)
            & (code_col.shift(1) == _code(CONTEXT))
            & (pl.col("seq").shift(1) == pl.col("seq") - 1)
        ).then(msg.shift(1)),
    )
    joins = _is(PRESENCE_IN) & pl.col("occupant").is_not_null() & ~msg.str.contains("type='", literal=True)
    joined = (
        _is(MESSAGE_OUT)
        & msg.str.contains("type='groupchat'", literal=True)
        & ~pl.col("sender").str.contains("/", literal=True)
    )
    from_focus = msg.str.starts_with("Sending[c2s]: <iq ") & pl.col("sender").str.starts_with("focus.")
    kind = (
        pl.when(_is(IQ_IN))
        .then(
            pl.when(msg.str.contains("to='focus.", literal=True))
            .then(_code("conference_request"))
            .otherwise(_code("unknown"))
        )
        .when(_is(PRESENCE_IN))
        .then(pl.when(joins).then(_code("muc_join_sent")).otherwise(_code("unknown")))
        .when(_is(MESSAGE_OUT))
        .then(pl.when(joined).then(_code("muc_joined")).otherwise(_code("unknown")))
        .when(_is(ERROR_OUT))
        .then(pl.when(from_focus).then(_code("conference_error")).otherwise(_code("stanza_error")))
        .when(pl.col("continuation"))
        .then(_code("traceback"))
        .when(_is(UNPARSED, CONTEXT))
        .then(_code("unknown"))
        .otherwise(code_col)
    )
    room_of = (
        pl.when(joins)
        .then(pl.col("occupant"))
        .when(joined | (_is(ERROR_OUT) & pl.col("sender").str.contains("/", literal=True)))
        .then(pl.col("sender"))
    )
    request = _only(["http_request"]).str.extract_groups(rf"^Firing event: ({'|'.join(HTTP_METHODS)}) (\S+)")
    columns = {
        "final_code": kind,
        "continuation": pl.col("continuation"),
        "jid": pl.coalesce([_only([name]).str.extract(pattern, 1) for name, pattern in JID_PATTERNS.items()]),
        "room": _room(room_of),
        "error": pl.when(_is("traceback"))
        .then(msg)
        .when(pl.col("continuation"))
        .then(pl.col("line"))
        .when(_is(ERROR_OUT))
        .then(pl.coalesce("context_text", pl.lit("error reply")))
        .when(_is("hibernation_timeout"))
        .then(pl.lit("smacks hibernation timeout")),
        "http_status": pl.when(_is("traceback") & msg.str.starts_with("Traceback[httpserver]")).then(500),
        "http_method": request.struct.field("1"),
        "http_path": request.struct.field("2"),
    }
    return frame.select(
        columns[name].cast(dtype).alias(name) for name, dtype in DETAIL_SCHEMA.items()
    ).collect(engine=CHUNK_ENGINE)


def event_columns(
    fields: pl.LazyFrame, constants: dict[str, pl.Expr], stored: dict[str, pl.DataType]
) -> pl.DataFrame:
    """A chunk's fields (see the module doc) -> its events in ``stored`` (the file's
    ``server_stored_schema``), plus two flags: ``continuation`` (a traceback line that is not a
    record of its own) for :func:`fold_tracebacks`, and ``unparsed`` (a line of no known shape) for
    the file's figures.

    The detail lines are picked out and looked into (:func:`detail_columns`); what that finds is
    put back on the chunk's rows by position, which costs far less than a regex on every line.
    """
    frame = (
        with_coarse_code(fields)
        .with_columns(detail=code_col.is_in(DETAIL_CODES.implode()))
        .collect(engine=CHUNK_ENGINE)
    )
    details = detail_columns(frame.select("seq", "line", "message", "code", "detail").filter("detail"))
    detail_rows = frame["detail"].arg_true()

    def found(name: str) -> pl.Expr:
        """A detail field on every row (null off the detail lines), or a null literal if never found.
        Stored as a category, it is cast here, on the detail lines only. Its values are scattered
        into a column of nulls: a gather would visit every row, at twice the cost."""
        dtype = stored.get(name, DETAIL_SCHEMA[name])
        values = details[name]
        if values.null_count() == values.len():
            return pl.lit(None, dtype)
        column = pl.Series(name, [None], dtype).extend_constant(None, frame.height - 1)
        return pl.lit(column.scatter(detail_rows, values.cast(dtype)))

    unparsed = _is(UNPARSED)

    def parsed_only(value: pl.Expr) -> pl.Expr:
        """Most chunks have no line of unknown shape: then the test is skipped, the column kept as is."""
        return pl.when(unparsed).then(None).otherwise(value) if any_unparsed else value

    any_unparsed = (frame["code"] == CODE[UNPARSED]).any()
    continuation = pl.col("continuation")
    columns = {
        "seq": pl.col("seq"),
        "ts": pl.col("ts"),
        **constants,
        "shard": pl.col("shard") if "shard" in frame.columns else pl.lit(None),
        "source": parsed_only(src),
        "level": pl.when(continuation).then(pl.lit("error")).otherwise(parsed_only(pl.col("level")))
        if any_unparsed
        else pl.col("level"),
        "kind": KINDS.gather(pl.coalesce(found("final_code"), code_col)),
        "session": parsed_only(session_of(src)),
        **{name: found(name) for name in ("jid", "room", "http_status", "http_method", "http_path", "error")},
        "message": pl.when(unparsed).then(pl.col("line")).otherwise(msg) if any_unparsed else msg,
    }
    return (
        frame.lazy()
        .with_columns(continuation=found("continuation").fill_null(False))
        .select(
            *[
                columns.get(name, pl.lit(None)).cast(dtype).alias(name)
                for name, dtype in stored.items()
            ],
            continuation,
            unparsed=unparsed & ~continuation,
        )
        .collect(engine=CHUNK_ENGINE)
    )


def session_of(source: pl.Expr) -> pl.Expr:
    """The c2s session id a line belongs to, when its source is one."""
    return pl.when(source.str.starts_with("c2s")).then(source)


def fold_tracebacks(events: pl.DataFrame) -> pl.DataFrame:
    """Fold continuation lines into the traceback (or error line) right above them; drop the flag.

    A continuation with nothing to fold into (the first line of a log) stays a traceback of its own.
    """
    cont = pl.col("continuation")
    if not events["continuation"].any():
        return events.drop("continuation")
    follows = cont & (pl.col("seq").shift(1) == pl.col("seq") - 1) & (pl.col("kind").shift(1) == "traceback")
    events = events.with_columns(follows=follows.fill_null(False))
    involved = pl.col("follows") | pl.col("follows").shift(-1).fill_null(False)
    others = [name for name in events.columns if name != "message"]
    folded = (
        events.filter(involved)
        .with_columns(record=(~pl.col("follows")).cum_sum())
        .group_by("record", maintain_order=True)
        .agg(pl.col("message").str.join("\n"), *[pl.col(name).first() for name in others])
        .select(events.columns)
    )
    return pl.concat([events.filter(~involved), folded]).sort("seq").drop("follows", "continuation")


# The kind that ends a c2s session for good. Not `disconnected`: with stream management the session
# hibernates and may resume on a new connection.
SESSION_ENDS = ["session_destroyed"]


@dataclass
class CarryState:
    """What one chunk of a file leaves for its next chunks."""

    # The occupants ("room@muc/nick") each c2s session has asked to join: later presences there are
    # status updates. A session's are forgotten when it ends (Prosody reuses c2s ids), so this holds
    # the sessions open at the time, not every join of the log: memory does not grow with the log.
    asked: dict[str, set[str]] = field(default_factory=dict)
    # The chunk's last line, when it may explain an error reply opening the next chunk.
    context: tuple[int, str] | None = None  # (seq, message)


def carry_over(events: pl.DataFrame, state: CarryState) -> pl.DataFrame:
    """In file order, chunk after chunk: what a chunk alone cannot see (see CarryState)."""
    return _carry_context(_drop_repeated_joins(events, state), state)


def _carry_context(events: pl.DataFrame, state: CarryState) -> pl.DataFrame:
    """An error reply opening the chunk takes its reason from a context line closing the previous one."""
    previous, state.context = state.context, None
    if events.height == 0:
        return events
    last = events.row(events.height - 1, named=True)
    if last["source"] == CONTEXT_SOURCE:
        state.context = (last["seq"], last["message"])
    first = events.row(0, named=True)
    reply = first["kind"] in ("conference_error", "stanza_error") and first["error"] == "error reply"
    if previous is None or not reply or previous[0] != first["seq"] - 1:
        return events
    return events.with_columns(
        error=pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(previous[1]))
        .otherwise(pl.col("error"))
        .cast(events.schema["error"])
    )


def _drop_repeated_joins(events: pl.DataFrame, state: CarryState) -> pl.DataFrame:
    """A join to an occupant the session already asked for (in this chunk or before, since it began)
    is an update."""
    joins_and_ends = (
        events.lazy()  # lazy, so that only the columns below are filtered
        .filter(pl.col("kind").is_in(["muc_join_sent", *SESSION_ENDS]))
        .select("seq", "session", pl.when(pl.col("kind") == "muc_join_sent").then(_occupant(msg)))
        .collect(engine=CHUNK_ENGINE)
    )
    repeated = []
    for seq, session, occupant in joins_and_ends.iter_rows():  # a few thousand rows a chunk
        if occupant is None:  # the session ended
            state.asked.pop(session, None)
        elif occupant in (occupants := state.asked.setdefault(session, set())):
            repeated.append(seq)
        else:
            occupants.add(occupant)
    if not repeated:
        return events
    again = pl.col("seq").is_in(pl.Series(repeated, dtype=events.schema["seq"]).implode())
    return events.with_columns(
        kind=pl.when(again).then(pl.lit("unknown")).otherwise(pl.col("kind")).cast(events.schema["kind"]),
        room=pl.when(again).then(None).otherwise(pl.col("room")),
    )
