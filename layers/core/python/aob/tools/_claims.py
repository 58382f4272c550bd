"""Claim check: a tool result too large for a Step Functions state (256 KB) travels by reference.

The gateway stores such a result in S3 and returns a claim in its place:

    {"$claim": {"bucket", "key", "bytes", "sha256", "media_type": "application/json"}}

under `claims/<tenant_id>/<run_id>/<step_id>/<sha256>.json`. The key is content-addressed, so a
retried or replayed step writes the same object. A later call may pass the claim (or anything
holding it, e.g. `$.previous.result`) as an argument: the gateway reads it back before validating,
but only from the calling tenant's prefix and only if its content still has the claimed sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from uuid import UUID

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from aob.config import get_settings
from aob.errors import ConfigurationError, InvalidToolArguments, ServiceUnavailable
from aob.tools._models import ToolCall
from aob.tools._output import truncate

CLAIM = "$claim"
MEDIA_TYPE = "application/json"
PREFIX = "claims"
# The state carries other steps' data and each tool result twice (`value` and `result`).
DEFAULT_INLINE_RESULT_BYTES = 64 * 1024
MAX_INLINE_RESULT_BYTES = 96 * 1024
_KEY = re.compile(rf"^{PREFIX}/[^/]+/[0-9a-f-]{{36}}/[0-9a-f-]{{36}}/(?P<sha256>[0-9a-f]{{64}})\.json$")


class Claim(BaseModel):
    """Where a payload is and what it must hash to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: Literal["application/json"] = "application/json"


