"""The explicit governed step as Amazon States Language states.

    <Step>CheckPolicy -> <Step>IsAllowed? -no-> <Step>Denied [-> <Step>RecordDenied] -> on_denied
                                         -yes-> <Step>ReserveTokens -> <Step> (the call)
                                                -> <Step>SettleTokens [-> <Step>Record] -> next

With `record` (workflows compiled by aob.workflows), the step's DecisionRecord is written by the
step recorder function after the settlement, and a denial's before the run leaves the step.

Lease acquisition and release wrap a whole run (one lease per session) and are separate states.
Every state keeps its input (`ResultPath`) and puts governance results under `$.governance`, so
later states and the run's output can show the decision, the reservation and the lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

State = dict[str, Any]

# Lambda's own transient failures: retried by the state machine, never by the function.
LAMBDA_TRANSIENT = ["Lambda.ServiceException", "Lambda.TooManyRequestsException", "Lambda.SdkClientException"]
_RETRY_TRANSIENT = {
    "ErrorEquals": LAMBDA_TRANSIENT,
    "IntervalSeconds": 1,
    "MaxAttempts": 3,
    "BackoffRate": 2.0,
}


@dataclass(frozen=True)
class GovernanceArns:
    """Function ARNs (or `${...}` substitution names) of the governance functions."""

    session_lease: str = "${SessionLeaseFunctionArn}"
    policy_check: str = "${PolicyCheckFunctionArn}"
    metering: str = "${MeteringFunctionArn}"
    step_recorder: str = "${StepRecorderFunctionArn}"


@dataclass(frozen=True)
class StepRecord:
    """What a governed step's Record states send besides the outcome (see aob.recorder.RecordStepRequest).

    `fields` are payload entries: `step_id.$`, `node` ({name, kind}) and `call` (what the gateway
    was asked); a failing record goes to `on_failure` with the error at `$.error`.
    """

    fields: dict[str, Any]
    on_failure: str


def lambda_task(function_arn: str, payload: dict[str, Any], result_path: str, **extra: Any) -> State:
    """A `lambda:invoke` task whose result (the function's return value) lands at result_path."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload": payload},
        "ResultSelector": {"value.$": "$.Payload"},
        "ResultPath": result_path,
        "Retry": [_RETRY_TRANSIENT],
        **extra,
    }


def acquire_lease(arns: GovernanceArns, *, next_state: str, ttl_s: int = 300) -> State:
    return lambda_task(
        arns.session_lease,
        {
            "action": "acquire",
            "tenant_id.$": "$.tenant_id",
            "session_id.$": "$.session_id",
            "holder.$": "$$.Execution.Id",
            "ttl_s": ttl_s,
        },
        "$.governance.lease",
        Next=next_state,
    )


def release_lease(arns: GovernanceArns, **transition: Any) -> State:
    return lambda_task(
        arns.session_lease,
        {
            "action": "release",
            "tenant_id.$": "$.tenant_id",
            "session_id.$": "$.session_id",
            "holder.$": "$$.Execution.Id",
            "fencing_token.$": "$.governance.lease.value.fencing_token",
        },
        "$.governance.released",
        **transition,
    )


def record_step(
    arns: GovernanceArns,
    step: str,
    record: StepRecord,
    outcome: str,
    extra: dict[str, Any],
    **transition: Any,
) -> State:
    """A Record state: the step's DecisionRecord, written under the run's lease (a retry adds none)."""
    payload = {
        "tenant_id.$": "$.tenant_id",
        "session_id.$": "$.session_id",
        "fencing_token.$": "$.governance.lease.value.fencing_token",
        "run_id.$": "$.run_id",
        **record.fields,
        "outcome": outcome,
        "policy.$": f"$.governance.{step}.policy.value",
        **extra,
    }
    return lambda_task(
        arns.step_recorder,
        payload,
        f"$.governance.{step}.record",
        Retry=[{**_RETRY_TRANSIENT, "ErrorEquals": ["ServiceUnavailable", *LAMBDA_TRANSIENT]}],
        Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": record.on_failure}],
        **transition,
    )


