"""The OpenAI-compatible adapter: what it sends, how it sorts failures, and what a probe finds."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from aob.errors import ModelRequestRejected
from aob.llm import OpenAICompatibleProvider, ProviderConfig, ProviderFailure

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "aob-tiny",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
}
BODY = {"model": "aob-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

Handler = Callable[[httpx2.Request], httpx2.Response]


def _provider(handler: Handler, kind: str = "vllm") -> OpenAICompatibleProvider:
    config = ProviderConfig(name="local", kind=kind, base_url="http://vllm.test:8000/v1")  # type: ignore[arg-type]
    return OpenAICompatibleProvider(
        config, lambda: None, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )


def _answer(status: int, body: Any = None) -> Handler:
    return lambda request: httpx2.Response(
        status, json=body if body is not None else {"error": {"message": "x"}}
    )


def test_a_completion_is_posted_with_extra_body_fields_merged_and_returned_as_json() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.content))
        assert request.url == "http://vllm.test:8000/v1/chat/completions"
        return httpx2.Response(200, json=COMPLETION)

    answer = _provider(handler).complete({**BODY, "extra_body": {"ignore_eos": True}})

    assert answer == COMPLETION
    assert sent == [{**BODY, "ignore_eos": True}]


@pytest.mark.parametrize(
    ("status", "outcome"), [(500, "server_error"), (503, "server_error"), (429, "rate_limited")]
)
def test_server_errors_and_rate_limits_are_retryable_failures(status: int, outcome: str) -> None:
    with pytest.raises(ProviderFailure) as failure:
        _provider(_answer(status)).complete(BODY)

    assert failure.value.outcome == outcome
    assert f"local answered HTTP {status}" in str(failure.value)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_client_errors_are_the_requests_fault(status: int) -> None:
    with pytest.raises(ModelRequestRejected, match=f"model request refused: local answered HTTP {status}"):
        _provider(_answer(status)).complete(BODY)


def test_unreachable_and_slow_endpoints_are_retryable_failures() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    def stall(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    with pytest.raises(ProviderFailure) as refused:
        _provider(refuse).complete(BODY)
    with pytest.raises(ProviderFailure) as stalled:
        _provider(stall).complete(BODY)

    assert refused.value.outcome == "connection_error"
    assert (stalled.value.outcome, str(stalled.value)) == ("timeout", "local: no answer within 30 s")


@pytest.mark.parametrize("body", [{"choices": []}, {"choices": [{}]}, {"choices": [{}], "usage": {}}])
def test_an_answer_without_choices_or_usage_is_a_bad_response(body: dict[str, Any]) -> None:
    with pytest.raises(ProviderFailure) as failure:
        _provider(_answer(200, body)).complete(BODY)

    assert failure.value.outcome == "bad_response"


def test_a_vllm_probe_reads_health_models_and_version() -> None:
    paths: list[str] = []

    def server(request: httpx2.Request) -> httpx2.Response:
        paths.append(request.url.path)
        return {
            "/health": httpx2.Response(200),
            "/v1/models": httpx2.Response(200, json={"data": [{"id": "aob-tiny", "object": "model"}]}),
            "/version": httpx2.Response(200, json={"version": "0.32.0"}),
        }[request.url.path]

    probe = _provider(server).probe(timeout_s=1)

    assert (probe.ready, probe.models, probe.version, probe.error) == (True, ["aob-tiny"], "0.32.0", None)
    assert paths == ["/health", "/v1/models", "/version"]


def test_a_hosted_provider_is_probed_on_models_only() -> None:
    paths: list[str] = []

    def server(request: httpx2.Request) -> httpx2.Response:
        paths.append(request.url.path)
        return httpx2.Response(200, json={"data": [{"id": "mini"}, {"id": "big"}]})

    probe = _provider(server, kind="openai_compatible").probe(timeout_s=1)

    assert (probe.ready, probe.models, probe.version) == (True, ["mini", "big"], None)
    assert paths == ["/v1/models"]


def test_a_probe_of_a_sick_endpoint_reports_why_instead_of_raising() -> None:
    probe = _provider(_answer(503)).probe(timeout_s=1)

    assert not probe.ready
    assert probe.error is not None and probe.error.startswith("InternalServerError: Error code: 503")
