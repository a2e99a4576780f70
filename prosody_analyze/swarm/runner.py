"""The asyncio side of the swarm: sockets, the ramp schedule, timers, the capture.

One task per participant moves frames between a ``websockets`` connection and its
:class:`~prosody_analyze.swarm.xmpp.Participant` machine. The scheduler starts participants
at their planned offsets; a semaphore caps simultaneous connection attempts (held from the
TCP connect until its XMPP session is established, so a slow conference request or MUC join
does not hold back new connections). A failure only ever ends its own
participant: it becomes an event with its stage, and optionally a retry with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ..capture import CaptureWriter, utc_now_iso
from .config import PlannedParticipant, SwarmConfig
from .summary import SwarmSummary, most_common, stage_percentiles
from .xmpp import Event, Participant, Phase

LEAVE_TIMEOUT_S = 5.0  # how long a leaving participant waits for the server's <close/>
LEAVES_PER_S = 100  # leaves a loaded server confirms per second, to size the wait at the end
MAX_RETRY_WAIT_S = 30.0
UNREACHABLE_AFTER = 10  # consecutive failed connects, with nobody connected, that end the run
POLL_S = 0.1

Progress = Callable[["Swarm"], None]
# event kind → (previous mark, timed stage, mark it sets)
STAGE_OF_KIND = {
    "connection_opened": ("start", "connect", "connected"),
    "authenticated": ("connected", "auth", "authenticated"),
    "resource_bound": ("authenticated", "bind", "bound"),
    "muc_joined": ("bound", "join", "joined"),
}


def describe_connect_error(error: BaseException) -> tuple[str, int | None]:
    """One line for a failed WebSocket open, and the HTTP status when the upgrade was refused."""
    if isinstance(error, InvalidStatus):
        status = error.response.status_code
        return f"server rejected WebSocket connection: HTTP {status}", status
    if isinstance(error, TimeoutError):
        return "timed out opening the WebSocket", None
    if isinstance(error, ConnectionRefusedError):
        return "connection refused", None
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__, None
    return f"{type(error).__name__}: {error}", None


def describe_close(closed: ConnectionClosed) -> str:
    frame = closed.rcvd or closed.sent
    if frame is None:
        return "no close frame (TCP connection reset or server gone)"
    return f"close code {frame.code}" + (f" ({frame.reason})" if frame.reason else "")


class Swarm:
    """State of one run; ``progress`` is called about four times a second with the swarm."""

    def __init__(
        self,
        config: SwarmConfig,
        plan: list[PlannedParticipant],
        writer: CaptureWriter,
        xmpp_log: IO[str] | None = None,
        debug: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.plan = plan
        self.writer = writer
        self.xmpp_log = xmpp_log
        self.debug = debug
        self.stopping = asyncio.Event()
        self.connect_slots = asyncio.Semaphore(config.max_connecting)
        self.connections: dict[str, tuple[Participant, ClientConnection]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.ssl_context = _tls_context(config.insecure)
        self.summary = SwarmSummary(target=len(plan), shard=config.shard, service=config.service)
        self.stage_samples: dict[str, list[float]] = {"connect": [], "auth": [], "bind": [], "join": []}
        self.errors: Counter = Counter()
        self.failures_by_stage: Counter = Counter()
        self.http_statuses: Counter = Counter()
        self.unsettled = len(plan)  # neither joined nor failed yet
        self.in_room = 0
        self.open_connections = 0
        self.consecutive_unreachable = 0
        self.abort_reason: str | None = None
        self.start_mono = 0.0
        self.first_attempt_mono: float | None = None
        self.last_join_mono: float | None = None
        self.scheduled = 0

    # ---- the run ----------------------------------------------------------------------------
    async def run(self, start_at: datetime, progress: Progress | None = None) -> SwarmSummary:
        wait_s = (start_at - datetime.now(UTC)).total_seconds()
        self.start_mono = time.monotonic() + max(wait_s, 0.0)
        self.summary.started_at = start_at.isoformat().replace("+00:00", "Z")
        scheduler = asyncio.create_task(self._schedule())
        hold_until: float | None = None
        reason = ""
        try:
            while True:
                if progress:
                    progress(self)
                if self.stopping.is_set():
                    reason = reason or "stopped (Ctrl-C / SIGTERM)"
                    break
                if self.abort_reason:
                    reason = self.abort_reason
                    self.summary.error = self.abort_reason
                    break
                settled = scheduler.done() and self.unsettled == 0
                if settled and not self.connections:
                    reason = "every participant ended"
                    break
                if settled and hold_until is None:
                    hold = self.config.duration
                    hold_until = time.monotonic() + hold if hold is not None else float("inf")
                if hold_until is not None and time.monotonic() >= hold_until:
                    reason = f"duration reached ({self.config.duration:g} s after everyone joined or failed)"
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 0.25)
        finally:
            self.stopping.set()
            scheduler.cancel()
            await self._leave_everyone()
            if progress:
                progress(self)
        self._finish(reason)
        return self.summary

    def stop(self) -> None:
        self.stopping.set()

    async def _schedule(self) -> None:
        for planned in self.plan:
            delay = self.start_mono + planned.offset_s - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set() or self.abort_reason:
                return
            task = asyncio.create_task(self._participant(planned, self.scheduled))
            self.scheduled += 1
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _leave_everyone(self) -> None:
        """Send every connected participant's leave frames, then give them time to close."""
        leaving = []
        for machine, ws in list(self.connections.values()):
            frames = machine.leave()
            if frames:
                leaving.append(self._send(ws, machine, frames))
        if leaving:
            await asyncio.gather(*leaving, return_exceptions=True)
        if self.tasks:
            # Prosody handles a few hundred leaves a second (each one is broadcast to the room).
            grace = max(LEAVE_TIMEOUT_S, len(leaving) / LEAVES_PER_S)
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)

    # ---- one participant --------------------------------------------------------------------
    async def _participant(self, planned: PlannedParticipant, number: int) -> None:
        config = self.config
        self.summary.started += 1
        attempt = 0
        marks: dict[str, float] = {}
        try:
            while True:
                marks = {}
                failure = await self._attempt(planned, number, marks)
                if failure is None:
                    return
                if attempt >= config.retries or self.stopping.is_set() or self.abort_reason:
                    self._settle_failed(failure, marks)
                    return
                attempt += 1
                wait = min(config.retry_backoff * 2 ** (attempt - 1), MAX_RETRY_WAIT_S)
                self.summary.retries += 1
                self._write(
                    planned,
                    Event(
                        "retry",
                        stage=failure.stage,
                        error=failure.error,
                        level="warn",
                        http_status=failure.http_status,
                        message=f"retry {attempt}/{config.retries} in {wait:g} s",
                    ),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait)
                if self.stopping.is_set():
                    self._settle_failed(failure, marks)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug of ours must not take the swarm down
            failure = Event(
                "disconnected",
                stage="connected",
                level="error",
                error=f"internal error: {type(error).__name__}: {error}",
            )
            self._write(planned, failure)
            self._settle_failed(failure, marks)

    async def _attempt(
        self, planned: PlannedParticipant, number: int, marks: dict[str, float]
    ) -> Event | None:
        """One connection; returns the failure event if it failed before joining, else None.

        ``marks`` receives the monotonic time each stage was reached ("in": in the room, "out": gone).
        """
        config = self.config
        machine = Participant(
            planned.participant_id,
            domain=config.domain,
            room=planned.room,
            muc=config.muc,
            conference_target=None if config.conference_over_http else config.conference_request_target,
            join_muc=config.join_muc,
        )
        ws: ClientConnection | None = None
        await self.connect_slots.acquire()
        holding_slot = True
        try:
            if self.stopping.is_set():
                return None
            began = marks["start"] = time.monotonic()
            if self.first_attempt_mono is None:
                self.first_attempt_mono = began
            if config.conference_over_http:
                await self._http_conference_request(planned)
            self._write(planned, Event("connecting", message="opening the WebSocket", level="debug"))
            try:
                ws = await self._open(planned, number)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as error:
                text, status = describe_connect_error(error)
                step = machine.connection_failed(text, status)
                self._record(planned, machine, step.events, marks)
                if status is None:
                    self._count_unreachable(text)
                return step.events[0]
            self.consecutive_unreachable = 0
            self.open_connections += 1
            self.connections[planned.participant_id] = (machine, ws)
            step = machine.connected(f"WebSocket open in {(time.monotonic() - began) * 1000:.1f} ms")
            self._record(planned, machine, step.events, marks)
            await self._send(ws, machine, step.send)
            if self.stopping.is_set():
                await self._send(ws, machine, machine.leave())
            failure = await self._drive(planned, machine, ws, marks, until=lambda: not machine.connecting)
            self.connect_slots.release()
            holding_slot = False
            if failure is None and not machine.done:
                failure = await self._drive(planned, machine, ws, marks, until=lambda: False)
            return failure
        finally:
            if holding_slot:
                self.connect_slots.release()
            if ws is not None:
                await self._hang_up(planned, machine, ws, marks)

    async def _hang_up(
        self, planned: PlannedParticipant, machine: Participant, ws: ClientConnection, marks: dict[str, float]
    ) -> None:
        self._disconnect(planned, machine)
        if machine.phase is Phase.LEAVING:  # the run's end cut the wait for the server's <close/>
            self._record(planned, machine, machine.timed_out(LEAVE_TIMEOUT_S).events, marks)
        if asyncio.current_task().cancelling():
            ws.transport.abort()
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), LEAVE_TIMEOUT_S)

    def _disconnect(self, planned: PlannedParticipant, machine: Participant) -> None:
        if self.connections.pop(planned.participant_id, None) is not None:
            self.open_connections -= 1

    async def _open(self, planned: PlannedParticipant, number: int) -> ClientConnection:
        config = self.config
        separator = "&" if "?" in config.service else "?"
        url = f"{config.service}{separator}room={urllib.parse.quote(planned.room)}"
        extra = {}
        if config.source_addresses:
            extra["local_addr"] = (config.source_addresses[number % len(config.source_addresses)], 0)
        if config.service.startswith("wss://"):
            extra["ssl"] = self.ssl_context
        return await connect(
            url,
            subprotocols=["xmpp"],
            compression=None,
            proxy=None,
            open_timeout=config.stage_timeout,
            ping_interval=None,
            close_timeout=LEAVE_TIMEOUT_S,
            max_queue=64,
            **extra,
        )

    async def _drive(
        self,
        planned: PlannedParticipant,
        machine: Participant,
        ws: ClientConnection,
        marks: dict[str, float],
        until: Callable[[], bool],
    ) -> Event | None:
        """Move frames until the machine is done or ``until()``; returns a pre-join failure event."""
        config = self.config
        phase: Phase | None = None
        deadline = limit = 0.0
        next_ping = time.monotonic() + config.ping_interval
        failure: Event | None = None
        while not machine.done and not until():
            now = time.monotonic()
            if machine.phase is not phase:
                phase = machine.phase
                if phase is Phase.REQUESTING_CONFERENCE:
                    limit = config.conference_timeout
                elif phase is Phase.LEAVING:
                    limit = LEAVE_TIMEOUT_S
                else:
                    limit = config.stage_timeout
                deadline = now + limit
                if phase is Phase.IN:
                    next_ping = now + config.ping_interval
            timed = machine.waiting or phase is Phase.LEAVING
            wait = (deadline if timed else next_ping) - now
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    frame = await ws.recv()
            except TimeoutError:
                if timed:
                    step = machine.timed_out(limit)
                else:
                    next_ping = time.monotonic() + config.ping_interval
                    await self._send(ws, machine, machine.ping())
                    continue
            except ConnectionClosed as closed:
                step = machine.connection_closed(describe_close(closed))
            else:
                if isinstance(frame, bytes):
                    frame = frame.decode("utf-8", "replace")
                if self.xmpp_log is not None:
                    self._log_frame(planned, "IN", frame)
                step = machine.receive(frame)
            failure = self._record(planned, machine, step.events, marks) or failure
            step.send += machine.ack()  # XEP-0198: answer <r/> at once, as xmpp.js does
            if step.send:
                await self._send(ws, machine, step.send)
        return failure

    async def _send(self, ws: ClientConnection, machine: Participant, frames: list[str]) -> None:
        for frame in frames:
            if self.xmpp_log is not None:
                self._log_frame(None, "OUT", frame, machine.participant_id)
            try:
                await ws.send(frame)
            except ConnectionClosed:
                return  # the receive side reports the close

    async def _http_conference_request(self, planned: PlannedParticipant) -> None:
        """JXS with an http(s) conferenceRequestTarget: POST {machineUid, room} before logging in."""
        config = self.config
        separator = "&" if "?" in config.conference_request_target else "?"
        url = f"{config.conference_request_target}{separator}room={urllib.parse.quote(planned.room)}"
        body = json.dumps({"machineUid": secrets.token_hex(8), "room": f"{planned.room}@{config.muc}"})
        self._write(planned, Event("conference_request", message=f"HTTP POST {url}"))

        def post() -> None:
            request = urllib.request.Request(
                url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(
                request, timeout=config.conference_timeout, context=self.ssl_context
            ) as response:
                response.read()

        try:
            await asyncio.to_thread(post)
        except urllib.error.HTTPError as error:
            self._write(
                planned,
                Event(
                    "conference_error",
                    error=f"HTTP {error.code} {error.reason}",
                    http_status=error.code,
                    level="warn",
                ),
            )
        except (OSError, ValueError) as error:
            kind = "conference_timeout" if isinstance(error, TimeoutError) else "conference_error"
            self._write(planned, Event(kind, error=str(error) or type(error).__name__, level="warn"))

    # ---- bookkeeping ------------------------------------------------------------------------
    def _record(
        self, planned: PlannedParticipant, machine: Participant, events: list[Event], marks: dict[str, float]
    ) -> Event | None:
        """Write events, update counters and stage timings; returns a pre-join failure if any."""
        failure = None
        last_error = None
        for event in events:
            self._write(planned, event)
            stage = STAGE_OF_KIND.get(event.kind)
            if stage is not None:
                previous, timed, mark = stage
                now = marks[mark] = time.monotonic()
                if previous in marks:
                    self.stage_samples[timed].append(now - marks[previous])
            if event.stage is not None:
                failure = event
            if event.level == "error":
                last_error = event.error
        if machine.in_conference and "in" not in marks:
            marks["in"] = time.monotonic()
            self._settle_joined(marks)
        elif machine.done and "in" in marks and "out" not in marks:
            marks["out"] = time.monotonic()
            self.in_room -= 1
            if machine.phase is Phase.CLOSED:
                self.summary.left += 1
            else:
                self.summary.dropped += 1
                self.errors[last_error or "connection lost"] += 1
        return failure

    def _settle_joined(self, marks: dict[str, float]) -> None:
        marks["settled"] = marks["in"]
        self.summary.joined += 1
        self.unsettled -= 1
        self.in_room += 1
        self.summary.peak_in_room = max(self.summary.peak_in_room, self.in_room)
        self.last_join_mono = time.monotonic()
        if self.summary.joined == self.summary.target:
            took = self.last_join_mono - self.start_mono
            self.summary.all_joined_s = round(took, 3)
            self.writer.write("all_joined", message=f"All joined, took {took:.3f} seconds.")

    def _settle_failed(self, failure: Event, marks: dict[str, float]) -> None:
        if "settled" in marks:  # joined first: a later internal error is not a join failure
            return
        marks["settled"] = time.monotonic()
        self.summary.failed += 1
        self.unsettled -= 1
        self.failures_by_stage[failure.stage] += 1
        self.errors[failure.error] += 1
        if failure.http_status is not None:
            self.http_statuses[failure.http_status] += 1

    def _count_unreachable(self, error: str) -> None:
        self.consecutive_unreachable += 1
        if (
            self.consecutive_unreachable >= min(UNREACHABLE_AFTER, len(self.plan))
            and not self.connections
            and self.abort_reason is None
        ):
            lost = " (the server went away)" if self.summary.joined else ""
            self.abort_reason = f"cannot connect to {self.config.service}: {error}{lost}"

    def _write(self, planned: PlannedParticipant, event: Event) -> None:
        self.writer.write(
            event.kind,
            participant=planned.participant_id,
            room=planned.room,
            batch=planned.batch,
            jid=event.jid,
            stage=event.stage,
            error=event.error,
            http_status=event.http_status,
            message=event.message,
            level=event.level,
        )
        if self.debug is not None:
            detail = " ".join(
                str(part)
                for part in (event.stage and f"stage={event.stage}", event.error, event.message)
                if part
            )
            self.debug(f"{utc_now_iso()} Participant[id={planned.participant_id}] {event.kind} {detail}")

    def _log_frame(
        self,
        planned: PlannedParticipant | None,
        direction: str,
        frame: str,
        participant_id: str | None = None,
    ) -> None:
        who = planned.participant_id if planned else participant_id
        self.xmpp_log.write(f"{utc_now_iso()} {who} {direction} {frame}\n")

    def _finish(self, reason: str) -> None:
        summary = self.summary
        summary.end_reason = reason
        summary.interrupted = max(summary.target - summary.joined - summary.failed, 0)
        summary.failures_by_stage = dict(self.failures_by_stage)
        summary.top_errors = most_common(self.errors)
        summary.http_statuses = dict(self.http_statuses)
        summary.stage_seconds = stage_percentiles(self.stage_samples)
        if summary.joined and self.first_attempt_mono is not None and self.last_join_mono is not None:
            span = self.last_join_mono - self.first_attempt_mono
            summary.joins_per_s = round(summary.joined / span, 2) if span > 0 else None
        summary.duration_s = round(time.monotonic() - self.start_mono, 3)
        summary.ended_at = utc_now_iso()
        if summary.error is None and summary.joined == 0 and summary.failed:
            stage, count = self.failures_by_stage.most_common(1)[0]
            error = self.errors.most_common(1)[0][0]
            summary.error = (
                f"{summary.failed}/{summary.target} participants failed (most at stage {stage}): {error}"
            )
        elif summary.error is None and summary.dropped and summary.dropped >= summary.joined:
            lost = self.errors.most_common(1)[0][0]
            summary.error = f"every participant in a room lost its connection ({lost})"


def install_signal_handlers(swarm: Swarm) -> Callable[[], None]:
    """First Ctrl-C/SIGTERM: leave cleanly. Returns a function removing the handlers."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, swarm.stop)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass

    def remove() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return remove


def _tls_context(insecure: bool) -> ssl.SSLContext:
    """Certificates checked as a browser would, unless ``insecure`` (a test server's self-signed one)."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
