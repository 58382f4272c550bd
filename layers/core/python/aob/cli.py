"""The `aob` command line: local cloud, deployment and the self-check flow."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from aob.approvals.cli import register as register_approvals
from aob.config import get_settings
from aob.errors import AobError
from aob.policy.cli import register as register_policy
from aob.runs.cli import add_publish_arguments, cmd_publish
from aob.runs.cli import register as register_runs


def project_root() -> Path:
    """The checkout holding template.yaml: $AOB_ROOT, else the nearest parent of the cwd."""
    if os.environ.get("AOB_ROOT"):
        return Path(os.environ["AOB_ROOT"])
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "template.yaml").is_file() and (folder / "infra").is_dir():
            return folder
    raise AobError("not inside an AOB checkout (no template.yaml found); cd into it or set AOB_ROOT")


def _client(service: str) -> Any:
    return boto3.client(service, region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def _localstack(action: str) -> int:
    ctl = project_root() / "infra" / "localstack" / "ctl.py"
    return subprocess.run([sys.executable, str(ctl), action], check=False).returncode


def cmd_deploy(args: argparse.Namespace) -> int:
    from aob.deploy import PolicySigner, deploy_stack

    if args.spec:
        return cmd_publish(args)
    root = project_root()
    settings = get_settings()
    account = _client("sts").get_caller_identity()["Account"]
    region = _client("s3").meta.region_name
    uv = subprocess.run(
        [str(root / "infra" / "bootstrap.sh"), "uv"], check=True, capture_output=True, text=True
    ).stdout.strip()
    result = deploy_stack(
        root=root,
        stack_name=f"aob-{args.stage}",
        bucket=args.bucket or f"aob-deploy-{account}-{region}",
        parameters={
            "Stage": args.stage,
            "DatabaseUrl": args.database_url or settings.database_url,
            "RedisUrl": args.redis_url or settings.redis_url,
        },
        s3=_client("s3"),
        cfn=_client("cloudformation"),
        cache_dir=Path(os.environ.get("AOB_CACHE_DIR", Path.home() / ".cache" / "aob")),
        uv=uv,
        policy_signer=(
            PolicySigner.from_pem_file(Path(args.policy_key), args.policy_key_id)
            if args.policy_key
            else PolicySigner.local_dev(root / ".state")
        ),
    )
    state = "updated" if result.changed else "unchanged (no-op)"
    print(
        f"stack {result.stack_name} {state} in {result.seconds:.1f}s; "
        f"uploaded {len(result.uploaded)} artifact(s)"
    )
    for key, value in sorted(result.outputs.items()):
        print(f"  {key} = {value}")
    return 0


def stack_outputs(stage: str) -> dict[str, str]:
    stack = _client("cloudformation").describe_stacks(StackName=f"aob-{stage}")["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def run_execution(
    state_machine_arn: str, flow_input: dict[str, Any], timeout_s: float = 120
) -> dict[str, Any]:
    """Start an execution and wait for it to finish; returns describe_execution's answer."""
    sfn = _client("stepfunctions")
    name = f"cli-{uuid.uuid4().hex[:12]}"
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(flow_input))[
        "executionArn"
    ]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise AobError(f"execution {arn} still running after {timeout_s:.0f}s")


def cmd_selfcheck(args: argparse.Namespace) -> int:
    outputs = stack_outputs(args.stage)
    described = run_execution(
        outputs["SelfcheckStateMachineArn"], {"message": args.message, "fail": args.fail}
    )
    print(
        json.dumps(
            {
                "execution": described["name"],
                "status": described["status"],
                "output": json.loads(described.get("output") or "null"),
                "error": described.get("error"),
            },
            indent=2,
        )
    )
    return 0 if described["status"] == "SUCCEEDED" else 1


def cmd_compile(args: argparse.Namespace) -> int:
    from aob.workflows import json_schema, load_spec
    from aob.workflows.compiler import compile_spec

    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    if not args.spec:
        raise AobError("compile: name a workflow spec file (YAML or JSON), or pass --schema")
    compiled = compile_spec(load_spec(Path(args.spec)), args.mode)
    text = json.dumps(compiled.asl, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    transitions = sum(s.transitions_per_pass for s in compiled.stats.values())
    invocations = sum(s.lambda_invocations for s in compiled.stats.values())
    print(
        f"{args.mode}: {len(compiled.asl['States'])} top-level states; on a pass through every node "
        f"{transitions} state transitions and {invocations} Lambda invocations",
        file=sys.stderr,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from aob.db import migrate

    return migrate.main(["--status"] if args.status else [])


def cmd_preflight(args: argparse.Namespace) -> int:
    from aob import preflight

    return preflight.main(["--require", args.require])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aob", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start LocalStack"),
        ("down", "stop LocalStack"),
        ("status", "LocalStack health"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=lambda a, n=name: _localstack(n))

    deploy = sub.add_parser("deploy", help="build, upload and create or update the stack")
    deploy.add_argument("--stage", default=os.environ.get("AOB_STAGE", "local"))
    deploy.add_argument("--bucket", help="artifact bucket (default aob-deploy-<account>-<region>)")
    deploy.add_argument("--database-url", help="default: AOB_DATABASE_URL")
    deploy.add_argument("--redis-url", help="default: AOB_REDIS_URL")
    deploy.add_argument("--policy-key", help="PEM Ed25519 key signing the policy bundle (default: a dev key)")
    deploy.add_argument("--policy-key-id", help="its key id (default: derived from the key)")
    add_publish_arguments(deploy)
    deploy.set_defaults(func=cmd_deploy)

    selfcheck = sub.add_parser("selfcheck", help="run the self-check flow on the deployed stack")
    selfcheck.add_argument("--stage", default=os.environ.get("AOB_STAGE", "local"))
    selfcheck.add_argument("--message", default="hello from aob selfcheck")
    selfcheck.add_argument("--fail", choices=["never", "first_attempt", "always"], default="first_attempt")
    selfcheck.set_defaults(func=cmd_selfcheck)

    compile_ = sub.add_parser("compile", help="compile a workflow spec to Amazon States Language")
    compile_.add_argument("spec", nargs="?", help="workflow spec file (.yaml, .yml or .json)")
    compile_.add_argument("--mode", choices=["explicit", "fused"], default="explicit")
    compile_.add_argument("--out", help="write the ASL here instead of standard output")
    compile_.add_argument("--schema", action="store_true", help="print the spec's JSON Schema and stop")
    compile_.set_defaults(func=cmd_compile)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--status", action="store_true", help="only list applied and pending migrations")
    migrate.set_defaults(func=cmd_migrate)

    preflight = sub.add_parser("preflight", help="check that Postgres, Redis and LocalStack answer")
    preflight.add_argument("--require", default="postgres,redis,localstack")
    preflight.set_defaults(func=cmd_preflight)

    register_policy(sub)
    register_approvals(sub)
    register_runs(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AobError as exc:
        print(f"aob: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
