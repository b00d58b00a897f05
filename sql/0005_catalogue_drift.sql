-- Catalogue drift (issue 9): the fields outside the field catalogue that
-- accepted reports carried, so operators see what a new Rocket.Chat release
-- sends before the catalogue knows it. Never a value, and no workspace: per
-- path and Rocket.Chat version, the JSON types seen, how many reports, when.
--
-- path: catalogue-style (`os.cpus[].vendor`, `abacEnabled`), ending at the
-- OUTERMOST unknown key (nothing below it is read); a key that does not look
-- like a code identifier is `{}` (collector.gate.rules.looks_like_code_identifier).
CREATE TABLE catalogue_drift (
    path        text        NOT NULL,
    rc_version  text        NOT NULL,   -- the record's `version`; '' when it had none
    json_types  text[]      NOT NULL,   -- JSON Schema type names, sorted
    reports     bigint      NOT NULL,   -- accepted reports that carried the path
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (path, rc_version)
);

-- One batch's drift, called in the same statement (and so the same
-- transaction) as write_batch, after it: only the reports write_batch stored
-- count (a duplicate was counted when it was first stored).
-- Arguments: the batch's time of receipt; per distinct record of the batch
-- (write_batch's element order), its version and whether write_batch stored
-- it (its `accepted`); then one element per (record, path, JSON type): the
-- record's 1-based position, the path, the type.
-- Rows are upserted in (path, rc_version) order, so concurrent writers lock
-- them in one order (no deadlock). Returns the number of rows written.
-- Python caller: collector.ingest.drift.with_drift (the SQL the writer,
-- collector.ingest.writer.ReportWriter._write, sends for a batch with drift).
CREATE FUNCTION record_drift(received_at timestamptz, r_version text[], r_accepted boolean[],
                             d_ord integer[], d_path text[], d_type text[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO catalogue_drift AS c (path, rc_version, json_types, reports, first_seen, last_seen)
    SELECT d.path, coalesce(r_version[d.ord], ''), array_agg(DISTINCT d.type ORDER BY d.type),
           count(DISTINCT d.ord), received_at, received_at
    FROM unnest(d_ord, d_path, d_type) AS d(ord, path, type)
    WHERE r_accepted[d.ord]
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (path, rc_version) DO UPDATE SET
        json_types = ARRAY(SELECT DISTINCT t FROM unnest(c.json_types || EXCLUDED.json_types) AS t ORDER BY t),
        reports = c.reports + EXCLUDED.reports,
        first_seen = least(c.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(c.last_seen, EXCLUDED.last_seen);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
