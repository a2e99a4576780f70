"""correlate: every metric sample gets the participants in force at its time; clock offsets found."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from prosody_analyze.correlate import CORRELATED_FILE, clock_offset, correlate
from prosody_analyze.errors import UserError
from prosody_analyze.schema import SESSION_SCHEMA, SESSIONS_FILE, conform

MIB = 2**20
START = datetime(2026, 11, 28, 19, 56, tzinfo=UTC)  # first sample of the fixtures in tests/fixtures/metrics


def _sessions(origin: str, joined: list[datetime], left: datetime, jids=None, rooms=None) -> pl.DataFrame:
    count = len(joined)
    return conform(
        pl.DataFrame(
            {
                "origin": [origin] * count,
                "session": [f"{origin}-{i}" for i in range(count)],
                "jid": jids if jids is not None else [None] * count,
                "room": rooms if rooms is not None else ["room-0"] * count,
                "first_ts": [t - timedelta(seconds=1) for t in joined],
                "connected_ts": [t - timedelta(seconds=1) for t in joined],
                "joined_ts": joined,
                "left_ts": [left] * count,
                "last_ts": [left] * count,
            }
        ),
        SESSION_SCHEMA,
    )


def _study_ramp(tmp_path):
    """400 clients joining 100 at a time every 2 minutes, as the fixtures' RAM plateaus."""
    joined = [START + timedelta(seconds=120 * step - 1) for step in range(1, 5) for _ in range(100)]
    analysis = tmp_path / "analysis"
    analysis.mkdir()
    _sessions("client", joined, START + timedelta(seconds=600)).write_parquet(analysis / SESSIONS_FILE)
    return analysis


def test_grafana_formatted_export_lines_up_with_the_ramp(tmp_path, fixtures):
    analysis = _study_ramp(tmp_path)
    result = correlate(
        analysis,
        [fixtures / "metrics" / "grafana_formatted.csv"],
        out_dir=analysis,
        tz="Europe/Paris",
        every="2m",
        tolerance="3m",
    )  # the idle samples 2 min before
    table = pl.read_parquet(analysis / CORRELATED_FILE)
    assert table.columns == ["ts", "metric", "labels", "unit", "value", "connected", "joined", "file"]
    wss = table.filter(pl.col("metric") == "WSS")
    assert wss.height == 30 and wss["joined"].null_count() == 0
    assert sorted(wss["joined"].unique()) == [0, 100, 200, 300, 400]
    # Each sample is the study's line at the participants attached to it (values rounded to 0.1 MiB).
    expected = (16.42 + 0.0588 * wss["joined"]) * MIB
    assert ((wss["value"] - expected).abs() <= 0.051 * MIB).all()
    assert result.load_source == "client" and result.clock is None
    top = result.intervals.filter(pl.col("joined") == 400)
    assert top.height >= 1 and top["WSS"][0] == pytest.approx((16.42 + 0.0588 * 400) * MIB, rel=2e-3)
    assert result.units["Transmit"] == "bytes/s"


def test_wrong_time_zone_leaves_samples_without_load(tmp_path, fixtures):
    analysis = _study_ramp(tmp_path)
    result = correlate(analysis, [fixtures / "metrics" / "grafana_formatted.csv"], tz="America/New_York")
    assert result.samples_without_load == result.samples  # six hours off: outside the run


def test_tolerance_bounds_the_logged_period(tmp_path):
    analysis = tmp_path / "a"
    analysis.mkdir()
    _sessions("client", [START + timedelta(seconds=10)], START + timedelta(seconds=60)).write_parquet(
        analysis / SESSIONS_FILE
    )
    ram = tmp_path / "ram.csv"
    times = [START + timedelta(seconds=s) for s in (-100, -20, 30, 70, 200)]
    ram.write_text("time,value\n" + "".join(f"{t:%Y-%m-%dT%H:%M:%SZ},{i}\n" for i, t in enumerate(times)))
    table = correlate(analysis, [ram], tolerance="30s").correlated.sort("ts")
    assert table["joined"].to_list() == [None, 0, 1, 0, None]
    wide = correlate(analysis, [ram], tolerance="5m").correlated.sort("ts")
    assert wide["joined"].to_list() == [0, 0, 1, 0, 0]


def test_cpu_counter_is_shown_as_cores(tmp_path, fixtures):
    analysis = _study_ramp(tmp_path)
    result = correlate(analysis, [fixtures / "metrics" / "prometheus_query_range.json"])
    cpu = result.correlated.filter(pl.col("metric") == "container_cpu_usage_seconds:rate")
    assert cpu["unit"].unique().to_list() == ["cores"]
    at_400 = cpu.filter(pl.col("joined") == 400)["value"]
    assert at_400.len() > 0 and at_400.max() == pytest.approx(0.002 + 0.0004 * 400)
    assert result.out_path is None  # nothing written without out_dir


