"""Step recorder: explicit mode's `<Step>Record` state -> aob.recorder Recorder.record_step -> its place.

Appends the step's DecisionRecord (with its step row, event and outbox message) to the run's hash
chain under the session lease's fencing token; a retried state gets the stored record back. Raises
StaleFencingToken (the lease was lost), UnknownRun, UnknownStep or ServiceUnavailable (retry).
"""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.recorder import RecordStepRequest, get_recorder
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(RecordStepRequest, event)
    logger.append_keys(tenant_id=request.tenant_id, run_id=request.run_id, step_id=request.step_id)
    stored = get_recorder().record_step(request)
    logger.info("step recorded", extra={"seq": stored.seq, "outcome": request.outcome})
    return {"record_id": str(stored.record_id), "seq": stored.seq, "hash": stored.hash}
