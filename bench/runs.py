"""Workflow runs on LocalStack: the document pipeline in explicit and fused mode, against plain Lambda tasks.

The document pipeline (examples/document_pipeline) is published for a bench tenant of its own in both
modes; N runs of each (BENCH_N, default 4) are started at once through the deployed runs function,
as the API does. The baseline is N executions, also started at once, of a plain state machine with
the pipeline's shape and Lambda task count (a lease task, a map of parallel pairs, a release task),
every task the deployed ping function: no policy, metering, lease or record. Throughput is runs
ended per second of wall time from the first start to the last stop; a governed step is one tool
or model call, and its time is the gateway task's in the execution history (in fused mode that
task holds the policy check, metering and record too; explicit mode's figures are printed above).
Every Lambda environment keeps its own Postgres pool (up to AOB_DB_POOL_MAX connections), and
runs at once fan out (the map runs up to 4 documents, each a parallel pair): on one machine with a
default Postgres (max_connections 100, shared with whatever else runs) keep BENCH_N small (3 to 5);
past that the gateways time out waiting for a connection (PoolTimeout) and those runs are left out.
Last line (fused runs): runs_per_s=<> step_p50_ms=<> transitions_per_step_explicit=<>
transitions_per_step_fused=<>
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from aob.cli import stack_outputs
from aob.db import close_pool
from aob.errors import InvalidInput
from aob.runs import Publish, publish
from aob.runs._cost import lambda_durations
from aob.tenants import create_tenant
from aob.workflows import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "document_pipeline" / "workflow.yaml"
N = int(os.environ.get("BENCH_N", "4"))
STAGE = os.environ.get("AOB_STAGE", "local")
TENANT = f"bench-runs-{STAGE}"
PRINCIPAL = {"subject": "user:bench", "roles": ["operator"]}
DOCUMENTS = [
    {"id": f"d{i}", "text": f"Order o-100{i} shipped late. The customer asks where the parcel is. " * 3}
    for i in range(1, 4)
]
BASELINE = f"aob-bench-runs-baseline-{STAGE}"
ROLE = "arn:aws:iam::000000000000:role/aob-bench"
GATEWAYS = ("aob-tool-gateway-", "aob-model-gateway-")
TIMEOUT_S = 600.0


@dataclass
class Batch:
    """N executions started at once and what their histories say."""

    started: float = 0.0
    stopped: float = 0.0
    arns: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    transitions: list[int] = field(default_factory=list)
    governed_steps: list[int] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)

    @property
    def runs_per_s(self) -> float:
        return len(self.arns) / (self.stopped - self.started)

    @property
    def transitions_per_step(self) -> float:
        return sum(self.transitions) / sum(self.governed_steps)


def baseline_definition(ping_arn: str) -> str:
    """The pipeline's shape with every Lambda task a ping: lease, map of parallel pairs, release."""

    def ping(name: str, **end: Any) -> dict[str, Any]:
        return {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": ping_arn, "Payload": {"task": name}},
            "ResultPath": None,
            **(end or {"End": True}),
        }

    pair = {"StartAt": "Measure", "States": {"Measure": {
        "Type": "Parallel",
        "Branches": [{"StartAt": n, "States": {n: ping(n)}} for n in ("Stats", "Keywords")],
        "End": True,
    }}}  # fmt: skip
    states = {
        "AcquireLease": ping("AcquireLease", Next="Analyze"),
        "Analyze": {
            "Type": "Map",
            "ItemsPath": "$.input.documents",
            "MaxConcurrency": 4,
            "Iterator": pair,
            "ResultPath": None,
            "Next": "ReleaseLease",
        },
        "ReleaseLease": ping("ReleaseLease"),
    }
    return json.dumps({"StartAt": "AcquireLease", "States": states})


def baseline_machine(sfn: Any, ping_arn: str) -> str:
    definition = baseline_definition(ping_arn)
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == BASELINE:
                sfn.update_state_machine(stateMachineArn=machine["stateMachineArn"], definition=definition)
                return str(machine["stateMachineArn"])
    return str(
        sfn.create_state_machine(name=BASELINE, definition=definition, roleArn=ROLE)["stateMachineArn"]
    )


def ensure_tenant() -> None:
    """The bench's own tenant, with limits no bench run reaches (other tenants are left alone)."""
    with contextlib.suppress(InvalidInput):  # made by an earlier bench run
        create_tenant(TENANT, plan="enterprise", quotas={"qps": 1_000_000, "burst": 10_000_000})


def start_run(lam: Any, runs_arn: str, version: int) -> str:
    """Start a run through the deployed runs function; its execution's ARN."""
    payload = {
        "action": "start",
        "tenant_id": TENANT,
        "workflow": "document_pipeline",
        "version": version,
        "input": {"documents": DOCUMENTS},
        "principal": PRINCIPAL,
    }
    response = lam.invoke(FunctionName=runs_arn, Payload=json.dumps(payload))
    body = json.loads(response["Payload"].read())
    if response.get("FunctionError") or body.get("status") != "running":
        raise RuntimeError(f"run did not start: {body}")
    return str(body["execution_arn"])


