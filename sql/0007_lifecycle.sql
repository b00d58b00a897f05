-- The data lifecycle (issue 14): retention by partition, sealed report data
-- (crypto-shredding), erasure, and the bookkeeping of all three.
--
-- 1. reports and report_data are partitioned by the record's createdAt, one
--    range partition per UTC month (reports_y2026m12, report_data_y2026m12)
--    plus a DEFAULT partition each for the records older than the first
--    month; expiry drops whole months. A unique constraint of a partitioned
--    table must hold the partition key, so the idempotency key moves to the
--    unpartitioned report_keys: (workspace, record key) -> the report, for
--    every stored record however old, whichever partition holds it. Its
--    rows leave with their reports.
-- 2. report_data holds the categories sealed (bytea: AES-256-GCM under a key
--    per workspace and category, data_keys; collector.accounts.datakeys).
--    Forgetting and erasure destroy keys; the table of keys is small and is
--    rewritten (VACUUM FULL) so a destroyed key leaves the data files.
--    Rows stored before this migration are kept as they were (plaintext
--    JSON bytes); they leave with retention.
-- 3. Erasure keeps one audit line: audit_log no longer references the
--    registry, and gets a counts column (rows removed, per table).

-- 1. Partitioned report tables --------------------------------------------

ALTER TABLE reports RENAME TO reports_0006;
ALTER TABLE report_data RENAME TO report_data_0006;

-- LIKE: every column of reports as it is after the earlier migrations (also
-- those added by them), with defaults, checks, storage and compression.
CREATE TABLE reports (
    LIKE reports_0006 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED
        INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS
) PARTITION BY RANGE (created_at);

-- Sealed categories: incompressible, so stored out of line without a
-- compression attempt (EXTERNAL); the writer compresses before sealing.
CREATE TABLE report_data (
    report_id uuid NOT NULL,
    workspace_id uuid NOT NULL,
    created_at timestamptz NOT NULL,    -- the report's createdAt: the partition key
    billing bytea,
    compliance bytea,
    operational bytea,
    product_analytics bytea
) PARTITION BY RANGE (created_at);
ALTER TABLE report_data
    ALTER COLUMN billing SET STORAGE EXTERNAL,
    ALTER COLUMN compliance SET STORAGE EXTERNAL,
    ALTER COLUMN operational SET STORAGE EXTERNAL,
    ALTER COLUMN product_analytics SET STORAGE EXTERNAL;
COMMENT ON TABLE report_data IS
    'kept categories of a report, each sealed by collector.accounts.datakeys (NULL: not kept or forgotten)';

CREATE TABLE reports_default PARTITION OF reports DEFAULT;
CREATE TABLE report_data_default PARTITION OF report_data DEFAULT;

-- The monthly partitions of reports and report_data from first_month to
-- last_month (inclusive; any day of a month names it), created when
-- missing. Rows a DEFAULT partition holds for a month created now are
-- moved into it. Serialised by a transaction advisory lock (several workers
-- start together). Returns the months created as 'YYYY-MM'.
-- Python caller: collector.lifecycle.retention.ensure_partitions (and this migration).
CREATE FUNCTION ensure_report_partitions(first_month date, last_month date) RETURNS text[]
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    m date := date_trunc('month', first_month)::date;
    lo timestamptz;
    hi timestamptz;
    t text;
    made text[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(7314004);
    WHILE m <= last_month LOOP
        IF to_regclass('reports_' || to_char(m, '"y"YYYY"m"MM')) IS NULL THEN
            lo := m::timestamptz;                       -- midnight UTC (timezone UTC in this function)
            hi := (m + interval '1 month')::timestamptz;
            FOREACH t IN ARRAY ARRAY['reports', 'report_data'] LOOP
                EXECUTE format('CREATE TEMP TABLE lifecycle_moved (LIKE %I) ON COMMIT DROP', t);
                EXECUTE format('WITH d AS (DELETE FROM %I WHERE created_at >= $1 AND created_at < $2 RETURNING *)'
                               ' INSERT INTO lifecycle_moved SELECT * FROM d', t || '_default') USING lo, hi;
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               t || '_' || to_char(m, '"y"YYYY"m"MM'), t, lo, hi);
                EXECUTE format('INSERT INTO %I SELECT * FROM lifecycle_moved', t);
                DROP TABLE lifecycle_moved;
            END LOOP;
            made := made || to_char(m, 'YYYY-MM');
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN made;
END
$$;

