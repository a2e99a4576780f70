"""The swarm end to end against a real Prosody on 127.0.0.1, and its faults (a few seconds each)."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from prosody_analyze.capture import EVENTS_JSONL, MANIFEST_FILE
from prosody_analyze.errors import UserError
from prosody_analyze.ingest import ingest
from prosody_analyze.local_prosody import LocalProsody, free_port
from prosody_analyze.schema import EVENT_KINDS
from prosody_analyze.swarm import SwarmConfig, run_swarm

pytestmark = pytest.mark.skipif(not Path("/usr/bin/prosody").exists(), reason="needs Debian's prosody")


def events_of(capture: Path) -> list[dict]:
    return [json.loads(line) for line in (capture / EVENTS_JSONL).read_text().splitlines()]


def small(prosody, **options) -> SwarmConfig:
    values = dict(
        domain="localhost",
        service=prosody.websocket_url,
        rooms=2,
        participants=5,
        duration=0.3,
        stage_timeout=5,
    )
    values.update(options)
    return SwarmConfig(**values)


def test_two_rooms_of_five_join_leave_and_the_capture_ingests(local_prosody, tmp_path):
    capture = tmp_path / "capture"
    summary = run_swarm(small(local_prosody, room_prefix="ci"), capture, progress=False)
    assert (summary.joined, summary.failed, summary.dropped, summary.left) == (10, 0, 0, 10)
    assert summary.ok and summary.exit_code == 0 and summary.all_joined_s is not None
    assert all(summary.stage_seconds[stage]["count"] == 10 for stage in ("connect", "auth", "bind", "join"))

    events = events_of(capture)
    assert all(event["kind"] in EVENT_KINDS and event["capture"] == 1 for event in events)
    per_participant: dict[str, list[str]] = {}
    for event in events:
        if "participant" in event:
            per_participant.setdefault(event["participant"], []).append(event["kind"])
    assert sorted(per_participant) == [f"{room}-{i}" for room in (0, 1) for i in range(5)]
    for kinds in per_participant.values():
        # no Jicofo here: Prosody answers the conference request with an error, and the join goes on
        assert kinds == [
            "connecting",
            "connection_opened",
            "authenticated",
            "resource_bound",
            "sm_enabled",
            "conference_request",
            "conference_error",
            "muc_join_sent",
            "muc_joined",
            "disconnected",
        ]
    joined = [e for e in events if e["kind"] == "muc_joined"]
    assert {e["room"] for e in joined} == {"ci-0", "ci-1"}
    assert all(re.fullmatch(r"[^@/]+@localhost/[^/]+", e["jid"]) for e in joined)
    assert sum(e["kind"] == "all_joined" for e in events) == 1

    manifest = json.loads((capture / MANIFEST_FILE).read_text())
    assert manifest["end"] and manifest["summary"]["joined"] == 10
    assert manifest["config"]["rooms"] == 2 and manifest["target"] == local_prosody.websocket_url

    ingest([capture], tmp_path / "analysis")
    sessions = pl.read_parquet(tmp_path / "analysis" / "sessions.parquet")
    sessions = sessions.filter(pl.col("origin") == "client")
    assert sessions.height == 10
    assert sessions["outcome"].to_list() == ["joined"] * 10
    # Every stage is timed, the WebSocket open included (the capture records the attempt).
    for stage in ("connect_s", "auth_s", "bind_s", "join_s"):
        assert (sessions[stage] > 0).all(), stage


def test_a_jxs_config_runs_as_is_from_the_command_line(local_prosody, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "domain": "localhost",
                "service": local_prosody.websocket_url,
                "roomPrefix": "jxs",
                "duration": 0.2,
                "delay": 20,
            }
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prosody_analyze",
            "swarm",
            "--config",
            str(config),
            "2",
            "3",
            "--out",
            str(tmp_path / "capture"),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["target"], summary["joined"], summary["left"]) == (6, 6, 6)
    assert {e["room"] for e in events_of(tmp_path / "capture") if "room" in e} == {"jxs-0", "jxs-1"}


def test_out_dash_streams_the_capture_on_stdout_and_nothing_else(local_prosody, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prosody_analyze",
            "swarm",
            "--domain",
            "localhost",
            "--service",
            local_prosody.websocket_url,
            "--rooms",
            "1",
            "--participants",
            "4",
            "--duration",
            "0.2",
            "--shard",
            "1/2",
            "--start-at",
            "+0s",
            "--room-prefix",
            "stream",
            "--out",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(line["capture"] == 1 and line["shard"] == "1/2" for line in lines)
    assert sorted({line["participant"] for line in lines if "participant" in line}) == ["0-1", "0-3"]
    assert any(line["kind"] == "run_info" and line["message"].startswith("manifest ") for line in lines)
    assert "joined" in done.stderr  # the summary went to stderr


def test_source_addresses_spread_the_connections(local_prosody, tmp_path):
    summary = run_swarm(
        small(local_prosody, rooms=1, participants=4, source_addresses=("127.0.0.2", "127.0.0.3")),
        tmp_path / "c",
        progress=False,
    )
    assert summary.joined == 4
    log = local_prosody.log_path.read_text()
    assert "127.0.0.2" in log and "127.0.0.3" in log


class Front:
    """A loopback TCP front for Prosody's WebSocket, piping to it: with ``refuse``, every other
    upgrade gets HTTP 500 instead; with ``tls``, it speaks TLS (wss://) to the clients."""

    def __init__(self, backend_port: int, refuse: bool = True, tls: ssl.SSLContext | None = None):
        self.backend_port = backend_port
        self.refuse, self.tls = refuse, tls
        self.port = free_port()
        self.requests = 0
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        serving = asyncio.start_server(self._client, "127.0.0.1", self.port, ssl=self.tls)
        self._server = self._loop.run_until_complete(serving)
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        if self.refuse and self.requests % 2 == 1:
            self.refused += 1
            writer.write(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        up_writer.write(head)

        async def pipe(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def __enter__(self) -> Front:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        async def shut() -> None:  # the pipes end while the loop runs, not when collected later
            self._server.close()
            pipes = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def test_http_500_on_upgrade_is_recorded_with_its_status_and_retried(local_prosody, tmp_path):
    with Front(local_prosody.http_port) as front:
        service = f"ws://127.0.0.1:{front.port}/xmpp-websocket"
        summary = run_swarm(
            small(local_prosody, service=service, retries=2, retry_backoff=0.05, max_connecting=1),
            tmp_path / "c",
            progress=False,
        )
    events = events_of(tmp_path / "c")
    http_errors = [e for e in events if e["kind"] == "http_error"]
    assert len(http_errors) == front.refused >= 5
    assert all(e["http_status"] == 500 and e["stage"] == "connected" for e in http_errors)
    assert all("HTTP 500" in e["error"] for e in http_errors)
    retries = [e for e in events if e["kind"] == "retry"]
    assert all(e["http_status"] == 500 and e["message"].startswith("retry ") for e in retries)
    # each refusal was either retried or, after the last retry, counted as a failure at `connected`
    assert len(retries) == summary.retries == len(http_errors) - summary.failed
    assert summary.failures_by_stage in ({}, {"connected": summary.failed})
    assert summary.joined + summary.failed == 10 and summary.joined >= 8


def test_wss_with_a_self_signed_certificate_needs_insecure(local_prosody, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with Front(local_prosody.http_port, refuse=False, tls=tls) as front:
        service = f"wss://127.0.0.1:{front.port}/xmpp-websocket"
        verifying = small(local_prosody, service=service, participants=2)
        checked = run_swarm(verifying, tmp_path / "a", progress=False)
        insecure = run_swarm(replace(verifying, insecure=True), tmp_path / "b", progress=False)
    assert checked.joined == 0 and checked.failures_by_stage == {"connected": 4}
    assert any("CERTIFICATE_VERIFY_FAILED" in e.get("error", "") for e in events_of(tmp_path / "a"))
    assert insecure.joined == insecure.target == 4


def test_http_500_without_retries_fails_those_participants_only(local_prosody, tmp_path):
    with Front(local_prosody.http_port) as front:
        service = f"ws://127.0.0.1:{front.port}/xmpp-websocket"
        summary = run_swarm(
            small(local_prosody, service=service, max_connecting=1), tmp_path / "c", progress=False
        )
    assert (summary.joined, summary.failed) == (5, 5)
    assert summary.http_statuses == {500: 5} and summary.failures_by_stage == {"connected": 5}
    assert summary.exit_code == 1


def test_unreachable_target_ends_quickly_with_one_clear_error(tmp_path):
    service = f"ws://127.0.0.1:{free_port()}/xmpp-websocket"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prosody_analyze",
            "swarm",
            "--domain",
            "localhost",
            "--service",
            service,
            "--rooms",
            "3",
            "--participants",
            "10",
            "--out",
            str(tmp_path / "c"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("prosody-analyze: error:")]
    assert errors == [f"prosody-analyze: error: cannot connect to {service}: connection refused"]
    assert "Traceback" not in done.stderr


def test_wrong_domain_fails_every_participant_with_the_servers_reason(local_prosody, tmp_path):
    summary = run_swarm(small(local_prosody, domain="wrong.example"), tmp_path / "c", progress=False)
    assert summary.joined == 0 and summary.failures_by_stage == {"authenticated": 10}
    assert summary.error == (
        "10/10 participants failed (most at stage authenticated): "
        "stream error: host-unknown - This server does not serve wrong.example"
    )


def test_refused_muc_join_fails_at_the_joined_stage(local_prosody, tmp_path):
    summary = run_swarm(
        small(local_prosody, muc="conference.elsewhere.example"), tmp_path / "c", progress=False
    )
    assert summary.joined == 0 and summary.failures_by_stage == {"joined": 10}
    assert "Communication with remote domains is not enabled" in summary.error


def test_prosody_killed_mid_run_ends_the_swarm_with_everything_before_the_kill(tmp_path):
    capture = tmp_path / "capture"
    with LocalProsody(tmp_path / "prosody") as prosody:
        config = small(prosody, duration=None)  # would hold until Ctrl-C
        outcome = {}

        def kill_when_all_joined():
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                path = capture / EVENTS_JSONL
                if path.exists() and path.read_text().count('"kind":"muc_joined"') == 10:
                    outcome["killed_at"] = time.monotonic()
                    os.kill(prosody.pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_all_joined)
        killer.start()
        summary = run_swarm(config, capture, progress=False)
        ended = time.monotonic()
        killer.join()
    assert ended - outcome["killed_at"] < 5
    assert (summary.joined, summary.dropped, summary.left) == (10, 10, 0)
    assert summary.exit_code == 1 and "lost its connection" in summary.error
    events = events_of(capture)
    assert sum(e["kind"] == "muc_joined" for e in events) == 10
    drops = [e for e in events if e["kind"] == "disconnected"]
    assert len(drops) == 10 and all(e["level"] == "error" and "connection lost" in e["error"] for e in drops)
    assert json.loads((capture / MANIFEST_FILE).read_text())["summary"]["dropped"] == 10
    ingest([capture], tmp_path / "analysis")  # a capture cut short by the server still ingests whole
    sessions = pl.read_parquet(tmp_path / "analysis" / "sessions.parquet")
    assert sessions.filter(pl.col("origin") == "client")["joined_ts"].is_not_null().sum() == 10


def test_local_mode_brings_its_own_prosody_and_leaves_its_log_and_metrics(tmp_path):
    capture = tmp_path / "capture"
    config = SwarmConfig(local=True, rooms=1, participants=3, duration=1.2, metrics_interval=0.2)
    summary = run_swarm(config, capture, progress=False)
    assert summary.joined == 3 and summary.service.startswith("ws://127.0.0.1:")
    manifest = json.loads((capture / MANIFEST_FILE).read_text())
    pid = manifest["local_prosody"]["pid"]
    assert not Path(f"/proc/{pid}").exists()  # stopped at the end
    log = (capture / "prosody.log").read_text()
    assert "Client connected" in log and "conference.localhost" in log
    metrics = (capture / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "ts,metric,labels,value"
    assert any(",process_resident_memory_bytes," in row for row in metrics)
    assert any(row.split(",")[1].startswith("prosody_mod_c2s") for row in metrics[1:])


def test_local_mode_with_the_capture_on_stdout_keeps_its_log_and_says_where(capsys):
    summary = run_swarm(SwarmConfig(local=True, rooms=1, participants=2, duration=0.5), "-", progress=False)
    out, err = capsys.readouterr()
    kinds = {json.loads(line).get("kind") for line in out.splitlines()}  # the capture, on stdout
    assert summary.joined == 2 and "muc_joined" in kinds
    (kept,) = re.findall(r"swarm: the local Prosody's log is kept in (\S+)", err)
    log = Path(kept)
    try:
        assert "Client connected" in log.read_text()
    finally:
        shutil.rmtree(log.parent)


def test_local_mode_on_stdout_that_cannot_start_prosody_leaves_no_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def refuse(self):
        raise UserError("prosody is not installed")

    monkeypatch.setattr(LocalProsody, "__enter__", refuse)
    with pytest.raises(UserError, match="not installed"):
        run_swarm(SwarmConfig(local=True, rooms=1, participants=1, duration=0.1), "-", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_pings_go_out_while_in_the_room(local_prosody, tmp_path):
    config = small(
        local_prosody, rooms=1, participants=2, room_prefix="pings", ping_interval=0.2, duration=0.9
    )
    summary = run_swarm(config, tmp_path / "c", progress=False)
    assert summary.joined == 2
    pings = re.findall(r"Received\[c2s\]: <iq [^>]*id='ping\d+'", local_prosody.log_path.read_text())
    assert len(pings) >= 4  # two participants, about four pings each


def test_conference_request_over_http_is_posted_before_logging_in(local_prosody, tmp_path):
    received = []

    class Focus(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ready": true}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Focus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = f"http://127.0.0.1:{server.server_port}/conference-request/v1"
        summary = run_swarm(
            small(
                local_prosody, rooms=1, participants=2, room_prefix="http", conference_request_target=target
            ),
            tmp_path / "c",
            progress=False,
        )
    finally:
        server.shutdown()
    assert summary.joined == 2
    assert sorted(path for path, _, _ in received) == ["/conference-request/v1?room=http-0"] * 2
    assert all(
        kind == "application/json" and body["room"] == "http-0@conference.localhost"
        for _, kind, body in received
    )
    kinds = [e["kind"] for e in events_of(tmp_path / "c") if e.get("participant") == "0-0"]
    assert kinds.index("conference_request") < kinds.index("connection_opened")
    assert "conference_error" not in kinds


def test_ctrl_c_makes_everyone_leave_cleanly(local_prosody, tmp_path):
    capture = tmp_path / "c"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prosody_analyze",
            "swarm",
            "--domain",
            "localhost",
            "--service",
            local_prosody.websocket_url,
            "--rooms",
            "1",
            "--participants",
            "3",
            "--out",
            str(capture),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = capture / EVENTS_JSONL
        if events.exists() and events.read_text().count('"kind":"all_joined"'):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    left = [e for e in events_of(capture) if e["kind"] == "disconnected"]
    assert len(left) == 3 and all(e["message"] == "left" for e in left)
    assert "stopped (Ctrl-C / SIGTERM)" in out


def test_start_at_holds_the_ramp_until_the_shared_start(local_prosody, tmp_path):
    start = datetime.now(UTC) + timedelta(seconds=1)
    config = small(
        local_prosody,
        rooms=1,
        participants=2,
        room_prefix="later",
        start_at=start,
        shard_index=0,
        shard_count=2,
        duration=0.1,
    )
    summary = run_swarm(config, tmp_path / "c", progress=False)
    assert summary.joined == 1 and summary.shard == "0/2"
    opened = [e for e in events_of(tmp_path / "c") if e["kind"] == "connection_opened"]
    assert [e["participant"] for e in opened] == ["0-0"]
    assert datetime.fromisoformat(opened[0]["ts"].replace("Z", "+00:00")) >= start


def test_a_server_that_goes_silent_fails_the_stage_on_timeout(tmp_path):
    """The WebSocket opens but no XMPP ever comes back: each participant times out, the run ends."""
    from websockets.asyncio.server import serve

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port = free_port()

    async def silent(connection):
        await connection.wait_closed()

    async def main():
        async with serve(silent, "127.0.0.1", port, subprotocols=["xmpp"]):
            ready.set()
            await asyncio.sleep(30)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    ready.wait(5)
    started = time.monotonic()
    config = SwarmConfig(
        domain="localhost",
        service=f"ws://127.0.0.1:{port}/xmpp-websocket",
        rooms=1,
        participants=3,
        stage_timeout=0.5,
    )
    summary = run_swarm(config, tmp_path / "c", progress=False)
    assert time.monotonic() - started < 5
    assert summary.failures_by_stage == {"authenticated": 3}
    timeouts = [e for e in events_of(tmp_path / "c") if e.get("stage") == "authenticated"]
    assert [e["error"] for e in timeouts] == ["timeout after 0.5 s (opening)"] * 3


def test_metrics_url_is_scraped_into_the_capture(local_prosody, tmp_path):
    config = small(
        local_prosody,
        rooms=1,
        participants=2,
        metrics_url=local_prosody.metrics_url,
        metrics_interval=0.2,
        duration=0.8,
    )
    summary = run_swarm(config, tmp_path / "c", progress=False)
    assert summary.joined == 2
    rows = (tmp_path / "c" / "metrics.csv").read_text().splitlines()
    names = {row.split(",")[1] for row in rows[1:]}
    assert "prosody_mod_c2s__connections" in names and "prosody_analyze_scrape_up" in names
    assert "process_resident_memory_bytes" not in names  # remote target: no /proc to read
