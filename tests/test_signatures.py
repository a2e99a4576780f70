"""signatures: the study's real failures recognised and explained; HTTP 500s blamed on proxy or Prosody."""

from datetime import UTC, datetime

import polars as pl
import pytest

from prosody_analyze.ingest import ingest
from prosody_analyze.schema import EVENTS_FILE, conform, scan_events
from prosody_analyze.signatures import EXPLANATIONS, http_500_signature, signature_hits, summarize


@pytest.fixture(scope="module")
def study_events(tmp_path_factory):
    from pathlib import Path

    out = tmp_path_factory.mktemp("k8s")
    ingest([Path(__file__).parent / "fixtures" / "jitsi-k8s"], out, progress=False)
    return scan_events(out / EVENTS_FILE)


def _found(events: pl.LazyFrame) -> dict[str, dict]:
    return {s["name"]: s for s in summarize(signature_hits(events).collect())}


def test_muc_join_refused_in_both_study_logs(study_events):
    hits = signature_hits(study_events).filter(pl.col("signature") == "muc_remote_refused").collect()
    files = {name.rsplit("/", 1)[-1] for name in hits["file"].to_list()}
    # The client saw the refusal the server sent; the focus IQ was refused during the 500s too.
    assert files == {"log_client.txt", "log_server.txt", "log_error_limit.txt"}
    assert "not served" in EXPLANATIONS["muc_remote_refused"]


def test_conference_timeout_and_hibernation_in_study_logs(study_events):
    found = _found(study_events)
    assert found["conference_request_timeout"]["count"] == 1
    assert "Jicofo" in found["conference_request_timeout"]["explanation"]
    hibernation = found["smacks_hibernation_timeout"]
    assert hibernation["count"] == 1  # one session: counted once, not once per log line about it
    assert any("hibernation timeout reached" in example for example in hibernation["examples"])


def test_descriptor_and_nginx_connection_limits():
    """The texts as nginx writes them in its error log (DOMAIN.md)."""
    rows = [
        "2026/11/28 19:56:23 [alert] 31#31: *40113 1024 worker_connections are not enough while connecting "
        'to upstream, client: 10.0.0.7, server: meet, request: "GET /xmpp-websocket HTTP/1.1"',
        "2026/11/28 19:56:24 [crit] 31#31: accept4() failed (24: Too many open files)",
        "2026/11/28 19:56:25 [info] 31#31: *40114 client closed connection",
    ]
    events = conform(
        pl.DataFrame(
            {
                "ts": [datetime(2026, 11, 28, 19, 56, 23 + i, tzinfo=UTC) for i in range(3)],
                "message": rows,
                "kind": ["unknown"] * 3,
                "origin": ["server"] * 3,
            }
        )
    ).lazy()
    found = _found(events)
    assert set(found) == {"nginx_worker_connections", "too_many_open_files"}
    assert found["too_many_open_files"]["first_ts"] == "2026-11-28T19:56:24Z"


def test_http_500_blames_the_proxy_unless_prosody_failed():
    client_500s = pl.DataFrame(
        {"ts": [datetime(2026, 1, 1, tzinfo=UTC)] * 2, "message": ["Unexpected server response: 500"] * 2}
    )
    assert http_500_signature(client_500s, tracebacks=0)["name"] == "http_500_from_proxy"
    assert http_500_signature(client_500s, tracebacks=1)["name"] == "http_500_prosody_handler"
    assert http_500_signature(client_500s.clear(), tracebacks=0) is None
