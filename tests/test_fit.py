"""fit: the study's RAM line, uncertainty, bends, outliers, capacity and plateaus from a real run."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from prosody_analyze.errors import UserError
from prosody_analyze.fit import MIB, find_plateaus, fit_linear, fit_resource
from prosody_analyze.ingest import ingest

STUDY_X = np.array([0, 100, 200, 300, 400], dtype=float)
STUDY_Y = 0.0588 * STUDY_X + 16.42


def test_study_plateaus_give_the_published_line():
    result = fit_linear(STUDY_X, STUDY_Y + np.array([0.05, -0.04, 0.02, -0.05, 0.03]), unit="MiB")
    assert result.slope == pytest.approx(0.0588, abs=5e-4)
    assert result.intercept == pytest.approx(16.42, abs=0.1)
    assert result.slope_ci95[0] < 0.0588 < result.slope_ci95[1]
    assert result.intercept_ci95[0] < 16.42 < result.intercept_ci95[1]
    assert result.r2 > 0.999
    assert result.robust["method"] == "theil-sen"
    assert result.robust["slope"] == pytest.approx(0.0588, abs=1e-3)
    assert result.breakpoint is None
    assert len(result.residuals) == 5


def test_bend_after_400_is_reported_and_a_straight_line_is_not():
    rng = np.random.default_rng(7)
    x = np.arange(0, 701, 50, dtype=float)
    straight = 0.0588 * x + 16.42 + rng.normal(0, 0.3, x.size)
    assert fit_linear(x, straight).breakpoint is None
    bent = straight + np.where(x > 400, 0.05 * (x - 400), 0)
    breakpoint = fit_linear(x, bent).breakpoint
    assert breakpoint is not None
    assert 350 <= breakpoint["participants"] <= 450
    assert breakpoint["bic_piecewise"] < breakpoint["bic_linear"]
    assert breakpoint["slopes"][1] > breakpoint["slopes"][0]


def test_one_bad_plateau_is_flagged_and_barely_moves_theil_sen():
    x = np.arange(0, 701, 50, dtype=float)
    y = 0.0588 * x + 16.42 + np.random.default_rng(3).normal(0, 0.2, x.size)
    y[5] += 6
    result = fit_linear(x, y)
    assert [o["participants"] for o in result.outliers] == [250.0]
    assert abs(result.robust["slope"] - 0.0588) < abs(result.slope - 0.0588) + 1e-9


def test_capacity_under_15000_mib_with_a_prediction_interval():
    x = np.arange(0, 501, 50, dtype=float)
    y = 0.0588 * x + 16.42 + np.random.default_rng(5).normal(0, 0.5, x.size)
    capacity = fit_linear(x, y, limit=15000.0).capacity
    assert capacity["participants"] == pytest.approx((15000 - 16.42) / 0.0588, rel=0.05)
    assert capacity["low"] < capacity["participants"] < capacity["high"]


def test_too_few_points_is_a_user_error():
    with pytest.raises(UserError):
        fit_linear([100, 100, 100], [1, 2, 3])


def _ramp(levels, seconds_per_level=30, rss=lambda p: (0.0588 * p + 16.42) * MIB):
    """A metric series sampled each second and sessions joining in steps of 100."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    load_rows, sample_rows = [], []
    for i, participants in enumerate(levels):
        step = start + timedelta(seconds=i * seconds_per_level)
        load_rows.append({"ts": step, "connected": participants, "joined": participants})
        for s in range(seconds_per_level):
            # Before settling the metric still lags at the previous level.
            lagging = levels[i - 1] if i and s < 5 else participants
            sample_rows.append({"ts": step + timedelta(seconds=s), "value": rss(lagging)})
    return pl.DataFrame(load_rows), pl.DataFrame(sample_rows)


def test_plateaus_drop_the_settling_samples():
    load, series = _ramp([0, 100, 200, 300, 400])
    plateaus = find_plateaus(series, load)
    assert plateaus["participants"].to_list() == [0, 100, 200, 300, 400]
    expected = [(0.0588 * p + 16.42) * MIB for p in (0, 100, 200, 300, 400)]
    assert plateaus["value"].to_list() == pytest.approx(expected)


