-- portfolio.sql: the extended layers of docs/risk-hub.md ("Portfolio and stress
-- layers", "Cohort (campaign) layer"), next to portfolio.c.
--
-- Portfolio and stress: wval_evaluate_portfolio (C) evaluates a candidate
-- run against the world's latest fresh risk snapshot and stores a linked
-- run of kind 'portfolio' holding both layers.  The internal consumer
-- 'wval:hub' runs it for the world's deployed strategies after every
-- risk_snapshot_updated (CALL wval_work), or the publishing transaction
-- does when the world's settings say extended_validation = 'sync'.
-- Cohort: wval_evaluate_cohort evaluates a campaign's candidates and then
-- the cohort checks across them.  docs/risk-hub.md is the guide.
--
-- requires: store bus

------------------------------------------------------------------------------
-- Portfolio and stress layers
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_evaluate_portfolio(world_id text, run_id uuid, returns float8[] DEFAULT NULL,
                                               stress jsonb DEFAULT NULL, snapshot_stage text DEFAULT NULL)
RETURNS wval.evaluation_runs
    AS 'MODULE_PATHNAME', 'wval_evaluate_portfolio'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_evaluate_portfolio(text, uuid, float8[], jsonb, text) IS 'evaluates a candidate run against the latest fresh risk snapshot of its world (of snapshot_stage when given): incremental VaR/ES, Sharpe uplift and stress scenarios, checked with the portfolio and stress layers of the candidate''s profile; stores a run of kind portfolio linked to the candidate and emits evaluation_run_created and evaluation_run_updated (extended_validation). returns: the candidate''s periodic returns (else the snapshot''s realized_returns); stress: scenario results that replace the snapshot''s. Idempotent per candidate run, snapshot version, policy version and inputs';

------------------------------------------------------------------------------
-- The internal consumer and the synchronous setting
------------------------------------------------------------------------------

-- wval._deployed_candidates(world_id, payload): the runs the consumer
-- evaluates — per deployed strategy its latest single run (preferring its
-- deployed stage).  Deployed means wval.current_stage says paper or live;
-- in a world that has recorded no stage decision (or while that view does
-- not exist), the strategies weighted in the snapshot.
CREATE FUNCTION wval._deployed_candidates(p_world_id text, p_payload jsonb)
RETURNS TABLE (strategy_id text, deployed_stage text, run_id uuid)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    decided boolean := false;
BEGIN
    IF to_regclass('wval.current_stage') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM wval.current_stage d WHERE d.world_id = $1)' INTO decided USING p_world_id;
    END IF;
    IF decided THEN
        RETURN QUERY EXECUTE $q$
            SELECT d.strategy_id::text, d.stage::text, lr.run_id
            FROM wval.current_stage d
            CROSS JOIN LATERAL (
                SELECT r.run_id FROM wval.evaluation_runs r
                WHERE r.world_id = d.world_id AND r.strategy_id = d.strategy_id AND r.kind = 'single'
                  AND NOT wval._imported(r.context)
                ORDER BY r.stage = d.stage DESC, r.created_at DESC, r.chain_seq DESC
                LIMIT 1) lr
            WHERE d.world_id = $1 AND d.stage IN ('paper', 'live')
            ORDER BY 1$q$
        USING p_world_id;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT k.k, NULL::text, lr.run_id
    FROM jsonb_object_keys(p_payload -> 'weights') k(k)
    CROSS JOIN LATERAL (
        SELECT r.run_id FROM wval.evaluation_runs r
        WHERE r.world_id = p_world_id AND r.strategy_id = k.k AND r.kind = 'single'
          AND NOT wval._imported(r.context)
        ORDER BY r.created_at DESC, r.chain_seq DESC
        LIMIT 1) lr
    ORDER BY 1;
END
$$;
COMMENT ON FUNCTION wval._deployed_candidates(text, jsonb) IS 'the latest single run of each deployed strategy of a world (wval.current_stage paper or live; in a world without stage decisions, the strategies weighted in the snapshot payload)';

