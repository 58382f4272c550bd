"""The model_gateway and model_warm_pool handlers fed with tests/events/model_*.json.

A hosted OpenAI-compatible provider runs on 127.0.0.1 and insists on its API key, which the
gateway reads from Secrets Manager (moto); policy, metering and the breaker state are real
(Postgres and Redis). The key must reach the provider and nothing else.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from aob.cache import get_redis
from aob.db import get_pool
from aob.errors import InvalidInput, UnknownModelTier
from aob.llm import RedisGatewayState, _state, get_model_gateway, get_warm_pool
from aob.metering import redis_store as metering_store
from aob.policy import get_policy_service, policy_files, public_key_b64, sign_bundle
from aob.tenants import create_tenant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto import mock_aws
from psycopg_pool import ConnectionPool

from tests.support import lambda_context, load_handler

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
API_KEY = "sk-hosted-DO-NOT-LEAK-1234"
MODEL = "hosted-mini"
TOOL_CALL = {
    "id": "call_9",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
}


class HostedProvider:
    """An OpenAI-compatible endpoint that refuses any other key; keeps each chat body it answers."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.keys: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                provider.keys.append(self.headers.get("Authorization", ""))
                if self.headers.get("Authorization") == f"Bearer {API_KEY}":
                    return True
                self._send(401, {"error": {"message": "invalid api key"}})
                return False

            def do_GET(self) -> None:
                if self._authorised():
                    self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorised():
                    return
                provider.bodies.append(body)
                message = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
                if "tools" not in body:
                    message = {"role": "assistant", "content": "Order o-1001 shipped on Monday."}
                self._send(
                    200,
                    {
                        "id": "chatcmpl-hosted-1",
                        "object": "chat.completion",
                        "model": MODEL,
                        "system_fingerprint": "fp_hosted",
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostedProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _clear_services() -> None:
    for service in (get_model_gateway, get_warm_pool, get_policy_service):
        service.cache_clear()


@pytest.fixture
def hosted(
    db_pool: ConnectionPool, redis_key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HostedProvider]:
    """The provider up, its key in Secrets Manager (moto), routes and policy bundle in the environment."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # moto intercepts AWS hostnames only
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(metering_store, "KEY_PREFIX", redis_key_prefix)
    monkeypatch.setattr(_state, "KEY_PREFIX", redis_key_prefix)
    key = Ed25519PrivateKey.generate()
    bundle = tmp_path / "policy.tar.gz"
    bundle.write_bytes(sign_bundle(policy_files(ROOT / "policies"), key, "test-key"))
    monkeypatch.setenv("AOB_POLICY_BUNDLE", str(bundle))
    monkeypatch.setenv("AOB_POLICY_TRUSTED_KEYS", json.dumps({"test-key": public_key_b64(key.public_key())}))
    # A fresh name: inside the session-wide moto of other functional tests, state outlives this block.
    name = f"aob/hosted-{uuid.uuid4().hex[:8]}"
    with mock_aws(), HostedProvider() as provider:
        arn = boto3.client("secretsmanager").create_secret(Name=name, SecretString=API_KEY)["ARN"]
        routes = {
            "providers": [
                {"name": "hosted", "kind": "openai_compatible", "base_url": provider.url, "api_key_ref": arn}
            ],
            "tiers": {"small": {"targets": [{"provider": "hosted", "model": MODEL}]}},
        }
        monkeypatch.setenv("AOB_MODEL_ROUTES", json.dumps(routes))
        _clear_services()
        yield provider
    _clear_services()


@pytest.fixture
def tenant(db_pool: ConnectionPool) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id, plan="pro")
    return tenant_id


def _event(name: str, tenant: str, **changes: Any) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text()) | {"tenant_id": tenant} | changes


def _invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    return load_handler(function)(event, lambda_context(function))


def test_a_chat_event_is_answered_recorded_and_charged(
    hosted: HostedProvider, tenant: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    result = _invoke("model_gateway", _event("model_chat.json", tenant))

    assert result["choices"][0]["message"]["content"] == "Order o-1001 shipped on Monday."
    assert (result["provider"], result["model"], result["model_version"]) == ("hosted", MODEL, "fp_hosted")
    assert result["usage"] == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [("hosted", "ok")]
    assert hosted.bodies[0]["ignore_eos"] is True and hosted.bodies[0]["max_tokens"] == 16
    with get_pool().connection() as conn:
        charged = conn.execute(
            "SELECT capability, input_tokens, output_tokens FROM usage_ledger WHERE reservation_id = %s",
            (result["reservation_id"],),
        ).fetchone()
    assert charged == ("model_gateway", 30, 9)
    assert hosted.keys == [f"Bearer {API_KEY}"]
    assert API_KEY not in capsys.readouterr().out + caplog.text + json.dumps(result)


def test_tool_calls_reach_the_provider_and_come_back_untouched(hosted: HostedProvider, tenant: str) -> None:
    event = _event("model_chat_tools.json", tenant)

    result = _invoke("model_gateway", event)

    assert result["choices"][0]["message"]["tool_calls"] == [TOOL_CALL]
    sent = hosted.bodies[0]
    assert (sent["tools"], sent["tool_choice"]) == (event["tools"], "auto")
    assert sent["messages"][1] == {"role": "assistant", "tool_calls": event["messages"][1]["tool_calls"]}
    assert sent["messages"][2] == event["messages"][2]


def test_the_warm_pool_event_probes_and_records_readiness(
    hosted: HostedProvider, redis_key_prefix: str
) -> None:
    report = _invoke("model_warm_pool", json.loads((EVENTS / "model_warm_pool.json").read_text()))

    (provider,) = report["providers"]
    assert (provider["provider"], provider["ready"], provider["models"]) == ("hosted", True, [MODEL])
    recorded = RedisGatewayState(get_redis(), key_prefix=redis_key_prefix).readiness("hosted")
    assert recorded is not None and (recorded.ready, recorded.models) == (True, [MODEL])


def test_refusals_name_what_is_wrong(hosted: HostedProvider, tenant: str) -> None:
    with pytest.raises(UnknownModelTier, match="no model tier 'huge'; configured tiers: small"):
        _invoke("model_gateway", _event("model_chat.json", tenant, tier="huge"))
    with pytest.raises(InvalidInput, match="messages.0.user.content: Field required"):
        _invoke("model_gateway", _event("model_chat.json", tenant, messages=[{"role": "user"}]))

    assert hosted.bodies == []