@pytest.fixture(scope="module")
def swarm_analysis(tmp_path_factory):
    """A real swarm ramp (3 batches of 5) against a throwaway local Prosody, ingested."""
    base = tmp_path_factory.mktemp("swarm")
    command = [
        sys.executable,
        "-m",
        "prosody_analyze",
        "swarm",
        "--local",
        "--rooms",
        "1",
        "--participants",
        "5",
        "--batches",
        "3",
        "--batch-interval",
        "6s",
        "--duration",
        "6s",
        "--out",
        str(base / "capture"),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    ingest([base / "capture"], base / "analysis", progress=False)
    return base / "analysis"


def test_fit_resource_on_a_real_swarm_run_writes_fit_json(swarm_analysis):
    result = fit_resource(swarm_analysis, limit=15000 * MIB)
    written = json.loads((swarm_analysis / "fit.json").read_text())
    assert written["metric"] == "process_resident_memory_bytes"
    assert written["unit"] == "MiB"
    assert written["n"] == result.n >= 3
    participants = [point["participants"] for point in written["points"]]
    assert participants == sorted(participants)
    assert written["slope"] > 0  # Prosody's RSS grows with participants
    assert written["capacity"]["limit"] == 15000
    windows = written["plateaus"]  # where each point was read, to check it on a graph
    points = [(point["participants"], point["value"]) for point in written["points"]]
    assert [(w["participants"], w["value"]) for w in windows] == points
    assert all(w["start"] <= w["end"] and w["start"].endswith("Z") and w["samples"] >= 3 for w in windows)
    assert all(before["end"] < after["start"] for before, after in zip(windows, windows[1:], strict=False))


def test_participants_value_table(tmp_path):
    table = tmp_path / "ram.csv"
    rows = "".join(f"{int(p)},{v}\n" for p, v in zip(STUDY_X, STUDY_Y, strict=True))
    table.write_text("participants,value\n" + rows)
    result = fit_resource(table, out_dir=tmp_path / "out")
    assert result.slope == pytest.approx(0.0588)
    assert json.loads((tmp_path / "out" / "fit.json").read_text())["intercept"] == pytest.approx(16.42)


def test_cli_fit_with_a_kubernetes_limit(tmp_path):
    from typer.testing import CliRunner

    from prosody_analyze.cli import app

    table = tmp_path / "ram.csv"
    noisy = STUDY_Y + [0.05, -0.04, 0.02, -0.05, 0.03]
    rows = "".join(f"{int(p)},{v:.4f}\n" for p, v in zip(STUDY_X, noisy, strict=True))
    table.write_text("participants,value\n" + rows)
    runner = CliRunner()
    shown = runner.invoke(app, ["fit", str(table), "--limit", "15000Mi"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "KiB/participant" in shown.output and "capacity" in shown.output
    data = json.loads(runner.invoke(app, ["fit", str(table), "--limit", "15000Mi", "--json"]).output)
    assert data["unit"] == "MiB"
    assert data["capacity"]["participants"] == pytest.approx((15000 - 16.42) / 0.0588, rel=0.02)
    refused = subprocess.run(
        [sys.executable, "-m", "prosody_analyze", "fit", str(table), "--limit", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1


def test_idle_baseline_before_the_first_join_is_the_zero_point_and_connections_do_not_split_levels():
    load, series = _ramp([100, 200, 300])
    idle = pl.DataFrame(
        {"ts": [series["ts"][0] - timedelta(seconds=s) for s in (4, 3, 2, 1)], "value": [16.42 * MIB] * 4}
    )
    # Connections dropping mid-level (joined unchanged) must not cut the 200 level in two.
    churn = pl.DataFrame({"ts": [load["ts"][1] + timedelta(seconds=12)], "connected": [190], "joined": [200]})
    plateaus = find_plateaus(pl.concat([idle, series]), pl.concat([load, churn]).sort("ts"))
    assert plateaus["participants"].to_list() == [0, 100, 200, 300]
    assert plateaus["samples"].to_list()[0] == 4
    assert plateaus["value"][0] == pytest.approx(16.42 * MIB)


def test_cpu_counter_is_fitted_as_cores(swarm_analysis, tmp_path):
    result = fit_resource(swarm_analysis, metric="process_cpu_seconds_total", out_dir=tmp_path)
    assert result.unit == "cores"
    assert result.metric == "process_cpu_seconds:rate"
    # A rate (at most the 2 cores here), not CPU seconds counted since start.
    assert all(0 <= point["value"] < 2.5 for point in result.points)


def test_study_table_with_its_unit_in_the_header(fixtures):
    result = fit_resource(fixtures / "metrics" / "participants_ram.csv", limit="15000Mi")
    assert result.unit == "MiB" and result.notes == []
    assert result.slope == pytest.approx(0.0588, abs=1e-3)
    assert result.intercept == pytest.approx(16.42, abs=0.2)
    assert result.capacity["participants"] == pytest.approx((15000 - 16.42) / 0.0588, rel=0.02)
