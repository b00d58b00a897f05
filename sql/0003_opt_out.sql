-- Opt-out by plan (issue 5).
-- A workspace's switch (workspaces.opt_out) drops, from then on, the data
-- categories its plan (or its contract, when it overrides the plan) lets it
-- switch off; the contract categories billing and compliance never.

ALTER TABLE workspaces
    ADD COLUMN opt_out boolean NOT NULL DEFAULT false,
    ADD COLUMN opt_out_changed_at timestamptz;

-- NULL: the plan's policy applies; otherwise this contract's own list.
ALTER TABLE contracts
    ADD COLUMN opt_out_categories text[]
        CHECK (opt_out_categories <@ ARRAY['operational', 'product_analytics']);

-- Contract data can never be switched off, whatever a plan says.
ALTER TABLE plans
    ADD CONSTRAINT plans_opt_out_optional_only
        CHECK (opt_out_categories <@ ARRAY['operational', 'product_analytics']);

-- What each workspace may switch off (allowed) and what it does drop now.
CREATE VIEW workspace_opt_out AS
SELECT w.workspace_id,
       c.plan,
       coalesce(c.opt_out_categories, p.opt_out_categories) AS allowed,
       CASE WHEN c.opt_out_categories IS NULL THEN 'plan' ELSE 'contract' END AS policy_source,
       w.opt_out,
       w.opt_out_changed_at,
       CASE WHEN w.opt_out THEN coalesce(c.opt_out_categories, p.opt_out_categories)
            ELSE '{}'::text[] END AS dropped
FROM workspaces w
JOIN contracts c ON c.workspace_id = w.workspace_id
JOIN plans p ON p.plan = c.plan;

-- Who changed what about a workspace's data, and how many reports had data
-- forgotten by it (their category columns in report_data set to NULL):
-- never a value.
CREATE TABLE audit_log (
    audit_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,                -- 'workspace', 'operator:<token ref>', 'cli', 'system'
    workspace_id uuid REFERENCES workspaces (workspace_id),
    action text NOT NULL,               -- opt_out_set, opt_out_cleared, opt_out_ended, data_forgotten, policy_changed
    categories text[] NOT NULL DEFAULT '{}',
    reports_affected integer NOT NULL DEFAULT 0,
    reason text
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, at DESC);
CREATE INDEX audit_log_at ON audit_log (at DESC);

-- The ingest writer's opt-out read (called by write_batch, 0004): share-lock the
-- registry rows (in id order: no deadlock between lockers), THEN read the
-- policy in a later statement. In a VOLATILE function under READ COMMITTED
-- each statement takes a new snapshot, so the read sees any opt-out the lock
-- waited for.
-- Python caller: write_batch (collector.ingest.writer.ReportWriter).
CREATE FUNCTION opt_out_decisions(ws uuid[])
RETURNS TABLE (workspace_id uuid, dropped text[], plan text, policy_source text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM workspaces w WHERE w.workspace_id = ANY (ws) ORDER BY w.workspace_id FOR SHARE;
    RETURN QUERY
        SELECT o.workspace_id, o.dropped, o.plan, o.policy_source
        FROM workspace_opt_out o
        WHERE o.workspace_id = ANY (ws) AND o.opt_out;
END
$$;
