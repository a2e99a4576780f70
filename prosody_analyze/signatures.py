"""Known failure signatures: log texts whose cause is known, each with a one-line explanation.

A signature matches an event when its kind is one of ``kinds`` or its ``message`` or ``error``
contains one of ``texts`` (literal, case-sensitive, as the programs print them). Matching is one
vectorised pass over the events (polars ``str.contains_any``), so it scales with the table.

HTTP 500s seen by clients are judged in context (:func:`http_500_signature`): Prosody only
answers 500 when a handler fails, and then logs ``Traceback[httpserver]``; without any Prosody
traceback in the same window, the 500 came from the proxy/ingress in front (nginx out of
``worker_connections`` or file descriptors), as in the study.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

EXAMPLES = 3


@dataclass(frozen=True)
class Signature:
    name: str
    explanation: str
    texts: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


SIGNATURES = [
    Signature(
        "muc_remote_refused",
        "MUC join refused as remote: the conference domain is not served by this Prosody or "
        "cross-domain routing is disabled (without Jicofo the focus request gets it too)",
        texts=("Communication with remote domains is not enabled", "Could not route stanza to remote"),
    ),
    Signature(
        "conference_request_timeout",
        "conference request to focus not answered in time: Jicofo is missing or not connected",
        kinds=("conference_timeout",),
    ),
    Signature(
        "smacks_hibernation_timeout",
        "stream-management sessions hibernated until timeout: clients vanished without closing "
        "(crashed, killed or cut off), and their memory is held until then",
        # one line per session: its "Destroying session for hibernating too long" follows it
        texts=("hibernation timeout reached",),
        kinds=("hibernation_timeout",),
    ),
    Signature(
        "too_many_open_files",
        "out of file descriptors (each participant holds a socket on each side): raise the "
        "open-files limit (ulimit -n / LimitNOFILE) of Prosody or the proxy",
        texts=("Too many open files",),
    ),
    Signature(
        "nginx_worker_connections",
        "nginx ran out of worker_connections and refuses new connections (HTTP 500 to clients): "
        "raise worker_connections / worker_processes",
        texts=("worker_connections are not enough",),
    ),
]
HTTP_500_PROXY = (
    "http_500_from_proxy",
    "clients got HTTP 500 with no Prosody traceback in that window: the proxy/ingress in front "
    "refused them (connection or file limits), not Prosody",
)
HTTP_500_PROSODY = (
    "http_500_prosody_handler",
    "clients got HTTP 500 and Prosody logged tracebacks in that window: a Prosody HTTP handler failed",
)
EXPLANATIONS = {s.name: s.explanation for s in SIGNATURES} | dict([HTTP_500_PROXY, HTTP_500_PROSODY])


def _matches(signature: Signature) -> pl.Expr:
    matched = pl.lit(False)
    if signature.kinds:
        matched = matched | pl.col("kind").cast(pl.String).is_in(list(signature.kinds))
    if signature.texts:
        for column in ("message", "error"):
            matched = matched | pl.col(column).str.contains_any(list(signature.texts)).fill_null(False)
    return matched


def example_text(limit: int = 300) -> pl.Expr:
    """A message short enough to quote; a long stanza dump gives way to its error text."""
    message = pl.col("message")
    return (
        pl.when((message.str.len_chars() > limit) & pl.col("error").is_not_null())
        .then(pl.col("error"))
        .otherwise(message.str.slice(0, limit))
    )


def signature_hits(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per (event, signature it matches): ts, file, seq, origin, kind, signature, message."""
    names = pl.concat_list(
        [pl.when(_matches(s)).then(pl.lit(s.name)).otherwise(pl.lit(None, pl.String)) for s in SIGNATURES]
    ).list.drop_nulls()
    texts = tuple(text for s in SIGNATURES for text in s.texts)
    any_signature = _matches(Signature("any", "", texts, tuple(kind for s in SIGNATURES for kind in s.kinds)))
    return (
        events.filter(any_signature)  # one cheap pass; the per-signature work only on what matched
        .select(
            "ts", "file", "seq", "origin", "kind", example_text().alias("message"), names.alias("signature")
        )
        .explode("signature")
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def summarize(hits: pl.DataFrame, examples: int = EXAMPLES) -> list[dict[str, Any]]:
    """Signatures found in ``hits`` (from :func:`signature_hits`), most frequent first."""
    if hits.height == 0:
        return []
    grouped = (
        hits.sort("ts", "file", "seq", nulls_last=True)
        .group_by("signature")
        .agg(
            pl.len().alias("count"),
            pl.col("ts").min().alias("first_ts"),
            pl.col("message").head(examples).alias("examples"),
        )
        .sort("count", "signature", descending=[True, False])
    )
    return [
        {
            "name": row["signature"],
            "explanation": EXPLANATIONS[row["signature"]],
            "count": row["count"],
            "first_ts": _iso(row["first_ts"]),
            "examples": row["examples"],
        }
        for row in grouped.iter_rows(named=True)
    ]


def http_500_signature(
    client_500s: pl.DataFrame, tracebacks: int, examples: int = EXAMPLES
) -> dict[str, Any] | None:
    """Proxy or Prosody, for the client HTTP 500s (ts, message as quoted) of one window; None without any."""
    if client_500s.height == 0:
        return None
    name, explanation = HTTP_500_PROSODY if tracebacks else HTTP_500_PROXY
    ordered = client_500s.sort("ts", nulls_last=True)
    return {
        "name": name,
        "explanation": explanation,
        "count": ordered.height,
        "first_ts": _iso(ordered["ts"].min()),
        "examples": ordered["message"].head(examples).to_list(),
    }
