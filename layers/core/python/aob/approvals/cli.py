"""`aob approve RUN_ID`: decide a run's pending approval through the deployed approval function.

The function (aob-approval-<stage>) asks the policy whether the principal may decide; the CLI only
says who is asking. Exit status 0 when the decision was taken, 1 with the function's error otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from aob.config import get_settings
from aob.errors import AobError

FUNCTION = "aob-approval-{stage}"


def _lambda_client() -> Any:
    # One attempt: a retried decision would only meet the approval it already decided.
    config = Config(read_timeout=90, retries={"total_max_attempts": 1})
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client(
        "lambda", endpoint_url=get_settings().aws_endpoint_url, region_name=region, config=config
    )


def decide_event(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "action": "decide",
        "tenant_id": args.tenant,
        "run_id": args.run_id,
        "principal": {"subject": args.subject, "roles": args.role},
        "approve": not args.reject,
        "reason": args.reason,
        "approval_id": args.approval_id,
    }


def cmd_approve(args: argparse.Namespace, client: Any = None) -> int:
    function = FUNCTION.format(stage=args.stage)
    try:
        response = (client or _lambda_client()).invoke(
            FunctionName=function, Payload=json.dumps(decide_event(args)).encode()
        )
        body = json.loads(response["Payload"].read() or b"null")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        hint = (
            f"; deploy the stack (aob deploy --stage {args.stage})"
            if code == "ResourceNotFoundException"
            else ""
        )
        raise AobError(f"could not invoke {function}: {code}{hint}") from exc
    except BotoCoreError as exc:
        raise AobError(f"could not invoke {function}: {exc}") from exc
    if "FunctionError" in response:
        error = body if isinstance(body, dict) else {}
        print(
            f"aob: error: {error.get('errorType', 'Error')}: {error.get('errorMessage', body)}",
            file=sys.stderr,
        )
        return 1
    outcome = "the run goes on" if body["status"] == "approved" else "the run takes its rejection path"
    print(
        f"approval {body['approval_id']} ({body['node']}) of run {body['run_id']} {body['status']}: {outcome}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    approve = subparsers.add_parser("approve", help="approve (or --reject) a run's pending approval")
    approve.add_argument("run_id", metavar="RUN_ID")
    approve.add_argument("--reject", action="store_true", help="reject instead (needs --reason)")
    approve.add_argument("--reason", help="why; shown to the run (required with --reject)")
    approve.add_argument("--tenant", required=True, help="the run's tenant")
    approve.add_argument("--subject", required=True, help="who decides (the policy checks their roles)")
    approve.add_argument("--role", action="append", required=True, help="a role of the subject (repeatable)")
    approve.add_argument("--approval-id", help="which approval, when the run waits on several")
    approve.add_argument("--stage", default=os.environ.get("AOB_STAGE", "local"))
    approve.set_defaults(func=cmd_approve)
