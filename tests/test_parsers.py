"""Each log format, read from the real fixtures (and variants made from them), as a user would query it."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from prosody_analyze.capture import CaptureWriter
from prosody_analyze.ingest import ingest
from prosody_analyze.parsers import sniff
from prosody_analyze.schema import scan_events


def run(tmp_path: Path, *paths: Path, year: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    out = tmp_path / "analysis"
    summary = ingest(list(paths), out, year=year)
    return (
        scan_events(out / "events.parquet").collect(),
        pl.read_parquet(out / "sessions.parquet"),
        summary.to_dict(),
    )


def kinds_of(events: pl.DataFrame, session: str) -> list[str]:
    rows = events.filter(pl.col("session") == session).sort("seq")
    return [k for k in rows["kind"].cast(pl.String).to_list() if k not in ("unknown", "run_info")]


def test_study_server_log_tells_the_refused_join(tmp_path, fixtures):
    log = fixtures / "jitsi-k8s" / "log_server.txt"
    assert sniff(log).label == "prosody-console"
    events, sessions, _ = run(tmp_path, log)
    client = "c2s5648e2de8a80"
    rows = events.filter(pl.col("session") == client).sort("seq")
    assert rows["ts"].null_count() == rows.height  # console sink: no times, seq keeps the order
    assert kinds_of(events, client) == [
        "connection_opened",
        "authenticated",
        "resource_bound",
        "sm_enabled",
        "conference_request",
        "muc_join_sent",
        "stanza_error",
    ]
    auth = rows.filter(pl.col("message").str.contains("mechanism='ANONYMOUS'"))
    assert auth.height == 1 and auth["seq"][0] < rows.filter(pl.col("kind") == "authenticated")["seq"][0]
    request = rows.filter(pl.col("kind") == "conference_request")
    assert "to='focus.[meet.example.org]'" in request["message"][0]
    refused = rows.filter(pl.col("kind") == "stanza_error")
    assert refused["room"][0] == "jxs-test-16479393509449179-0"
    assert refused["error"][0] == "Could not route stanza to remote"
    session = sessions.filter(pl.col("session").str.starts_with(client + "@"))
    assert session.height == 1
    row = session.row(0, named=True)
    assert row["jid"] == "ajq6tfhtzhqjotgc@[meet.example.org]/F6PIN9Ou"
    assert (row["outcome"], row["failed_stage"]) == ("failed", "joined")
    assert row["error"] == "Could not route stanza to remote"
    assert row["room"] == "jxs-test-16479393509449179-0"


def test_study_error_log_shows_hibernation_then_destroy(tmp_path, fixtures):
    events, sessions, _ = run(tmp_path, fixtures / "jitsi-k8s" / "log_error_limit.txt")
    assert kinds_of(events, "c2s557148c1cde0") == [
        "hibernation_timeout",
        "session_destroyed",
        "session_destroyed",
    ]
    row = sessions.row(0, named=True)
    assert row["outcome"] == "failed" and row["error"] == "smacks hibernation timeout"


def test_prosody_file_log_sessions_join_with_times(tmp_path, fixtures):
    log = fixtures / "local-prosody" / "prosody_small_debug.log"
    assert sniff(log).label == "prosody-file"
    events, sessions, summary = run(tmp_path, log, year=2026)
    server = sessions.filter(pl.col("origin") == "server")
    assert server.height == 3
    assert server["outcome"].cast(pl.String).to_list() == ["joined"] * 3
    assert set(server["room"]) == {"small-0"}
    first = server.sort("first_ts").row(0, named=True)
    assert first["connected_ts"] == datetime(2026, 11, 28, 21, 5, 25, tzinfo=UTC)
    assert first["left_ts"] == datetime(2026, 11, 28, 21, 5, 28, tzinfo=UTC)
    assert first["join_s"] == 0.0 and first["total_s"] == 0.0
    assert summary["files"][0]["first_ts"] == "2026-11-28T21:05:24Z"
    assert summary["files"][0]["last_ts"] == "2026-11-28T21:05:28Z"
    requests = events.filter(pl.col("kind") == "http_request")
    assert set(requests["http_path"]) >= {"/xmpp-websocket", "/metrics"}


def test_year_comes_from_mtime_and_rolls_over_in_january(tmp_path):
    log = tmp_path / "logs" / "prosody.log"
    log.parent.mkdir()
    log.write_text(
        "Dec 31 23:59:59 c2s55aa00000001\tinfo\tClient connected\n"
        "Jan 01 00:00:01 c2s55aa00000001\tinfo\tClient disconnected: connection closed\n"
    )
    stamp = datetime(2027, 1, 2, tzinfo=UTC).timestamp()
    os.utime(log, (stamp, stamp))
    events, _, _ = run(tmp_path, log)
    assert events.sort("seq")["ts"].to_list() == [
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC),
    ]
    events, _, _ = run(tmp_path, log, year=2030)
    assert events.sort("seq")["ts"].dt.year().to_list() == [2030, 2031]


def test_gzipped_log_reads_like_the_plain_one(tmp_path, fixtures):
    plain = fixtures / "local-prosody" / "prosody_small_debug.log"
    packed = tmp_path / "prosody.log.1.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert sniff(packed).label == "prosody-file+gzip"
    events_plain, _, _ = run(tmp_path / "a", plain, year=2026)
    events_gz, _, _ = run(tmp_path / "b", packed, year=2026)
    columns = [c for c in events_plain.columns if c != "file"]
    assert events_gz.sort("seq").select(columns).equals(events_plain.sort("seq").select(columns))


def kubectl(lines: list[str], timestamps: bool, prefix: str | None) -> str:
    """What `kubectl logs [--prefix] [--timestamps]` prints for these container lines."""
    out = []
    for index, line in enumerate(lines):
        head = f"[pod/{prefix}/prosody] " if prefix else ""
        stamp = f"2026-11-28T19:56:{index // 1000:02d}.{index % 1000:03d}000000Z " if timestamps else ""
        out.append(head + stamp + line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("timestamps,prefix", [(True, None), (True, "prosody-0"), (False, "prosody-0")])
def test_kubectl_wrapped_console_log(tmp_path, fixtures, timestamps, prefix):
    lines = (fixtures / "jitsi-k8s" / "log_server.txt").read_text().splitlines()
    log = tmp_path / "pod.log"
    log.write_text(kubectl(lines, timestamps, prefix))
    sniffed = sniff(log)
    assert sniffed.format == "prosody-console"
    assert ("kubectl-timestamps" in sniffed.label) == timestamps
    events, sessions, _ = run(tmp_path, log)
    assert kinds_of(events, "c2s5648e2de8a80")[-2:] == ["muc_join_sent", "stanza_error"]
    if timestamps:
        assert events["ts"].null_count() == 0
        first = events.filter(pl.col("seq") == 1)
        assert first["ts"][0] == datetime(2026, 11, 28, 19, 56, 0, tzinfo=UTC)
        second = events.filter(pl.col("seq") == 2)  # its fraction is parsed apart from its second
        assert second["ts"][0] == datetime(2026, 11, 28, 19, 56, 0, 1000, tzinfo=UTC)
    if prefix:
        assert set(events["shard"]) == {prefix}


def test_kubectl_wrappers_in_either_order(tmp_path, fixtures):
    """kubectl writes the pod prefix before the time; lines with them the other way round (or only
    one of them) are unwrapped all the same."""
    lines = (fixtures / "jitsi-k8s" / "log_server.txt").read_text().splitlines()
    wrapped = kubectl(lines, timestamps=True, prefix="prosody-0").splitlines()
    stamp, pod = 30 + 1, len("[pod/prosody-0/prosody] ")
    swapped = [line[pod : pod + stamp] + line[:pod] + line[pod + stamp :] for line in wrapped]
    log = tmp_path / "pods.log"
    mixed = [line if index % 3 else swapped[index] for index, line in enumerate(wrapped)]
    log.write_text("\n".join(mixed) + "\n")
    assert sniff(log).label == "prosody-console+kubectl-prefix+kubectl-timestamps"
    events, _, _ = run(tmp_path, log)
    assert events.height == len(lines) and events["ts"].null_count() == 0
    assert set(events["shard"]) == {"prosody-0"}
    assert kinds_of(events, "c2s5648e2de8a80")[-2:] == ["muc_join_sent", "stanza_error"]


def test_kubectl_nanosecond_times_keep_their_microseconds(tmp_path):
    """kubectl prints 9 fractional digits; events keep the time to the microsecond (truncated)."""
    log = tmp_path / "pod.log"
    lines = ["c2s55d2c2e4a8e0      info\tClient connected", "c2s55d2c2e4a8e0      debug\tSending[c2s]: <r/>"]
    stamps = ["2026-11-28T23:59:59.123456789Z", "2026-11-29T00:00:00.000001999Z"]
    log.write_text("".join(f"{stamp} {line}\n" for stamp, line in zip(stamps, lines, strict=True)))
    events, _, _ = run(tmp_path, log)
    assert events.sort("seq")["ts"].to_list() == [
        datetime(2026, 11, 28, 23, 59, 59, 123456, tzinfo=UTC),
        datetime(2026, 11, 29, 0, 0, 0, 1, tzinfo=UTC),
    ]
    assert events.sort("seq")["message"][0] == "Client connected"


def test_jxs_crashed_run_has_51_joined(tmp_path, fixtures):
    log = fixtures / "local-prosody" / "jxs_4x50_crashed_stdout.log"
    assert sniff(log).label == "jxs"
    events, sessions, _ = run(tmp_path, log)
    joined = events.filter(pl.col("kind") == "muc_joined")
    assert joined.height == 51
    assert joined["participant"].n_unique() == 51
    assert joined["participant"][0].startswith("jxs_4x50_crashed_stdout/")
    assert set(joined["room"]) <= {f"s4x50-{r}" for r in range(4)}
    assert (sessions["outcome"] == "joined").sum() == 51
    crashed = sessions.filter(pl.col("error") == "TimeoutError").row(0, named=True)
    assert crashed["participant"] == "jxs_4x50_crashed_stdout/3-41"
    assert crashed["outcome"] == "failed"
    conference = events.filter(pl.col("kind") == "conference_error")
    assert (
        conference["error"][0]
        == "StanzaError: not-allowed - Communication with remote domains is not enabled"
    )


def test_jxs_clean_run_all_joined_then_offline(tmp_path, fixtures):
    events, sessions, _ = run(tmp_path, fixtures / "local-prosody" / "jxs_2x50_ok.log")
    assert sessions.height == 100
    assert (sessions["outcome"] == "joined").all()
    assert sessions["left_ts"].null_count() == 0
    took = events.filter(pl.col("kind") == "all_joined")["message"][0]
    assert "All joined, took 3.47" in took or "All joined" in took


def test_pm2_two_apps_are_twenty_participants_not_ten(tmp_path, fixtures):
    events, sessions, _ = run(tmp_path, fixtures / "pm2")
    participants = sessions.filter(pl.col("origin") == "client")["participant"]
    assert participants.n_unique() == 20
    assert {p.split("/")[0] for p in participants} == {"batch1", "batch2"}
    assert not events["message"].str.contains("\x1b[", literal=True).any()  # colours removed
    assert sniff(fixtures / "pm2" / "pm2_logs_2apps_ansi.txt").label == "jxs+pm2"
    daemon = events.filter(pl.col("source") == "PM2")
    assert daemon.height > 0 and (daemon["kind"] == "run_info").all()
    raw_only, _, _ = run(tmp_path / "raw", fixtures / "pm2" / "batch1-out.log")
    assert set(raw_only["participant"].drop_nulls()) == {
        f"batch1/{r}-{i}" for r in range(2) for i in range(5)
    }
    assert set(raw_only["room"].drop_nulls()) == {"jxs-test-562-0", "jxs-test-562-1"}


def test_old_jxs_debug_dump(tmp_path, fixtures):
    log = fixtures / "jitsi-k8s" / "log_client.txt"
    assert sniff(log).label == "jxs-debug-dump"
    events, sessions, _ = run(tmp_path, log)
    assert kinds_of(events, "log_client/1") == [
        "connection_opened",
        "authenticated",
        "resource_bound",
        "sm_enabled",
        "conference_request",
        "conference_timeout",
        "muc_join_sent",
        "stanza_error",
    ]
    refused = events.filter(pl.col("kind") == "stanza_error").row(0, named=True)
    assert refused["error"] == "Communication with remote domains is not enabled"
    assert refused["room"] == "jxs-test-16479393509449179-0"
    row = sessions.row(0, named=True)
    assert row["jid"] == "ajq6tfhtzhqjotgc@[meet.example.org]/F6PIN9Ou"
    assert (row["outcome"], row["failed_stage"]) == ("failed", "joined")


def test_websocket_refusals_become_http_errors(tmp_path):
    log = tmp_path / "client.log"
    log.write_text(
        "2026-11-28T21:06:19.862Z Participant[id=0-1] error:Error: Unexpected server response: 500\n"
        "2026-11-28T21:06:19.900Z Participant[id=0-2] joined\n"
        "2026-11-28T21:06:20.000Z Participant[id=1-0] error:server rejected WebSocket connection: HTTP 503\n"
    )
    events, sessions, _ = run(tmp_path, log)
    errors = events.filter(pl.col("kind") == "http_error").sort("seq")
    assert errors["http_status"].to_list() == [500, 503]
    assert errors["participant"].to_list() == ["client/0-1", "client/1-0"]
    failed = sessions.filter(pl.col("outcome") == "failed").sort("participant")
    assert failed["http_status"].to_list() == [500, 503]
    stderr = tmp_path / "err" / "batch3-error.log"
    stderr.parent.mkdir()
    stderr.write_text(
        "Error: Unexpected server response: 502\n    at ClientRequest.<anonymous> (ws/lib/websocket.js:1)\n"
    )
    events, _, summary = run(tmp_path / "e", stderr)
    assert events.filter(pl.col("kind") == "http_error")["http_status"].to_list() == [502]
    assert summary["files"][0]["unparsed"] == 0


def write_capture(directory: Path, shard: str | None = None) -> None:
    with CaptureWriter(directory, shard=shard) as writer:
        writer.write_manifest(
            {"tool": "prosody-analyze swarm", "target": "ws://127.0.0.1:5280/xmpp-websocket"}
        )
        for index in range(3):
            participant = f"{shard or 's0'}-p{index}"
            writer.write(
                "connection_opened",
                ts=f"2026-11-28T21:00:0{index}.000000Z",
                participant=participant,
                room="r-0",
                batch=1,
            )
            writer.write(
                "muc_joined",
                ts=f"2026-11-28T21:00:0{index}.500000Z",
                participant=participant,
                room="r-0",
                batch=1,
            )
        writer.write(
            "http_error",
            ts="2026-11-28T21:00:05.000000Z",
            participant="x-9",
            room="r-0",
            stage="connected",
            http_status=500,
            error="server rejected WebSocket connection: HTTP 500",
        )
    (directory / "metrics.csv").write_text(
        "ts,metric,labels,value\n"
        "2026-11-28T21:00:00.000000Z,process_resident_memory_bytes,,17000000\n"
        '2026-11-28T21:00:00.000000Z,process_cpu_seconds_total,"pid=""1""",0.5\n'
        '2026-11-28T21:00:01.000000Z,prosody_mod_c2s__connections,host="localhost",3\n'
    )


