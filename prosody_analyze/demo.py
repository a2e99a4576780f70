"""The whole study in one call: local Prosody (+ nginx) → swarm ramp → ingest → fit → bursts → report.

It replays the real study on this machine, on loopback only: participants are added in
batches (default 5 × 100 = 2 rooms × 50, one batch a minute) while Prosody's RSS/CPU and
OpenMetrics are sampled; each batch's plateau gives one (participants, RSS) point for the
RAM model. With ``via_proxy`` the swarm goes through Debian's nginx, which refuses a share
of WebSocket upgrades with HTTP 500 past a connection threshold, as the study's front proxy
did; ``bursts`` must find that burst and the report explain it.

Layout of ``out_dir``: ``capture/`` (what ``swarm --local`` leaves: events, metrics.csv,
prosody.log and Prosody's sandbox), ``nginx/`` (its config and logs), ``analysis/``
(``ingest`` output, ``correlated.parquet``, ``fit.json``, ``bursts.json``,
``demo.json``), and the report (``reports/<date>-demo.html`` by default).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .capture import EVENTS_JSONL, MANIFEST_FILE, METRICS_CSV, PROSODY_LOG
from .errors import UserError
from .local_prosody import LocalProsody
from .proxy import NginxProxy
from .sampler import RSS_METRIC, ServerSampler

DEMO_JSON = "demo.json"
# What `ingest` reads from the capture; Prosody's sandbox (config, data) sits beside them.
CAPTURE_FILES = (MANIFEST_FILE, EVENTS_JSONL, METRICS_CSV, PROSODY_LOG)
DOMAIN = "localhost"
MUC = f"conference.{DOMAIN}"
SAMPLE_INTERVAL_S = 1.0
MAX_SETTLE_S = 10.0
MAX_BURST_BIN_S = 10.0
BURST_SUMMARY_KEYS = (
    "start",
    "end",
    "count",
    "peak_rate_per_s",
    "kinds",
    "http_statuses",
    "participants_connected_at_start",
    "signatures",
)


@dataclass
class DemoPlan:
    """The ramp and the proxy's failure rule; times in seconds."""

    batches: int = 5
    rooms: int = 2
    participants: int = 50  # per room
    batch_interval_s: float = 60.0
    baseline_s: float | None = None  # Prosody idle before the first batch, the zero point (default:
    # the fit's settling time plus a few samples)
    hold_s: float = 60.0  # after the last join, so the last batch has a plateau too
    retries: int = 2  # like the study's clients kept alive by pm2, a refused join is retried
    proxy_threshold: int = 250  # client connections on nginx past which upgrades may fail
    proxy_fail_share: float = 0.5

    @classmethod
    def for_run(cls, quick: bool, **overrides: Any) -> DemoPlan:
        plan = (
            cls(
                batches=3,
                rooms=2,
                participants=10,
                batch_interval_s=10.0,
                hold_s=8.0,
                # Only the last batch crosses it: one burst against quiet bins, found reliably.
                proxy_threshold=45,
                proxy_fail_share=0.6,
            )
            if quick
            else cls()
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(plan, name, value)
        if min(plan.batches, plan.rooms, plan.participants) < 1:
            raise UserError("batches, rooms and participants must be at least 1")
        if plan.batch_interval_s <= 0 or plan.hold_s < 0 or (plan.baseline_s or 0) < 0:
            raise UserError("batch interval must be positive, baseline and hold not negative")
        if plan.baseline_s is None:
            plan.baseline_s = plan.settle_s + 4 * SAMPLE_INTERVAL_S
        return plan

    @property
    def burst_bin_s(self) -> float:
        """Error-count bins: a few per batch, so one batch's refusals stand out from quiet bins."""
        return min(MAX_BURST_BIN_S, self.batch_interval_s / 5)

    @property
    def settle_s(self) -> float:
        """Time after a batch before its RAM counts as a plateau: joins and retries are over by then."""
        return min(MAX_SETTLE_S, self.batch_interval_s / 3)

    @property
    def total(self) -> int:
        return self.batches * self.rooms * self.participants


@dataclass
class DemoResult:
    out_dir: str
    capture_dir: str
    analysis_dir: str
    report_path: str | None
    started_at: str
    ended_at: str | None = None
    run_seconds: float | None = None
    prosody_start_seconds: float | None = None
    via_proxy: bool = False
    plan: dict[str, Any] = field(default_factory=dict)
    swarm: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] | None = None
    bursts: list[dict[str, Any]] = field(default_factory=list)
    http_500: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_out_dir() -> Path:
    return Path("demo-run") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def default_report_path() -> Path:
    return Path("reports") / f"{datetime.now(UTC).strftime('%Y-%m-%d')}-demo.html"


