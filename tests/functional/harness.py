"""Fast tier: the template's functions and state machines in moto, Lambda tasks run in-process.

moto executes Step Functions for real (its interpreter is a port of LocalStack's) but needs Docker
to run a Lambda. The harness replaces that one method so each function's handler is imported from
functions/<name>/app.py and called here, with errors shaped as Lambda shapes them. The ASL files
and DefinitionSubstitutions come from template.yaml, so this tier exercises the same flows.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

import boto3
from aob.deploy import PolicySigner, load_template
from aob.deploy._stack import build_artifact
from moto import mock_aws
from moto.awslambda.models import LambdaFunction

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def _lambda_context(function: LambdaFunction) -> SimpleNamespace:
    deadline = time.monotonic() + float(function.timeout)
    return SimpleNamespace(
        function_name=function.function_name,
        function_version="$LATEST",
        invoked_function_arn=function.function_arn,
        memory_limit_in_mb=int(function.memory_size),
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function.function_name}",
        log_stream_name="in-process",
        get_remaining_time_in_millis=lambda: max(0, int((deadline - time.monotonic()) * 1000)),
    )


class InProcessStack:
    """The template deployed into moto; handlers run in this process."""

    def __init__(
        self, work_dir: Path, signer: PolicySigner, template_path: Path = ROOT / "template.yaml"
    ) -> None:
        self.template = load_template(template_path)
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        self.work_dir = work_dir
        self.signer = signer
        self._environments: dict[str, dict[str, str]] = {}
        self.function_arns: dict[str, str] = {}
        self.state_machine_arns: dict[str, str] = {}
        self._handlers: dict[str, Callable[..., Any]] = {}
        self.invocations: list[tuple[str, Any]] = []

    def _task_root(self, logical_id: str, resource: dict[str, Any]) -> Path:
        """The function's package as deploy builds it (signed bundle included), unpacked."""
        path = resource["Properties"]["CodeUri"]
        artifact = build_artifact(resource, ROOT / path, ROOT, self.signer, self.work_dir, "uv-unused")
        task_root = self.work_dir / logical_id
        with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
            archive.extractall(task_root)
        return task_root

    def _environment(self, resource: dict[str, Any], task_root: Path) -> dict[str, str]:
        """Template environment values this harness can resolve (others come from the process)."""
        variables = {
            **self.template.get("Globals", {})
            .get("Function", {})
            .get("Environment", {})
            .get("Variables", {}),
            **resource["Properties"].get("Environment", {}).get("Variables", {}),
        }
        parameters = self.template.get("Parameters", {})
        known = {
            "PolicyTrustedKeys": self.signer.trusted_keys_json(),
            "ModelRoutes": parameters["ModelRoutes"]["Default"],
        }
        resolved = {"LAMBDA_TASK_ROOT": str(task_root)}
        for name, value in variables.items():
            if isinstance(value, str):
                resolved[name] = value
            elif isinstance(value, dict) and value.get("Ref") in known:
                resolved[name] = known[value["Ref"]]
        return resolved

    def _load_handler(self, code_dir: Path) -> Callable[..., Any]:
        module_name = f"aob_function_{code_dir.parent.name}_{code_dir.name}"
        spec = importlib.util.spec_from_file_location(module_name, code_dir / "app.py")
        assert spec and spec.loader
        module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.lambda_handler

    def _invoke(self, function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        handler = self._handlers[function.function_name]
        self.invocations.append((function.function_name, event))
        logs = io.StringIO()
        try:
            with (
                redirect_stdout(logs),
                mock.patch.dict(os.environ, self._environments[function.function_name]),
            ):
                result = handler(event if event is not None else {}, _lambda_context(function))
            return json.dumps(result), False, logs.getvalue()
        except Exception as exc:  # shaped as the Lambda runtime reports an unhandled error
            error = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return json.dumps(error), True, logs.getvalue()

    def _deploy(self) -> None:
        lam = boto3.client("lambda", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        trust = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ]
        }
        role_arn = boto3.client("iam", region_name=REGION).create_role(
            RoleName="aob-functional", AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]["Arn"]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            properties = resource["Properties"]
            name = f"{logical_id}-functional"
            arn = lam.create_function(
                FunctionName=name,
                Runtime="python3.13",
                Role=role_arn,
                Handler="app.lambda_handler",
                Code={"ZipFile": buffer.getvalue()},
                Timeout=int(properties.get("Timeout", 30)),
                MemorySize=int(properties.get("MemorySize", 256)),
            )["FunctionArn"]
            self.function_arns[logical_id] = arn
            task_root = self._task_root(logical_id, resource)
            self._environments[name] = self._environment(resource, task_root)
            self._handlers[name] = self._load_handler(task_root)
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::StateMachine":
                continue
            properties = resource["Properties"]
            definition = (ROOT / properties["DefinitionUri"]).read_text()
            # moto's CloudFormation does not apply DefinitionSubstitutions; do what SAM does.
            for key, value in properties.get("DefinitionSubstitutions", {}).items():
                definition = definition.replace("${" + key + "}", self._resolve(value))
            self.state_machine_arns[logical_id] = sfn.create_state_machine(
                name=f"{logical_id}-functional", definition=definition, roleArn=role_arn
            )["stateMachineArn"]

    def _resolve(self, value: Any) -> str:
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute == "Arn" and logical_id in self.function_arns:
                return self.function_arns[logical_id]
        raise NotImplementedError(f"harness cannot resolve substitution {value!r}")

    def run(self, state_machine: str, flow_input: dict[str, Any], timeout_s: float = 60) -> dict[str, Any]:
        """Start an execution of a template state machine and wait for it to end."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.start_execution(
            stateMachineArn=self.state_machine_arns[state_machine],
            name=f"functional-{uuid.uuid4().hex[:12]}",
            input=json.dumps(flow_input),
        )["executionArn"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                described["history"] = sfn.get_execution_history(executionArn=arn)["events"]
                return described
            time.sleep(0.05)
        raise TimeoutError(f"{arn} still running after {timeout_s}s")

    @classmethod
    @contextmanager
    def started(cls, work_dir: Path, signer: PolicySigner) -> Iterator[InProcessStack]:
        stack = cls(work_dir, signer)
        config = {"stepfunctions": {"execute_state_machine": True}}
        run_in_process = lambda function, event=None: stack._invoke(function, event)  # noqa: E731
        with mock_aws(config=config), mock.patch.object(LambdaFunction, "_invoke_lambda", run_in_process):
            stack._deploy()
            yield stack
