"""swarm-job: the Indexed Job manifest is valid Kubernetes, runs the right shard in each pod, and
the Dockerfile's build context is enough to install the tool."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from prosody_analyze import k8s
from prosody_analyze.cli import app
from prosody_analyze.errors import UserError
from prosody_analyze.swarm import parse_shard, parse_start_at

ROOT = Path(__file__).resolve().parent.parent
SWARM_ARGS = [
    "--domain",
    "meet.example.com",
    "--rooms",
    "20",
    "--participants",
    "50",
    "--batches",
    "4",
    "--batch-interval",
    "60s",
    "--duration",
    "10m",
]
NOW = datetime(2026, 11, 28, 21, 0, 0, tzinfo=UTC)
# backoffLimitPerIndex is GA from Kubernetes 1.33; check the oldest supported and the newest schemas.
KUBERNETES_VERSIONS = ["1.33", kubernetes_validate.latest_version()]


def validate(manifest: dict, version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


@pytest.fixture
def job() -> dict:
    return k8s.indexed_job(
        SWARM_ARGS, 20, image="registry.example.com/prosody-analyze:0.1.0", namespace="load", now=NOW
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_generated_job_is_valid_against_the_kubernetes_schema(job, version):
    validate(job, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_cli_yaml_is_valid_against_the_kubernetes_schema(version):
    result = CliRunner().invoke(
        app,
        [
            "swarm-job",
            "--shards",
            "3",
            *SWARM_ARGS,
            "--cpu",
            "500m",
            "--cpu-limit",
            "2",
            "--memory",
            "256Mi",
            "--memory-limit",
            "2Gi",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    validate(manifest, version)
    resources = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }


@pytest.mark.parametrize(
    "breakage",
    [
        lambda m: m["spec"].update(paralelism=3),  # misspelt field
        lambda m: m["spec"].update(completions="twenty"),  # not an integer
        lambda m: m["spec"]["template"]["spec"]["containers"][0].pop("name"),  # required field
        lambda m: m["spec"]["template"]["spec"].update(containers={"name": "swarm"}),  # not a list
        lambda m: m["spec"]["template"]["spec"]["containers"][0].update(args="swarm --shard 0/3"),
    ],
    ids=[
        "unknown-field",
        "string-for-int",
        "container-without-name",
        "containers-not-a-list",
        "args-not-a-list",
    ],
)
def test_broken_manifests_are_rejected_by_the_same_check(job, breakage):
    broken = copy.deepcopy(job)
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, KUBERNETES_VERSIONS[-1])


def test_indexed_job_runs_one_shard_per_index_with_a_shared_start(job):
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 20, 20)
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["backoffLimitPerIndex"] == 0 and spec["ttlSecondsAfterFinished"] == k8s.DEFAULT_TTL_S
    assert job["metadata"]["namespace"] == "load"
    container = spec["template"]["spec"]["containers"][0]
    assert container["name"] == "swarm" and container["image"] == "registry.example.com/prosody-analyze:0.1.0"
    expected_start = NOW + timedelta(seconds=k8s.DEFAULT_START_DELAY_S)
    shards, starts = [], set()
    for index in range(20):
        command = k8s.shard_command(job, index)
        assert command[:2] == ["prosody-analyze", "swarm"]
        assert command[2 : 2 + len(SWARM_ARGS)] == SWARM_ARGS
        shards.append(parse_shard(command[command.index("--shard") + 1]))
        starts.add(parse_start_at(command[command.index("--start-at") + 1]))
        assert command[command.index("--out") + 1] == "-" and "--no-progress" in command
    # --shard counts from 0 like JOB_COMPLETION_INDEX: pods 0..19 are exactly shards 0/20..19/20.
    assert shards == [(index, 20) for index in range(20)]
    assert starts == {expected_start}
    assert job["metadata"]["annotations"][k8s.START_AT_ANNOTATION] == "2026-11-28T21:01:00.000Z"


def test_explicit_start_at_wins_over_the_delay():
    start = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    job = k8s.indexed_job(SWARM_ARGS, 2, start_at=start, now=NOW)
    assert parse_start_at(k8s.shard_command(job, 1)[-4]) == start


def test_a_literal_dollar_paren_in_an_option_is_escaped_from_kubernetes_expansion():
    job = k8s.indexed_job([*SWARM_ARGS, "--room-prefix", "load$(X)"], 2, now=NOW)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "load$$(X)" in args
    assert "load$(X)" in k8s.shard_command(job, 0)


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (["--rooms", "2", "--duration", "1m"], {}, "needs --domain"),
        (["--domain", "d", "--rooms", "2"], {}, "needs --duration"),
        ([*SWARM_ARGS, "--shard", "0/2"], {}, "remove --shard"),
        ([*SWARM_ARGS, "--local"], {}, "remove --local"),
        ([*SWARM_ARGS, "-o", "capture/"], {}, "remove --out"),
        ([*SWARM_ARGS, "--start-at", "+5s"], {}, "remove --start-at"),
        ([*SWARM_ARGS, "--config", "config.json"], {}, "remove --config"),
        ([*SWARM_ARGS, "--romos", "2"], {}, "No such option: --romos"),
        ([*SWARM_ARGS, "--rooms", "two"], {}, "Invalid value for '--rooms'"),
        ([*SWARM_ARGS, "--batch-interval", "1 minute"], {}, "not a duration"),
        (["--domain", "d", "--duration", "1m", "2", "0"], {}, "two whole numbers >= 1"),
        (
            ["--domain", "d", "--duration", "1m", "--rooms", "1", "--participants", "2"],
            {"shards": 3},
            "3 shards for 2 participants",
        ),
        (SWARM_ARGS, {"name": "Load_Test"}, "job name"),
        (SWARM_ARGS, {"memory": "1 GB"}, "--memory '1 GB' is not a Kubernetes quantity"),
        (SWARM_ARGS, {"cpu_limit": "two"}, "--cpu-limit 'two' is not a Kubernetes quantity"),
        (SWARM_ARGS, {"image": ""}, "image"),
    ],
)
def test_bad_options_are_one_clear_error(args, options, message):
    shards = options.pop("shards", 2)
    with pytest.raises(UserError, match=re.escape(message)):
        k8s.indexed_job(args, shards, **options)


def test_cli_error_is_one_line_and_exit_2():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "prosody_analyze",
            "swarm-job",
            "--shards",
            "4",
            "--domain",
            "d",
            "--rooms",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "needs --duration" in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        {"plain": "text", "words": ["yes", "no", "null", "true", "~", "0755", "1e3", "3.0"]},
        {"specials": ["a: b", "# not a comment", "- dash", "{x}", "[y]", "'q'", '"dq"', "back\\slash"]},
        {"unicode and control": ["café ☕", "tab\there", "two\nlines", ""]},
        {"empty": {}, "none": [], "null": None, "flags": [True, False], "numbers": [0, -3, 2.5]},
        {"nested": [[1, [2, {}]], {"a": [{"b": []}]}], "yes": 1, "key with space": {"x": "y"}},
    ],
)
def test_yaml_writer_round_trips_through_a_yaml_parser(value):
    assert yaml.safe_load(k8s.to_yaml(value, comment="two\ncomment lines")) == value


def test_dockerfile_copies_everything_pip_install_needs(tmp_path):
    """Build from exactly what the Dockerfile COPYs: the package, its data and its command must be there."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.\d+-slim$", dockerfile, re.M)
    assert re.search(r"^RUN pip install \.", dockerfile, re.M)
    context = tmp_path / "context"
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        *sources, target = line.split()
        for source in sources:
            destination = context / (source if target.endswith("/") else target)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, destination)
    # What `pip install .` does, minus the network: setuptools reads pyproject.toml and lays out the package.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "egg_info",
            "--egg-base",
            str(tmp_path),
            "build_py",
            "--build-lib",
            str(tmp_path / "lib"),
        ],
        cwd=context,
        check=True,
        timeout=120,
        capture_output=True,
    )
    installed = tmp_path / "lib" / "prosody_analyze"
    assert (installed / "k8s.py").is_file() and (installed / "cli" / "k8s.py").is_file()
    assert (installed / "report_templates" / "report.css").is_file()
    (entry_points,) = tmp_path.glob("*.egg-info/entry_points.txt")
    assert "prosody-analyze = prosody_analyze.cli:main" in entry_points.read_text(encoding="utf-8")


def test_cli_json_and_yaml_are_the_same_manifest_and_stderr_names_the_start():
    args = [
        "swarm-job",
        "--shards",
        "4",
        *SWARM_ARGS,
        "--start-at",
        "2026-12-01T08:30:00Z",
        "--name",
        "run-7",
    ]
    as_yaml = CliRunner().invoke(app, args)
    as_json = CliRunner().invoke(app, [*args, "--json"])
    assert as_yaml.exit_code == as_json.exit_code == 0
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    assert json.loads(as_json.stdout)["metadata"]["name"] == "run-7"
    assert "2026-12-01T08:30:00.000Z" in as_yaml.stderr and "job-name=run-7" in as_yaml.stderr