def test_swarm_capture_directory(tmp_path):
    capture = tmp_path / "capture"
    write_capture(capture, shard="1/2")
    events, sessions, summary = run(tmp_path, capture)
    assert summary["captures"][0]["tool"] == "prosody-analyze swarm"
    assert set(events["shard"]) == {"1/2"}
    client = sessions.filter(pl.col("origin") == "client").sort("participant")
    assert client["participant"].to_list() == ["1/2-p0", "1/2-p1", "1/2-p2", "x-9"]
    assert client["outcome"].cast(pl.String).to_list() == ["joined", "joined", "joined", "failed"]
    failed = client.row(3, named=True)
    assert (failed["failed_stage"], failed["http_status"]) == ("connected", 500)
    metrics = pl.read_parquet(tmp_path / "analysis" / "metrics.parquet").sort("metric")
    assert metrics["unit"].to_list() == ["seconds", "bytes", ""]
    assert metrics["labels"].to_list() == ['pid="1"', "", 'host="localhost"']


def test_capture_streamed_through_kubectl_logs(tmp_path):
    shards = []
    for shard in ("0/2", "1/2"):
        capture = tmp_path / shard.replace("/", "-")
        write_capture(capture, shard=shard)
        shards.append((shard, (capture / "events.jsonl").read_text().splitlines()))
    pods = tmp_path / "pods.log"
    pods.write_text(
        "".join(kubectl(lines, timestamps=True, prefix=f"swarm-{k}") for k, (_, lines) in enumerate(shards))
        + "[pod/swarm-0/swarm] 2026-11-28T21:00:09.000000000Z Traceback (most recent call last):\n"
    )
    assert sniff(pods).label == "swarm-capture+kubectl-prefix+kubectl-timestamps"
    events, sessions, summary = run(tmp_path, pods)
    assert set(events.filter(pl.col("kind") == "muc_joined")["shard"]) == {"0/2", "1/2"}
    assert sessions.filter(pl.col("outcome") == "joined").height == 6
    assert summary["files"][0]["unparsed"] == 1
    assert events.filter(pl.col("message").str.starts_with("Traceback"))["shard"].to_list() == ["swarm-0"]


