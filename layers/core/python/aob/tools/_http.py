"""`http` tools: a request to an allow-listed host, its JSON response read up to a size cap.

The URL is a template whose `{placeholders}` are arguments (percent-encoded, so an argument
cannot add a path, query or host); the other arguments go in the query string of a GET or
DELETE and in the JSON body of a POST, PUT or PATCH. The rendered URL's `host[:port]` (the
port only when not the scheme's default) must equal an entry of the allow-list exactly: no
name resolution, no wildcards. It is checked when the arguments are validated, so a refused
call sends nothing. Redirects are not followed (they could leave the allow-list).

A response larger than `max_response_bytes` raises ToolResponseTooLarge as soon as the cap is
passed (from Content-Length, or while streaming): a cut JSON document cannot be parsed, so
nothing is returned rather than a part. Every request carries the call's `Idempotency-Key`.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, JsonValue

from aob.errors import ToolFailed, ToolNotAllowed, ToolResponseTooLarge, ToolUnavailable
from aob.tools._tool import DEFAULT_TIMEOUT_S, AnyJson, Tool

type HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def placeholders(template: str) -> list[str]:
    """The `{names}` of a URL template, in order."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def _text(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class HttpTool(Tool):
    kind = "http"

    def __init__(
        self,
        name: str,
        description: str,
        args_model: type[BaseModel],
        result_model: type[BaseModel] = AnyJson,
        *,
        method: HttpMethod,
        url: str,
        allowed_hosts: Collection[str],
        client: Callable[[], httpx.Client],
        headers: dict[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(name, description, args_model, result_model, timeout_s=timeout_s)
        self.method = method
        self.url = url
        self.allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
        self.headers = headers or {}
        self.max_response_bytes = max_response_bytes
        self._client = client
        self._in_url = frozenset(placeholders(url))

    def validate(self, args: Mapping[str, Any]) -> dict[str, JsonValue]:
        valid = super().validate(args)
        self.url_for(valid)
        return valid

    def url_for(self, args: dict[str, JsonValue]) -> httpx.URL:
        """The rendered URL, or ToolNotAllowed if its host[:port] is not allow-listed."""
        rendered = self.url.format_map({name: quote(_text(args[name]), safe="") for name in self._in_url})
        try:
            url = httpx.URL(rendered)
        except httpx.InvalidURL as exc:
            raise ToolNotAllowed(f"tool {self.name}: the arguments make an invalid URL ({exc})") from exc
        netloc = url.netloc.decode("ascii")  # host[:port], the scheme's default port left out
        if url.scheme not in ("http", "https") or netloc not in self.allowed_hosts:
            allowed = ", ".join(sorted(self.allowed_hosts)) or "none"
            raise ToolNotAllowed(
                f"tool {self.name} may not call {url.scheme}://{netloc}: not on the allow-list ({allowed})"
            )
        return url

    def execute(self, args: dict[str, JsonValue], idempotency_key: str) -> JsonValue:
        url = self.url_for(args)
        rest = {name: value for name, value in args.items() if name not in self._in_url}
        in_body = self.method in _BODY_METHODS
        if not in_body and rest:  # merged into the template's own query string (params= would replace it)
            url = url.copy_merge_params({name: _text(value) for name, value in rest.items()})
        try:
            with self._client().stream(
                self.method,
                url,
                json=rest if in_body else None,
                headers=self.headers | {"Idempotency-Key": idempotency_key, "Accept": "application/json"},
                timeout=self.timeout_s,
            ) as response:
                self._check_status(response)
                body = self._read(response)
        except httpx.TransportError as exc:  # timeouts, refused connections, broken streams
            problem = f"{type(exc).__name__} calling {url.host}: {exc}"
            raise ToolUnavailable(f"tool {self.name}: {problem}") from exc
        if not body:
            return self.checked_result(None)
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise ToolFailed(f"tool {self.name}: the response is not JSON", error_type="InvalidJson") from exc
        return self.checked_result(parsed)

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            raise ToolUnavailable(f"tool {self.name}: {response.url.host} answered HTTP {status}")
        if status >= 300:
            raise ToolFailed(
                f"tool {self.name}: {response.url.host} answered HTTP {status}", error_type=f"HTTP {status}"
            )

    def _read(self, response: httpx.Response) -> bytes:
        cap = self.max_response_bytes
        too_large = f"tool {self.name}: the response is larger than {cap} bytes"
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise ToolResponseTooLarge(too_large)
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise ToolResponseTooLarge(too_large)
        return bytes(body)
