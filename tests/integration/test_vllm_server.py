"""The local vLLM server (CPU build, tiny random model) speaks the OpenAI API our gateway relies on.

The model's output is random text: tests fix the length with `ignore_eos` and `max_tokens` and
check shapes and counts, never content.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.vllm_server import MODEL

pytestmark = pytest.mark.integration

CTL = Path(__file__).resolve().parents[2] / "infra" / "vllm" / "ctl.py"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def client(vllm_endpoint: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vllm_endpoint, timeout=60) as client:
        yield client


def _chat(max_tokens: int = 8, **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": max_tokens, "ignore_eos": True, **extra}


def test_chat_completion_returns_text_and_exact_token_usage(client: httpx.Client) -> None:
    resp = client.post("/v1/chat/completions", json=_chat())

    assert resp.status_code == 200, resp.text
    body = resp.json()
    choice = body["choices"][0]
    assert body["model"] == MODEL
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 8


def test_models_lists_the_served_model(client: httpx.Client) -> None:
    resp = client.get("/v1/models")

    assert resp.status_code == 200
    assert MODEL in [model["id"] for model in resp.json()["data"]]


def test_version_answers(client: httpx.Client) -> None:
    resp = client.get("/version")

    assert resp.status_code == 200
    assert resp.json()["version"]


def test_streaming_delivers_deltas_then_usage(client: httpx.Client) -> None:
    request = _chat(stream=True, stream_options={"include_usage": True})
    with client.stream("POST", "/v1/chat/completions", json=request) as resp:
        assert resp.status_code == 200
        events = [line.removeprefix("data: ") for line in resp.iter_lines() if line.startswith("data: ")]

    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert any(chunk["choices"] and chunk["choices"][0]["delta"].get("content") for chunk in chunks)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_request_with_tools_is_accepted(client: httpx.Client) -> None:
    resp = client.post("/v1/chat/completions", json=_chat(tools=[WEATHER_TOOL], tool_choice="auto"))

    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    assert usage["completion_tokens"] == 8
    # The tool's signature is rendered into the prompt by the chat template.
    plain = client.post("/v1/chat/completions", json=_chat()).json()["usage"]
    assert usage["prompt_tokens"] > plain["prompt_tokens"]


def test_ctl_status_reports_the_running_server(vllm_endpoint: str) -> None:
    result = subprocess.run([sys.executable, str(CTL), "status"], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["healthy"] is True
    assert status["endpoint"] == f"{vllm_endpoint}/v1"
