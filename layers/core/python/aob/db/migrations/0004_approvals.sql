-- 0004_approvals: human approvals of workflow steps (an `approval` node waiting on a task token).
--
-- One approval per (tenant, run, step): the approval function, retried by Step Functions, finds
-- the row it wrote before. task_token answers Step Functions (SendTaskSuccess/Failure): it is a
-- bearer credential for the waiting step, so it is never logged nor returned by the service.

CREATE TABLE approvals (
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    approval_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    run_id           uuid NOT NULL,
    -- No foreign key to steps: the state machine derives step ids and may not record the step.
    step_id          uuid NOT NULL,
    node             text NOT NULL,
    approver_roles   text[] NOT NULL CHECK (cardinality(approver_roles) > 0),
    reason           text,
    task_token       text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    -- The subject of the run's principal: separation of duties keeps them from deciding.
    requested_by     text NOT NULL,
    decided_by       text,
    decided_roles    text[],
    decision_reason  text,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    -- When the status stopped being pending (for 'expired', when that was noticed).
    decided_at       timestamptz,
    PRIMARY KEY (tenant_id, approval_id),
    -- Also the index of a run's approvals.
    UNIQUE (tenant_id, run_id, step_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id),
    CHECK (expires_at > requested_at),
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK ((status IN ('approved', 'rejected')) = (decided_by IS NOT NULL))
);
