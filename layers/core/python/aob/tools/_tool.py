"""A tool: a name, argument and result models (whose JSON Schemas callers see), and a way to run.

Kinds: `python` (a function shipped in the layer), `http` (an allow-listed endpoint) and
`lambda` (another function). The gateway validates arguments with `validate` before anything
else, then runs `execute` once per idempotency key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, JsonValue, RootModel, ValidationError

from aob.errors import InvalidToolArguments, ToolFailed

DEFAULT_TIMEOUT_S = 10.0


class AnyJson(RootModel[JsonValue]):
    """The result model of a tool that declares no result fields: any JSON value."""


def problems(exc: ValidationError) -> str:
    """Each validation error as `field: problem`, never quoting the (possibly sensitive) input."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '<value>'}: {error['msg']}" for error in exc.errors()
    )


class Tool(ABC):
    kind: ClassVar[str]

    def __init__(
        self,
        name: str,
        description: str,
        args_model: type[BaseModel],
        result_model: type[BaseModel] = AnyJson,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.description = description
        self.args_model = args_model
        self.result_model = result_model
        self.timeout_s = timeout_s

    @property
    def args_schema(self) -> dict[str, Any]:
        return self.args_model.model_json_schema()

    @property
    def result_schema(self) -> dict[str, Any]:
        return self.result_model.model_json_schema()

    def parse(self, args: Mapping[str, Any]) -> BaseModel:
        """The arguments as the tool's model; InvalidToolArguments naming each bad field."""
        try:
            return self.args_model.model_validate(args)
        except ValidationError as exc:
            raise InvalidToolArguments(f"invalid arguments for tool {self.name}: {problems(exc)}") from exc

    def validate(self, args: Mapping[str, Any]) -> dict[str, JsonValue]:
        """The canonical arguments or InvalidToolArguments.

        Canonical: JSON types, defaults filled in, and null ones left out, so an optional argument
        given as null and one not given are the same call (and the policy sees neither).
        """
        return self.parse(args).model_dump(mode="json", exclude_none=True)

    @abstractmethod
    def execute(self, args: dict[str, JsonValue], idempotency_key: str) -> JsonValue:
        """Run the tool once; ToolFailed, ToolUnavailable or ToolResponseTooLarge if it fails."""

    def checked_result(self, raw: Any) -> JsonValue:
        """The result as the tool's result model dumps it; ToolFailed if it does not fit."""
        try:
            return self.result_model.model_validate(raw).model_dump(mode="json")
        except ValidationError as exc:
            raise ToolFailed(
                f"tool {self.name} returned a result that does not match its schema: {problems(exc)}",
                error_type="InvalidResult",
            ) from exc


class PythonTool(Tool):
    """A function shipped in the layer, taking its argument model and returning its result model."""

    kind = "python"

    def __init__(
        self,
        name: str,
        function: Callable[[Any], BaseModel],
        args_model: type[BaseModel],
        result_model: type[BaseModel],
        *,
        description: str | None = None,
    ) -> None:
        super().__init__(name, description or (function.__doc__ or "").strip(), args_model, result_model)
        self._function = function

    def execute(self, args: dict[str, JsonValue], idempotency_key: str) -> JsonValue:
        return self.checked_result(self._function(self.parse(args)))
