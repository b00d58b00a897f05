-- Plans, contracts and the rollups that compliance and billing read.
-- Limit semantics follow Rocket.Chat licence v3 (ee/packages/license): a
-- negative max means unlimited; behaviours prevent_action and
-- start_fair_policy trigger at value >= max, the others at value > max.
-- Seed figures: shared/ROCKETCHAT.md (see collector/plans.py for the rest).

-- Plan catalogue ----------------------------------------------------------

ALTER TABLE plans
    ADD COLUMN billing_model text NOT NULL DEFAULT 'free'
        CHECK (billing_model IN ('free', 'per_seat', 'consumption')),
    -- data categories a workspace on this plan may switch off (the opt-out
    -- feature is built on this later)
    ADD COLUMN opt_out_categories text[] NOT NULL DEFAULT '{}'
        CHECK (opt_out_categories <@ ARRAY['billing', 'compliance', 'operational', 'product_analytics']),
    ADD COLUMN mac_pack_size integer NOT NULL DEFAULT 0 CHECK (mac_pack_size >= 0),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE plan_limits (
    plan text NOT NULL REFERENCES plans (plan) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('activeUsers', 'guestUsers', 'monthlyActiveContacts',
                                       'privateApps', 'marketplaceApps', 'peakConnections')),
    max integer NOT NULL,               -- negative: unlimited
    behavior text NOT NULL CHECK (behavior IN ('prevent_action', 'start_fair_policy', 'invalidate_license',
                                               'disable_modules', 'prevent_installation')),
    PRIMARY KEY (plan, kind)
);

UPDATE plans SET billing_model = 'free' WHERE plan IN ('community', 'starter');
UPDATE plans SET billing_model = 'per_seat' WHERE plan = 'pro';
UPDATE plans SET billing_model = 'consumption', mac_pack_size = 1000,
                 opt_out_categories = '{operational,product_analytics}' WHERE plan = 'enterprise';

INSERT INTO plan_limits (plan, kind, max, behavior) VALUES
    ('community',  'activeUsers',            -1, 'prevent_action'),
    ('community',  'guestUsers',             -1, 'prevent_action'),
    ('community',  'monthlyActiveContacts',  -1, 'prevent_action'),
    ('community',  'privateApps',             3, 'prevent_action'),
    ('community',  'marketplaceApps',         5, 'prevent_action'),
    ('community',  'peakConnections',       200, 'disable_modules'),
    ('starter',    'activeUsers',            50, 'prevent_action'),
    ('starter',    'guestUsers',             -1, 'prevent_action'),
    ('starter',    'monthlyActiveContacts', 100, 'prevent_action'),
    ('starter',    'privateApps',             3, 'prevent_action'),
    ('starter',    'marketplaceApps',         5, 'prevent_action'),
    ('starter',    'peakConnections',        -1, 'disable_modules'),
    ('pro',        'activeUsers',           500, 'prevent_action'),
    ('pro',        'guestUsers',             -1, 'prevent_action'),
    ('pro',        'monthlyActiveContacts', 100, 'prevent_action'),
    ('pro',        'privateApps',            -1, 'prevent_action'),
    ('pro',        'marketplaceApps',        -1, 'prevent_action'),
    ('pro',        'peakConnections',        -1, 'disable_modules'),
    ('enterprise', 'activeUsers',            -1, 'start_fair_policy'),
    ('enterprise', 'guestUsers',             -1, 'start_fair_policy'),
    ('enterprise', 'monthlyActiveContacts',  -1, 'start_fair_policy'),
    ('enterprise', 'privateApps',            -1, 'prevent_action'),
    ('enterprise', 'marketplaceApps',        -1, 'prevent_action'),
    ('enterprise', 'peakConnections',        -1, 'disable_modules');

-- Contracts: one current contract per workspace --------------------------

CREATE TABLE contracts (
    workspace_id uuid PRIMARY KEY REFERENCES workspaces (workspace_id),
    plan text NOT NULL REFERENCES plans (plan),
    term_start date NOT NULL,
    term_end date NOT NULL,             -- inclusive (last day of the term)
    seats integer CHECK (seats >= 0),   -- purchased seats; NULL: none purchased
    mac_packs integer NOT NULL DEFAULT 0 CHECK (mac_packs >= 0),
    custom_limits jsonb NOT NULL DEFAULT '{}'  -- {kind: max}, overrides the plan's max
        CHECK (jsonb_typeof(custom_limits) = 'object'
               AND custom_limits - ARRAY['activeUsers', 'guestUsers', 'monthlyActiveContacts',
                                         'privateApps', 'marketplaceApps', 'peakConnections'] = '{}'::jsonb),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (term_end >= term_start)
);
CREATE INDEX contracts_plan ON contracts (plan);

