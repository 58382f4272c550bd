"""`aob deploy SPEC`, `aob run` and `aob runs show`: publish workflows, start runs, read them back.

Publishing runs here (it needs Postgres and Step Functions); starting and reading go through the
deployed runs function, as the HTTP API does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import time
from pathlib import Path
from typing import Any

from aob.errors import AobError, InvalidInput
from aob.runs._models import TERMINAL, PublishedWorkflow

WAIT_TIMEOUT_S = 600.0


def _stage_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", default=os.environ.get("AOB_STAGE", "local"))


def publish_spec(args: argparse.Namespace, outputs: dict[str, str]) -> PublishedWorkflow:
    from aob.cli import _client
    from aob.db import close_pool
    from aob.runs._publish import Publish, publish
    from aob.workflows import load_spec

    if not args.tenant:
        raise InvalidInput("--tenant: name the tenant the workflow is published for")
    request = Publish(
        tenant_id=args.tenant, spec=load_spec(Path(args.spec)), mode=args.mode, stage=args.stage
    )
    try:
        return publish(request, outputs, sfn=_client("stepfunctions"))
    finally:
        close_pool()  # a command, not a server: no pool threads left to stall the exit


def cmd_publish(args: argparse.Namespace) -> int:
    """`aob deploy SPEC --tenant T [--mode M]`: publish the spec as a workflow version."""
    from aob.cli import stack_outputs

    published = publish_spec(args, stack_outputs(args.stage))
    state = "published" if published.created else "unchanged (already published)"
    print(f"{published.name} v{published.version} ({published.mode}) for {published.tenant_id}: {state}")
    print(f"  state machine {published.state_machine_arn}")
    transitions = sum(s["transitions_per_pass"] for s in published.stats.values())
    invocations = sum(s["lambda_invocations"] for s in published.stats.values())
    print(
        f"  on a pass through every node: {transitions} state transitions, {invocations} Lambda invocations"
    )
    return 0


def invoke_runs(outputs: dict[str, str], payload: dict[str, Any]) -> Any:
    """Call the deployed runs function; its error (UnknownRun, ...) becomes an AobError."""
    from aob.cli import _client

    response = _client("lambda").invoke(FunctionName=outputs["RunsFunctionArn"], Payload=json.dumps(payload))
    body = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise AobError(f"{body.get('errorType')}: {body.get('errorMessage')}")
    return body


def _input(text: str) -> Any:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--input: not JSON ({exc}); pass a JSON object or @file.json") from exc


def cmd_run(args: argparse.Namespace) -> int:
    """`aob run SPEC --tenant T --input JSON|@file [--wait]`: publish if needed, then start a run."""
    from aob.cli import stack_outputs

    outputs = stack_outputs(args.stage)
    published = publish_spec(args, outputs)
    start = {
        "action": "start",
        "tenant_id": args.tenant,
        "workflow": published.name,
        "version": published.version,
        "input": _input(args.input),
        "principal": {"subject": args.subject, "roles": args.role or ["operator"]},
    }
    if args.idempotency_key:
        start["idempotency_key"] = args.idempotency_key
    run = invoke_runs(outputs, start)
    print(f"run {run['run_id']} of {published.name} v{published.version}: {run['status']}", flush=True)
    if not args.wait:
        return 0
    get = {"action": "get", "tenant_id": args.tenant, "run_id": run["run_id"]}
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while run["status"] not in TERMINAL | {"waiting"}:
        if time.monotonic() > deadline:
            raise AobError(f"run {run['run_id']} still {run['status']} after {WAIT_TIMEOUT_S:.0f}s")
        time.sleep(1)
        run = invoke_runs(outputs, get)["run"]
    print(json.dumps({k: run[k] for k in ("run_id", "status", "output", "error")}, indent=2))
    return 0 if run["status"] in ("succeeded", "waiting") else 1


def cmd_runs_show(args: argparse.Namespace) -> int:
    """`aob runs show RUN --tenant T`: status, steps, records, chain check and the cost summary."""
    from aob.cli import stack_outputs

    outputs = stack_outputs(args.stage)
    ref = {"tenant_id": args.tenant, "run_id": args.run_id}
    detail = invoke_runs(outputs, {"action": "get", **ref})
    summary = invoke_runs(outputs, {"action": "summary", **ref})
    run, chain = detail["run"], detail["chain"]
    print(f"run {run['run_id']}: {run['workflow']} v{run['version']} ({run['mode']}), {run['status']}")
    if run.get("error"):
        print(f"  error: {json.dumps(run['error'])}")
    print(f"steps ({len(detail['steps'])}):")
    for step in detail["steps"]:
        print(f"  {step['state_name']:<30} {step['kind']:<10} {step['status']} (attempt {step['attempt']})")
    print(f"decision records ({len(detail['records'])}):")
    for stored in detail["records"]:
        record = stored["record"]
        print(f"  #{stored['seq']} {record['node']['name']} ({record['node']['kind']}): {record['outcome']}")
    print("chain: ok" if chain["ok"] else f"chain: BROKEN at #{chain['first_bad_seq']}: {chain['reason']}")
    cost = summary["cost_usd"]
    lambda_cost = cost["lambda_requests"] + cost["lambda_compute"]
    print(
        f"summary: {summary['state_transitions']} state transitions, {summary['lambda_invocations']} Lambda "
        f"invocations, {summary['input_tokens'] + summary['output_tokens']} tokens, "
        f"{summary['duration_s']:.1f}s, ~${cost['total']:.8f} "
        f"(Step Functions ${cost['step_functions']:.8f}, Lambda ${lambda_cost:.8f})"
    )
    return 0 if chain["ok"] else 1


def add_publish_arguments(deploy: argparse.ArgumentParser) -> None:
    """`aob deploy [SPEC --tenant T --mode M]`: with a spec, publish it instead of deploying the stack."""
    deploy.add_argument(
        "spec", nargs="?", help="a workflow spec to publish for --tenant (default: the stack)"
    )
    deploy.add_argument("--tenant", help="the tenant the workflow spec is published for")
    deploy.add_argument("--mode", choices=["explicit", "fused"], default="explicit")


def register(sub: Any) -> None:
    """Add `run` and `runs show` to the aob command line."""
    run = sub.add_parser("run", help="publish a workflow spec if needed and start a run of it")
    run.add_argument("spec", help="workflow spec file (.yaml, .yml or .json)")
    run.add_argument("--tenant", required=True)
    run.add_argument("--input", default="{}", help="the run's input: JSON, or @file.json")
    run.add_argument("--mode", choices=["explicit", "fused"], default="explicit")
    run.add_argument("--subject", default=f"cli:{getpass.getuser()}", help="who starts it (policies see it)")
    run.add_argument("--role", action="append", help="a role of the subject (repeatable; default operator)")
    run.add_argument("--idempotency-key", help="a retried start with the same key returns the first run")
    run.add_argument("--wait", action="store_true", help="wait until it ends or waits for an approval")
    _stage_argument(run)
    run.set_defaults(func=cmd_run)

    runs = sub.add_parser("runs", help="inspect runs").add_subparsers(dest="runs_command", required=True)
    show = runs.add_parser("show", help="status, steps, DecisionRecords, chain check and cost of a run")
    show.add_argument("run_id")
    show.add_argument("--tenant", required=True)
    _stage_argument(show)
    show.set_defaults(func=cmd_runs_show)
