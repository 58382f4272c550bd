"""The workflow spec: named nodes and the edges between them, as pydantic models with a JSON Schema.

A spec is a YAML or JSON file (`load_spec`); the compiler turns it into ASL. Node names are
snake_case and unique across the whole spec (branches included): each becomes the state name
prefix (`lookup_order` -> `LookupOrder...`) and the state path of its result (`$.lookup_order`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from aob.errors import SpecInvalid
from aob.policy import EgressAction, ModelAction, ToolAction
from aob.tenants import TenantId

SCHEMA_PATH = Path(__file__).with_name("workflow.schema.json")

NodeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=64)]
JsonPath = Annotated[
    str, Field(pattern=r"^\$", description="a JSONPath into the run's state, e.g. $.input.id")
]
Tier = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
ToolName = Annotated[str, Field(min_length=1, max_length=200)]
ToolChoice = Annotated[
    Literal["auto", "required", "none"] | ToolName,
    Field(
        description="auto: the model decides; required: it must call a tool; none: it may not; "
        "a tool's name: it must call that tool"
    ),
]
EdgePolicy = Annotated[ToolAction | ModelAction | EgressAction, Field(discriminator="kind")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Edge(_Spec):
    """The outgoing edge of a node: `next` or `end: true`; `policy` must allow it before it is taken."""

    description: str | None = None
    next: NodeName | None = None
    end: bool = False
    policy: EdgePolicy | None = Field(
        default=None, description="an extra policy check (an action) the run must pass to take this edge"
    )


class _Prompt(_Spec):
    tier: Tier
    system: str | None = None
    prompt: str = Field(description="the user message; each {} is filled from prompt_args in order")
    prompt_args: list[JsonPath] = []
    max_tokens: int = Field(default=1024, ge=1, le=1_000_000)


class ModelNode(_Prompt, _Edge):
    """One governed model call; its result lands at `$.<node>` (`text`, `value`: the ChatResult)."""

    type: Literal["model"]
    tools: list[ToolName] = Field(default=[], description="tools the model may propose (not run here)")
    tool_choice: ToolChoice | None = None


class ToolNode(_Edge):
    """One governed tool call; its result lands at `$.<node>` (`result`, `value`: the ToolResult)."""

    type: Literal["tool"]
    tool: ToolName
    args: dict[str, JsonPath] = Field(default={}, description="argument name -> JSONPath into the state")
    constants: dict[str, JsonValue] = Field(default={}, description="arguments with fixed values")
    approval: NodeName | None = Field(
        default=None,
        description="an approval node every path here passes: its approval_id goes with the call "
        "(for tools the policy says need approval)",
    )


class AgentNode(_Prompt, _Edge):
    """The model proposes tool calls, they run, the results go back to it: until it answers or max_steps."""

    type: Literal["agent"]
    tools: list[ToolName] = Field(min_length=1)
    tool_choice: ToolChoice | None = None
    max_steps: int = Field(ge=1, le=100, description="the most model-and-tools rounds before answering")


class ApprovalNode(_Edge):
    """A human approves (`next`) or rejects (`on_reject`, else the run fails); no answer is a rejection."""

    type: Literal["approval"]
    approver_role: Annotated[str, Field(min_length=1, max_length=100)]
    timeout_s: int = Field(ge=1, le=365 * 24 * 3600)
    reason: str | None = None
    on_reject: NodeName | None = None


Operator = Literal[
    "equals",
    "not_equals",
    "greater_than",
    "greater_than_or_equal",
    "less_than",
    "less_than_or_equal",
    "matches",
    "is_present",
    "is_absent",
]
UNARY_OPERATORS = frozenset({"is_present", "is_absent"})


class Condition(_Spec):
    variable: JsonPath
    operator: Operator
    value: str | float | bool | None = Field(default=None, description="not used by is_present/is_absent")
    next: NodeName


class ChoiceNode(_Spec):
    """The first condition that holds picks the next node, else `default`.

    A cycle in the graph must pass through a choice with `max_iterations`: the run fails with
    LoopBoundExceeded when the choice is reached more often than that.
    """

    type: Literal["choice"]
    description: str | None = None
    choices: list[Condition] = Field(min_length=1)
    default: NodeName = Field(description="where the run goes when no condition holds")
    max_iterations: int | None = Field(default=None, ge=1, le=10_000)


class Branch(_Spec):
    """A sub-workflow of a parallel or map node; its edges stay inside it."""

    start: NodeName
    nodes: dict[NodeName, Node] = Field(min_length=1)


class ParallelNode(_Edge):
    """Runs every branch on the same state; `$.<node>` gets the list of the branches' final states."""

    type: Literal["parallel"]
    branches: list[Branch] = Field(min_length=1)


