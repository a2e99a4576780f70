"""The swarm's capture: what a load run leaves behind, in a form `ingest` reads back.

A capture directory holds:

* ``manifest.json`` — tool version, full config, target, host, start/end (UTC ISO 8601);
* ``events.jsonl`` — one JSON object per client event, written and flushed as it
  happens, so a killed run keeps everything before the kill;
* ``metrics.csv`` — server samples ``ts,metric,labels,value`` (RSS, CPU, OpenMetrics);
* ``prosody.log`` — the sandboxed Prosody's debug log, with ``--local``.

Each event line carries the fields of :data:`prosody_analyze.schema.EVENT_SCHEMA` that
a client knows (``ts`` as ISO 8601 with ``Z``, ``kind``, ``participant``, ``room``,
``jid``, ``stage``, ``http_status``, ``error``, ``message``, ``shard``, ``batch``) plus
``"capture": 1`` so the sniffer can recognise it even behind ``kubectl logs`` prefixes.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .schema import EVENT_KINDS

MANIFEST_FILE = "manifest.json"
EVENTS_JSONL = "events.jsonl"
METRICS_CSV = "metrics.csv"
PROSODY_LOG = "prosody.log"
CAPTURE_MARK = "capture"
CAPTURE_VERSION = 1
CLIENT_FIELDS = (
    "ts",
    "kind",
    "participant",
    "room",
    "jid",
    "stage",
    "http_status",
    "error",
    "message",
    "shard",
    "batch",
    "level",
)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class CaptureWriter:
    """Appends client events as JSON lines, flushed line by line.

    ``target`` is a capture directory, or ``"-"`` for standard output (so that
    ``kubectl logs`` of a pod is the capture).
    """

    def __init__(self, target: str | Path, shard: str | None = None):
        self.shard = shard
        self.count = 0
        if str(target) == "-":
            self.directory = None
            self._stream: IO[str] = sys.stdout
        else:
            self.directory = Path(target)
            self.directory.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.directory / EVENTS_JSONL, "a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        ts = fields.pop("ts", None) or utc_now_iso()
        record: dict[str, Any] = {CAPTURE_MARK: CAPTURE_VERSION, "ts": ts, "kind": kind}
        if self.shard is not None:
            record["shard"] = self.shard
        record.update({k: v for k, v in fields.items() if v is not None})
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._stream.flush()
        self.count += 1

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write (or rewrite at the end of a run) the manifest; on stdout it is one ``run_info`` line."""
        if self.directory is None:
            self.write("run_info", message="manifest " + json.dumps(manifest, separators=(",", ":")))
            return
        tmp = self.directory / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.directory / MANIFEST_FILE)

    def close(self) -> None:
        if self._stream is not sys.stdout:
            self._stream.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
