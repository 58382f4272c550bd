"""A hosted provider's API key comes from Secrets Manager or SSM (moto here), and never shows."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import httpx2
import pytest
from aob.errors import ConfigurationError, ModelRequestRejected, ModelUnavailable
from aob.llm import Admission, ApiKeys, ModelRoutes, OpenAICompatibleProvider, Router
from moto import mock_aws

KEY = "sk-live-DO-NOT-LEAK-7f3a9c"
REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # moto intercepts AWS hostnames only
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_secrets_manager_key_is_read_once_per_ttl(aws: None) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="aob/hosted", SecretString=KEY)["ARN"]
    calls: list[str] = []

    def client(service: str) -> Any:
        calls.append(service)
        return boto3.client(service)

    clock = _Clock()
    keys = ApiKeys(client=client, ttl_s=60, clock=clock)

    assert keys.get(arn).get_secret_value() == KEY
    boto3.client("secretsmanager").put_secret_value(SecretId=arn, SecretString="sk-rotated")
    assert keys.get(arn).get_secret_value() == KEY  # cached
    clock.now = 61
    assert keys.get(arn).get_secret_value() == "sk-rotated"
    assert calls == ["secretsmanager"]  # one client per container


def test_json_secrets_and_ssm_parameters_are_read_too(aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="aob/json", SecretString=json.dumps({"api_key": KEY}))
    boto3.client("ssm").put_parameter(Name="/aob/hosted-key", Value=KEY, Type="SecureString")
    keys = ApiKeys()

    assert keys.get("aob/json").get_secret_value() == KEY
    assert keys.get("ssm:/aob/hosted-key").get_secret_value() == KEY


def test_a_json_secret_without_an_api_key_field_is_refused_without_showing_it(aws: None) -> None:
    boto3.client("secretsmanager").create_secret(Name="aob/odd", SecretString=json.dumps({"token": KEY}))

    with pytest.raises(
        ConfigurationError, match="api_key_ref aob/odd: a JSON secret needs a string field api_key"
    ) as error:
        ApiKeys().get("aob/odd")

    assert KEY not in str(error.value)


def test_a_missing_secret_names_the_reference_and_the_fix(aws: None) -> None:
    with pytest.raises(ConfigurationError, match="api_key_ref aob/nothing: ResourceNotFoundException; check"):
        ApiKeys().get("aob/nothing")
    with pytest.raises(ConfigurationError, match="api_key_ref ssm:/aob/nothing: ParameterNotFound"):
        ApiKeys().get("ssm:/aob/nothing")


def _echoing_provider(keys: ApiKeys, ref: str, status: int, seen: list[str]) -> OpenAICompatibleProvider:
    """A provider whose server echoes the Authorization header back in its error: the worst case."""

    def server(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers["authorization"])
        return httpx2.Response(
            status, json={"error": {"message": f"bad key {request.headers['authorization']}"}}
        )

    routes = ModelRoutes.model_validate(
        {"providers": [{"name": "hosted", "kind": "openai_compatible", "base_url": "https://llm.test/v1"}]}
    )
    return OpenAICompatibleProvider(
        routes.providers[0],
        lambda: keys.get(ref),
        http_client=httpx2.Client(transport=httpx2.MockTransport(server)),
    )


class _AlwaysCall:
    def admit(self, provider: str, model: str, now_ms: int, trial_ms: int) -> Admission:
        return Admission(None, False, None)

    def failed(self, provider: str, now_ms: int) -> str:
        return "closed"

    def succeeded(self, provider: str) -> None: ...


@pytest.mark.parametrize(("status", "error"), [(401, ModelRequestRejected), (500, ModelUnavailable)])
def test_the_key_is_sent_but_never_appears_in_errors_or_logs(
    aws: None, caplog: pytest.LogCaptureFixture, status: int, error: type[Exception]
) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="aob/hosted", SecretString=KEY)["ARN"]
    seen: list[str] = []
    provider = _echoing_provider(ApiKeys(), arn, status, seen)
    routes = ModelRoutes.model_validate(
        {
            "providers": [{"name": "hosted", "kind": "openai_compatible", "base_url": "https://llm.test/v1"}],
            "tiers": {"small": {"targets": [{"provider": "hosted", "model": "mini"}]}},
        }
    )
    router = Router(routes, {"hosted": provider}, _AlwaysCall())  # type: ignore[arg-type]
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    caplog.set_level(logging.DEBUG)  # the openai client's and ours; botocore's wire log (DEBUG) prints
    caplog.set_level(logging.INFO, logger="botocore")  # every response body, secrets included: keep it off
    with pytest.raises(error) as raised:
        router.call("small", routes.tier("small").targets, body, {})
    probe = provider.probe(timeout_s=1)

    assert seen[0] == f"Bearer {KEY}"
    exposed = [str(raised.value), repr(raised.value), str(raised.value.__cause__), caplog.text]
    exposed += [repr(provider), repr(routes), str(probe)]
    assert "bad key Bearer ***" in str(raised.value) + caplog.text
    assert all(KEY not in text for text in exposed)
