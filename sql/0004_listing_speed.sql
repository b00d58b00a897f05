-- Listing speed (issue 4): the compliance listing sends compliance_state.limits
-- as stored, so store it lean and compact:
--   {"activeUsers":{"value":111,"max":50,"percent":222.0,"status":"over","since":"2026-12-31T12:00:00+00:00"},...}
-- No whitespace (json_build_object / json_object_agg wrote " : " and ", "),
-- and no `behavior`: it is the plan's per kind, the same for every workspace
-- on the plan (plan_limits; collector.compliance adds it to the
-- one-workspace answer). About 630 bytes a workspace instead of 920.
-- Same rules and signature as 0002; only the rendering of `limits` changes.
CREATE OR REPLACE FUNCTION refresh_compliance(ws uuid[], changed_at timestamptz) RETURNS void
LANGUAGE sql SET timezone = 'UTC' AS $$
    WITH cur AS (
        SELECT c.workspace_id, c.plan, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size,
               s.created_at, s.active_users, s.active_guests, s.mac, s.private_apps, s.marketplace_apps,
               s.peak_connections
        FROM contracts c
        JOIN plans p ON p.plan = c.plan
        LEFT JOIN LATERAL (
            SELECT * FROM daily_snapshots d WHERE d.workspace_id = c.workspace_id ORDER BY d.day DESC LIMIT 1
        ) s ON true
        WHERE ws IS NULL OR c.workspace_id = ANY (ws)
    ), lim AS (
        SELECT cur.workspace_id, cur.created_at, pl.kind,
               effective_max(pl.kind, pl.max, cur.custom_limits, cur.seats, cur.mac_packs, cur.mac_pack_size) AS max,
               CASE pl.kind
                   WHEN 'activeUsers' THEN cur.active_users
                   WHEN 'guestUsers' THEN cur.active_guests
                   WHEN 'monthlyActiveContacts' THEN cur.mac
                   WHEN 'privateApps' THEN cur.private_apps
                   WHEN 'marketplaceApps' THEN cur.marketplace_apps
                   WHEN 'peakConnections' THEN cur.peak_connections
               END AS value
        FROM cur JOIN plan_limits pl ON pl.plan = cur.plan
    ), st AS (
        SELECT lim.*,
               CASE WHEN value IS NULL THEN 'unknown'
                    WHEN max < 0 THEN 'ok'
                    WHEN value > max THEN 'over'
                    WHEN value = max THEN 'at'
                    WHEN value * 10 >= max * 9 THEN 'near'
                    ELSE 'ok' END AS status,
               CASE WHEN value IS NOT NULL AND max > 0 THEN round(value * 100.0 / max, 1) END AS percent
        FROM lim
    ), merged AS (
        SELECT st.*,
               CASE WHEN old.limits -> st.kind ->> 'status' = st.status
                    THEN (old.limits -> st.kind ->> 'since')::timestamptz
                    ELSE coalesce(changed_at, st.created_at, now()) END AS since
        FROM st LEFT JOIN compliance_state old ON old.workspace_id = st.workspace_id
    )
    INSERT INTO compliance_state AS c (workspace_id, last_report_at, status, limits, evaluated_at)
    SELECT workspace_id, max(created_at),
           CASE max(CASE status WHEN 'over' THEN 4 WHEN 'at' THEN 3 WHEN 'near' THEN 2 WHEN 'ok' THEN 1 ELSE 0 END)
               WHEN 4 THEN 'over' WHEN 3 THEN 'at' WHEN 2 THEN 'near' WHEN 1 THEN 'ok' ELSE 'unknown' END,
           ('{' || string_agg(
               to_json(kind)::text || ':{"value":' || coalesce(value::text, 'null')
               || ',"max":' || coalesce(max::text, 'null')
               || ',"percent":' || coalesce(percent::text, 'null')
               || ',"status":' || to_json(status)::text
               || ',"since":' || to_json(since)::text || '}',
               ',' ORDER BY array_position(ARRAY['activeUsers', 'guestUsers', 'monthlyActiveContacts',
                                                 'privateApps', 'marketplaceApps', 'peakConnections'], kind))
            || '}')::json,
           now()
    FROM merged
    GROUP BY workspace_id
    ON CONFLICT (workspace_id) DO UPDATE
        SET last_report_at = excluded.last_report_at, status = excluded.status,
            limits = excluded.limits, evaluated_at = excluded.evaluated_at
$$;

COMMENT ON COLUMN compliance_state.limits IS
    'compact JSON {kind: {value, max, percent, status, since}}, kinds in collector.plans.LIMIT_KINDS order (0004_listing_speed)';

-- Rewrite every stored state in the new form (statuses are unchanged, so
-- every `since` is kept).
SELECT refresh_compliance(NULL, NULL);
