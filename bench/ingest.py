"""Benchmark: generate a >= 1 GB Prosody debug log (file format) and ingest it.

Runs ``prosody-analyze ingest`` as a user would and prints MB/s and lines/s end to end
(events.parquet and sessions.parquet written), the CPU seconds and peak RSS of that process (a child process, so generation does not count) and
the load average, since a busy shared machine slows the wall-clock figures down. Everything
lives in a temporary directory that is deleted afterwards; ``--log`` reuses (or first writes)
a log at that path instead, so repeated runs skip the generation.

    .venv/bin/python bench/ingest.py [--size-mb 1024] [--log /tmp/prosody-1g.log]
"""

# ruff: noqa: E501  (the templates are Prosody log lines, kept whole)
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOMS_PER_SECOND = 4
SESSION_LINES = """{t} http.server\tdebug\tFiring event: GET /xmpp-websocket
{t} {c}\tinfo\tClient connected
{t} {c}\tdebug\tSending WebSocket handshake
{t} mod_websocket\tdebug\tWebsocket received frame: opcode=1, 80 bytes
{t} {c}\tdebug\tClient sent opening <stream:stream> to localhost
{t} {c}\tdebug\tSending[c2s_unauthed]: <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' version='1.0' id='{u}' from='localhost'>
{t} {c}\tdebug\tSASL mechanisms supported by handler: ANONYMOUS
{t} {c}\tdebug\tReceived[c2s_unauthed]: <auth mechanism='ANONYMOUS' xml:lang='en' xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>
{t} {c}\tinfo\tAuthenticated as {j}@localhost
{t} {c}\tdebug\tSending[c2s_unbound]: <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>
{t} {c}\tdebug\tReceived[c2s_unbound]: <iq type='set' xml:lang='en' id='{i}'>
{t} {c}\tdebug\tSending[c2s]: <iq id='{i}' type='result'>
{t} {c}\tdebug\tResource bound: {j}@localhost/{r}
{t} {c}\tdebug\tReceived[c2s]: <enable resume='true' xml:lang='en' xmlns='urn:xmpp:sm:3'>
{t} localhost:smacks\tdebug\tEnabling stream management
{t} {c}\tdebug\tSending[c2s]: <enabled id='{i}' resume='true' xmlns='urn:xmpp:sm:3' max='600'>
{t} {c}\tdebug\tReceived[c2s]: <iq type='set' to='focus.localhost' id='{i}x' xml:lang='en'>
{t} stanzarouter\tdebug\tCould not route stanza to remote
{t} {c}\tdebug\tSending[c2s]: <iq id='{i}x' to='{j}@localhost/{r}' type='error' from='focus.localhost'>
{t} {c}\tdebug\tReceived[c2s]: <presence to='{room}@conference.localhost/{n}' xml:lang='en'>
{t} conference.localhost:muc\tdebug\tno occupant found for {room}@conference.localhost/{n}; creating new occupant object for {j}@localhost/{r}
{others}{t} {c}\tdebug\tSending[c2s]: <presence to='{j}@localhost/{r}' xml:lang='en' from='{room}@conference.localhost/{n}'>
{t} {c}\tdebug\tSending[c2s]: <message type='groupchat' to='{j}@localhost/{r}' from='{room}@conference.localhost'>
{t} {c}\tdebug\tSending <r> (inside timer, before send) from c2s-pre-ondrain - #queue=3
{t} {c}\tdebug\tReceived[c2s]: <a h='3' xml:lang='en' xmlns='urn:xmpp:sm:3'>
{t} mod_websocket\tdebug\tWebsocket received frame: opcode=9, 2 bytes
{t} {c}\tdebug\tReceived[c2s]: <presence type='unavailable' to='{room}@conference.localhost/{n}' xml:lang='en'>
{t} {c}\tdebug\tc2s stream for {j}@localhost/{r} closed: session closed
{t} {c}\tdebug\tUnbinding resource for {j}@localhost/{r} ({j}@localhost)
{t} sessionmanager\tdebug\tAll resources of {j} are now offline
{t} {c}\tinfo\tClient disconnected: connection closed
"""
# What a session logs for each other occupant's presence (stanza, then XEP-0198 request and ack),
# as in tests/fixtures/local-prosody/prosody_small_debug.log.
OTHER_LINES = """{t} {c}\tdebug\tSending[c2s]: <presence to='{j}@localhost/{r}' xml:lang='en' from='{room}@conference.localhost/{o}'>
{t} {c}\tdebug\tSending <r> (inside timer, before send) from c2s-pre-ondrain - #queue={q}
{t} {c}\tdebug\tSending[c2s]: <r xmlns='urn:xmpp:sm:3'>
{t} mod_websocket\tdebug\tWebsocket received frame: opcode=1, 32 bytes
{t} {c}\tdebug\tReceived[c2s]: <a h='{q}' xml:lang='en' xmlns='urn:xmpp:sm:3'>
{t} {c}\tdebug\t#queue = 1 (acked: {q})
"""


