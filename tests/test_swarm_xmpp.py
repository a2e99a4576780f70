"""The participant state machine, fed with frames real Prosody servers sent (no network)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from prosody_analyze.schema import EVENT_KINDS
from prosody_analyze.swarm.xmpp import Participant, Phase

# Recorded from Debian's Prosody 0.12.3 on 127.0.0.1 (websocket, smacks, MUC without room locking).
OPEN = (
    "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0' "
    "id='46ae3ffd-1bc7-42bc-9540-3557195be87e' from='localhost' xml:lang='en'/>"
)
FEATURES_SASL = (
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism>"
    "</mechanisms></stream:features>"
)
SUCCESS = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
FEATURES_BIND = (
    "<stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
    "<sm xmlns='urn:xmpp:sm:2'><optional/></sm><sm xmlns='urn:xmpp:sm:3'><optional/></sm>"
    "<sub xmlns='urn:xmpp:features:pre-approval'/><c node='http://prosody.im' "
    "xmlns='http://jabber.org/protocol/caps' hash='sha-1' ver='gMN7QQyO5vYeYYWZ0h1FdG9N7mM='/>"
    "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind>"
    "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features>"
)
JID = "hm-qs0wg1qjrwyldoisv-jzx@localhost/RIIhXqERYsJX"
BIND_RESULT = (
    "<iq type='result' xmlns='jabber:client' id='{id}'>"
    f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{JID}</jid></bind></iq>"
)
ENABLED = "<enabled resume='true' xmlns='urn:xmpp:sm:3' max='600' id='CPwfUplK-cST'/>"
FOCUS_ERROR = (
    f"<iq type='error' to='{JID}' id='{{id}}' from='focus.localhost' xmlns='jabber:client'>"
    "<error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
    "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
    "Communication with remote domains is not enabled</text>"
    "</error></iq>"
)
ACK_REQUEST = "<r xmlns='urn:xmpp:sm:3'/>"
OTHER_OCCUPANT = (
    f"<presence to='{JID}' xmlns='jabber:client' from='rec-0@conference.localhost/alice' xml:lang='en'>"
    "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='CxLzfqkPr55jZc4CKYlXJyIU4O+g8LIj0BJswSDMrbs='/>"
    "<x xmlns='http://jabber.org/protocol/muc#user'><item role='moderator' affiliation='owner'/></x>"
    "</presence>"
)
SELF_PRESENCE = (
    f"<presence to='{JID}' xmlns='jabber:client' from='rec-0@conference.localhost/hm-qs0wg' xml:lang='en'>"
    "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='XdrKL8CV4IOJ0Saur4OefJMSidY9liRJegNYUbQyNbE='/>"
    "<x xmlns='http://jabber.org/protocol/muc#user'>"
    f"<item jid='{JID}' role='participant' affiliation='none'/>"
    "<status code='110'/></x></presence>"
)
SUBJECT = (
    f"<message to='{JID}' type='groupchat' from='rec-0@conference.localhost' "
    "xmlns='jabber:client'><subject/></message>"
)
SELF_UNAVAILABLE = (
    f"<presence type='unavailable' to='{JID}' xmlns='jabber:client' "
    "from='rec-0@conference.localhost/hm-qs0wg'>"
    f"<x xmlns='http://jabber.org/protocol/muc#user'><item jid='{JID}' role='none' affiliation='none'/>"
    "<status code='110'/></x></presence>"
)
SERVER_CLOSE = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
HOST_UNKNOWN = (
    "<stream:error xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
    "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>This server does not serve wrong.example</text>"
    "</stream:error>"
)


def new_participant(**overrides) -> Participant:
    options = dict(
        domain="localhost",
        room="rec-0",
        muc="conference.localhost",
        conference_target="focus.localhost",
        join_muc=True,
    )
    options.update(overrides)
    return Participant("0-1", **options)


def sent_id(frame: str) -> str:
    return re.search(r'id="([^"]+)"', frame).group(1)


def walk_to_bind(participant: Participant) -> list[str]:
    """Drive the machine through open, SASL and restart; returns every frame it sent."""
    sent = participant.connected().send
    for frame in (OPEN, FEATURES_SASL, SUCCESS, OPEN, FEATURES_BIND):
        sent += participant.receive(frame).send
    return sent


def join(participant: Participant) -> list:
    """Full join against the recorded frames; returns every event."""
    events = participant.connected().events
    sent = []
    for frame in (OPEN, FEATURES_SASL, SUCCESS, OPEN, FEATURES_BIND):
        step = participant.receive(frame)
        sent += step.send
        events += step.events
    step = participant.receive(BIND_RESULT.format(id=sent_id(sent[-1])))
    events += step.events
    step = participant.receive(ENABLED)
    events += step.events
    conference_iq = step.send[-1]
    step = participant.receive(FOCUS_ERROR.format(id=sent_id(conference_iq)))
    events += step.events
    for frame in (ACK_REQUEST, OTHER_OCCUPANT, SELF_PRESENCE, SUBJECT):
        events += participant.receive(frame).events
    return events


def test_full_join_goes_through_every_stage_in_order_like_jxs():
    participant = new_participant()
    sent = walk_to_bind(participant)
    assert sent[0] == '<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>'
    assert 'mechanism="ANONYMOUS"' in sent[1]
    assert sent[2] == sent[0]  # stream restart after SASL success
    assert "urn:ietf:params:xml:ns:xmpp-bind" in sent[3]

    participant = new_participant()
    events = join(participant)
    kinds = [event.kind for event in events]
    assert kinds == [
        "connection_opened",
        "authenticated",
        "resource_bound",
        "sm_enabled",
        "conference_request",
        "conference_error",
        "muc_join_sent",
        "muc_joined",
    ]
    assert all(kind in EVENT_KINDS for kind in kinds)
    assert participant.in_conference and participant.jid == JID
    conference_error = events[kinds.index("conference_error")]
    assert conference_error.error == "not-allowed - Communication with remote domains is not enabled"
    assert conference_error.stage is None  # JXS goes on to the MUC: not a failure


def test_frames_sent_are_well_formed_and_carry_the_jitsi_extensions():
    participant = new_participant()
    sent = walk_to_bind(participant)
    step = participant.receive(BIND_RESULT.format(id=sent_id(sent[-1])))
    assert step.send == ['<enable xmlns="urn:xmpp:sm:3" resume="true"/>']
    conference = participant.receive(ENABLED).send[0]
    element = ET.fromstring(conference)
    request = element.find("{http://jitsi.org/protocol/focus}conference")
    assert element.get("to") == "focus.localhost"
    assert request.get("room") == "rec-0@conference.localhost"
    assert request.get("machine-uid") == "hm-qs0wg1qjrwyldoisv-jzx"
    join_presence = participant.receive(FOCUS_ERROR.format(id=sent_id(conference))).send[0]
    element = ET.fromstring(join_presence)
    assert element.get("to") == "rec-0@conference.localhost/hm-qs0wg"  # nick: first 8 chars, as JXS
    children = {child.tag.rpartition("}")[2] for child in element}
    assert {
        "x",
        "stats-id",
        "region",
        "c",
        "jitsi_participant_region",
        "avatar-id",
        "nick",
        "audiomuted",
        "videoType",
        "videomuted",
    } <= children


def test_stream_management_ack_counts_every_handled_stanza():
    participant = new_participant()
    join(participant)
    # after <enabled>: focus error iq, other occupant presence, self-presence, subject = 4 stanzas
    participant.receive(ACK_REQUEST)
    assert participant.ack() == ['<a xmlns="urn:xmpp:sm:3" h="4"/>']
    assert participant.ack() == []  # one answer per request
    participant.receive(ACK_REQUEST)
    participant.receive(OTHER_OCCUPANT)
    participant.receive(ACK_REQUEST)  # a burst of requests is answered once, with the latest count
    assert participant.ack() == ['<a xmlns="urn:xmpp:sm:3" h="5"/>']


def test_without_stream_management_an_ack_request_is_not_answered():
    participant = new_participant(conference_target=None)
    participant.connected()
    sent = []
    without_sm = FEATURES_BIND.replace("urn:xmpp:sm:3", "urn:xmpp:sm:9")
    for frame in (OPEN, FEATURES_SASL, SUCCESS, OPEN, without_sm):
        sent += participant.receive(frame).send
    step = participant.receive(BIND_RESULT.format(id=sent_id(sent[-1])))
    assert step.send[0].startswith("<presence")  # no <enable/>, no conference request: straight to the MUC
    participant.receive(ACK_REQUEST)
    assert participant.ack() == []


def test_unavailable_self_presence_is_not_a_join():
    participant = new_participant()
    events = join(participant)
    assert [e.kind for e in events].count("muc_joined") == 1
    assert participant.receive(SELF_UNAVAILABLE).events == []


def test_ping_and_clean_leave():
    participant = new_participant()
    join(participant)
    ping = ET.fromstring(participant.ping()[0])
    assert ping.get("to") == "localhost" and ping.get("type") == "get"
    assert ping.find("{urn:xmpp:ping}ping") is not None
    frames = participant.leave()
    assert 'type="unavailable"' in frames[0] and "rec-0@conference.localhost/hm-qs0wg" in frames[0]
    assert frames[1] == '<presence type="unavailable" xmlns="jabber:client"/>'
    assert frames[2] == '<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>'
    participant.receive(SELF_UNAVAILABLE)
    step = participant.receive(SERVER_CLOSE)
    assert [(e.kind, e.error, e.level) for e in step.events] == [("disconnected", None, "info")]
    assert participant.phase is Phase.CLOSED
    assert participant.leave() == [] and participant.ping() == []


def test_server_ping_and_unknown_iq_are_answered():
    participant = new_participant()
    join(participant)
    server_ping = (
        "<iq type='get' id='p9' from='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert participant.receive(server_ping).send == [
        '<iq to="localhost" type="result" id="p9" xmlns="jabber:client"/>'
    ]
    version = (
        "<iq type='get' id='v1' from='localhost' xmlns='jabber:client'>"
        "<query xmlns='jabber:iq:version'/></iq>"
    )
    answer = ET.fromstring(participant.receive(version).send[0])
    assert answer.get("type") == "error" and answer.get("id") == "v1"


def test_jingle_session_initiate_is_acknowledged_then_accepted():
    participant = new_participant()
    join(participant)
    focus = "rec-0@conference.localhost/focus"
    initiate = (
        f"<iq type='set' id='j1' from='{focus}' to='{JID}' xmlns='jabber:client'>"
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='abc123' "
        f"initiator='{focus}'><content name='audio' creator='initiator'/></jingle></iq>"
    )
    ack, accept = participant.receive(initiate).send
    assert ET.fromstring(ack).get("type") == "result"
    element = ET.fromstring(accept)
    jingle = element.find("{urn:xmpp:jingle:1}jingle")
    assert element.get("to") == focus and element.get("type") == "set"
    assert jingle.get("action") == "session-accept" and jingle.get("sid") == "abc123"
    assert jingle.get("responder") == JID
    assert [c.get("name") for c in jingle.findall("{urn:xmpp:jingle:1}content")] == ["audio", "video"]


def test_wrong_domain_fails_at_the_stream_with_the_servers_reason():
    participant = new_participant(domain="wrong.example")
    participant.connected()
    participant.receive(OPEN)
    step = participant.receive(HOST_UNKNOWN)
    (event,) = step.events
    assert event.kind == "stanza_error" and event.stage == "authenticated"
    assert event.error == "stream error: host-unknown - This server does not serve wrong.example"
    assert participant.phase is Phase.FAILED


def test_refused_muc_join_from_the_study_fails_at_joined(fixtures):
    """The study's own client log: the MUC join presence came back as an error."""
    lines = (fixtures / "jitsi-k8s" / "log_client.txt").read_text().splitlines()
    received = [lines[i + 1] for i, line in enumerate(lines) if line == "IN"]
    refusal = next(frame for frame in received if frame.startswith("<presence") and 'type="error"' in frame)
    room, _, nick = ET.fromstring(refusal).get("from").partition("/")
    participant = Participant(
        "0-1",
        domain="[meet.example.org]",
        room=room.partition("@")[0],
        muc=room.partition("@")[2],
        conference_target=None,
    )
    participant.connected()
    sent = []
    for frame in received[:3]:  # features (SASL), success, features (bind) as that Prosody sent them
        if "<bind" in frame and "<stream:features" in frame:
            participant.receive(OPEN)
        sent += participant.receive(frame).send
    bind_result = next(f for f in received if "<bind" in f and 'type="result"' in f)
    bind_result = re.sub(r'id="[^"]+"', f'id="{sent_id(sent[-1])}"', bind_result, count=1)
    participant.receive(bind_result)
    assert participant.nick == nick
    participant.receive(next(f for f in received if f.startswith("<enabled")))
    assert participant.phase is Phase.JOINING
    (event,) = participant.receive(refusal).events
    assert event.kind == "stanza_error" and event.stage == "joined" and event.level == "error"
    assert event.error == "not-allowed - Communication with remote domains is not enabled"


