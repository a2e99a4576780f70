"""Our own swarm capture: ``events.jsonl`` lines marked ``"capture":1`` (see ``prosody_analyze.capture``).

Read from a capture directory or from ``kubectl logs`` of swarm pods run with ``--out -``
(then behind ``--prefix`` / ``--timestamps``; the pod name becomes ``shard`` unless the event
has one). Participant ids are already unique across shards and are kept as they are.
"""

from __future__ import annotations

import json
import re

import polars as pl

from ..capture import CLIENT_FIELDS
from ..schema import EVENT_KINDS, LEVELS
from .context import FileContext

NAME = "swarm-capture"
LINE_RE = re.compile(r'^\{.*"capture":\s*1\b')
TEXT_FIELDS = [f for f in CLIENT_FIELDS if f not in ("http_status", "batch")]


def _record(line: str) -> dict | None:
    """One event line as a dict of schema fields, or None when it is not a capture event."""
    if not LINE_RE.match(line):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in EVENT_KINDS:
        return None
    record = {name: (None if data.get(name) is None else str(data[name])) for name in TEXT_FIELDS}
    for name in ("http_status", "batch"):
        value = data.get(name)
        record[name] = value if isinstance(value, int) and not isinstance(value, bool) else None
    return record


def parse(frame: pl.DataFrame, context: FileContext) -> pl.DataFrame:
    records = [_record(line) for line in frame["line"]]
    empty = dict.fromkeys(CLIENT_FIELDS)
    table = pl.DataFrame(
        [r or empty for r in records],
        schema={**{f: pl.String for f in TEXT_FIELDS}, "http_status": pl.Int64, "batch": pl.Int64},
        orient="row",
    ).rename({"ts": "ts_text", "shard": "event_shard", "message": "event_message"})
    frame = pl.concat([frame, table], how="horizontal").with_columns(
        parsed=pl.Series([r is not None for r in records], dtype=pl.Boolean)
    )
    stamp = pl.col("ts_text").str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    shard = pl.coalesce("event_shard", "shard") if "shard" in frame.columns else pl.col("event_shard")
    return frame.with_columns(
        ts=pl.coalesce(stamp, "wrap_ts") if "wrap_ts" in frame.columns else stamp,
        shard=shard,
        origin=pl.lit("client"),
        source=pl.lit("swarm"),
        kind=pl.col("kind").fill_null("unknown"),
        session=pl.col("participant"),
        message=pl.when(pl.col("parsed")).then(pl.col("event_message")).otherwise(pl.col("line")),
        level=pl.coalesce(
            pl.when(pl.col("level").is_in(LEVELS)).then("level"),
            pl.when(pl.col("kind").is_in(["http_error", "traceback", "stanza_error", "conference_error"]))
            .then(pl.lit("error"))
            .when(pl.col("parsed"))
            .then(pl.lit("info")),
        ),
    )


MANIFEST_PREFIX = "manifest "


def manifests(events: pl.DataFrame) -> list[dict]:
    """Manifests a capture streamed to stdout (``swarm --out -``) carries as ``run_info`` lines.

    A run writes its manifest at the start and again, completed, at the end: the later one of
    each (shard, start) replaces the earlier, so one run counts once.
    """
    found: dict[tuple, dict] = {}
    lines = events.filter((pl.col("kind") == "run_info") & pl.col("message").str.starts_with(MANIFEST_PREFIX))
    for text in lines["message"]:
        try:
            manifest = json.loads(text[len(MANIFEST_PREFIX) :])
        except ValueError:
            continue
        if isinstance(manifest, dict):
            found[(manifest.get("shard"), manifest.get("start"))] = manifest
    return list(found.values())
