"""Command line: thin wrappers, one per command, over the library.

Each module below registers its commands on :data:`app`; ``main`` turns every error
into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys
import warnings

# Before polars loads: its allocator (jemalloc) hands freed pages back to the kernel after 0.5 s,
# and ingest frees and refills about the same memory for every 32 MB chunk, so each chunk paid
# for fresh zeroed pages again. Keeping them 2 s cuts ingest's CPU time by about 6 %
# (bench/ingest.py). A value the user set is kept.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:2000,muzzy_decay_ms:2000")

from ..errors import UserError  # noqa: E402
from . import analysis, correlate, demo, ingest, k8s, report, swarm  # noqa: E402, F401  (register commands)
from .app import app  # noqa: E402


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning is one line for the user, like an error, not a source location."""
    print(f"prosody-analyze: warning: {message}", file=sys.stderr)


def main() -> None:
    warnings.showwarning = _show_warning
    try:
        app()
    except UserError as error:
        print(f"prosody-analyze: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("prosody-analyze: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:  # a bug of ours: still one line, with enough to report it
        print(f"prosody-analyze: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
