"""Command line: thin wrappers, one per command, over the library.

Each module below registers its commands on :data:`app`; ``main`` turns every error
into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

from ..errors import UserError
from . import analysis, correlate, demo, ingest, k8s, report, swarm  # noqa: F401  (register commands)
from .app import app


def main() -> None:
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
