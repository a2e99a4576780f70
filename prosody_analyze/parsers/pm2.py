"""pm2, the Node process manager that kept JXS alive.

Two shapes reach us: ``pm2 logs`` output (colour codes, ``ID|NAME      | `` before each app line,
``PM2 | …`` daemon lines, ``… last N lines:`` headings; unwrapped in ``source``), and the raw
files in ``~/.pm2/logs/``, ``NAME-out.log`` / ``NAME-error.log``, where only the file name says
which app wrote them. Either way the app name is the JXS process, which makes its
participant ids (``0-1``…) unique.
"""

from __future__ import annotations

import re
from pathlib import Path

# A daemon line once the `PM2 | ` prefix is gone.
DAEMON_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: PM2 ")
LOG_FILE_RE = re.compile(r"^(?P<app>.+)-(?:out|error)(?:-\d+)?$")
SUFFIXES = (".gz", ".log", ".txt", ".jsonl")


def process_name(path: Path) -> str:
    """The client process a file's lines come from: the pm2 app for ``NAME-out.log``, else the file stem."""
    name = path.name
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    match = LOG_FILE_RE.match(name)
    return match.group("app") if match else name
