"""Values with units and Kubernetes quantities, as dashboards and manifests write them."""

import polars as pl
import pytest

from prosody_analyze.errors import UserError
from prosody_analyze.units import format_value, parse_quantity, parse_value, parse_values


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("16.4 MiB", 16.4 * 2**20, "bytes"),
        ("31.9 kB/s", 31_900.0, "bytes/s"),
        ("0.0588", 0.0588, ""),
        ("1.5 GiB", 1.5 * 2**30, "bytes"),
        ("800 B", 800.0, "bytes"),
        ("2 Mb/s", 250_000.0, "bytes/s"),  # lower-case b: bits
        ("250 ms", 0.25, "seconds"),
        ("12.5%", 12.5, "%"),
        ("1.20 K", 1200.0, ""),
        ("-3e2", -300.0, ""),
        ("0.2 cores", 0.2, "cores"),
    ],
)
def test_parse_value_gives_base_units(text, value, unit):
    parsed, parsed_unit = parse_value(text)
    assert parsed == pytest.approx(value)
    assert parsed_unit == unit


@pytest.mark.parametrize("text", ["", "-", "abc", "NaN MiB", "3 furlongs"])
def test_unreadable_cells_give_none(text):
    assert parse_value(text) is None


def test_parse_values_matches_parse_value_on_a_column():
    cells = ["16.4 MiB", "31.9 kB/s", "0.0588", None, "abc", "7 zz"]
    value, unit = parse_values(pl.col("cell"))
    table = pl.DataFrame({"cell": cells}).select(value=value, unit=unit)
    for cell, (got, got_unit) in zip(cells, table.iter_rows(), strict=True):
        expected = parse_value(cell) if cell else None
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected[0]) and got_unit == expected[1]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("15000Mi", 15000 * 2**20),
        ("1.5Gi", 1.5 * 2**30),
        ("500m", 0.5),
        ("2", 2.0),
        ("1e3", 1000.0),
        ("128k", 128_000.0),
        ("1Ki", 1024.0),
    ],
)
def test_kubernetes_quantities(text, value):
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["15000MB", "lots", "", "1.5 Gi"])
def test_bad_quantity_is_one_line_user_error(text):
    with pytest.raises(UserError) as error:
        parse_quantity(text)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (16.4 * 2**20, "bytes", "16.4 MiB"),
        (2 * 2**30, "bytes", "2 GiB"),
        (31_900, "bytes/s", "31.9 kB/s"),
        (0.0588, "cores", "0.0588 cores"),
        (0.25, "seconds", "250 ms"),
        (42.0, "", "42"),
        (None, "bytes", "–"),
    ],
)
def test_format_value_for_people(value, unit, shown):
    assert format_value(value, unit) == shown


def test_format_then_parse_round_trips_bytes():
    value, unit = parse_value(format_value(123_456_789, "bytes"))
    assert unit == "bytes" and value == pytest.approx(123_456_789, rel=1e-2)
