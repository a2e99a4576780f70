"""build_sessions(): one row per server c2s session and per client participant, stages and outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from prosody_analyze.schema import SESSION_SCHEMA, conform
from prosody_analyze.sessions import build_sessions

T0 = datetime(2026, 11, 28, 21, 0, 0, tzinfo=UTC)


def events(rows: list[dict]) -> pl.DataFrame:
    """An events table from a few hand-written rows (seconds after T0 in ``t``)."""
    filled = [
        {
            "file": "x.log",
            "seq": index + 1,
            **row,
            "ts": None if row.get("t") is None else T0 + timedelta(seconds=row["t"]),
        }
        for index, row in enumerate(rows)
    ]
    return conform(pl.DataFrame(filled).drop("t", strict=False))


def server(session: str, kind: str, t: float | None, **fields) -> dict:
    return {"origin": "server", "session": session, "source": session, "kind": kind, "t": t, **fields}


def client(participant: str, kind: str, t: float, **fields) -> dict:
    return {
        "origin": "client",
        "participant": participant,
        "session": participant,
        "kind": kind,
        "t": t,
        **fields,
    }


def test_a_reused_c2s_id_makes_two_sessions(tmp_path):
    table = build_sessions(
        events(
            [
                server("c2s1", "connection_opened", 0),
                server("c2s1", "authenticated", 0.1, jid="a@h"),
                server("c2s1", "disconnected", 1),
                server("c2s1", "connection_opened", 5),
                server("c2s1", "authenticated", 5.2, jid="b@h"),
                server("c2s1", "resource_bound", 5.3, jid="b@h/r"),
                server("c2s1", "muc_join_sent", 5.4, room="r1"),
                server("c2s1", "muc_joined", 5.5, room="r1"),
            ]
        )
    )
    assert dict(table.schema) == SESSION_SCHEMA
    assert table["session"].to_list() == [
        "c2s1@2026-11-28T21:00:00.000000Z",
        "c2s1@2026-11-28T21:00:05.000000Z",
    ]
    first, second = table.rows(named=True)
    assert (first["jid"], first["outcome"], first["failed_stage"]) == ("a@h", "failed", "bound")
    assert (second["jid"], second["outcome"], second["room"]) == ("b@h/r", "joined", "r1")
    assert abs(second["auth_s"] - 0.2) < 1e-9 and abs(second["join_s"] - 0.2) < 1e-9
    assert abs(second["total_s"] - 0.5) < 1e-9 and second["connect_s"] == 0.0


def test_outcomes_open_failed_joined():
    table = build_sessions(
        events(
            [
                client("p/0-0", "connection_opened", 0),
                client("p/0-0", "muc_joined", 1, room="r-0"),
                client("p/0-1", "connection_opened", 0),
                client("p/0-1", "http_error", 0.5, http_status=500, error="Unexpected server response: 500"),
                client("p/0-2", "connection_opened", 0),
                client("p/0-2", "authenticated", 0.2),
            ]
        )
    ).sort("participant")
    assert table["outcome"].cast(pl.String).to_list() == ["joined", "failed", "open"]
    failed = table.row(1, named=True)
    assert (failed["failed_stage"], failed["http_status"], failed["error"]) == (
        "authenticated",
        500,
        "Unexpected server response: 500",
    )
    assert table.row(2, named=True)["authenticated_ts"] == T0 + timedelta(seconds=0.2)


def test_stage_reported_by_the_client_wins():
    table = build_sessions(
        events(
            [
                client("s/1", "connection_opened", 0),
                client("s/1", "traceback", 3, stage="joined", error="timeout waiting for self-presence"),
            ]
        )
    )
    assert table.row(0, named=True)["failed_stage"] == "joined"


def test_same_jxs_ids_in_two_processes_are_two_participants():
    table = build_sessions(
        events(
            [
                client("batch1/0-1", "muc_joined", 1, room="a-0"),
                client("batch2/0-1", "muc_joined", 2, room="b-0"),
            ]
        )
    )
    assert table.height == 2 and set(table["room"]) == {"a-0", "b-0"}


def test_server_muc_lines_naming_a_jid_join_its_session():
    table = build_sessions(
        events(
            [
                server("c2s9", "connection_opened", 0),
                server("c2s9", "resource_bound", 0.1, jid="u@h/r"),
                {
                    "origin": "server",
                    "source": "conference.h:muc",
                    "kind": "muc_joined",
                    "t": 0.3,
                    "jid": "u@h/r",
                    "room": "r",
                },
            ]
        )
    )
    row = table.row(0, named=True)
    assert (row["outcome"], row["room"]) == ("joined", "r")
    assert row["joined_ts"] == T0 + timedelta(seconds=0.3)


def test_a_log_that_starts_mid_session():
    table = build_sessions(
        events(
            [
                server("c2s7", "hibernation_timeout", None, error="smacks hibernation timeout"),
                server("c2s7", "session_destroyed", None, jid="z@h/r"),
            ]
        )
    )
    row = table.row(0, named=True)
    assert row["session"] == "c2s7@x.log:1"
    assert (row["outcome"], row["failed_stage"], row["jid"]) == ("failed", "joined", "z@h/r")


def test_no_lifecycle_events_no_sessions():
    assert build_sessions(events([server("c2s1", "unknown", 0)])).height == 0
