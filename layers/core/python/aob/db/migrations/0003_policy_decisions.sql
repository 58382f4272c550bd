-- 0003_policy_decisions: every policy decision, enforced ('active') or dry-run ('shadow').
--
-- A check records the active bundle's decision and, while a candidate bundle is evaluated beside
-- it, the candidate's as a 'shadow' row pointing at the decision it shadows. Rows are history:
-- append-only, like decision_records. The input is kept as a sha256 of the canonical Rego input
-- plus a summary without argument values (they may carry card numbers or other personal data).

CREATE TABLE policy_decisions (
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id),
    decision_id    uuid NOT NULL,
    role           text NOT NULL CHECK (role IN ('active', 'shadow')),
    shadow_of      uuid,
    bundle_digest  text NOT NULL,
    allow          boolean NOT NULL,
    reasons        jsonb NOT NULL DEFAULT '[]',
    obligations    jsonb NOT NULL DEFAULT '{}',
    input_sha256   text NOT NULL,
    input_summary  jsonb NOT NULL,
    -- No foreign keys to runs and steps: checks also run outside runs (API, CLI dry runs) and
    -- before a run's row commits.
    run_id         uuid,
    step_id        uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, decision_id),
    CHECK ((role = 'shadow') = (shadow_of IS NOT NULL)),
    FOREIGN KEY (tenant_id, shadow_of) REFERENCES policy_decisions (tenant_id, decision_id)
);
CREATE INDEX policy_decisions_by_time ON policy_decisions (tenant_id, created_at DESC);
CREATE INDEX policy_decisions_by_run ON policy_decisions (tenant_id, run_id, created_at)
    WHERE run_id IS NOT NULL;
CREATE TRIGGER policy_decisions_append_only BEFORE UPDATE OR DELETE ON policy_decisions
    FOR EACH ROW EXECUTE FUNCTION aob_forbid_change();
