-- evaluate.sql: the evaluation entry points (docs/evaluate.md), next to evaluate.c.
--
-- requires: store

CREATE FUNCTION public.wval_check(policy jsonb, metrics jsonb, stage text DEFAULT 'backtest',
                                  context jsonb DEFAULT '{}')
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_check' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_check(jsonb, jsonb, text, jsonb) IS 'evaluates metrics against a policy document like wval_evaluate, without storing anything: {status, recommended_stage, ruleset_hash, profile, results, recommendation, validation_health}. context may carry data_as_of and baseline_metrics';

GRANT EXECUTE ON FUNCTION public.wval_check(jsonb, jsonb, text, jsonb) TO wval_analyst;

CREATE FUNCTION public.wval_evaluate(world_id text, strategy_id text, stage text DEFAULT 'backtest',
                                     returns float8[] DEFAULT NULL, metrics jsonb DEFAULT '{}',
                                     context jsonb DEFAULT '{}')
RETURNS wval.evaluation_runs
    AS 'MODULE_PATHNAME', 'wval_evaluate'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_evaluate(text, text, text, float8[], jsonb, jsonb) IS 'computes metrics from returns (computed values win over supplied ones), applies the world''s active policy version, stores the run with its provenance, rule results and evaluation_run_created event in one transaction, and returns it; context.run_id makes the call idempotent';

-- wval_warm: the first evaluation of a session done ahead and rolled back
-- (docs/install.md, "The first call of a session")
CREATE FUNCTION public.wval_warm(world_id text, periods integer DEFAULT 2520)
RETURNS void
    AS 'MODULE_PATHNAME', 'wval_warm'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_warm(text, integer) IS 'evaluates a synthetic series of periods returns in the world through the whole path of wval_evaluate, store included, and rolls it back: the session keeps the caches and plans the first evaluation would have built, the database keeps nothing; for a connection pool''s connect hook';

