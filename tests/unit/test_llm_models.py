"""ChatRequest takes the OpenAI chat-completions shape and refuses malformed input with a clear error."""

from __future__ import annotations

from typing import Any

import pytest
from aob.errors import InvalidInput
from aob.handlers import parse_event
from aob.llm import ChatRequest

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _request(**changes: Any) -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "principal": {"subject": "user:ops-1", "roles": ["operator"]},
        "tier": "small",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    } | changes


def test_a_tool_conversation_reaches_the_provider_as_sent() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]
    request = ChatRequest.model_validate(
        _request(
            messages=messages,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )

    body = request.prompt_body()

    assert body["messages"][0] == messages[0]
    assert body["messages"][1] == messages[1]
    assert body["messages"][2] == {"role": "assistant", "tool_calls": messages[2]["tool_calls"]}
    assert body["messages"][3] == messages[3]
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "messages: List should have at least 1 item"),
        ([{"content": "hi"}], "messages.0: Unable to extract tag using discriminator 'role'"),
        (
            [{"role": "robot", "content": "hi"}],
            "messages.0: Input tag 'robot' found using 'role' does not match",
        ),
        ([{"role": "user"}], "messages.0.user.content: Field required"),
        ([{"role": "tool", "content": "42"}], "messages.0.tool.tool_call_id: Field required"),
        (
            [{"role": "user", "content": "hi", "colour": "red"}],
            "messages.0.user.colour: Extra inputs are not permitted",
        ),
    ],
)
def test_malformed_messages_are_refused_naming_the_field(messages: list[Any], expected: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_event(ChatRequest, _request(messages=messages))

    assert expected in str(error.value)


def test_tools_must_be_function_tools() -> None:
    with pytest.raises(InvalidInput, match=r"tools\.0\.type: Input should be 'function'"):
        parse_event(ChatRequest, _request(tools=[{"type": "web_search", "function": {"name": "x"}}]))


def test_extra_body_passes_provider_options_but_not_the_gateways_own_fields() -> None:
    assert ChatRequest.model_validate(_request(extra_body={"ignore_eos": True})).extra_body == {
        "ignore_eos": True
    }

    with pytest.raises(
        InvalidInput, match="extra_body: Value error, model, stream may not be set in extra_body"
    ):
        parse_event(ChatRequest, _request(extra_body={"model": "gpt-5", "stream": True}))


def test_unknown_request_fields_are_refused() -> None:
    with pytest.raises(InvalidInput, match="top_k: Extra inputs are not permitted"):
        parse_event(ChatRequest, _request(top_k=5))
