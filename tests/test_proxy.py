import asyncio
import re

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from prosody_analyze.errors import UserError
from prosody_analyze.proxy import NginxProxy

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


async def _open_stream(url: str, domain: str):
    """Upgrade through the proxy and get Prosody's <open/> back; returns the socket or the HTTP status."""
    try:
        ws = await websockets.connect(url, subprotocols=["xmpp"], open_timeout=5)
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.send(f'<open xmlns="{FRAMING}" to="{domain}" version="1.0"/>')
    async with asyncio.timeout(5):
        answer = await ws.recv()
    assert "<open" in answer and FRAMING in answer
    return ws


def test_upgrades_pass_below_the_threshold_and_some_fail_with_500_above(local_prosody, tmp_path):
    threshold = 6

    async def scenario(proxy):
        below = [await _open_stream(proxy.websocket_url, local_prosody.domain) for _ in range(threshold)]
        above = [await _open_stream(proxy.websocket_url, local_prosody.domain) for _ in range(20)]
        for result in below + above:
            if not isinstance(result, int):
                await result.close()
        return below, above

    with NginxProxy(tmp_path, local_prosody.http_port, fail_share=0.5, threshold=threshold) as proxy:
        assert proxy.websocket_url.startswith("ws://127.0.0.1:")
        below, above = asyncio.run(scenario(proxy))

    assert not any(isinstance(result, int) for result in below), "no upgrade may fail below the threshold"
    statuses = [result for result in above if isinstance(result, int)]
    assert statuses and set(statuses) == {500}
    assert len(statuses) < len(above), "only a share fails: the others reach Prosody"
    refused_line = r'"GET /xmpp-websocket HTTP/1.1" 500 active=\d+ rejected=1'
    rejected = re.findall(refused_line, proxy.access_log.read_text())
    assert len(rejected) == len(statuses)


def test_a_share_of_zero_never_fails(local_prosody, tmp_path):
    async def scenario(proxy):
        results = [await _open_stream(proxy.websocket_url, local_prosody.domain) for _ in range(8)]
        for result in results:
            if not isinstance(result, int):
                await result.close()
        return results

    with NginxProxy(tmp_path, local_prosody.http_port, fail_share=0.0, threshold=2) as proxy:
        results = asyncio.run(scenario(proxy))
    assert not any(isinstance(result, int) for result in results)


def test_bad_settings_and_missing_nginx_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="fail share"):
        NginxProxy(tmp_path, 5280, fail_share=1.5)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda *args, **kwargs: None)
    with pytest.raises(UserError, match="apt-get install nginx"):
        NginxProxy(tmp_path, 5280).start()
