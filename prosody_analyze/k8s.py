"""Run the swarm past one machine: a Kubernetes Indexed Job of N shards of one plan.

One machine holds a few tens of thousands of participants (ports per source address, CPU);
a cluster holds N pods, each with its own address. :func:`indexed_job` turns one swarm
command line into a Job whose pod *K* runs ``swarm ... --shard K/N --start-at T --out -``:
the shards split the plan disjointly, start their ramps in step at the shared time ``T``
(fixed when the manifest is generated), and stream their capture to stdout, so that
``kubectl logs --prefix --timestamps`` of the pods is the capture ``ingest`` merges.

Kubernetes gives pod *K* its index in ``JOB_COMPLETION_INDEX`` (from 0, as ``--shard``
counts) and expands ``$(JOB_COMPLETION_INDEX)`` in the container's arguments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from . import __version__
from .errors import UserError
from .swarm import SwarmConfig, parse_duration

CONTAINER = "swarm"  # `kubectl logs --prefix` shows [pod/NAME/swarm]
DEFAULT_NAME = "prosody-swarm"
DEFAULT_IMAGE = f"prosody-analyze:{__version__}"
DEFAULT_START_DELAY_S = 60.0
DEFAULT_TTL_S = 86_400  # the pods (and their logs) are deleted with the Job: leave a day to collect them
START_AT_ANNOTATION = "prosody-analyze/start-at"
INDEX_ARG = "$(JOB_COMPLETION_INDEX)"
VARIABLE = re.compile(r"\$\$\(|" + re.escape(INDEX_ARG))  # $$( is Kubernetes' escape for a literal $(

# Options the Job sets itself for every shard, and ones a pod cannot use.
SET_BY_JOB = {
    "shard": "--shard (set per pod from JOB_COMPLETION_INDEX)",
    "start_at": "--start-at (give it to swarm-job: --start-at or --start-delay)",
    "out": "--out (the pods stream to stdout: --out -)",
    "local": "--local (a pod cannot start a Prosody next to the swarm; aim at your server)",
    "config_file": "--config (the file is not in the image; give its values as options)",
}
DURATION_OPTIONS = {
    "delay": "ms",  # a bare number is milliseconds, as in JXS
    "duration": "s",
    "batch_interval": "s",
    "retry_backoff": "s",
    "timeout": "s",
    "conference_timeout": "s",
    "ping_interval": "s",
    "metrics_interval": "s",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Kubernetes resource quantity: 500m, 2, 1.5, 512Mi, 1G, 1e3.
QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][-+]?\d+)?$")


def check_swarm_args(swarm_args: Sequence[str]) -> dict[str, Any]:
    """Parse ``swarm_args`` with the real ``swarm`` command's parser and refuse what cannot run in a pod.

    Returns the parsed options (``swarm``'s parameter names), so mistakes show up now, once,
    rather than in N pods after the start time.
    """
    import typer
    import typer.main

    from .cli import app

    args = list(swarm_args)
    if any(arg in ("--help", "-h") for arg in args):
        raise UserError("--help is not a swarm option for the job; see `prosody-analyze swarm --help`")
    command = typer.main.get_command(app).commands["swarm"]
    try:
        params = command.make_context("swarm", args).params
    except typer.TyperException as error:  # an unknown option, a missing value, a non-number
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        raise UserError(f"swarm options: {message}") from None
    for name, why in SET_BY_JOB.items():
        if params.get(name) not in (None, False):
            raise UserError(f"remove {why}")
    counts = list(params.get("counts") or ())
    if len(counts) > 2 or any(count < 1 for count in counts):
        raise UserError("at most two whole numbers >= 1 among the swarm options: ROOMS PARTICIPANTS")
    if not params.get("domain"):
        raise UserError("the job needs --domain (the XMPP domain of the Prosody under test)")
    if not params.get("duration"):
        raise UserError(
            "the job needs --duration: a pod holds its participants that long, then leaves and ends "
            "(stopping a Job by deleting it would delete its pods' logs, which are the capture)"
        )
    for name, unit in DURATION_OPTIONS.items():
        if params.get(name) is not None:
            parse_duration(params[name], default_unit=unit)
    for name in ("rooms", "participants", "batches"):
        if params.get(name) is not None and params[name] < 1:
            raise UserError(f"--{name} must be at least 1")
    return params


def planned_total(params: dict[str, Any]) -> int:
    """Participants in the whole plan that the parsed swarm options describe."""
    counts = list(params.get("counts") or ())
    defaults = SwarmConfig()
    rooms = params.get("rooms") or (counts[0] if counts else defaults.rooms)
    participants = params.get("participants") or (counts[1] if len(counts) > 1 else defaults.participants)
    return (params.get("batches") or defaults.batches) * rooms * participants


def indexed_job(
    swarm_args: Sequence[str],
    shards: int,
    *,
    image: str = DEFAULT_IMAGE,
    name: str = DEFAULT_NAME,
    namespace: str | None = None,
    start_at: datetime | None = None,
    start_delay_s: float = DEFAULT_START_DELAY_S,
    cpu: str = "1",
    memory: str = "512Mi",
    cpu_limit: str | None = None,
    memory_limit: str | None = "1Gi",
    ttl_s: int = DEFAULT_TTL_S,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A batch/v1 Indexed Job running ``swarm *swarm_args`` as ``shards`` shards of one plan.

    ``start_at`` (default: now + ``start_delay_s``) is the shared start of the ramp, written
    into every pod's arguments: apply the Job before then. A shard that fails is not retried
    (a late retry would not be in step) and does not stop the others.
    """
    params = check_swarm_args(swarm_args)
    if not isinstance(shards, int) or shards < 1:
        raise UserError(f"--shards must be a whole number >= 1, got {shards!r}")
    total = planned_total(params)
    if shards > total:
        raise UserError(f"{shards} shards for {total} participants: some pods would have nothing to do")
    if not DNS_LABEL.match(name) or len(name) > 52:
        raise UserError(
            f"job name {name!r}: lower-case letters, digits and '-', at most 52 characters "
            "(pod names add a suffix)"
        )
    if namespace is not None and (not DNS_LABEL.match(namespace) or len(namespace) > 63):
        raise UserError(f"namespace {namespace!r}: lower-case letters, digits and '-', at most 63 characters")
    if not image or any(c.isspace() for c in image):
        raise UserError(f"image {image!r}: give a container image reference (registry/name:tag)")
    if start_delay_s < 0:
        raise UserError("--start-delay must not be negative")
    if not isinstance(ttl_s, int) or ttl_s < 0:
        raise UserError("--ttl must not be negative")
    resources = _resources(cpu=cpu, memory=memory, cpu_limit=cpu_limit, memory_limit=memory_limit)
    now = now or datetime.now(UTC)
    start = start_at or now + timedelta(seconds=start_delay_s)
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    start_text = start.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    labels = {"app.kubernetes.io/name": "prosody-swarm", "app.kubernetes.io/instance": name}
    args = [
        "swarm",
        *(arg.replace("$(", "$$(") for arg in swarm_args),  # Kubernetes would expand $(NAME)
        "--shard",
        f"{INDEX_ARG}/{shards}",
        "--start-at",
        start_text,
        "--out",
        "-",
        "--no-progress",
    ]
    metadata: dict[str, Any] = {
        "name": name,
        "labels": labels,
        "annotations": {START_AT_ANNOTATION: start_text},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            # A failed shard is not retried and does not stop the others (backoffLimit would kill them).
            "backoffLimitPerIndex": 0,
            "ttlSecondsAfterFinished": ttl_s,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": False,
                    # One pod per node where possible: each node brings its own ports and CPU.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": labels},
                        }
                    ],
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["prosody-analyze"],
                            "args": args,
                            "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                            "resources": resources,
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _resources(*, cpu: str, memory: str, cpu_limit: str | None, memory_limit: str | None) -> dict[str, Any]:
    for option, value in (
        ("--cpu", cpu),
        ("--memory", memory),
        ("--cpu-limit", cpu_limit),
        ("--memory-limit", memory_limit),
    ):
        if value is not None and not QUANTITY.match(value):
            raise UserError(f"{option} {value!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1Gi)")
    requests = {"cpu": cpu, "memory": memory}
    limits = {key: value for key, value in (("cpu", cpu_limit), ("memory", memory_limit)) if value}
    return {"requests": requests, "limits": limits} if limits else {"requests": requests}


