-- 0001_initial: tenants, workflow versions, runs and steps, hash-chained decision records,
-- the append-only event store, the outbox and the usage ledger.
--
-- Every tenant-owned table carries tenant_id (NOT NULL, references tenants) and its keys and
-- indexes start with it, so each query is tenant-scoped. References between tenant-owned rows
-- include tenant_id as well, so a row can never point at another tenant's row.

-- Raised by triggers on tables whose rows are history, not state (events, decision records).
CREATE FUNCTION aob_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TABLE tenants (
    -- A slug, not a uuid: it comes from the OIDC token and names S3 partitions and log fields.
    tenant_id   text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per published version of a workflow spec; versions are immutable once published.
CREATE TABLE workflows (
    tenant_id          text NOT NULL REFERENCES tenants (tenant_id),
    workflow_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    name               text NOT NULL,
    version            integer NOT NULL CHECK (version > 0),
    spec               jsonb NOT NULL,
    spec_sha256        text NOT NULL,
    state_machine_arn  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workflow_id),
    UNIQUE (tenant_id, name, version)
);

CREATE TABLE runs (
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    run_id           uuid NOT NULL DEFAULT gen_random_uuid(),
    workflow_id      uuid NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    execution_arn    text,
    -- Set by callers that may retry a start (API clients, SQS triggers): one run per key.
    idempotency_key  text,
    input            jsonb NOT NULL DEFAULT '{}',
    output           jsonb,
    error            jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (tenant_id, run_id),
    FOREIGN KEY (tenant_id, workflow_id) REFERENCES workflows (tenant_id, workflow_id),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX runs_by_status ON runs (tenant_id, status, created_at DESC);
CREATE INDEX runs_by_workflow ON runs (tenant_id, workflow_id, created_at DESC);

CREATE TABLE steps (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    step_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    run_id       uuid NOT NULL,
    state_name   text NOT NULL,
    kind         text NOT NULL,
    attempt      integer NOT NULL DEFAULT 1 CHECK (attempt > 0),
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'waiting', 'succeeded', 'failed', 'denied', 'skipped')),
    input        jsonb,
    output       jsonb,
    error        jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (tenant_id, step_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id)
);
CREATE INDEX steps_by_run ON steps (tenant_id, run_id, started_at);

-- What the governance decided at each step. Records form one hash chain per run: seq orders
-- them, hash covers the record and prev_hash, so editing or dropping one breaks the chain.
CREATE TABLE decision_records (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    record_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    run_id       uuid NOT NULL,
    seq          bigint NOT NULL CHECK (seq > 0),
    step_id      uuid,
    kind         text NOT NULL,
    outcome      text NOT NULL,
    record       jsonb NOT NULL,
    prev_hash    text,
    hash         text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, record_id),
    UNIQUE (tenant_id, run_id, seq),
    CHECK ((seq = 1) = (prev_hash IS NULL)),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id),
    FOREIGN KEY (tenant_id, step_id) REFERENCES steps (tenant_id, step_id)
);
CREATE TRIGGER decision_records_append_only BEFORE UPDATE OR DELETE ON decision_records
    FOR EACH ROW EXECUTE FUNCTION aob_forbid_change();

-- The event store: streams of events, each with a gap-free per-stream seq that writers set to
-- (their last seen seq + 1), so a concurrent append to the same stream fails on the key.
CREATE TABLE events (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    stream_id    text NOT NULL,
    seq          bigint NOT NULL CHECK (seq > 0),
    event_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    -- Assigned at insert, not at commit: readers following it must allow for late, lower values.
    position     bigint GENERATED ALWAYS AS IDENTITY,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stream_id, seq),
    UNIQUE (tenant_id, event_id)
);
CREATE INDEX events_by_position ON events (tenant_id, position);
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION aob_forbid_change();

-- Messages written in the same transaction as the change they announce; the relay publishes
-- unpublished rows in outbox_id order and sets published_at.
CREATE TABLE outbox (
    -- The relay works across tenants, so its key and watermark are outbox_id alone.
    outbox_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    -- Stable across relay retries: SQS deduplication and consumers' idempotency key on it.
    message_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    destination   text NOT NULL,
    payload       jsonb NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    UNIQUE (tenant_id, message_id)
);
CREATE INDEX outbox_unpublished ON outbox (outbox_id) WHERE published_at IS NULL;
CREATE INDEX outbox_by_tenant ON outbox (tenant_id, created_at);

-- Settled usage: one row per settled reservation (the Redis budget reservation it closes), so a
-- retried settlement cannot count twice. usage_day makes daily and monthly roll-ups index-only.
CREATE TABLE usage_ledger (
    entry_id        bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    capability      text NOT NULL,
    reservation_id  text NOT NULL,
    run_id          uuid,
    step_id         uuid,
    model           text,
    input_tokens    bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens   bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    units           bigint NOT NULL DEFAULT 0 CHECK (units >= 0),
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    usage_day       date GENERATED ALWAYS AS ((occurred_at AT TIME ZONE 'UTC')::date) STORED,
    PRIMARY KEY (tenant_id, entry_id),
    UNIQUE (tenant_id, reservation_id),
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, run_id),
    FOREIGN KEY (tenant_id, step_id) REFERENCES steps (tenant_id, step_id)
);
CREATE INDEX usage_by_day ON usage_ledger (tenant_id, usage_day, capability)
    INCLUDE (input_tokens, output_tokens, units);
