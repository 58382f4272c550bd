"""Provider API keys, read by reference from SSM Parameter Store or Secrets Manager, cached per container.

A reference is `ssm:/parameter/name` (a SecureString, decrypted) or a Secrets Manager secret ARN
or name. A secret's string is the key itself, or JSON with an `api_key` field. Keys are held as
SecretStr and never formatted into a message: errors name the reference only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from aob.errors import ConfigurationError, ServiceUnavailable

SSM_PREFIX = "ssm:"
# Errors that mean the reference (or the function's permissions) is wrong, not that AWS is down.
_CONFIG_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "AccessDeniedException",
        "InvalidRequestException",
        "InvalidParameterException",
        "ValidationException",
        "DecryptionFailure",
        "InvalidKeyId",
    }
)


def _key_of(ref: str, secret_string: str) -> str:
    try:
        document = json.loads(secret_string)
    except ValueError:
        return secret_string.strip()
    if not isinstance(document, dict):
        return secret_string.strip()
    if not isinstance(document.get("api_key"), str):
        raise ConfigurationError(f"api_key_ref {ref}: a JSON secret needs a string field api_key")
    return str(document["api_key"])


class ApiKeys:
    """Resolves `api_key_ref`s; each key is fetched once per `ttl_s` (rotation) per container."""

    def __init__(
        self,
        *,
        client: Callable[[str], Any] = boto3.client,
        ttl_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make_client = client
        self._clients: dict[str, Any] = {}
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, SecretStr]] = {}
        self._lock = threading.Lock()

    def get(self, ref: str) -> SecretStr:
        now = self._clock()
        cached = self._cache.get(ref)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = SecretStr(self._fetch(ref))
        if not key.get_secret_value():
            raise ConfigurationError(
                f"api_key_ref {ref}: the secret is empty; store the provider's API key in it"
            )
        with self._lock:
            self._cache[ref] = (now + self._ttl_s, key)
        return key

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._make_client(service)
            return self._clients[service]

    def _fetch(self, ref: str) -> str:
        try:
            if ref.startswith(SSM_PREFIX):
                reply = self._client("ssm").get_parameter(
                    Name=ref.removeprefix(SSM_PREFIX), WithDecryption=True
                )
                return str(reply["Parameter"]["Value"])
            reply = self._client("secretsmanager").get_secret_value(SecretId=ref)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _CONFIG_ERRORS:
                raise ConfigurationError(
                    f"api_key_ref {ref}: {code}; check that it exists and the function may read it"
                ) from exc
            raise ServiceUnavailable(f"api_key_ref {ref}: AWS answered {code or 'an error'}; retry") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable(
                f"api_key_ref {ref}: could not reach AWS ({type(exc).__name__})"
            ) from exc
        if "SecretString" not in reply:
            raise ConfigurationError(f"api_key_ref {ref}: a binary secret; store the key as a string")
        return _key_of(ref, str(reply["SecretString"]))
