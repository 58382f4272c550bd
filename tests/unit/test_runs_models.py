"""aob.runs without a network: request models, state machine names, trigger parsing, cost math."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aob.errors import InvalidInput
from aob.handlers import parse_event
from aob.runs import (
    GetAction,
    RunsRequest,
    StartAction,
    name_prefix,
    state_machine_name,
    summarize,
)
from aob.runs._triggers import event_kind, from_eventbridge, from_object, from_s3_notification, from_sqs
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, S3Model, SqsRecordModel

T0 = datetime(2026, 1, 1, tzinfo=UTC)
START = {
    "action": "start",
    "tenant_id": "acme",
    "workflow": "order_math",
    "input": {"order_id": "o-1"},
    "principal": {"subject": "user:1", "roles": ["operator"]},
}


def test_runs_request_picks_the_action_model() -> None:
    assert isinstance(parse_event(RunsRequest, START).root, StartAction)
    get = parse_event(RunsRequest, {"action": "get", "tenant_id": "acme", "run_id": str(uuid.uuid4())})
    assert isinstance(get.root, GetAction)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({**START, "action": "stop"}, "action"),
        ({**START, "principal": {"subject": "user:1", "roles": []}}, "principal.roles"),
        ({**START, "tenant_id": "Not A Slug"}, "tenant_id"),
        ({**START, "version": 0}, "version"),
        ({"action": "get", "tenant_id": "acme", "run_id": "nope"}, "run_id"),
    ],
)
def test_bad_requests_name_the_field(event: dict, field: str) -> None:
    with pytest.raises(InvalidInput, match=field.replace(".", r"\.")):
        parse_event(RunsRequest, event)


def test_state_machine_names_are_valid_unique_and_short() -> None:
    name = state_machine_name("local", "acme", "order_math", 3, "fused")
    assert name == "aob-local_acme_order_math_v3_fused"
    long_a = state_machine_name("dev-eu", "t" * 60, "w" * 80, 12, "explicit")
    long_b = state_machine_name("dev-eu", "t" * 60, "w" * 80, 13, "explicit")
    assert len(long_a) <= 80 and long_a != long_b
    assert long_a.startswith(name_prefix("dev-eu")) and all(c.isalnum() or c in "-_" for c in long_a)
    # One stage's prefix never matches another stage's names (IAM grants use it).
    assert not state_machine_name("h2-x", "acme", "w", 1, "fused").startswith(name_prefix("h2"))
    with pytest.raises(InvalidInput, match="stage"):
        name_prefix("Bad_Stage")


def _record(message_id: str, body: str) -> SqsRecordModel:
    return SqsRecordModel.model_validate(
        {
            "messageId": message_id,
            "receiptHandle": "r",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1",
                "SenderId": "s",
                "ApproximateFirstReceiveTimestamp": "1",
            },
            "messageAttributes": {},
            "md5OfBody": "m",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
            "awsRegion": "us-east-1",
        }
    )


def test_sqs_message_id_is_the_idempotency_key_unless_one_is_given() -> None:
    request = {k: v for k, v in START.items() if k != "action"}
    assert from_sqs(_record("m-1", json.dumps(request))).idempotency_key == "m-1"
    given = from_sqs(_record("m-2", json.dumps({**request, "idempotency_key": "mine"})))
    assert given.idempotency_key == "mine"
    with pytest.raises(InvalidInput, match="m-3"):
        from_sqs(_record("m-3", json.dumps({"tenant_id": "acme"})))


def test_eventbridge_detail_is_a_start_run() -> None:
    event = {
        "version": "0",
        "id": "ev-1",
        "source": "app",
        "account": "000000000000",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail-type": "aob.run.requested",
        "detail": {k: v for k, v in START.items() if k != "action"},
    }
    assert event_kind(event) == "eventbridge"
    request = from_eventbridge(EventBridgeModel.model_validate(event))
    assert (request.tenant_id, request.workflow, request.idempotency_key) == ("acme", "order_math", "ev-1")


def test_s3_key_picks_tenant_and_workflow() -> None:
    request = from_object("bucket", "triggers/acme/ingest/2026/a.csv", 12.0, "abc")
    assert (request.tenant_id, request.workflow) == ("acme", "ingest")
    assert request.input == {
        "bucket": "bucket",
        "key": "triggers/acme/ingest/2026/a.csv",
        "size": 12,
        "etag": "abc",
    }
    assert request.idempotency_key == "bucket/triggers/acme/ingest/2026/a.csv/abc"
    with pytest.raises(InvalidInput, match="triggers/<tenant_id>/<workflow>/"):
        from_object("bucket", "uploads/acme/ingest/a.csv", 1, "e")


def test_direct_s3_notifications_decode_keys_and_skip_deletions() -> None:
    def record(name: str, key: str) -> dict:
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-01-01T00:00:00.000Z",
            "eventName": name,
            "userIdentity": {"principalId": "p"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "r", "x-amz-id-2": "i"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "c",
                "bucket": {"name": "b", "ownerIdentity": {"principalId": "p"}, "arn": "arn:aws:s3:::b"},
                "object": {"key": key, "size": 5, "eTag": "e", "sequencer": "s"},
            },
        }

    event = {
        "Records": [
            record("ObjectCreated:Put", "triggers/acme/ingest/my+file.csv"),
            record("ObjectRemoved:Delete", "x"),
        ]
    }
    assert event_kind(event) == "s3"
    requests = from_s3_notification(S3Model.model_validate(event))
    assert [r.input["key"] for r in requests] == ["triggers/acme/ingest/my file.csv"]


def _lambda_events(first_id: int, function: str, start: float, end: float) -> list[dict]:
    parameters = json.dumps({"FunctionName": f"arn:aws:lambda:us-east-1:000000000000:function:{function}"})
    return [
        {
            "id": first_id,
            "previousEventId": first_id - 1,
            "type": "TaskScheduled",
            "timestamp": T0 + timedelta(seconds=start),
            "taskScheduledEventDetails": {
                "resourceType": "lambda",
                "resource": "invoke",
                "parameters": parameters,
            },
        },
        {
            "id": first_id + 1,
            "previousEventId": first_id,
            "type": "TaskStarted",
            "timestamp": T0 + timedelta(seconds=start),
        },
        {
            "id": first_id + 2,
            "previousEventId": first_id + 1,
            "type": "TaskSucceeded",
            "timestamp": T0 + timedelta(seconds=end),
        },
    ]


def test_summary_counts_transitions_lambda_time_tokens_and_cost() -> None:
    history = [
        {"id": 1, "previousEventId": 0, "type": "ExecutionStarted", "timestamp": T0},
        {"id": 2, "previousEventId": 1, "type": "TaskStateEntered", "timestamp": T0},
        *_lambda_events(3, "aob-tool-gateway-local", 0.0, 0.2505),
        {"id": 6, "previousEventId": 5, "type": "PassStateEntered", "timestamp": T0},
        {"id": 7, "previousEventId": 6, "type": "TaskStateEntered", "timestamp": T0},
        *_lambda_events(8, "aob-metering-local", 1.0, 1.1),
        {"id": 11, "previousEventId": 10, "type": "TaskStateEntered", "timestamp": T0},
        *_lambda_events(12, "aob-tool-gateway-local", 2.0, 2.5),
    ]
    memory = {"aob-tool-gateway-local": 512, "aob-metering-local": 256}
    summary = summarize(
        tenant_id="acme",
        run_id=uuid.uuid4(),
        status="succeeded",
        history=history,
        records=[],
        memory_mb=memory.__getitem__,
        started=T0,
        stopped=T0 + timedelta(seconds=3),
    )
    assert (summary.state_transitions, summary.lambda_invocations, summary.duration_s) == (4, 3, 3.0)
    gateway = next(use for use in summary.lambdas if use.function == "aob-tool-gateway-local")
    assert (gateway.invocations, gateway.duration_ms) == (2, 751)  # 250.5 ms bills as 251
    gb_seconds = 0.5 * 0.751 + 0.25 * 0.1
    assert summary.cost_usd["step_functions"] == pytest.approx(4 * 0.025 / 1000)
    assert summary.cost_usd["lambda_requests"] == pytest.approx(3 * 0.20 / 1e6)
    assert summary.cost_usd["lambda_compute"] == pytest.approx(gb_seconds * 0.0000166667, rel=1e-6)
    assert summary.cost_usd["total"] == pytest.approx(
        sum(v for k, v in summary.cost_usd.items() if k != "total")
    )
