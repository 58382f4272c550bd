"""Compile a workflow spec to Amazon States Language, with governance explicit or fused.

Both modes hold the session's lease for the whole run (AcquireLease first, ReleaseLease at every
end): every step's DecisionRecord is written under its fencing token. explicit: each model/tool
node is a governed call (CheckPolicy -> IsAllowed -> ReserveTokens -> gateway -> SettleTokens ->
Record; a deny -> RecordDenied). fused: each model/tool node is one gateway task, which gates,
meters and records inside (its payload's `record` says the node and the lease). Both: Retry on
transient errors, and every failure goes (error at `$.error`) to the run's failure path
`RecordFailure -> Failed`. The run's input: tenant_id, principal, run_id, session_id and whatever
the nodes' JSONPaths read (e.g. `$.input`). Map iterations get the session and the lease in
their ItemSelector; parallel branches get the whole state.

    python -m aob.workflows.compiler examples/support_triage/workflow.yaml

writes compiled.explicit.asl.json and compiled.fused.asl.json next to the spec.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aob.asl import GovernanceArns, acquire_lease, release_lease
from aob.asl._governed import State
from aob.errors import SpecInvalid
from aob.workflows import _states as asl
from aob.workflows._agent import agent_states
from aob.workflows._nodes import ITEM_LEASE, Piece, Scope, governed, prune
from aob.workflows._validate import validate
from aob.workflows.spec import (
    AgentNode,
    ApprovalNode,
    Branch,
    ChoiceNode,
    FailNode,
    MapNode,
    ModelNode,
    Node,
    ParallelNode,
    SucceedNode,
    ToolNode,
    TransformNode,
    WorkflowSpec,
    load_spec,
)

Mode = Literal["explicit", "fused"]
RUN = "$run"  # the stats entry of the run's own states (lease, loop counters, failure path)


@dataclass(frozen=True)
class NodeStats:
    """What a node costs: its states, and on one successful pass the states entered and Lambdas called.

    An agent's pass is one model call that answers without tools; a parallel or map node counts
    its own state (its branches' nodes have their own entries).
    """

    states: int
    transitions_per_pass: int
    lambda_invocations: int


@dataclass(frozen=True)
class CompiledWorkflow:
    asl: dict[str, Any]
    substitutions: list[str]
    stats: dict[str, NodeStats]


class _Compiler:
    def __init__(self, spec: WorkflowSpec, mode: Mode, arns: GovernanceArns) -> None:
        self.spec, self.arns = spec, arns
        self.explicit = mode == "explicit"
        self.loops = sorted(_bounded_choices(spec.nodes))
        self.stats: dict[str, NodeStats] = {}
        self.owners: dict[str, str] = {}
        self.problems: list[str] = []

    def entry(self, name: str, node: Node) -> str:
        """The first state of a node: where edges into it go."""
        prefix = asl.pascal(name)
        if self.explicit and isinstance(node, ModelNode | ToolNode):
            return f"{prefix}CheckPolicy"
        if isinstance(node, AgentNode):
            return f"{prefix}Start"
        if isinstance(node, ChoiceNode) and node.max_iterations:
            return f"{prefix}Count"
        return prefix

    def step_id(self, scope: Scope, name: str, *counters: str) -> str:
        loops = ("States.JsonToString($.loops)",) if self.loops else ()
        return asl.step_id(scope.step_scope, name, *counters, *loops)

    def compile(self) -> dict[str, Any]:
        body = self.branch(
            Branch(start=self.spec.start, nodes=self.spec.nodes),
            Scope("", "$$.Execution.Id", {"Next": "ReleaseLease"}),
        )
        start = body["StartAt"]
        prologue = {"AcquireLease": acquire_lease(self.arns, next_state=start)}
        start = "AcquireLease"
        if self.loops:
            counters = {name: {"count": 0} for name in self.loops}
            prologue["StartRun"] = {
                "Type": "Pass",
                "Result": counters,
                "ResultPath": "$.loops",
                "Next": start,
            }
            start = "StartRun"
        states = {**dict(reversed(prologue.items())), **body["States"]}
        run_states = [name for name in states if self.owners.get(name) == RUN] + list(prologue)
        # A pass enters the prologue and ReleaseLease; the lease's two Lambda calls.
        self.stats[RUN] = NodeStats(len(run_states), len(prologue) + 1, 2)
        mode = "explicit" if self.explicit else "fused"
        return {
            "Comment": f"{self.spec.name} v{self.spec.version}, {mode} governance (aob.workflows compiler)",
            "StartAt": start,
            "States": states,
        }

    def branch(self, branch: Branch, scope: Scope) -> dict[str, Any]:
        """StartAt and States of a scope: its nodes, then its failure path."""
        states: dict[str, State] = {}
        for name, node in branch.nodes.items():
            piece = self.node(name, node, branch, scope)
            # A parallel or map node owns its own state; its branches' nodes own theirs.
            nested = isinstance(node, ParallelNode | MapNode)
            own = list(piece.states) if nested else asl.state_names(piece.states)
            self.claim(f"{scope.where}nodes.{name}", own)
            states.update(piece.states)
            lambdas = sum(asl.is_lambda(piece.states[state]) for state in piece.path)
            self.stats[name] = NodeStats(len(own), len(piece.path), lambdas)
        terminals = self.terminals(scope)
        self.claim(RUN, list(terminals))
        start = self.entry(branch.start, branch.nodes[branch.start])
        return {"StartAt": start, "States": prune(start, {**states, **terminals})}

    def claim(self, owner: str, names: list[str]) -> None:
        for name in names:
            other = self.owners.setdefault(name, owner)
            if other != owner:
                node, rival = (other, owner) if owner == RUN else (owner, other)
                rival = "the workflow's own state" if rival == RUN else f"a state of {rival}"
                self.problems.append(f"{node}: its state {name!r} clashes with {rival}; rename the node")

    def terminals(self, scope: Scope) -> dict[str, State]:
        denial = {
            "Type": "Pass",
            "Parameters": {"Error": "PolicyDenied", "Cause.$": "States.JsonToString($.denied)"},
            "ResultPath": "$.error",
            "Next": scope.failure,
        }
        if scope.key:  # a branch fails; its parallel/map state's Catch takes the run to RecordFailure
            fail = {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
            return {scope.denial: denial, scope.failure: fail}
        record = {
            "Type": "Pass",
            "Parameters": {"error.$": "$.error.Error", "cause.$": "$.error.Cause"},
            "ResultPath": "$.failure",
        }
        failed = {"Type": "Fail", "ErrorPath": "$.failure.error", "CausePath": "$.failure.cause"}
        release_failed = [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.governance.release_error", "Next": "Failed"}
        ]
        return {
            scope.denial: denial,
            "RecordFailure": {**record, "Next": "ReleaseLeaseAfterFailure"},
            "ReleaseLeaseAfterFailure": release_lease(self.arns, Next="Failed", Catch=release_failed),
            "Failed": failed,
            "ReleaseLease": release_lease(self.arns, End=True),
        }

    def exit(self, name: str, node: Any, branch: Branch, scope: Scope) -> tuple[dict[str, Any], Piece]:
        """The transition out of a node, and the states of its edge's policy check (if any)."""
        target = {"Next": self.entry(node.next, branch.nodes[node.next])} if node.next else scope.end
        if node.policy is None:
            return target, Piece({}, [])
        prefix = asl.pascal(name)
        check, allowed = f"{prefix}CheckEdgePolicy", f"{prefix}EdgeAllowed"
        states = asl.edge_policy(prefix, node.policy.model_dump(mode="json"), self.arns, scope.denial)
        if "End" in target:
            states[f"{prefix}Finish"] = {"Type": "Succeed"}
            target = {"Next": f"{prefix}Finish"}
        states[allowed]["Choices"][0]["Next"] = target["Next"]
        return {"Next": check}, Piece(states, [check, allowed])

    def node(self, name: str, node: Node, branch: Branch, scope: Scope) -> Piece:
        prefix, at = asl.pascal(name), f"$.{name}"
        if isinstance(node, ChoiceNode):
            return self.choice(name, node, branch, scope)
        if isinstance(node, SucceedNode):
            state = {"Type": "Pass", **scope.end} if scope.end.get("Next") else {"Type": "Succeed"}
            return Piece({prefix: state}, [prefix])
        if isinstance(node, FailNode):
            error = {"Error": node.error, "Cause": node.cause}
            state = {"Type": "Pass", "Parameters": error, "ResultPath": "$.error", "Next": scope.failure}
            return Piece({prefix: state}, [prefix])
        exit, edge = self.exit(name, node, branch, scope)
        if isinstance(node, ModelNode):
            call = asl.model_call(node, self.step_id(scope, name), at, scope.failure)
            action = {"kind": "model", "tier": node.tier}
            piece = governed(
                self.explicit, self.arns, prefix, name, "model", call, action, node.max_tokens, exit, scope
            )
        elif isinstance(node, ToolNode):
            call, action = asl.tool_call(node, self.step_id(scope, name), at, scope.failure)
            piece = governed(self.explicit, self.arns, prefix, name, "tool", call, action, 0, exit, scope)
        elif isinstance(node, AgentNode):
            piece = agent_states(self, name, node, scope, exit)
        elif isinstance(node, ApprovalNode):
            reject = (
                self.entry(node.on_reject, branch.nodes[node.on_reject]) if node.on_reject else scope.failure
            )
            states = asl.approval(name, node, self.step_id(scope, name), reject, scope.failure)
            piece = Piece({**states, prefix: {**states[prefix], **exit}}, [prefix])
        elif isinstance(node, TransformNode):
            state = {"Type": "Pass", "Parameters": node.parameters, "ResultPath": node.result_path or at}
            piece = Piece({prefix: {**state, **exit}}, [prefix])
        elif isinstance(node, ParallelNode):
            branches = [
                self.branch(
                    sub,
                    Scope(
                        f"{prefix}Branch{index}",
                        scope.step_scope,
                        {"End": True},
                        scope.nested(name, f"branches.{index}"),
                    ),
                )
                for index, sub in enumerate(node.branches)
            ]
            state = {
                "Type": "Parallel",
                "Branches": branches,
                "ResultPath": at,
                "Catch": asl.catch_all(scope.failure),
            }
            piece = Piece({prefix: {**state, **exit}}, [prefix])
        else:
            piece = self.map(name, node, scope, exit)
        return Piece({**piece.states, **edge.states}, piece.path + edge.path)

    def choice(self, name: str, node: ChoiceNode, branch: Branch, scope: Scope) -> Piece:
        prefix = asl.pascal(name)
        rules = [
            asl.choice_rule(rule, self.entry(rule.next, branch.nodes[rule.next])) for rule in node.choices
        ]
        default = self.entry(node.default, branch.nodes[node.default])
        if not node.max_iterations:
            return Piece({prefix: {"Type": "Choice", "Choices": rules, "Default": default}}, [prefix])
        states = asl.bounded_choice(prefix, name, node.max_iterations, rules, default, scope.failure)
        return Piece(states, [f"{prefix}Count", prefix])

    def map(self, name: str, node: MapNode, scope: Scope, exit: dict[str, Any]) -> Piece:
        prefix = asl.pascal(name)
        inner = Scope(f"{prefix}Item", "$.step_scope", {"End": True}, scope.nested(name, "iterator"))
        selector = {
            **asl.CONTEXT,
            **ITEM_LEASE,
            "item.$": "$$.Map.Item.Value",
            "step_scope.$": asl.format_call("{}/{}/{}", [scope.step_scope, f"'{name}'", "$$.Map.Item.Index"]),
            **({"loops.$": "$.loops"} if self.loops else {}),
        }
        state = {
            "Type": "Map",
            "ItemsPath": node.items_path,
            "ItemSelector": selector,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **self.branch(node.iterator, inner)},
            "MaxConcurrency": node.max_concurrency,
            "ResultPath": f"$.{name}",
            "Catch": asl.catch_all(scope.failure),
        }
        return Piece({prefix: {**state, **exit}}, [prefix])