-- wval._evaluate_linked: wval_evaluate storing a run of another kind that
-- references an earlier run (the re-validation job's runs, lifecycle.sql);
-- granted to no role.
CREATE FUNCTION wval._evaluate_linked(world_id text, strategy_id text, stage text, returns float8[], metrics jsonb,
                                      context jsonb, kind text, linked_run_id uuid, evaluated_at timestamptz)
RETURNS wval.evaluation_runs
    AS 'MODULE_PATHNAME', 'wval_evaluate_linked'
    LANGUAGE C VOLATILE SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION wval._evaluate_linked(text, text, text, float8[], jsonb, jsonb, text, uuid, timestamptz) IS 'wval_evaluate storing a run of kind revalidation linked to the run it re-checks, time-dependent checks as of evaluated_at (internal: wval_revalidate)';

-- wval_record_run: the documented emergency bypass (admin only): records
-- metrics without validation, status unvalidated, visible in every report.
CREATE FUNCTION public.wval_record_run(world_id text, strategy_id text, stage text, metrics jsonb,
                                       actor text, reason text, context jsonb DEFAULT '{}')
RETURNS wval.evaluation_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_actor text := wval._ident('actor', actor);
    w wval.worlds := wval._world(p_world);
    new_run wval.evaluation_runs;
    r wval.evaluation_runs;
BEGIN
    PERFORM wval._one_of('stage', stage, wval._stages());
    PERFORM wval._require_text('reason', reason, '22023', 'Say why the validation is bypassed.');
    IF metrics IS NULL OR jsonb_typeof(metrics) <> 'object' THEN
        RAISE EXCEPTION '"metrics" must be a JSON object' USING ERRCODE = 'WV001',
            HINT = 'Pass metric blocks such as {"returns": {...}}.';
    END IF;
    -- the run and its evaluation_run_created event (run.c)
    new_run.world_id := p_world;
    new_run.strategy_id := p_strategy;
    new_run.stage := stage;
    new_run.kind := 'single';
    new_run.risk_tier := w.risk_tier;
    new_run.model_card_version := context->>'model_card_version';
    new_run.code_hash := context->>'code_hash';
    new_run.data_snapshot := context->'data_snapshot';
    new_run.context := coalesce(context, '{}') || jsonb_build_object('bypass_reason', reason);
    new_run.metrics := metrics;
    new_run.status := 'unvalidated';
    new_run.results := '{}';
    new_run.created_by := p_actor;
    r := wval._store_run(new_run);
    PERFORM wval._audit(p_world, 'validation_bypassed', p_actor,
                        jsonb_build_object('run_id', r.run_id, 'strategy_id', p_strategy, 'stage', stage, 'reason', reason));
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_record_run(text, text, text, jsonb, text, text, jsonb) IS 'emergency bypass (admin only): records a run without validation (status unvalidated), audited';

-- wval._fmt(x): a metric value for humans
CREATE FUNCTION wval._fmt(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN 'n/a'
                WHEN jsonb_typeof(v) = 'number' THEN
                    -- numeric, not float8: a stored number beyond a double (1e400) still formats
                    CASE WHEN abs(v::text::numeric) >= 1e6 OR (abs(v::text::numeric) < 1e-4 AND v::text::numeric <> 0)
                         THEN btrim(to_char(v::text::numeric, '9.999EEEE'))
                         ELSE rtrim(rtrim(round(v::text::numeric, 4)::text, '0'), '.') END
                WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}'
                ELSE v::text END
$$;
COMMENT ON FUNCTION wval._fmt(jsonb) IS 'formats a metric value for reports';

-- wval._threshold(details): "op threshold" for humans
CREATE FUNCTION wval._threshold(d jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN d->>'op' = 'between' THEN 'in [' || wval._fmt(d->'threshold'->0) || ', ' || wval._fmt(d->'threshold'->1) || ']'
                WHEN d ? 'op' THEN (d->>'op') || ' ' || wval._fmt(d->'threshold') || coalesce(' ' || (d->>'unit'), '')
                ELSE '' END
$$;
COMMENT ON FUNCTION wval._threshold(jsonb) IS 'formats the operator and threshold of a RuleResult';

CREATE FUNCTION public.wval_run_explain(run_id uuid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    o wval.overrides;
    lines text[] := '{}';
    rec record;
    st jsonb;
BEGIN
    lines := lines || format('run %s: world %s, strategy %s, stage %s, kind %s', r.run_id, r.world_id, r.strategy_id, r.stage, r.kind);
    lines := lines || format('evaluated %s by %s under policy version %s, profile %s, ruleset %s',
                             to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'), r.created_by,
                             coalesce(r.policy_version::text, 'none'), coalesce(r.profile, 'none'), coalesce(r.ruleset_hash, 'none'));
    IF r.status = 'unvalidated' THEN
        lines := lines || format('status UNVALIDATED: recorded through the emergency bypass (%s); no check ran',
                                 coalesce(r.context->>'bypass_reason', 'no reason'));
    ELSE
        lines := lines || format('status %s, recommended stage %s', upper(r.status), r.recommended_stage);
    END IF;
    lines := lines || ''::text || 'checks (failures first):'::text;
    FOR rec IN
        SELECT e.key, e.value AS v FROM jsonb_each(r.results) e
        ORDER BY CASE e.value->>'status' WHEN 'fail' THEN 0 WHEN 'warn' THEN 1 ELSE 2 END, e.key
    LOOP
        lines := lines || format('  %-4s %-38s %-8s %-5s value %s, threshold %s (%s)',
                                 rec.v->>'status', rec.key, rec.v->>'severity', rec.v->>'owner',
                                 wval._fmt(rec.v->'details'->'value'), nullif(wval._threshold(rec.v->'details'), ''),
                                 rec.v->>'reason_code');
        IF rec.v->>'status' <> 'pass' OR rec.v->>'reason_code' <> 'ok' THEN
            lines := lines || ('       ' || (rec.v->>'reason'));
        END IF;
    END LOOP;
    IF r.recommendation IS NOT NULL THEN
        lines := lines || ''::text || 'recommended stage:'::text;
        FOR st IN SELECT * FROM jsonb_array_elements(r.recommendation->'stages') LOOP
            lines := lines || format('  %-24s %s', st->>'stage',
                CASE WHEN st->>'profile' IS NULL THEN st->>'note'
                     WHEN (st->>'cleared')::boolean THEN format('profile %s cleared (%s)', st->>'profile', st->>'status')
                     ELSE format('profile %s NOT cleared, stopped by %s', st->>'profile',
                                 (SELECT string_agg(x, ', ') FROM jsonb_array_elements_text(st->'stopped_by') x)) END);
        END LOOP;
        lines := lines || format('  -> %s%s', r.recommendation->>'recommended_stage',
                                 CASE WHEN r.recommendation->>'stopped_at' IS NOT NULL AND r.recommendation->>'stopped_at' <> r.recommendation->>'recommended_stage'
                                      THEN format(' (the climb stopped at %s)', r.recommendation->>'stopped_at') ELSE '' END);
    END IF;
    lines := lines || ''::text || 'metrics:'::text;
    FOR rec IN
        SELECT b.key AS block, m.key, m.value FROM jsonb_each(r.metrics) b, jsonb_each(CASE WHEN jsonb_typeof(b.value) = 'object' THEN b.value ELSE '{}' END) m
        WHERE jsonb_typeof(m.value) IN ('number', 'string', 'null')
        ORDER BY 1, 2
    LOOP
        lines := lines || format('  %s.%s = %s', rec.block, rec.key, wval._fmt(rec.value));
    END LOOP;
    SELECT * INTO o FROM wval.current_overrides co WHERE co.run_id = r.run_id;
    lines := lines || ''::text || CASE WHEN o.run_id IS NULL THEN 'override: none'
        ELSE format('override: %s by %s on %s (%s)%s', o.status, coalesce(o.actor, '?'),
                    to_char(o.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), coalesce(o.reason, 'no reason'),
                    CASE WHEN o.status = 'approved' THEN format(', review due %s%s', to_char(o.review_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                                              CASE WHEN o.review_due_at < now() THEN ' (OVERDUE)' ELSE '' END) ELSE '' END) END;
    RETURN array_to_string(lines, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_run_explain(uuid) IS 'a human-readable account of one run: every check with value, threshold and outcome, why the recommended stage stopped where it did, metrics, override state';

GRANT EXECUTE ON FUNCTION public.wval_evaluate(text, text, text, float8[], jsonb, jsonb) TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_warm(text, integer) TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_record_run(text, text, text, jsonb, text, text, jsonb) TO wval_admin;
GRANT EXECUTE ON FUNCTION public.wval_run_explain(uuid) TO wval_analyst;

CREATE FUNCTION wval._apply_rules(policy jsonb, ruleset text, metrics jsonb, stage text DEFAULT 'backtest',
                                  fail_closed boolean DEFAULT false, layers text[] DEFAULT NULL,
                                  context jsonb DEFAULT '{}')
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_apply_rules' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._apply_rules(jsonb, text, jsonb, text, boolean, text[], jsonb) IS 'the check engine for other kinds of runs: applies the ruleset "live_monitoring", "cohort", a profile (null: the stage''s profile), optionally only some layers, to metrics; {status, cleared, profile, ruleset_hash, results, stopped_by, validation_error_count}';

------------------------------------------------------------------------------
-- Reads over outcomes (docs/store.md, "Reads for analysts")
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_rule_failure_stats(since timestamptz DEFAULT now() - interval '30 days',
                                        until timestamptz DEFAULT now())
RETURNS TABLE (rule text, reason_code text, results bigint, failed bigint, warned bigint,
               missing bigint, errored bigint)
LANGUAGE sql STABLE AS $$
    SELECT rr.rule, rr.reason_code, count(*),
           count(*) FILTER (WHERE rr.status = 'fail'),
           count(*) FILTER (WHERE rr.status = 'warn'),
           count(*) FILTER (WHERE rr.reason_code IN ('missing_metric', 'missing_metric_ignored')),
           count(*) FILTER (WHERE rr.reason_code = 'rule_error')
    FROM wval.rule_results rr
    WHERE rr.created_at >= since AND rr.created_at < until AND rr.reason_code <> 'ok'
    GROUP BY rr.rule, rr.reason_code
    ORDER BY 4 DESC, 5 DESC, 1, 2;
$$;
COMMENT ON FUNCTION public.wval_rule_failure_stats(timestamptz, timestamptz) IS 'per rule and reason code (other than ok): how often it failed, warned, was missing, errored';

CREATE FUNCTION public.wval_validation_slo(since timestamptz DEFAULT now() - interval '30 days',
                                    until timestamptz DEFAULT now())
RETURNS TABLE (world_id text, stage text, runs bigint,
               coverage_p50 float8, coverage_p95 float8, coverage_p99 float8,
               rules_executed_p50 float8, rules_executed_p95 float8, rules_executed_p99 float8,
               missing_metric_run_ratio float8, rule_error_run_ratio float8,
               coverage_ok boolean, rules_ok boolean, missing_ok boolean, errors_ok boolean, slo_met boolean)
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT e.world_id, e.stage,
               (e.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}')::float8 AS coverage,
               (e.metrics #>> '{diagnostics,validation_health,rules_executed_ratio}')::float8 AS executed,
               EXISTS (SELECT 1 FROM jsonb_each(e.results) x WHERE x.value->>'reason_code' = 'missing_metric') AS any_missing,
               EXISTS (SELECT 1 FROM jsonb_each(e.results) x WHERE x.value->>'reason_code' = 'rule_error') AS any_error
        FROM wval.evaluation_runs e
        WHERE e.created_at >= since AND e.created_at < until AND e.status <> 'unvalidated'
    ), s AS (
        SELECT r.world_id, r.stage, count(*) AS runs,
               percentile_cont(0.50) WITHIN GROUP (ORDER BY coverage DESC) AS c50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY coverage DESC) AS c95,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY coverage DESC) AS c99,
               percentile_cont(0.50) WITHIN GROUP (ORDER BY executed DESC) AS e50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY executed DESC) AS e95,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY executed DESC) AS e99,
               avg(any_missing::int)::float8 AS missing, avg(any_error::int)::float8 AS errors
        FROM r GROUP BY r.world_id, r.stage
    )
    SELECT s.world_id, s.stage, s.runs, s.c50, s.c95, s.c99, s.e50, s.e95, s.e99, s.missing, s.errors,
           s.c95 >= 0.98, s.e95 >= 1.0, s.missing <= 0.01, s.errors <= 0.01,
           s.c95 >= 0.98 AND s.e95 >= 1.0 AND s.missing <= 0.01 AND s.errors <= 0.01
    FROM s ORDER BY s.world_id, s.stage;
$$;
COMMENT ON FUNCTION public.wval_validation_slo(timestamptz, timestamptz) IS 'per world and stage: runs, the metric coverage and rules-executed ratios reached by 50/95/99 % of runs, the share of runs with a missing metric or a rule error, and whether the gates hold (coverage p95 >= 0.98, rules p95 >= 1.0, missing <= 1 %, errors <= 1 %)';

CREATE FUNCTION public.wval_failure_rate(since timestamptz DEFAULT now() - interval '12 months',
                                  until timestamptz DEFAULT now())
RETURNS TABLE (month date, risk_tier text, strategies_passed_live bigint, strategies_failed_ex_post bigint,
               failure_rate float8)
LANGUAGE sql STABLE AS $$
    WITH passed AS (
        SELECT DISTINCT date_trunc('month', r.created_at)::date AS month, w.risk_tier, r.world_id, r.strategy_id
        FROM wval.evaluation_runs r JOIN wval.worlds w USING (world_id)
        WHERE r.created_at >= since AND r.created_at < until
          AND (r.stage = 'live' OR r.kind = 'live') AND r.status = 'pass'
    ), confirmed AS (
        SELECT DISTINCT c.world_id, c.strategy_id
        FROM wval.ex_post_cases c WHERE c.status = 'confirmed'
    )
    SELECT p.month, p.risk_tier, count(*),
           count(*) FILTER (WHERE c.strategy_id IS NOT NULL),
           (count(*) FILTER (WHERE c.strategy_id IS NOT NULL))::float8 / count(*)
    FROM passed p LEFT JOIN confirmed c USING (world_id, strategy_id)
    GROUP BY p.month, p.risk_tier ORDER BY p.month, p.risk_tier;
$$;
COMMENT ON FUNCTION public.wval_failure_rate(timestamptz, timestamptz) IS 'ex-post failure rate by month and risk tier: strategies with a confirmed ex-post case / strategies whose live run passed';

GRANT EXECUTE ON FUNCTION public.wval_rule_failure_stats(timestamptz, timestamptz), public.wval_validation_slo(timestamptz, timestamptz),
      public.wval_failure_rate(timestamptz, timestamptz) TO wval_analyst;
