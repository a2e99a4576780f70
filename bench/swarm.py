"""Swarm benchmark: how many participants one process joins, how fast, in how much memory.

Loopback only, against a sandboxed local Prosody (Debian's prosody package). Two runs, each
bounded in count and time:

1. 1000 participants (20 rooms × 50) all at once (the connection cap paces them): time to
   all joined, joins/s, client peak RSS and RSS per participant, Prosody RSS before/after.
2. 2000 participants (40 rooms × 50) held in one process.

Targets (issue 3): all joined with zero crashes, >= 60 joins/s, <= 100 KB client RSS per
participant, 2000 held. JXS on the same machine: ~29 joins/s, ~160 KB per participant,
crashes with 200+ simultaneous joins.

    .venv/bin/python bench/swarm.py [--rooms 20 --participants 50] [--big-rooms 40] [--hold 5]
"""

from __future__ import annotations

import argparse
import json
import resource
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


def one_run(label: str, rooms: int, participants: int, hold: float, workdir: Path) -> dict:
    with LocalProsody(workdir / f"prosody-{label}", log_level="warn") as prosody:
        time.sleep(0.5)
        prosody_before = prosody_rss(prosody)
        config = SwarmConfig(
            domain="localhost",
            service=prosody.websocket_url,
            rooms=rooms,
            participants=participants,
            duration=hold,
            stage_timeout=60,
        )
        base = own_rss()
        started = time.monotonic()
        with PeakRss() as peak:
            summary = run_swarm(config, workdir / f"capture-{label}", progress=False)
        wall = time.monotonic() - started
        prosody_after = prosody_rss(prosody)
    total = rooms * participants
    result = {
        "run": label,
        "participants": total,
        "joined": summary.joined,
        "failed": summary.failed,
        "dropped": summary.dropped,
        "all_joined_s": summary.all_joined_s,
        "joins_per_s": summary.joins_per_s,
        "client_base_rss_mb": round(base / MB, 1),
        "client_peak_rss_mb": round(peak.peak / MB, 1),
        "rss_per_participant_kb": round((peak.peak - base) / total / 1024, 1),
        "prosody_rss_before_mb": round(prosody_before, 1),
        "prosody_rss_after_mb": round(prosody_after, 1),
        "join_p50_s": summary.stage_seconds["join"]["p50"],
        "join_p99_s": summary.stage_seconds["join"]["p99"],
        "wall_s": round(wall, 1),
        "top_errors": summary.top_errors,
    }
    print(f"\n== {label}: {rooms} rooms x {participants} = {total} participants, held {hold:g} s")
    print(
        f"joined {summary.joined}/{total}, failed {summary.failed}, dropped {summary.dropped}, "
        f"crashes 0 (the process is still here)"
    )
    print(f"time to all-joined: {summary.all_joined_s} s   joins/s: {summary.joins_per_s}")
    print(
        f"client RSS: base {result['client_base_rss_mb']} MB, peak {result['client_peak_rss_mb']} MB, "
        f"{result['rss_per_participant_kb']} KB per participant above base"
    )
    print(
        f"Prosody RSS: before {result['prosody_rss_before_mb']} MB, "
        f"after (participants still in) {result['prosody_rss_after_mb']} MB"
    )
    print(f"join stage p50/p99: {result['join_p50_s']}/{result['join_p99_s']} s; wall {result['wall_s']} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument(
        "--big-rooms", type=int, default=40, help="rooms of the 2000-participant run (0: skip)"
    )
    parser.add_argument("--hold", type=float, default=5.0, help="seconds held after all joined")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        results.append(one_run("rate", args.rooms, args.participants, args.hold, Path(tmp)))
        if args.big_rooms:
            results.append(one_run("hold", args.big_rooms, args.participants, args.hold, Path(tmp)))
    first = results[0]
    verdicts = {
        "all joined, zero crashes": all(r["joined"] == r["participants"] for r in results),
        ">= 60 joins/s": (first["joins_per_s"] or 0) >= 60,
        "<= 100 KB client RSS per participant": all(r["rss_per_participant_kb"] <= 100 for r in results),
    }
    print()
    for name, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
