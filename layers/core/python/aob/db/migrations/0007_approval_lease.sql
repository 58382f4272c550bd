-- 0007_approval_lease: the session lease an approval was requested under.
--
-- The approval's DecisionRecords (its request, then its decision) are written under the run's
-- lease like every other step's, so deciding needs the lease the request held: its session and
-- fencing token. An approval requested before this migration has neither, and its decision
-- is not recorded.

ALTER TABLE approvals
    ADD COLUMN session_id     text,
    ADD COLUMN fencing_token  bigint CHECK (fencing_token > 0),
    ADD CONSTRAINT approvals_lease_whole CHECK ((session_id IS NULL) = (fencing_token IS NULL));
