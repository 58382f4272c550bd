"""Run requests that arrive as events: SQS messages, EventBridge events and S3 object uploads.

Each becomes a StartRun with an idempotency key taken from the event, so a redelivered event
returns the run the first delivery started instead of starting another:
- SQS: the body is a StartRun; key = its idempotency_key, else the message id.
- EventBridge `aob.run.requested`: the detail is a StartRun; key = its idempotency_key, else the event id.
- S3 `Object Created` under `triggers/<tenant_id>/<workflow>/`: input {bucket, key, size, etag};
  key = bucket/key/etag (the same upload twice is one run; new content is a new run).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    S3Model,
    SqsRecordModel,
)

from aob.errors import InvalidInput
from aob.handlers import parse_event
from aob.runs._models import Principal, StartRun

RUN_REQUESTED = "aob.run.requested"
TRIGGER_PREFIX = "triggers/"
# Whoever may write under triggers/<tenant>/ in the (private) artifacts bucket may start runs
# there; the policies see them as this principal.
S3_PRINCIPAL = Principal(subject="trigger:s3", roles=["operator"])
_S3_KEY = re.compile(r"^triggers/(?P<tenant>[a-z0-9][a-z0-9_-]{0,62})/(?P<workflow>[A-Za-z0-9_-]{1,80})/.+")


def _with_key(request: StartRun, key: str) -> StartRun:
    return request if request.idempotency_key else request.model_copy(update={"idempotency_key": key})


def from_sqs(record: SqsRecordModel) -> StartRun:
    """The StartRun in an SQS message body (JSON); InvalidInput names each bad field."""
    try:
        request = StartRun.model_validate_json(str(record.body))
    except ValueError as exc:
        raise InvalidInput(f"SQS message {record.messageId}: the body is not a StartRun: {exc}") from exc
    return _with_key(request, record.messageId)


def from_eventbridge(event: EventBridgeModel) -> StartRun:
    """The StartRun in an `aob.run.requested` event's detail."""
    return _with_key(parse_event(StartRun, event.detail), event.id)


def from_object(bucket: str, key: str, size: float | None, etag: str | None) -> StartRun:
    """A run of workflow W for tenant T on the object `triggers/T/W/...`."""
    match = _S3_KEY.match(key)
    if match is None:
        raise InvalidInput(
            f"s3://{bucket}/{key}: trigger objects go under triggers/<tenant_id>/<workflow>/<name>"
        )
    return StartRun(
        tenant_id=match["tenant"],
        workflow=match["workflow"],
        input={"bucket": bucket, "key": key, "size": int(size or 0), "etag": etag},
        principal=S3_PRINCIPAL,
        idempotency_key=f"{bucket}/{key}/{etag}",
    )


def from_s3_eventbridge(event: S3EventNotificationEventBridgeModel) -> StartRun:
    detail = event.detail
    return from_object(detail.bucket.name, detail.object.key, detail.object.size, detail.object.etag)


def from_s3_notification(event: S3Model) -> list[StartRun]:
    """Direct S3 -> Lambda notifications (keys arrive URL-encoded); only object creations start runs."""
    requests = []
    for record in event.Records:
        created = record.s3.object
        if record.eventName.startswith("ObjectCreated") and created is not None:
            key = unquote_plus(created.key)
            requests.append(from_object(record.s3.bucket.name, key, created.size, created.eTag))
    return requests


def event_kind(event: Any) -> str:
    """sqs, s3, s3_eventbridge, eventbridge, or unknown."""
    if isinstance(event, dict):
        records = event.get("Records") or [{}]
        source = records[0].get("eventSource") if isinstance(records[0], dict) else None
        if source == "aws:sqs":
            return "sqs"
        if source == "aws:s3":
            return "s3"
        if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
            return "s3_eventbridge"
        if event.get("detail-type") == RUN_REQUESTED:
            return "eventbridge"
    return "unknown"
