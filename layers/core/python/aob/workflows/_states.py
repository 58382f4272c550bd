"""Small ASL pieces the compiler assembles: payloads of the gateway calls, choice rules, retries."""

from __future__ import annotations

from typing import Any

from aob.asl import GovernanceArns, lambda_task
from aob.asl._governed import LAMBDA_TRANSIENT, State
from aob.workflows import _tools
from aob.workflows.spec import AgentNode, ApprovalNode, Condition, ModelNode, ToolNode

# What each gateway raises when retrying later may pass (aob.errors); Lambda's own are retried too.
TRANSIENT = {
    "model": ["ModelUnavailable", "ServiceUnavailable"],
    "tool": ["ToolUnavailable", "ToolCallInProgress", "ServiceUnavailable"],
}
CAPABILITY = {"model": "model_gateway", "tool": "tool_gateway"}
GATEWAY_ARN = {"model": "${ModelGatewayFunctionArn}", "tool": "${ToolGatewayFunctionArn}"}
APPROVAL_ARN = "${ApprovalFunctionArn}"
NO_USAGE = {"input_tokens": 0, "output_tokens": 0}
CONTEXT = {"tenant_id.$": "$.tenant_id", "principal.$": "$.principal", "run_id.$": "$.run_id"}
MODEL_USAGE = {
    "input_tokens.$": "$.Payload.usage.prompt_tokens",
    "output_tokens.$": "$.Payload.usage.completion_tokens",
}


def pascal(name: str) -> str:
    """The state name prefix of a node: lookup_order -> LookupOrder."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def retry(kind: str) -> list[dict[str, Any]]:
    return [
        {"ErrorEquals": TRANSIENT[kind], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0},
        {"ErrorEquals": LAMBDA_TRANSIENT, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0},
    ]


def catch_all(target: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": target}]


def _literal(text: str) -> str:
    """Text as an intrinsic-function string literal (quotes, braces and backslashes escaped)."""
    for char in "\\'{}":
        text = text.replace(char, "\\" + char)
    return f"'{text}'"


def format_call(template: str, args: list[str]) -> str:
    """States.Format of a template whose `{}` are filled from args (JSONPaths or intrinsic calls)."""
    pieces = "{}".join(_literal(piece)[1:-1] for piece in template.split("{}"))
    return f"States.Format('{pieces}', {', '.join(args)})" if args else f"'{pieces}'"


def step_id(step_scope: str, name: str, *more: str) -> str:
    """A step id (32 hex digits, a UUID) stable across retries: a hash of the scope, node and counters."""
    parts = [step_scope, _literal(name), *more]
    holes = "/".join("{}" for _ in parts)
    return f"States.Hash(States.Format('{holes}', {', '.join(parts)}), 'MD5')"


def messages(node: ModelNode | AgentNode) -> list[dict[str, Any]]:
    """The system message (if any) and the user prompt, filled from the state."""
    found: list[dict[str, Any]] = [{"role": "system", "content": node.system}] if node.system else []
    if node.prompt_args:
        found.append({"role": "user", "content.$": format_call(node.prompt, node.prompt_args)})
    else:
        found.append({"role": "user", "content": node.prompt})
    return found


def model_payload(node: ModelNode | AgentNode, step: str, messages_field: dict[str, Any]) -> dict[str, Any]:
    """A ChatRequest for the model gateway, with the full definition of each tool it may propose."""
    payload = {
        "tenant_id.$": "$.tenant_id",
        "principal.$": "$.principal",
        "run_id.$": "$.run_id",
        "step_id.$": step,
        "tier": node.tier,
        **messages_field,
        "max_tokens": node.max_tokens,
    }
    if node.tools:
        payload["tools"] = _tools.definitions(node.tools)
    if node.tool_choice:
        payload["tool_choice"] = _tools.tool_choice(node.tool_choice)
    return payload


def tool_payload(step: str, tool: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """A ToolCall for the tool gateway; `tool` and `args` are ASL payload entries."""
    return {
        "tenant_id.$": "$.tenant_id",
        "principal.$": "$.principal",
        "run_id.$": "$.run_id",
        "step_id.$": step,
        **tool,
        **args,
    }


_OPERATORS = {
    "equals": "Equals",
    "greater_than": "GreaterThan",
    "greater_than_or_equal": "GreaterThanEquals",
    "less_than": "LessThan",
    "less_than_or_equal": "LessThanEquals",
}


def choice_rule(condition: Condition, next_state: str) -> State:
    variable, operator, value = condition.variable, condition.operator, condition.value
    if operator in ("is_present", "is_absent"):
        return {"Variable": variable, "IsPresent": operator == "is_present", "Next": next_state}
    if operator == "matches":
        return {"Variable": variable, "StringMatches": value, "Next": next_state}
    kind = "Boolean" if isinstance(value, bool) else "String" if isinstance(value, str) else "Numeric"
    test = {"Variable": variable, f"{kind}{_OPERATORS.get(operator, 'Equals')}": value}
    if operator == "not_equals":
        return {"Not": test, "Next": next_state}
    return {**test, "Next": next_state}


def is_lambda(state: State) -> bool:
    return str(state.get("Resource", "")).startswith("arn:aws:states:::lambda:invoke")


def state_names(states: dict[str, State]) -> list[str]:
    """The names of these states and of every state nested in their branches and iterators."""
    names = list(states)
    for state in states.values():
        for branch in [
            *state.get("Branches", []),
            *([state["ItemProcessor"]] if "ItemProcessor" in state else []),
        ]:
            names += state_names(branch["States"])
    return names


def model_call(node: ModelNode, step: str, result_path: str, failure: str) -> State:
    """The model gateway task; `text` is the answer, `usage` the tokens in the metering's terms."""
    return lambda_task(
        GATEWAY_ARN["model"],
        model_payload(node, step, {"messages": messages(node)}),
        result_path,
        ResultSelector={
            "value.$": "$.Payload",
            "text.$": "$.Payload.choices[0].message.content",
            "usage": MODEL_USAGE,
        },
        Retry=retry("model"),
        Catch=catch_all(failure),
    )


