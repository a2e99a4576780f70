"""Ingest what a real Prosody 0.12 logs while the swarm joins it: server and client sides agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from prosody_analyze.ingest import ingest
from prosody_analyze.schema import scan_events
from prosody_analyze.swarm import SwarmConfig, run_swarm

pytestmark = pytest.mark.skipif(not Path("/usr/bin/prosody").exists(), reason="needs Debian's prosody")


def test_server_log_and_capture_tell_the_same_joins(local_prosody, tmp_path):
    config = SwarmConfig(
        domain="localhost",
        service=local_prosody.websocket_url,
        rooms=2,
        participants=5,
        duration=0.3,
        stage_timeout=5,
        room_prefix="real",
    )
    capture = tmp_path / "capture"
    summary = run_swarm(config, capture, progress=False)
    assert summary.joined == 10
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(local_prosody.log_path, logs / "prosody.log")
    result = ingest([logs, capture], tmp_path / "analysis")
    formats = {Path(f.path).name: f.format for f in result.files}
    assert formats["prosody.log"] == "prosody-file" and formats["events.jsonl"] == "swarm-capture"

    sessions = pl.read_parquet(tmp_path / "analysis" / "sessions.parquet")
    server = sessions.filter((pl.col("origin") == "server") & pl.col("room").str.starts_with("real-"))
    client = sessions.filter(pl.col("origin") == "client")
    assert server.height == 10 and client.height == 10
    assert (server["outcome"] == "joined").all() and (client["outcome"] == "joined").all()
    assert server["left_ts"].null_count() == 0
    # the same full JIDs on both sides: the logs can be joined per participant
    assert set(server["jid"]) == set(client["jid"])
    assert sorted(server["room"].unique()) == ["real-0", "real-1"]
    for stage in ("connected_ts", "authenticated_ts", "bound_ts", "joined_ts"):
        assert server[stage].null_count() == 0

    events = scan_events(tmp_path / "analysis" / "events.parquet").collect()
    refused = events.filter((pl.col("origin") == "server") & (pl.col("kind") == "conference_error"))
    assert refused.height == 10  # no Jicofo: every conference request gets an error