def test_capture_manifest_line_on_stdout_is_listed(tmp_path):
    log = tmp_path / "swarm-stdout.log"
    log.write_text(
        json.dumps(
            {
                "capture": 1,
                "ts": "2026-11-28T21:00:00Z",
                "kind": "run_info",
                "message": "manifest " + json.dumps({"tool": "prosody-analyze swarm"}),
            }
        )
        + "\n"
    )
    _, _, summary = run(tmp_path, log)
    assert summary["captures"] == [{"path": str(log), "tool": "prosody-analyze swarm"}]


def test_fixture_copies_are_untouched(fixtures, tmp_path):
    """Ingest reads, never writes, next to the logs."""
    copy = tmp_path / "logs"
    shutil.copytree(fixtures / "pm2", copy)
    before = sorted(p.name for p in copy.iterdir())
    run(tmp_path, copy)
    assert sorted(p.name for p in copy.iterdir()) == before


def test_console_log_with_the_docker_image_date_prefix(tmp_path):
    """docker-jitsi-meet images since 2023 print ``YYYY-MM-DD HH:MM:SS`` before the console line."""
    log = tmp_path / "prosody-docker.log"
    log.write_text(
        "2026-11-28 21:05:25 c2s55aa00000001                                    info\tClient connected\n"
        "2026-11-28 21:05:26 c2s55aa00000001                          info\tAuthenticated as a@meet.jitsi\n"
    )
    assert sniff(log).label == "prosody-console"
    events, sessions, _ = run(tmp_path, log)
    assert events["ts"].to_list() == [
        datetime(2026, 11, 28, 21, 5, 25, tzinfo=UTC),
        datetime(2026, 11, 28, 21, 5, 26, tzinfo=UTC),
    ]
    assert sessions.row(0, named=True)["auth_s"] == 1.0


