"""Values with units, as dashboards and Kubernetes write them, to and from base units.

Base units are what METRIC_SCHEMA stores: ``bytes``, ``bytes/s``, ``seconds``, ``cores``,
``%`` (kept in percent) and ``""`` for plain numbers. Grafana's "formatted data" writes
``16.4 MiB``, ``31.9 kB/s``, ``250 ms``, ``12.5%``, ``1.20 K``; Kubernetes writes
``15000Mi``, ``1.5Gi``, ``500m``, ``2``. Lower-case ``b`` is bits (Grafana's bits/sec units).
"""

from __future__ import annotations

import math
import re

import polars as pl

from .errors import UserError

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_IEC = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def _unit_table() -> dict[str, tuple[float, str]]:
    """Suffix -> (factor to base unit, base unit)."""
    table: dict[str, tuple[float, str]] = {}
    for prefix, factor in {**_SI, **_IEC}.items():
        table[f"{prefix}B"] = (factor, "bytes")
        table[f"{prefix}B/s"] = (factor, "bytes/s")
        table[f"{prefix}Bps"] = (factor, "bytes/s")
        table[f"{prefix}b/s"] = (factor / 8, "bytes/s")
        table[f"{prefix}bps"] = (factor / 8, "bytes/s")
    table.update(
        {
            "bytes": (1.0, "bytes"),
            "bytes/s": (1.0, "bytes/s"),
            "ns": (1e-9, "seconds"),
            "µs": (1e-6, "seconds"),
            "us": (1e-6, "seconds"),
            "ms": (1e-3, "seconds"),
            "s": (1.0, "seconds"),
            "sec": (1.0, "seconds"),
            "seconds": (1.0, "seconds"),
            "min": (60.0, "seconds"),
            "h": (3600.0, "seconds"),
            "hour": (3600.0, "seconds"),
            "day": (86400.0, "seconds"),
            "%": (1.0, "%"),
            "percent": (1.0, "%"),
            "cores": (1.0, "cores"),
            "core": (1.0, "cores"),
            "mcores": (1e-3, "cores"),
            "millicores": (1e-3, "cores"),
            # Grafana's "short" unit: plain counts with a scale word.
            "": (1.0, ""),
            "K": (1e3, ""),
            "Mil": (1e6, ""),
            "Bil": (1e9, ""),
            "Tri": (1e12, ""),
        }
    )
    return table


UNITS = _unit_table()
_VALUE = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_VALUE_WITH_UNIT = re.compile(rf"^\s*{_VALUE}\s*([^\d\s].*?)?\s*$")
_QUANTITY = re.compile(rf"^\s*{_VALUE}(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?\s*$")
_QUANTITY_FACTORS = {
    None: 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_value(text: str) -> tuple[float, str] | None:
    """``"16.4 MiB"`` -> ``(17196646.4, "bytes")``; None for an empty or unreadable cell."""
    match = _VALUE_WITH_UNIT.match(text or "")
    if match is None:
        return None
    known = UNITS.get((match[2] or "").strip())
    if known is None:
        return None
    return float(match[1]) * known[0], known[1]


def parse_values(column: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Vectorised :func:`parse_value`: (value in base units, base unit); nulls where unreadable."""
    parts = column.cast(pl.String).str.strip_chars().str.extract_groups(rf"^{_VALUE}\s*([^\d\s].*?)?$")
    suffix = parts.struct.field("2").fill_null("").str.strip_chars()
    factor = suffix.replace_strict({k: v[0] for k, v in UNITS.items()}, default=None, return_dtype=pl.Float64)
    unit = suffix.replace_strict({k: v[1] for k, v in UNITS.items()}, default=None, return_dtype=pl.String)
    return parts.struct.field("1").cast(pl.Float64, strict=False) * factor, unit


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity (``15000Mi``, ``1.5Gi``, ``500m``, ``2``, ``1e3``) as a plain number."""
    match = _QUANTITY.match(str(text))
    if match is None:
        raise UserError(f"{text!r} is not a quantity like 15000Mi, 1.5Gi, 500m or 2")
    return float(match[1]) * _QUANTITY_FACTORS[match[2]]


def _scaled(value: float, steps: list[tuple[float, str]]) -> str:
    for factor, name in steps:
        if abs(value) >= factor:
            return f"{value / factor:.3g} {name}"
    return f"{value / steps[-1][0]:.3g} {steps[-1][1]}"


def format_value(value: float | None, unit: str) -> str:
    """A base-unit value for people: bytes in IEC (``16.4 MiB``), rates in SI (``31.9 kB/s``), cores, ms."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "bytes":
        return _scaled(value, [(2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")])
    if unit == "bytes/s":
        return _scaled(value, [(1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s"), (1, "B/s")])
    if unit == "seconds":
        return _scaled(value, [(3600, "h"), (60, "min"), (1, "s"), (1e-3, "ms"), (1e-6, "µs")])
    if unit == "cores":
        return f"{value:.3g} cores"
    if unit == "%":
        return f"{value:.3g}%"
    return f"{value:.4g}" + (f" {unit}" if unit else "")
