"""One simulated Jitsi participant as a sans-IO XMPP state machine (RFC 7395 framing).

The machine never touches a socket: the runner feeds it what the WebSocket received
(one complete element per frame, as RFC 7395 says) and gets back the frames to send and
the events to record. That keeps every protocol decision testable with real server
stanzas and no network, the way h11 and wsproto separate protocol from I/O.

A participant goes the way JXS (jitsi/jxs over xmpp.js) goes: stream open, SASL
ANONYMOUS, stream restart, resource bind, stream management (XEP-0198) enable, the
conference request IQ to focus, then the MUC join presence with the Jitsi extensions;
self-presence with status 110 means joined. Afterwards it answers ``<r/>`` with ``<a/>``,
server pings with a result, Jingle ``session-initiate`` with ``session-accept``, and
leaves with unavailable presences and ``<close/>``.
"""

from __future__ import annotations

import enum
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SM_NS = "urn:xmpp:sm:3"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
MUC_USER_NS = "http://jabber.org/protocol/muc#user"
PING_NS = "urn:xmpp:ping"
JINGLE_NS = "urn:xmpp:jingle:1"
FOCUS_NS = "http://jitsi.org/protocol/focus"

CLOSE_FRAME = f'<close xmlns="{FRAMING_NS}"/>'


class Phase(enum.Enum):
    """Where the participant is; each waiting phase has a timeout run by the I/O layer."""

    IDLE = "idle"  # WebSocket not open yet
    OPENING = "opening"  # <open/> sent, waiting for the server's <open/> and features
    AUTHENTICATING = "authenticating"  # <auth/> sent
    RESTARTING = "restarting"  # stream restarted after SASL success
    BINDING = "binding"  # bind IQ sent
    ENABLING_SM = "enabling_sm"  # <enable/> sent
    REQUESTING_CONFERENCE = "requesting_conference"  # conference IQ sent to focus
    JOINING = "joining"  # MUC join presence sent
    IN = "in"  # joined the room (or online when not joining a MUC)
    LEAVING = "leaving"  # unavailable presences and <close/> sent
    CLOSED = "closed"  # ended cleanly
    FAILED = "failed"  # ended by an error


# The stage that fails when an error hits a phase: the first stage not reached yet (schema.STAGES).
FAILING_STAGE = {
    Phase.IDLE: "connected",
    Phase.OPENING: "authenticated",
    Phase.AUTHENTICATING: "authenticated",
    Phase.RESTARTING: "bound",
    Phase.BINDING: "bound",
    Phase.ENABLING_SM: "joined",
    Phase.REQUESTING_CONFERENCE: "joined",
    Phase.JOINING: "joined",
}
WAITING_PHASES = frozenset(FAILING_STAGE) - {Phase.IDLE}
# Until the XMPP session is established (bound, stream management settled): a "connection attempt".
CONNECTING_PHASES = frozenset(
    {Phase.IDLE, Phase.OPENING, Phase.AUTHENTICATING, Phase.RESTARTING, Phase.BINDING, Phase.ENABLING_SM}
)


@dataclass(slots=True)
class Event:
    """Something worth recording, in the vocabulary of :data:`prosody_analyze.schema.EVENT_KINDS`."""

    kind: str
    stage: str | None = None  # set on failures: the stage that failed
    error: str | None = None
    message: str | None = None
    jid: str | None = None
    http_status: int | None = None
    level: str = "info"


@dataclass(slots=True)
class Step:
    """What one input produced: frames to send (in order) and events to record."""

    send: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def error_text(element: ET.Element) -> str:
    """`condition - text` of a stanza or stream error, as JXS prints `StanzaError: cond - text`."""
    error = element if local_name(element.tag) == "error" else element.find("{*}error")
    if error is None:
        return "error"
    condition, text = "", ""
    for child in error:
        name = local_name(child.tag)
        if name == "text":
            text = (child.text or "").strip()
        elif namespace(child.tag) in (STANZAS_NS, STREAMS_NS) and not condition:
            condition = name
    return f"{condition} - {text}" if condition and text else condition or text or "error"