TRACEBACK_LOG = (
    "Nov 28 21:03:03 c2s55aa00000001\tinfo\tClient connected\n"
    "Nov 28 21:03:04 http.server\terror\tTraceback[httpserver]: /usr/lib/prosody/modules/mod_websocket.lua:"
    "310: attempt to index a nil value (field 'conn')\n"
    "stack traceback:\n"
    "\t[C]: in function 'error'\n"
    "\t/usr/lib/prosody/modules/mod_websocket.lua:310: in function 'handler'\n"
    "\t/usr/lib/prosody/net/http/server.lua:281: in function </usr/lib/prosody/net/http/server.lua:250>\n"
    "Nov 28 21:03:05 c2s55aa00000001\tdebug\tReceived[c2s]: <message to='a@b'>\tx\ty\tz</message>\n"
    "Nov 28 21:03:06 c2s55aa00000001\tinfo\tClient disconnected: connection closed\n"
)


def test_prosody_traceback_is_one_event_that_explains_a_500(tmp_path):
    """The lines of a Lua traceback fold into the error line above them: one event, HTTP 500."""
    log = tmp_path / "prosody.log"
    log.write_text(TRACEBACK_LOG)
    events, _, summary = run(tmp_path, log, year=2026)
    tracebacks = events.filter(pl.col("kind") == "traceback")
    assert tracebacks.height == 1
    row = tracebacks.row(0, named=True)
    assert row["http_status"] == 500 and row["level"] == "error" and row["source"] == "http.server"
    assert row["error"].startswith("Traceback[httpserver]: /usr/lib/prosody/modules/mod_websocket.lua:310")
    assert row["message"].count("\n") == 4 and row["message"].endswith("server.lua:250>")
    assert summary["files"][0]["lines"] == 8 and summary["files"][0]["unparsed"] == 0
    assert events.height == 4