-- The monthly partitions wholly before raw_floor, detached from reports
-- and report_data (a catalogue change: the parent's ACCESS EXCLUSIVE lock is
-- held for milliseconds). The caller then drops the detached tables, each in
-- a transaction of its own: freeing their files (truncated at commit,
-- unlinked at the next checkpoint) takes time proportional to their size,
-- and that must not hold the parent's lock, which ingest waits for.
-- Returns the months detached as 'YYYY-MM'. The caller has already moved
-- retained_since('raw') to raw_floor (write_batch stores no record below it)
-- and deletes their report_keys afterwards.
-- Python caller: collector.lifecycle.retention.drop_expired.
CREATE FUNCTION detach_report_partitions(raw_floor timestamptz) RETURNS text[]
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    p record;
    detached text[] := '{}';
BEGIN
    FOR p IN
        SELECT c.relname, to_date(substr(c.relname, 10, 4) || substr(c.relname, 15, 2), 'YYYYMM') AS month
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'reports'::regclass AND c.relname ~ '^reports_y[0-9]{4}m[0-9]{2}$'
        ORDER BY 2
    LOOP
        EXIT WHEN (p.month + interval '1 month')::timestamptz > raw_floor;
        EXECUTE format('ALTER TABLE report_data DETACH PARTITION %I', 'report_data_' || substr(p.relname, 9));
        EXECUTE format('ALTER TABLE reports DETACH PARTITION %I', p.relname);
        detached := detached || to_char(p.month, 'YYYY-MM');
    END LOOP;
    RETURN detached;
END
$$;

-- Monthly tables left detached (by detach_report_partitions, not dropped
-- yet): reports_y2026m01, report_data_y2026m01, ...
-- Python caller: collector.lifecycle.retention.drop_expired.
CREATE FUNCTION detached_report_partitions() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
          AND c.relname ~ '^(reports|report_data)_y[0-9]{4}m[0-9]{2}$'
    ORDER BY 1
$$;

-- The oldest month with a partition (NULL: none).
-- Python caller: collector.lifecycle.retention (the raw floor).
CREATE FUNCTION oldest_report_partition() RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT min(to_date(substr(c.relname, 10, 4) || substr(c.relname, 15, 2), 'YYYYMM'))
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'reports'::regclass AND c.relname ~ '^reports_y[0-9]{4}m[0-9]{2}$'
$$;

-- Partitions for the months of the existing reports (at most 15 months
-- back: older ones go to the DEFAULT partition) up to two months ahead.
SELECT ensure_report_partitions(
    greatest(coalesce((SELECT min(created_at) FROM reports_0006), now()), now() - interval '15 months')::date,
    (now() + interval '2 months')::date);

INSERT INTO reports SELECT * FROM reports_0006;
INSERT INTO report_data (report_id, workspace_id, created_at, billing, compliance, operational, product_analytics)
SELECT d.report_id, d.workspace_id, r.created_at,
       convert_to(d.billing::text, 'UTF8'), convert_to(d.compliance::text, 'UTF8'),
       convert_to(d.operational::text, 'UTF8'), convert_to(d.product_analytics::text, 'UTF8')
FROM report_data_0006 d JOIN reports_0006 r ON r.report_id = d.report_id;

-- Idempotency across partitions: one row per stored record.
CREATE TABLE report_keys (
    workspace_id uuid NOT NULL,
    record_key bytea NOT NULL,          -- HMAC-SHA256(secret 'record_key', record _id)
    report_id uuid NOT NULL,
    created_at timestamptz NOT NULL,    -- the report's createdAt: where it is, and when it expires
    PRIMARY KEY (workspace_id, record_key)
);
-- BRIN: rows arrive in about createdAt order; expiry deletes by range.
CREATE INDEX report_keys_created ON report_keys USING brin (created_at);
INSERT INTO report_keys (workspace_id, record_key, report_id, created_at)
SELECT workspace_id, record_key, report_id, created_at FROM reports_0006;

DROP TABLE report_data_0006;
DROP TABLE reports_0006;

