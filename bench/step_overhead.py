"""Step Functions overhead per Lambda task on LocalStack, against direct lambda:invoke.

N executions of a 5-task state machine (every task invokes the deployed ping function) are
interleaved with N x 5 direct invokes of the same function. Execution time comes from the
service's own start/stop timestamps; invoke time is the client's round trip.
Last line: step_overhead_ratio=<sfn_step_ms / invoke_ms> sfn_step_ms=<> invoke_ms=<>
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid

import boto3
from aob.cli import stack_outputs

N = int(os.environ.get("BENCH_N", "20"))
TASKS = 5
ROLE = "arn:aws:iam::000000000000:role/aob-bench"
NAME = "aob-bench-step-overhead"


def definition(function_arn: str) -> str:
    states = {}
    for i in range(1, TASKS + 1):
        states[f"Ping{i}"] = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function_arn, "Payload": {"task": i}},
            "ResultSelector": {"ok.$": "$.Payload.ok"},
            **({"Next": f"Ping{i + 1}"} if i < TASKS else {"End": True}),
        }
    return json.dumps({"StartAt": "Ping1", "States": states})


def state_machine(sfn, function_arn: str) -> str:
    for machine in sfn.list_state_machines()["stateMachines"]:
        if machine["name"] == NAME:
            sfn.update_state_machine(
                stateMachineArn=machine["stateMachineArn"], definition=definition(function_arn)
            )
            return machine["stateMachineArn"]
    return sfn.create_state_machine(name=NAME, definition=definition(function_arn), roleArn=ROLE)[
        "stateMachineArn"
    ]


def run_execution(sfn, arn: str) -> float:
    execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input="{}")["executionArn"]
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.02)
    if described["status"] != "SUCCEEDED":
        raise RuntimeError(f"bench execution ended {described['status']}: {described.get('cause')}")
    return (described["stopDate"] - described["startDate"]).total_seconds() * 1000


def invoke(lam, function_arn: str) -> float:
    started = time.perf_counter()
    response = lam.invoke(FunctionName=function_arn, Payload=b'{"task": 0}')
    elapsed = (time.perf_counter() - started) * 1000
    if response.get("FunctionError"):
        raise RuntimeError(response["Payload"].read().decode())
    return elapsed


def main() -> None:
    sfn, lam = boto3.client("stepfunctions"), boto3.client("lambda")
    function_arn = stack_outputs(os.environ.get("AOB_STAGE", "local"))["PingFunctionArn"]
    arn = state_machine(sfn, function_arn)
    run_execution(sfn, arn)  # warm the environments
    invoke(lam, function_arn)
    step_ms, invoke_ms = [], []
    for _ in range(N):
        step_ms.append(run_execution(sfn, arn) / TASKS)
        invoke_ms.extend(invoke(lam, function_arn) for _ in range(TASKS))
    step, direct = statistics.median(step_ms), statistics.median(invoke_ms)
    print(f"executions={N} tasks_per_execution={TASKS}")
    print(f"step_overhead_ratio={step / direct:.2f} sfn_step_ms={step:.1f} invoke_ms={direct:.1f}")


if __name__ == "__main__":
    main()