def start_plain(sfn: Any, arn: str) -> str:
    execution_input = {"input": {"documents": DOCUMENTS}}
    return str(
        sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=json.dumps(execution_input))[
            "executionArn"
        ]
    )


def wait_all(sfn: Any, arns: list[str]) -> tuple[float, dict[str, str]]:
    """Wait until every execution ended: the latest stop time (epoch s) and the failed ones' causes.

    A loaded LocalStack now and then drops a Lambda invoke of its own (States.Runtime); such runs
    are reported and left out of the figures rather than ending the benchmark.
    """
    running, stopped, failed = set(arns), 0.0, {}
    deadline = time.monotonic() + TIMEOUT_S
    while running:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(running)} executions still running after {TIMEOUT_S:.0f}s")
        for arn in list(running):
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] == "RUNNING":
                continue
            running.discard(arn)
            stopped = max(stopped, described["stopDate"].timestamp())
            if described["status"] != "SUCCEEDED":
                failed[arn] = f"{described['status']}: {described.get('cause')}"
        time.sleep(0.25)
    return stopped, failed


def check_runs(lam: Any, runs_arn: str, arns: list[str]) -> None:
    """Read each run back through the runs function: it must be succeeded with an intact record chain."""

    def get(arn: str) -> None:
        payload = {"action": "get", "tenant_id": TENANT, "run_id": arn.rsplit(":", 1)[1]}
        detail = json.loads(lam.invoke(FunctionName=runs_arn, Payload=json.dumps(payload))["Payload"].read())
        if detail.get("run", {}).get("status") != "succeeded" or not detail["chain"]["ok"]:
            raise RuntimeError(f"run {payload['run_id']} not succeeded with an intact chain: {detail}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(get, arns))


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events


def run_batch(sfn: Any, start: Callable[[], str]) -> Batch:
    """Start N executions at once (N threads), wait for all, read their histories."""
    batch = Batch(started=time.time())
    with ThreadPoolExecutor(max_workers=N) as pool:
        batch.arns = list(pool.map(lambda _: start(), range(N)))
    batch.stopped, batch.failed = wait_all(sfn, batch.arns)
    batch.arns = [arn for arn in batch.arns if arn not in batch.failed]
    if not batch.arns:
        raise RuntimeError(f"all {N} runs failed; first: {next(iter(batch.failed.values()))}")
    for arn in batch.arns:
        events = history(sfn, arn)
        batch.transitions.append(sum(1 for e in events if e["type"].endswith("StateEntered")))
        calls = [ms for fn, ms in lambda_durations(events) if fn.startswith(GATEWAYS)]
        batch.governed_steps.append(len(calls))
        batch.step_ms.extend(calls)
    return batch


def main() -> None:
    session = boto3.Session(region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    sfn, lam = session.client("stepfunctions"), session.client("lambda")
    outputs = stack_outputs(STAGE)
    ensure_tenant()
    spec = load_spec(SPEC)
    versions = {
        mode: publish(Publish(tenant_id=TENANT, spec=spec, mode=mode, stage=STAGE), outputs, sfn=sfn).version
        for mode in ("explicit", "fused")
    }
    close_pool()
    plain = baseline_machine(sfn, outputs["PingFunctionArn"])
    starts: dict[str, Callable[[], str]] = {
        "plain": lambda: start_plain(sfn, plain),
        **{
            mode: (lambda v=version: start_run(lam, outputs["RunsFunctionArn"], v))
            for mode, version in versions.items()
        },
    }
    for start in starts.values():  # warm every function's environments
        if failed := wait_all(sfn, [start()])[1]:
            raise RuntimeError(f"warm-up run failed: {failed}")
    batches = {name: run_batch(sfn, start) for name, start in starts.items()}
    for mode in versions:
        check_runs(lam, outputs["RunsFunctionArn"], batches[mode].arns)
    plain_b, explicit, fused = batches["plain"], batches["explicit"], batches["fused"]
    steps = fused.governed_steps[0]
    print(f"runs: {N} per batch started at once, {len(DOCUMENTS)} documents each ({steps} governed steps)")
    for name, batch in batches.items():
        transitions = statistics.mean(batch.transitions)
        line = f"{name}: runs_per_s={batch.runs_per_s:.2f} transitions_per_run={transitions:.1f}"
        if batch.step_ms:
            line += f" step_p50_ms={statistics.median(batch.step_ms):.1f}"
        print(line)
        if batch.failed:
            first = next(iter(batch.failed.values()))
            print(f"{name}: {len(batch.failed)} run(s) failed, left out; first: {first}")
    print(
        f"baseline_runs_per_s={plain_b.runs_per_s:.2f} "
        f"fused_vs_baseline={fused.runs_per_s / plain_b.runs_per_s:.2f} "
        f"explicit_vs_baseline={explicit.runs_per_s / plain_b.runs_per_s:.2f} "
        f"fused_vs_explicit={fused.runs_per_s / explicit.runs_per_s:.2f}"
    )
    print(
        f"runs_per_s={fused.runs_per_s:.2f} step_p50_ms={statistics.median(fused.step_ms):.1f} "
        f"transitions_per_step_explicit={explicit.transitions_per_step:.2f} "
        f"transitions_per_step_fused={fused.transitions_per_step:.2f}"
    )


if __name__ == "__main__":
    main()
