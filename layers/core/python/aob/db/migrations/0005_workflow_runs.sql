-- 0005_workflow_runs: a published workflow version remembers its governance mode (explicit or
-- fused), and one (tenant, workflow, spec, mode) is published once: publishing it again finds
-- the existing version instead of making a new one.
ALTER TABLE workflows
    ADD COLUMN mode text NOT NULL DEFAULT 'explicit' CHECK (mode IN ('explicit', 'fused'));
ALTER TABLE workflows
    ADD CONSTRAINT workflows_one_version_per_spec UNIQUE (tenant_id, name, spec_sha256, mode);
