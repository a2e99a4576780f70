"""The Typer application every command module registers on."""

import typer

app = typer.Typer(
    name="prosody-analyze",
    help="Load-test Prosody (Jitsi's XMPP server), ingest its logs and metrics, find error "
    "bursts, fit resource models and write a report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
