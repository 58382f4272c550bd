"""Policy checks: signed Rego bundles evaluated in-process, with shadow evaluation of a candidate.

`get_policy_service().check(PolicyInput)` is what the policy_check function calls; the pieces
(bundle signing and verification, the PolicyEngine port and its Rego adapter, the bundle store,
the decision recorder) are exported for the CLI, tests and other services.
"""

from __future__ import annotations

from aob.policy._bundle import PolicyBundle, policy_files, read_bundle, read_bundle_file, sign_bundle
from aob.policy._engine import ENTRYPOINT, Evaluation, PolicyEngine, RegoPolicyEngine
from aob.policy._governance import StepGovernance, governing_decision
from aob.policy._keys import TrustedKeys, load_private_key, load_public_key, public_key_b64, trusted_keys
from aob.policy._models import (
    ApproveAction,
    EgressAction,
    ModelAction,
    PolicyDecision,
    PolicyInput,
    PolicyVerdict,
    Principal,
    ToolAction,
)
from aob.policy._record import DecisionReader, DecisionRecorder, PostgresDecisionRecorder, RecordedDecision
from aob.policy._runtime import PolicySettings, get_policy_service
from aob.policy._service import PolicyService, TenantInfo, TenantLookup, rego_input
from aob.policy._store import PolicyBundleStore

__all__ = [
    "ENTRYPOINT",
    "ApproveAction",
    "DecisionReader",
    "DecisionRecorder",
    "EgressAction",
    "Evaluation",
    "ModelAction",
    "PolicyBundle",
    "PolicyBundleStore",
    "PolicyDecision",
    "PolicyEngine",
    "PolicyInput",
    "PolicyService",
    "PolicySettings",
    "PolicyVerdict",
    "PostgresDecisionRecorder",
    "Principal",
    "RecordedDecision",
    "RegoPolicyEngine",
    "StepGovernance",
    "TenantInfo",
    "TenantLookup",
    "ToolAction",
    "TrustedKeys",
    "get_policy_service",
    "governing_decision",
    "load_private_key",
    "load_public_key",
    "policy_files",
    "public_key_b64",
    "read_bundle",
    "read_bundle_file",
    "rego_input",
    "sign_bundle",
    "trusted_keys",
]