def test_clock_offset_from_shifted_client_and_server_by_jid():
    server_joins = [START + timedelta(seconds=3 * i, milliseconds=137 * i) for i in range(20)]
    jids = [f"user{i}@localhost/r" for i in range(20)]
    skew = timedelta(seconds=7, milliseconds=500)
    server = _sessions("server", server_joins, START + timedelta(minutes=5), jids=jids)
    client = _sessions("client", [t + skew for t in server_joins], START + timedelta(minutes=5), jids=jids)
    offset = clock_offset(pl.concat([client, server]))
    assert offset.matched_by == "jid" and offset.pairs == 20
    assert offset.seconds == pytest.approx(7.5, abs=1e-6) and offset.spread_s == pytest.approx(0)
    assert clock_offset(client) is None


def test_clock_offset_without_jids_matches_joins_in_order_per_room():
    server_joins = [START + timedelta(seconds=2 * i, milliseconds=250) for i in range(10)]
    rooms = ["a", "b"] * 5
    server = _sessions("server", server_joins, START + timedelta(minutes=5), rooms=rooms)
    client_joins = [t - timedelta(seconds=4) for t in server_joins]
    client = _sessions("client", client_joins, START + timedelta(minutes=5), rooms=rooms)
    offset = clock_offset(pl.concat([client, server]))
    assert offset.matched_by == "order in room" and offset.pairs == 10
    assert offset.seconds == pytest.approx(-4.0, abs=1e-6)


def test_clock_offset_with_whole_second_server_times_is_within_half_a_second():
    client_joins = [START + timedelta(seconds=i, milliseconds=100 * i) for i in range(10)]
    jids = [f"u{i}@localhost/r" for i in range(10)]
    server_joins = [t.replace(microsecond=0) for t in client_joins]  # Prosody's file log: whole seconds
    sessions = pl.concat(
        [
            _sessions("client", client_joins, START + timedelta(minutes=1), jids=jids),
            _sessions("server", server_joins, START + timedelta(minutes=1), jids=jids),
        ]
    )
    offset = clock_offset(sessions)
    assert offset.resolution_s == 1.0 and abs(offset.seconds) <= 0.5


def test_clock_offset_is_applied_to_metrics_on_the_servers_clock(tmp_path):
    """The clients' clock runs 30 s ahead: a Prometheus sample taken 5 s after the server saw the
    join (server clock) counts the participant, once read against the clients' clock; a sample on
    the clients' clock (--metrics-clock client, or the capture's own metrics) is not moved."""
    from prosody_analyze.schema import METRIC_SCHEMA, METRICS_FILE

    analysis = tmp_path / "analysis"
    analysis.mkdir()
    jids = ["u0@localhost/r"]
    seen = START + timedelta(seconds=10, milliseconds=250)  # by the server (a log with sub-second times)
    server = _sessions("server", [seen], START + timedelta(seconds=90), jids=jids)
    client = _sessions("client", [seen + timedelta(seconds=30)], START + timedelta(seconds=120), jids=jids)
    pl.concat([client, server]).write_parquet(analysis / SESSIONS_FILE)
    sample = START + timedelta(seconds=15)
    prometheus = tmp_path / "ram.csv"
    prometheus.write_text(f"time,value\n{sample:%Y-%m-%dT%H:%M:%SZ},1\n")
    own = {"ts": [sample], "metric": ["process_resident_memory_bytes"], "labels": [""], "value": [2.0]}
    own_table = pl.DataFrame(own).with_columns(unit=pl.lit("bytes"), file=pl.lit("metrics.csv"))
    conform(own_table, METRIC_SCHEMA).write_parquet(analysis / METRICS_FILE)

    result = correlate(analysis, [prometheus])
    assert result.clock.seconds == pytest.approx(30) and result.clock_applied_s == pytest.approx(30)
    rows = dict(result.correlated.select("value", "joined").iter_rows())
    assert rows == {1.0: 1, 2.0: 0}  # the file's sample is moved; the capture's own is not

    unmoved = correlate(analysis, [prometheus], metrics_clock="client")
    assert unmoved.clock_applied_s == 0
    assert dict(unmoved.correlated.select("value", "joined").iter_rows()) == {1.0: 0, 2.0: 0}
    with pytest.raises(UserError, match="--metrics-clock"):
        correlate(analysis, [prometheus], metrics_clock="prometheus")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tolerance": "soon"}, "--tolerance"),
        ({"every": "0s"}, "--every"),
        ({"tz": "Nowhere/City"}, "time zone"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, kwargs, message):
    analysis = _study_ramp(tmp_path)
    with pytest.raises(UserError, match=message):
        correlate(analysis, [], **kwargs)


def test_missing_sessions_or_metrics_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="ingest"):
        correlate(tmp_path, [])
    analysis = _study_ramp(tmp_path)
    with pytest.raises(UserError, match="nothing to correlate"):
        correlate(analysis, [])


