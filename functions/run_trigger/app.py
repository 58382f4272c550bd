"""Run trigger: starts runs from SQS messages, `aob.run.requested` EventBridge events and S3 uploads.

SQS batches report partial failures: a bad message fails alone and, after the queue's redrive
count, goes to the dead-letter queue; the others' runs start. Each event carries its own
idempotency key (see aob.runs._triggers), so redeliveries never start a second run.
"""

from __future__ import annotations

from typing import Any

from aob.errors import InvalidInput
from aob.handlers import parse_event
from aob.runs import get_run_service
from aob.runs._triggers import (
    event_kind,
    from_eventbridge,
    from_s3_eventbridge,
    from_s3_notification,
    from_sqs,
)
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
    S3Model,
    SqsRecordModel,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS, model=SqsRecordModel)


def _start(request: Any) -> dict[str, Any]:
    run = get_run_service().start_run(request)
    logger.info(
        "run requested",
        extra={"tenant_id": run.tenant_id, "run_id": str(run.run_id), "existing": run.existing},
    )
    return run.model_dump(mode="json")


def _sqs_record(record: SqsRecordModel) -> dict[str, Any]:
    return _start(from_sqs(record))


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kind = event_kind(event)
    logger.append_keys(trigger=kind)
    if kind == "sqs":
        return process_partial_response(
            event=event, record_handler=_sqs_record, processor=processor, context=context
        )
    if kind == "eventbridge":
        return _start(from_eventbridge(parse_event(EventBridgeModel, event)))
    if kind == "s3_eventbridge":
        return _start(from_s3_eventbridge(parse_event(S3EventNotificationEventBridgeModel, event)))
    if kind == "s3":
        return {"runs": [_start(request) for request in from_s3_notification(parse_event(S3Model, event))]}
    raise InvalidInput(
        "event: not an SQS batch, an aob.run.requested EventBridge event or an S3 object-created event"
    )
