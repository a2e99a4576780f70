"""Refused WebSocket upgrades as client libraries report them.

Node's ``ws`` (used by JXS through xmpp.js) says ``Unexpected server response: 500``; Python's
``websockets`` says ``server rejected WebSocket connection: HTTP 500``. Either becomes an
``http_error`` event with ``http_status``. These lines turn up inside JXS output, in pm2
``*-error.log`` files and in plain stderr captures (the ``client-errors`` format).
"""

from __future__ import annotations

import re

import polars as pl

NAME = "client-errors"
STATUS_PATTERN = r"(?:Unexpected server response|server rejected WebSocket connection: HTTP):? (\d{3})"
LINE_RE = re.compile(STATUS_PATTERN)


def http_status(text: pl.Expr) -> pl.Expr:
    """The refused upgrade's HTTP status in ``text``, or null."""
    return text.str.extract(STATUS_PATTERN, 1).cast(pl.Int16, strict=False)


def parse(frame: pl.DataFrame, context):
    """A client's stderr: the same records as JXS output (stack frames fold into the error above)."""
    from . import jxs

    return jxs.parse(frame, context)