def test_cli_json_and_table(tmp_path, fixtures):
    from typer.testing import CliRunner

    from prosody_analyze.cli import app

    analysis = _study_ramp(tmp_path)
    export = str(fixtures / "metrics" / "grafana_joined_raw.csv")
    runner = CliRunner()
    run = runner.invoke(
        app, ["correlate", str(analysis), "--metrics", export, "--every", "1m", "--tolerance", "3m", "--json"]
    )
    assert run.exit_code == 0, run.output
    answer = json.loads(run.stdout)
    assert (analysis / CORRELATED_FILE).is_file() and answer["samples"] == 60
    assert max(row["joined"] for row in answer["intervals"]) == 400
    table = runner.invoke(
        app, ["correlate", str(analysis), "--metrics", export, "--every", "2m"], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0 and "MiB" in table.stdout and "2026-11-28 19:58:00" in table.stdout
    assert "[bytes]" in table.stdout  # the unit in the header, not eaten as rich markup


def test_cli_warns_in_one_line_when_dates_without_offset_are_taken_as_utc(tmp_path, fixtures):
    analysis = _study_ramp(tmp_path)
    export = fixtures / "metrics" / "grafana_formatted.csv"
    command = [sys.executable, "-m", "prosody_analyze", "correlate", str(analysis), "--metrics", str(export)]
    run = lambda *options: subprocess.run([*command, *options], capture_output=True, text=True, timeout=60)  # noqa: E731
    naive = run("--json")
    assert naive.returncode == 0 and json.loads(naive.stdout)["samples"] > 0
    assert naive.stderr.splitlines() == [
        f"prosody-analyze: warning: {export}: dates without a UTC offset, taken as UTC; "
        "pass --tz with the zone of the export"
    ]
    zoned = run("--tz", "Europe/Paris", "--json")
    assert zoned.returncode == 0 and zoned.stderr == ""


def test_cli_error_is_one_line_exit_2(tmp_path):
    analysis = _study_ramp(tmp_path)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "prosody_analyze",
            "correlate",
            str(analysis),
            "--metrics",
            str(tmp_path / "x.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr


def test_load_at_times_equals_the_step_table_as_of(tmp_path):
    """The binary-search count gives what load.load_at(load_over_time) gives, odd sessions included."""
    import numpy as np

    from prosody_analyze.correlate import load_at_times
    from prosody_analyze.load import load_at, load_over_time

    rng = np.random.default_rng(4)
    count = 500
    offsets = pl.DataFrame(
        {
            "start_s": rng.integers(0, 600, count),
            "join_s": rng.integers(0, 10, count),
            "left_s": rng.integers(
                -40, 300, count
            ),  # negative: ends before it started; below -30: never left
        }
    )
    first = pl.lit(START) + pl.duration(seconds="start_s")
    sessions = conform(
        offsets.select(
            origin=pl.lit("server"),
            first_ts=first,
            joined_ts=pl.when(pl.col("join_s") < 8).then(first + pl.duration(seconds="join_s")),
            left_ts=pl.when(pl.col("left_s") > -30).then(first + pl.duration(seconds="left_s")),
            last_ts=first + pl.duration(seconds=1),
        ),
        SESSION_SCHEMA,
    )
    times = pl.datetime_range(
        START - timedelta(seconds=5), START + timedelta(seconds=1000), "3s", eager=True, time_zone="UTC"
    ).alias("ts")
    connected, joined_now, span = load_at_times(sessions, times)
    expected = load_at(load_over_time(sessions), times.to_frame())
    assert connected.to_list() == expected["connected"].to_list()
    assert joined_now.to_list() == expected["joined"].to_list()
    assert span == (load_over_time(sessions)["ts"].min(), load_over_time(sessions)["ts"].max())


def test_real_swarm_run_against_local_prosody(tmp_path):
    """A real ramp (2 batches of 3) on a throwaway Prosody: its own RSS/CPU samples get the load."""
    from prosody_analyze.ingest import ingest

    command = [
        sys.executable,
        "-m",
        "prosody_analyze",
        "swarm",
        "--local",
        "--rooms",
        "1",
        "--participants",
        "3",
        "--batches",
        "2",
        "--batch-interval",
        "3s",
        "--duration",
        "3s",
        "--out",
        str(tmp_path / "capture"),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    analysis = tmp_path / "analysis"
    ingest([tmp_path / "capture"], analysis, progress=False)
    result = correlate(analysis, [], out_dir=analysis, every="1s")
    table = pl.read_parquet(analysis / CORRELATED_FILE)
    rss = table.filter(pl.col("metric") == "process_resident_memory_bytes")
    assert rss.height > 3 and set(rss["joined"].drop_nulls()) >= {0, 3, 6}
    cpu = table.filter(pl.col("metric") == "process_cpu_seconds:rate")
    assert cpu["unit"].unique().to_list() == ["cores"] and (cpu["value"] >= 0).all()
    # Same machine, same clock: the estimate is within Prosody's one-second log resolution.
    assert result.clock is not None and result.clock.pairs == 6 and abs(result.clock.seconds) < 1.0
    assert result.intervals["joined"].max() == 6 and any(unit == "bytes" for unit in result.units.values())
