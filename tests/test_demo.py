import json
import subprocess
import sys

import polars as pl

from prosody_analyze.demo import DEMO_JSON, run_demo
from prosody_analyze.schema import scan_events


def test_quick_demo_via_proxy_records_the_500s_finds_the_burst_and_writes_the_report(tmp_path):
    report = tmp_path / "reports" / "demo.html"
    result = run_demo(
        tmp_path / "run",
        quick=True,
        via_proxy=True,
        report_path=report,
        progress=False,
        hold_s=4.0,
    )
    assert result.run_seconds < 90, "about 40 s here: a stuck stage would show"

    # The 500s nginx gave are in the capture and in the ingested events.
    assert result.http_500 > 0
    events = scan_events(f"{result.analysis_dir}/events.parquet").collect()
    refused = events.filter((pl.col("kind") == "http_error") & (pl.col("http_status") == 500))
    assert refused.height == result.http_500
    assert result.swarm["joined"] >= 30, "participants below the proxy threshold all get in"

    # The burst of 500s is found, and the RAM line fitted on the plateaus.
    refused_bursts = [burst for burst in result.bursts if "500" in json.dumps(burst["http_statuses"])]
    assert refused_bursts, result.bursts
    # ... and explained: no Prosody traceback at that time, so the 500s came from the proxy.
    assert any("proxy" in json.dumps(burst["signatures"]) for burst in refused_bursts)
    assert result.fit is not None and result.fit["points"] >= 3
    assert result.fit["base_mib"] > 1

    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") or html.lstrip().lower().startswith("<!doctype html>")
    assert "500" in html
    saved = json.loads((tmp_path / "run" / "analysis" / DEMO_JSON).read_text())
    assert saved["report_path"] == str(report)


def test_bad_demo_options_are_one_line_errors(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "prosody_analyze",
            "demo",
            "--quick",
            "--participants",
            "0",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "at least 1" in run.stderr
    assert not (tmp_path / "run").exists(), "nothing is started for a bad option"