def test_message_with_tabs_is_kept_whole(tmp_path):
    log = tmp_path / "prosody.log"
    log.write_text(TRACEBACK_LOG)
    events, _, _ = run(tmp_path, log, year=2026)
    stanza = events.filter(pl.col("message").str.starts_with("Received[c2s]: <message"))
    assert stanza["message"].to_list() == ["Received[c2s]: <message to='a@b'>\tx\ty\tz</message>"]


@pytest.mark.parametrize("chunk_bytes", [150, 333, 700, 2000])
def test_chunk_boundaries_do_not_split_records(tmp_path, fixtures, monkeypatch, chunk_bytes):
    """Wherever chunks end, a traceback stays whole and an error reply keeps the context line above it."""
    import prosody_analyze.parsers as parsers

    log = tmp_path / "prosody.log"
    small = (fixtures / "local-prosody" / "prosody_small_debug.log").read_text()
    log.write_text(small + TRACEBACK_LOG + small)
    whole, whole_sessions, _ = run(tmp_path / "whole", log, year=2026)
    monkeypatch.setattr(parsers, "CHUNK_BYTES", chunk_bytes)
    chunked, chunked_sessions, _ = run(tmp_path / "chunked", log, year=2026)
    assert chunked.equals(whole)
    assert chunked_sessions.equals(whole_sessions)
    assert whole.filter(pl.col("http_status") == 500)["message"].str.count_matches("\n").to_list() == [4]
    errors = whole.filter(pl.col("kind") == "conference_error")["error"]
    assert errors.len() == 6 and set(errors) == {"Could not route stanza to remote"}