-- wval._extended_validation(world_id, version, stage, sync): the portfolio
-- runs of the deployed strategies against snapshot (version, stage).  A
-- snapshot that is no longer the latest of its stage, or no longer fresh,
-- is skipped (the newer snapshot's event does the work).  In the
-- synchronous mode (called by wval_snapshot_publish) a candidate that fails
-- is reported as a WARNING and left to the bus consumer, so that a
-- snapshot is never rejected because of a candidate; the consumer raises
-- (the event is nacked and retried).  Returns the number of runs.
CREATE FUNCTION wval._extended_validation(p_world_id text, p_version text, p_stage text, p_sync boolean)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
    c record;
    n integer := 0;
BEGIN
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = p_world_id AND r.stage = p_stage
    ORDER BY r.as_of DESC, r.snapshot_id DESC
    LIMIT 1;
    IF NOT FOUND OR s.version IS DISTINCT FROM p_version OR now() - s.as_of > wval._snapshot_max_age() THEN
        RETURN 0;
    END IF;
    IF NOT p_sync THEN
        SELECT count(*) INTO n
        FROM wval._deployed_candidates(p_world_id, s.payload) d,
             LATERAL public.wval_evaluate_portfolio(p_world_id, d.run_id, snapshot_stage => p_stage) r;
        RETURN n;
    END IF;
    FOR c IN SELECT * FROM wval._deployed_candidates(p_world_id, s.payload) LOOP
        BEGIN
            PERFORM public.wval_evaluate_portfolio(p_world_id, c.run_id, snapshot_stage => p_stage);
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'extended validation of run % (strategy "%") against snapshot "%" of world "%" failed: %',
                c.run_id, c.strategy_id, p_version, p_world_id, SQLERRM
                USING DETAIL = format('SQLSTATE %s; the bus consumer wval:hub retries it.', SQLSTATE);
        END;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._extended_validation(text, text, text, boolean) IS 'runs wval_evaluate_portfolio for the deployed strategies of a world against snapshot (version, stage) unless a newer or no fresh snapshot of that stage exists; sync: failures become WARNINGs (the bus consumer retries them)';

-- wval._hub_extend(event): the handler of risk_snapshot_updated in the
-- internal group wval:hub.  It also runs for worlds in the synchronous
-- mode: what the publish already stored is returned by idempotency, what
-- failed there is done (or retried) here.
CREATE FUNCTION wval._hub_extend(e wval.events) RETURNS integer
LANGUAGE sql SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._extended_validation(e.world_id, e.payload #>> '{data,version}', e.payload #>> '{data,stage}', false);
$$;
COMMENT ON FUNCTION wval._hub_extend(wval.events) IS 'internal consumer of risk_snapshot_updated (group wval:hub): portfolio runs for the world''s deployed strategies';

SELECT wval._register_handler('wval:hub', 'risk_snapshot_updated', 'wval._hub_extend(wval.events)');

------------------------------------------------------------------------------
-- Cohort (campaign) layer
------------------------------------------------------------------------------

-- wval._metric_number(v): a stored metric value as float8: numbers, the
-- strings "Infinity" / "-Infinity"; null for anything else (missing).
CREATE FUNCTION wval._metric_number(v jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- a stored number beyond a double (1e400 through the bypass) is missing, not 22003
    SELECT CASE WHEN jsonb_typeof(v) = 'number' AND abs((v #>> '{}')::numeric) <= 1.7976931348623157e308
                    THEN (v #>> '{}')::float8
                WHEN v #>> '{}' IN ('Infinity', '-Infinity') THEN (v #>> '{}')::float8 END
$$;
COMMENT ON FUNCTION wval._metric_number(jsonb) IS 'a metric value as float8 (numbers within the range of float8 and the strings Infinity / -Infinity), null otherwise';

-- wval._cohort_candidates_check(candidates, campaign_id): raises for the
-- first malformed candidate (22023; WV001 for returns that are not numbers).
CREATE FUNCTION wval._cohort_candidates_check(p_candidates jsonb, p_campaign text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    bad record;
BEGIN
    IF p_candidates IS NULL OR jsonb_typeof(p_candidates) <> 'array' OR jsonb_array_length(p_candidates) = 0 THEN
        RAISE EXCEPTION '"candidates" must be a non-empty JSON array' USING ERRCODE = '22023',
            DETAIL = format('candidates is %s.', coalesce(left(p_candidates::text, 120), 'null')),
            HINT = 'Pass [{"strategy_id": ..., "returns": [...], "metrics": {...}, "context": {...}}, ...].';
    END IF;
    -- every candidate is a full run in the caller's transaction (docs/risk-hub.md, "Limits")
    IF jsonb_array_length(p_candidates) > 1000 THEN
        RAISE EXCEPTION '"candidates" has more than 1000 strategies' USING ERRCODE = '22023',
            DETAIL = format('candidates has %s elements.', jsonb_array_length(p_candidates)),
            HINT = 'Split the campaign into cohorts of at most 1000 candidates.';
    END IF;
    -- the first problem, in the order of the candidates
    FOR bad IN
        SELECT x.* FROM (
            SELECT e.i, e.c,
                   CASE WHEN jsonb_typeof(e.c) <> 'object' THEN 'must be an object'
                        WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(e.c) k WHERE k NOT IN ('strategy_id', 'returns', 'metrics', 'context'))
                            THEN format('has the unknown key %s (accepted: strategy_id, returns, metrics, context)',
                                        (SELECT min(quote_literal(k)) FROM jsonb_object_keys(e.c) k
                                         WHERE k NOT IN ('strategy_id', 'returns', 'metrics', 'context')))
                        WHEN jsonb_typeof(e.c -> 'strategy_id') IS DISTINCT FROM 'string' THEN 'needs a strategy_id string'
                        WHEN e.c ? 'context' AND jsonb_typeof(e.c -> 'context') <> 'object' THEN 'has a context that is not an object'
                        WHEN e.c -> 'context' ? 'campaign_id' AND e.c #>> '{context,campaign_id}' IS DISTINCT FROM p_campaign
                            THEN format('has context.campaign_id %s, not the campaign %s',
                                        coalesce(quote_literal(e.c #>> '{context,campaign_id}'), 'null'), quote_literal(p_campaign))
                        WHEN row_number() OVER (PARTITION BY CASE WHEN jsonb_typeof(e.c) = 'object' THEN e.c ->> 'strategy_id' END
                                                ORDER BY e.i) > 1
                            THEN 'repeats a strategy_id of the cohort'
                        WHEN e.c ? 'returns' AND jsonb_typeof(e.c -> 'returns') <> 'null'
                             AND (jsonb_typeof(e.c -> 'returns') <> 'array'
                                  OR EXISTS (SELECT 1 FROM jsonb_array_elements(e.c -> 'returns') r
                                             WHERE jsonb_typeof(r) <> 'number'
                                                OR abs((r #>> '{}')::numeric) > 1.7976931348623157e308))
                            THEN 'returns'
                        WHEN e.c ? 'metrics' AND jsonb_typeof(e.c -> 'metrics') NOT IN ('object', 'null') THEN 'metrics'
                   END AS problem
            FROM jsonb_array_elements(p_candidates) WITH ORDINALITY e(c, i)) x
        WHERE x.problem IS NOT NULL
        ORDER BY x.i
        LIMIT 1
    LOOP
        IF bad.problem = 'returns' THEN
            RAISE EXCEPTION 'candidates[%].returns must be an array of numbers', bad.i - 1 USING ERRCODE = 'WV001',
                DETAIL = format('returns is %s.', left((bad.c -> 'returns')::text, 120)),
                HINT = 'Pass the periodic returns as JSON numbers, oldest first.';
        ELSIF bad.problem = 'metrics' THEN
            RAISE EXCEPTION 'candidates[%].metrics must be a JSON object', bad.i - 1 USING ERRCODE = 'WV001',
                DETAIL = format('metrics is %s.', left((bad.c -> 'metrics')::text, 120)),
                HINT = 'Pass metric blocks such as {"returns": {"sharpe": 1.2}}.';
        END IF;
        RAISE EXCEPTION 'candidates[%] %', bad.i - 1, bad.problem USING ERRCODE = '22023',
            DETAIL = format('candidates[%s] is %s.', bad.i - 1, left(bad.c::text, 120)),
            HINT = 'Each candidate is {"strategy_id": ..., "returns"?: [...], "metrics"?: {...}, "context"?: {...}}, one per strategy.';
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._cohort_candidates_check(jsonb, text) IS 'raises 22023 (WV001 for returns or metrics of the wrong type) for the first malformed candidate of a cohort';

CREATE FUNCTION public.wval_evaluate_cohort(world_id text, campaign_id text, stage text, candidates jsonb)
RETURNS SETOF wval.evaluation_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_campaign text := wval._ident('campaign_id', campaign_id);
    p_stage text := stage;
    w wval.worlds := wval._world(p_world);
    p_version integer;
    p_doc jsonb;
    c record;
    r wval.evaluation_runs;
    runs uuid[] := '{}';
    p_key text;
    n integer;
BEGIN
    PERFORM wval._one_of('stage', p_stage, wval._stages());
    PERFORM wval._cohort_candidates_check(candidates, p_campaign);
    PERFORM wval._ident('strategy_id', e.c ->> 'strategy_id') FROM jsonb_array_elements(candidates) e(c);
    p_version := public.wval_active_policy_version(p_world);
    IF p_version IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', p_world USING ERRCODE = 'WV010',
            DETAIL = 'Nothing was evaluated and nothing was recorded.',
            HINT = 'Publish a policy with wval_policy_publish() and activate it with wval_policy_activate().';
    END IF;
    SELECT pv.policy INTO p_doc FROM wval.policy_versions pv WHERE pv.world_id = p_world AND pv.version = p_version;

    -- every candidate gets its normal run (idempotent with context.run_id)
    FOR c IN SELECT e.c, e.i FROM jsonb_array_elements(candidates) WITH ORDINALITY e(c, i) ORDER BY e.i LOOP
        r := public.wval_evaluate(p_world, c.c ->> 'strategy_id', p_stage,
                 CASE WHEN jsonb_typeof(c.c -> 'returns') = 'array'
                      THEN ARRAY(SELECT x::float8 FROM jsonb_array_elements_text(c.c -> 'returns') WITH ORDINALITY x(x, o) ORDER BY o) END,
                 coalesce(nullif(c.c -> 'metrics', 'null'), '{}'),
                 coalesce(c.c -> 'context', '{}') || jsonb_build_object('campaign_id', p_campaign));
        runs := runs || r.run_id;
    END LOOP;

    -- the same candidate runs under the same policy version: the stored cohort runs
    p_key := format('cohort:%s:%s:v%s', p_campaign,
                  left(encode(sha256(convert_to(array_to_string(runs, ','), 'UTF8')), 'hex'), 16), p_version);
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    SELECT count(*) INTO n FROM wval.evaluation_runs x
    WHERE x.world_id = p_world AND x.client_run_id = p_key AND x.kind = 'cohort';
    IF n = cardinality(runs) THEN
        RETURN QUERY
        SELECT x.* FROM wval.evaluation_runs x
        WHERE x.world_id = p_world AND x.client_run_id = p_key AND x.kind = 'cohort'
        ORDER BY (x.context ->> 'cohort_position')::int;
        RETURN;
    END IF;

    -- the cohort metrics across the candidates, the cohort checks per candidate
    RETURN QUERY
    WITH cand AS (
        SELECT x.*, u.ord,
               wval._metric_number(x.metrics #> '{returns,sharpe}') AS sharpe,
               wval._metric_number(x.metrics #> '{robustness,deflated_sharpe_ratio}') AS dsr
        FROM unnest(runs) WITH ORDINALITY u(run_id, ord)
        JOIN wval.evaluation_runs x ON x.run_id = u.run_id AND x.world_id = p_world
    ),
    -- medians: the middle value, or the mean of the two middle values
    sharpes AS (
        SELECT cand.sharpe AS x, row_number() OVER (ORDER BY cand.sharpe) AS rn, count(*) OVER () AS cnt
        FROM cand WHERE cand.sharpe IS NOT NULL
    ),
    dsrs AS (
        SELECT cand.dsr AS x, row_number() OVER (ORDER BY cand.dsr) AS rn, count(*) OVER () AS cnt
        FROM cand WHERE cand.dsr IS NOT NULL
    ),
    agg AS (
        -- min/2 + max/2 of the one or two middle values: avg() would overflow
        -- (its running sum of squares) for values near the float8 range
        SELECT (SELECT nullif(min(s.x) / 2 + max(s.x) / 2, 'NaN') FROM sharpes s WHERE s.rn IN ((s.cnt + 1) / 2, (s.cnt + 2) / 2)) AS sharpe_median,
               (SELECT nullif(min(d.x) / 2 + max(d.x) / 2, 'NaN') FROM dsrs d WHERE d.rn IN ((d.cnt + 1) / 2, (d.cnt + 2) / 2)) AS dsr_median,
               (SELECT max(cand.sharpe) FROM cand) AS max_sharpe,
               (SELECT count(*) FROM cand) AS size
    ),
    ranked AS (
        SELECT cand.*,
               CASE WHEN cand.dsr IS NOT NULL
                    THEN row_number() OVER (ORDER BY cand.dsr IS NULL, cand.dsr DESC, cand.ord) END AS dsr_rank
        FROM cand
    ),
    checked AS (
        SELECT ranked.*, m.metrics AS cohort_metrics,
               wval._apply_rules(p_doc, 'cohort', m.metrics, p_stage, wval._fail_closed(w), NULL, '{}') AS outcome
        FROM ranked, agg,
             LATERAL (SELECT jsonb_build_object('cohort', jsonb_build_object(
                          'sharpe_median', agg.sharpe_median, 'dsr_median', agg.dsr_median,
                          'dsr_rank', ranked.dsr_rank, 'max_sharpe', agg.max_sharpe, 'size', agg.size)) AS metrics) m
    ),
    ins AS (
        INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, kind, campaign_id, risk_tier,
                                          model_card_version, code_hash, context, client_run_id, metrics,
                                          policy_version, ruleset_hash, profile, status, results,
                                          linked_run_id, created_by)
        SELECT p_world, ch.strategy_id, ch.stage, 'cohort', p_campaign, w.risk_tier,
               ch.model_card_version, ch.code_hash,
               jsonb_build_object('candidate_run_id', ch.run_id, 'cohort_position', ch.ord,
                                  'cohort_size', cardinality(runs)),
               p_key, ch.cohort_metrics, p_version, ch.outcome ->> 'ruleset_hash', ch.outcome ->> 'profile',
               ch.outcome ->> 'status', ch.outcome -> 'results', ch.run_id, wval._invoker()
        FROM checked ch
        ORDER BY ch.ord
        RETURNING *
    ),
    rr AS (
        INSERT INTO wval.rule_results (run_id, world_id, strategy_id, stage, rule, layer, status, severity,
                                       owner, reason_code, reason, tags, details, created_at)
        SELECT ins.run_id, ins.world_id, ins.strategy_id, ins.stage, e.key, split_part(e.key, '.', 1),
               e.value ->> 'status', e.value ->> 'severity', e.value ->> 'owner', e.value ->> 'reason_code',
               e.value ->> 'reason', ARRAY(SELECT jsonb_array_elements_text(e.value -> 'tags')),
               coalesce(e.value -> 'details', '{}'), ins.created_at
        FROM ins, jsonb_each(ins.results) e
    ),
    ev AS (
        SELECT ins.run_id,
               wval._emit('evaluation_run_created', ins.world_id, ins.strategy_id,
                          format('evaluation_run_created:%s:%s:%s', ins.world_id, ins.strategy_id, ins.run_id),
                          jsonb_build_object('world_id', ins.world_id, 'strategy_id', ins.strategy_id,
                                             'run_id', ins.run_id, 'stage', ins.stage, 'kind', 'cohort',
                                             'status', ins.status, 'recommended_stage', NULL,
                                             'policy_version', p_version, 'linked_run_id', ins.linked_run_id,
                                             'campaign_id', p_campaign)) AS event_id
        FROM ins
    )
    SELECT ins.* FROM ins JOIN ev ON ev.run_id = ins.run_id
    ORDER BY (ins.context ->> 'cohort_position')::int;
END
$$;
COMMENT ON FUNCTION public.wval_evaluate_cohort(text, text, text, jsonb) IS 'evaluates a campaign''s candidates ([{strategy_id, returns?, metrics?, context?}]) with wval_evaluate, then the cohort checks across them (median Sharpe and DSR, rank by DSR for top_k with ties in input order, max Sharpe for the alarm); returns per candidate a linked run of kind cohort with metrics.cohort and the cohort.* results, in input order; all in one transaction';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

GRANT EXECUTE ON FUNCTION public.wval_evaluate_portfolio(text, uuid, float8[], jsonb, text),
      public.wval_evaluate_cohort(text, text, text, jsonb)
   TO wval_producer;
