-- 0006_step_records: one DecisionRecord per step, attempt and outcome; usage settles before the
-- step's row exists.
--
-- The Recorder returns the stored record when a retried step records again (it looks it up under
-- the run's lock); this index makes that lookup cheap and a second record impossible.
CREATE UNIQUE INDEX decision_records_one_per_attempt
    ON decision_records (tenant_id, run_id, step_id, ((record->>'attempt')::integer), outcome)
    WHERE step_id IS NOT NULL;

-- A step's row is written with its first DecisionRecord (the Recorder upserts it), after the
-- gateway has settled the step's usage: the ledger keeps the step id without requiring its row
-- (as policy_decisions does). The run must still exist.
ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_tenant_id_step_id_fkey;
