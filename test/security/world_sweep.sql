-- pgTAP: one visibility rule, swept over the whole catalogue (docs/roles.md,
-- "Row-level security per world").
--
-- Worlds sw-a and sw-b hold the same kinds of history. Logins restricted to
-- sw-a (one per non-admin wval role) then reach every function, view and
-- table of the extension they may use:
--   * a function with a world-, run-, event- or snapshot-valued argument is
--     called three times: naming sw-a (it must work: the arguments are
--     plausible), naming sw-b (hidden) and naming sw-z (does not exist). The
--     sw-b and sw-z answers must be the same once the names are replaced: a
--     world the caller may not see behaves as one that does not exist;
--   * a function without such an argument (lists, expositions) and every
--     relation are read whole, and must not show a name, strategy or run id
--     of sw-b;
--   * what is neither is listed in sweep_world_free with the reason.
-- A function of the extension that is none of these fails the test, so a
-- new function cannot escape the sweep (aggregates compute over the caller's
-- own rows and count as world-free). Calls run in subtransactions that are
-- rolled back; the whole file is one transaction that is rolled back.
BEGIN;
SET client_min_messages = warning;
SELECT plan(11);

-- ------------------------------------------------------------------ fixture
CREATE FUNCTION pg_temp.sw_snapshot(v text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'as_of', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'version', v,
        'weights', jsonb_build_object('s1', 0.5, 's2', 0.5),
        'covariance', jsonb_build_object('s1,s1', 0.04, 's2,s2', 0.01), 'ttl_sec', 3600)
$$;
CREATE FUNCTION pg_temp.sw_returns() RETURNS float8[] LANGUAGE sql AS $$
    SELECT array_agg(0.01 * sin(i) + 0.002) FROM generate_series(1, 300) i
$$;

CREATE TEMP TABLE sw_world (w text PRIMARY KEY);
INSERT INTO sw_world VALUES ('sw-a'), ('sw-b');
SELECT wval_world_upsert(w, actor => 'dba') FROM sw_world;

-- restricted logins: sw-a only (read for the analyst, write for the others)
SELECT wval_world_revoke(r, '*', 'dba') FROM unnest(ARRAY['wval_analyst', 'wval_producer', 'wval_validator']) r;
CREATE ROLE sw_analyst LOGIN;   GRANT wval_analyst TO sw_analyst;
CREATE ROLE sw_producer LOGIN;  GRANT wval_producer TO sw_producer;
CREATE ROLE sw_validator LOGIN; GRANT wval_validator TO sw_validator;
SELECT wval_world_grant('sw_analyst', 'sw-a', 'read', 'dba');
SELECT wval_world_grant('sw_producer', 'sw-a', 'write', 'dba');
SELECT wval_world_grant('sw_validator', 'sw-a', 'write', 'dba');

SELECT wval_policy_publish(w, (SELECT policy FROM wval.sample_policies), 'alice') FROM sw_world;
SELECT wval_policy_activate(w, 1, 'bob', 'sample') FROM sw_world;
SELECT wval_policy_publish(w, jsonb_set((SELECT policy FROM wval.sample_policies),
                           '{validation_profiles,backtest,performance,sharpe_min}', '0.9'), 'alice') FROM sw_world;
SELECT wval_producer_register(w, 'risk') FROM sw_world;
SELECT wval_snapshot_publish(w, pg_temp.sw_snapshot('v1'), 'risk', 'paper') FROM sw_world;
-- runs, an override, an ex-post case, live returns, a stage decision, a selection
CREATE TEMP TABLE sw_run AS
SELECT w AS world_id, (wval_evaluate(w, w || '-s1', 'backtest', pg_temp.sw_returns(), '{}',
                                     jsonb_build_object('run_id', w || '-client-1'))).run_id
