-- The ingest writer's batch (collector.ingest.writer.ReportWriter) in ONE call.
--
-- Sent on its own (no explicit transaction), the call is one statement and so
-- its own transaction: PostgreSQL commits it before it answers, and the
-- writer answers no request before that answer. One round trip per batch
-- instead of BEGIN, opt-out read, insert, rollups, duplicates lookup and
-- COMMIT (each a loopback round trip: CPU on both sides).
--
-- Arguments: the batch's time of receipt, catalogue version and rollup lock
-- namespace, then parallel arrays, ONE element per distinct record of the
-- batch (the writer answers a repeat within the batch like its first), in
-- the order received:
--   r_id          the report id made by the collector (the receipt's recordId)
--   r_ws, r_key   workspace, record key (HMAC of the record's _id)
--   r_created_at, r_version, r_receipt
--   r_billing, r_compliance, r_operational, r_product_analytics
--                 each category's fields as compact JSON text
--   r_active_users .. r_peak_connections
--                 the rollup values (collector.usage.rollups.ROLLUP_COLUMNS)
-- Steps:
--   1. the opt-out decisions (opt_out_decisions: share-lock the workspaces'
--      registry rows, then read the policy), held until the commit;
--   2. the reports and their report_data rows in one statement; a category
--      the workspace's opt-out drops is stored as NULL (never written); a
--      record already stored (same workspace and key) is not stored again;
--   3. apply_rollups over the reports stored by this call.
-- Returns one row per element, in order: the stored report's id and receipt
-- (this call's, or the first one stored for that record), whether this call
-- stored it (accepted) or not (duplicate), and the opt-out that applies to
-- the workspace (dropped empty, plan and policy_source NULL: none; else the
-- categories dropped, the plan and the policy source 'plan' or 'contract').
-- Python caller: collector.ingest.writer.ReportWriter (_WRITE_BATCH_SQL).
CREATE FUNCTION write_batch(
    received_at timestamptz, catalogue_version text, lock_ns integer,
    r_id uuid[], r_ws uuid[], r_key bytea[], r_created_at timestamptz[], r_version text[], r_receipt text[],
    r_billing text[], r_compliance text[], r_operational text[], r_product_analytics text[],
    r_active_users bigint[], r_active_guests bigint[], r_private_apps bigint[], r_marketplace_apps bigint[],
    r_mac bigint[], r_peak_connections bigint[])
RETURNS TABLE (report_id uuid, receipt text, accepted boolean, dropped text[], plan text, policy_source text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    opt_outs jsonb;     -- {workspace id: {"dropped": [...], "plan": ..., "policy_source": ...}}, opted out only
    stored uuid[];      -- the reports this call stored
BEGIN
    SELECT jsonb_object_agg(o.workspace_id::text, jsonb_build_object(
               'dropped', o.dropped, 'plan', o.plan, 'policy_source', o.policy_source))
    INTO opt_outs
    FROM opt_out_decisions(r_ws) o
    WHERE cardinality(o.dropped) > 0;
    opt_outs := coalesce(opt_outs, '{}');

    WITH ins AS (
        INSERT INTO reports (report_id, workspace_id, record_key, created_at, received_at, rc_version,
                             catalogue_version, receipt)
        SELECT r.id, r.ws, r.k, r.c, received_at, r.v, catalogue_version, r.receipt
        FROM unnest(r_id, r_ws, r_key, r_created_at, r_version, r_receipt) AS r(id, ws, k, c, v, receipt)
        ON CONFLICT (workspace_id, record_key) DO NOTHING
        RETURNING reports.report_id, reports.workspace_id
    ), data AS (
        INSERT INTO report_data (report_id, workspace_id, billing, compliance, operational, product_analytics)
        SELECT ins.report_id, ins.workspace_id, d.b::json, d.c::json,
               CASE WHEN opt_outs -> ins.workspace_id::text -> 'dropped' ? 'operational' THEN NULL
                    ELSE d.o::json END,
               CASE WHEN opt_outs -> ins.workspace_id::text -> 'dropped' ? 'product_analytics' THEN NULL
                    ELSE d.p::json END
        FROM unnest(r_id, r_billing, r_compliance, r_operational, r_product_analytics) AS d(id, b, c, o, p)
        JOIN ins ON ins.report_id = d.id
    )
    SELECT array_agg(ins.report_id) INTO stored FROM ins;

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

    -- A later statement: sees what this call stored and any report stored
    -- first by another transaction (the insert waited for it to commit).
    RETURN QUERY
        SELECT s.report_id, s.receipt, s.report_id = u.id,
               ARRAY(SELECT jsonb_array_elements_text(opt_outs -> u.ws::text -> 'dropped')),
               opt_outs -> u.ws::text ->> 'plan', opt_outs -> u.ws::text ->> 'policy_source'
        FROM unnest(r_id, r_ws, r_key) WITH ORDINALITY AS u(id, ws, k, ord)
        JOIN reports s ON s.workspace_id = u.ws AND s.record_key = u.k
        ORDER BY u.ord;
END
$$;
