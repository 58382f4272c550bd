"""The demo's run, once the stack is deployed: a refund in the support-triage workflow, approved from the CLI.

Creates the demo tenant (plan pro) if missing, publishes examples/support_triage in fused mode,
starts a refund run for order o-1001 and waits until it waits for a human (`aob run --wait`),
approves it with `aob approve`, waits until it ends and prints `aob runs show`. Every step is an
`aob` command, printed before its output, so the demo doubles as a walk-through of the CLI.
Called by infra/demo.sh (make demo); AOB_STAGE picks the stack (default local), AOB_DEMO_TENANT
the tenant (default demo).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from aob.cli import stack_outputs
from aob.db import close_pool
from aob.errors import AobError, InvalidInput
from aob.runs import TERMINAL
from aob.runs.cli import invoke_runs
from aob.tenants import create_tenant, get_tenant

ROOT = Path(__file__).resolve().parents[1]
AOB = str(Path(sys.executable).with_name("aob"))
SPEC = "examples/support_triage/workflow.yaml"
STAGE = os.environ.get("AOB_STAGE", "local")
TENANT = os.environ.get("AOB_DEMO_TENANT", "demo")
REQUEST = {
    "message": "My order o-1001 arrived broken. I would like my money back, please.",
    "category": "refund",
    "order_id": "o-1001",
}
APPROVER = "user:demo-approver"
END_TIMEOUT_S = 300.0


def aob(*args: str) -> str:
    """Run an `aob` command as a user would (stage from AOB_STAGE), echoing it and its output."""
    print(f"\n$ aob {shlex.join(args)}", flush=True)
    result = subprocess.run([AOB, *args], cwd=ROOT, capture_output=True, text=True)
    print(result.stdout, end="", flush=True)
    print(result.stderr, end="", file=sys.stderr, flush=True)
    if result.returncode != 0:
        raise AobError(f"`aob {args[0]}` exited with {result.returncode} (see above)")
    return result.stdout


def ensure_tenant() -> None:
    """The demo tenant on plan pro (issue_refund needs it); an existing one is reused."""
    try:
        create_tenant(TENANT, "Demo Co", plan="pro")
        print(f"tenant {TENANT} created (plan pro)")
    except InvalidInput:
        plan = get_tenant(TENANT).plan
        if plan == "free":
            raise AobError(
                f"tenant {TENANT} exists on plan free, which may not issue refunds; "
                "set AOB_DEMO_TENANT to another tenant id"
            ) from None
        print(f"tenant {TENANT} already exists (plan {plan})")
    finally:
        close_pool()


def wait_until_ended(run_id: str) -> str:
    """Poll the runs function until the run ends; its final status."""
    outputs = stack_outputs(STAGE)
    get = {"action": "get", "tenant_id": TENANT, "run_id": run_id}
    deadline = time.monotonic() + END_TIMEOUT_S
    while (status := invoke_runs(outputs, get)["run"]["status"]) not in TERMINAL:
        if time.monotonic() > deadline:
            raise AobError(f"run {run_id} still {status} {END_TIMEOUT_S:.0f}s after the approval")
        time.sleep(1)
    print(f"\nrun {run_id} ended: {status}")
    return str(status)


def probe_models() -> None:
    """Have the warm pool probe the model endpoints now (its schedule may have run before vLLM was up)."""
    from aob.cli import _client

    arn = stack_outputs(STAGE)["ModelWarmPoolFunctionArn"]
    response = _client("lambda").invoke(FunctionName=arn, Payload=b"{}")
    body = response["Payload"].read().decode()
    if response.get("FunctionError"):
        raise AobError(f"the model warm-pool probe failed: {body}")
    print(f"model endpoints probed: {body}")


def main() -> int:
    ensure_tenant()
    probe_models()
    aob("deploy", SPEC, "--tenant", TENANT, "--mode", "fused")
    started = aob(
        "run", SPEC, "--tenant", TENANT, "--mode", "fused", "--input", json.dumps(REQUEST), "--wait"
    )
    run = json.loads(started.split("\n", 1)[1])  # after `run <id> of ...: running`, the run as JSON
    if run["status"] != "waiting":
        raise AobError(
            f"run {run['run_id']} is {run['status']}, not waiting for the refund's approval: "
            f"check {SPEC} routes category refund to approve_refund"
        )
    aob("approve", run["run_id"], "--tenant", TENANT, "--subject", APPROVER, "--role", "approver")
    status = wait_until_ended(run["run_id"])
    aob("runs", "show", run["run_id"], "--tenant", TENANT)
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AobError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(1)
