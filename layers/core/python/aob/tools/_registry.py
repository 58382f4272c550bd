"""The tools a gateway knows: the layer's built-ins plus those of the deployment's tools file.

Built-ins are code (`aob.tools.builtins`); `http` and `lambda` tools are data, read from one
JSON file (AOB_TOOLS_FILE, see `aob.tools._specs` for its format) shipped with the function, so
adding an endpoint is a deployment, not a layer release. Which tenant may call which tool is
the policy's business (`data.aob.catalog.tools` and `tenant_tools`), not the registry's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

from aob.errors import ConfigurationError, UnknownTool
from aob.tools._specs import load_tools
from aob.tools._tool import Tool
from aob.tools.builtins import BUILTINS, STAND_INS


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ConfigurationError(f"tool {tool.name} is defined twice (names must be unique)")
            self._tools[tool.name] = tool

    @classmethod
    def load(cls, tools_file: Path | None, http_client: Callable[[], httpx.Client]) -> ToolRegistry:
        """The built-ins, plus the tools of `tools_file` if given.

        A file tool may replace a built-in stand-in (`STAND_INS`, e.g. the simulated payment
        provider's `issue_refund`); shadowing any other built-in is refused.
        """
        loaded = load_tools(tools_file, http_client) if tools_file else []
        replaced = STAND_INS & {tool.name for tool in loaded}
        return cls([*(tool for tool in BUILTINS if tool.name not in replaced), *loaded])

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def tools(self) -> list[Tool]:
        """Every tool, by name: with its kind, description and argument and result JSON Schemas."""
        return [self._tools[name] for name in self.names]

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise UnknownTool(f"tool: no tool {name!r}; known tools: {', '.join(self.names)}")
        return tool