ALTER TABLE reports ADD PRIMARY KEY (report_id, created_at);
ALTER TABLE reports ADD FOREIGN KEY (workspace_id) REFERENCES workspaces (workspace_id);
CREATE INDEX reports_workspace_created ON reports (workspace_id, created_at);
-- report_data has no foreign key to reports any more: both are written by
-- the same statement, expire by dropping the same months and are erased
-- together (a key between partitioned tables would pin their partitions).
ALTER TABLE report_data ADD PRIMARY KEY (report_id, created_at);
CREATE INDEX report_data_workspace ON report_data (workspace_id);

-- 2. Data keys --------------------------------------------------------------

-- One AES-256 key per workspace and kept category (none for a category the
-- workspace's opt-out drops). Destroying the row (and rewriting this table,
-- collector.accounts.datakeys.shred) makes that category's stored data of
-- the workspace unreadable wherever its bytes still are.
CREATE TABLE data_keys (
    workspace_id uuid NOT NULL REFERENCES workspaces (workspace_id),
    category text NOT NULL CHECK (category IN ('billing', 'compliance', 'operational', 'product_analytics')),
    key bytea NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, category)
);

-- The keys of the given workspaces, made for the categories they keep when
-- missing (fresh: 4 random keys per workspace, in ws order then CATEGORIES
-- order, made by the caller). A workspace no longer registered (erased) gets
-- none. Two statements: the SELECT sees keys another writer made while the
-- INSERT waited for it.
-- Python caller: collector.accounts.datakeys.Keyring.keys_for (the ingest writer).
CREATE FUNCTION data_keys_for(ws uuid[], fresh bytea[])
RETURNS TABLE (workspace_id uuid, category text, key bytea)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO data_keys (workspace_id, category, key)
    SELECT o.workspace_id, c.category, fresh[(array_position(ws, o.workspace_id) - 1) * 4 + c.n]
    FROM workspace_opt_out o
    CROSS JOIN unnest(ARRAY['billing', 'compliance', 'operational', 'product_analytics']) WITH ORDINALITY
         AS c(category, n)
    WHERE o.workspace_id = ANY (ws) AND NOT (c.category = ANY (o.dropped))
    ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT k.workspace_id, k.category, k.key FROM data_keys k WHERE k.workspace_id = ANY (ws);
END
$$;

-- Tables to rewrite (VACUUM FULL) so that rows removed by transaction xid
-- leave the data files: destroyed keys (data_keys), erased registry rows,
-- deleted rows of a DEFAULT report partition. Done right after the commit
-- and by the maintenance; a row leaves once its rewrite ran with no older
-- snapshot open. collector.accounts.datakeys.shred.
CREATE TABLE pending_rewrites (
    relname text NOT NULL,
    xid xid8 NOT NULL,                  -- the transaction that removed the rows
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relname, xid)
);

-- 3. Retention bookkeeping ----------------------------------------------------

-- Everything of a kind older than `since` has been removed (raw: reports
-- and report_data by createdAt; rollups: daily_snapshots by day and the
-- months wholly before it; quarantine: by received_at). No row: nothing
-- removed yet. Only moves forward. Billing reads it (raw_data_expired).
CREATE TABLE retained_since (
    kind text PRIMARY KEY CHECK (kind IN ('raw', 'rollups', 'quarantine')),
    since timestamptz NOT NULL
);

-- The last run of each maintenance task: serve runs retention when the last
-- finished run is older than COLLECTOR_RETENTION_EVERY_S, under a session
-- advisory lock (one runner across workers and instances).
CREATE TABLE maintenance_runs (
    task text PRIMARY KEY,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    removed jsonb                       -- what the run removed: counts and partition months, never a value
);

-- Erasure writes one audit line that outlives the workspace.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_workspace_id_fkey;
ALTER TABLE audit_log ADD COLUMN counts jsonb;  -- workspace_erased: {table: rows removed}

-- Every table with a workspace_id column (partitions excluded: their parent
-- stands for them), except the registry itself and audit_log. Erasure and
-- export walk it, so a table added later is covered without a change here.
-- Python callers: collector.lifecycle.erasure, collector.lifecycle.export.
CREATE FUNCTION workspace_tables() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text
    FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'workspace_id' AND NOT a.attisdropped
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname NOT IN ('workspaces', 'audit_log')
    -- a table another one references (contracts, by term_usage) after it:
    -- its ON DELETE CASCADE would otherwise empty the other uncounted
    ORDER BY EXISTS (SELECT 1 FROM pg_constraint f
                     WHERE f.contype = 'f' AND f.confrelid = c.oid AND f.conrelid <> c.oid), 1
