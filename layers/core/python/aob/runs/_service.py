"""Starting runs of published workflows and reading them back (status, steps, records, cost).

A run's row is written before its execution starts, so no execution exists that the store does
not know; a start that Step Functions refuses leaves the row failed with the error. The
execution is named after the run and gets exactly:
`{"tenant_id", "principal", "run_id", "session_id" (= run_id), "input"}`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from botocore.exceptions import ClientError
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from aob.db import get_pool
from aob.db.events import stream_id
from aob.errors import RunNotStarted, ServiceUnavailable, UnknownRun, UnknownWorkflow
from aob.recorder import Recorder
from aob.runs import _store as sql
from aob.runs._clients import lambda_client, stepfunctions_client
from aob.runs._cost import summarize
from aob.runs._models import (
    TERMINAL,
    GetAction,
    Run,
    RunDetail,
    RunEvent,
    RunRef,
    RunsRequest,
    RunSummary,
    StartRun,
    Step,
    SummaryAction,
)

logger = logging.getLogger(__name__)

# Step Functions' execution status -> the run's.
_STATUS = {"SUCCEEDED": "succeeded", "FAILED": "failed", "TIMED_OUT": "failed", "ABORTED": "cancelled"}
DEFAULT_MEMORY_MB = 128


class RunService:
    """Runs on Postgres and Step Functions (the process's pool and clients unless given)."""

    def __init__(
        self,
        pool: ConnectionPool | None = None,
        *,
        sfn: Any = None,
        lambda_: Any = None,
        recorder: Recorder | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool, self._sfn, self._lambda = pool, sfn, lambda_
        self._recorder = recorder or Recorder(pool)
        self._now = now
        self._memory: dict[str, int] = {}

    @property
    def sfn(self) -> Any:
        return self._sfn or stepfunctions_client()

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        try:
            with (self._pool or get_pool()).connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise ServiceUnavailable(f"could not {what}: {exc}") from exc

    def handle(self, request: RunsRequest) -> Run | RunDetail | RunSummary:
        """The runs function's dispatch on `action`."""
        action = request.root
        if isinstance(action, GetAction):
            return self.get_run(action)
        if isinstance(action, SummaryAction):
            return self.run_summary(action)
        return self.start_run(StartRun.model_validate(action.model_dump(exclude={"action"})))

    # -- starting ---------------------------------------------------------------------------

    def start_run(self, request: StartRun) -> Run:
        """Store the run, then start its execution; the same idempotency key returns the first run."""
        tenant_id = request.tenant_id
        with self._connection(f"start a run of {request.workflow}") as conn, conn.transaction():
            workflow = conn.execute(
                sql.SELECT_WORKFLOW,
                {"tenant_id": tenant_id, "name": request.workflow, "version": request.version},
            ).fetchone()
            if workflow is None:
                which = f"version {request.version} of " if request.version else ""
                raise UnknownWorkflow(
                    f"workflow: tenant {tenant_id!r} has no {which}workflow {request.workflow!r}; "
                    "publish it first (aob deploy SPEC --tenant ...)"
                )
            workflow_id, _version, _mode, state_machine_arn = workflow
            run_id = self._claim(conn, request, workflow_id)
            if isinstance(run_id, Run):
                return run_id
        return self._start_execution(request, run_id, state_machine_arn)

    def _claim(
        self, conn: psycopg.Connection[Any], request: StartRun, workflow_id: uuid.UUID
    ) -> uuid.UUID | Run:
        """A new run id, or the run an earlier start with this key made (reclaimed if it failed to start)."""
        key = request.idempotency_key
        row = conn.execute(
            sql.INSERT_RUN, (request.tenant_id, workflow_id, key, Jsonb(request.input))
        ).fetchone()
        if row is not None:
            return uuid.UUID(str(row[0]))
        existing = conn.execute(sql.SELECT_RUN_BY_KEY, (request.tenant_id, key)).fetchone()
        assert existing is not None  # the insert conflicted on this key
        fields = sql.run_fields(existing)
        if conn.execute(sql.RECLAIM_FAILED_START, (request.tenant_id, fields["run_id"])).fetchone():
            return uuid.UUID(str(fields["run_id"]))
        return Run(**fields, existing=True)

    def _start_execution(self, request: StartRun, run_id: uuid.UUID, state_machine_arn: str) -> Run:
        tenant_id = request.tenant_id
        execution_input = {
            "tenant_id": tenant_id,
            "principal": request.principal.model_dump(),
            "run_id": str(run_id),
            "session_id": str(run_id),
            "input": request.input,
        }
        try:
            arn = self.sfn.start_execution(
                stateMachineArn=state_machine_arn, name=str(run_id), input=json.dumps(execution_input)
            )["executionArn"]
        except ClientError as exc:
            error = {"error": exc.response["Error"]["Code"], "cause": str(exc)}
            with self._connection(f"record the failed start of run {run_id}") as conn, conn.transaction():
                conn.execute(sql.LOCK_RUN, (tenant_id, run_id))
                conn.execute(sql.MARK_START_FAILED, (Jsonb(error), tenant_id, run_id))
                sql.append_event(conn, tenant_id, run_id, "run.start_failed", error)
            logger.warning(
                "run did not start", extra={"tenant_id": tenant_id, "run_id": str(run_id), **error}
            )
            raise RunNotStarted(
                f"run {run_id} of {request.workflow} did not start ({error['error']}); it is stored as "
                "failed: start again with the same idempotency_key to retry it"
            ) from exc
        with self._connection(f"record the start of run {run_id}") as conn, conn.transaction():
            conn.execute(sql.LOCK_RUN, (tenant_id, run_id))
            conn.execute(sql.MARK_STARTED, (arn, tenant_id, run_id))
            payload = {
                "run_id": str(run_id),
                "workflow": request.workflow,
                "execution_arn": arn,
                "subject": request.principal.subject,
                "idempotency_key": request.idempotency_key,
            }
            sql.append_event(conn, tenant_id, run_id, "run.started", payload)
            row = conn.execute(sql.SELECT_RUN, (tenant_id, run_id)).fetchone()
        assert row is not None
        logger.info("run started", extra={"tenant_id": tenant_id, "run_id": str(run_id)})
        return Run(**sql.run_fields(row))

    # -- reading ----------------------------------------------------------------------------

    def _load(self, conn: psycopg.Connection[Any], ref: RunRef) -> dict[str, Any]:
        row = conn.execute(sql.SELECT_RUN, (ref.tenant_id, ref.run_id)).fetchone()
        if row is None:
            raise UnknownRun(f"run_id: tenant {ref.tenant_id!r} has no run {ref.run_id}")
        return sql.run_fields(row)

    def _refresh(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The run with its status brought up to date from Step Functions (persisted once it ended)."""
        if fields["status"] in TERMINAL or not fields["execution_arn"]:
            return fields
        try:
            described = self.sfn.describe_execution(executionArn=fields["execution_arn"])
        except ClientError as exc:
            raise ServiceUnavailable(
                f"could not read the execution of run {fields['run_id']}: {exc}"
            ) from exc
        status = _STATUS.get(described["status"])
        if status is None:
            return fields
        output = json.loads(described["output"]) if described.get("output") else None
        error = (
            {"error": described.get("error"), "cause": described.get("cause")}
            if status != "succeeded"
            else None
        )
        tenant_id, run_id = fields["tenant_id"], fields["run_id"]
        with self._connection(f"record the end of run {run_id}") as conn, conn.transaction():
            conn.execute(sql.LOCK_RUN, (tenant_id, run_id))
            finished = conn.execute(
                sql.MARK_FINISHED,
                (status, Jsonb(output), Jsonb(error), described.get("stopDate"), tenant_id, run_id),
            ).fetchone()
            if finished is not None:
                sql.append_event(conn, tenant_id, run_id, "run.finished", {"status": status, "error": error})
            row = conn.execute(sql.SELECT_RUN, (tenant_id, run_id)).fetchone()
        assert row is not None
        return sql.run_fields(row)

    def get_run(self, ref: RunRef) -> RunDetail:
        """Status (refreshed), steps, DecisionRecords with their chain check, and the run's events."""
        with self._connection(f"read run {ref.run_id}") as conn:
            fields = self._load(conn, ref)
        fields = self._refresh(fields)
        with self._connection(f"read run {ref.run_id}") as conn:
            steps = [
                Step(**dict(zip(Step.model_fields, row, strict=True)))
                for row in conn.execute(sql.SELECT_STEPS, (ref.tenant_id, ref.run_id))
            ]
            events = [
                RunEvent(seq=seq, event_type=kind, payload=payload, recorded_at=at)
                for seq, kind, payload, at in conn.execute(
                    sql.SELECT_EVENTS, (ref.tenant_id, stream_id(ref.run_id))
                )
            ]
            waits = conn.execute(sql.PENDING_APPROVAL, (ref.tenant_id, ref.run_id)).fetchone()
        # A pending approval within its timeout is what a person must act on; a step row left
        # "waiting" by an approval that timed out unanswered is not.
        if fields["status"] == "running" and waits:
            fields["status"] = "waiting"
        return RunDetail(
            run=Run(**fields),
            steps=steps,
            records=self._recorder.list_records(ref.tenant_id, ref.run_id),
            chain=self._recorder.verify_chain(ref.tenant_id, ref.run_id),
            events=events,
        )

    def _memory_mb(self, function: str) -> int:
        if function not in self._memory:
            try:
                config = (self._lambda or lambda_client()).get_function_configuration(FunctionName=function)
                self._memory[function] = int(config["MemorySize"])
            except ClientError:
                logger.warning("no memory size for %s; costing it at %d MB", function, DEFAULT_MEMORY_MB)
                self._memory[function] = DEFAULT_MEMORY_MB
        return self._memory[function]

    def run_summary(self, ref: RunRef) -> RunSummary:
        """Transitions, Lambda use, tokens, duration and estimated AWS cost of the run."""
        with self._connection(f"read run {ref.run_id}") as conn:
            fields = self._refresh(self._load(conn, ref))
        history: list[dict[str, Any]] = []
        started = stopped = fields["created_at"]
        if fields["execution_arn"]:
            arn = fields["execution_arn"]
            described = self.sfn.describe_execution(executionArn=arn)
            started, stopped = described["startDate"], described.get("stopDate") or self._now()
            for page in self.sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
                history.extend(page["events"])
        return summarize(
            tenant_id=ref.tenant_id,
            run_id=ref.run_id,
            status=fields["status"],
            history=history,
            records=self._recorder.list_records(ref.tenant_id, ref.run_id),
            memory_mb=self._memory_mb,
            started=started,
            stopped=stopped,
        )


_service: RunService | None = None
_lock = threading.Lock()


def get_run_service() -> RunService:
    """The container's RunService, built on first use."""
    global _service
    with _lock:
        if _service is None:
            _service = RunService()
        return _service
