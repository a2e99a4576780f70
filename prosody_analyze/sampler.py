"""Server metrics during a run: Prosody's RSS/CPU from /proc and its OpenMetrics scrape, to metrics.csv.

Prosody 0.12's OpenMetrics has no process memory or CPU, so those come from
``/proc/<pid>`` (only possible when Prosody runs on this machine). Rows are
``ts,metric,labels,value`` (see :mod:`prosody_analyze.capture`), flushed after each
sample so a killed run keeps what was measured. Each scrape also writes
``prosody_analyze_scrape_up`` 1 or 0 (like Prometheus's ``up``): a failing scrape is
recorded that way and the run goes on.
"""

from __future__ import annotations

import csv
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CSV_COLUMNS = ("ts", "metric", "labels", "value")
SCRAPE_UP = "prosody_analyze_scrape_up"
RSS_METRIC = "process_resident_memory_bytes"
CPU_METRIC = "process_cpu_seconds_total"
SCRAPE_TIMEOUT_S = 2.0
# One sample per second for a day at most: a sampler someone forgot still ends.
MAX_SAMPLES = 86_400

_SAMPLE_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")


@dataclass(frozen=True)
class Sample:
    metric: str
    labels: str
    value: float


def parse_openmetrics(text: str) -> list[Sample]:
    """Samples of an OpenMetrics / Prometheus text exposition; comments and bad lines are skipped."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_LINE.match(line)
        if match is None:
            continue
        name, labels, raw_value = match.groups()
        try:
            value = float(raw_value)
        except ValueError:
            continue
        samples.append(Sample(name, labels or "", value))
    return samples


def read_process(pid: int) -> list[Sample]:
    """RSS (bytes) and CPU time (user+system seconds) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name may hold spaces: fields start after its closing parenthesis.
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_seconds = (int(fields[11]) + int(fields[12])) / ticks
    rss_bytes = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    labels = f'pid="{pid}"'
    return [Sample(RSS_METRIC, labels, float(rss_bytes)), Sample(CPU_METRIC, labels, cpu_seconds)]


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value) if not value.is_integer() else str(int(value))


class ServerSampler:
    """Samples every ``interval_s`` in a background thread until :meth:`stop` (or MAX_SAMPLES)."""

    def __init__(
        self,
        out_csv: Path,
        pid: int | None = None,
        metrics_url: str | None = None,
        interval_s: float = 1.0,
    ):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.out_csv = Path(out_csv)
        self.pid = pid
        self.metrics_url = metrics_url
        self.interval_s = interval_s
        self.samples_taken = 0
        self.rows_written = 0
        self.scrape_failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> ServerSampler:
        if self._thread is not None:
            raise RuntimeError("this sampler is already started")
        self.out_csv.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="server-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take one last sample (so the end of a run is measured) and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 2 * SCRAPE_TIMEOUT_S + 1)
            self._thread = None

    def sample_once(self) -> int:
        """Take one sample now and append it; returns the number of rows written."""
        ts = _iso_now()
        rows: list[Sample] = []
        if self.pid is not None:
            try:
                rows += read_process(self.pid)
            except (OSError, IndexError, ValueError) as error:
                self.last_error = f"process {self.pid}: {error}"
        if self.metrics_url is not None:
            rows += self._scrape()
        with self._lock:
            is_new = not self.out_csv.exists() or self.out_csv.stat().st_size == 0
            with open(self.out_csv, "a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                if is_new:
                    writer.writerow(CSV_COLUMNS)
                writer.writerows((ts, row.metric, row.labels, _format_value(row.value)) for row in rows)
            self.samples_taken += 1
            self.rows_written += len(rows)
        return len(rows)

    def _scrape(self) -> list[Sample]:
        labels = f'url="{self.metrics_url}"'
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=SCRAPE_TIMEOUT_S) as response:
                text = response.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError, ValueError) as error:
            self.scrape_failures += 1
            self.last_error = f"scrape {self.metrics_url}: {error}"
            return [Sample(SCRAPE_UP, labels, 0.0)]
        return [Sample(SCRAPE_UP, labels, 1.0), *parse_openmetrics(text)]

    def _run(self) -> None:
        next_at = time.monotonic()
        for _ in range(MAX_SAMPLES):
            self.sample_once()
            if self._stop.is_set():
                return
            next_at += self.interval_s
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                self.sample_once()
                return

    def __enter__(self) -> ServerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
