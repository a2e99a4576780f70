import asyncio
import os
import re
import socket
import subprocess
import uuid
import xml.etree.ElementTree as ET

import pytest
import websockets

from prosody_analyze.errors import UserError
from prosody_analyze.local_prosody import LocalProsody, free_port, wait_for_http

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
MUC_USER = "{http://jabber.org/protocol/muc#user}"


async def _receive(ws, tag: str, timeout: float = 5.0) -> ET.Element:
    """Next stanza whose tag ends with ``tag``, skipping others (e.g. smacks or presence of others)."""
    async with asyncio.timeout(timeout):
        while True:
            element = ET.fromstring(await ws.recv())
            if element.tag.endswith(tag):
                return element


async def join_room(websocket_url: str, domain: str, room_jid: str, nick: str):
    """Anonymous login over XMPP-over-WebSocket (RFC 7395), bind, join a MUC; returns (ws, own presence)."""
    ws = await websockets.connect(websocket_url, subprotocols=["xmpp"], open_timeout=5)
    open_frame = f'<open xmlns="{FRAMING}" to="{domain}" version="1.0"/>'
    await ws.send(open_frame)
    await _receive(ws, "features")
    await ws.send('<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="ANONYMOUS"/>')
    assert (await _receive(ws, "success")) is not None
    await ws.send(open_frame)
    await _receive(ws, "features")
    bind = '<bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/>'
    await ws.send(f'<iq xmlns="jabber:client" type="set" id="bind1">{bind}</iq>')
    await _receive(ws, "iq")
    await ws.send(
        f'<presence xmlns="jabber:client" to="{room_jid}/{nick}"><x xmlns="http://jabber.org/protocol/muc"/></presence>'
    )
    async with asyncio.timeout(5):
        while True:
            presence = await _receive(ws, "presence")
            codes = {status.get("code") for status in presence.iter(f"{MUC_USER}status")}
            if presence.get("type") == "error" or "110" in codes:
                return ws, presence


def test_two_anonymous_participants_join_the_same_room(local_prosody):
    """muc_room_locking = false: the second participant gets in, not only the room's creator."""
    room = f"room-{uuid.uuid4().hex[:8]}@{local_prosody.muc}"

    async def scenario():
        url, domain = local_prosody.websocket_url, local_prosody.domain
        first, first_presence = await join_room(url, domain, room, "a")
        second, second_presence = await join_room(url, domain, room, "b")
        await first.close()
        await second.close()
        return first_presence, second_presence

    for presence in asyncio.run(scenario()):
        assert presence.get("type") != "error", ET.tostring(presence)


def test_debug_log_is_the_file_sink_format_ingest_reads(local_prosody):
    asyncio.run(_connect_and_close(local_prosody.websocket_url))
    text = local_prosody.log_path.read_text()
    file_sink_line = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d c2s[0-9a-f]+\tinfo\tClient connected"
    assert re.search(file_sink_line, text, re.M)
    assert "\tdebug\t" in text


async def _connect_and_close(url):
    ws = await websockets.connect(url, subprotocols=["xmpp"], open_timeout=5)
    await ws.close()


def test_metrics_endpoint_serves_openmetrics_on_loopback(local_prosody):
    import urllib.request

    with urllib.request.urlopen(local_prosody.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert "prosody_mod_c2s__connections" in text or "prosody_mod_muc__live_room" in text


def test_runs_unprivileged_with_a_raised_file_limit_and_loopback_only(local_prosody):
    status = open(f"/proc/{local_prosody.pid}/status").read()
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
    if os.geteuid() == 0:
        assert uid != 0, "Prosody must not run as root"
    limits = open(f"/proc/{local_prosody.pid}/limits").read()
    soft, hard = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits).groups()
    assert soft == hard
    assert local_prosody.websocket_url.startswith("ws://127.0.0.1:")
    config = local_prosody.config_path.read_text()
    assert "0.0.0.0" not in config and "muc_room_locking = false" in config


def test_start_is_fast_and_stop_frees_the_port_even_after_an_error(tmp_path):
    prosody = LocalProsody(tmp_path)
    with pytest.raises(RuntimeError, match="boom"), prosody:
        assert prosody.start_seconds < 5
        pid, port = prosody.pid, prosody.http_port
        raise RuntimeError("boom")
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_missing_prosody_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="apt-get install prosody"):
        LocalProsody(tmp_path / "work").start()


def test_conference_requests_are_answered_ready_as_jicofo_would(tmp_path):
    """A Jitsi client asks focus before joining; without an answer every participant logs an error."""

    async def scenario():
        ws = await websockets.connect(local_prosody.websocket_url, subprotocols=["xmpp"], open_timeout=5)
        open_frame = f'<open xmlns="{FRAMING}" to="{local_prosody.domain}" version="1.0"/>'
        await ws.send(open_frame)
        await _receive(ws, "features")
        await ws.send('<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="ANONYMOUS"/>')
        await _receive(ws, "success")
        await ws.send(open_frame)
        await _receive(ws, "features")
        bind = '<bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/>'
        await ws.send(f'<iq xmlns="jabber:client" type="set" id="bind1">{bind}</iq>')
        await _receive(ws, "iq")
        room = f"r@{local_prosody.muc}"
        await ws.send(
            f'<iq xmlns="jabber:client" type="set" id="conf1" to="{local_prosody.focus}">'
            f'<conference xmlns="http://jitsi.org/protocol/focus" room="{room}"/></iq>'
        )
        answer = await _receive(ws, "iq")
        await ws.close()
        return answer

    with LocalProsody(tmp_path, answer_conference_requests=True) as local_prosody:
        answer = asyncio.run(scenario())
    assert answer.get("type") == "result" and answer.get("id") == "conf1"
    conference = answer.find("{http://jitsi.org/protocol/focus}conference")
    assert conference is not None and conference.get("ready") == "true"


def test_generational_gc_is_configured_and_the_server_still_serves_rooms(tmp_path):
    """The benchmark's --prosody-gc reaches Prosody's config, and Prosody accepts it."""
    with LocalProsody(tmp_path, gc_mode="generational") as prosody:
        assert re.search(r'^gc = \{ mode = "generational" \}$', prosody.config_path.read_text(), re.M)

        async def scenario():
            ws, presence = await join_room(prosody.websocket_url, prosody.domain, f"gc@{prosody.muc}", "n")
            await ws.close()
            return presence

        assert asyncio.run(scenario()).get("type") != "error"


def test_unknown_gc_mode_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="generational or incremental"):
        LocalProsody(tmp_path, gc_mode="fast")


def test_a_service_that_dies_or_stays_silent_at_start_is_one_clear_error():
    """Prosody and nginx starts share this wait: the user gets one line naming the service and why."""
    probe = f"http://127.0.0.1:{free_port()}/"
    dead = subprocess.Popen(["false"])
    dead.wait()
    with pytest.raises(UserError, match=r"^Prosody exited at start-up \(status 1\): bad config$"):
        wait_for_http(dead, probe, 5.0, "Prosody", lambda: "bad config")
    silent = subprocess.Popen(["sleep", "5"])
    try:
        with pytest.raises(
            UserError, match=r"^nginx did not answer on http://127\.0\.0\.1:\d+/ within 0\.3 s: x$"
        ):
            wait_for_http(silent, probe, 0.3, "nginx", lambda: "x")
    finally:
        silent.kill()
        silent.wait()
