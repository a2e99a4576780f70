"""Swarm benchmark: how many participants one process joins, how fast, in how much memory.

Loopback only, against a sandboxed local Prosody (Debian's prosody package). Two runs, each
bounded in count and time:

1. ``rate``: 1000 participants (20 rooms × 50) all at once (the connection cap paces them):
   time to all joined, joins/s, client peak RSS and RSS per participant, Prosody RSS and CPU.
2. ``hold``: 2000 participants (40 rooms × 50) held in one process.
3. ``online``: the 1000 of ``rate`` without joining the MUC, and ``small-rooms``: 1000 in
   rooms of 10. They show the client's own headroom: in rooms of 50 Prosody's presence fan-out
   (and mod_smacks copying every stanza) keeps its single core busy, and that, not the client,
   sets the join rate.

Targets (issue 3): all joined with zero crashes, >= 60 joins/s, <= 100 KB client RSS per
participant, 2000 held. JXS on the same machine: ~29 joins/s, ~160 KB per participant,
crashes with 200+ simultaneous joins.

    .venv/bin/python bench/swarm.py [--scenario rate|hold|online ...] [--hold 5]
                                      [--prosody-gc generational] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from prosody_analyze.local_prosody import LocalProsody
from prosody_analyze.sampler import read_process
from prosody_analyze.swarm import SwarmConfig, run_swarm

MB = 1024 * 1024


def own_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


class PeakRss:
    """Samples this process's RSS every 50 ms in a thread (ru_maxrss would keep the earlier run's peak)."""

    def __init__(self):
        self.peak = own_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, own_rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, own_rss())


def prosody_rss(prosody: LocalProsody) -> float:
    return next(s.value for s in read_process(prosody.pid) if s.metric.endswith("memory_bytes")) / MB


SCENARIOS = {
    # name: (rooms, participants, join the MUC)
    "rate": (20, 50, True),  # the target: 1000 in rooms of 50
    "hold": (40, 50, True),  # 2000 held in one process
    "online": (20, 50, False),  # client headroom: the same 1000 without the MUC fan-out on the server
    "small-rooms": (100, 10, True),  # 1000 joined in rooms of 10: a tenth of the fan-out per join
}


def one_run(name: str, hold: float, gc_mode: str | None) -> dict:
    """One scenario, in this process (the parent runs each in a fresh process for clean RSS figures)."""
    rooms, participants, join_muc = SCENARIOS[name]
    with (
        tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp,
        LocalProsody(Path(tmp) / "prosody", log_level="warn", gc_mode=gc_mode) as prosody,
    ):
        time.sleep(0.5)
        prosody_before = prosody_rss(prosody)
        prosody_cpu_before = prosody_cpu(prosody)
        config = SwarmConfig(
            domain="localhost",
            service=prosody.websocket_url,
            rooms=rooms,
            participants=participants,
            duration=hold,
            stage_timeout=60,
            join_muc=join_muc,
        )
        base = own_rss()
        started = time.monotonic()
        with PeakRss() as peak:
            summary = run_swarm(config, Path(tmp) / "capture", progress=False)
        wall = time.monotonic() - started
        prosody_after = prosody_rss(prosody)
        prosody_cpu_s = prosody_cpu(prosody) - prosody_cpu_before
    total = rooms * participants
    return {
        "run": name,
        "rooms": rooms,
        "participants_per_room": participants,
        "join_muc": join_muc,
        "participants": total,
        "joined": summary.joined,
        "failed": summary.failed,
        "dropped": summary.dropped,
        "left": summary.left,
        "all_joined_s": summary.all_joined_s,
        "joins_per_s": summary.joins_per_s,
        "client_base_rss_mb": round(base / MB, 1),
        "client_peak_rss_mb": round(peak.peak / MB, 1),
        "rss_per_participant_kb": round((peak.peak - base) / total / 1024, 1),
        "prosody_rss_before_mb": round(prosody_before, 1),
        "prosody_rss_after_mb": round(prosody_after, 1),
        "prosody_cpu_s": round(prosody_cpu_s, 1),
        "wall_s": round(wall, 1),
        "join_p50_s": summary.stage_seconds["join"]["p50"],
        "join_p99_s": summary.stage_seconds["join"]["p99"],
        "top_errors": summary.top_errors,
    }


def prosody_cpu(prosody: LocalProsody) -> float:
    return next(s.value for s in read_process(prosody.pid) if s.metric.endswith("cpu_seconds_total"))


def show(result: dict, hold: float) -> None:
    what = "joined their rooms" if result["join_muc"] else "online (no MUC join)"
    print(
        f"\n== {result['run']}: {result['rooms']} rooms x {result['participants_per_room']} = "
        f"{result['participants']} participants {what}, held {hold:g} s"
    )
    print(
        f"joined {result['joined']}/{result['participants']}, failed {result['failed']}, "
        f"dropped {result['dropped']}, left cleanly {result['left']}, crashes 0"
    )
    print(f"time to all-joined: {result['all_joined_s']} s   joins/s: {result['joins_per_s']}")
    print(
        f"client RSS: base {result['client_base_rss_mb']} MB, peak {result['client_peak_rss_mb']} MB, "
        f"{result['rss_per_participant_kb']} KB per participant above base"
    )
    print(
        f"Prosody RSS: before {result['prosody_rss_before_mb']} MB, after (participants still in) "
        f"{result['prosody_rss_after_mb']} MB; Prosody CPU {result['prosody_cpu_s']} s "
        f"in {result['wall_s']} s wall"
    )
    print(f"join stage p50/p99: {result['join_p50_s']}/{result['join_p99_s']} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=5.0, help="seconds held after all joined")
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        action="append",
        help="run only these (default: all, each in a fresh process)",
    )
    parser.add_argument(
        "--prosody-gc",
        choices=["generational", "incremental"],
        help="Lua GC mode of the local Prosody (default: Prosody's own); generational cuts its CPU per "
        "join about 3.5x, so the server stops being the bottleneck of the join rate",
    )
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.scenario or list(SCENARIOS)
    if args.in_process:
        print(json.dumps(one_run(names[0], args.hold, args.prosody_gc)))
        return 0
    results = []
    for name in names:
        done = subprocess.run(
            [sys.executable, __file__, "--scenario", name, "--hold", str(args.hold), "--in-process",
             *(["--prosody-gc", args.prosody_gc] if args.prosody_gc else [])],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            print(f"{name}: the run process failed (status {done.returncode}): {done.stderr.strip()[-500:]}")
            results.append({"run": name, "crashed": True})
            continue
        results.append(json.loads(done.stdout.splitlines()[-1]))
        show(results[-1], args.hold)
    by_name = {r["run"]: r for r in results}
    muc_runs = [r for r in results if r.get("join_muc")]
    verdicts = {
        "all joined, zero crashes": all(r.get("joined") == r.get("participants") for r in results),
        "<= 100 KB client RSS per participant": all(
            r.get("rss_per_participant_kb", 1e9) <= 100 for r in muc_runs
        ),
    }
    if "rate" in by_name:
        verdicts[">= 60 joins/s (1000 in rooms of 50)"] = (by_name["rate"].get("joins_per_s") or 0) >= 60
    if "hold" in by_name:
        verdicts["2000 held in one process"] = by_name["hold"].get("joined") == 2000
    print()
    for name, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