class MapNode(_Edge):
    """Runs `iterator` once per item of `items_path` (the item at `$.item`); results at `$.<node>`."""

    type: Literal["map"]
    items_path: JsonPath
    iterator: Branch
    max_concurrency: int = Field(default=0, ge=0, le=1000, description="0: no limit")


class TransformNode(_Edge):
    """Reshapes the state: `parameters` as ASL Parameters (keys ending in `.$` take JSONPaths)."""

    type: Literal["transform"]
    parameters: dict[str, JsonValue]
    result_path: JsonPath | None = Field(default=None, description="default $.<node>")


class SucceedNode(_Spec):
    type: Literal["succeed"]
    description: str | None = None


class FailNode(_Spec):
    type: Literal["fail"]
    description: str | None = None
    error: Annotated[str, Field(min_length=1, max_length=256)]
    cause: str = ""


Node = Annotated[
    ModelNode
    | ToolNode
    | AgentNode
    | ApprovalNode
    | ChoiceNode
    | ParallelNode
    | MapNode
    | TransformNode
    | SucceedNode
    | FailNode,
    Field(discriminator="type"),
]
Branch.model_rebuild()
NODE_TYPES = (
    "model",
    "tool",
    "agent",
    "approval",
    "choice",
    "parallel",
    "map",
    "transform",
    "succeed",
    "fail",
)


class WorkflowSpec(_Spec):
    """A workflow: its nodes, the node it starts at, and who it belongs to."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")]
    version: Annotated[str, Field(min_length=1, max_length=40)]
    tenant_id: TenantId | None = Field(default=None, description="the tenant it is for; none: any tenant")
    description: str | None = None
    start: NodeName
    nodes: dict[NodeName, Node] = Field(min_length=1)


def _location(loc: tuple[int | str, ...]) -> str:
    """`nodes.<name>.<field>`, without the union tag pydantic puts after the node name."""
    parts = [str(part) for index, part in enumerate(loc) if not (index >= 2 and loc[index - 2] == "nodes")]
    return ".".join(parts) or "(spec)"


def parse_spec(data: Any) -> WorkflowSpec:
    """The spec in `data` (parsed YAML/JSON), checked; SpecInvalid lists every problem."""
    from aob.workflows._validate import validate

    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _location(error["loc"])
            if error["type"] == "union_tag_invalid":
                message = f"unknown node type {error['input'].get('type')!r}; one of: {', '.join(NODE_TYPES)}"
                problems.append(f"{where}.type: {message}")
            elif error["type"] == "union_tag_not_found":
                problems.append(f"{where}.type: missing; one of: {', '.join(NODE_TYPES)}")
            else:
                problems.append(f"{where}: {error['msg']}")
        raise SpecInvalid(problems) from exc
    validate(spec)
    return spec


def load_spec(path: Path | str) -> WorkflowSpec:
    """Read a workflow spec from a .yaml/.yml or .json file."""
    text = Path(path).read_text()
    if Path(path).suffix in (".yaml", ".yml"):
        import yaml  # a development tool: not shipped in the Lambda layer

        return parse_spec(yaml.safe_load(text))
    return parse_spec(json.loads(text))


def json_schema() -> dict[str, Any]:
    return WorkflowSpec.model_json_schema()


def write_json_schema(path: Path = SCHEMA_PATH) -> None:
    path.write_text(json.dumps(json_schema(), indent=2) + "\n")