def run_capture(plan: DemoPlan, out_dir: Path, via_proxy: bool, progress: bool, result: DemoResult) -> None:
    """Run the ramp against a fresh local Prosody (behind nginx with ``via_proxy``) into ``capture/``."""
    from .swarm import SwarmConfig, run_swarm

    capture = Path(result.capture_dir)
    with contextlib.ExitStack() as stack:
        # A Jitsi deployment has Jicofo answering conference requests: the local one says "ready" too.
        prosody = stack.enter_context(
            LocalProsody(capture, domain=DOMAIN, muc=MUC, answer_conference_requests=True)
        )
        result.prosody_start_seconds = round(prosody.start_seconds, 3)
        service = prosody.websocket_url
        if via_proxy:
            proxy = stack.enter_context(
                NginxProxy(
                    out_dir / "nginx",
                    prosody.http_port,
                    fail_share=plan.proxy_fail_share,
                    threshold=plan.proxy_threshold,
                )
            )
            service = proxy.websocket_url
        sampler = stack.enter_context(
            ServerSampler(
                capture / METRICS_CSV,
                pid=prosody.pid,
                metrics_url=prosody.metrics_url,
                interval_s=SAMPLE_INTERVAL_S,
            )
        )
        time.sleep(plan.baseline_s)
        config = SwarmConfig(
            domain=DOMAIN,
            muc=MUC,
            service=service,
            rooms=plan.rooms,
            participants=plan.participants,
            batches=plan.batches,
            batch_interval=plan.batch_interval_s,
            duration=plan.hold_s,
            retries=plan.retries,
            room_prefix="demo",
        )
        summary = run_swarm(config, capture, progress=progress)
        result.swarm = summary.to_dict()
        sampler.stop()
        if not prosody.running:
            raise UserError(f"Prosody died during the run; see {prosody.log_path}")


def run_demo(
    out_dir: Path | None = None,
    quick: bool = False,
    via_proxy: bool = False,
    report_path: Path | None = None,
    progress: bool = True,
    **plan_overrides: Any,
) -> DemoResult:
    """Run the study end to end on this machine and write the report; see the module docstring.

    ``plan_overrides`` are :class:`DemoPlan` fields (``batches``, ``participants``, ``proxy_threshold``…).
    """
    from .ingest import ingest
    from .report import write_report

    plan = DemoPlan.for_run(quick, **plan_overrides)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir()
    report_path = Path(report_path) if report_path is not None else default_report_path()
    began = time.monotonic()
    result = DemoResult(
        out_dir=str(out_dir),
        capture_dir=str(out_dir / "capture"),
        analysis_dir=str(out_dir / "analysis"),
        report_path=str(report_path),
        started_at=_utc_now(),
        via_proxy=via_proxy,
        plan=asdict(plan),
    )
    run_capture(plan, out_dir, via_proxy, progress, result)
    capture, analysis = Path(result.capture_dir), Path(result.analysis_dir)
    ingest(
        [capture / name for name in CAPTURE_FILES if (capture / name).exists()], analysis, progress=progress
    )
    analyse(analysis, plan, result)
    title = f"prosody-analyze demo: {plan.batches} × {plan.rooms * plan.participants} participants"
    write_report(analysis, report_path, title=title + (" via nginx" if via_proxy else ""))
    result.ended_at = _utc_now()
    result.run_seconds = round(time.monotonic() - began, 1)
    (analysis / DEMO_JSON).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result


def count_http_500(analysis: Path) -> int:
    """Refused WebSocket upgrades the clients saw (every attempt, retries included)."""
    import polars as pl

    from .schema import EVENTS_FILE, scan_events

    return (
        scan_events(analysis / EVENTS_FILE)
        .filter(pl.col("origin") == "client", pl.col("kind") == "http_error", pl.col("http_status") == 500)
        .select(pl.len())
        .collect()
        .item()
    )


def analyse(analysis: Path, plan: DemoPlan, result: DemoResult) -> None:
    """The analysis commands on the ingested capture, leaving their files for the report."""
    from .bursts import find_bursts
    from .correlate import correlate
    from .fit import fit_resource

    result.http_500 = count_http_500(analysis)
    correlate(analysis, out_dir=analysis)  # correlated.parquet: every sample with the load at its time
    found = find_bursts(analysis, bin=plan.burst_bin_s).to_dict()
    result.bursts = [{key: burst.get(key) for key in BURST_SUMMARY_KEYS} for burst in found["bursts"]]
    try:
        fitted = fit_resource(analysis, metric=RSS_METRIC, settle_s=plan.settle_s)
    except UserError as error:  # too few plateaus (e.g. every join refused): the report says so
        result.fit = {"error": str(error)}
    else:
        fitted_ci = fitted.to_dict()["slope_ci95"]  # null where the interval is not finite
        result.fit = {
            "kib_per_participant": fitted.slope * 1024,
            "base_mib": fitted.intercept,
            "r2": fitted.r2,
            "points": fitted.n,
            "slope_ci95_kib": [None if bound is None else bound * 1024 for bound in fitted_ci],
        }
