"""The checks a parsed spec must pass before it is compiled: edges, reachability, bounded loops.

Each scope (the workflow, each parallel branch, each map iterator) is a graph of its own: edges
never leave it. The loop rule: every cycle must pass through a choice node with `max_iterations`
(the compiled choice counts its visits and fails the run with LoopBoundExceeded past the bound).
An agent's own model/tool loop is bounded by its required `max_steps` and is not a graph cycle.
"""

from __future__ import annotations

from aob.errors import SpecInvalid
from aob.workflows import _tools
from aob.workflows.spec import (
    UNARY_OPERATORS,
    AgentNode,
    ApprovalNode,
    Branch,
    ChoiceNode,
    MapNode,
    ModelNode,
    Node,
    ParallelNode,
    ToolNode,
    TransformNode,
    WorkflowSpec,
)

_ORDERED = frozenset({"greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal"})


def edges(node: Node) -> list[tuple[str, str]]:
    """(field, target node) of each outgoing edge of a node."""
    if isinstance(node, ChoiceNode):
        rules = [(f"choices.{index}.next", rule.next) for index, rule in enumerate(node.choices)]
        return [*rules, ("default", node.default)]
    next_node: str | None = getattr(node, "next", None)  # succeed and fail nodes have no edge
    found = [("next", next_node)] if next_node else []
    if isinstance(node, ApprovalNode) and node.on_reject:
        found.append(("on_reject", node.on_reject))
    return found


def validate(spec: WorkflowSpec) -> None:
    """Raise SpecInvalid listing every problem of the spec's graph (none: it may be compiled)."""
    problems: list[str] = []
    _check_scope(Branch(start=spec.start, nodes=spec.nodes), "", problems, {})
    if problems:
        raise SpecInvalid(problems)


def _check_scope(scope: Branch, where: str, problems: list[str], seen: dict[str, str]) -> None:
    if scope.start not in scope.nodes:
        problems.append(f"{where}start: names no node {scope.start!r}")
    for name, node in scope.nodes.items():
        at = f"{where}nodes.{name}"
        if name in seen:
            problems.append(f"{at}: the name is already used at {seen[name]} (names are unique in a spec)")
        seen.setdefault(name, at)
        _check_node(node, at, problems)
        for field, target in edges(node):
            if target not in scope.nodes:
                problems.append(f"{at}.{field}: names no node {target!r} (edges stay in their branch)")
        if isinstance(node, ParallelNode):
            for index, branch in enumerate(node.branches):
                _check_scope(branch, f"{at}.branches.{index}.", problems, seen)
        if isinstance(node, MapNode):
            _check_scope(node.iterator, f"{at}.iterator.", problems, seen)
    if scope.start in scope.nodes:
        reached = _reachable(scope)
        problems.extend(
            f"{where}nodes.{name}: unreachable from {scope.start!r}"
            for name in scope.nodes
            if name not in reached
        )
        problems.extend(_unbounded_cycles(scope, where))
    problems.extend(_approval_problems(scope, where))


def _check_node(node: Node, at: str, problems: list[str]) -> None:
    if hasattr(node, "end") and hasattr(node, "next"):
        if node.next and node.end:
            problems.append(f"{at}.end: set either next or end: true, not both")
        elif not node.next and not node.end:
            problems.append(f"{at}.next: missing (name the next node, or set end: true)")
    if isinstance(node, ModelNode | AgentNode):
        holes = node.prompt.count("{}")
        if holes != len(node.prompt_args):
            problems.append(
                f"{at}.prompt_args: the prompt has {holes} {{}} placeholder(s), "
                f"but there are {len(node.prompt_args)} prompt_args"
            )
        problems.extend(_tools.problems(node.tools, node.tool_choice, at))
    if isinstance(node, ChoiceNode):
        for index, rule in enumerate(node.choices):
            message = _condition_problem(rule.operator, rule.value)
            if message:
                problems.append(f"{at}.choices.{index}.value: {message}")
    if isinstance(node, TransformNode):
        for key, value in node.parameters.items():
            if key.endswith(".$") and not (isinstance(value, str) and value.startswith(("$", "States."))):
                problems.append(
                    f"{at}.parameters.{key}: a key ending in .$ takes a JSONPath or States.* call"
                )


def _condition_problem(operator: str, value: str | float | bool | None) -> str | None:
    if operator in UNARY_OPERATORS:
        return None if value is None else f"{operator} takes no value"
    if value is None:
        return f"missing (what {operator} compares with)"
    if operator in _ORDERED and isinstance(value, bool):
        return f"{operator} compares numbers or strings, not booleans"
    if operator == "matches" and not isinstance(value, str):
        return "matches takes a pattern string (* is the wildcard)"
    return None


def _approval_problems(scope: Branch, where: str) -> list[str]:
    """A tool's `approval` must name an approval node of its scope that every path to the tool approves."""
    problems: list[str] = []
    for name, node in scope.nodes.items():
        if not isinstance(node, ToolNode) or node.approval is None:
            continue
        at = f"{where}nodes.{name}.approval"
        gate = scope.nodes.get(node.approval)
        if not isinstance(gate, ApprovalNode):
            what = f"a {gate.type} node" if gate is not None else "no node of this scope"
            problems.append(f"{at}: {node.approval!r} is {what}; name an approval node (type: approval)")
        elif name in _reachable(scope, unless_approved_by=node.approval):
            problems.append(
                f"{at}: {name} can be reached without {node.approval} approving "
                f"(route every path to {name} through {node.approval}'s next)"
            )
    return problems


def _reachable(scope: Branch, unless_approved_by: str | None = None) -> set[str]:
    reached, todo = set(), [scope.start]
    while todo:
        name = todo.pop()
        if name in reached or name not in scope.nodes:
            continue
        reached.add(name)
        # Past the approval node, only its rejection edge leaves it unapproved.
        todo.extend(
            target
            for field, target in edges(scope.nodes[name])
            if name != unless_approved_by or field == "on_reject"
        )
    return reached


def _bounded(node: Node) -> bool:
    return isinstance(node, ChoiceNode) and node.max_iterations is not None


def _unbounded_cycles(scope: Branch, where: str) -> list[str]:
    """One problem per back edge of a cycle that no bounded choice breaks (bounded choices are cut)."""
    problems: list[str] = []
    state: dict[str, str] = {}  # name -> "open" (on the DFS stack) | "done"
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = "open"
        stack.append(name)
        for field, target in edges(scope.nodes[name]):
            if target not in scope.nodes or _bounded(scope.nodes[target]):
                continue
            if state.get(target) == "open":
                cycle = " -> ".join([*stack[stack.index(target) :], target])
                problems.append(
                    f"{where}nodes.{name}.{field}: the cycle {cycle} has no bound "
                    "(give a choice on it max_iterations)"
                )
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for name, node in scope.nodes.items():
        if name not in state and not _bounded(node):
            visit(name)
    return problems
