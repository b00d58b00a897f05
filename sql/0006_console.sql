-- The operator console (issue 13): workspace labels, console sessions, one
-- definition of "stale", and `since` = when the collector first saw a status.

-- Workspace labels: a name for the account entered by an operator (customer
-- name, CRM reference); account data, never taken from a report. NULL: none.
ALTER TABLE workspaces
    ADD COLUMN label text
        CHECK (label IS NULL OR (char_length(label) BETWEEN 1 AND 200 AND label !~ '[[:cntrl:]]'
                                 AND btrim(label) = label));

-- Console sessions (collector.accounts.sessions): the cookie holds a random
-- session id, stored here only as its SHA-256. A session belongs to the
-- operator token that signed in (token_hash: the token's SHA-256, as in
-- `tokens`; for COLLECTOR_ADMIN_TOKEN the hash of that value, which has no
-- row in `tokens`) and is valid only while that token is (read through a
-- join on every request: revoking the token ends its sessions at once) and
-- until expires_at.
CREATE TABLE console_sessions (
    session_hash bytea PRIMARY KEY,
    token_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- "Stale", one definition for billing and compliance (issue 11 item 9): the
-- workspace's last report up to the reference time (else its registration)
-- is more than stale_after_s seconds before the reference. The last report
-- up to the reference: the createdAt of its latest daily snapshot on or
-- before the reference's UTC day (the day of the instant just before the
-- reference, so that a period end at midnight counts the period's last day
-- and not the next one). Compliance passes now; billing the period's end
-- (exclusive), or now while the period runs.
--
-- last_report_before is that rule as a lookup (an index probe per
-- workspace); last_report_up_to gives the same answer from what the callers
-- already have, and probes only when those cannot tell (rare: a workspace
-- whose latest report is after the reference and that did not report in the
-- period): `latest` is the workspace's latest snapshot's createdAt
-- (compliance_state.last_report_at; NULL: not known, probe), `recent` the
-- latest createdAt of days ending on or after the reference's day and
-- starting before it (billing: the period's; NULL: none). Both SQL functions
-- without a FROM are inlined into the callers' queries by the planner.
-- Python callers: none directly; through last_report_up_to.
CREATE FUNCTION last_report_before(ws uuid, reference timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT d.created_at FROM daily_snapshots d
    WHERE d.workspace_id = ws
      AND d.day <= ((reference - interval '1 microsecond') AT TIME ZONE 'UTC')::date
    ORDER BY d.day DESC LIMIT 1
$$;

-- Python callers: collector.usage.billing (the report query), collector.usage.compliance (listing, board, one workspace).
CREATE FUNCTION last_report_up_to(ws uuid, reference timestamptz, latest timestamptz, recent timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN (latest AT TIME ZONE 'UTC')::date <= ((reference - interval '1 microsecond') AT TIME ZONE 'UTC')::date
            THEN latest
        WHEN (recent AT TIME ZONE 'UTC')::date <= ((reference - interval '1 microsecond') AT TIME ZONE 'UTC')::date
            THEN recent
        ELSE last_report_before(ws, reference)
    END
$$;

-- Python callers: collector.usage.billing, collector.usage.compliance (with last_report_up_to).
CREATE FUNCTION is_stale(last_report timestamptz, registered_at timestamptz, reference timestamptz,
                         stale_after_s integer)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(last_report, registered_at) < reference - make_interval(secs => stale_after_s)
$$;

-- The console's board orders by the highest percent of any limit: kept with
-- the state (refresh_compliance below) instead of parsing `limits` per row.
ALTER TABLE compliance_state ADD COLUMN worst_percent numeric;
UPDATE compliance_state s SET worst_percent = (SELECT max((e.value ->> 'percent')::numeric) FROM json_each(s.limits) e);

-- refresh_compliance (0002) again, with two changes: it keeps worst_percent;
-- and a limit's `since` is when
-- the collector first saw its current status (the time of the evaluation
-- that changed it: now(), the transaction's time, or changed_at), no longer
-- the createdAt of the record that changed it (issue 13 item 8: a status
-- computed today from a months-old record said "since" that old date).
-- Python callers: collector.accounts.plans (contract and limit edits); apply_rollups (0002).
CREATE OR REPLACE FUNCTION refresh_compliance(ws uuid[], changed_at timestamptz) RETURNS void
LANGUAGE plpgsql SET timezone = 'UTC' SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF ws IS NULL THEN
        ws := ARRAY(SELECT workspace_id FROM contracts);
    END IF;
    WITH cur AS MATERIALIZED (
        SELECT c.workspace_id, c.plan, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size,
               s.created_at, s.active_users, s.active_guests, s.mac, s.private_apps, s.marketplace_apps,
               s.peak_connections, old.limits::jsonb AS old_limits
        FROM contracts c
        JOIN plans p ON p.plan = c.plan
        LEFT JOIN LATERAL (
            SELECT * FROM daily_snapshots d WHERE d.workspace_id = c.workspace_id ORDER BY d.day DESC LIMIT 1
        ) s ON true
        LEFT JOIN compliance_state old ON old.workspace_id = c.workspace_id
        WHERE c.workspace_id = ANY (ws)
    ), lim AS (
        SELECT cur.workspace_id, cur.created_at, cur.old_limits -> pl.kind AS old, pl.kind,
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
        -- since, as JSON text: the stored one while the status stays (copied,
        -- never parsed and formatted again)
        SELECT st.*,
               CASE WHEN st.old ->> 'status' = st.status
                    THEN (st.old -> 'since')::text
                    ELSE to_json(coalesce(changed_at, now()))::text END AS since
        FROM st
    )
    INSERT INTO compliance_state AS c (workspace_id, last_report_at, status, limits, evaluated_at, worst_percent)
    SELECT workspace_id, max(created_at),
           CASE max(CASE status WHEN 'over' THEN 4 WHEN 'at' THEN 3 WHEN 'near' THEN 2 WHEN 'ok' THEN 1 ELSE 0 END)
               WHEN 4 THEN 'over' WHEN 3 THEN 'at' WHEN 2 THEN 'near' WHEN 1 THEN 'ok' ELSE 'unknown' END,
           ('{' || string_agg(
               to_json(kind)::text || ':{"value":' || coalesce(value::text, 'null')
               || ',"max":' || coalesce(max::text, 'null')
               || ',"percent":' || coalesce(percent::text, 'null')
               || ',"status":' || to_json(status)::text
               || ',"since":' || since || '}',
               ',' ORDER BY array_position(ARRAY['activeUsers', 'guestUsers', 'monthlyActiveContacts',
                                                 'privateApps', 'marketplaceApps', 'peakConnections'], kind))
            || '}')::json,
           now(), max(percent)
    FROM merged
    GROUP BY workspace_id
    ON CONFLICT (workspace_id) DO UPDATE
        SET last_report_at = excluded.last_report_at, status = excluded.status,
            limits = excluded.limits, evaluated_at = excluded.evaluated_at, worst_percent = excluded.worst_percent;
END
$$;
