"""bursts: a planted burst of HTTP 500s is found with its window, load and server events; noise is not."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from prosody_analyze.bursts import BURSTS_FILE, find_bursts
from prosody_analyze.errors import UserError
from prosody_analyze.ingest import ingest
from prosody_analyze.schema import EVENTS_FILE, SESSION_SCHEMA, SESSIONS_FILE, conform

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _event(second: float, kind: str, origin: str = "client", **fields) -> dict:
    return {
        "ts": START + timedelta(seconds=second),
        "origin": origin,
        "kind": kind,
        "file": f"{origin}.log",
        "message": fields.pop("message", kind),
        **fields,
    }


def _write(analysis, rows, sessions=()):
    analysis.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows, infer_schema_length=None).with_row_index("seq", offset=1)
    conform(frame).write_parquet(analysis / EVENTS_FILE)
    session_rows = pl.DataFrame(list(sessions), infer_schema_length=None)
    conform(session_rows, SESSION_SCHEMA).write_parquet(analysis / SESSIONS_FILE)


def _run_with_burst(rng, burst_at=1200, burst_errors=40, with_traceback=False):
    """One hour of activity: stray errors at ~1 per 5 minutes, then 500s while batch 5 joins."""
    rows = [_event(s, "http_request", "server") for s in np.arange(0, 3600, 5.0)]
    rows += [_event(float(s), "stanza_error", error="item-not-found") for s in rng.uniform(0, 3600, 12)]
    rows += [
        _event(
            burst_at + float(s),
            "http_error",
            http_status=500,
            batch=5,
            room=f"room{i % 3}",
            message="Unexpected server response: 500",
        )
        for i, s in enumerate(rng.uniform(0, 15, burst_errors))
    ]
    hibernation = "mod_smacks hibernation timeout reached..."
    rows += [_event(burst_at + 5, "hibernation_timeout", "server", message=hibernation)]
    if with_traceback:
        rows += [_event(burst_at + 3, "traceback", "server", message="Traceback[httpserver]: boom")]
    sessions = [
        {
            "origin": "client",
            "session": f"p{i}",
            "first_ts": START + timedelta(seconds=i),
            "connected_ts": START + timedelta(seconds=i),
            "last_ts": START + timedelta(seconds=3500),
        }
        for i in range(400)
    ]
    return sorted(rows, key=lambda r: r["ts"]), sessions


def test_planted_500_burst_is_found_with_its_context(tmp_path):
    rows, sessions = _run_with_burst(np.random.default_rng(1))
    _write(tmp_path, rows, sessions)
    report = find_bursts(tmp_path, bin="10s")
    assert len(report.bursts) == 1
    burst = report.bursts[0]
    start, end = (datetime.fromisoformat(burst[k]) for k in ("start", "end"))
    assert START + timedelta(seconds=1190) <= start <= START + timedelta(seconds=1200)
    assert START + timedelta(seconds=1215) <= end <= START + timedelta(seconds=1230)
    assert burst["kinds"]["http_error"] == 40
    assert burst["http_statuses"] == {"500": 40}
    assert burst["batches"] == [5]
    assert burst["rooms"] == ["room0", "room1", "room2"]
    assert burst["participants_connected_at_start"] == 400
    assert burst["server_events"] == {"hibernation_timeout": 1}
    assert burst["peak_rate_per_s"] >= 2.0
    names = [s["name"] for s in burst["signatures"]]
    assert "http_500_from_proxy" in names and "smacks_hibernation_timeout" in names
    written = json.loads((tmp_path / BURSTS_FILE).read_text())
    assert written["bursts"][0]["count"] == burst["count"]
    assert 0 < written["baseline_per_s"] < 0.01


def test_500s_with_a_prosody_traceback_blame_prosody(tmp_path):
    rows, sessions = _run_with_burst(np.random.default_rng(2), with_traceback=True)
    _write(tmp_path, rows, sessions)
    names = [s["name"] for s in find_bursts(tmp_path).bursts[0]["signatures"]]
    assert "http_500_prosody_handler" in names and "http_500_from_proxy" not in names


def test_steady_errors_are_not_a_burst(tmp_path):
    """Errors at a constant rate (Poisson, ~1 every 10 s for an hour) are the baseline, not bursts."""
    rng = np.random.default_rng(3)
    rows = [_event(float(s), "http_error", http_status=500) for s in np.sort(rng.uniform(0, 3600, 360))]
    _write(tmp_path, rows)
    report = find_bursts(tmp_path)
    assert report.bursts == []
    assert report.baseline_per_s == pytest.approx(0.1, rel=0.15)


def test_study_logs_without_times_give_signatures(fixtures, tmp_path):
    ingest([fixtures / "jitsi-k8s"], tmp_path, progress=False)
    report = find_bursts(tmp_path)
    assert len(report.untimed_files) == 3
    found = {s["name"]: s for s in report.signatures}
    assert set(found) >= {"muc_remote_refused", "conference_request_timeout", "smacks_hibernation_timeout"}
    refused = found["muc_remote_refused"]["examples"]
    assert any("Communication with remote domains is not enabled" in example for example in refused)
    assert report.errors_by_kind["hibernation_timeout"] == 1


def test_missing_analysis_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="ingest"):
        find_bursts(tmp_path)


def test_cli_prints_the_burst_in_utc_and_json(tmp_path):
    from typer.testing import CliRunner

    from prosody_analyze.cli import app

    rows, sessions = _run_with_burst(np.random.default_rng(4))
    _write(tmp_path, rows, sessions)
    runner = CliRunner()
    shown = runner.invoke(app, ["bursts", str(tmp_path)], env={"COLUMNS": "250"})
    assert shown.exit_code == 0
    assert "2026-01-01 12:20:00" in shown.output and "http_500_from_proxy" in shown.output
    printed = runner.invoke(app, ["bursts", str(tmp_path), "--bin", "30s", "--json"])
    assert json.loads(printed.output)["bin_s"] == 30


def test_cli_bad_bin_is_one_line(tmp_path):
    import subprocess
    import sys

    rows, sessions = _run_with_burst(np.random.default_rng(5))
    _write(tmp_path, rows, sessions)
    done = subprocess.run(
        [sys.executable, "-m", "prosody_analyze", "bursts", str(tmp_path), "--bin", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "duration" in done.stderr


def test_same_input_same_bursts(tmp_path):
    """Several families and bursts: the flags must not depend on row order inside polars joins."""
    rng = np.random.default_rng(6)
    rows, sessions = _run_with_burst(rng)
    rows += [_event(2400 + float(s), "conference_timeout") for s in rng.uniform(0, 20, 30)]
    rows += [_event(2400 + float(s), "hibernation_timeout", "server") for s in rng.uniform(0, 20, 25)]
    rows += [_event(float(s), "traceback", "server") for s in rng.uniform(0, 3600, 8)]
    _write(tmp_path, sorted(rows, key=lambda r: r["ts"]), sessions)
    first = find_bursts(tmp_path, write=False).to_dict()
    assert [b["start"][11:19] for b in first["bursts"]] == ["12:20:00", "12:40:00"]
    for _ in range(10):
        assert find_bursts(tmp_path, write=False).to_dict() == first


def test_console_log_without_times_gives_a_burst_by_line_order(tmp_path):
    """kubectl logs of the console sink: no times, so the burst is a range of lines of that file."""
    kinds = ["unknown"] * 2000
    for line in range(1210, 1240):
        kinds[line] = "hibernation_timeout"
    kinds[100] = kinds[1700] = "hibernation_timeout"
    rows = [
        {"ts": None, "origin": "server", "kind": kind, "file": "log_server.txt", "message": kind}
        for kind in kinds
    ]
    _write(tmp_path, rows)
    report = find_bursts(tmp_path)
    assert report.untimed_files == ["log_server.txt"]
    [burst] = report.bursts
    assert burst["start"] is None and burst["peak_rate_per_s"] is None
    assert burst["file"] == "log_server.txt"
    assert burst["start_seq"] <= 1211 and burst["end_seq"] >= 1240
    assert burst["count"] == 30
    assert burst["server_events"] == {"hibernation_timeout": 30}