INSERT INTO contracts (workspace_id, plan, term_start, term_end)
SELECT workspace_id, plan, (created_at AT TIME ZONE 'UTC')::date,
       ((created_at AT TIME ZONE 'UTC')::date + interval '12 months' - interval '1 day')::date
FROM workspaces;

-- The effective max of a limit kind for a contract (negative: unlimited):
-- the contract's custom limit, else for activeUsers the purchased seats,
-- else the plan's max; monthlyActiveContacts adds the purchased MAC packs
-- (packs x the plan's pack size) to a finite plan max, or replaces an
-- unlimited one when packs were bought.
-- Python caller: none directly; used by refresh_compliance and the billing query (collector.usage.billing).
CREATE FUNCTION effective_max(kind text, plan_max integer, custom_limits jsonb, seats integer,
                              mac_packs integer, mac_pack_size integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        (custom_limits ->> kind)::integer,
        CASE kind
            WHEN 'activeUsers' THEN coalesce(seats, plan_max)
            WHEN 'monthlyActiveContacts' THEN
                CASE WHEN mac_packs * mac_pack_size = 0 THEN plan_max
                     WHEN plan_max < 0 THEN mac_packs * mac_pack_size
                     ELSE plan_max + mac_packs * mac_pack_size END
            ELSE plan_max
        END)
$$;

-- Rollups ----------------------------------------------------------------
-- Counts are bigint: the schema admits integers up to 2^53 - 1 (JavaScript's
-- Number.MAX_SAFE_INTEGER), so every accepted count fits.

-- One row per workspace and UTC day of the record's createdAt. The latest
-- record of the day gives active_users, active_guests and the apps counts;
-- mac and peak_connections are the highest of all the day's records.
-- NULL: the value was not reported (unknown).
CREATE TABLE daily_snapshots (
    workspace_id uuid NOT NULL,
    day date NOT NULL,
    created_at timestamptz NOT NULL,    -- createdAt of the record that won the day
    report_id uuid NOT NULL,
    active_users bigint,
    active_guests bigint,
    private_apps bigint,
    marketplace_apps bigint,
    mac bigint,
    peak_connections bigint,
    PRIMARY KEY (workspace_id, day)
);

-- One row per workspace and UTC month, recomputed from daily_snapshots for
-- the months a batch touches.
CREATE TABLE monthly_usage (
    workspace_id uuid NOT NULL,
    month date NOT NULL,                -- first day of the month
    max_seats bigint,
    max_guests bigint,
    mac bigint,
    peak_connections bigint,
    days_reported integer NOT NULL,
    last_report_at timestamptz NOT NULL, -- latest createdAt within the month
    PRIMARY KEY (month, workspace_id)
);

-- Highest daily seats over the contract's term (true-up); kept as reports
-- arrive, recomputed when the contract changes.
CREATE TABLE term_usage (
    workspace_id uuid PRIMARY KEY REFERENCES contracts (workspace_id) ON DELETE CASCADE,
    term_start date NOT NULL,
    term_end date NOT NULL,
    max_seats bigint,
    max_seats_day date
);

-- Current compliance state per workspace, from its latest snapshot.
-- limits: compact JSON {kind: {value, max, percent, status, since}}, in LIMIT order;
-- a limit's behavior is the plan's (plan_limits), added by the one-workspace answer.
CREATE TABLE compliance_state (
    workspace_id uuid PRIMARY KEY REFERENCES workspaces (workspace_id),
    last_report_at timestamptz,         -- createdAt of the latest snapshot
    status text NOT NULL,               -- worst status of the limits (or unknown)
    limits json NOT NULL,               -- json, not jsonb: read back as stored text, no conversion
    evaluated_at timestamptz NOT NULL
);
CREATE INDEX compliance_state_status ON compliance_state (status);

-- Re-evaluate the compliance of the given workspaces (all with a contract
-- when ws IS NULL) from their latest snapshot and effective limits. A
-- limit's `since` changes only when its status changes: to the latest
-- snapshot's createdAt (changed_at NULL: a report changed it) or changed_at
-- (an operator edited the limits).
-- plpgsql, not sql: its statement is planned once per connection (generic
-- plan), where a sql function re-plans it on every call (~3 ms a batch). The
-- previous state's limits are parsed once per workspace (old_limits), not
-- once per limit and key.
-- Python callers: collector.accounts.plans (contract and limit edits); apply_rollups below.
CREATE FUNCTION refresh_compliance(ws uuid[], changed_at timestamptz) RETURNS void
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
                    ELSE to_json(coalesce(changed_at, st.created_at, now()))::text END AS since
        FROM st
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
               || ',"since":' || since || '}',
               ',' ORDER BY array_position(ARRAY['activeUsers', 'guestUsers', 'monthlyActiveContacts',
                                                 'privateApps', 'marketplaceApps', 'peakConnections'], kind))
            || '}')::json,
           now()
    FROM merged
    GROUP BY workspace_id
    ON CONFLICT (workspace_id) DO UPDATE
        SET last_report_at = excluded.last_report_at, status = excluded.status,
            limits = excluded.limits, evaluated_at = excluded.evaluated_at;
