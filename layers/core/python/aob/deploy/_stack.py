"""Create or update the CloudFormation stack from template.yaml with a change set.

Same flow as `sam package` + `sam deploy`, done with boto3 so it needs neither Docker nor the SAM
CLI and so artifacts are content-addressed (see _artifacts): an unchanged stack yields an empty
change set and nothing is touched.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from aob.deploy._artifacts import (
    Artifact,
    build_function_zip,
    build_layer_zip,
    read_definition,
)
from aob.deploy._signer import PolicySigner
from aob.deploy._template import load_template, local_artifacts, package_template
from aob.errors import AobError
from aob.policy import policy_files, sign_bundle

POLICY_BUNDLE_NAME = "policy_bundle.tar.gz"  # AOB_POLICY_BUNDLE of the policy_check function

log = logging.getLogger(__name__)

_CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


class DeployFailed(AobError):
    """The stack did not reach a complete state; the message carries CloudFormation's reasons."""


@dataclass
class DeployResult:
    stack_name: str
    changed: bool
    outputs: dict[str, str]
    uploaded: list[str] = field(default_factory=list)
    seconds: float = 0.0


def build_artifact(
    resource: dict[str, Any], path: Path, root: Path, signer: PolicySigner | None, cache_dir: Path, uv: str
) -> Artifact:
    kind = resource["Type"]
    if kind == "AWS::Serverless::LayerVersion":
        # ContentUri points at the layer folder's build input: layers/<name>
        return build_layer_zip(path, cache_dir, uv)
    if kind == "AWS::Serverless::StateMachine":
        return read_definition(path)
    policies = resource.get("Metadata", {}).get("AobPolicyBundle")
    if not policies:
        return build_function_zip(path)
    if signer is None:
        raise DeployFailed(f"{path.name} ships a signed policy bundle: give deploy a policy signing key")
    bundle = sign_bundle(policy_files(root / policies), signer.private_key, signer.key_id)
    return build_function_zip(path, {POLICY_BUNDLE_NAME: bundle})


def _ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


def _upload(s3: Any, bucket: str, artifact: Artifact) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=artifact.key)
        return False
    except ClientError:
        s3.put_object(Bucket=bucket, Key=artifact.key, Body=artifact.data)
        return True


def _stack_exists(cfn: Any, name: str) -> bool:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError:
        return False
    return bool(stacks) and stacks[0]["StackStatus"] != "REVIEW_IN_PROGRESS"


def _wait_change_set(cfn: Any, stack: str, change_set: str) -> dict[str, Any]:
    while True:
        described = cfn.describe_change_set(StackName=stack, ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            return described
        time.sleep(0.5)


def _failure_reasons(cfn: Any, stack: str) -> str:
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
        for e in events
        if e["ResourceStatus"].endswith("FAILED")
    ]
    return "; ".join(reasons[:5]) or "no reason given"


def _wait_stack(cfn: Any, stack: str) -> dict[str, Any]:
    while True:
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        status = described["StackStatus"]
        if status.endswith("_COMPLETE") or status.endswith("_FAILED"):
            if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
                raise DeployFailed(f"stack {stack} ended {status}: {_failure_reasons(cfn, stack)}")
            return described
        time.sleep(0.5)


def _outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deploy_stack(
    *,
    root: Path,
    stack_name: str,
    bucket: str,
    parameters: dict[str, str],
    s3: Any,
    cfn: Any,
    cache_dir: Path,
    uv: str,
    policy_signer: PolicySigner | None = None,
) -> DeployResult:
    """Build and upload what changed, then create or update the stack; a no-op when unchanged."""
    started = time.monotonic()
    template = load_template(root / "template.yaml")
    _ensure_bucket(s3, bucket)
    artifacts = {
        logical_id: build_artifact(resource, root / path, root, policy_signer, cache_dir, uv)
        for logical_id, (resource, path) in local_artifacts(template).items()
    }
    uploaded = [a.key for a in artifacts.values() if _upload(s3, bucket, a)]
    if policy_signer is not None:
        parameters = {**parameters, "PolicyTrustedKeys": policy_signer.trusted_keys_json()}
    packaged = package_template(template, artifacts, bucket)
    body = json.dumps(packaged, indent=1)
    exists = _stack_exists(cfn, stack_name)
    change_set = f"aob-{int(time.time() * 1000)}"
    cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=change_set,
        ChangeSetType="UPDATE" if exists else "CREATE",
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())],
        Capabilities=_CAPABILITIES,
    )
    described = _wait_change_set(cfn, stack_name, change_set)
    reason = described.get("StatusReason") or ""
    # AWS fails an empty change set with a "no changes" reason; LocalStack completes it empty.
    empty = described["Status"] == "CREATE_COMPLETE" and not described.get("Changes")
    if exists and (empty or any(marker in reason for marker in _NO_CHANGES)):
        cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        return DeployResult(stack_name, False, _outputs(stack), uploaded, time.monotonic() - started)
    if described["Status"] == "FAILED":
        cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
        raise DeployFailed(f"change set for {stack_name} failed: {reason}")
    cfn.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
    stack = _wait_stack(cfn, stack_name)
    return DeployResult(stack_name, True, _outputs(stack), uploaded, time.monotonic() - started)