def _approval_id(node: ToolNode) -> dict[str, str]:
    """The approval that lets the call through (the approval node's result: SendTaskSuccess output)."""
    return {"approval_id.$": f"$.{node.approval}.approval_id"} if node.approval else {}


def tool_call(node: ToolNode, step: str, result_path: str, failure: str) -> tuple[State, dict[str, Any]]:
    """The tool gateway task and the policy action it is (the same tool and arguments)."""
    args = {"args": {**node.constants, **{f"{key}.$": path for key, path in node.args.items()}}}
    call = lambda_task(
        GATEWAY_ARN["tool"],
        tool_payload(step, {"tool": node.tool, **_approval_id(node)}, args),
        result_path,
        ResultSelector={"value.$": "$.Payload", "result.$": "$.Payload.result", "usage": NO_USAGE},
        Retry=retry("tool"),
        Catch=catch_all(failure),
    )
    return call, {"kind": "tool", "tool": node.tool, **args}


def approval(name: str, node: ApprovalNode, step: str, reject: str, failure: str) -> dict[str, State]:
    """The approval function gets a task token; the run waits for SendTaskSuccess/Failure or the timeout.

    No decision in time is a rejection (`<Node>TimedOut` says so at `$.error`): the run takes the
    reject path as for a person's `ApprovalRejected`, and never fails with `States.Timeout` itself
    (LocalStack ends a Fail state whose ErrorPath resolves to States.Timeout as States.Runtime).
    """
    prefix = pascal(name)
    payload = {
        **CONTEXT,
        "task_token.$": "$$.Task.Token",
        "step_id.$": step,
        # The run's lease: the approval's DecisionRecords are written under it, as every step's.
        "session_id.$": "$.session_id",
        "fencing_token.$": "$.governance.lease.value.fencing_token",
        "node": name,
        "approver_role": node.approver_role,
        "timeout_s": node.timeout_s,
        **({"reason": node.reason} if node.reason else {}),
    }
    timed_out = {"Error": "ApprovalRejected", "Cause": f"no decision within {node.timeout_s} s"}
    wait = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": APPROVAL_ARN, "Payload": payload},
        "TimeoutSeconds": node.timeout_s,
        "ResultPath": f"$.{name}",
        "Retry": [
            {"ErrorEquals": LAMBDA_TRANSIENT, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}
        ],
        "Catch": [
            {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": f"{prefix}TimedOut"},
            {"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.error", "Next": reject},
            *catch_all(failure),
        ],
    }
    return {
        prefix: wait,
        f"{prefix}TimedOut": {
            "Type": "Pass",
            "Parameters": timed_out,
            "ResultPath": "$.error",
            "Next": reject,
        },
    }


def bounded_choice(
    prefix: str, name: str, bound: int, rules: list[State], default: str, failure: str
) -> dict[str, State]:
    """A choice that counts its visits (`$.loops.<name>.count`) and fails the run past the bound."""
    counter = f"$.loops.{name}"
    exceeded = {
        "Error": "LoopBoundExceeded",
        "Cause": f"{name} was reached more than {bound} times (its max_iterations)",
    }
    return {
        f"{prefix}Count": {
            "Type": "Pass",
            "Parameters": {"count.$": f"States.MathAdd({counter}.count, 1)"},
            "ResultPath": counter,
            "Next": prefix,
        },
        prefix: {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"{counter}.count",
                    "NumericGreaterThan": bound,
                    "Next": f"{prefix}LoopBoundExceeded",
                },
                *rules,
            ],
            "Default": default,
        },
        f"{prefix}LoopBoundExceeded": {
            "Type": "Pass",
            "Parameters": exceeded,
            "ResultPath": "$.error",
            "Next": failure,
        },
    }


def edge_policy(prefix: str, action: dict[str, Any], arns: GovernanceArns, denial: str) -> dict[str, State]:
    """An edge's own policy check; the allowed rule's Next is set by the caller."""
    decision = f"$.governance.{prefix}Edge.policy.value"
    return {
        f"{prefix}CheckEdgePolicy": lambda_task(
            arns.policy_check,
            {"tenant_id.$": "$.tenant_id", "principal.$": "$.principal", "action": action},
            f"$.governance.{prefix}Edge.policy",
            Next=f"{prefix}EdgeAllowed",
        ),
        f"{prefix}EdgeAllowed": {
            "Type": "Choice",
            "Choices": [{"Variable": f"{decision}.allow", "BooleanEquals": True, "Next": ""}],
            "Default": f"{prefix}EdgeDenied",
        },
        f"{prefix}EdgeDenied": {
            "Type": "Pass",
            "Parameters": {
                "step": f"{prefix}Edge",
                "reasons.$": f"{decision}.reasons",
                "decision_id.$": f"{decision}.decision_id",
            },
            "ResultPath": "$.denied",
            "Next": denial,
        },
    }
