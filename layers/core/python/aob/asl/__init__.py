"""ASL building blocks: the states of a governed step, shared by hand-written flows and the compiler."""

from aob.asl._governed import (
    GovernanceArns,
    StepRecord,
    acquire_lease,
    governed_call,
    lambda_task,
    record_step,
    release_lease,
    step_governance,
)

__all__ = [
    "GovernanceArns",
    "StepRecord",
    "acquire_lease",
    "governed_call",
    "lambda_task",
    "record_step",
    "release_lease",
    "step_governance",
]
