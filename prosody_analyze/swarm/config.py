"""What a swarm run does: the options (JXS's, with its defaults, and ours) and the ramp plan.

A JXS ``config.json`` maps onto :class:`SwarmConfig` key by key (:meth:`SwarmConfig.from_jxs`);
JXS's units are kept where they come in (``delay`` in milliseconds, ``duration`` in seconds).

The plan: ``batches`` batches, each of ``rooms`` rooms × ``participants`` participants (one
batch is one JXS process of the study), started ``batch_interval`` apart; inside a room
participant *i* starts ``i × delay`` after its batch. Rooms are numbered across batches, so
every room and participant id (``"<room index>-<index>"``) is unique within the plan. A shard
K/N takes every N-th participant of the plan from K on: the shards are disjoint, their union
is the plan, and each keeps its planned start offset, so with a shared start time the ramp
stays in step across processes.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import UserError

DEFAULT_MAX_CONNECTING = 100
DEFAULT_STAGE_TIMEOUT_S = 30.0
DEFAULT_CONFERENCE_TIMEOUT_S = 30.0  # JXS/xmpp.js iqCaller timeout for the conference request
DEFAULT_PING_INTERVAL_S = 10.0

# JXS config key → (SwarmConfig field, factor to our unit).
JXS_KEYS: dict[str, tuple[str, float | None]] = {
    "domain": ("domain", None),
    "service": ("service", None),
    "muc": ("muc", None),
    "roomPrefix": ("room_prefix", None),
    "numberOfRooms": ("rooms", None),
    "numberOfParticipants": ("participants", None),
    "delay": ("delay", 0.001),  # milliseconds in JXS
    "enableDebug": ("enable_debug", None),
    "enableXmppLog": ("enable_xmpp_log", None),
    "conferenceRequestTarget": ("conference_request_target", None),
    "joinMuc": ("join_muc", None),
    "duration": ("duration", 1.0),  # seconds in JXS
}


@dataclass
class SwarmConfig:
    """Every option of a swarm run. Times are in seconds.

    ``None`` for ``service``, ``muc``, ``room_prefix`` and ``conference_request_target`` means
    JXS's default, filled by :meth:`resolved`.
    """

    domain: str = ""
    service: str | None = None  # default wss://{domain}/xmpp-websocket; ?room= is appended
    muc: str | None = None  # default conference.{domain}
    room_prefix: str | None = None  # default jxs-test-<random 0..10000>, as JXS
    rooms: int = 1
    participants: int = 2  # per room (JXS's code default)
    delay: float = 0.0  # between participants of a room
    conference_request_target: str | None = None  # focus.{domain}; http(s)://… → HTTP POST first
    join_muc: bool = True
    duration: float | None = None  # hold after everyone joined or failed; None: until Ctrl-C
    enable_debug: bool = False  # print every participant event on stderr
    enable_xmpp_log: bool = False  # log every frame in and out to xmpp.log
    # Beyond JXS
    batches: int = 1
    batch_interval: float = 60.0
    max_connecting: int = DEFAULT_MAX_CONNECTING  # simultaneous connection attempts
    retries: int = 0  # attempts after a failure before joining
    retry_backoff: float = 1.0  # first wait; doubles each retry
    source_addresses: tuple[str, ...] = ()  # local addresses connections are spread over
    insecure: bool = False  # accept TLS certificates that do not verify (self-signed test servers)
    stage_timeout: float = DEFAULT_STAGE_TIMEOUT_S
    conference_timeout: float = DEFAULT_CONFERENCE_TIMEOUT_S
    ping_interval: float = DEFAULT_PING_INTERVAL_S
    metrics_url: str | None = None  # OpenMetrics endpoint scraped during the run
    metrics_interval: float = 1.0
    local: bool = False  # start a sandboxed Prosody and aim at it
    shard_index: int = 0
    shard_count: int = 1
    start_at: datetime | None = None  # shared start of the ramp (sharded runs)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # unknown keys of a config file

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_jxs(cls, data: dict[str, Any], **overrides: Any) -> SwarmConfig:
        """A JXS config (its keys and units), optionally mixed with our own field names."""
        if not isinstance(data, dict):
            raise UserError("the config file must hold a JSON object, as a JXS config.json does")
        values: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {}
        for key, value in data.items():
            if key in JXS_KEYS:
                name, factor = JXS_KEYS[key]
                if factor is not None and value is not None:
                    value = _number(key, value) * factor
                values[name] = value
            elif key in names:
                values[key] = value
            else:
                extra[key] = value
        if values.get("duration") == 0:
            values["duration"] = None  # JXS: 0 / absent means no automatic end
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values, extra=extra)

    @classmethod
    def from_file(cls, path: Path | str, **overrides: Any) -> SwarmConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"config file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read config file {path}: {error}") from None
        except json.JSONDecodeError as error:
            raise UserError(f"config file {path} is not valid JSON: {error}") from None
        return cls.from_jxs(data, **overrides)

    def resolved(self) -> SwarmConfig:
        """A copy with JXS's defaults filled in and every value checked."""
        config = dataclasses.replace(self, source_addresses=tuple(self.source_addresses))
        if not config.domain:
            raise UserError("no domain: give --domain (or `domain` in the config file), or use --local")
        config.service = config.service or f"wss://{config.domain}/xmpp-websocket"
        if not re.match(r"^wss?://", config.service):
            raise UserError(f"service must be a ws:// or wss:// URL, got {config.service!r}")
        config.muc = config.muc or f"conference.{config.domain}"
        config.conference_request_target = config.conference_request_target or f"focus.{config.domain}"
        if config.room_prefix is None:
            if config.shard_count > 1:
                # Every shard must pick the same room names: derive them from the shared start.
                if config.start_at is None:
                    raise UserError(
                        "--shard needs --room-prefix or --start-at so every shard uses the same room names"
                    )
                seed = zlib.crc32(config.start_at.isoformat().encode())
                config.room_prefix = f"jxs-test-{seed % 10001}"
            else:
                config.room_prefix = f"jxs-test-{random.randint(0, 10000)}"
        for name in ("rooms", "participants", "batches", "max_connecting"):
            value = getattr(config, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(config.retries, int) or config.retries < 0:
            raise UserError(f"retries must be a whole number >= 0, got {config.retries!r}")
        for name in ("delay", "batch_interval", "retry_backoff"):
            if _number(name, getattr(config, name)) < 0:
                raise UserError(f"{name} must not be negative")
        for name in ("stage_timeout", "conference_timeout", "ping_interval", "metrics_interval"):
            if _number(name, getattr(config, name)) <= 0:
                raise UserError(f"{name} must be positive")
        if config.duration is not None and _number("duration", config.duration) < 0:
            raise UserError("duration must not be negative")
        if not 0 <= config.shard_index < config.shard_count:
            raise UserError(f"shard {config.shard_index}/{config.shard_count}: K must be in 0..N-1")
        return config

    # ---- derived ----------------------------------------------------------------------------
    @property
    def shard(self) -> str | None:
        return f"{self.shard_index}/{self.shard_count}" if self.shard_count > 1 else None

    @property
    def conference_over_http(self) -> bool:
        target = self.conference_request_target or ""
        return target.startswith(("http://", "https://"))

    @property
    def planned_total(self) -> int:
        return self.batches * self.rooms * self.participants

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["source_addresses"] = list(self.source_addresses)
        data["start_at"] = self.start_at.isoformat() if self.start_at else None
        if not data["extra"]:
            data.pop("extra")
        return data


@dataclass(frozen=True, slots=True)
class PlannedParticipant:
    participant_id: str  # "<global room index>-<index in room>", unique in the plan
    batch: int
    room_index: int  # global over batches
    index: int
    room: str
    offset_s: float  # start, after the start of the run


def build_plan(config: SwarmConfig) -> list[PlannedParticipant]:
    """This shard's participants, in start order (``config`` must be :meth:`~SwarmConfig.resolved`)."""
    plan = []
    position = 0
    for batch in range(config.batches):
        for room in range(config.rooms):
            room_index = batch * config.rooms + room
            for index in range(config.participants):
                if position % config.shard_count == config.shard_index:
                    plan.append(
                        PlannedParticipant(
                            participant_id=f"{room_index}-{index}",
                            batch=batch,
                            room_index=room_index,
                            index=index,
                            room=f"{config.room_prefix}-{room_index}",
                            offset_s=batch * config.batch_interval + index * config.delay,
                        )
                    )
                position += 1
    plan.sort(key=lambda planned: planned.offset_s)
    return plan


# ---- parsing helpers shared with the CLI ---------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """``"60s"``, ``"10m"``, ``"50ms"``, ``"1.5h"``; a bare number is in ``default_unit``."""
    match = _DURATION.match(str(text))
    if match is None:
        raise UserError(f"not a duration: {text!r} (examples: 50ms, 60s, 10m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2) or default_unit]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` with K counted from 0 (Kubernetes' JOB_COMPLETION_INDEX)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if match is None:
        raise UserError(f"--shard wants K/N (e.g. 0/4, K from 0 to N-1), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise UserError(f"--shard {text}: K must be in 0..N-1 and N >= 1")
    return index, count


def parse_start_at(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC if no offset) or ``+DURATION`` from now (e.g. ``+30s``)."""
    now = now or datetime.now(UTC)
    text = text.strip()
    if text.startswith("+"):
        return now + timedelta(seconds=parse_duration(text[1:]))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"--start-at wants an ISO time (2026-11-28T21:00:00Z) or +DELAY (+30s), got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{name} must be a number, got {value!r}")
    return float(value)
