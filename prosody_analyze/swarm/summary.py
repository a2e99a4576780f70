"""The numbers a swarm run ends with: outcomes, per-stage latency percentiles, join rate."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Stage durations measured by the swarm, as in the session table of the schema:
# connect = attempt start → WebSocket open, auth = → SASL success, bind = → resource bound,
# join = bound → self-presence (110) in the room.
TIMED_STAGES = ("connect", "auth", "bind", "join")
PERCENTILES = (50, 95, 99)


@dataclass
class SwarmSummary:
    """Counts are participants of this run (this shard when sharded)."""

    target: int = 0  # participants planned
    started: int = 0  # participants that began connecting
    joined: int = 0  # reached the room (or came online when not joining a MUC)
    failed: int = 0  # gave up before joining (after any retries)
    dropped: int = 0  # joined, then lost the connection before leaving
    left: int = 0  # left cleanly at the end
    interrupted: int = 0  # still joining, or never started, when the run was stopped
    retries: int = 0
    failures_by_stage: dict[str, int] = field(default_factory=dict)
    top_errors: list[tuple[str, int]] = field(default_factory=list)  # (error, count), most frequent first
    http_statuses: dict[int, int] = field(default_factory=dict)
    stage_seconds: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    all_joined_s: float | None = None  # start of the run → last participant joined, when all did
    joins_per_s: float | None = None  # joined / (last join − first attempt)
    peak_in_room: int = 0
    duration_s: float = 0.0
    started_at: str | None = None  # UTC ISO
    ended_at: str | None = None
    end_reason: str = ""
    error: str | None = None  # one line when the run failed as a whole (unreachable, server lost…)
    shard: str | None = None
    service: str | None = None
    capture: str | None = None

    @property
    def ok(self) -> bool:
        """Every planned participant joined (none planned counts: a shard may be empty) and none dropped."""
        return self.error is None and self.joined == self.target and self.dropped == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["top_errors"] = [{"error": error, "count": count} for error, count in self.top_errors]
        data["http_statuses"] = {str(status): count for status, count in self.http_statuses.items()}
        data["ok"] = self.ok
        return data


def stage_percentiles(samples: dict[str, list[float]]) -> dict[str, dict[str, float | int | None]]:
    """count, p50/p95/p99 and max in seconds of each timed stage (None where nothing was measured)."""
    import numpy as np  # here: importing numpy starts BLAS threads that every other command would pay for

    table = {}
    for stage in TIMED_STAGES:
        values = np.asarray(samples.get(stage, ()), dtype=float)
        row: dict[str, float | int | None] = {"count": int(values.size)}
        for p, value in zip(
            PERCENTILES,
            np.percentile(values, PERCENTILES) if values.size else [None] * len(PERCENTILES),
            strict=True,
        ):
            row[f"p{p}"] = None if value is None else round(float(value), 6)
        row["max"] = round(float(values.max()), 6) if values.size else None
        table[stage] = row
    return table


def most_common(errors: Counter, limit: int = 5) -> list[tuple[str, int]]:
    return errors.most_common(limit)
