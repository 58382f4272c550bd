"""The tool gateway: governed tool calls (validate, policy gate, metering, run once, redact, cap).

`get_tool_gateway().call(ToolCall)` is what functions/tool_gateway calls and what fused-mode
steps call in-process. Tools are `python` built-ins (aob.tools.builtins), `http` endpoints and
`lambda` functions defined in the deployment's tools file (aob.tools._specs).
"""

from __future__ import annotations

from aob.tools._gateway import CAPABILITY, Meter, PolicyGate, ToolGateway
from aob.tools._http import HttpTool
from aob.tools._idempotency import Executed, IdempotentCalls, idempotency_key
from aob.tools._lambda import LambdaTool
from aob.tools._models import ToolCall, ToolResult
from aob.tools._output import REDACTED, Redaction, truncate
from aob.tools._registry import ToolRegistry
from aob.tools._runtime import ToolSettings, get_http_client, get_tool_gateway
from aob.tools._specs import ToolsFile, load_tools
from aob.tools._tool import PythonTool, Tool

__all__ = [
    "CAPABILITY",
    "REDACTED",
    "Executed",
    "HttpTool",
    "IdempotentCalls",
    "LambdaTool",
    "Meter",
    "PolicyGate",
    "PythonTool",
    "Redaction",
    "Tool",
    "ToolCall",
    "ToolGateway",
    "ToolRegistry",
    "ToolResult",
    "ToolSettings",
    "ToolsFile",
    "get_http_client",
    "get_tool_gateway",
    "idempotency_key",
    "load_tools",
    "truncate",
]