@pytest.mark.parametrize(
    "lines,year,expected",
    [
        (["Feb 28 23:59:59", "Mar 01 00:00:00"], 2028, ["2028-02-28 23:59:59", "2028-03-01 00:00:00"]),
        (
            ["Feb 28 23:59:59", "Feb 29 12:00:00", "Mar 01 00:00:00"],
            2028,
            ["2028-02-28 23:59:59", "2028-02-29 12:00:00", "2028-03-01 00:00:00"],
        ),
        (["Dec 31 23:59:59", "Mar 01 00:00:00"], 2027, ["2027-12-31 23:59:59", "2028-03-01 00:00:00"]),
        (["Feb 28 23:59:59", "Mar 01 00:00:00"], 2026, ["2026-02-28 23:59:59", "2026-03-01 00:00:00"]),
        # a log from December runs into a leap year's Feb 29
        (["Dec 31 23:59:59", "Feb 29 12:00:00"], 2027, ["2027-12-31 23:59:59", "2028-02-29 12:00:00"]),
        # no such day: no time, the line is kept as not understood
        (["Feb 28 23:59:59", "Feb 29 12:00:00"], 2026, ["2026-02-28 23:59:59", None]),
    ],
)
def test_file_log_times_land_on_the_right_day_in_leap_years(tmp_path, lines, year, expected):
    log = tmp_path / "prosody.log"
    log.write_text("".join(f"{stamp} c2s55aa00000001\tinfo\tClient connected\n" for stamp in lines))
    events, _, _ = run(tmp_path, log, year=year)
    assert events.sort("seq")["ts"].dt.strftime("%Y-%m-%d %H:%M:%S").to_list() == expected


