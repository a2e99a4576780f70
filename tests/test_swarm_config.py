"""Swarm options and plan: JXS config compatibility, durations, sharding (no network)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from prosody_analyze.errors import UserError
from prosody_analyze.swarm import SwarmConfig, build_plan, parse_duration, parse_shard, parse_start_at

JXS_CONFIG = {  # the config of the real JXS run in tests/fixtures/local-prosody/jxs_small_client.log
    "domain": "localhost",
    "service": "ws://127.0.0.1:5280/xmpp-websocket",
    "duration": 3,
    "roomPrefix": "small",
    "muc": "conference.localhost",
    "numberOfRooms": 1,
    "numberOfParticipants": 3,
    "delay": 50,
    "enableDebug": False,
    "enableXmppLog": False,
    "conferenceRequestTarget": "focus.localhost",
    "joinMuc": True,
}


def test_a_jxs_config_maps_key_by_key_with_its_units():
    config = SwarmConfig.from_jxs(JXS_CONFIG).resolved()
    assert (config.domain, config.service, config.muc) == (
        "localhost",
        "ws://127.0.0.1:5280/xmpp-websocket",
        "conference.localhost",
    )
    assert (config.rooms, config.participants, config.room_prefix) == (1, 3, "small")
    assert config.delay == pytest.approx(0.05)  # JXS delay is in milliseconds
    assert config.duration == 3  # JXS duration is in seconds
    assert config.conference_request_target == "focus.localhost" and config.join_muc


def test_jxs_defaults_are_filled_from_the_domain():
    config = SwarmConfig.from_jxs({"domain": "meet.example.com"}).resolved()
    assert config.service == "wss://meet.example.com/xmpp-websocket"
    assert config.muc == "conference.meet.example.com"
    assert config.conference_request_target == "focus.meet.example.com"
    assert config.room_prefix.startswith("jxs-test-")
    assert (config.rooms, config.participants, config.delay, config.duration) == (1, 2, 0.0, None)
    assert config.join_muc and config.max_connecting == 100


def test_command_line_values_override_the_config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"domain": "localhost", "numberOfRooms": 7, "comment": "kept aside"}')
    config = SwarmConfig.from_file(path, rooms=2, participants=50)
    assert (config.rooms, config.participants) == (2, 50)
    assert config.extra == {"comment": "kept aside"}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"numberOfRooms": 2}', "no domain"),
        ('{"domain": "x", "numberOfRooms": 0}', "rooms must be a whole number"),
        ('{"domain": "x", "delay": "soon"}', "delay must be a number"),
        ('{"domain": "x", "service": "http://x/ws"}', "ws:// or wss://"),
    ],
)
def test_bad_config_files_give_one_clear_line(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        SwarmConfig.from_file(path).resolved()
    with pytest.raises(UserError, match="not found"):
        SwarmConfig.from_file(tmp_path / "missing.json")


def test_durations_and_start_times():
    assert parse_duration("50ms") == pytest.approx(0.05)
    assert parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    assert parse_duration("50", default_unit="ms") == pytest.approx(0.05)
    with pytest.raises(UserError, match="not a duration"):
        parse_duration("ten minutes")
    now = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
    assert parse_start_at("+30s", now) == datetime(2026, 11, 28, 21, 0, 30, tzinfo=UTC)
    assert parse_start_at("2026-11-28T21:05:00Z") == datetime(2026, 11, 28, 21, 5, tzinfo=UTC)
    with pytest.raises(UserError, match="--start-at"):
        parse_start_at("tomorrow")


def test_the_ramp_plan_numbers_rooms_across_batches():
    config = SwarmConfig(
        domain="d", room_prefix="r", rooms=2, participants=3, batches=2, batch_interval=60, delay=0.5
    ).resolved()
    plan = build_plan(config)
    assert len(plan) == 12 == config.planned_total
    assert len({p.participant_id for p in plan}) == 12
    assert sorted({p.room for p in plan}) == ["r-0", "r-1", "r-2", "r-3"]
    last_of_second_batch = next(p for p in plan if p.participant_id == "3-2")
    assert (last_of_second_batch.batch, last_of_second_batch.offset_s) == (1, 61.0)
    assert [p.offset_s for p in plan] == sorted(p.offset_s for p in plan)


def test_shards_are_disjoint_cover_the_plan_and_keep_its_schedule():
    whole = SwarmConfig(domain="d", room_prefix="r", rooms=3, participants=7, batches=2, delay=0.1).resolved()
    full = {(p.participant_id, p.room, p.batch, p.offset_s) for p in build_plan(whole)}
    shards = []
    for index in range(4):
        config = SwarmConfig(
            domain="d",
            room_prefix="r",
            rooms=3,
            participants=7,
            batches=2,
            delay=0.1,
            shard_index=index,
            shard_count=4,
        ).resolved()
        assert config.shard == f"{index}/4"
        shards.append({(p.participant_id, p.room, p.batch, p.offset_s) for p in build_plan(config)})
    assert set().union(*shards) == full
    assert sum(len(s) for s in shards) == len(full)  # disjoint
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert all(len({room for _, room, _, _ in s}) == 6 for s in shards)  # every shard loads every room


def test_shards_agree_on_room_names_without_a_prefix_only_through_the_start_time():
    start = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
    names = {
        SwarmConfig(domain="d", shard_index=k, shard_count=3, start_at=start).resolved().room_prefix
        for k in range(3)
    }
    assert len(names) == 1
    with pytest.raises(UserError, match="--room-prefix or --start-at"):
        SwarmConfig(domain="d", shard_index=0, shard_count=3).resolved()
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "a/b", "-1/3"):
        with pytest.raises(UserError, match="--shard"):
            parse_shard(bad)


def test_a_shard_with_nobody_in_it_ends_at_once_and_successfully(tmp_path):
    from prosody_analyze.swarm import run_swarm

    config = SwarmConfig(
        domain="localhost",
        service="ws://127.0.0.1:9/xmpp-websocket",
        room_prefix="e",
        rooms=1,
        participants=1,
        shard_index=1,
        shard_count=2,
        duration=60,
    )
    summary = run_swarm(config, tmp_path / "c", progress=False)
    assert (summary.target, summary.exit_code, summary.end_reason) == (0, 0, "every participant ended")
    assert summary.duration_s < 2