def test_failures_name_the_stage_that_failed():
    participant = new_participant()
    (event,) = participant.connection_failed("server rejected WebSocket connection: HTTP 500", 500).events
    assert (event.kind, event.stage, event.http_status) == ("http_error", "connected", 500)

    participant = new_participant()
    walk_to_bind(participant)
    step = participant.timed_out(5)
    assert step.events[0].stage == "bound" and "timeout after 5 s" in step.events[0].error
    assert step.send[-1].startswith("<close")

    participant = new_participant()
    participant.connected()
    participant.receive(OPEN)
    failure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
    participant.receive(FEATURES_SASL)
    (event,) = participant.receive(failure).events
    assert event.stage == "authenticated" and event.error == "SASL failure: not-authorized"

    participant = new_participant()
    participant.connected()
    participant.receive(OPEN)
    plain_only = FEATURES_SASL.replace("ANONYMOUS", "PLAIN")
    (event,) = participant.receive(plain_only).events
    assert "does not offer SASL ANONYMOUS (offers: PLAIN)" in event.error


def test_conference_timeout_is_recorded_and_the_join_goes_on():
    participant = new_participant()
    sent = walk_to_bind(participant)
    participant.receive(BIND_RESULT.format(id=sent_id(sent[-1])))
    assert participant.connecting
    participant.receive(ENABLED)
    assert not participant.connecting  # session up: a silent focus does not hold a connection slot
    step = participant.timed_out(30)
    assert [e.kind for e in step.events] == ["conference_timeout", "muc_join_sent"]
    assert step.send[0].startswith("<presence")
    assert participant.receive(SELF_PRESENCE).events[0].kind == "muc_joined"


def test_losing_the_connection_after_joining_is_a_drop_not_a_stage_failure():
    participant = new_participant()
    join(participant)
    (event,) = participant.connection_closed("no close frame received").events
    assert event.kind == "disconnected" and event.level == "error" and event.stage is None
    assert participant.connection_closed("again").events == []  # reported once


def test_garbage_from_the_server_fails_the_participant_instead_of_raising():
    participant = new_participant()
    participant.connected()
    step = participant.receive("<open this is not xml")
    assert step.events[0].kind == "stanza_error" and step.events[0].stage == "authenticated"
    assert participant.done
