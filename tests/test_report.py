"""The report as a reader gets it: sections with the right numbers, log text escaped, names redacted,
a markdown variant, the CLI, and the HTML file rendered by a real headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from prosody_analyze.bursts import find_bursts
from prosody_analyze.report import build_report, parse_quantity, write_report
from prosody_analyze.schema import EVENT_SCHEMA, METRIC_SCHEMA, SESSION_SCHEMA, conform

START = datetime(2026, 11, 28, 21, 0, 0, tzinfo=UTC)
# Log text that would run if it reached the page unescaped, in a table or inside a plot's JSON.
PAYLOAD = '</script><script>document.body.dataset.pwned="yes"</script><img src=x onerror="pwned()">'
STANZA = "<presence to='secret-board@conference.meet.acme-corp.test/alice' type='error'/>"
SECRETS = ["meet.acme-corp.test", "secret-board", "alice", "10.20.30.40", "bob", "chat-backend"]
BATCHES, PER_BATCH = 3, 10


def _sessions() -> pl.DataFrame:
    rows = []
    for batch in range(BATCHES):
        for index in range(PER_BATCH):
            first = START + timedelta(seconds=60 * batch + index)
            failed = batch == 2 and index >= 8
            name = "alice" if index == 0 else "bob" if index == 1 else f"user{batch}x{index}"
            rows.append(
                {
                    "origin": "client",
                    "session": f"swarm/{batch}-{index}",
                    "participant": f"swarm/{batch}-{index}",
                    "file": "capture/events.jsonl",
                    "batch": batch,
                    "jid": f"{name}@meet.acme-corp.test/res{batch}{index}",
                    "room": "secret-board",
                    "first_ts": first,
                    "last_ts": first + timedelta(seconds=300),
                    "connected_ts": first + timedelta(milliseconds=20),
                    "authenticated_ts": first + timedelta(milliseconds=50),
                    "bound_ts": first + timedelta(milliseconds=70),
                    "joined_ts": None if failed else first + timedelta(milliseconds=170 + index),
                    "left_ts": None if failed else START + timedelta(seconds=400),
                    "connect_s": 0.02,
                    "auth_s": 0.03,
                    "bind_s": 0.02,
                    "join_s": None if failed else 0.1 + index / 1000,
                    "outcome": "failed" if failed else "joined",
                    "failed_stage": "joined" if failed else None,
                    "error": f"HTTP 500 from 10.20.30.40 via conference.chat-backend {PAYLOAD}"
                    if failed
                    else None,
                    "http_status": 500 if failed else None,
                }
            )
    return conform(pl.DataFrame(rows), SESSION_SCHEMA)


def _events() -> pl.DataFrame:
    rows = [
        {
            "ts": START + timedelta(seconds=125 + i),
            "file": "capture/events.jsonl",
            "seq": i,
            "origin": "client",
            "kind": "http_error",
            "http_status": 500,
            "room": "secret-board",
            "error": PAYLOAD,
            "message": f"server rejected WebSocket connection: HTTP 500 {PAYLOAD}",
        }
        for i in range(4)
    ] + [
        {
            "ts": START + timedelta(seconds=130),
            "file": "prosody.log",
            "seq": 10,
            "origin": "server",
            "kind": "stanza_error",
            "room": "secret-board",
            "jid": "alice@meet.acme-corp.test/x",
            "message": STANZA,
        },
        {
            "ts": START,
            "file": "prosody.log",
            "seq": 11,
            "origin": "server",
            "kind": "unknown",
            "message": "hello",
            "source": "conference.chat-backend:muc",
        },
    ]
    return conform(pl.DataFrame(rows), EVENT_SCHEMA)


def _metrics() -> pl.DataFrame:
    samples = []
    for second in range(0, 420, 5):
        joined = (10, 20, 28)[min(second // 60, BATCHES - 1)] if second < 400 else 0  # 2 fail in batch 3
        ts = START + timedelta(seconds=second)
        samples += [
            {
                "ts": ts,
                "metric": "process_resident_memory_bytes",
                "labels": f'url="{PAYLOAD}"',
                "value": (40 + 2 * joined) * 2**20,
                "unit": "bytes",
            },
            {
                "ts": ts,
                "metric": "process_cpu_seconds_total",
                "labels": "",
                "value": second * 0.25,
                "unit": "seconds",
            },
            {
                "ts": ts,
                "metric": "container_network_transmit_bytes_total",
                "labels": 'pod="prosody-0"',
                "value": second * 4000.0,
                "unit": "bytes",
            },
        ]
    return conform(pl.DataFrame(samples).with_columns(file=pl.lit("capture/metrics.csv")), METRIC_SCHEMA)


def build_analysis(directory: Path, fit: bool = True, bursts: bool = True) -> Path:
    """An analysis directory as ingest (+ fit, bursts) leaves it, with hostile strings in the log text."""
    directory.mkdir(parents=True, exist_ok=True)
    _events().write_parquet(directory / "events.parquet")
    _sessions().write_parquet(directory / "sessions.parquet")
    _metrics().write_parquet(directory / "metrics.parquet")
    log = b"Nov 28 21:00:00 c2s1\tinfo\tClient connected\n"
    ingest = {
        "events": 6,
        "sessions": 30,
        "metrics": 252,
        "files": [
            {
                "path": "capture/prosody.log",
                "size_bytes": len(log),
                "sha256": hashlib.sha256(log).hexdigest(),
                "format": "prosody-file",
                "lines": 1,
                "events": 1,
                "unparsed": 2,
                "first_ts": "2026-11-28T21:00:00Z",
                "last_ts": "2026-11-28T21:07:00Z",
                "notes": [],
            }
        ],
        "captures": [
            {
                "path": "capture",
                "tool": "prosody-analyze swarm",
                "version": "0.1.0",
                "target": "wss://meet.acme-corp.test/xmpp-websocket",
                "domain": "meet.acme-corp.test",
                "host": "10.20.30.40",
                "start": "2026-11-28T21:00:00Z",
                "config": {"rooms": 1, "participants": 10, "batches": 3, "domain": "meet.acme-corp.test"},
            }
        ],
    }
    (directory / "ingest.json").write_text(json.dumps(ingest))
    if fit:
        (directory / "fit.json").write_text(
            json.dumps(
                {  # the shape prosody_analyze.fit documents, for plateaus at 10, 20 and 28 joined
                    "metric": "process_resident_memory_bytes",
                    "unit": "MiB",
                    "n": 3,
                    "slope": 2.0,
                    "intercept": 40.0,
                    "slope_ci95": [1.9, 2.1],
                    "intercept_ci95": [38.0, 42.0],
                    "r2": 0.99,
                    "points": [{"participants": p, "value": 40 + 2 * p} for p in (10, 20, 28)],
                    "robust": {"method": "theil-sen", "slope": 2.0, "intercept": 40.0},
                    "outliers": [],
                    "breakpoint": {"participants": 20, "kind": "bend", "slopes": [2.0, 2.5]},
                    "capacity": None,
                    "line": {"participants": [0, 28], "values": [40, 96]},
                    "band": {"participants": [0, 28], "low": [38, 94], "high": [42, 98]},
                }
            )
        )
    if bursts:  # the shape prosody_analyze.bursts documents
        proxy = {
            "name": "http_500_proxy",
            "explanation": "no Prosody traceback then: the proxy ran out of connections",
            "count": 4,
            "first_ts": "2026-11-28T21:02:05Z",
            "examples": [f"server rejected WebSocket connection: HTTP 500 {PAYLOAD}"],
        }
        burst = {
            "start": "2026-11-28T21:02:05Z",
            "end": "2026-11-28T21:02:09Z",
            "file": None,
            "start_seq": None,
            "end_seq": None,
            "count": 4,
            "expected": 0.05,
            "p_value": 1e-9,
            "peak_rate_per_s": 0.4,
            "kinds": {"http_error": 4},
            "http_statuses": {"500": 4},
            "files": ["capture/events.jsonl"],
            "batches": [2],
            "rooms": ["secret-board"],
            "participants_connected_at_start": 21,
            "server_events": {"traceback": 0},
            "examples": [f"HTTP 500 {PAYLOAD}", STANZA],
            "signatures": [proxy],
        }
        bursts_json = {
            "method": "Poisson test per 10 s bin",
            "bin_s": 10.0,
            "alpha": 0.001,
            "baseline_per_s": 0.001,
            "baseline_by_family": {},
            "errors_by_kind": {"http_error": 4},
            "untimed_files": [],
            "bursts": [burst],
            "signatures": [proxy],
        }
        (directory / "bursts.json").write_text(json.dumps(bursts_json))
    return directory


@pytest.fixture
def analysis(tmp_path: Path) -> Path:
    return build_analysis(tmp_path / "analysis")


def test_numbers_come_from_all_sessions(analysis: Path) -> None:
    report = build_report(analysis, limit="200Mi")
    assert report.summary["peak"]["client"] == {"joined": 28, "connected": 30}
    assert report.summary["failed_sessions"] == 2
    assert report.summary["duration_s"] == 429  # 21:00:00 to the last session's end, 21:07:09
    assert report.summary["http_500"] == 4
    assert [b["participants"] for b in report.batches] == [10, 10, 10]
    join = next(row for row in report.latency_table if row["stage"] == "join")
    assert join["count"] == 28 and round(join["max_ms"]) == 109
    cpu = next(s for s in report.metrics if s.group == "CPU")
    assert cpu.unit == "cores" and cpu.peak == pytest.approx(0.25)
    bandwidth = next(s for s in report.metrics if s.group == "bandwidth")
    assert bandwidth.unit == "kB/s" and bandwidth.peak == pytest.approx(4.0)
    # fit.json had no capacity: the fit module refits its points for --limit: (200 MiB - 40) / 2 MiB.
    assert report.fit["capacity"]["participants"] == pytest.approx(80.0)
    assert report.fit["capacity"]["limit"] == pytest.approx(200.0)


def test_html_has_every_section_and_no_network(analysis: Path, tmp_path: Path) -> None:
    result = write_report(analysis, tmp_path / "reports" / "r.html", limit="200Mi")
    page = Path(result.path).read_text()
    for title in (
        "Run summary",
        "Input files",
        "Participants over time",
        "Join latency by stage",
        "Resources under the load",
        "Memory vs participants",
        "Errors and bursts",
        "Failed sessions",
    ):
        assert f"<h2>{title}</h2>" in page
    assert hashlib.sha256(b"Nov 28 21:00:00 c2s1\tinfo\tClient connected\n").hexdigest() in page
    assert "http_500_proxy" in page and "the proxy ran out of connections" in page
    assert "prosody-analyze swarm 0.1.0" in page
    assert page.count('class="plot"') == 8
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page), "nothing may be fetched"
    assert "default-src 'none'" in page


def test_log_text_is_escaped_in_tables_and_plot_json(analysis: Path, tmp_path: Path) -> None:
    for format in ("html", "markdown"):
        text = Path(write_report(analysis, tmp_path / f"r.{format}", format=format).path).read_text()
        assert "<script>document.body" not in text and "<img src=x" not in text and "<presence" not in text
    page = (tmp_path / "r.html").read_text()
    assert "&lt;presence to=" in page  # a stanza in a burst's context shows as text
    assert "&lt;/script&gt;&lt;script&gt;document.body.dataset.pwned" in page  # tables
    assert 'url=\\"&lt;\\u002fscript&gt;&lt;script&gt;document' in page  # a metric label in the figure JSON
    # Every <script> the page opens is one of ours: plotly.js, one JSON block per figure, the loader.
    assert page.count("<script") == 1 + page.count('class="plot"') + 1


def test_redact_replaces_names_everywhere(analysis: Path, tmp_path: Path) -> None:
    for format in ("html", "markdown"):
        text = Path(
            write_report(analysis, tmp_path / f"r.{format}", format=format, redact=True).path
        ).read_text()
        text = text.replace(get_plotlyjs(), "")  # plotly.js names colours like "aliceblue"
        for secret in SECRETS:
            assert secret not in text, f"{secret} left in the {format} report"
        assert "domain-1.example" in text and "ip-1" in text
        assert format == "markdown" or "room-1" in text
    report = build_report(analysis, redact=True)
    failed_jids = [row["jid"] for row in report.failed]
    domain = report.captures[0]["domain"]
    assert re.fullmatch(r"domain-\d+\.example", domain)
    assert report.captures[0]["target"] == f"wss://{domain}/xmpp-websocket"  # same name, same pseudonym
    assert all(re.fullmatch(rf"user-\d+@{re.escape(domain)}/resource-\d+", jid) for jid in failed_jids)
    assert len(set(failed_jids)) == 2


def test_missing_analysis_outputs_are_computed_or_noted(tmp_path: Path) -> None:
    analysis = build_analysis(tmp_path / "a", fit=False, bursts=False)
    report = build_report(analysis)
    # Without bursts.json the bursts module's own detection is shown, with the signatures it names ...
    assert "computed for this report" in report.bursts_source
    assert report.burst_signatures == find_bursts(analysis, write=False).to_dict()["signatures"]
    assert [s["name"] for s in report.burst_signatures] == ["http_500_from_proxy"]
    assert not (analysis / "bursts.json").exists()
    # Without fit.json the fit module fits the plateaus itself (10, 20, 28 joined: 2 MiB each) ...
    assert "computed for this report" in report.fit_source
    assert report.fit["slope"] == pytest.approx(2.0, rel=0.05) and report.fit["n"] >= 3
    assert not (analysis / "fit.json").exists(), "the report writes nothing into the analysis directory"
    page = Path(write_report(analysis, tmp_path / "r.html").path).read_text()
    assert page.count("computed for this report") == 2
    # ... and says so when there are no metrics to fit.
    (analysis / "metrics.parquet").unlink()
    assert "prosody-analyze fit" in build_report(analysis).notes["fit"]


def test_plots_are_binned_but_numbers_are_not(tmp_path: Path) -> None:
    """A one-sample spike among 200 000 samples still shows as the peak, with at most 1500 plotted points."""
    analysis = build_analysis(tmp_path / "a")
    ts = pl.datetime_range(START, START + timedelta(seconds=199_999), "1s", eager=True)
    values = pl.Series([100 * 2**20] * ts.len()).scatter(123_457, 900 * 2**20)
    big = pl.DataFrame(
        {
            "ts": ts,
            "metric": "process_resident_memory_bytes",
            "labels": "",
            "value": values,
            "unit": "bytes",
            "file": "m.csv",
        }
    )
    conform(big, METRIC_SCHEMA).write_parquet(analysis / "metrics.parquet")
    ram = next(s for s in build_report(analysis).metrics if s.group == "RAM")
    assert ram.peak == 900 and max(ram.values) == 900
    assert len(ram.values) <= 1500


def test_quantities() -> None:
    assert parse_quantity("15000Mi") == 15000 * 2**20
    assert parse_quantity("1500m") == pytest.approx(1.5)
    assert parse_quantity("2") == 2


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prosody_analyze", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_cli_writes_to_reports_by_default(analysis: Path, tmp_path: Path) -> None:
    done = _cli(str(analysis), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = list((tmp_path / "reports").glob("*-prosody.html"))
    assert len(written) == 1 and json.loads(done.stdout)["size_bytes"] == written[0].stat().st_size


def test_cli_json_and_errors(analysis: Path, tmp_path: Path) -> None:
    done = _cli(str(analysis), "-o", str(tmp_path / "r.md"), "--format", "markdown", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["format"] == "markdown" and result["size_bytes"] == (tmp_path / "r.md").stat().st_size
    assert "| stage |" in (tmp_path / "r.md").read_text()
    missing = _cli(str(tmp_path / "nothing"), "-o", str(tmp_path / "x.html"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "not a directory" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    (analysis / "sessions.parquet").write_text("not parquet")
    broken = _cli(str(analysis), "-o", str(tmp_path / "x.html"))
    assert broken.returncode == 2 and "sessions.parquet is not a readable Parquet table" in broken.stderr
    bad_limit = _cli(str(analysis), "-o", str(tmp_path / "x.html"), "--limit", "lots")
    assert bad_limit.returncode == 2 and "--limit" in bad_limit.stderr
    assert not (tmp_path / "x.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (not in CI)"
)
def test_renders_in_headless_chromium(analysis: Path, tmp_path: Path) -> None:
    assert CHROMIUM, "CI must have chromium (scripts/run.sh installs it)"
    page = Path(write_report(analysis, tmp_path / "report.html", limit="200Mi").path)
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = done.stdout
    plots = re.findall(r'<div class="plot[^"]*" id="figure-(\d+)"', dom)
    assert len(plots) == 8
    assert f'data-plots-rendered="{len(plots)}"' in dom
    for number in plots:  # each plot div holds plotly's SVG with drawn traces
        chunk = dom.split(f'id="figure-{number}"', 1)[1].split('id="figure-', 1)[0]
        assert 'class="main-svg"' in chunk and re.search(r'class="(scatterlayer|barlayer)', chunk)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert "pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]


def test_scatter_pairs_samples_with_the_load_or_with_correlate(analysis: Path) -> None:
    """Each RSS sample gets the load in force (load.load_at), or correlate's pairing when it has run."""
    own = build_report(analysis).scatter
    assert max(own["participants"]) == 28 and {0, 10, 20} <= set(own["participants"])
    samples = pl.read_parquet(analysis / "metrics.parquet").filter(
        pl.col("metric") == "process_resident_memory_bytes"
    )
    samples.with_columns(joined=pl.lit(7, pl.Int64)).write_parquet(analysis / "correlated.parquet")
    assert set(build_report(analysis).scatter["participants"]) == {7}