FROM sw_world;
SELECT wval_evaluate(w, w || '-s2', 'backtest', NULL,
                     (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_low_sharpe'))
FROM sw_world;
SELECT wval_override(run_id, 'approved', 'sweep fixture', 'carol') FROM sw_run;
SELECT wval_record_failure(run_id, 'risk_breach', 'dd_breach', 'high', 'carol') FROM sw_run;
-- an open override request (on the world's other run: the sweep asks on the first)
CREATE TEMP TABLE sw_req AS
SELECT s.world_id, (wval_override_request(r.run_id, 'sweep fixture', 'owner')).request_id
FROM sw_run s JOIN wval.evaluation_runs r ON r.world_id = s.world_id AND r.strategy_id = s.world_id || '-s2';
SELECT wval_record_live_returns(w, w || '-s1', ARRAY[current_date - 2, current_date - 1],
                                ARRAY[0.01, -0.005]) FROM sw_world;
SELECT wval_set_stage(w, w || '-s1', 'paper', 'vera', 'sweep fixture') FROM sw_world;
SELECT wval_live_run(w, w || '-s1') FROM sw_world;
-- the bus: the sw-a gateway's group; events of both worlds follow, and the
-- gateway takes what it is handed (so that ack / nack have events to act on)
SET ROLE sw_producer;
SELECT wval_subscribe('sw-a-group', ARRAY['evaluation_run_created', 'risk_snapshot_updated']);
RESET ROLE;
SELECT wval_evaluate(w, w || '-s3', 'backtest', pg_temp.sw_returns()) FROM sw_world;
SELECT wval_snapshot_publish(w, pg_temp.sw_snapshot('v3'), 'risk', 'paper') FROM sw_world;
SET ROLE sw_producer;
CREATE TEMP TABLE sw_consumed AS SELECT * FROM wval_consume('sw-a-group', 100);
RESET ROLE;
GRANT SELECT ON sw_run, sw_req, sw_world TO PUBLIC;

-- what identifies sw-b in any output
CREATE TEMP TABLE sw_marker (marker text PRIMARY KEY);
INSERT INTO sw_marker SELECT 'sw-b';
INSERT INTO sw_marker SELECT run_id::text FROM wval.evaluation_runs WHERE world_id = 'sw-b';


-- ------------------------------------------------- what is not world-scoped
CREATE TEMP TABLE sweep_world_free (fn text PRIMARY KEY, why text NOT NULL);
INSERT INTO sweep_world_free VALUES
    ('wval_metrics', 'pure: computes from the returns it is given'),
    ('wval_psr', 'pure formula'), ('wval_dsr', 'pure formula'),
    ('wval_norm_cdf', 'pure formula'), ('wval_norm_ppf', 'pure formula'),
    ('wval_strategy_complexity', 'pure formula'),
    ('wval_check', 'pure: applies the policy it is given to the metrics it is given'),
    ('wval_scenario_check', 'the scenario sets are the spec''s published sets, shared by every world'),
    ('wval_scenario_add', 'the scenario sets are shared by every world (validators add cases)'),
    ('_invoker', 'names the calling role'),
    ('_reason_codes', 'the catalogue of reason codes'),
    ('_latency_bounds', 'the histogram bucket bounds'),
    ('_metric_coverage', 'pure: which metric blocks a metrics document has'),
    ('_snapshot_max_age', 'a setting'),
    ('_snapshot_counter_name', 'pure: builds a sequence name'),
    ('_world_access', 'answers for a role and a world named by the caller; used by the row-level security policies'),
    ('_snapshot_doc', 'renders a snapshot row the caller has already read (row-level security applied to that read)'),
    ('_imported', 'pure: whether a run context marks an imported run'),
    ('wval_policy_diff_gate(jsonb,jsonb,jsonb,text,double precision,boolean)', 'pure: replays the runs it is given'),
    ('wval_policy_diff(jsonb,jsonb,jsonb,text)', 'pure: replays the runs it is given'),
    ('wval_policy_diff_render', 'pure: renders the diff report it is given'),
    ('_returns_array', 'pure: decodes the bytes of a series it is given'),
    ('_in_handout', 'pure: compares the event id and lease time it is given with the hand-out it is given');

-- -------------------------------------------------------------- the sweep
-- sw_arg(fn, arg, type, w): the value of one argument when the call names world w
CREATE FUNCTION pg_temp.sw_arg(fn text, arg text, typ text, w text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    run uuid := (SELECT run_id FROM sw_run WHERE world_id = w);
    ev bigint := (SELECT max(event_id) FROM wval.events WHERE world_id = w);
BEGIN
    IF arg IN ('world_id', 'p_world_id') THEN RETURN quote_literal(w); END IF;
    IF arg = 'strategy_id' THEN RETURN quote_literal(w || '-s1'); END IF;
    IF arg = 'run_id' THEN RETURN quote_literal(coalesce(run::text, '00000000-0000-4000-8000-00000000dead')) || '::uuid'; END IF;
    IF arg = 'request_id' THEN
        RETURN quote_literal(coalesce((SELECT q.request_id FROM sw_req q WHERE q.world_id = w)::text,
                                      '00000000-0000-4000-8000-00000000dead')) || '::uuid';
    END IF;
    IF arg = 'event_id' THEN RETURN coalesce(ev, -7)::text; END IF;
    IF arg = 'event_ids' THEN RETURN format('ARRAY[%s]::bigint[]', coalesce(ev, -7)); END IF;
    IF arg = 'group_name' AND fn = 'wval_subscribe' THEN RETURN quote_literal('sw-a-group2'); END IF;
    IF arg = 'group_name' THEN RETURN quote_literal('sw-a-group'); END IF;
    IF arg = 'types' THEN RETURN 'ARRAY[''evaluation_run_created'']'; END IF;
    IF arg = 'max_attempts' THEN RETURN '3'; END IF;
    IF arg = 'backoff' AND typ = 'interval' THEN RETURN quote_literal('1 second'); END IF;
    IF arg = 'p_payload' THEN RETURN '''{}'''; END IF;
    IF arg = 'version' AND typ = 'integer' THEN RETURN '1'; END IF;
    IF arg = 'version' THEN RETURN quote_literal('v1'); END IF;
    IF arg = 'old_version' THEN RETURN '1'; END IF;
    IF arg = 'new_version' THEN RETURN '2'; END IF;
    IF arg IN ('policy', 'new_policy') THEN RETURN '(SELECT policy FROM wval.sample_policies)'; END IF;
    -- wval_evaluate repeats the fixture's request exactly (its run_id with other inputs is WV007)
    IF arg = 'metrics' AND fn = 'wval_evaluate' THEN RETURN '''{}''::jsonb'; END IF;
    IF arg = 'metrics' THEN RETURN '(SELECT metrics FROM wval.scenario_cases WHERE strategy_id = ''good_set_1'')'; END IF;
    IF arg = 'context' AND fn = 'wval_evaluate' THEN RETURN format('jsonb_build_object(%L, %L)', 'run_id', w || '-client-1'); END IF;
    IF arg = 'returns' THEN RETURN 'pg_temp.sw_returns()'; END IF;
    IF arg = 'snapshot' THEN RETURN 'pg_temp.sw_snapshot(''v2'')'; END IF;
    IF arg = 'stage' AND fn = 'wval_set_stage' THEN RETURN quote_literal('paper'); END IF;
    IF arg = 'stage' AND (fn LIKE '%snapshot%' OR fn LIKE '%portfolio%') THEN RETURN quote_literal('paper'); END IF;
    IF arg = 'stage' THEN RETURN quote_literal('backtest'); END IF;
    IF arg = 'actor' AND fn = 'wval_snapshot_publish' THEN RETURN quote_literal('risk'); END IF;
    IF arg = 'actor' THEN RETURN quote_literal('sweeper'); END IF;
    IF arg IN ('reason', 'note', 'error') THEN RETURN quote_literal('sweep'); END IF;
    IF arg = 'status' THEN RETURN quote_literal('approved'); END IF;
    IF arg = 'days' THEN RETURN 'ARRAY[current_date - 3]'; END IF;
    IF arg = 'rets' THEN RETURN 'ARRAY[0.002]::float8[]'; END IF;
    IF arg = 'ts' THEN RETURN 'now()'; END IF;
    IF arg = 'as_of' THEN RETURN 'current_date'; END IF;
    IF arg = 'campaign_id' THEN RETURN quote_literal('sweep-campaign'); END IF;
    IF arg = 'candidates' THEN
        RETURN format('jsonb_build_array(jsonb_build_object(%L, %L, %L, to_jsonb(pg_temp.sw_returns())), jsonb_build_object(%L, %L, %L, to_jsonb(pg_temp.sw_returns())))',
                      'strategy_id', w || '-c1', 'returns', 'strategy_id', w || '-c2', 'returns');
    END IF;
    IF arg = 'category' THEN RETURN quote_literal('risk_breach'); END IF;
    IF arg = 'reason_code' THEN RETURN quote_literal('dd_breach'); END IF;
    IF arg = 'severity' THEN RETURN quote_literal('high'); END IF;
    IF arg = 'format' THEN RETURN quote_literal('markdown'); END IF;
    IF arg = 'max' THEN RETURN '10'; END IF;
    IF arg = 'metric_or_check' THEN RETURN quote_literal('returns.sharpe'); END IF;
    IF arg = 'bucket' THEN RETURN quote_literal('month'); END IF;
    RETURN NULL;    -- not supplied: the default (or a test gap, reported)
END
$$;

-- the functions to sweep: extension functions a non-admin wval role may execute
CREATE TEMP TABLE sweep_fn AS
SELECT p.oid, p.oid::regprocedure::text AS sig, p.proname::text AS fn, p.prokind, p.proretset,
       coalesce(p.proargnames, '{}') AS argnames,
       ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) AS argtypes,
       p.pronargdefaults AS ndefaults,
       (SELECT r FROM unnest(ARRAY['sw_analyst', 'sw_producer', 'sw_validator']) r
         WHERE has_function_privilege(r, p.oid, 'EXECUTE') LIMIT 1) AS caller
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
WHERE p.prokind IN ('f', 'p', 'a')
  AND EXISTS (SELECT 1 FROM unnest(ARRAY['wval_analyst', 'wval_producer', 'wval_validator']) r
              WHERE has_function_privilege(r, p.oid, 'EXECUTE'));

-- sw_call(sig_row, w): builds the call naming world w; null when an argument
-- without default has no value
CREATE FUNCTION pg_temp.sw_sql(f sweep_fn, w text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    args text[] := '{}';
    v text;
    i int;
    n int := coalesce(array_length(f.argtypes, 1), 0);
BEGIN
    FOR i IN 1 .. n LOOP
        v := pg_temp.sw_arg(f.fn, f.argnames[i], f.argtypes[i], w);
        IF v IS NULL THEN
            IF i > n - f.ndefaults THEN EXIT; END IF;   -- the rest take their defaults
            RETURN NULL;
        END IF;
        args := args || (v || '::' || f.argtypes[i]);
    END LOOP;
    IF f.prokind = 'p' THEN
        RETURN format('CALL %s(%s)', f.oid::regproc, array_to_string(args, ', '));
    END IF;
    RETURN format('SELECT coalesce(json_agg(t)::text, ''[]'') FROM %s(%s) t', f.oid::regproc, array_to_string(args, ', '));
END
$$;

-- sw_run_as(role, sql): the outcome of sql run as role, rolled back:
-- 'ok <output>' or '<SQLSTATE> <message>'
CREATE FUNCTION pg_temp.sw_run_as(r text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    res text;
    outcome text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', r);
        IF q LIKE 'CALL %' THEN EXECUTE q; res := ''; ELSE EXECUTE q INTO res; END IF;
        outcome := 'ok ' || coalesce(res, '');
        RAISE EXCEPTION USING ERRCODE = 'WVZZZ';
    EXCEPTION WHEN OTHERS THEN
        IF SQLSTATE <> 'WVZZZ' THEN outcome := SQLSTATE || ' ' || SQLERRM; END IF;
    END;
    RETURN outcome;
END
$$;

-- normalise: the world, strategy, run and event of b and z become placeholders
CREATE FUNCTION pg_temp.sw_norm(s text, w text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(
             replace(replace(replace(s, coalesce((SELECT run_id::text FROM sw_run WHERE world_id = w), '00000000-0000-4000-8000-00000000dead'), '<run>'),
                             'event ' || coalesce((SELECT max(event_id) FROM wval.events WHERE world_id = w), -7), 'event <event>'),
                     w, '<world>'),
             '[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.+Z-]+', '<time>', 'g')
$$;

CREATE TEMP TABLE sweep_result (sig text, kind text, caller text, outcome_a text, outcome_b text, outcome_z text, verdict text);

DO $sweep$
DECLARE
    f sweep_fn;
    qa text; qb text; qz text;
    oa text; ob text; oz text;
    has_world boolean;
BEGIN
    FOR f IN SELECT * FROM sweep_fn ORDER BY sig LOOP
        IF f.fn IN (SELECT fn FROM sweep_world_free) OR f.sig IN (SELECT fn FROM sweep_world_free) OR f.prokind = 'a' THEN
            INSERT INTO sweep_result VALUES (f.sig, 'world-free', f.caller, NULL, NULL, NULL, 'listed');
            CONTINUE;
        END IF;
        has_world := f.argnames && ARRAY['world_id', 'p_world_id', 'run_id', 'event_id', 'event_ids', 'strategy_id', 'request_id'];
        qa := pg_temp.sw_sql(f, 'sw-a');
        IF qa IS NULL THEN
            INSERT INTO sweep_result VALUES (f.sig, 'unswept', f.caller, NULL, NULL, NULL, 'no arguments known');
            CONTINUE;
        END IF;
        oa := pg_temp.sw_run_as(f.caller, qa);
        IF has_world THEN
            qb := pg_temp.sw_sql(f, 'sw-b');
            qz := pg_temp.sw_sql(f, 'sw-z');
            ob := pg_temp.sw_run_as(f.caller, qb);
            oz := pg_temp.sw_run_as(f.caller, qz);
            INSERT INTO sweep_result VALUES (f.sig, 'world', f.caller, oa, ob, oz,
                CASE WHEN oa NOT LIKE 'ok %' THEN 'a failed'
                     WHEN pg_temp.sw_norm(ob, 'sw-b') <> pg_temp.sw_norm(oz, 'sw-z') THEN 'b differs from z'
                     WHEN EXISTS (SELECT 1 FROM sw_marker m WHERE strpos(ob, m.marker) > 0 AND strpos(qb, m.marker) = 0) THEN 'b data'
                     ELSE 'ok' END);
        ELSE
            INSERT INTO sweep_result VALUES (f.sig, 'list', f.caller, oa, NULL, NULL,
                CASE WHEN EXISTS (SELECT 1 FROM sw_marker m WHERE strpos(oa, m.marker) > 0) THEN 'b data'
                     ELSE 'ok' END);
        END IF;
    END LOOP;
END
$sweep$;

-- relations: every table and view of schema wval a restricted login may read
CREATE TEMP TABLE sweep_rel AS
SELECT c.oid::regclass::text AS rel, r AS reader
FROM pg_class c CROSS JOIN unnest(ARRAY['sw_analyst', 'sw_producer', 'sw_validator']) r
WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
  AND has_table_privilege(r, c.oid, 'SELECT');

DO $rels$
DECLARE
    x record;
    o text;
BEGIN
    FOR x IN SELECT * FROM sweep_rel ORDER BY rel, reader LOOP
        o := pg_temp.sw_run_as(x.reader, format('SELECT coalesce(json_agg(t)::text, ''[]'') FROM %s t', x.rel));
        INSERT INTO sweep_result VALUES (x.rel, 'relation', x.reader, o, NULL, NULL,
            CASE WHEN o NOT LIKE 'ok %' THEN 'read failed'
                 WHEN EXISTS (SELECT 1 FROM sw_marker m WHERE strpos(o, m.marker) > 0) THEN 'b data'
                 ELSE 'ok' END);
    END LOOP;
END
$rels$;

-- what was covered (printed), then the verdicts
SELECT diag(format('%-10s %-12s %-8s %s', kind, caller, verdict, sig)) FROM sweep_result ORDER BY kind, sig, caller;

SELECT is((SELECT count(*)::int FROM sweep_fn), (SELECT count(DISTINCT sig)::int FROM sweep_result WHERE kind <> 'relation'),
          'every executable function of the extension was swept or listed as world-free');
SELECT ok((SELECT count(*) FROM sweep_fn) > 60, 'the sweep found the extension''s functions');
SELECT is(ARRAY(SELECT sig FROM sweep_result WHERE kind = 'unswept' ORDER BY 1), '{}'::text[],
          'no function is left unswept (give its arguments in sw_arg or list it as world-free)');
SELECT is(ARRAY(SELECT sig || ': ' || left(outcome_a, 160) FROM sweep_result WHERE verdict = 'a failed' ORDER BY 1), '{}'::text[],
          'every world function works for the granted world (plausible arguments)');
SELECT is(ARRAY(SELECT sig || ': ' || left(outcome_b, 120) || ' <> ' || left(outcome_z, 120)
                FROM sweep_result WHERE verdict = 'b differs from z' ORDER BY 1), '{}'::text[],
          'a hidden world answers exactly as a world that does not exist');
SELECT is(ARRAY(SELECT sig || ' (' || caller || ')' FROM sweep_result WHERE verdict = 'b data' AND kind <> 'relation' ORDER BY 1), '{}'::text[],
          'no function shows a name or run of the hidden world');
SELECT is(ARRAY(SELECT sig || ' (' || caller || ')' FROM sweep_result WHERE kind = 'relation' AND verdict <> 'ok' ORDER BY 1), '{}'::text[],
          'no table or view shows a row of the hidden world');
SELECT ok((SELECT count(*) FROM sweep_result WHERE kind = 'relation') > 40, 'the sweep read the extension''s relations');
SELECT ok(NOT EXISTS (SELECT 1 FROM sweep_world_free w WHERE NOT EXISTS
                       (SELECT 1 FROM sweep_fn f WHERE f.fn = w.fn OR f.sig = w.fn)),
          'every world-free entry names a function that exists');

-- the bus: the gateway of sw-a was handed events of sw-a only
SELECT ok((SELECT count(*) FROM sw_consumed WHERE world_id = 'sw-a') >= 2, 'the sw-a gateway consumed the events of sw-a');
SELECT is((SELECT count(*)::int FROM sw_consumed WHERE world_id IS DISTINCT FROM 'sw-a'), 0,
          'and no event of another world');

SELECT * FROM finish();
ROLLBACK;
