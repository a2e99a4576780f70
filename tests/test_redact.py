"""Pseudonyms a report can leave the company with: names gone, same name -> same pseudonym, the rest kept."""

from prosody_analyze.redact import Redactor


def test_same_name_same_pseudonym_across_forms() -> None:
    redactor = Redactor(domains=["meet.acme.test"], rooms=["board-meeting"])
    bare = redactor.text("Authenticated as alice@meet.acme.test")
    full = redactor.text("Resource bound: alice@meet.acme.test/phone")
    assert bare == "Authenticated as user-1@domain-1.example"
    assert full == "Resource bound: user-1@domain-1.example/resource-1"
    assert redactor.text("bob@meet.acme.test") == "user-2@domain-1.example"
    room = redactor.text("<presence to='board-meeting@conference.meet.acme.test/alice'>")
    assert room == "<presence to='room-1@conference.domain-1.example/resource-2'>"
    assert redactor.text("room board-meeting on meet.acme.test") == "room room-1 on domain-1.example"
    assert (
        redactor.text("wss://meet.acme.test:443/xmpp-websocket")
        == "wss://domain-1.example:443/xmpp-websocket"
    )


def test_addresses_and_unknown_hosts() -> None:
    redactor = Redactor()
    text = redactor.text("from 10.20.30.40:5222 and 2001:db8::7 and ::1, via meet.jit.si, again 10.20.30.40")
    assert text == "from ip-1:5222 and ip-2 and ip-3, via domain-1.example, again ip-1"
    # The study's own hand redaction (`[meet.example.org]`) is a domain like any other.
    assert redactor.text("x@[meet.example.org]/r") == "user-1@domain-2.example/resource-1"


def test_log_structure_is_kept() -> None:
    redactor = Redactor(domains=["localhost"])
    line = "Nov 28 21:03:03 c2s55d2c2e4a8e0 http.server prosody.log v0.12.3 took 1.5 s events.jsonl"
    assert redactor.text(line) == line
    assert redactor.text("conference.localhost:muc") == "conference.domain-1.example:muc"


def test_disabled_passes_text_through_and_walks_json() -> None:
    assert Redactor(enabled=False).text("alice@meet.acme.test") == "alice@meet.acme.test"
    walked = Redactor().value({"target": "wss://meet.acme.test/ws", "hosts": ["10.0.0.1"], "n": 3})
    assert walked == {"target": "wss://domain-1.example/ws", "hosts": ["ip-1"], "n": 3}
