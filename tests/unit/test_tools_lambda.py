"""lambda tools against a stubbed Lambda client: the invoke, function errors, throttling, size cap."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aob.errors import ToolFailed, ToolResponseTooLarge, ToolUnavailable
from aob.tools import LambdaTool
from botocore.response import StreamingBody
from botocore.stub import Stubber
from pydantic import BaseModel, ConfigDict

ARGS = {"to": "ada@example.com", "body": "Your refund is on its way"}
KEY = "tool:" + "cd" * 32


class EmailArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str
    body: str


class Sent(BaseModel):
    message_id: str


@pytest.fixture
def client() -> Iterator[tuple[Any, Stubber]]:
    lambda_client = boto3.client(
        "lambda", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with Stubber(lambda_client) as stubber:
        yield lambda_client, stubber
        stubber.assert_no_pending_responses()


def payload(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def email_tool(client: Any, cap: int = 1024) -> LambdaTool:
    return LambdaTool(
        "send_email",
        "Send an email",
        EmailArgs,
        Sent,
        function="aob-send-email",
        client=client,
        max_response_bytes=cap,
    )


def expect_invoke(stubber: Stubber, response: dict[str, Any]) -> None:
    stubber.add_response(
        "invoke",
        {"StatusCode": 200, **response},
        {
            "FunctionName": "aob-send-email",
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(ARGS).encode(),
        },
    )


def test_the_function_gets_the_arguments_and_its_answer_is_the_result(client: tuple[Any, Stubber]) -> None:
    lambda_client, stubber = client
    expect_invoke(stubber, {"Payload": payload(b'{"message_id": "m-1", "queued": true}')})

    assert email_tool(lambda_client).execute(ARGS, KEY) == {"message_id": "m-1"}


def test_a_function_error_is_tool_failed_with_its_error_type(client: tuple[Any, Stubber]) -> None:
    lambda_client, stubber = client
    error = {"errorType": "MailboxFull", "errorMessage": "ada@example.com is full", "stackTrace": []}
    expect_invoke(stubber, {"FunctionError": "Unhandled", "Payload": payload(json.dumps(error).encode())})

    with pytest.raises(
        ToolFailed, match="aob-send-email\\) failed: MailboxFull: ada@example.com is full"
    ) as failed:
        email_tool(lambda_client).execute(ARGS, KEY)

    assert failed.value.error_type == "MailboxFull"


def test_a_function_error_without_a_json_body_keeps_lambdas_error_kind(client: tuple[Any, Stubber]) -> None:
    lambda_client, stubber = client
    expect_invoke(stubber, {"FunctionError": "Unhandled", "Payload": payload(b"Runtime exited")})

    with pytest.raises(ToolFailed) as failed:
        email_tool(lambda_client).execute(ARGS, KEY)

    assert failed.value.error_type == "Unhandled"


def test_a_result_off_the_result_schema_is_tool_failed(client: tuple[Any, Stubber]) -> None:
    lambda_client, stubber = client
    expect_invoke(stubber, {"Payload": payload(b'{"id": "m-1"}')})

    with pytest.raises(ToolFailed, match="result that does not match its schema: message_id: Field required"):
        email_tool(lambda_client).execute(ARGS, KEY)


def test_throttling_is_tool_unavailable_and_a_missing_function_is_tool_failed(
    client: tuple[Any, Stubber],
) -> None:
    lambda_client, stubber = client
    stubber.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", 429)
    stubber.add_client_error("invoke", "ResourceNotFoundException", "Function not found", 404)

    with pytest.raises(ToolUnavailable, match="Lambda answered TooManyRequestsException"):
        email_tool(lambda_client).execute(ARGS, KEY)
    with pytest.raises(ToolFailed) as failed:
        email_tool(lambda_client).execute(ARGS, KEY)

    assert failed.value.error_type == "ResourceNotFoundException"


def test_a_response_past_the_cap_is_refused(client: tuple[Any, Stubber]) -> None:
    lambda_client, stubber = client
    expect_invoke(stubber, {"Payload": payload(json.dumps({"message_id": "m" * 100}).encode())})

    with pytest.raises(ToolResponseTooLarge, match="the response passed 64 bytes"):
        email_tool(lambda_client, cap=64).execute(ARGS, KEY)
