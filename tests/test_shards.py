"""Sharded swarm, merged: N shard processes against one real Prosody add up to one process running the
whole plan, once `ingest` has merged their stdout — plain, or as `kubectl logs --prefix --timestamps`
gives it. Each shard runs the very command line that pod K of the `swarm-job` manifest runs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path

import polars as pl
import pytest

from prosody_analyze import k8s
from prosody_analyze.ingest import ingest
from prosody_analyze.schema import EVENTS_FILE, SESSIONS_FILE, scan_events
from prosody_analyze.swarm import parse_start_at

pytestmark = pytest.mark.skipif(not Path("/usr/bin/prosody").exists(), reason="needs Debian's prosody")

ROOMS, PARTICIPANTS, SHARDS = 2, 6, 3
PLAN = {f"{room}-{index}" for room in range(ROOMS) for index in range(PARTICIPANTS)}
START_DELAY_S = 3.0  # time for the shard processes to start before the shared ramp start


def swarm_args(prosody) -> list[str]:
    return [
        "--service",
        prosody.websocket_url,
        "--domain",
        prosody.domain,
        "--rooms",
        str(ROOMS),
        "--participants",
        str(PARTICIPANTS),
        "--duration",
        "0.5s",
        "--timeout",
        "5s",
    ]


def run(command: list[str]) -> subprocess.Popen:
    assert command[0] == "prosody-analyze"  # the image's entry point; here, this checkout's package
    return subprocess.Popen(
        [sys.executable, "-m", "prosody_analyze", *command[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[list[str], list[str]]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out.splitlines(), err.splitlines()


def kubectl_line(pod: str, line: str) -> str:
    """What `kubectl logs --prefix --timestamps` prints for one line of a pod's container."""
    now = datetime.now(UTC)
    return f"[pod/{pod}/{k8s.CONTAINER}] {now:%Y-%m-%dT%H:%M:%S}.{now.microsecond:06d}000Z {line}"


def client_tables(analysis: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    events = scan_events(analysis / EVENTS_FILE).filter(pl.col("origin") == "client").collect()
    sessions = pl.read_parquet(analysis / SESSIONS_FILE).filter(pl.col("origin") == "client")
    return events, sessions


def totals(sessions: pl.DataFrame) -> dict[str, int]:
    return {
        "participants": sessions["participant"].n_unique(),
        "joined": sessions.filter(pl.col("outcome") == "joined").height,
        "rooms": sessions["room"].n_unique(),
    }


@pytest.fixture(scope="module")
def runs(local_prosody, tmp_path_factory):
    """The job's N shards run at once with their shared start, then one process runs the whole plan."""
    tmp = tmp_path_factory.mktemp("shards")
    job = k8s.indexed_job(swarm_args(local_prosody), SHARDS, start_delay_s=START_DELAY_S)
    commands = [k8s.shard_command(job, index) for index in range(SHARDS)]
    processes = [run(command) for command in commands]
    outputs = [finish(process) for process in processes]
    start_at = parse_start_at(commands[0][commands[0].index("--start-at") + 1])

    pods = [f"{job['metadata']['name']}-{index}-x{index}z9q" for index in range(SHARDS)]
    plain = tmp / "per-pod"  # `kubectl logs POD > POD.log` for each pod: stdout and stderr, no wrapping
    plain.mkdir()
    for pod, (out, err) in zip(pods, outputs, strict=True):
        (plain / f"{pod}.log").write_text("\n".join(out + err) + "\n", encoding="utf-8")
    # `kubectl logs -f -l job-name=... --prefix --timestamps`: the pods' lines interleaved, each wrapped.
    wrapped = [
        [kubectl_line(pod, line) for line in out + err] for pod, (out, err) in zip(pods, outputs, strict=True)
    ]
    merged = tmp / "shards.log"
    merged.write_text(
        "".join(line + "\n" for group in zip_longest(*wrapped) for line in group if line), encoding="utf-8"
    )
    ingest([plain], tmp / "analysis-per-pod")
    ingest([merged], tmp / "analysis-kubectl")

    shard_events, _ = client_tables(tmp / "analysis-kubectl")
    prefix = shard_events.filter(pl.col("kind") == "muc_joined")["room"][0].rsplit("-", 1)[0]
    whole = run(
        [
            "prosody-analyze",
            "swarm",
            *swarm_args(local_prosody),
            "--room-prefix",
            prefix,
            "--out",
            "-",
            "--no-progress",
        ]
    )
    out, _ = finish(whole)
    (tmp / "whole.log").write_text("\n".join(out) + "\n", encoding="utf-8")
    ingest([tmp / "whole.log"], tmp / "analysis-whole")
    return {"tmp": tmp, "start_at": start_at, "prefix": prefix}


@pytest.mark.parametrize("merged", ["analysis-kubectl", "analysis-per-pod"])
def test_merged_shards_have_the_totals_of_one_process_running_the_whole_plan(runs, merged):
    _, whole = client_tables(runs["tmp"] / "analysis-whole")
    events, sharded = client_tables(runs["tmp"] / merged)
    expected = {"participants": ROOMS * PARTICIPANTS, "joined": ROOMS * PARTICIPANTS, "rooms": ROOMS}
    assert totals(whole) == expected
    assert totals(sharded) == expected
    # Same participants in the same rooms, whichever way the plan was run.
    pairs = sorted(zip(sharded["participant"], sharded["room"], strict=True))
    assert pairs == sorted(zip(whole["participant"], whole["room"], strict=True))
    assert {room for _, room in pairs} == {f"{runs['prefix']}-{room}" for room in range(ROOMS)}
    assert events.filter(pl.col("kind") == "muc_joined").height == ROOMS * PARTICIPANTS
    # Each shard's run is listed once, completed (its start manifest is superseded by the end one).
    captures = json.loads((runs["tmp"] / merged / "ingest.json").read_text())["captures"]
    assert sorted(c["shard"] for c in captures) == [f"{k}/{SHARDS}" for k in range(SHARDS)]
    assert all(c["end"] for c in captures)


@pytest.mark.parametrize("merged", ["analysis-kubectl", "analysis-per-pod"])
def test_shards_are_disjoint_their_union_is_the_plan_and_events_keep_their_shard(runs, merged):
    events, sessions = client_tables(runs["tmp"] / merged)
    assert set(sessions["participant"]) == PLAN
    per_participant = (
        events.filter(pl.col("participant").is_not_null())
        .group_by("participant")
        .agg(pl.col("shard").unique())
    )
    shard_of = {row["participant"]: row["shard"] for row in per_participant.iter_rows(named=True)}
    assert set(shard_of) == PLAN
    assert all(len(shards) == 1 for shards in shard_of.values())  # no participant in two shards
    # Shard K/N runs every N-th participant of the plan, from K on.
    for participant, (shard,) in shard_of.items():
        room, index = map(int, participant.split("-"))
        assert shard == f"{(room * PARTICIPANTS + index) % SHARDS}/{SHARDS}"
    assert set(sessions["shard"]) == {f"{k}/{SHARDS}" for k in range(SHARDS)}


def test_no_shard_starts_its_ramp_before_the_shared_start(runs):
    events, _ = client_tables(runs["tmp"] / "analysis-kubectl")
    first = events.filter(pl.col("kind") == "connection_opened").group_by("shard").agg(pl.col("ts").min())
    assert first.height == SHARDS
    assert all(ts >= runs["start_at"] for ts in first["ts"])
