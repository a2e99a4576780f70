from datetime import UTC, datetime, timedelta

import polars as pl

from prosody_analyze.load import load_at, load_over_time
from prosody_analyze.schema import SESSION_SCHEMA, conform

T0 = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)


def sessions(rows):
    return conform(pl.DataFrame(rows), SESSION_SCHEMA)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def test_counts_connected_and_joined_until_each_participant_leaves():
    table = sessions(
        [
            {
                "origin": "client",
                "session": "a",
                "first_ts": at(0),
                "joined_ts": at(1),
                "left_ts": at(10),
                "last_ts": at(10),
            },
            {"origin": "client", "session": "b", "first_ts": at(2), "joined_ts": None, "last_ts": at(3)},
            {"origin": "client", "session": "c", "first_ts": at(4), "joined_ts": at(5), "last_ts": at(20)},
        ]
    )
    load = load_over_time(table)
    probe = load_at(load, pl.DataFrame({"ts": [at(-1), at(2.5), at(6), at(15), at(30)]}))
    assert probe["connected"].to_list() == [0, 2, 2, 1, 0]
    assert probe["joined"].to_list() == [0, 1, 2, 1, 0]


def test_prefers_client_sessions_over_server_ones():
    table = sessions(
        [
            {"origin": "server", "session": "s1", "first_ts": at(0), "last_ts": at(100)},
            {"origin": "server", "session": "s2", "first_ts": at(0), "last_ts": at(100)},
            {"origin": "client", "session": "c1", "first_ts": at(1), "joined_ts": at(2), "last_ts": at(50)},
        ]
    )
    assert load_over_time(table)["connected"].max() == 1
    assert load_over_time(table.filter(pl.col("origin") == "server"))["connected"].max() == 2


def test_a_leave_and_a_join_at_the_same_instant_give_one_step_with_the_net_load():
    table = sessions(
        [
            {
                "origin": "client",
                "session": "a",
                "first_ts": at(0),
                "joined_ts": at(0),
                "left_ts": at(10),
                "last_ts": at(10),
            },
            {
                "origin": "client",
                "session": "b",
                "first_ts": at(10),
                "joined_ts": at(10),
                "left_ts": at(20),
                "last_ts": at(20),
            },
        ]
    )
    load = load_over_time(table)
    assert load["ts"].to_list() == [at(0), at(10), at(20)]
    assert load["connected"].to_list() == [1, 1, 0]
    assert load["joined"].to_list() == [1, 1, 0]
