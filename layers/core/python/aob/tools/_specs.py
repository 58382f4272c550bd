"""Tool definitions read from a JSON file: `http` and `lambda` tools, their fields made into models.

    {"tools": [
      {"name": "issue_refund", "kind": "http", "description": "Refund an order",
       "method": "POST", "url": "https://payments.internal/orders/{order_id}/refunds",
       "allowed_hosts": ["payments.internal"], "timeout_s": 5, "max_response_bytes": 65536,
       "args": {"order_id": {"type": "string", "pattern": "^o-[0-9]+$"},
                "amount": {"type": "number", "ge": 0.01, "description": "in the order's currency"}},
       "result": {"refund_id": {"type": "string"}}},
      {"name": "send_email", "kind": "lambda", "description": "Send an email",
       "function": "aob-send-email", "args": {"to": {"type": "string"}, "body": {"type": "string"}}}
    ]}

A field is required unless it has a `default` or `"required": false`. `args` become a model
that forbids other fields; `result`, if given, a model the tool's result must match (other
fields pass through); without `result` any JSON is accepted. The JSON Schemas callers see are
generated from these models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import annotated_types
import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import SchemaError

from aob.errors import ConfigurationError
from aob.policy._models import ArgName
from aob.tools._http import DEFAULT_MAX_RESPONSE_BYTES, HttpMethod, HttpTool, placeholders
from aob.tools._lambda import LambdaTool
from aob.tools._models import ToolName
from aob.tools._tool import DEFAULT_TIMEOUT_S, AnyJson, Tool, problems

_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "object": dict[str, JsonValue],
    "array": list[JsonValue],
}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Spec):
    type: Literal["string", "integer", "number", "boolean", "object", "array"]
    description: str | None = None
    required: bool = True
    default: JsonValue = None  # applies only when given
    pattern: str | None = None
    max_length: int | None = Field(default=None, ge=0)
    ge: float | None = None
    le: float | None = None

    @model_validator(mode="after")
    def _applicable(self) -> Self:
        if self.type != "string" and (self.pattern is not None or self.max_length is not None):
            raise ValueError("pattern and max_length apply to strings only")
        if self.type not in ("integer", "number") and (self.ge is not None or self.le is not None):
            raise ValueError("ge and le apply to integers and numbers only")
        try:
            TypeAdapter(self.annotation())
        except SchemaError as exc:  # a pattern the (Rust) regex engine refuses, e.g. a look-ahead
            problem = str(exc).splitlines()[-1]
            raise ValueError(f"pattern {self.pattern!r} is not supported: {problem}") from None
        return self

    @property
    def always_present(self) -> bool:
        """Whether validated arguments always hold this field (required, or a non-null default)."""
        given_default = "default" in self.model_fields_set
        return (self.required and not given_default) or self.default is not None

    def annotation(self) -> Any:
        constraints: list[Any] = []
        if self.pattern is not None or self.max_length is not None:
            constraints.append(StringConstraints(pattern=self.pattern, max_length=self.max_length))
        if self.ge is not None or self.le is not None:
            constraints.append(annotated_types.Interval(ge=self.ge, le=self.le))
        base = Annotated[_TYPES[self.type], *constraints] if constraints else _TYPES[self.type]
        if "default" in self.model_fields_set or self.required:
            return base
        return base | None


def fields_model(
    name: str, fields: dict[str, FieldSpec], *, extra: Literal["forbid", "allow"]
) -> type[BaseModel]:
    """A pydantic model with one field per spec."""
    definitions: dict[str, Any] = {}
    for field, spec in fields.items():
        default = spec.default if "default" in spec.model_fields_set or not spec.required else ...
        definitions[field] = (Annotated[spec.annotation(), Field(description=spec.description)], default)
    return create_model(name, __config__=ConfigDict(extra=extra), **definitions)


class _ToolSpec(_Spec):
    name: ToolName
    description: str = Field(min_length=1)
    args: dict[ArgName, FieldSpec] = {}
    result: dict[ArgName, FieldSpec] | None = None
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=900)
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1)

    def models(self) -> tuple[type[BaseModel], type[BaseModel]]:
        title = "".join(part.capitalize() for part in self.name.split("_"))
        args = fields_model(f"{title}Args", self.args, extra="forbid")
        if self.result is None:
            return args, AnyJson
        return args, fields_model(f"{title}Result", self.result, extra="allow")


class HttpToolSpec(_ToolSpec):
    kind: Literal["http"]
    method: HttpMethod
    url: str = Field(pattern=r"^https?://", description="template: {name} is replaced by that argument")
    allowed_hosts: list[str] = Field(
        min_length=1, description="host, or host:port for a port other than the scheme's: matched exactly"
    )
    headers: dict[str, str] = {}

    @model_validator(mode="after")
    def _placeholders_are_args(self) -> Self:
        names = set(placeholders(self.url))
        unknown = sorted(names - set(self.args))
        if unknown:
            raise ValueError(f"url placeholders {unknown} are not arguments of the tool")
        optional = sorted(name for name in names if not self.args[name].always_present)
        if optional:
            raise ValueError(f"url placeholders {optional} must be required arguments or have a default")
        return self


class LambdaToolSpec(_ToolSpec):
    kind: Literal["lambda"]
    function: str = Field(min_length=1, description="function name or ARN")


class ToolsFile(_Spec):
    tools: list[Annotated[HttpToolSpec | LambdaToolSpec, Field(discriminator="kind")]]


def build(spec: HttpToolSpec | LambdaToolSpec, http_client: Callable[[], httpx.Client]) -> Tool:
    args, result = spec.models()
    if isinstance(spec, HttpToolSpec):
        return HttpTool(
            spec.name,
            spec.description,
            args,
            result,
            method=spec.method,
            url=spec.url,
            allowed_hosts=spec.allowed_hosts,
            headers=spec.headers,
            client=http_client,
            timeout_s=spec.timeout_s,
            max_response_bytes=spec.max_response_bytes,
        )
    return LambdaTool(
        spec.name,
        spec.description,
        args,
        result,
        function=spec.function,
        timeout_s=spec.timeout_s,
        max_response_bytes=spec.max_response_bytes,
    )


def load_tools(path: Path, http_client: Callable[[], httpx.Client]) -> list[Tool]:
    """The tools defined in `path`; ConfigurationError naming the file and each bad field."""
    try:
        document = ToolsFile.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the tools file {path}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ConfigurationError(f"invalid tools file {path}: {problems(exc)}") from exc
    return [build(spec, http_client) for spec in document.tools]
