"""Warm pool, on a schedule: probe every model provider and record its readiness for the router.

The event (an EventBridge schedule) carries nothing the probe needs; the providers come from
AOB_MODEL_ROUTES. A successful probe closes the provider's circuit breaker.
"""

from __future__ import annotations

from typing import Any

from aob.llm import get_warm_pool
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = get_warm_pool().probe_all()
    logger.info("model providers probed", extra={"ready": [r.provider for r in report.providers if r.ready]})
    return report.model_dump(mode="json")
