"""Publishing a workflow version for a tenant: compile, substitute the stack's ARNs, create the
state machine, store the version. A spec (and mode) already published is a no-op.

Order matters: the spec is compiled and every substitution resolved before anything is created,
so an invalid spec (SpecInvalid) or a stack without a needed output deploys and stores nothing.
The state machine is created inside the transaction that stores its row: if it cannot be
created, no version is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from botocore.exceptions import ClientError
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field

from aob.db import get_pool
from aob.errors import ConfigurationError, InvalidInput, ServiceUnavailable
from aob.recorder import canonical_json
from aob.runs._clients import stepfunctions_client
from aob.runs._models import Mode, PublishedWorkflow
from aob.runs._naming import name_prefix, state_machine_name
from aob.runs._store import FIND_PUBLISHED, INSERT_WORKFLOW, LOCK_WORKFLOW_NAME, NEXT_VERSION
from aob.tenants import TenantId, get_tenant
from aob.workflows import WorkflowSpec
from aob.workflows.compiler import compile_spec

logger = logging.getLogger(__name__)

EXECUTION_ROLE_OUTPUT = "WorkflowExecutionRoleArn"


class Publish(BaseModel):
    """Publish `spec` for `tenant_id` on the stack of `stage`, with governance `mode`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: TenantId
    spec: WorkflowSpec
    mode: Mode = "explicit"
    stage: str = Field(pattern=r"^[a-z0-9-]{1,16}$", description="the stack's stage, e.g. local")


def spec_sha256(spec: WorkflowSpec) -> str:
    """The spec's identity: the hash of its canonical JSON (key order and formatting do not count)."""
    return hashlib.sha256(canonical_json(spec.model_dump(mode="json"))).hexdigest()


def substitute(asl: dict[str, Any], names: list[str], outputs: dict[str, str]) -> str:
    """The ASL with each `${Name}` replaced by the stack output of that name."""
    missing = [name for name in names if name not in outputs]
    if missing:
        raise ConfigurationError(
            f"the stack has no output {', '.join(missing)}: deploy the current template (aob deploy) first"
        )
    text = json.dumps(asl)
    for name in names:
        text = text.replace("${" + name + "}", outputs[name])
    return text


def _create_state_machine(sfn: Any, name: str, definition: str, role_arn: str, tags: dict[str, str]) -> str:
    try:
        return sfn.create_state_machine(
            name=name,
            definition=definition,
            roleArn=role_arn,
            type="STANDARD",
            tags=[{"key": k, "value": v} for k, v in tags.items()],
        )["stateMachineArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "StateMachineAlreadyExists":
            raise ServiceUnavailable(f"could not create state machine {name}: {exc}") from exc
    # Left over by a publish whose row was not stored: make it run this definition.
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                sfn.update_state_machine(
                    stateMachineArn=machine["stateMachineArn"], definition=definition, roleArn=role_arn
                )
                return str(machine["stateMachineArn"])
    raise ServiceUnavailable(f"state machine {name} exists but is not listed; retry")


def _state_machine_exists(sfn: Any, arn: str) -> bool:
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "StateMachineDoesNotExist":
            return False
        raise ServiceUnavailable(f"could not read state machine {arn}: {exc}") from exc
    return True


def publish(
    request: Publish, outputs: dict[str, str], *, sfn: Any = None, pool: ConnectionPool | None = None
) -> PublishedWorkflow:
    """Publish the spec as the tenant's next version of the workflow, or find the one already published."""
    spec, tenant_id, mode = request.spec, request.tenant_id, request.mode
    if spec.tenant_id is not None and spec.tenant_id != tenant_id:
        raise InvalidInput(
            f"tenant_id: workflow {spec.name} is for tenant {spec.tenant_id!r} only; "
            f"publish it with --tenant {spec.tenant_id}"
        )
    get_tenant(tenant_id)  # UnknownTenant before any work
    compiled = compile_spec(spec, mode)  # SpecInvalid: nothing deployed, nothing stored
    definition = substitute(compiled.asl, compiled.substitutions, outputs)
    if EXECUTION_ROLE_OUTPUT not in outputs:
        raise ConfigurationError(f"the stack has no output {EXECUTION_ROLE_OUTPUT}: run aob deploy first")
    name_prefix(request.stage)
    digest = spec_sha256(spec)
    stats = {node: vars(s) for node, s in compiled.stats.items()}
    with (pool or get_pool()).connection() as conn, conn.transaction():
        conn.execute(LOCK_WORKFLOW_NAME, (f"{tenant_id}/{spec.name}",))
        found = conn.execute(FIND_PUBLISHED, (tenant_id, spec.name, digest, mode)).fetchone()
        if found is not None:
            workflow_id, version, arn = found
            client = sfn or stepfunctions_client()
            if not _state_machine_exists(client, arn):  # e.g. a restarted local cloud: make it again
                name, role = arn.rsplit(":", 1)[1], outputs[EXECUTION_ROLE_OUTPUT]
                tags = {"aob:tenant": tenant_id, "aob:workflow": spec.name, "aob:version": str(version)}
                _create_state_machine(client, name, definition, role, tags | {"aob:mode": mode})
            return PublishedWorkflow(
                tenant_id=tenant_id,
                workflow_id=workflow_id,
                name=spec.name,
                version=version,
                mode=mode,
                spec_sha256=digest,
                state_machine_arn=arn,
                created=False,
                stats=stats,
            )
        row = conn.execute(NEXT_VERSION, (tenant_id, spec.name)).fetchone()
        assert row is not None
        version = int(row[0])
        name = state_machine_name(request.stage, tenant_id, spec.name, version, mode)
        tags = {
            "aob:tenant": tenant_id,
            "aob:workflow": spec.name,
            "aob:version": str(version),
            "aob:mode": mode,
        }
        arn = _create_state_machine(
            sfn or stepfunctions_client(), name, definition, outputs[EXECUTION_ROLE_OUTPUT], tags
        )
        spec_json = Jsonb(spec.model_dump(mode="json"))
        inserted = conn.execute(
            INSERT_WORKFLOW, (tenant_id, spec.name, version, spec_json, digest, arn, mode)
        ).fetchone()
        assert inserted is not None
    logger.info(
        "workflow published",
        extra={"tenant_id": tenant_id, "workflow": spec.name, "version": version, "mode": mode},
    )
    return PublishedWorkflow(
        tenant_id=tenant_id,
        workflow_id=inserted[0],
        name=spec.name,
        version=version,
        mode=mode,
        spec_sha256=digest,
        state_machine_arn=arn,
        created=True,
        stats=stats,
    )
