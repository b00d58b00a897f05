-- Core: workspaces, tokens, reports and their data by category, quarantine.
-- No column here holds a name or identifier sent by a workspace: the record's
-- own id (_id) is kept only as an HMAC (record_key) for idempotency.

CREATE TABLE collector_secrets (
    name text PRIMARY KEY,
    secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The plan names; limits, billing model and opt-out policy are added by the
-- plan catalogue migration.
CREATE TABLE plans (
    plan text PRIMARY KEY CHECK (plan ~ '^[a-z][a-z0-9_-]{0,39}$')
);
INSERT INTO plans (plan) VALUES ('community'), ('starter'), ('pro'), ('enterprise');

CREATE TABLE workspaces (
    workspace_id uuid PRIMARY KEY,
    plan text NOT NULL REFERENCES plans (plan),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Bearer tokens are stored as SHA-256 of the token (the token itself is
-- shown once). kind: 'workspace' or 'operator'.
CREATE TABLE tokens (
    token_hash bytea PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('workspace', 'operator')),
    workspace_id uuid REFERENCES workspaces (workspace_id),
    roles text[] NOT NULL DEFAULT '{}',
    label text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK ((kind = 'workspace') = (workspace_id IS NOT NULL))
);
CREATE INDEX tokens_workspace ON tokens (workspace_id) WHERE workspace_id IS NOT NULL;

CREATE TABLE reports (
    report_id uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (workspace_id),
    record_key bytea NOT NULL,          -- HMAC-SHA256(secret 'record_key', record _id)
    created_at timestamptz NOT NULL,    -- the record's createdAt
    received_at timestamptz NOT NULL DEFAULT now(),
    rc_version text,
    catalogue_version text NOT NULL,
    receipt text NOT NULL,              -- the statsToken answered, same on every resend
    UNIQUE (workspace_id, record_key)
);
CREATE INDEX reports_workspace_created ON reports (workspace_id, created_at);

-- The kept fields of a report: one row per report, one column per data
-- category of the field catalogue, each a flat {dotted path: value} object.
-- NULL: the category was not kept (the workspace opted out of it, or the
-- opt-out forgot it later); {}: kept, but the record had none of its fields.
-- json, not jsonb: stored as sent (compact, written by the collector), never
-- parsed into jsonb's binary form on the way in; nothing queries inside it.
-- The large optional categories (product_analytics is ~11 KB a report) are
-- compressed out of line (TOAST); lz4 costs a fraction of the default pglz's
-- CPU, so it is used where the server has it (the Debian/PGDG builds do; the
-- embedded server is built without it and keeps pglz).
CREATE TABLE report_data (
    report_id uuid PRIMARY KEY REFERENCES reports (report_id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL,
    billing json,
    compliance json,
    operational json,
    product_analytics json
);
CREATE INDEX report_data_workspace ON report_data (workspace_id);
DO $$
BEGIN
    ALTER TABLE report_data
        ALTER COLUMN billing SET COMPRESSION lz4,
        ALTER COLUMN compliance SET COMPRESSION lz4,
        ALTER COLUMN operational SET COMPRESSION lz4,
        ALTER COLUMN product_analytics SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'no lz4 in this PostgreSQL build: report_data keeps the default TOAST compression';
END
$$;

-- Refused reports: what was wrong and where, never a value.
CREATE TABLE quarantine (
    quarantine_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid REFERENCES workspaces (workspace_id),
    received_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL,
    catalogue_version text NOT NULL,
    body_sha256 bytea,
    body_size integer,
    violations jsonb NOT NULL DEFAULT '[]'  -- [{path, reason}]
);
CREATE INDEX quarantine_received ON quarantine (received_at DESC);
