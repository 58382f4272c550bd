"""The tools a model or agent node offers the model, filled in at compile time from the tool registry.

The model can only propose a call to a tool it was told about, with arguments that match the
schema it was shown, so the compiled payload carries each tool's full OpenAI definition (name,
description, JSON Schema of its arguments) rather than its name alone. The registry is the tool
gateway's: the layer's built-ins plus the tools file shipped with the gateway function; a name
neither knows is a spec error, found before anything is deployed.

Which tools file: the one given, else AOB_TOOLS_FILE, else the checkout's
functions/tool_gateway/tools.json (found above this package, so any working directory will do).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import httpx

from aob.tools._registry import ToolRegistry
from aob.tools._tool import Tool

GATEWAY_TOOLS_FILE = Path("functions/tool_gateway/tools.json")
TOOL_CHOICES = ("auto", "required", "none")


def gateway_tools_file() -> Path | None:
    """AOB_TOOLS_FILE if set, else the tool gateway's file in the checkout holding this package."""
    if os.environ.get("AOB_TOOLS_FILE"):
        return Path(os.environ["AOB_TOOLS_FILE"]).resolve()
    here = Path(__file__).resolve()
    return next((p / GATEWAY_TOOLS_FILE for p in here.parents if (p / GATEWAY_TOOLS_FILE).is_file()), None)


def _no_http_client() -> httpx.Client:
    raise AssertionError("the compiler reads tool definitions; it never calls a tool")


@functools.cache
def _registry(tools_file: Path | None) -> ToolRegistry:
    return ToolRegistry.load(tools_file, _no_http_client)


def registry() -> ToolRegistry:
    """The tool gateway's registry (cached per tools file)."""
    return _registry(gateway_tools_file())


def _without_titles(schema: Any) -> Any:
    """A JSON Schema without its `title`s: pydantic adds them, the model gains nothing but tokens."""
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: (
            {name: _without_titles(field) for name, field in value.items()}
            if key in ("properties", "$defs")
            else _without_titles(value)
        )
        for key, value in schema.items()
        if key != "title"
    }


def definition(tool: Tool) -> dict[str, Any]:
    """The OpenAI chat-completions definition of a tool."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": _without_titles(tool.args_schema),
        },
    }


def definitions(names: list[str]) -> list[dict[str, Any]]:
    """The definitions of the named tools, in the order named."""
    tools = registry()
    return [definition(tools.get(name)) for name in names]


def tool_choice(choice: str) -> str | dict[str, Any]:
    """`auto`, `required` and `none` as they are; a tool's name as the named choice that forces it."""
    return choice if choice in TOOL_CHOICES else {"type": "function", "function": {"name": choice}}


def problems(tools: list[str], choice: str | None, at: str) -> list[str]:
    """What is wrong with a node's `tools` and `tool_choice` (at: where the node is, `nodes.<name>`)."""
    known = registry().names
    found = [
        f"{at}.tools.{index}: no tool {name!r}; known tools: {', '.join(known)} "
        "(define it in the tool gateway's tools file)"
        for index, name in enumerate(tools)
        if name not in known
    ]
    if choice is None or choice == "none":
        return found
    if not tools:
        found.append(f"{at}.tool_choice: {choice!r} needs tools; list them in {at}.tools")
    elif choice not in TOOL_CHOICES and choice not in tools:
        found.append(
            f"{at}.tool_choice: {choice!r} is neither auto, required, none nor one of the node's tools "
            f"({', '.join(tools)})"
        )
    return found