PLAIN_RECORDS = (
    "Nov 28 21:03:03 c2s55d2c2e4a8e0\tinfo\tClient connected\n"
    "Nov 28 21:03:03 c2s55d2c2e4a8e0\tinfo\tAuthenticated as 4f1b@localhost\n"
)


@pytest.mark.parametrize(
    "text,simple",
    [
        (PLAIN_RECORDS, True),
        (PLAIN_RECORDS + "Nov 28 21:03:04 mod_x\tdebug\ta\tTAB\n", False),  # a third TAB
        (PLAIN_RECORDS + "Nov 28 21:03:04 mod_x\tdebug\n", False),  # one TAB only
        (PLAIN_RECORDS + "\n", False),  # a blank line
        (PLAIN_RECORDS + "Nov 28 21:03:04 mod_x\tdebug\t\n", False),  # an empty message
        (PLAIN_RECORDS.replace("\n", "\r\n"), False),
        ("Nov 28 21:03:04 mod_x\tdebug\ta\tb\n" + PLAIN_RECORDS, False),  # the reader's first line
        (PLAIN_RECORDS + "Nov 28 21:03:04 c2s1\tdebug\tnick J\u00f6rg\n", True),  # UTF-8 is fine
    ],
)
def test_only_plain_records_skip_the_line_reader(tmp_path, monkeypatch, text, simple):
    """The CSV reader splits a chunk into fields itself only when nothing can be lost, and the
    events are the same whichever way the chunk was read."""
    from prosody_analyze.parsers import prosody_fields, prosody_file

    records = prosody_fields.read_records(text.encode())
    assert (records is not None) == simple
    if simple:
        assert records["message"].to_list()[:2] == ["Client connected", "Authenticated as 4f1b@localhost"]
    unknown = "Nov 28 21:03:05 garbage\tnot-a-level\tkept whole\n"  # read again as a line
    for name, log_text in (("as-is", text), ("unknown", text + unknown)):
        log = tmp_path / name / "prosody.log"
        log.parent.mkdir()
        log.write_text(log_text, newline="")
        with monkeypatch.context() as patch:
            patch.setattr(prosody_file, "read_records", lambda *args: None)
            lines, line_sessions, _ = run(tmp_path / name / "lines", log, year=2026)
        fast, fast_sessions, _ = run(tmp_path / name / "fast", log, year=2026)
        assert fast.equals(lines) and fast_sessions.equals(line_sessions)
    assert fast["message"][-1] == unknown.rstrip("\n")


def test_bytes_that_are_not_utf8_go_to_the_line_reader(tmp_path):
    """Only the line reader replaces bad bytes (and counts the lines that had them)."""
    from prosody_analyze.parsers import prosody_fields

    bad = PLAIN_RECORDS.encode() + b"Nov 28 21:03:04 c2s1\tdebug\tbad \xff byte\n"
    assert prosody_fields.read_records(bad) is None
    log = tmp_path / "prosody.log"
    log.write_bytes(bad)
    events, _, summary = run(tmp_path, log, year=2026)
    assert events["message"][-1] == "bad \ufffd byte"
    assert summary["files"][0]["notes"] == ["1 line(s) with invalid UTF-8, shown as U+FFFD"]