def generate(path: Path, size_bytes: int, seed: int = 7) -> int:
    """Write interleaved-enough session lifecycles until the file reaches ``size_bytes``; return lines."""
    rng = random.Random(seed)
    clock = datetime(2026, 11, 28, 20, 0, 0)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    written = lines = 0
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as out:
        while written < size_bytes:
            block = []
            for _ in range(200):
                clock += timedelta(milliseconds=rng.randint(5, 400))
                stamp = clock.strftime("%b %d %H:%M:%S")
                c2s = f"c2s55{rng.getrandbits(40):010x}"
                jid = "".join(rng.choices(alphabet, k=24))
                room = f"room-{rng.randint(0, 9999)}"
                others = "".join(
                    OTHER_LINES.format(
                        t=stamp, c=c2s, j=jid, r="res", room=room, o="".join(rng.choices(alphabet, k=8)), q=q
                    )
                    for q in range(rng.randint(0, 40))
                )
                block.append(
                    SESSION_LINES.format(
                        t=stamp,
                        c=c2s,
                        j=jid,
                        r="".join(rng.choices(alphabet, k=12)),
                        u=rng.getrandbits(64),
                        i="".join(rng.choices(alphabet, k=10)),
                        room=room,
                        n=jid[:8],
                        others=others,
                    )
                )
            text = "".join(block)
            out.write(text)
            written += len(text)
            lines += text.count("\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the generated log (MiB)")
    parser.add_argument("--log", type=Path, help="reuse this generated log (written first if missing)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        log = args.log or work / "prosody.log"
        if log.exists():
            with open(log, "rb") as handle:
                lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))
        else:
            started = time.perf_counter()
            lines = generate(log, args.size_mb << 20)
            print(f"generated {lines:,} lines in {time.perf_counter() - started:.1f} s")
        size = log.stat().st_size
        print(f"log: {log} ({size / 1e6:,.0f} MB, {lines:,} lines)")
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "prosody_analyze", "ingest", str(log), "--year", "2026"]
            + ["--out", str(work / "out"), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            raise SystemExit(result.returncode)
        summary = json.loads(result.stdout)
        events, sessions = summary["events"], summary["sessions"]
        notes = [note for entry in summary["files"] for note in entry["notes"]]
        if notes:
            print(f"notes: {'; '.join(notes)}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime
        print(f"ingested {events:,} events, {sessions:,} sessions in {elapsed:.1f} s")
        print(f"throughput: {size / 1e6 / elapsed:,.0f} MB/s, {lines / elapsed:,.0f} lines/s")
        print(f"CPU time of the ingest process: {cpu:.1f} s ({size / 1e6 / cpu:,.0f} MB per CPU second)")
        print(f"peak RSS of the ingest process: {usage.ru_maxrss / 1024:,.0f} MiB")
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
