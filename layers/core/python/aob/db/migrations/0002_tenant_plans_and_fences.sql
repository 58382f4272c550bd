-- 0002_tenant_plans_and_fences: each tenant's plan (its default quotas), the estimate and the
-- settlement time of each usage-ledger entry, and the fencing tokens of session writers.

ALTER TABLE tenants
    ADD COLUMN plan text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise'));

-- occurred_at is the reservation's time (so the ledger's days match the Redis budgets that
-- were charged); settled_at is when the actual usage was reported.
ALTER TABLE usage_ledger
    ADD COLUMN estimate_tokens bigint NOT NULL DEFAULT 0 CHECK (estimate_tokens >= 0),
    ADD COLUMN settled_at timestamptz NOT NULL DEFAULT now();

-- The highest fencing token that has written for each session. A writer upserts its token in
-- its own transaction; the row lock orders concurrent writers, and a token lower than the
-- stored one updates nothing, so the write is refused (aob.lease.fencing).
CREATE TABLE session_fences (
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id),
    session_id     text NOT NULL,
    fencing_token  bigint NOT NULL CHECK (fencing_token > 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id)
);