STANZA_LOG = """Nov 28 21:03:03 c2s1\tdebug\tSending[c2s]: <enabled id='x' xmlns='urn:xmpp:sm:3'>
Nov 28 21:03:03 c2s1\tdebug\tReceived[c2s]: <iq type='set' to='focus.x' id='a1'>
Nov 28 21:03:03 c2s1\tdebug\tSending[c2s]: <iq id='a1' to='u@x/r' type='error' from='focus.x'>
Nov 28 21:03:04 c2s1\tdebug\tReceived[c2s]: <iq type='error' to='u2@x/r' id='a2'>
Nov 28 21:03:04 c2s1\tdebug\tReceived[c2s]: <presence to='room@muc.x/nick' xml:lang='en'>
Nov 28 21:03:04 c2s1\tdebug\tReceived[c2s]: <presence type='error' to='room@muc.x/nick'>
Nov 28 21:03:05 c2s1\tdebug\tSending[c2s]: <presence to='u@x/r' type='error' from='room@muc.x/nick'>
Nov 28 21:03:05 c2s1\tdebug\tReceived[c2s]: <a h='3' xml:lang='en' xmlns='urn:xmpp:sm:3'>
Nov 28 21:03:05 c2s1\tdebug\tSending[c2s]: <message type='groupchat' to='u@x/r' from='room@muc.x'>
"""


def test_stanzas_are_told_apart_by_direction_and_opening(tmp_path):
    """Only a stanza the server sends can be an error reply; one the client sends with type='error'
    is not a refusal. Each stanza kind comes from its opening."""
    log = tmp_path / "prosody.log"
    log.write_text(STANZA_LOG)
    events, _, _ = run(tmp_path, log, year=2026)
    assert events["kind"].cast(pl.String).to_list() == [
        "sm_enabled",
        "conference_request",
        "conference_error",
        "unknown",  # the client's own iq error
        "muc_join_sent",
        "unknown",  # a presence error the client sends
        "stanza_error",
        "unknown",  # a stream management ack
        "muc_joined",
    ]
    assert events.filter(pl.col("kind") == "stanza_error")["room"].to_list() == ["room"]


REUSED_ID_LOG = """Nov 28 21:03:03 c2s1\tinfo\tClient connected
Nov 28 21:03:04 c2s1\tdebug\tReceived[c2s]: <presence to='room@muc.x/nick' xml:lang='en'>
Nov 28 21:03:05 c2s1\tdebug\tReceived[c2s]: <presence to='room@muc.x/nick' xml:lang='en'>
Nov 28 21:03:06 c2s1\tinfo\tClient disconnected: connection closed
Nov 28 21:03:07 c2s1\tdebug\tReceived[c2s]: <presence to='room@muc.x/nick' xml:lang='en'>
Nov 28 21:03:08 c2s1\tdebug\tDestroying session for u@x/r (u@x)
Nov 28 21:03:09 c2s1\tinfo\tClient connected
Nov 28 21:03:10 c2s1\tdebug\tReceived[c2s]: <presence to='room@muc.x/nick' xml:lang='en'>
"""


@pytest.mark.parametrize("chunk_bytes", [None, 150])
def test_a_join_is_sent_once_per_session_even_when_prosody_reuses_its_id(tmp_path, monkeypatch, chunk_bytes):
    """A presence to an occupant the session already joined is a status update, also after a
    disconnect (the session hibernates and may resume); once the session is destroyed, its c2s id
    may come back for a new session, whose presence there is a join again."""
    import prosody_analyze.parsers as parsers

    if chunk_bytes:  # about one line per chunk: what is carried across chunks
        monkeypatch.setattr(parsers, "CHUNK_BYTES", chunk_bytes)
    log = tmp_path / "prosody.log"
    log.write_text(REUSED_ID_LOG)
    events, sessions, _ = run(tmp_path, log, year=2026)
    joins = events.filter(pl.col("kind") == "muc_join_sent")["seq"].to_list()
    assert joins == [2, 8]
    assert sessions.height == 2 and sessions["room"].to_list() == ["room", "room"]