def _bounded_choices(nodes: dict[str, Node]) -> set[str]:
    found = {name for name, node in nodes.items() if isinstance(node, ChoiceNode) and node.max_iterations}
    for node in nodes.values():
        branches = (
            node.branches
            if isinstance(node, ParallelNode)
            else [node.iterator]
            if isinstance(node, MapNode)
            else []
        )
        for branch in branches:
            found |= _bounded_choices(branch.nodes)
    return found


def compile_spec(spec: WorkflowSpec, mode: Mode, arns: GovernanceArns | None = None) -> CompiledWorkflow:
    """The spec's state machine; SpecInvalid (and no ASL) when the spec has any problem."""
    validate(spec)
    compiler = _Compiler(spec, mode, arns or GovernanceArns())
    definition = compiler.compile()
    if compiler.problems:
        raise SpecInvalid(compiler.problems)
    names = sorted(set(re.findall(r"\$\{(\w+)\}", json.dumps(definition))))
    return CompiledWorkflow(definition, names, compiler.stats)


def compiled_path(spec_path: Path, mode: Mode) -> Path:
    return spec_path.with_name(f"compiled.{mode}.asl.json")


def main(argv: list[str]) -> None:
    spec_path = Path(argv[0])
    spec = load_spec(spec_path)
    for mode in ("explicit", "fused"):
        definition = compile_spec(spec, mode).asl
        compiled_path(spec_path, mode).write_text(json.dumps(definition, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