$$;

-- Delete every row of workspace ws from workspace_tables(), then the
-- registry row; a table a foreign key still holds is retried after the
-- others. Returns {table: rows deleted} (only tables that had rows; the
-- earlier audit lines under 'audit_log'). Call inside the erasure's
-- transaction, the registry row locked FOR UPDATE.
-- Python caller: collector.lifecycle.erasure.erase.
CREATE FUNCTION erase_workspace(ws uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    todo text[] := ARRAY(SELECT workspace_tables());
    later text[];
    t text;
    n bigint;
    counts jsonb := '{}';
BEGIN
    FOR pass IN 1..10 LOOP
        later := '{}';
        FOREACH t IN ARRAY todo LOOP
            BEGIN
                EXECUTE format('DELETE FROM %I WHERE workspace_id = $1', t) USING ws;
                GET DIAGNOSTICS n = ROW_COUNT;
                IF n > 0 THEN
                    counts := counts || jsonb_build_object(t, n + coalesce((counts ->> t)::bigint, 0));
                END IF;
            EXCEPTION WHEN foreign_key_violation THEN
                later := later || t;
            END;
        END LOOP;
        todo := later;
        EXIT WHEN cardinality(todo) = 0;
    END LOOP;
    IF cardinality(todo) > 0 THEN
        RAISE EXCEPTION 'erase_workspace: rows of % still referenced', todo;
    END IF;
    DELETE FROM audit_log WHERE workspace_id = ws;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        counts := counts || jsonb_build_object('audit_log', n);
    END IF;
    DELETE FROM workspaces WHERE workspace_id = ws;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN counts || jsonb_build_object('workspaces', n);
END
$$;

-- 4. The ingest writer's batch, on the partitioned tables --------------------

DROP FUNCTION write_batch(timestamptz, text, integer, uuid[], uuid[], bytea[], timestamptz[], text[], text[],
                          text[], text[], text[], text[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[]);

-- As in 0004, with these changes:
--   - r_billing .. r_product_analytics are the categories SEALED by the
--     writer (bytea, collector.accounts.datakeys.seal; NULL: not kept);
--   - idempotency through report_keys (one row per record, any partition);
--   - a record of a workspace no longer registered (erased while the
--     report waited) is not stored: its row answers report_id NULL;
--   - a record dated before retained_since('raw') (its raw data has expired
--     already) is folded into the rollups but not stored; it answers
--     accepted with this call's id and receipt.
-- Returns one row per element, in order: report_id, receipt, accepted,
-- dropped, plan, policy_source (as in 0004).
-- Python caller: collector.ingest.writer.ReportWriter (_WRITE_BATCH_SQL).
CREATE FUNCTION write_batch(
    received_at timestamptz, catalogue_version text, lock_ns integer,
    r_id uuid[], r_ws uuid[], r_key bytea[], r_created_at timestamptz[], r_version text[], r_receipt text[],
    r_billing bytea[], r_compliance bytea[], r_operational bytea[], r_product_analytics bytea[],
    r_active_users bigint[], r_active_guests bigint[], r_private_apps bigint[], r_marketplace_apps bigint[],
    r_mac bigint[], r_peak_connections bigint[])
RETURNS TABLE (report_id uuid, receipt text, accepted boolean, dropped text[], plan text, policy_source text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    opt_outs jsonb;     -- {workspace id: {"dropped": [...], "plan": ..., "policy_source": ...}}, opted out only
    known uuid[];       -- the batch's workspaces still registered
    raw_floor timestamptz;  -- raw data dated before it is not kept (retention)
    stored uuid[];      -- the reports this call stored or folded
BEGIN
    SELECT jsonb_object_agg(o.workspace_id::text, jsonb_build_object(
               'dropped', o.dropped, 'plan', o.plan, 'policy_source', o.policy_source))
    INTO opt_outs
    FROM opt_out_decisions(r_ws) o
    WHERE cardinality(o.dropped) > 0;
    opt_outs := coalesce(opt_outs, '{}');
    -- A later statement than the share lock: sees an erasure the lock waited for.
    known := ARRAY(SELECT w.workspace_id FROM workspaces w WHERE w.workspace_id = ANY (r_ws));
    SELECT s.since INTO raw_floor FROM retained_since s WHERE s.kind = 'raw';

    WITH r AS (
        SELECT r.* FROM unnest(r_id, r_ws, r_key, r_created_at, r_version, r_receipt) AS r(id, ws, k, c, v, receipt)
        WHERE r.ws = ANY (known)
    ), k AS (
        INSERT INTO report_keys (workspace_id, record_key, report_id, created_at)
        SELECT r.ws, r.k, r.id, r.c FROM r WHERE raw_floor IS NULL OR r.c >= raw_floor
        ON CONFLICT (workspace_id, record_key) DO NOTHING
        RETURNING report_keys.report_id
    ), ins AS (
        INSERT INTO reports (report_id, workspace_id, record_key, created_at, received_at, rc_version,
                             catalogue_version, receipt)
        SELECT r.id, r.ws, r.k, r.c, received_at, r.v, catalogue_version, r.receipt
        FROM r JOIN k ON k.report_id = r.id
        RETURNING reports.report_id, reports.workspace_id, reports.created_at
    ), data AS (
        INSERT INTO report_data (report_id, workspace_id, created_at, billing, compliance, operational,
                                 product_analytics)
        SELECT ins.report_id, ins.workspace_id, ins.created_at, d.b, d.c,
               CASE WHEN opt_outs -> ins.workspace_id::text -> 'dropped' ? 'operational' THEN NULL ELSE d.o END,
               CASE WHEN opt_outs -> ins.workspace_id::text -> 'dropped' ? 'product_analytics' THEN NULL
                    ELSE d.p END
        FROM unnest(r_id, r_billing, r_compliance, r_operational, r_product_analytics) AS d(id, b, c, o, p)
        JOIN ins ON ins.report_id = d.id
    )
    SELECT array_agg(x.id) INTO stored
    FROM (SELECT ins.report_id AS id FROM ins
          UNION ALL SELECT r.id FROM r WHERE r.c < raw_floor) x;

    IF stored IS NOT NULL THEN
        PERFORM apply_rollups(lock_ns, array_agg(u.ws ORDER BY u.ord), array_agg(u.c ORDER BY u.ord),
                              array_agg(u.id ORDER BY u.ord), array_agg(u.au ORDER BY u.ord),
                              array_agg(u.ag ORDER BY u.ord), array_agg(u.pa ORDER BY u.ord),
                              array_agg(u.ma ORDER BY u.ord), array_agg(u.mac ORDER BY u.ord),
                              array_agg(u.pc ORDER BY u.ord))
        FROM unnest(r_id, r_ws, r_created_at, r_active_users, r_active_guests, r_private_apps,
                    r_marketplace_apps, r_mac, r_peak_connections) WITH ORDINALITY
             AS u(id, ws, c, au, ag, pa, ma, mac, pc, ord)
        WHERE u.id = ANY (stored);
    END IF;

    -- A later statement: sees what this call stored and any record stored
    -- first by another transaction (the insert waited for it to commit).
    RETURN QUERY
        SELECT CASE WHEN NOT (u.ws = ANY (known)) THEN NULL
                    WHEN u.c < raw_floor THEN u.id
                    ELSE s.report_id END,
               CASE WHEN NOT (u.ws = ANY (known)) THEN NULL
                    WHEN u.c < raw_floor OR s.report_id = u.id THEN u.receipt
                    ELSE (SELECT p.receipt FROM reports p
                          WHERE p.report_id = s.report_id AND p.created_at = s.created_at) END,
               u.ws = ANY (known) AND (u.c < raw_floor OR s.report_id = u.id) IS TRUE,
               ARRAY(SELECT jsonb_array_elements_text(opt_outs -> u.ws::text -> 'dropped')),
               opt_outs -> u.ws::text ->> 'plan', opt_outs -> u.ws::text ->> 'policy_source'
        FROM unnest(r_id, r_ws, r_key, r_created_at, r_receipt) WITH ORDINALITY AS u(id, ws, k, c, receipt, ord)
        LEFT JOIN report_keys s ON s.workspace_id = u.ws AND s.record_key = u.k
        ORDER BY u.ord;
END
$$;
