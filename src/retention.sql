-- retention.sql: retention settings, the purge, the import of historical
-- runs and the maintenance job (docs/retention.md).  History leaves only through wval_purge(), under the
-- transaction-local guard of store.c, and every chained row it removes
-- leaves its link in wval.chain_tombstones so that the chain of what remains
-- still verifies.
--
-- requires: store

------------------------------------------------------------------------------
-- Settings
------------------------------------------------------------------------------

-- Working tables of the purge and of the import.  Definer code never
-- creates or reads a relation through a name the caller could own: a
-- temporary table named like a work table would be the caller's, and its
-- triggers would run with the owner's rights (docs/development.md, "Definer
-- code").  The working rows live in these extension-owned unlogged tables of
-- schema wval, which no role may read or write, keyed by a work id from
-- wval.work_id_seq (store.sql) so that concurrent calls do not meet, and they
-- are deleted before the function returns (never committed).  Not dumped.

CREATE UNLOGGED TABLE wval.work_purge_scope (
    work_id        bigint NOT NULL,
    world_id       text NOT NULL,
    runs_cut       timestamptz,
    versions_cut   timestamptz,
    active_version integer,
    PRIMARY KEY (work_id, world_id)
);
SELECT wval._secure('wval.work_purge_scope');
COMMENT ON TABLE wval.work_purge_scope IS 'working rows of wval_purge: the worlds in scope, with the cut of each table and the active version; deleted before the purge returns';

CREATE UNLOGGED TABLE wval.work_purge_runs (
    work_id    bigint NOT NULL,
    part       oid NOT NULL,
    world_id   text NOT NULL,
    run_id     uuid NOT NULL,
    created_at timestamptz NOT NULL,
    chain_seq  bigint NOT NULL,
    prev_hash  text NOT NULL,
    row_hash   text NOT NULL
);
SELECT wval._secure('wval.work_purge_runs');
CREATE INDEX ON wval.work_purge_runs (work_id, run_id);
COMMENT ON TABLE wval.work_purge_runs IS 'working rows of wval_purge: the runs to purge (part is the tableoid of their partition); deleted before the purge returns';

