"""Reading metrics exports into one long table (METRIC_SCHEMA, UTC, base units)."""

import json
import os
import warnings
from datetime import UTC, datetime

import polars as pl
import pytest

from prosody_analyze.errors import UserError
from prosody_analyze.metrics import (
    NaiveDatesWarning,
    UnreadValuesWarning,
    rate,
    read_metrics,
    read_points,
    with_rates,
)
from prosody_analyze.schema import METRIC_SCHEMA

MIB = 2**20
START = datetime(2026, 11, 28, 19, 56, tzinfo=UTC)  # the samples' first time (UTC)


@pytest.fixture
def metrics_dir(fixtures):
    return fixtures / "metrics"


def _series(table: pl.DataFrame, metric: str) -> pl.DataFrame:
    return table.filter(pl.col("metric") == metric).sort("ts")


def test_grafana_joined_raw_two_frames_epoch_ms(metrics_dir):
    table = read_metrics(metrics_dir / "grafana_joined_raw.csv")
    assert table.schema == pl.Schema(METRIC_SCHEMA)
    ram = _series(table, "container_memory_working_set_bytes")
    assert ram["labels"].unique().to_list() == ['container="prosody",pod="prosody-0"']
    assert ram["unit"].unique().to_list() == ["bytes"]
    assert ram.height == 30 and ram["ts"][0] == START
    # The study's line: 16.42 MiB idle, + 0.0588 MiB per participant, 400 at the top.
    assert ram["value"][0] / MIB == pytest.approx(16.42, abs=0.01)
    assert ram["value"].max() / MIB == pytest.approx(16.42 + 0.0588 * 400, abs=0.01)
    assert _series(table, "prosody-0 CPU").height == 30  # the second frame, after the blank line


@pytest.mark.parametrize("name", ["grafana_formatted.csv", "grafana_excel.csv"])
def test_grafana_formatted_local_dates_and_units(metrics_dir, name):
    table = read_metrics(metrics_dir / name, tz="Europe/Paris")
    assert set(table["metric"].unique()) == {"WSS", "CPU", "Transmit"}
    wss, transmit = _series(table, "WSS"), _series(table, "Transmit")
    assert wss["ts"][0] == START  # 20:56 in Paris in November is 19:56 UTC
    assert wss["unit"][0] == "bytes" and wss["value"][0] == pytest.approx(16.4 * MIB)
    assert transmit["unit"][0] == "bytes/s" and transmit["value"].max() == pytest.approx(30_900)
    assert _series(table, "CPU")["value"].max() == pytest.approx(0.162)


