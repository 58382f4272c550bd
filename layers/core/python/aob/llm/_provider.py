"""The ModelProvider port and its adapter for OpenAI-compatible endpoints (vLLM, hosted providers).

The adapter uses the `openai` client with retries off (fallback is the router's job) and
explicit timeouts. It sorts every failure into a retryable ProviderFailure (connection, timeout,
5xx, 429, malformed answer: the router tries the next provider) or ModelRequestRejected (other
4xx: the caller's fault, no fallback). A provider's error text may echo what it was sent, so it
is scrubbed of the API key and not chained.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import openai
from pydantic import SecretStr

from aob.errors import AobError, ModelRequestRejected
from aob.llm._config import ProviderConfig
from aob.llm._models import Outcome

NO_KEY = "none"  # the client insists on a key; keyless endpoints (local vLLM) ignore it
MAX_DETAIL_CHARS = 300


class ProviderFailure(AobError):
    """A provider could not answer (the router tries the next one); `outcome` says how it failed."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome: Outcome = outcome


@dataclass(frozen=True, slots=True)
class Probe:
    """What a warm-pool probe found: is the endpoint up, which models and server version it serves."""

    ready: bool
    latency_ms: float
    models: list[str] = field(default_factory=list)
    version: str | None = None
    error: str | None = None


class ModelProvider(Protocol):
    @property
    def name(self) -> str: ...

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a chat completion (`body`: create()'s keyword arguments); the response JSON."""
        ...

    def probe(self, timeout_s: float) -> Probe:
        """Check the endpoint quickly; never raises for an endpoint that is down."""
        ...


def _scrub(text: str, key: SecretStr | None) -> str:
    if key is not None and key.get_secret_value():
        text = text.replace(key.get_secret_value(), "***")
    return text[:MAX_DETAIL_CHARS]


def _valid_completion(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("choices"), list)
        and bool(data["choices"])
        and isinstance(data.get("usage"), dict)
        and all(isinstance(data["usage"].get(f), int) for f in ("prompt_tokens", "completion_tokens"))
    )


class OpenAICompatibleProvider:
    """One endpoint of ProviderConfig; its client is built on first use and again if the key rotates."""

    def __init__(
        self,
        config: ProviderConfig,
        api_key: Callable[[], SecretStr | None],
        *,
        http_client: httpx2.Client | None = None,
    ) -> None:
        self.config = config
        self._api_key = api_key
        self._http_client = http_client
        self._client: openai.OpenAI | None = None
        self._client_key: SecretStr | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(name={self.name!r}, base_url={self.config.base_url!r})"

    def _openai(self) -> tuple[openai.OpenAI, SecretStr | None]:
        key = self._api_key()
        with self._lock:
            if self._client is None or key != self._client_key:
                self._client = openai.OpenAI(
                    api_key=key.get_secret_value() if key is not None else NO_KEY,
                    base_url=self.config.base_url,
                    max_retries=0,
                    timeout=openai.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s),
                    http_client=self._http_client,
                )
                self._client_key = key
            return self._client, key

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        client, key = self._openai()
        try:
            raw = client.chat.completions.with_raw_response.create(**body)
        except openai.APITimeoutError as exc:
            raise ProviderFailure(
                "timeout", f"{self.name}: no answer within {self.config.timeout_s:g} s"
            ) from exc
        except openai.APIConnectionError as exc:
            raise ProviderFailure(
                "connection_error", f"{self.name}: {type(exc.__cause__ or exc).__name__}"
            ) from exc
        except openai.APIStatusError as exc:
            detail = f"{self.name} answered HTTP {exc.status_code}: {_scrub(exc.message, key)}"
            if exc.status_code == 429:
                raise ProviderFailure("rate_limited", detail) from None
            if exc.status_code >= 500:
                raise ProviderFailure("server_error", detail) from None
            raise ModelRequestRejected(f"model request refused: {detail}") from None
        try:
            data = json.loads(raw.content)
        except ValueError:
            data = None
        if not _valid_completion(data):
            raise ProviderFailure("bad_response", f"{self.name}: the answer has no choices or usage")
        return data

    def probe(self, timeout_s: float) -> Probe:
        started = time.perf_counter()
        options: Any = {"timeout": openai.Timeout(timeout_s)}
        key: SecretStr | None = None
        try:
            client, key = self._openai()
            if self.config.kind == "vllm":
                client.get(f"{self.config.server_root}/health", cast_to=httpx2.Response, options=options)
            listing = client.get("/models", cast_to=httpx2.Response, options=options).json()
            models = [str(entry["id"]) for entry in listing["data"]]
            version = self._version(client, options) if self.config.kind == "vllm" else None
        except (openai.OpenAIError, AobError, ValueError, LookupError, TypeError) as exc:
            # A down or misconfigured endpoint is a finding, not an error: record why.
            error = f"{type(exc).__name__}: {_scrub(str(exc), key)}"
            return Probe(False, (time.perf_counter() - started) * 1000, error=error)
        return Probe(True, (time.perf_counter() - started) * 1000, models=models, version=version)

    def _version(self, client: openai.OpenAI, options: Any) -> str | None:
        try:
            answer = client.get(
                f"{self.config.server_root}/version", cast_to=httpx2.Response, options=options
            )
        except openai.NotFoundError:
            return None
        version = answer.json().get("version")
        return str(version) if version is not None else None