def step_governance(step: str) -> dict[str, str]:
    """Explicit mode's `governance` for the gateway call of `step`: its CheckPolicy decision and
    ReserveTokens reservation, so the gateway verifies and uses them instead of governing again."""
    return {
        "decision_id.$": f"$.governance.{step}.policy.value.decision_id",
        "reservation_id.$": f"$.governance.{step}.reservation.value.reservation_id",
    }


def governed_call(
    step: str,
    call: State,
    arns: GovernanceArns,
    *,
    capability: str,
    action_path: str,
    estimate_path: str,
    usage_path: str,
    next_state: str,
    on_denied: str,
    on_quota_exceeded: str,
    record: StepRecord | None = None,
) -> dict[str, State]:
    """The states of one governed call named `step`; `call` is its Task state (Next is set here).

    usage_path points at `{"input_tokens", "output_tokens"}` in the state after the call.
    A deny is a branch (`<step>Denied`, reasons in `$.denied`); QuotaExceeded is caught into
    `$.error` and routed to on_quota_exceeded. With `record`, `<step>Record` follows the
    settlement (the call's result at `call["ResultPath"].value`) and `<step>RecordDenied` the deny.
    """
    decision = f"$.governance.{step}.policy.value"
    reservation = f"$.governance.{step}.reservation.value"
    after_settle, after_denied = next_state, on_denied
    recorded: dict[str, State] = {}
    if record:
        after_settle, after_denied = f"{step}Record", f"{step}RecordDenied"
        result = {"result.$": f"{call['ResultPath']}.value"}
        recorded = {
            f"{step}Record": record_step(arns, step, record, "succeeded", result, Next=next_state),
            f"{step}RecordDenied": record_step(arns, step, record, "denied", {}, Next=on_denied),
        }
    states = {
        f"{step}CheckPolicy": lambda_task(
            arns.policy_check,
            {
                "tenant_id.$": "$.tenant_id",
                "principal.$": "$.principal",
                "action.$": action_path,
            },
            f"$.governance.{step}.policy",
            Next=f"{step}IsAllowed",
        ),
        f"{step}IsAllowed": {
            "Type": "Choice",
            "Choices": [
                {"Variable": f"{decision}.allow", "BooleanEquals": True, "Next": f"{step}ReserveTokens"}
            ],
            "Default": f"{step}Denied",
        },
        f"{step}Denied": {
            "Type": "Pass",
            "Parameters": {
                "step": step,
                "reasons.$": f"{decision}.reasons",
                "decision_id.$": f"{decision}.decision_id",
                "bundle_digest.$": f"{decision}.bundle_digest",
            },
            "ResultPath": "$.denied",
            "Next": after_denied,
        },
        f"{step}ReserveTokens": lambda_task(
            arns.metering,
            {
                "action": "reserve",
                "tenant_id.$": "$.tenant_id",
                "capability": capability,
                "estimate_tokens.$": estimate_path,
            },
            f"$.governance.{step}.reservation",
            Catch=[{"ErrorEquals": ["QuotaExceeded"], "ResultPath": "$.error", "Next": on_quota_exceeded}],
            Next=step,
        ),
        step: {**call, "Next": f"{step}SettleTokens"},
        f"{step}SettleTokens": lambda_task(
            arns.metering,
            {
                "action": "settle",
                "tenant_id.$": "$.tenant_id",
                "reservation_id.$": f"{reservation}.reservation_id",
                "input_tokens.$": f"{usage_path}.input_tokens",
                "output_tokens.$": f"{usage_path}.output_tokens",
            },
            f"$.governance.{step}.settlement",
            Next=after_settle,
        ),
    }
    return {**states, **recorded}