def test_local_dates_without_tz_are_taken_as_utc_with_a_warning(metrics_dir):
    with pytest.warns(NaiveDatesWarning, match="grafana_formatted.csv: dates without a UTC offset"):
        table = read_metrics(metrics_dir / "grafana_formatted.csv")
    assert _series(table, "WSS")["ts"][0] == datetime(2026, 11, 28, 20, 56, tzinfo=UTC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a zone given, or dates with an offset: nothing to warn of
        read_metrics(metrics_dir / "grafana_formatted.csv", tz="Europe/Paris")


def test_old_grafana_sep_line_series_time_value(metrics_dir):
    table = read_metrics(metrics_dir / "grafana_sep_series.csv")
    assert table["metric"].unique().to_list() == ["prosody-0 WSS"]
    assert table.height == 30 and table["ts"][0] == START


def test_prometheus_query_range_matrix_with_labels(metrics_dir):
    table = read_metrics(metrics_dir / "prometheus_query_range.json")
    ram = _series(table, "container_memory_working_set_bytes")
    assert ram["labels"].n_unique() == 2  # two pods
    assert 'pod="prosody-0"' in ram["labels"][0] or 'pod="prosody-0"' in ram["labels"][1]
    cpu = _series(table, "container_cpu_usage_seconds_total")
    assert cpu["unit"][0] == "seconds" and cpu.height == 30 and cpu["ts"][0] == START


def test_cpu_counter_rate_is_cores(metrics_dir):
    table = read_metrics(metrics_dir / "prometheus_query_range.json")
    cores = rate(table, "container_cpu_usage_seconds_total")
    assert cores["metric"][0] == "container_cpu_usage_seconds:rate"
    assert cores["unit"].unique().to_list() == ["cores"]
    # The fixture's counter grows by (0.002 + 0.0004 × participants) core-seconds per second.
    assert cores["value"].min() == pytest.approx(0.002) and cores["value"].max() == pytest.approx(0.162)
    rated = with_rates(table)
    assert "container_cpu_usage_seconds_total" not in rated["metric"].to_list()
    assert rated.filter(pl.col("metric") == "container_memory_working_set_bytes").height == 60


def test_rate_drops_the_sample_at_a_counter_reset():
    ts = pl.datetime_range(START, START.replace(minute=57), "10s", eager=True, time_zone="UTC")
    values = [0.0, 10.0, 20.0, 1.0, 11.0, 21.0, 31.0]
    frame = pl.DataFrame(
        {"ts": ts, "metric": "x_total", "labels": "", "value": values, "unit": "", "file": "f"},
        schema=METRIC_SCHEMA,
    )
    rated = rate(frame, "x_total")
    assert rated["value"].to_list() == [1.0] * 5  # the reset's sample is gone, no negative rate
    assert rated["unit"][0] == "/s"


def test_plain_timestamp_value_unsorted_duplicates_gaps_extra_column(metrics_dir):
    unread = r"1 value\(s\) not understood, left out \(e.g. 'gap' in comment\)"  # a note, not a number
    with pytest.warns(UnreadValuesWarning, match=unread):
        table = read_metrics(metrics_dir / "ram_timestamp_value.csv")
    assert table["metric"].unique().to_list() == ["ram_timestamp_value"]  # a bare "value" takes the file name
    assert table["ts"].is_sorted() and table["ts"].n_unique() == table.height == 8
    assert table["value"].null_count() == 0


def test_real_openmetrics_scrape_takes_file_time(fixtures, tmp_path):
    scrape = tmp_path / "scrape.txt"
    scrape.write_bytes((fixtures / "local-prosody" / "openmetrics_scrape.txt").read_bytes())
    os.utime(scrape, (1_795_899_800, 1_795_899_800))
    table = read_metrics(scrape)
    assert table["ts"].unique().to_list() == [datetime.fromtimestamp(1_795_899_800, UTC)]
    assert not table["metric"].str.ends_with("_created").any()
    rooms = table.filter(pl.col("metric") == "prosody_mod_muc__live_room")
    assert rooms.height == 1 and rooms["labels"][0] == 'host="conference.localhost"'
    buckets = table.filter(pl.col("metric") == "prosody_mod_smacks__tx_dropped_stanzas_bucket")["labels"]
    assert buckets.str.contains('le="+Inf"', literal=True).any()


def test_exposition_with_per_sample_timestamps(tmp_path):
    scrape = tmp_path / "node.prom"
    scrape.write_text(
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes 17000000 1795899783000\n"
        "process_resident_memory_bytes 18000000 1795899793000\n"
        "this line is broken\n"
    )
    table = read_metrics(scrape)
    assert table["value"].to_list() == [17e6, 18e6]
    assert table["ts"][1] == datetime.fromtimestamp(1_795_899_793, UTC)
    assert table["unit"][0] == "bytes"


def test_swarm_metrics_csv(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "ts,metric,labels,value\n"
        '2026-11-29T01:26:09.892Z,process_resident_memory_bytes,pid="6891",16601088\n'
        '2026-11-29T01:26:10.892Z,process_resident_memory_bytes,pid="6891",16800000\n'
        "2026-11-29T01:26:10.892Z,prosody_analyze_scrape_up,,0\n"
        "garbage\n"
    )
    table = read_metrics(path)
    assert table.height == 3
    assert _series(table, "process_resident_memory_bytes")["unit"].to_list() == ["bytes", "bytes"]


def test_read_points_header_unit_gives_bytes(metrics_dir):
    participants, values, unit = read_points(metrics_dir / "participants_ram.csv")
    assert participants == [0, 100, 200, 300, 400]
    assert unit == "bytes" and values[0] / MIB == pytest.approx(16.42)


def test_read_points_cells_with_units_and_bad_rows(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("participants,ram\n0,16.4 MiB\nn/a,1 MiB\n100,22.3 MiB\n200,\n")
    with pytest.warns(UnreadValuesWarning, match=r"1 row\(s\) not understood, left out \(e.g. 'n/a,1 MiB'\)"):
        participants, values, unit = read_points(path)  # "200," is a missing value, not a bad row
    assert participants == [0, 100] and unit == "bytes"
    assert values[1] == pytest.approx(22.3 * MIB)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hello world\nthis is a log\n", "not metrics"),
        ('{"status": "error", "error": "bad query"}', "bad query"),
        ('{"data": {"resultType": "matrix", "result": []}}', "no series"),
        ("{broken", "broken JSON"),
        ("time,value\n2026-11-28T19:56:00Z,\n", "no metric samples"),
    ],
)
def test_not_metrics_is_one_line_user_error(tmp_path, content, message):
    path = tmp_path / "thing.txt"
    path.write_text(content)
    with pytest.raises(UserError) as error:
        read_metrics(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_participants_table_is_pointed_at_fit(metrics_dir):
    with pytest.raises(UserError, match="participants,value"):
        read_metrics(metrics_dir / "participants_ram.csv")


def test_binary_file_and_bad_tz_refused(tmp_path, metrics_dir):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01\x02binary\x00" * 40)
    with pytest.raises(UserError, match="binary"):
        read_metrics(blob)
    with pytest.raises(UserError, match="time zone"):
        read_metrics(metrics_dir / "grafana_formatted.csv", tz="Mars/Olympus")


def test_prometheus_vector_answer(tmp_path):
    path = tmp_path / "now.json"
    path.write_text(
        json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {"metric": {"__name__": "up", "job": "prosody"}, "value": [1795899783.5, "1"]}
                    ],
                },
            }
        )
    )
    table = read_metrics(path)
    assert table.row(0, named=True)["labels"] == 'job="prosody"'
    assert table["ts"][0] == datetime(2026, 11, 28, 21, 3, 3, 500000, tzinfo=UTC)


def test_grafana_header_with_labels_only_takes_the_file_name(tmp_path):
    path = tmp_path / "wss.csv"
    path.write_text('"Time","{container=""prosody"",pod=""prosody-1""}"\r\n1795899783000,17000000\r\n')
    table = read_metrics(path)
    assert table.row(0, named=True) | {"file": None} == {
        "ts": datetime(2026, 11, 28, 21, 3, 3, tzinfo=UTC),
        "metric": "wss",
        "labels": 'container="prosody",pod="prosody-1"',
        "value": 17e6,
        "unit": "",
        "file": None,
    }