CREATE UNLOGGED TABLE wval.work_purge_overrides (
    work_id     bigint NOT NULL,
    world_id    text NOT NULL,
    override_id bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
SELECT wval._secure('wval.work_purge_overrides');
CREATE INDEX ON wval.work_purge_overrides (work_id, override_id);
COMMENT ON TABLE wval.work_purge_overrides IS 'working rows of wval_purge: the overrides to purge; deleted before the purge returns';

CREATE UNLOGGED TABLE wval.work_purge_failures (
    work_id     bigint NOT NULL,
    world_id    text NOT NULL,
    entry_id    bigint NOT NULL,
    case_id     uuid NOT NULL,
    recorded_at timestamptz NOT NULL,
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
SELECT wval._secure('wval.work_purge_failures');
CREATE INDEX ON wval.work_purge_failures (work_id, entry_id);
COMMENT ON TABLE wval.work_purge_failures IS 'working rows of wval_purge: the ex-post failure entries to purge; deleted before the purge returns';

CREATE UNLOGGED TABLE wval.work_purge_versions (
    work_id    bigint NOT NULL,
    world_id   text NOT NULL,
    version    integer NOT NULL,
    created_at timestamptz NOT NULL,
    chain_seq  bigint NOT NULL,
    prev_hash  text NOT NULL,
    row_hash   text NOT NULL,
    PRIMARY KEY (work_id, world_id, version)
);
SELECT wval._secure('wval.work_purge_versions');
COMMENT ON TABLE wval.work_purge_versions IS 'working rows of wval_purge: the policy versions to purge; deleted before the purge returns';

CREATE UNLOGGED TABLE wval.work_purge_activations (
    work_id       bigint NOT NULL,
    world_id      text NOT NULL,
    activation_id bigint NOT NULL,
    activated_at  timestamptz NOT NULL,
    chain_seq     bigint NOT NULL,
    prev_hash     text NOT NULL,
    row_hash      text NOT NULL
);
SELECT wval._secure('wval.work_purge_activations');
CREATE INDEX ON wval.work_purge_activations (work_id, activation_id);
COMMENT ON TABLE wval.work_purge_activations IS 'working rows of wval_purge: the policy activations to purge; deleted before the purge returns';

CREATE UNLOGGED TABLE wval.work_purge_returns (
    work_id      bigint NOT NULL,
    world_id     text NOT NULL,
    returns_hash text NOT NULL,
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (work_id, world_id, returns_hash)
);
SELECT wval._secure('wval.work_purge_returns');
COMMENT ON TABLE wval.work_purge_returns IS 'working rows of wval_purge: the stored return series (wval.run_returns) no kept run references; deleted before the purge returns';

-- the runs of one wval_import_runs call, checked and chained before they are
-- stored (the columns of wval.evaluation_runs, chain columns nullable, plus
-- the position in the imported array)
CREATE UNLOGGED TABLE wval.work_import (work_id bigint NOT NULL, LIKE wval.evaluation_runs INCLUDING DEFAULTS, ord bigint NOT NULL);
SELECT wval._secure('wval.work_import');
ALTER TABLE wval.work_import ALTER COLUMN chain_seq DROP NOT NULL, ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN row_hash DROP NOT NULL;
CREATE INDEX ON wval.work_import (work_id, ord);
CREATE INDEX ON wval.work_import (work_id, run_id);
COMMENT ON TABLE wval.work_import IS 'working rows of wval_import_runs: the runs being imported, checked and chained; deleted before the import returns';

CREATE TABLE wval.retention (
    table_name text NOT NULL CHECK (table_name IN ('*', 'evaluation_runs', 'policy_versions', 'live_returns',
                                                   'risk_snapshots', 'events')),
    world_id   text NOT NULL DEFAULT '*',
    -- history at least 90 days; snapshots and the outbox are operational data
    keep       interval NOT NULL CONSTRAINT retention_minimum
                   CHECK (keep >= interval '90 days' OR (table_name IN ('risk_snapshots', 'events') AND keep >= interval '0')),
    CONSTRAINT retention_events_global CHECK (table_name <> 'events' OR world_id = '*'),
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, world_id)
);
SELECT wval._secure('wval.retention');
-- changed only by wval_retention_set (which audits the old and new values)
SELECT wval._protect_in_place('wval.retention');
COMMENT ON TABLE wval.retention IS 'how long data is kept, per table and world (''*'' = every history table / every world); history at least 90 days, the longest applicable setting wins; risk_snapshots and events have defaults of their own (1 day, 7 days). Written by wval_retention_set, audited';
COMMENT ON COLUMN wval.retention.table_name IS 'evaluation_runs (with their rule results, overrides and ex-post cases), policy_versions (with their activations), live_returns, or * for these three; risk_snapshots (with unreferenced blobs) and events (the outbox with its deliveries, every world only) are not covered by *';
COMMENT ON COLUMN wval.retention.keep IS 'rows younger than now() - keep are never purged; at least 90 days for history, at least 0 for risk_snapshots and events';
COMMENT ON COLUMN wval.retention.world_id IS 'a world_id, or * for every world';
COMMENT ON COLUMN wval.retention.updated_by IS 'who made the setting (the actor given to wval_retention_set)';
COMMENT ON COLUMN wval.retention.updated_at IS 'when the setting last changed';

-- wval._retention_keep(table, world): the retention of a table in a world:
-- the longest applicable setting, at least 90 days.
CREATE FUNCTION wval._retention_keep(p_table text, p_world_id text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT greatest(interval '90 days', max(r.keep))
    FROM wval.retention r
    WHERE r.table_name IN (p_table, '*') AND r.world_id IN (coalesce(p_world_id, '*'), '*');
$$;
COMMENT ON FUNCTION wval._retention_keep(text, text) IS 'the retention of a table in a world: the longest applicable wval.retention setting, at least 90 days';

CREATE FUNCTION public.wval_retention_set(table_name text, keep interval, world_id text DEFAULT NULL,
                                          actor text DEFAULT NULL)
RETURNS SETOF wval.retention
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET IntervalStyle = postgres AS $$
DECLARE
    p_world text := coalesce(world_id, '*');
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    old wval.retention;
    r wval.retention;
BEGIN
    PERFORM wval._one_of('table_name', table_name, ARRAY['*', 'evaluation_runs', 'policy_versions', 'live_returns',
                                                         'risk_snapshots', 'events']);
    IF table_name = 'events' AND world_id IS NOT NULL THEN
        RAISE EXCEPTION 'retention of events is set for every world' USING ERRCODE = '22023',
            DETAIL = format('world_id is %s.', world_id),
            HINT = 'The outbox is shared by every world: pass world_id => null.';
    END IF;
    IF keep < interval '0' THEN
        RAISE EXCEPTION 'invalid value for "keep"' USING ERRCODE = '22023',
            DETAIL = format('keep is %s.', keep), HINT = 'Pass a period of zero or more.';
    END IF;
    IF world_id IS NOT NULL THEN
        PERFORM wval._world(world_id);
        PERFORM wval._require_world_access(world_id, 'write');
    END IF;
    IF keep IS NOT NULL AND keep < interval '90 days' AND table_name NOT IN ('risk_snapshots', 'events') THEN
        RAISE EXCEPTION 'retention of % must be at least 90 days', table_name
            USING ERRCODE = 'WV011',
                  DETAIL = format('keep is %s.', keep),
                  HINT = 'History is kept at least 90 days; configure longer periods only.';
    END IF;
    SELECT * INTO old FROM wval.retention x
    WHERE x.table_name = wval_retention_set.table_name AND x.world_id = p_world FOR UPDATE;
    IF keep IS NULL THEN
        DELETE FROM wval.retention x WHERE x.table_name = wval_retention_set.table_name AND x.world_id = p_world;
    ELSE
        INSERT INTO wval.retention AS x (table_name, world_id, keep, updated_by)
        VALUES (wval_retention_set.table_name, p_world, keep, p_actor)
        ON CONFLICT ON CONSTRAINT retention_pkey
        DO UPDATE SET keep = excluded.keep, updated_by = excluded.updated_by, updated_at = now()
        RETURNING * INTO r;
    END IF;
    PERFORM wval._audit(world_id, 'retention_set', p_actor,
                        jsonb_build_object('table_name', table_name, 'world_id', p_world,
                                           'old_keep', old.keep::text, 'keep', keep::text));
    IF r.table_name IS NOT NULL THEN
        RETURN NEXT r;
    END IF;
END
$$;
COMMENT ON FUNCTION public.wval_retention_set(text, interval, text, text) IS 'sets how long a table (evaluation_runs, policy_versions, live_returns or * for these; risk_snapshots, events) is kept in a world (null: every world); history at least 90 days (WV011); keep => null removes the setting; audited';

------------------------------------------------------------------------------
-- The purge
------------------------------------------------------------------------------

-- wval._purge_partitions(parent, candidates, work, dry_run): the monthly
-- partitions of parent whose every row is a purge candidate (candidates is
-- a work table whose column part holds the tableoid of each row, work the
-- work id of the purge); only partitions that hold candidates are counted.
-- Dropped unless dry_run.
CREATE FUNCTION wval._purge_partitions(p_parent text, p_candidates regclass, p_work bigint, p_dry_run boolean) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p record;
    total bigint;
    out jsonb := '[]';
BEGIN
    FOR p IN EXECUTE format(
        'SELECT k.relname, c.n FROM (SELECT part, count(*) AS n FROM %s WHERE work_id = %s GROUP BY part) c
         JOIN pg_class k ON k.oid = c.part
         WHERE k.relname <> %L ORDER BY k.relname', p_candidates, p_work, p_parent || '_default')
    LOOP
        EXECUTE format('SELECT count(*) FROM wval.%I', p.relname) INTO total;
        CONTINUE WHEN p.n <> total;
        IF NOT p_dry_run THEN
            EXECUTE format('ALTER TABLE wval.%I DETACH PARTITION wval.%I', p_parent, p.relname);
            EXECUTE format('DROP TABLE wval.%I', p.relname);
        END IF;
        out := out || jsonb_build_object('partition', 'wval.' || p.relname, 'rows', total, 'dropped', NOT p_dry_run);
    END LOOP;
    RETURN out;
END
$$;
COMMENT ON FUNCTION wval._purge_partitions(text, regclass, bigint, boolean) IS 'the monthly partitions of a history table that hold only purge candidates; detached and dropped unless dry_run';

CREATE FUNCTION public.wval_purge(older_than timestamptz, world_id text DEFAULT NULL, dry_run boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds;
    held text[] := '{}';
    t text;
    keep interval;
    floor_keep interval := wval._retention_keep('*', NULL);
    changed bigint;
    n bigint;
    deleted bigint := 0;
    expected bigint;
    parts jsonb := '[]';
    tables jsonb;
    worlds_report jsonb;
    report jsonb;
    wr record;
    v_work bigint := nextval('wval.work_id_seq');
BEGIN
    IF older_than IS NULL OR dry_run IS NULL THEN
        RAISE EXCEPTION '"%" must not be null', CASE WHEN older_than IS NULL THEN 'older_than' ELSE 'dry_run' END
            USING ERRCODE = '22023',
                  HINT = 'Pass the cut (rows created before it may go) and whether this is a dry run.';
    END IF;
    -- the candidates are re-checked after they are locked (below); with a
    -- transaction snapshot (REPEATABLE READ, SERIALIZABLE) that re-check
    -- could not see an override committed while the purge waited for it
    IF NOT dry_run AND current_setting('transaction_isolation') IN ('repeatable read', 'serializable') THEN
        RAISE EXCEPTION 'wval_purge() removes history only at READ COMMITTED'
            USING ERRCODE = '25000',
                  DETAIL = format('transaction_isolation is %s.', current_setting('transaction_isolation')),
                  HINT = 'Run the purge in a READ COMMITTED transaction (the default), e.g. on its own; a dry run works at any level.';
    END IF;
    IF world_id IS NOT NULL THEN
        w := wval._world(world_id);
        PERFORM wval._require_world_access(w.world_id, 'write');
        IF w.legal_hold THEN
            RAISE EXCEPTION 'world "%" is under legal hold', w.world_id
                USING ERRCODE = 'WV011',
                      DETAIL = 'A world under legal hold is never purged.',
                      HINT = 'Lift the hold first with wval_world_upsert(world_id, legal_hold => false) when the hold ends.';
        END IF;
    ELSIF older_than > now() - floor_keep THEN
        RAISE EXCEPTION 'purge would cut inside the minimum retention'
            USING ERRCODE = 'WV011',
                  DETAIL = format('older_than is %s; history is kept for %s, so the cut may be at most %s.',
                                  older_than, floor_keep, now() - floor_keep),
                  HINT = 'Pass an older_than at or before that time (see wval.retention).';
    END IF;

    -- the worlds in scope, locked against a concurrent change of their hold,
    -- each table with its own cut (a longer retention cuts earlier)
    -- (a purge of every world covers the worlds the calling role may write)
    FOR w IN SELECT * FROM wval.worlds x
             WHERE (wval_purge.world_id IS NULL OR x.world_id = wval_purge.world_id)
               AND wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), x.world_id, 'write')
             ORDER BY x.world_id FOR SHARE
    LOOP
        IF w.legal_hold THEN
            IF wval_purge.world_id IS NOT NULL THEN
                RAISE EXCEPTION 'world "%" is under legal hold', w.world_id USING ERRCODE = 'WV011',
                    DETAIL = 'A world under legal hold is never purged.',
                    HINT = 'Lift the hold first with wval_world_upsert(world_id, legal_hold => false) when the hold ends.';
            END IF;
            held := held || w.world_id;
            CONTINUE;
        END IF;
        IF wval_purge.world_id IS NOT NULL THEN
            FOREACH t IN ARRAY ARRAY['evaluation_runs', 'policy_versions'] LOOP
                keep := wval._retention_keep(t, w.world_id);
                IF older_than > now() - keep THEN
                    RAISE EXCEPTION 'purge would cut inside the retention of % in world "%"', t, w.world_id
                        USING ERRCODE = 'WV011',
                              DETAIL = format('older_than is %s; %s of world %s are kept for %s, so the cut may be at most %s.',
                                              older_than, t, w.world_id, keep, now() - keep),
                              HINT = 'Pass an older_than at or before that time; retention is set with wval_retention_set() and is at least 90 days.';
                END IF;
            END LOOP;
        END IF;
        INSERT INTO wval.work_purge_scope
        VALUES (v_work, w.world_id, least(older_than, now() - wval._retention_keep('evaluation_runs', w.world_id)),
                least(older_than, now() - wval._retention_keep('policy_versions', w.world_id)),
                public.wval_active_policy_version(w.world_id));
    END LOOP;

    -- runs: never the latest of a (world, strategy, stage, kind), one under an
    -- approved override or a case that is not dismissed, the run a strategy's
    -- current stage decision relied on, nor one a kept run links to or
    -- supersedes
    INSERT INTO wval.work_purge_runs (work_id, part, world_id, run_id, created_at, chain_seq, prev_hash, row_hash)
    SELECT v_work, r.tableoid, r.world_id, r.run_id, r.created_at, r.chain_seq, r.prev_hash, r.row_hash
    FROM wval.evaluation_runs r JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = r.world_id
    WHERE r.created_at < s.runs_cut
      AND EXISTS (SELECT 1 FROM wval.evaluation_runs n
                  WHERE n.world_id = r.world_id AND n.strategy_id = r.strategy_id AND n.stage = r.stage
                    AND n.kind = r.kind
                    AND (n.created_at > r.created_at OR (n.created_at = r.created_at AND n.chain_seq > r.chain_seq)))
      AND NOT EXISTS (SELECT 1 FROM wval.current_overrides co WHERE co.run_id = r.run_id AND co.status = 'approved')
      AND NOT EXISTS (SELECT 1 FROM wval.ex_post_cases c WHERE c.run_id = r.run_id AND c.status <> 'dismissed')
      AND NOT EXISTS (SELECT 1 FROM wval.current_stage cs WHERE cs.world_id = r.world_id AND cs.run_id = r.run_id);
    IF NOT dry_run THEN
        -- lock order: the candidate runs' rows first, then the re-check.
        -- wval_override() and wval_record_failure() hold a lock on their run
        -- (wval._run_lock) until they commit: we wait for those in flight,
        -- and the re-check below (a new statement, a new snapshot) sees
        -- what they recorded; those that come later wait for us and then
        -- find the run gone (WV010)
        PERFORM 1 FROM wval.evaluation_runs r JOIN wval.work_purge_runs c
                     ON c.work_id = v_work AND r.world_id = c.world_id AND r.run_id = c.run_id
                        AND r.created_at = c.created_at
        ORDER BY r.world_id, r.run_id
        FOR UPDATE OF r;
        DELETE FROM wval.work_purge_runs c
        WHERE c.work_id = v_work
          AND (EXISTS (SELECT 1 FROM wval.current_overrides co WHERE co.run_id = c.run_id AND co.status = 'approved')
               OR EXISTS (SELECT 1 FROM wval.ex_post_cases x WHERE x.run_id = c.run_id AND x.status <> 'dismissed')
               OR EXISTS (SELECT 1 FROM wval.current_stage cs WHERE cs.world_id = c.world_id AND cs.run_id = c.run_id));
    END IF;
    LOOP
        DELETE FROM wval.work_purge_runs c
        WHERE c.work_id = v_work
          AND EXISTS (SELECT 1 FROM wval.evaluation_runs k
                      WHERE k.world_id = c.world_id AND (k.linked_run_id = c.run_id OR k.supersedes = c.run_id)
                        AND NOT EXISTS (SELECT 1 FROM wval.work_purge_runs c2 WHERE c2.work_id = v_work AND c2.run_id = k.run_id));
        GET DIAGNOSTICS changed = ROW_COUNT;
        EXIT WHEN changed = 0;
    END LOOP;

    INSERT INTO wval.work_purge_overrides (work_id, world_id, override_id, recorded_at, chain_seq, prev_hash, row_hash)
    SELECT v_work, o.world_id, o.override_id, o.recorded_at, o.chain_seq, o.prev_hash, o.row_hash
    FROM wval.overrides o JOIN wval.work_purge_runs c ON c.work_id = v_work AND c.world_id = o.world_id AND c.run_id = o.run_id;

    INSERT INTO wval.work_purge_failures (work_id, world_id, entry_id, case_id, recorded_at, chain_seq, prev_hash, row_hash)
    SELECT v_work, f.world_id, f.entry_id, f.case_id, f.recorded_at, f.chain_seq, f.prev_hash, f.row_hash
    FROM wval.ex_post_failures f JOIN wval.work_purge_runs c ON c.work_id = v_work AND c.world_id = f.world_id AND c.run_id = f.run_id;

    -- stored returns: a series goes when no kept run of its world references it
    INSERT INTO wval.work_purge_returns (work_id, world_id, returns_hash, chain_seq, prev_hash, row_hash)
    SELECT v_work, rr.world_id, rr.returns_hash, rr.chain_seq, rr.prev_hash, rr.row_hash
    FROM wval.run_returns rr JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = rr.world_id
    WHERE rr.stored_at < s.runs_cut
      AND NOT EXISTS (SELECT 1 FROM wval.evaluation_runs k
                      WHERE k.world_id = rr.world_id AND k.returns_hash = rr.returns_hash
                        AND NOT EXISTS (SELECT 1 FROM wval.work_purge_runs c WHERE c.work_id = v_work AND c.run_id = k.run_id));
    IF NOT dry_run THEN
        -- an evaluation storing the same series holds this lock until it
        -- commits (returns.c): wait for those in flight, then re-check (a
        -- new statement sees their runs); later ones find the row gone and
        -- store the series again
        PERFORM pg_advisory_xact_lock(hashtextextended(format('wval:run_returns:%s:%s', c.world_id, c.returns_hash), 0))
        FROM wval.work_purge_returns c WHERE c.work_id = v_work ORDER BY c.world_id, c.returns_hash;
        DELETE FROM wval.work_purge_returns c
        WHERE c.work_id = v_work
          AND EXISTS (SELECT 1 FROM wval.evaluation_runs k
                      WHERE k.world_id = c.world_id AND k.returns_hash = c.returns_hash
                        AND NOT EXISTS (SELECT 1 FROM wval.work_purge_runs c2 WHERE c2.work_id = v_work AND c2.run_id = k.run_id));
    END IF;

    -- policy versions: never the active one, one a kept run references, or
    -- one activated after the cut; with them go their activations
    INSERT INTO wval.work_purge_versions (work_id, world_id, version, created_at, chain_seq, prev_hash, row_hash)
    SELECT v_work, pv.world_id, pv.version, pv.created_at, pv.chain_seq, pv.prev_hash, pv.row_hash
    FROM wval.policy_versions pv JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = pv.world_id
    WHERE pv.created_at < s.versions_cut
      AND pv.version IS DISTINCT FROM s.active_version
      AND NOT EXISTS (SELECT 1 FROM wval.active_policy_versions apv
                      WHERE apv.world_id = pv.world_id AND apv.version = pv.version)
      AND NOT EXISTS (SELECT 1 FROM wval.evaluation_runs r
                      WHERE r.world_id = pv.world_id AND r.policy_version = pv.version
                        AND NOT EXISTS (SELECT 1 FROM wval.work_purge_runs c WHERE c.work_id = v_work AND c.run_id = r.run_id))
      AND NOT EXISTS (SELECT 1 FROM wval.policy_activations a
                      WHERE a.world_id = pv.world_id AND a.version = pv.version AND a.activated_at >= s.versions_cut);

    INSERT INTO wval.work_purge_activations (work_id, world_id, activation_id, activated_at, chain_seq, prev_hash, row_hash)
    SELECT v_work, a.world_id, a.activation_id, a.activated_at, a.chain_seq, a.prev_hash, a.row_hash
    FROM wval.policy_activations a JOIN wval.work_purge_versions v ON v.work_id = v_work AND v.world_id = a.world_id AND v.version = a.version;

    -- the report: per world and table, candidates, what the rules protect and the oldest row kept
    WITH runs AS (
        SELECT r.world_id, count(c.run_id) AS candidates,
               count(*) FILTER (WHERE c.run_id IS NULL AND r.created_at < s.runs_cut) AS protected,
               min(r.created_at) FILTER (WHERE c.run_id IS NULL) AS oldest_kept
        FROM wval.evaluation_runs r JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = r.world_id
        LEFT JOIN wval.work_purge_runs c ON c.work_id = v_work AND c.world_id = r.world_id AND c.run_id = r.run_id AND c.created_at = r.created_at
        GROUP BY r.world_id),
    ovr AS (
        SELECT o.world_id, count(c.override_id) AS candidates, min(o.recorded_at) FILTER (WHERE c.override_id IS NULL) AS oldest_kept
        FROM wval.overrides o JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = o.world_id
        LEFT JOIN wval.work_purge_overrides c ON c.work_id = v_work AND c.world_id = o.world_id AND c.override_id = o.override_id
        GROUP BY o.world_id),
    fail AS (
        SELECT f.world_id, count(c.entry_id) AS candidates, min(f.recorded_at) FILTER (WHERE c.entry_id IS NULL) AS oldest_kept
        FROM wval.ex_post_failures f JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = f.world_id
        LEFT JOIN wval.work_purge_failures c ON c.work_id = v_work AND c.world_id = f.world_id AND c.entry_id = f.entry_id
        GROUP BY f.world_id),
    ver AS (
        SELECT v.world_id, count(c.version) AS candidates,
               count(*) FILTER (WHERE c.version IS NULL AND v.created_at < s.versions_cut) AS protected,
               min(v.created_at) FILTER (WHERE c.version IS NULL) AS oldest_kept
        FROM wval.policy_versions v JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = v.world_id
        LEFT JOIN wval.work_purge_versions c ON c.work_id = v_work AND c.world_id = v.world_id AND c.version = v.version
        GROUP BY v.world_id),
    act AS (
        SELECT a.world_id, count(c.activation_id) AS candidates, min(a.activated_at) FILTER (WHERE c.activation_id IS NULL) AS oldest_kept
        FROM wval.policy_activations a JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = a.world_id
        LEFT JOIN wval.work_purge_activations c ON c.work_id = v_work AND c.world_id = a.world_id AND c.activation_id = a.activation_id
        GROUP BY a.world_id),
    ret AS (
        SELECT rr.world_id, count(c.returns_hash) AS candidates, min(rr.stored_at) FILTER (WHERE c.returns_hash IS NULL) AS oldest_kept
        FROM wval.run_returns rr JOIN wval.work_purge_scope s ON s.work_id = v_work AND s.world_id = rr.world_id
        LEFT JOIN wval.work_purge_returns c ON c.work_id = v_work AND c.world_id = rr.world_id AND c.returns_hash = rr.returns_hash
        GROUP BY rr.world_id)
    SELECT coalesce(jsonb_object_agg(s.world_id, jsonb_build_object(
               'runs_cut', s.runs_cut, 'versions_cut', s.versions_cut,
               'tables', jsonb_build_object(
                   'evaluation_runs', jsonb_build_object('candidates', coalesce(runs.candidates, 0), 'deleted', 0,
                                                         'protected', coalesce(runs.protected, 0), 'oldest_kept', runs.oldest_kept),
                   'overrides', jsonb_build_object('candidates', coalesce(ovr.candidates, 0), 'deleted', 0,
                                                   'oldest_kept', ovr.oldest_kept),
                   'ex_post_failures', jsonb_build_object('candidates', coalesce(fail.candidates, 0), 'deleted', 0,
                                                          'oldest_kept', fail.oldest_kept),
                   'policy_versions', jsonb_build_object('candidates', coalesce(ver.candidates, 0), 'deleted', 0,
                                                         'protected', coalesce(ver.protected, 0), 'oldest_kept', ver.oldest_kept),
                   'policy_activations', jsonb_build_object('candidates', coalesce(act.candidates, 0), 'deleted', 0,
                                                            'oldest_kept', act.oldest_kept),
                   'run_returns', jsonb_build_object('candidates', coalesce(ret.candidates, 0), 'deleted', 0,
                                                     'oldest_kept', ret.oldest_kept)))), '{}')
    INTO worlds_report
    FROM wval.work_purge_scope s
    LEFT JOIN runs ON runs.world_id = s.world_id
    LEFT JOIN ovr ON ovr.world_id = s.world_id LEFT JOIN fail ON fail.world_id = s.world_id
    LEFT JOIN ver ON ver.world_id = s.world_id LEFT JOIN act ON act.world_id = s.world_id
    LEFT JOIN ret ON ret.world_id = s.world_id
    WHERE s.work_id = v_work;

    IF NOT dry_run THEN
        -- every chained row that goes leaves its link behind
        INSERT INTO wval.chain_tombstones (world_id, chain_seq, table_name, prev_hash, row_hash)
        SELECT x.world_id, x.chain_seq, 'evaluation_runs', x.prev_hash, x.row_hash FROM wval.work_purge_runs x WHERE x.work_id = v_work
        UNION ALL SELECT x.world_id, x.chain_seq, 'overrides', x.prev_hash, x.row_hash FROM wval.work_purge_overrides x WHERE x.work_id = v_work
        UNION ALL SELECT x.world_id, x.chain_seq, 'ex_post_failures', x.prev_hash, x.row_hash FROM wval.work_purge_failures x WHERE x.work_id = v_work
        UNION ALL SELECT x.world_id, x.chain_seq, 'policy_versions', x.prev_hash, x.row_hash FROM wval.work_purge_versions x WHERE x.work_id = v_work
        UNION ALL SELECT x.world_id, x.chain_seq, 'policy_activations', x.prev_hash, x.row_hash FROM wval.work_purge_activations x WHERE x.work_id = v_work
        UNION ALL SELECT x.world_id, x.chain_seq, 'run_returns', x.prev_hash, x.row_hash FROM wval.work_purge_returns x WHERE x.work_id = v_work;
    END IF;

    -- whole months first (detach and drop), then row by row under the guard
    parts := wval._purge_partitions('evaluation_runs', 'wval.work_purge_runs', v_work, dry_run);
    IF NOT dry_run THEN
        SELECT coalesce(sum((p ->> 'rows')::bigint), 0) INTO deleted FROM jsonb_array_elements(parts) p;
        PERFORM wval._purge_guard(true);
        DELETE FROM wval.evaluation_runs r USING wval.work_purge_runs c
        WHERE c.work_id = v_work AND r.world_id = c.world_id AND r.run_id = c.run_id AND r.created_at = c.created_at;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.overrides o USING wval.work_purge_overrides c
        WHERE c.work_id = v_work AND o.world_id = c.world_id AND o.override_id = c.override_id;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.ex_post_failures f USING wval.work_purge_failures c
        WHERE c.work_id = v_work AND f.world_id = c.world_id AND f.case_id = c.case_id AND f.entry_id = c.entry_id;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.policy_activations a USING wval.work_purge_activations c
        WHERE c.work_id = v_work AND a.world_id = c.world_id AND a.activation_id = c.activation_id;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.policy_versions v USING wval.work_purge_versions c
        WHERE c.work_id = v_work AND v.world_id = c.world_id AND v.version = c.version;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.run_returns rr USING wval.work_purge_returns c
        WHERE c.work_id = v_work AND rr.world_id = c.world_id AND rr.returns_hash = c.returns_hash;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        PERFORM wval._purge_guard(false);

        -- what went is exactly what the report promised
        SELECT (SELECT count(*) FROM wval.work_purge_runs x WHERE x.work_id = v_work)
               + (SELECT count(*) FROM wval.work_purge_overrides x WHERE x.work_id = v_work)
               + (SELECT count(*) FROM wval.work_purge_failures x WHERE x.work_id = v_work)
               + (SELECT count(*) FROM wval.work_purge_activations x WHERE x.work_id = v_work)
               + (SELECT count(*) FROM wval.work_purge_versions x WHERE x.work_id = v_work)
               + (SELECT count(*) FROM wval.work_purge_returns x WHERE x.work_id = v_work)
        INTO expected;
        IF deleted <> expected THEN
            RAISE EXCEPTION 'purge removed % rows where % were selected', deleted, expected
                USING ERRCODE = 'XX000', HINT = 'Nothing was removed (the transaction is rolled back); run the purge again.';
        END IF;
        SELECT jsonb_object_agg(x.key, jsonb_set(x.value, '{tables}',
                   (SELECT jsonb_object_agg(tt.key, jsonb_set(tt.value, '{deleted}', tt.value -> 'candidates'))
                    FROM jsonb_each(x.value -> 'tables') tt)))
        INTO worlds_report FROM jsonb_each(worlds_report) x;
        worlds_report := coalesce(worlds_report, '{}');
    END IF;

    -- the working rows go before anything is committed
    DELETE FROM wval.work_purge_scope x WHERE x.work_id = v_work;
    DELETE FROM wval.work_purge_runs x WHERE x.work_id = v_work;
    DELETE FROM wval.work_purge_overrides x WHERE x.work_id = v_work;
    DELETE FROM wval.work_purge_failures x WHERE x.work_id = v_work;
    DELETE FROM wval.work_purge_versions x WHERE x.work_id = v_work;
    DELETE FROM wval.work_purge_activations x WHERE x.work_id = v_work;
    DELETE FROM wval.work_purge_returns x WHERE x.work_id = v_work;

    report := jsonb_build_object('older_than', older_than, 'world_id', world_id, 'dry_run', dry_run,
                                 'worlds', worlds_report, 'legal_hold_skipped', to_jsonb(held),
                                 'partitions', parts);
    IF NOT dry_run THEN
        FOR wr IN SELECT x.key, x.value FROM jsonb_each(worlds_report) x ORDER BY x.key LOOP
            PERFORM wval._audit(wr.key, 'purge', wval._invoker(),
                                jsonb_build_object('older_than', older_than) || wr.value);
        END LOOP;
        IF jsonb_array_length(parts) > 0 THEN
            PERFORM wval._audit(NULL, 'partitions_dropped', wval._invoker(),
                                jsonb_build_object('older_than', older_than, 'partitions', parts));
        END IF;
    END IF;
    RETURN report;
END
$$;
COMMENT ON FUNCTION public.wval_purge(timestamptz, text, boolean) IS 'removes history created before older_than (dry run by default): never the latest run per (world, strategy, stage, kind), runs under an approved override or a case that is not dismissed, runs a kept run links to or supersedes, policy versions a kept run references, or stored returns (wval.run_returns) a kept run references; WV011 inside the retention or under a legal hold; drops whole monthly partitions when all their rows go; leaves chain tombstones; audited; returns a report per world and table (candidates, deleted, protected, oldest_kept)';

------------------------------------------------------------------------------
-- Import of historical runs
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_import_runs(runs jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    e record;
    x jsonb;
    at text;
    ts timestamptz;
    rid uuid;
    crid text;
    m date;
    n integer;
    missing text;
    months jsonb;
    wid text;
    rec record;
    cseq bigint;
    prev text;
    ords bigint[];
    seqs bigint[];
    prevs text[];
    hashes text[];
    v_work bigint := nextval('wval.work_id_seq');
BEGIN
    IF runs IS NULL OR jsonb_typeof(runs) <> 'array' THEN
        RAISE EXCEPTION '"runs" must be a JSON array' USING ERRCODE = '22023',
            HINT = 'Pass [{"world_id", "strategy_id", "created_at", "status", "metrics", ...}, ...] (docs/retention.md).';
    END IF;
    -- check every element first: nothing is imported when one is wrong
    FOR e IN SELECT r.value AS v, r.ordinality - 1 AS i FROM jsonb_array_elements(runs) WITH ORDINALITY r LOOP
        x := e.v;
        IF jsonb_typeof(x) <> 'object' THEN
            RAISE EXCEPTION '"runs[%]" must be an object', e.i USING ERRCODE = '22023',
                HINT = 'Each run is an object {"world_id", "strategy_id", "created_at", "status", "metrics", ...}.';
        END IF;
        SELECT string_agg(k, ', ') INTO missing
        FROM unnest(ARRAY['world_id', 'strategy_id', 'created_at', 'status', 'metrics']) k
        WHERE x -> k IS NULL OR jsonb_typeof(x -> k) = 'null';
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '"runs[%]" lacks %', e.i, missing USING ERRCODE = '22023',
                DETAIL = format('runs[%s] is %s.', e.i, left(x::text, 200)),
                HINT = 'Each imported run needs world_id, strategy_id, created_at, status and metrics.';
        END IF;
        PERFORM wval._ident(format('runs[%s].world_id', e.i), x ->> 'world_id');
        PERFORM wval._ident(format('runs[%s].strategy_id', e.i), x ->> 'strategy_id');
        IF jsonb_typeof(x -> 'created_by') = 'string' THEN
            PERFORM wval._ident(format('runs[%s].created_by', e.i), x ->> 'created_by');
        END IF;
        PERFORM wval._one_of(format('runs[%s].stage', e.i), coalesce(x ->> 'stage', 'backtest'),
                             wval._stages());
        PERFORM wval._one_of(format('runs[%s].kind', e.i), coalesce(x ->> 'kind', 'single'),
                             ARRAY['single', 'cohort', 'live', 'portfolio', 'stress', 'revalidation']);
        PERFORM wval._one_of(format('runs[%s].status', e.i), x ->> 'status', ARRAY['pass', 'warn', 'fail', 'unvalidated']);
        IF x ? 'recommended_stage' AND jsonb_typeof(x -> 'recommended_stage') <> 'null' THEN
            PERFORM wval._one_of(format('runs[%s].recommended_stage', e.i), x ->> 'recommended_stage',
                                 wval._recommended_stages());
        END IF;
        IF jsonb_typeof(x -> 'metrics') <> 'object' OR (x ? 'results' AND jsonb_typeof(x -> 'results') NOT IN ('object', 'null')) THEN
            RAISE EXCEPTION '"runs[%].%" must be an object', e.i,
                            CASE WHEN jsonb_typeof(x -> 'metrics') <> 'object' THEN 'metrics' ELSE 'results' END
                USING ERRCODE = '22023', HINT = 'metrics are metric blocks, results map check keys to RuleResults.';
        END IF;
        -- each result is a RuleResult that wval.rule_results can show (the
        -- view's defaults stand in for a missing severity, owner, reason_code)
        SELECT k.key INTO missing
        FROM jsonb_each(CASE WHEN jsonb_typeof(x -> 'results') = 'object' THEN x -> 'results' ELSE '{}' END) k
        WHERE jsonb_typeof(k.value) <> 'object'
           OR coalesce(k.value ->> 'status', '') NOT IN ('pass', 'warn', 'fail')
           OR coalesce(k.value ->> 'severity', 'blocking') NOT IN ('blocking', 'soft', 'info')
           OR coalesce(k.value ->> 'owner', 'quant') NOT IN ('quant', 'risk', 'ops')
           OR jsonb_typeof(coalesce(k.value -> 'tags', '[]')) <> 'array'
        ORDER BY k.key LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '"runs[%].results" has an invalid result "%"', e.i, missing USING ERRCODE = '22023',
                DETAIL = format('%s is %s.', missing, left((x -> 'results' -> missing)::text, 200)),
                HINT = 'A result is an object with status pass, warn or fail, optional severity (blocking, soft, info), owner (quant, risk, ops), reason_code, reason, tags (an array) and details.';
        END IF;
        at := x ->> 'created_at';
        BEGIN
            ts := at::timestamptz;
            rid := CASE WHEN x ->> 'run_id' ~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$' THEN (x ->> 'run_id')::uuid END;
            PERFORM (x ->> 'policy_version')::integer, (x ->> 'linked_run_id')::uuid, (x ->> 'supersedes')::uuid,
                    (x ->> 'as_of')::date;
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION '"runs[%]" has a value of the wrong type', e.i USING ERRCODE = '22023',
                DETAIL = format('created_at is %s, run_id is %s, policy_version is %s, linked_run_id is %s, supersedes is %s, as_of is %s.',
                                coalesce(quote_literal(at), 'null'), coalesce(x ->> 'run_id', 'null'),
                                coalesce(x ->> 'policy_version', 'null'), coalesce(x ->> 'linked_run_id', 'null'),
                                coalesce(x ->> 'supersedes', 'null'), coalesce(x ->> 'as_of', 'null')),
                HINT = 'created_at is an ISO-8601 timestamp, run_id a uuid (or your own id, kept as client_run_id), policy_version an integer, linked_run_id and supersedes uuids, as_of a date.';
        END;
        IF ts > now() THEN
            RAISE EXCEPTION '"runs[%].created_at" is in the future', e.i USING ERRCODE = '22023',
                DETAIL = format('created_at is %s.', at), HINT = 'Import runs that already happened.';
        END IF;
        crid := coalesce(x ->> 'client_run_id', CASE WHEN rid IS NULL THEN x ->> 'run_id' END);
        INSERT INTO wval.work_import (work_id, run_id, world_id, strategy_id, stage, kind, campaign_id, risk_tier,
                                         model_card_version, code_hash, data_snapshot, context, client_run_id,
                                         returns_hash, metrics, policy_version, ruleset_hash, profile, status,
                                         recommended_stage, recommendation, results, linked_run_id, supersedes,
                                         as_of, created_by, created_at, ord)
        VALUES (v_work, coalesce(rid, gen_random_uuid()), x ->> 'world_id', x ->> 'strategy_id', coalesce(x ->> 'stage', 'backtest'),
                coalesce(x ->> 'kind', 'single'), x ->> 'campaign_id', x ->> 'risk_tier', x ->> 'model_card_version',
                x ->> 'code_hash', nullif(x -> 'data_snapshot', 'null'),
                coalesce(nullif(x -> 'context', 'null'), '{}') || jsonb_build_object('imported', true),
                crid, x ->> 'returns_hash', x -> 'metrics', (x ->> 'policy_version')::integer, x ->> 'ruleset_hash',
                x ->> 'profile', x ->> 'status', x ->> 'recommended_stage', nullif(x -> 'recommendation', 'null'),
                coalesce(nullif(x -> 'results', 'null'), '{}'), (x ->> 'linked_run_id')::uuid,
                (x ->> 'supersedes')::uuid, (x ->> 'as_of')::date,
                coalesce(x ->> 'created_by', wval._invoker()), ts, e.i);
    END LOOP;

    SELECT string_agg(DISTINCT i.world_id, ', ') INTO missing
    FROM wval.work_import i WHERE i.work_id = v_work AND NOT EXISTS (SELECT 1 FROM wval.worlds w WHERE w.world_id = i.world_id);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'world "%" does not exist', missing USING ERRCODE = 'WV010',
            HINT = 'Create the worlds first with wval_world_upsert(); nothing was imported.';
    END IF;

    -- a run already stored (same run_id, or same world/strategy/client_run_id)
    -- or given twice is skipped
    ANALYZE wval.work_import;
    DELETE FROM wval.work_import i
    WHERE i.work_id = v_work
      AND (i.ord IN (SELECT d.ord
                    FROM (SELECT j.ord, row_number() OVER (PARTITION BY j.run_id ORDER BY j.ord) AS by_id
                          FROM wval.work_import j WHERE j.work_id = v_work) d
                    WHERE d.by_id > 1)
       OR i.ord IN (SELECT d.ord
                    FROM (SELECT j.ord, row_number() OVER (PARTITION BY j.world_id, j.strategy_id, j.client_run_id
                                                           ORDER BY j.ord) AS by_client
                          FROM wval.work_import j WHERE j.work_id = v_work AND j.client_run_id IS NOT NULL) d
                    WHERE d.by_client > 1)
       OR i.run_id IN (SELECT r.run_id FROM wval.evaluation_runs r JOIN wval.work_import j ON j.work_id = v_work AND j.run_id = r.run_id)
       OR i.ord IN (SELECT j.ord FROM wval.evaluation_runs r JOIN wval.work_import j
                      ON j.work_id = v_work AND j.client_run_id IS NOT NULL AND r.client_run_id = j.client_run_id
                     AND r.world_id = j.world_id AND r.strategy_id = j.strategy_id));

    -- the months get their partitions before any row arrives
    months := '[]';
    FOR m IN SELECT DISTINCT date_trunc('month', i.created_at AT TIME ZONE 'UTC')::date FROM wval.work_import i WHERE i.work_id = v_work ORDER BY 1 LOOP
        months := months || jsonb_build_object('month', to_char(m, 'YYYY-MM'),
                                               'evaluation_runs', wval._month_partition('wval.evaluation_runs', m, true));
    END LOOP;

    -- chained in import order (the order of the array).  The links are
    -- computed here, one world at a time under the lock of its chain head
    -- (lane 0), and the head moves once: the chain trigger, which moves the
    -- head for every row, would make a large import quadratic (every update
    -- of the head row in one transaction lengthens its version chain).  Rows
    -- that arrive with their links set are accepted from the extension owner.
    FOR wid IN SELECT DISTINCT i.world_id FROM wval.work_import i WHERE i.work_id = v_work ORDER BY 1 LOOP
        PERFORM wval._require_world_access(wid, 'write');
        INSERT INTO wval.chain_heads (world_id, lane, seq, prev_hash, head_hash)
        VALUES (wid, 0, 0, 'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64))
        ON CONFLICT (world_id, lane) DO NOTHING;
        SELECT h.seq, h.head_hash INTO cseq, prev FROM wval.chain_heads h WHERE h.world_id = wid AND h.lane = 0 FOR UPDATE;
        ords := '{}'; seqs := '{}'; prevs := '{}'; hashes := '{}';
        FOR rec IN
            SELECT i.ord, jsonb_populate_record(NULL::wval.evaluation_runs, to_jsonb(i) - 'ord' - 'work_id') AS r
            FROM wval.work_import i WHERE i.work_id = v_work AND i.world_id = wid ORDER BY i.ord
        LOOP
            cseq := cseq + 1;
            ords := ords || rec.ord;
            seqs := seqs || cseq;
            prevs := prevs || prev;
            prev := wval._row_hash('evaluation_runs', cseq, prev, rec.r);
            hashes := hashes || prev;
        END LOOP;
        UPDATE wval.work_import i SET chain_seq = u.seq, prev_hash = u.prev, row_hash = u.hash
        FROM unnest(ords, seqs, prevs, hashes) AS u(ord, seq, prev, hash)
        WHERE i.work_id = v_work AND i.ord = u.ord;
        UPDATE wval.chain_heads h SET seq = cseq, prev_hash = prevs[cardinality(prevs)], head_hash = prev,
                                      updated_at = now()
        WHERE h.world_id = wid AND h.lane = 0;
    END LOOP;
    -- the runs with their links (and results: wval.rule_results derives its
    -- rows from them), in import order, no event (run.c)
    n := 0;
    FOR rec IN
        SELECT jsonb_populate_record(NULL::wval.evaluation_runs, to_jsonb(i) - 'ord' - 'work_id') AS r
        FROM wval.work_import i WHERE i.work_id = v_work ORDER BY i.ord
    LOOP
        PERFORM wval._store_run(rec.r, false);
        n := n + 1;
    END LOOP;

    PERFORM wval._audit(x.world_id, 'runs_imported', wval._invoker(),
                        jsonb_build_object('runs', x.runs, 'first_created_at', x.first_at, 'last_created_at', x.last_at,
                                           'months', months))
    FROM (SELECT i.world_id, count(*) AS runs, min(i.created_at) AS first_at, max(i.created_at) AS last_at
          FROM wval.work_import i WHERE i.work_id = v_work GROUP BY i.world_id ORDER BY i.world_id) x;
    DELETE FROM wval.work_import i WHERE i.work_id = v_work;
    RETURN n;
END
$$;
COMMENT ON FUNCTION public.wval_import_runs(jsonb) IS 'admin only: loads historical runs with their original created_at (and metrics, status, policy_version, results, ...); append-only and hash-chained in import order; creates the monthly partitions of the imported months first; skips runs already stored; no events; audited per world; returns the number of runs imported';

------------------------------------------------------------------------------
-- Bounded storage: the prune of operational data
------------------------------------------------------------------------------

-- wval._storage_keep(table, world): how long the storage prune keeps a
-- table in a world.  live_returns is history (at least 90 days, '*'
-- applies); risk_snapshots (default 1 day) and events (default 7 days)
-- take only settings that name them.
CREATE FUNCTION wval._storage_keep(p_table text, p_world_id text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT CASE WHEN p_table IN ('risk_snapshots', 'events')
                THEN coalesce((SELECT max(r.keep) FROM wval.retention r
                               WHERE r.table_name = p_table AND r.world_id IN (coalesce(p_world_id, '*'), '*')),
                              CASE p_table WHEN 'events' THEN interval '7 days' ELSE interval '1 day' END)
                ELSE wval._retention_keep(p_table, p_world_id) END;
$$;
COMMENT ON FUNCTION wval._storage_keep(text, text) IS 'how long the storage prune keeps a table in a world: live_returns like history (at least 90 days); risk_snapshots and events only settings naming them, else 1 day / 7 days';

-- wval._compact_tombstones(world): merges consecutive tombstones of a
-- world's chain (each link, or range, whose chain_seq follows the previous
-- one's end) into one range tombstone: prev_hash of the first, row_hash of
-- the last.  The chain verifies exactly as before (wval_chain_problems
-- walks a range as one link), and a steady prune keeps the table flat.
-- Runs under the retention guard of the caller.  Returns the tombstones
-- removed by merging.
CREATE FUNCTION wval._compact_tombstones(p_world_id text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    WITH t AS (
        SELECT s.*, coalesce(s.last_seq, s.chain_seq) AS end_seq,
               CASE WHEN s.chain_seq = lag(coalesce(s.last_seq, s.chain_seq)) OVER w + 1 THEN 0 ELSE 1 END AS starts
        FROM wval.chain_tombstones s WHERE s.world_id = p_world_id
        WINDOW w AS (ORDER BY s.chain_seq)),
    i AS (SELECT t.*, sum(t.starts) OVER (ORDER BY t.chain_seq) AS island FROM t),
    g AS (SELECT i.island, min(i.chain_seq) AS first_seq, max(i.end_seq) AS last_seq,
                 (array_agg(i.prev_hash ORDER BY i.chain_seq))[1] AS prev_hash,
                 (array_agg(i.row_hash ORDER BY i.chain_seq DESC))[1] AS row_hash,
                 CASE WHEN count(DISTINCT i.table_name) = 1 THEN min(i.table_name) ELSE '*' END AS table_name,
                 max(i.purged_at) AS purged_at
          FROM i GROUP BY i.island HAVING count(*) > 1),
    gone AS (
        DELETE FROM wval.chain_tombstones s USING g
        WHERE s.world_id = p_world_id AND s.chain_seq BETWEEN g.first_seq AND g.last_seq
        RETURNING s.chain_seq),
    put AS (
        INSERT INTO wval.chain_tombstones (world_id, chain_seq, table_name, prev_hash, row_hash, purged_at, last_seq)
        SELECT p_world_id, g.first_seq, g.table_name, g.prev_hash, g.row_hash, g.purged_at, g.last_seq FROM g
        RETURNING 1)
    SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM put) INTO n;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._compact_tombstones(text) IS 'merges consecutive tombstones of a world''s chain into range tombstones (chain_seq .. last_seq); the chain verifies as before; needs the retention guard; returns the tombstones removed';

-- wval._storage_prune(now): the prune of the maintenance job, as of the
-- time given (the job passes now(); tests and the benchmark a later time).
-- Per world (worlds under legal hold are skipped): risk snapshots received
-- before now - keep (never less than wval.snapshot_max_age), except the
-- latest of each stage and every snapshot a stored run references
-- (data_snapshot.risk_snapshot.version); then the world's blobs that no
-- remaining snapshot references and that are older than that cut; live
-- returns of days before now - keep (at least 90 days, never less than the
-- longest live window of the active policy).  Chained rows leave
-- tombstones, which are compacted; the outbox goes through
-- wval_bus_prune(events keep).  Returns the report, also audited.
CREATE FUNCTION wval._storage_prune(p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds;
    held text[] := '{}';
    snap_cut timestamptz;
    live_cut date;
    v integer;
    longest integer;
    n_snap bigint;
    n_blob bigint;
    n_live bigint;
    n_comp bigint;
    kept_ref bigint;
    worlds jsonb := '{}';
    tot jsonb := jsonb_build_object('risk_snapshots', 0, 'blobs', 0, 'live_returns', 0, 'chain_tombstones', 0,
                                    'risk_snapshots_referenced', 0);
    bus jsonb;
    report jsonb;
BEGIN
    IF p_now IS NULL OR NOT isfinite(p_now) OR p_now < now() THEN
        RAISE EXCEPTION 'invalid value for "now"' USING ERRCODE = '22023',
            DETAIL = format('now is %s.', coalesce(p_now::text, 'null')),
            HINT = 'Prune as of now() or a later time.';
    END IF;
    -- the blob check after the blob lock must see snapshots committed while
    -- we waited: a new snapshot per statement
    IF current_setting('transaction_isolation') IN ('repeatable read', 'serializable') THEN
        RAISE EXCEPTION 'the storage prune runs only at READ COMMITTED' USING ERRCODE = '25000',
            DETAIL = format('transaction_isolation is %s.', current_setting('transaction_isolation')),
            HINT = 'Run it in a READ COMMITTED transaction (the default), e.g. on its own.';
    END IF;
    FOR w IN SELECT * FROM wval.worlds x ORDER BY x.world_id FOR SHARE LOOP
        IF w.legal_hold THEN
            held := held || w.world_id;
            CONTINUE;
        END IF;
        snap_cut := p_now - greatest(wval._storage_keep('risk_snapshots', w.world_id), wval._snapshot_max_age());
        PERFORM wval._purge_guard(true);
        -- risk snapshots: old ones that are neither the latest of their stage
        -- nor referenced by a stored run
        WITH cand AS (
            SELECT s.snapshot_id, s.chain_seq, s.prev_hash, s.row_hash
            FROM wval.risk_snapshots s
            WHERE s.world_id = w.world_id AND s.received_at < snap_cut
              AND s.snapshot_id <> ALL (ARRAY(
                    SELECT DISTINCT ON (l.stage) l.snapshot_id FROM wval.risk_snapshots l
                    WHERE l.world_id = w.world_id ORDER BY l.stage, l.as_of DESC, l.snapshot_id DESC))
              AND s.version <> ALL (ARRAY(
                    SELECT r.data_snapshot #>> '{risk_snapshot,version}' FROM wval.evaluation_runs r
                    WHERE r.world_id = w.world_id AND r.data_snapshot ? 'risk_snapshot'
                      AND r.data_snapshot #>> '{risk_snapshot,version}' IS NOT NULL))
            FOR UPDATE OF s),
        tomb AS (
            INSERT INTO wval.chain_tombstones (world_id, chain_seq, table_name, prev_hash, row_hash)
            SELECT w.world_id, c.chain_seq, 'risk_snapshots', c.prev_hash, c.row_hash FROM cand c
            RETURNING 1),
        gone AS (
            DELETE FROM wval.risk_snapshots s USING cand c
            WHERE s.world_id = w.world_id AND s.snapshot_id = c.snapshot_id
            RETURNING 1)
        SELECT (SELECT count(*) FROM gone) INTO n_snap;
        SELECT count(*) INTO kept_ref FROM wval.risk_snapshots s
        WHERE s.world_id = w.world_id AND s.received_at < snap_cut;

        -- blobs no snapshot references.  Publishers of the world hold this
        -- lock shared from before they resolve blob references until they
        -- commit (hub.c), so a snapshot that is about to reference a blob
        -- is visible here, or waits and then stores the blob again
        PERFORM pg_advisory_xact_lock(hashtextextended('wval:blobs:' || w.world_id, 0));
        DELETE FROM wval.blobs b
        WHERE b.world_id = w.world_id AND b.created_at < snap_cut
          AND NOT EXISTS (SELECT 1 FROM wval.risk_snapshots s
                          WHERE s.world_id = b.world_id AND ('wval-blob:' || b.blob_hash) = ANY (s.blob_refs));
        GET DIAGNOSTICS n_blob = ROW_COUNT;

        -- live returns: never within the longest live window of the policy active at live
        v := public.wval_active_policy_version(w.world_id, 'live');
        longest := 0;
        IF v IS NOT NULL THEN
            SELECT coalesce(max(x::integer), 0) INTO longest
            FROM jsonb_array_elements_text(wval._live_policy(w.world_id, v, wval._fail_closed(w)) -> 'windows_days') x;
        END IF;
        live_cut := (p_now AT TIME ZONE 'UTC')::date
                    - greatest(extract(epoch FROM wval._storage_keep('live_returns', w.world_id)) / 86400, longest + 1)::integer;
        WITH cand AS (
            SELECT lr.strategy_id, lr.day, lr.entry_id, lr.chain_seq, lr.prev_hash, lr.row_hash
            FROM wval.live_returns lr WHERE lr.world_id = w.world_id AND lr.day < live_cut),
        tomb AS (
            INSERT INTO wval.chain_tombstones (world_id, chain_seq, table_name, prev_hash, row_hash)
            SELECT w.world_id, c.chain_seq, 'live_returns', c.prev_hash, c.row_hash FROM cand c
            RETURNING 1),
        gone AS (
            DELETE FROM wval.live_returns lr USING cand c
            WHERE lr.world_id = w.world_id AND lr.strategy_id = c.strategy_id AND lr.day = c.day AND lr.entry_id = c.entry_id
            RETURNING 1)
        SELECT count(*) INTO n_live FROM gone;

        n_comp := 0;
        IF n_snap + n_live > 0 THEN
            n_comp := wval._compact_tombstones(w.world_id);
        END IF;
        PERFORM wval._purge_guard(false);

        IF n_snap + n_blob + n_live + n_comp > 0 THEN
            worlds := worlds || jsonb_build_object(w.world_id, jsonb_build_object(
                'risk_snapshots', jsonb_build_object('deleted', n_snap, 'cut', snap_cut, 'kept_referenced_or_latest', kept_ref),
                'blobs', jsonb_build_object('deleted', n_blob),
                'live_returns', jsonb_build_object('deleted', n_live, 'cut_day', live_cut, 'longest_window_days', longest),
                'chain_tombstones', jsonb_build_object('merged', n_comp)));
            PERFORM wval._audit(w.world_id, 'storage_pruned', current_user, worlds -> w.world_id);
        END IF;
        tot := jsonb_build_object('risk_snapshots', (tot ->> 'risk_snapshots')::bigint + n_snap,
                                  'risk_snapshots_referenced', (tot ->> 'risk_snapshots_referenced')::bigint + kept_ref,
                                  'blobs', (tot ->> 'blobs')::bigint + n_blob,
                                  'live_returns', (tot ->> 'live_returns')::bigint + n_live,
                                  'chain_tombstones', (tot ->> 'chain_tombstones')::bigint + n_comp);
    END LOOP;

    -- the outbox: events every group finished, older than the events keep
    bus := public.wval_bus_prune(greatest(wval._storage_keep('events', NULL) - (p_now - now()), interval '0'));

    report := jsonb_build_object(
        'now', p_now, 'legal_hold_skipped', to_jsonb(held),
        'tables', jsonb_build_object(
            'events', jsonb_build_object('deleted', bus -> 'events_deleted', 'keep', wval._storage_keep('events', NULL)::text,
                                         'oldest_kept', bus -> 'oldest_kept'),
            'deliveries', jsonb_build_object('deleted', bus -> 'deliveries_deleted'),
            'risk_snapshots', jsonb_build_object('deleted', tot -> 'risk_snapshots',
                                                 'kept_referenced_or_latest', tot -> 'risk_snapshots_referenced'),
            'blobs', jsonb_build_object('deleted', tot -> 'blobs'),
            'live_returns', jsonb_build_object('deleted', tot -> 'live_returns'),
            'chain_tombstones', jsonb_build_object('merged', tot -> 'chain_tombstones')),
        'worlds', worlds);
    RETURN report;
END
$$;
COMMENT ON FUNCTION wval._storage_prune(timestamptz) IS 'the storage prune of the maintenance job as of a time (now() or later): risk snapshots (not the latest per stage, not referenced by a run), unreferenced blobs, live returns (never within the longest live window), the outbox (wval_bus_prune), tombstone compaction; worlds under legal hold skipped; returns the report per table and world';

CREATE FUNCTION public.wval_storage_prune() RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._storage_prune(now());
$$;
COMMENT ON FUNCTION public.wval_storage_prune() IS 'admin: runs the storage prune of the maintenance job now (outbox and deliveries, risk snapshots, unreferenced blobs, live returns per wval.retention; tombstones compacted); returns the report per table and world';

------------------------------------------------------------------------------
-- The maintenance job
------------------------------------------------------------------------------

-- wval._maintenance(months_ahead): what the job wval:maintenance runs:
-- partitions ahead, and the trim of pg_cron's run history where the
-- installed wval has it.
CREATE FUNCTION wval._maintenance(months_ahead integer DEFAULT 3) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    out jsonb := jsonb_build_object('partitions', public.wval_maintain(months_ahead),
                                    'storage', wval._storage_prune(now()));
    trimmed text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc p
               WHERE p.pronamespace = 'wval'::regnamespace AND p.proname = '_trim_cron_history'
                 AND p.pronargdefaults = p.pronargs) THEN
        EXECUTE 'SELECT wval._trim_cron_history()::text' INTO trimmed;
        out := out || jsonb_build_object('cron_history', trimmed);
    END IF;
    RETURN out;
END
$$;
COMMENT ON FUNCTION wval._maintenance(integer) IS 'the maintenance job: wval_maintain(months_ahead), the storage prune (wval._storage_prune: outbox, risk snapshots, blobs, live returns, tombstone compaction), and wval._trim_cron_history() when it exists';

CREATE FUNCTION public.wval_schedule_maintenance(schedule text DEFAULT '30 3 * * *', months_ahead integer DEFAULT 3)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'invalid value for "months_ahead"' USING ERRCODE = '22023',
            DETAIL = format('months_ahead is %s.', coalesce(months_ahead::text, 'null')),
            HINT = 'Pass a number of months between 0 and 120.';
    END IF;
    RETURN wval._cron_schedule('maintenance', schedule, format('SELECT wval._maintenance(%s)', months_ahead));
END
$$;
COMMENT ON FUNCTION public.wval_schedule_maintenance(text, integer) IS 'schedules (or reschedules) the pg_cron job wval:maintenance (default daily 03:30) that creates partitions months_ahead ahead, prunes the outbox, risk snapshots, blobs and live returns per wval.retention and trims pg_cron''s run history; WV010 with set-up instructions when pg_cron is missing';

------------------------------------------------------------------------------
-- pg_dump, privileges
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.retention', '');

GRANT SELECT ON wval.retention TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_retention_set(text, interval, text, text),
      public.wval_purge(timestamptz, text, boolean),
      public.wval_import_runs(jsonb),
      public.wval_schedule_maintenance(text, integer),
      public.wval_storage_prune()
   TO wval_admin;