END
$$;

COMMENT ON COLUMN compliance_state.limits IS
    'compact JSON {kind: {value, max, percent, status, since}}, kinds in collector.accounts.plans.LIMIT_KINDS order';

-- Recompute term_usage of the given workspaces from daily_snapshots.
-- Python callers: collector.accounts.plans.set_contract (term changes); apply_rollups below.
CREATE FUNCTION refresh_term_usage(ws uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO term_usage AS t (workspace_id, term_start, term_end, max_seats, max_seats_day)
    SELECT c.workspace_id, c.term_start, c.term_end, m.active_users, m.day
    FROM contracts c
    LEFT JOIN LATERAL (
        SELECT d.active_users, d.day FROM daily_snapshots d
        WHERE d.workspace_id = c.workspace_id AND d.day BETWEEN c.term_start AND c.term_end
              AND d.active_users IS NOT NULL
        ORDER BY d.active_users DESC, d.day LIMIT 1
    ) m ON true
    WHERE c.workspace_id = ANY (ws)
    ON CONFLICT (workspace_id) DO UPDATE
        SET term_start = excluded.term_start, term_end = excluded.term_end,
            max_seats = excluded.max_seats, max_seats_day = excluded.max_seats_day;
END
$$;

-- Fold one batch of stored reports into the rollups, in one call (one round
-- trip; plpgsql: every statement is planned once per connection). Called
-- inside the transaction that stored the reports (write_batch, 0004; or
-- collector.usage.rollups.apply_reports). The b_ arrays are parallel, ONE
-- element per stored report, in the order received; a NULL count is unknown.
--   1. a transaction advisory lock (lock_ns, hashtext(workspace)) per
--      workspace, taken in hash order (no deadlock between writers);
--   2. the reports reduced to one row per (workspace, UTC day of createdAt):
--      the latest createdAt gives the counts (equal: the one received last),
--      mac and peak_connections the day's highest; daily_snapshots upserted
--      with the same rules against the stored day;
--   3. monthly_usage of every touched (workspace, month) recomputed from its
--      daily rows (at most 31 each);
--   4. term_usage: raised with greatest() by the new days within the term;
--      recomputed from the snapshots for a workspace where some day's seats
--      went down (a later record of the same day);
--   5. compliance re-evaluated for the workspaces whose LATEST snapshot was
--      written (a late record for an earlier day leaves it as it is).
-- Python callers: collector.usage.rollups.apply_reports; write_batch (collector.ingest.writer).
CREATE FUNCTION apply_rollups(lock_ns integer, b_ws uuid[], b_created_at timestamptz[], b_report_id uuid[],
                              b_active_users bigint[], b_active_guests bigint[], b_private_apps bigint[],
                              b_marketplace_apps bigint[], b_mac bigint[], b_peak_connections bigint[])
RETURNS void LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    down uuid[];        -- workspaces where a day's seats went down
    up_ws uuid[];       -- the other written days with known seats: (workspace, day, seats)
    up_day date[];
    up_seats bigint[];
    latest uuid[];      -- workspaces whose latest snapshot was written
BEGIN
    PERFORM pg_advisory_xact_lock(lock_ns, hashtext(w::text))
    FROM (SELECT w FROM (SELECT DISTINCT w FROM unnest(b_ws) AS w) u ORDER BY hashtext(w::text)) s;

    WITH r AS (
        SELECT r.*, r.created_at::date AS day      -- the UTC day (timezone UTC in this function)
        FROM unnest(b_ws, b_created_at, b_report_id, b_active_users, b_active_guests, b_private_apps,
                    b_marketplace_apps, b_mac, b_peak_connections) WITH ORDINALITY
             AS r(workspace_id, created_at, report_id, active_users, active_guests, private_apps,
                  marketplace_apps, mac, peak_connections, ord)
    ), i AS (
        SELECT DISTINCT ON (workspace_id, day)
               workspace_id, day, created_at, report_id, active_users, active_guests, private_apps,
               marketplace_apps, max(mac) OVER w AS mac, max(peak_connections) OVER w AS peak_connections
        FROM r
        WINDOW w AS (PARTITION BY workspace_id, day)
        ORDER BY workspace_id, day, created_at DESC, ord DESC
    ), old AS (
        SELECT d.workspace_id, d.day, d.active_users FROM daily_snapshots d
        JOIN i ON d.workspace_id = i.workspace_id AND d.day = i.day
    ), up AS (
        INSERT INTO daily_snapshots AS d SELECT * FROM i
        ON CONFLICT (workspace_id, day) DO UPDATE SET
            created_at = greatest(d.created_at, excluded.created_at),
            report_id = CASE WHEN excluded.created_at >= d.created_at THEN excluded.report_id ELSE d.report_id END,
            active_users = CASE WHEN excluded.created_at >= d.created_at THEN excluded.active_users ELSE d.active_users END,
            active_guests = CASE WHEN excluded.created_at >= d.created_at THEN excluded.active_guests ELSE d.active_guests END,
            private_apps = CASE WHEN excluded.created_at >= d.created_at THEN excluded.private_apps ELSE d.private_apps END,
            marketplace_apps = CASE WHEN excluded.created_at >= d.created_at THEN excluded.marketplace_apps
                                    ELSE d.marketplace_apps END,
            mac = CASE WHEN d.mac IS NULL OR excluded.mac > d.mac THEN excluded.mac ELSE d.mac END,
            peak_connections = CASE WHEN d.peak_connections IS NULL OR excluded.peak_connections > d.peak_connections
                                    THEN excluded.peak_connections ELSE d.peak_connections END
        RETURNING d.workspace_id, d.day, d.active_users
    ), changed AS (
        SELECT up.workspace_id, up.day, up.active_users,
               old.active_users IS NOT NULL AND (up.active_users IS NULL OR up.active_users < old.active_users)
                   AS went_down
        FROM up LEFT JOIN old ON old.workspace_id = up.workspace_id AND old.day = up.day
    ), down_ws AS (
        SELECT DISTINCT workspace_id FROM changed WHERE went_down
    )
    SELECT (SELECT array_agg(workspace_id ORDER BY workspace_id) FROM down_ws),
           array_agg(c.workspace_id), array_agg(c.day), array_agg(c.active_users)
    INTO down, up_ws, up_day, up_seats
    FROM changed c
    WHERE c.active_users IS NOT NULL AND c.workspace_id NOT IN (SELECT workspace_id FROM down_ws);

    INSERT INTO monthly_usage AS m (workspace_id, month, max_seats, max_guests, mac, peak_connections,
                                    days_reported, last_report_at)
    SELECT t.ws, t.month, max(d.active_users), max(d.active_guests), max(d.mac), max(d.peak_connections),
           count(*), max(d.created_at)
    FROM (SELECT DISTINCT u.ws, date_trunc('month', u.c)::date AS month FROM unnest(b_ws, b_created_at) AS u(ws, c)) t
    JOIN daily_snapshots d ON d.workspace_id = t.ws
         AND d.day >= t.month AND d.day < (t.month + interval '1 month')::date
    GROUP BY t.ws, t.month
    ON CONFLICT (month, workspace_id) DO UPDATE SET max_seats = excluded.max_seats,
        max_guests = excluded.max_guests, mac = excluded.mac, peak_connections = excluded.peak_connections,
        days_reported = excluded.days_reported, last_report_at = excluded.last_report_at;

    IF down IS NOT NULL THEN
        PERFORM refresh_term_usage(down);
    END IF;
    IF up_ws IS NOT NULL THEN
        UPDATE term_usage t SET max_seats = n.seats, max_seats_day = n.day
        FROM (SELECT DISTINCT ON (c.ws) c.ws, c.seats, c.day
              FROM unnest(up_ws, up_day, up_seats) AS c(ws, day, seats)
              JOIN term_usage t ON t.workspace_id = c.ws AND c.day BETWEEN t.term_start AND t.term_end
              ORDER BY c.ws, c.seats DESC, c.day) n
        WHERE t.workspace_id = n.ws AND (t.max_seats IS NULL OR n.seats > t.max_seats);
    END IF;

    SELECT array_agg(DISTINCT u.ws) INTO latest
    FROM unnest(b_ws, b_created_at) AS u(ws, c)
    WHERE u.c::date >= (SELECT max(d.day) FROM daily_snapshots d WHERE d.workspace_id = u.ws);
    IF latest IS NOT NULL THEN
        PERFORM refresh_compliance(latest, NULL);
    END IF;
END
$$;

SELECT refresh_term_usage(array_agg(workspace_id)) FROM contracts;
SELECT refresh_compliance(NULL, NULL);