def shard_command(job: dict[str, Any], index: int) -> list[str]:
    """The command line pod ``index`` of ``job`` runs, with ``$(JOB_COMPLETION_INDEX)`` expanded as
    Kubernetes does (to run a shard by hand, or to check what a pod will do)."""
    container = job["spec"]["template"]["spec"]["containers"][0]

    def expand(match: re.Match[str]) -> str:
        return "$(" if match.group() == "$$(" else str(index)

    return [*container["command"], *(VARIABLE.sub(expand, arg) for arg in container["args"])]


# ---- YAML -----------------------------------------------------------------------------------
PLAIN_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]*$")
YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def to_yaml(document: Any, comment: str = "") -> str:
    """Block-style YAML of a JSON-like value, strings double-quoted (JSON's escapes are YAML's).

    Enough for manifests, without a YAML library: every value is a dict, list, str, int,
    float, bool or None.
    """
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + "\n".join(_yaml_lines(document, 0)) + "\n"


def _yaml_scalar(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _yaml_key(key: str) -> str:
    return key if PLAIN_KEY.match(key) and key.lower() not in YAML_WORDS else json.dumps(key)


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{_yaml_key(key)}:")
                lines += _yaml_lines(item, indent + (0 if isinstance(item, list) else 2))
            else:
                lines.append(f"{pad}{_yaml_key(key)}: {_yaml_inline(item)}")
        return lines
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            if isinstance(item, dict | list) and item:
                nested = _yaml_lines(item, indent + 2)
                lines.append(f"{pad}- {nested[0][indent + 2 :]}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_yaml_inline(item)}")
        return lines
    return [pad + _yaml_inline(value)]


def _yaml_inline(value: Any) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return _yaml_scalar(value)
