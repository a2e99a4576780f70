"""The live progress bar on stderr: target, connected, joined, failed, join rate."""

from __future__ import annotations

import time
from collections import deque

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

RATE_WINDOW_S = 5.0


class LiveProgress:
    """A rich bar on stderr (stdout may be the capture); a no-op when disabled."""

    def __init__(self, enabled: bool = True):
        self.console = Console(stderr=True)
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None
        self._joins: deque[tuple[float, int]] = deque()

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]swarm[/bold]"),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task("swarm", total=None, stats="starting")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def update(self, swarm) -> None:
        if self._progress is None:
            return
        summary = swarm.summary
        now = time.monotonic()
        self._joins.append((now, summary.joined))
        while self._joins and now - self._joins[0][0] > RATE_WINDOW_S:
            self._joins.popleft()
        first_t, first_joined = self._joins[0]
        rate = (summary.joined - first_joined) / (now - first_t) if now > first_t else 0.0
        stats = (
            f"target {summary.target}  connected {swarm.open_connections}  joined {summary.joined}  "
            f"failed {summary.failed}  dropped {summary.dropped}  {rate:.1f} joins/s"
        )
        self._progress.update(
            self._task, total=summary.target, completed=summary.joined + summary.failed, stats=stats
        )
