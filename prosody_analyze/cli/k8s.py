"""`swarm-job`: a Kubernetes Indexed Job running the swarm as N shards (thin wrapper over
:func:`prosody_analyze.k8s.indexed_job`)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .. import k8s
from ..swarm import parse_duration, parse_start_at
from .app import app


@app.command(
    "swarm-job",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def swarm_job(
    ctx: typer.Context,
    shards: Annotated[int, typer.Option(help="Pods, each running shard K/N of the plan (K from 0).")],
    image: Annotated[
        str, typer.Option(help="Container image built from the project's Dockerfile (registry/name:tag).")
    ] = k8s.DEFAULT_IMAGE,
    name: Annotated[str, typer.Option(help="Job name (pods are NAME-K-xxxxx).")] = k8s.DEFAULT_NAME,
    namespace: Annotated[str | None, typer.Option(help="Namespace [default: kubectl's current].")] = None,
    start_delay: Annotated[
        str, typer.Option(help="Shared ramp start, this long after now (time to apply and pull the image).")
    ] = "60s",
    start_at: Annotated[
        str | None,
        typer.Option(
            help="Shared ramp start as an ISO time (2026-11-28T21:00:00Z) or +DELAY; overrides --start-delay."
        ),
    ] = None,
    cpu: Annotated[str, typer.Option(help="CPU request per pod (Kubernetes quantity: 500m, 2).")] = "1",
    memory: Annotated[str, typer.Option(help="Memory request per pod (512Mi, 2Gi).")] = "512Mi",
    cpu_limit: Annotated[str | None, typer.Option(help="CPU limit per pod [default: none].")] = None,
    memory_limit: Annotated[str, typer.Option(help="Memory limit per pod.")] = "1Gi",
    ttl: Annotated[
        str, typer.Option(help="Delete the finished Job and its pods (and their logs) after this long.")
    ] = "24h",
    as_json: Annotated[
        bool, typer.Option("--json", help="Write the manifest as JSON instead of YAML.")
    ] = False,
) -> None:
    """Write a Kubernetes Indexed Job (YAML on stdout) that runs `swarm` as N shards of one plan.

    Every other option is a `swarm` option (see `prosody-analyze swarm --help`), e.g.
    `swarm-job --shards 20 --domain meet.example.com --rooms 20 --participants 50 --batches 10
    --batch-interval 60s --duration 10m --image registry.example.com/prosody-analyze:0.1.0 > job.yaml`.
    Each pod runs `swarm ... --shard K/N --start-at T --out -`; apply the Job before T (printed on stderr),
    then collect `kubectl logs -l job-name=NAME --prefix --timestamps --tail=-1` for `ingest`.
    """
    start = parse_start_at(start_at) if start_at else None
    job = k8s.indexed_job(
        ctx.args,
        shards,
        image=image,
        name=name,
        namespace=namespace,
        start_at=start,
        start_delay_s=parse_duration(start_delay),
        cpu=cpu,
        memory=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit or None,
        ttl_s=int(parse_duration(ttl)),
    )
    start_text = job["metadata"]["annotations"][k8s.START_AT_ANNOTATION]
    if as_json:
        print(json.dumps(job, indent=2))
    else:
        print(
            k8s.to_yaml(
                job,
                comment=f"prosody-analyze swarm-job: {shards} shards, shared start {start_text} (UTC).\n"
                "Apply before then: kubectl apply -f THIS_FILE",
            ),
            end="",
        )
    print(
        f"swarm-job: {shards} shards of job {name!r}, ramp starts at {start_text} (UTC): "
        f"apply before then; logs: kubectl logs -l job-name={name} --prefix --timestamps --tail=-1",
        file=sys.stderr,
    )