class ClaimStore(Protocol):
    """Where payloads are kept: one bucket, objects written once and read back by key."""

    bucket: str

    def put(self, key: str, body: bytes) -> None: ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none."""
        ...


class MemoryClaimStore:
    """A ClaimStore in a dict, for tests."""

    def __init__(self, bucket: str = "claims-test") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)


def _s3_client() -> Any:
    return boto3.client("s3", endpoint_url=get_settings().aws_endpoint_url)


class S3ClaimStore:
    """Claims in an S3 bucket, encrypted at rest (SSE-S3); the client is made on first use."""

    def __init__(self, bucket: str, client: Callable[[], Any] = _s3_client) -> None:
        self.bucket = bucket
        self._make_client = client
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def put(self, key: str, body: bytes) -> None:
        try:
            self._s3().put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=MEDIA_TYPE, ServerSideEncryption="AES256"
            )
        except (BotoCoreError, ClientError) as exc:
            raise ServiceUnavailable(f"could not store a claim in s3://{self.bucket}: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise ServiceUnavailable(f"could not read a claim from s3://{self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise ServiceUnavailable(f"could not read a claim from s3://{self.bucket}: {exc}") from exc


def encode(value: JsonValue) -> bytes:
    """The JSON text a result is measured and stored as (the same as the gateway's truncation)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def tenant_prefix(tenant_id: str) -> str:
    return f"{PREFIX}/{tenant_id}/"


def is_claim(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and CLAIM in value


def check_in(
    store: ClaimStore, value: JsonValue, *, tenant_id: str, run_id: UUID, step_id: UUID, inline_bytes: int
) -> tuple[JsonValue, bool]:
    """`value` if its JSON fits in `inline_bytes`, else it is stored and its claim returned (and True)."""
    body = encode(value)
    if len(body) <= inline_bytes:
        return value, False
    sha256 = hashlib.sha256(body).hexdigest()
    key = f"{tenant_prefix(tenant_id)}{run_id}/{step_id}/{sha256}.json"
    store.put(key, body)
    claim = Claim(bucket=store.bucket, key=key, bytes=len(body), sha256=sha256)
    return {CLAIM: claim.model_dump()}, True


@dataclass(frozen=True)
class _Claims:
    """Reads the claims of one call's arguments (`tool` and `tenant_id` go into its errors)."""

    store: ClaimStore | None
    tool: str
    tenant_id: str

    def _refuse(self, where: str, problem: str) -> InvalidToolArguments:
        return InvalidToolArguments(f"invalid arguments for tool {self.tool}: {where}: {problem}")

    def read(self, where: str, raw: Any) -> JsonValue:
        try:
            claim = Claim.model_validate(raw)
        except ValidationError as exc:
            raise self._refuse(where, "not a valid claim; pass a claim the gateway returned") from exc
        if self.store is None:
            raise ConfigurationError(
                f"tool {self.tool}: argument {where} is a claim, but this tool gateway has no claim store; "
                "set AOB_CLAIMS_BUCKET"
            )
        prefix = tenant_prefix(self.tenant_id)
        match = _KEY.match(claim.key)
        if claim.bucket != self.store.bucket or not claim.key.startswith(prefix) or match is None:
            raise self._refuse(
                where,
                f"the claim is not under s3://{self.store.bucket}/{prefix}; pass one of this tenant's claims",
            )
        body = self.store.get(claim.key)
        if body is None:
            raise self._refuse(where, f"no claimed object {claim.key}; it was never stored or has expired")
        if match["sha256"] != claim.sha256 or hashlib.sha256(body).hexdigest() != claim.sha256:
            raise self._refuse(
                where, f"the content of {claim.key} does not match the claim's sha256; refused"
            )
        return json.loads(body)  # type: ignore[no-any-return]

    def resolve(self, where: str, value: JsonValue) -> JsonValue:
        if is_claim(value):
            return self.read(where, value[CLAIM])  # type: ignore[index, call-overload]
        if isinstance(value, dict):
            return {key: self.resolve(f"{where}.{key}", item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(f"{where}[{index}]", item) for index, item in enumerate(value)]
        return value


def has_claims(value: Any) -> bool:
    if is_claim(value):
        return True
    if isinstance(value, dict):
        return any(has_claims(item) for item in value.values())
    if isinstance(value, list):
        return any(has_claims(item) for item in value)
    return False


def resolve_args(store: ClaimStore | None, call: ToolCall) -> dict[str, JsonValue]:
    """The call's arguments, each claim replaced by its content; InvalidToolArguments names a bad one."""
    if not has_claims(call.args):
        return call.args
    claims = _Claims(store, call.tool, call.tenant_id)
    return {name: claims.resolve(name, value) for name, value in call.args.items()}


def _reclaim(original: Any, resolved: Any, sent: Any) -> Any:
    if is_claim(original):
        return original if sent == resolved else sent
    if isinstance(original, dict) and isinstance(resolved, dict) and isinstance(sent, dict):
        return {key: _reclaim(original.get(key), resolved.get(key), item) for key, item in sent.items()}
    lists = isinstance(original, list) and isinstance(resolved, list) and isinstance(sent, list)
    if lists and len(original) == len(resolved) == len(sent):
        return [_reclaim(*items) for items in zip(original, resolved, sent, strict=True)]
    return sent


def reclaim(
    original: dict[str, JsonValue], resolved: dict[str, JsonValue], sent: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    """`sent` with the caller's claims (in `original`) put back where redaction left the validated
    arguments (`resolved`) unchanged: the DecisionRecord keeps the claim, not the payload, as the
    explicit mode's record (made from the state) does.
    """
    return {key: _reclaim(original.get(key), resolved.get(key), item) for key, item in sent.items()}


def shape_result(
    store: ClaimStore | None,
    value: JsonValue,
    call: ToolCall,
    inline_bytes: int,
    max_bytes: int,
) -> tuple[JsonValue, bool, bool]:
    """The result as the state gets it, whether it was claimed and whether it was cut.

    With a store, a result over `inline_bytes` is claimed whole; without one it is cut to `max_bytes`.
    """
    if store is not None:
        claimed_value, claimed = check_in(
            store,
            value,
            tenant_id=call.tenant_id,
            run_id=call.run_id,
            step_id=call.step_id,
            inline_bytes=inline_bytes,
        )
        if claimed:
            return claimed_value, True, False
    cut, truncated = truncate(value, max_bytes)
    return cut, False, truncated