def random_ssrc() -> int:
    return random.randint(1, 0xFFFFFFFF)


class Participant:
    """Protocol state of one participant; feed it with :meth:`connected` then :meth:`receive`."""

    __slots__ = (
        "participant_id",
        "domain",
        "room",
        "muc",
        "conference_target",
        "join_muc",
        "phase",
        "jid",
        "nick",
        "sm_enabled",
        "inbound",
        "ack_requested",
        "_ids",
        "_bind_id",
        "_conference_id",
        "_server_features",
    )

    def __init__(
        self,
        participant_id: str,
        *,
        domain: str,
        room: str,
        muc: str,
        conference_target: str | None,
        join_muc: bool = True,
    ):
        """``conference_target`` is the focus JID for an XMPP conference request, or None to skip it
        (no request, or one already sent over HTTP before connecting)."""
        self.participant_id = participant_id
        self.domain = domain
        self.room = room
        self.muc = muc
        self.conference_target = conference_target
        self.join_muc = join_muc
        self.phase = Phase.IDLE
        self.jid: str | None = None
        self.nick: str | None = None
        self.sm_enabled = False
        self.inbound = 0  # stanzas handled since SM was enabled: the `h` of XEP-0198
        self.ack_requested = False  # the server sent <r/>; :meth:`ack` answers it
        self._ids = 0
        self._bind_id = self._conference_id = ""
        self._server_features: ET.Element | None = None

    # ---- state the I/O layer asks about -------------------------------------------------
    @property
    def waiting(self) -> bool:
        """True while an answer from the server is awaited (the I/O layer runs a timeout)."""
        return self.phase in WAITING_PHASES

    @property
    def connecting(self) -> bool:
        """True until the session is established (what the cap on connection attempts counts)."""
        return self.phase in CONNECTING_PHASES

    @property
    def in_conference(self) -> bool:
        return self.phase is Phase.IN

    @property
    def done(self) -> bool:
        return self.phase in (Phase.CLOSED, Phase.FAILED)

    @property
    def room_jid(self) -> str:
        return f"{self.room}@{self.muc}"

    @property
    def occupant_jid(self) -> str:
        return f"{self.room_jid}/{self.nick}"

    # ---- inputs -----------------------------------------------------------------------
    def connected(self, message: str | None = None) -> Step:
        """The WebSocket is open: open the XMPP stream."""
        self.phase = Phase.OPENING
        return Step([self._open_frame()], [Event("connection_opened", message=message)])

    def connection_failed(self, error: str, http_status: int | None = None) -> Step:
        """The WebSocket could not be opened (refused, timeout, HTTP status on the upgrade)."""
        self.phase = Phase.FAILED
        kind = "http_error" if http_status is not None else "disconnected"
        return Step([], [Event(kind, stage="connected", error=error, http_status=http_status, level="error")])

    def connection_closed(self, reason: str) -> Step:
        """The WebSocket is gone. Clean if we were leaving; a drop or a failure otherwise."""
        if self.done:
            return Step()
        if self.phase is Phase.LEAVING:
            self.phase = Phase.CLOSED
            return Step([], [Event("disconnected", jid=self.jid, message="left")])
        return self._fail(Event("disconnected", error=f"connection lost: {reason}", level="error"))

    def timed_out(self, after_s: float) -> Step:
        """The awaited answer did not come in time. A conference request timing out is not fatal
        (JXS goes on and joins the MUC); anything else fails the participant."""
        if self.phase is Phase.REQUESTING_CONFERENCE:
            step = Step(
                [],
                [
                    Event(
                        "conference_timeout",
                        error=f"no answer from {self.conference_target} in {after_s:g} s",
                        level="warn",
                    )
                ],
            )
            return self._after_conference(step)
        if self.phase is Phase.LEAVING:
            self.phase = Phase.CLOSED
            return Step([], [Event("disconnected", jid=self.jid, message="left (server did not close)")])
        if not self.waiting:
            return Step()
        step = self._fail(
            Event("disconnected", error=f"timeout after {after_s:g} s ({self.phase.value})", level="error")
        )
        step.send.append(CLOSE_FRAME)
        return step

    def ping(self) -> list[str]:
        """An XMPP ping to the domain (JXS sends one every 10 s once in the room)."""
        if self.phase is not Phase.IN:
            return []
        return [
            f'<iq to={quoteattr(self.domain)} type="get" id="{self._next_id("ping")}" '
            f'xmlns="jabber:client"><ping xmlns="{PING_NS}"/></iq>'
        ]

    def ack(self) -> list[str]:
        """Answer the server's pending ``<r/>`` with ``<a h=N/>`` (N counts every stanza handled so far).

        Answering late does not spare Prosody work: it trims its unacked queue from the front,
        so a longer queue costs it more (measured: 20 % more CPU with 0.2 s late answers).
        """
        if not self.ack_requested:
            return []
        self.ack_requested = False
        return [f'<a xmlns="{SM_NS}" h="{self.inbound}"/>']

    def leave(self) -> list[str]:
        """Leave cleanly: unavailable presence to the room and to the server, then ``<close/>``."""
        if self.done or self.phase is Phase.LEAVING:
            return []
        frames = []
        if self.phase is Phase.IN and self.join_muc:
            frames.append(
                f'<presence to={quoteattr(self.occupant_jid)} type="unavailable" xmlns="jabber:client"/>'
            )
        if self.jid is not None:
            frames.append('<presence type="unavailable" xmlns="jabber:client"/>')
        frames.append(CLOSE_FRAME)
        self.phase = Phase.LEAVING
        return frames

    def receive(self, frame: str) -> Step:
        """One WebSocket text frame from the server."""
        if self.done:
            return Step()
        if frame.startswith("<presence") and "110" not in frame and "error" not in frame:
            # Occupants' presences: by far the most frequent frame in a busy room; only counted.
            self.inbound += 1
            return Step()
        try:
            element = ET.fromstring(frame)
        except ET.ParseError as error:
            step = self._fail(
                Event("stanza_error", error=f"unparsable frame from server: {error}", level="error")
            )
            step.send.append(CLOSE_FRAME)
            return step
        name = local_name(element.tag)
        if name in ("iq", "presence", "message"):
            self.inbound += 1
            return self._stanza(name, element)
        handler = self._NONZA_HANDLERS.get(name)
        if handler is None:
            return Step()
        return handler(self, element)

    # ---- nonzas (stream-level elements) -------------------------------------------------
    def _on_open(self, element: ET.Element) -> Step:
        return Step()  # the features that follow decide what comes next

    def _on_features(self, element: ET.Element) -> Step:
        if self.phase is Phase.OPENING:
            mechanisms = [(m.text or "").strip() for m in element.iterfind("{*}mechanisms/{*}mechanism")]
            if "ANONYMOUS" not in mechanisms:
                offered = ", ".join(mechanisms) or "none"
                step = self._fail(
                    Event(
                        "stanza_error",
                        error=f"server does not offer SASL ANONYMOUS (offers: {offered})",
                        level="error",
                    )
                )
                step.send.append(CLOSE_FRAME)
                return step
            self.phase = Phase.AUTHENTICATING
            return Step([f'<auth xmlns="{SASL_NS}" mechanism="ANONYMOUS"/>'])
        if self.phase is Phase.RESTARTING:
            self._server_features = element
            self.phase = Phase.BINDING
            self._bind_id = self._next_id("bind")
            return Step(
                [f'<iq type="set" id="{self._bind_id}" xmlns="jabber:client"><bind xmlns="{BIND_NS}"/></iq>']
            )
        return Step()

    def _on_success(self, element: ET.Element) -> Step:
        if self.phase is not Phase.AUTHENTICATING:
            return Step()
        self.phase = Phase.RESTARTING
        return Step([self._open_frame()], [Event("authenticated", message="SASL ANONYMOUS")])

    def _on_failure(self, element: ET.Element) -> Step:
        if self.phase is Phase.AUTHENTICATING:
            condition = next((local_name(child.tag) for child in element), "failure")
            step = self._fail(Event("stanza_error", error=f"SASL failure: {condition}", level="error"))
            step.send.append(CLOSE_FRAME)
            return step
        return Step()

    def _on_enabled(self, element: ET.Element) -> Step:
        if self.phase is not Phase.ENABLING_SM:
            return Step()
        self.sm_enabled = True
        self.inbound = 0
        message = f"stream management id={element.get('id')}"
        step = Step([], [Event("sm_enabled", jid=self.jid, message=message)])
        return self._online(step)

    def _on_sm_failed(self, element: ET.Element) -> Step:
        if self.phase is not Phase.ENABLING_SM:
            return Step()
        return self._online(
            Step([], [Event("stanza_error", jid=self.jid, level="warn", error="stream management refused")])
        )

    def _on_ack_request(self, element: ET.Element) -> Step:
        self.ack_requested = self.sm_enabled
        return Step()

    def _on_stream_error(self, element: ET.Element) -> Step:
        condition, text = "", ""
        for child in element:
            if local_name(child.tag) == "text":
                text = (child.text or "").strip()
            elif not condition:
                condition = local_name(child.tag)
        detail = f"{condition} - {text}" if text else condition or "stream error"
        if self.phase in (Phase.IN, Phase.LEAVING):
            return self._fail(Event("disconnected", error=f"stream error: {detail}", level="error"))
        return self._fail(Event("stanza_error", error=f"stream error: {detail}", level="error"))

    def _on_close(self, element: ET.Element) -> Step:
        if self.phase is Phase.LEAVING:
            self.phase = Phase.CLOSED
            return Step([], [Event("disconnected", jid=self.jid, message="left")])
        step = self._fail(Event("disconnected", error="server closed the stream", level="error"))
        step.send.append(CLOSE_FRAME)
        return step

    _NONZA_HANDLERS = {
        "open": _on_open,
        "features": _on_features,
        "success": _on_success,
        "failure": _on_failure,
        "enabled": _on_enabled,
        "failed": _on_sm_failed,
        "r": _on_ack_request,
        "error": _on_stream_error,
        "close": _on_close,
    }

    # ---- stanzas ----------------------------------------------------------------------
    def _stanza(self, name: str, element: ET.Element) -> Step:
        if name == "iq":
            return self._iq(element)
        if name == "presence":
            return self._presence(element)
        return Step()  # messages (room subject, chat) need no answer

    def _iq(self, element: ET.Element) -> Step:
        kind, stanza_id = element.get("type"), element.get("id", "")
        if kind in ("result", "error"):
            if stanza_id == self._bind_id and self.phase is Phase.BINDING:
                return self._bound(element)
            if stanza_id == self._conference_id and self.phase is Phase.REQUESTING_CONFERENCE:
                step = Step()
                if kind == "error":
                    step.events.append(
                        Event("conference_error", error=error_text(element), level="warn", jid=self.jid)
                    )
                return self._after_conference(step)
            return Step()  # ping results, session-accept acknowledgements
        if kind not in ("get", "set"):
            return Step()
        sender = element.get("from") or self.domain
        payload = next(iter(element), None)
        payload_name = local_name(payload.tag) if payload is not None else ""
        if payload_name == "ping" and namespace(payload.tag) == PING_NS:
            return Step([self._iq_result(sender, stanza_id)])
        if payload_name == "jingle" and namespace(payload.tag) == JINGLE_NS:
            frames = [self._iq_result(sender, stanza_id)]
            if payload.get("action") == "session-initiate":
                frames.append(self._session_accept(sender, payload.get("sid", "")))
            return Step(frames)
        return Step(
            [
                f'<iq to={quoteattr(sender)} type="error" id={quoteattr(stanza_id)} '
                f'xmlns="jabber:client"><error type="cancel"><service-unavailable '
                f'xmlns="{STANZAS_NS}"/></error></iq>'
            ]
        )

    def _bound(self, element: ET.Element) -> Step:
        if element.get("type") == "error":
            step = self._fail(Event("stanza_error", error=f"bind: {error_text(element)}", level="error"))
            step.send.append(CLOSE_FRAME)
            return step
        jid_element = element.find("{*}bind/{*}jid")
        self.jid = (jid_element.text or "").strip() if jid_element is not None else None
        if not self.jid:
            step = self._fail(Event("stanza_error", error="bind result without a JID", level="error"))
            step.send.append(CLOSE_FRAME)
            return step
        local = self.jid.partition("@")[0]
        self.nick = local[:8]  # JXS: the room nick is the first 8 characters of the local part
        step = Step([], [Event("resource_bound", jid=self.jid, message=f"Resource bound: {self.jid}")])
        features = self._server_features
        self._server_features = None
        if features is not None and features.find(f"{{{SM_NS}}}sm") is not None:
            self.phase = Phase.ENABLING_SM
            step.send.append(f'<enable xmlns="{SM_NS}" resume="true"/>')
            return step
        return self._online(step)

    def _online(self, step: Step) -> Step:
        """Session established: ask focus for the conference, or go straight to the room."""
        if self.conference_target:
            self.phase = Phase.REQUESTING_CONFERENCE
            self._conference_id = self._next_id("conf")
            machine_uid = self.jid.partition("@")[0] if self.jid else self.participant_id
            step.send.append(
                f'<iq to={quoteattr(self.conference_target)} type="set" id="{self._conference_id}" '
                f'xmlns="jabber:client"><conference xmlns="{FOCUS_NS}" machine-uid={quoteattr(machine_uid)} '
                f"room={quoteattr(self.room_jid)}/></iq>"
            )
            step.events.append(
                Event(
                    "conference_request",
                    jid=self.jid,
                    message=f"conference request to {self.conference_target}",
                )
            )
            return step
        return self._after_conference(step)

    def _after_conference(self, step: Step) -> Step:
        if not self.join_muc:
            self.phase = Phase.IN
            return step
        self.phase = Phase.JOINING
        step.send.append(self._join_presence())
        step.events.append(Event("muc_join_sent", jid=self.jid, message=f"presence to {self.occupant_jid}"))
        return step

    def _presence(self, element: ET.Element) -> Step:
        kind = element.get("type")
        sender = element.get("from", "")
        from_room = sender.partition("/")[0] == self.room_jid
        if kind == "error":
            if self.phase is Phase.JOINING and from_room:
                step = self._fail(Event("stanza_error", error=error_text(element), level="error"))
                step.send.append(CLOSE_FRAME)
                return step
            return Step(
                [],
                [
                    Event(
                        "stanza_error",
                        jid=self.jid,
                        error=error_text(element),
                        level="warn",
                        message=f"presence error from {sender}",
                    )
                ],
            )
        if kind == "unavailable" or self.phase is not Phase.JOINING:
            return Step()
        if any(status.get("code") == "110" for status in element.iterfind(f"{{{MUC_USER_NS}}}x/{{*}}status")):
            self.phase = Phase.IN
            message = f"joined {self.room_jid} as {self.nick}"
            return Step([], [Event("muc_joined", jid=self.jid, message=message)])
        return Step()

    # ---- frames we build --------------------------------------------------------------
    def _open_frame(self) -> str:
        return f'<open xmlns="{FRAMING_NS}" to={quoteattr(self.domain)} version="1.0"/>'

    def _iq_result(self, to: str, stanza_id: str) -> str:
        return f'<iq to={quoteattr(to)} type="result" id={quoteattr(stanza_id)} xmlns="jabber:client"/>'

    def _join_presence(self) -> str:
        """The MUC join with the extensions a Jitsi Meet client (and JXS) puts in its presence."""
        return (
            f'<presence to={quoteattr(self.occupant_jid)} xmlns="jabber:client">'
            '<x xmlns="http://jabber.org/protocol/muc"/>'
            f"<stats-id>participant-{self.participant_id}</stats-id>"
            '<region id="us-east-1" xmlns="http://jitsi.org/jitsi-meet"/>'
            '<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://jitsi.org/jitsi-meet" '
            'ver="145G7HAtbAUYSkQzy4VtpQNqU3o="/>'
            "<jitsi_participant_region>us-east-1</jitsi_participant_region>"
            "<avatar-id>e8b7ee7bbac3a53f14a711b538526bf3</avatar-id>"
            f'<nick xmlns="http://jabber.org/protocol/nick">{self.participant_id}</nick>'
            '<audiomuted xmlns="http://jitsi.org/jitmeet/audio">false</audiomuted>'
            '<videoType xmlns="http://jitsi.org/jitmeet/video">camera</videoType>'
            '<videomuted xmlns="http://jitsi.org/jitmeet/video">false</videomuted>'
            "</presence>"
        )

    def _session_accept(self, initiator: str, sid: str) -> str:
        """Accept a Jingle session from Jicofo: one bundled audio (Opus) and video (VP8) stream with
        fresh SSRCs, as a browser would, so the focus sees a participant that sends media."""
        audio_ssrc, video_ssrc = random_ssrc(), random_ssrc()
        cname, who = f"cname-{self.participant_id}", self.participant_id

        def description(media: str, ssrc: int, payload: str) -> str:
            return (
                f'<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="{media}" ssrc="{ssrc}">{payload}'
                f'<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{ssrc}">'
                f'<parameter name="cname" value="{cname}"/>'
                f'<parameter name="msid" value="{media}-{who} {media}-track-{who}"/>'
                "</source><rtcp-mux/></description>"
            )

        transport = (
            '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="swrm" '
            'pwd="swarmswarmswarmswarmswa">'
            '<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">'
            + ":".join(["00"] * 32)
            + "</fingerprint></transport>"
        )
        audio = description(
            "audio", audio_ssrc, '<payload-type id="111" name="opus" clockrate="48000" channels="2"/>'
        )
        video = description("video", video_ssrc, '<payload-type id="100" name="VP8" clockrate="90000"/>')
        return (
            f'<iq to={quoteattr(initiator)} type="set" id="{self._next_id("accept")}" xmlns="jabber:client">'
            f'<jingle xmlns="{JINGLE_NS}" action="session-accept" initiator={quoteattr(initiator)} '
            f"responder={quoteattr(self.jid or '')} sid={quoteattr(sid)}>"
            '<group xmlns="urn:xmpp:jingle:apps:grouping:0" semantics="BUNDLE">'
            '<content name="audio"/><content name="video"/></group>'
            f'<content creator="responder" name="audio" senders="both">{audio}{transport}</content>'
            f'<content creator="responder" name="video" senders="both">{video}{transport}</content>'
            "</jingle></iq>"
        )

    # ---- helpers ----------------------------------------------------------------------
    def _fail(self, event: Event) -> Step:
        if self.phase is not Phase.IN and self.phase is not Phase.LEAVING:
            event.stage = FAILING_STAGE.get(self.phase, "connected")
        event.jid = event.jid or self.jid
        self.phase = Phase.FAILED
        return Step([], [event])

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"
