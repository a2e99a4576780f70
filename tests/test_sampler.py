import csv
import os
import time

import polars as pl

from prosody_analyze.sampler import ServerSampler, parse_openmetrics, read_process


def test_parses_the_real_prosody_scrape(fixtures):
    samples = parse_openmetrics((fixtures / "local-prosody" / "openmetrics_scrape.txt").read_text())
    by_key = {(s.metric, s.labels): s.value for s in samples}
    assert by_key[("prosody_mod_muc__live_room", 'host="conference.localhost"')] == 0
    assert by_key[("prosody_mod_smacks__tx_dropped_stanzas_bucket", 'host="localhost",le="+Inf"')] == 0
    assert not any(s.metric.startswith("#") for s in samples)


def test_bad_exposition_lines_are_skipped():
    text = 'ok_metric{a="1"} 2.5\nnot a sample line\nbad_value{a="1"} abc\nbare 7 1700000000\n'
    samples = parse_openmetrics(text)
    assert [(s.metric, s.value) for s in samples] == [("ok_metric", 2.5), ("bare", 7.0)]


def test_process_rss_and_cpu_from_proc():
    rss, cpu = read_process(os.getpid())
    assert rss.metric == "process_resident_memory_bytes" and rss.value > 10 * 2**20
    assert cpu.metric == "process_cpu_seconds_total" and cpu.value > 0


def test_samples_a_live_prosody_until_stopped(local_prosody, tmp_path):
    out = tmp_path / "metrics.csv"
    sampler = ServerSampler(out, pid=local_prosody.pid, metrics_url=local_prosody.metrics_url, interval_s=0.2)
    with sampler:
        time.sleep(0.7)
    rows_at_stop = out.read_text().count("\n")
    time.sleep(0.4)
    assert out.read_text().count("\n") == rows_at_stop, "the sampler kept writing after stop()"

    table = pl.read_csv(out)
    assert table.columns == ["ts", "metric", "labels", "value"]
    assert table["ts"].str.ends_with("Z").all()
    times = table["ts"].str.to_datetime(time_zone="UTC").unique()
    assert times.len() >= 3
    rss = table.filter(pl.col("metric") == "process_resident_memory_bytes")["value"]
    assert rss.min() > 2**20, "Prosody's RSS should be megabytes"
    assert table.filter(pl.col("metric") == "prosody_mod_muc__live_room").height >= 3
    assert table.filter(pl.col("metric") == "prosody_analyze_scrape_up")["value"].min() == 1


def test_a_failing_scrape_is_recorded_not_fatal(tmp_path):
    out = tmp_path / "metrics.csv"
    # Port 9 on loopback: nothing listens there, the connection is refused at once.
    sampler = ServerSampler(out, pid=os.getpid(), metrics_url="http://127.0.0.1:9/metrics", interval_s=0.1)
    with sampler:
        time.sleep(0.35)
    rows = list(csv.DictReader(out.open()))
    up = [float(r["value"]) for r in rows if r["metric"] == "prosody_analyze_scrape_up"]
    assert up and set(up) == {0.0}
    assert any(r["metric"] == "process_resident_memory_bytes" for r in rows), "RSS kept being sampled"
    assert sampler.scrape_failures == len(up)
