-- diff.sql: policy diff and the impact gate (docs/policy-change.md,
-- "The diff report" and "The impact gate"), next to diff.c.
--
-- requires: store

------------------------------------------------------------------------------
-- The replay (C, diff.c)
------------------------------------------------------------------------------

CREATE FUNCTION wval._policy_diff_history(world_id text, old_policy jsonb, new_policy jsonb, stage text,
                                  since timestamptz, until timestamptz, dedupe text,
                                  fail_closed boolean, old_version integer, new_version integer)
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_diff_history' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._policy_diff_history(text, jsonb, jsonb, text, timestamptz, timestamptz, text, boolean, integer, integer) IS 'replays a world''s stored single runs of a stage (created within [since, until], not unvalidated; the latest per strategy when dedupe = strategy) under two policies through one cursor; the diff report';

CREATE FUNCTION wval._scenario_outcomes(policy jsonb, runs jsonb, stage text, fail_closed boolean) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_scenario_outcomes' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._scenario_outcomes(jsonb, jsonb, text, boolean) IS 'status and recommended stage of each run given in the scenario shape, the policy materialised once: [{run_id, status, recommended_stage}]';

-- wval._policy_doc(world, version): a published policy document, WV010 when
-- the version does not exist.
CREATE FUNCTION wval._policy_doc(p_world_id text, p_version integer) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    doc jsonb;
BEGIN
    SELECT pv.policy INTO doc FROM wval.policy_versions pv
    WHERE pv.world_id = p_world_id AND pv.version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy version % of world "%" does not exist', coalesce(p_version::text, 'null'), p_world_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('version is %s.', coalesce(p_version::text, 'null')),
                  HINT = 'See wval.policy_versions for the published versions.';
    END IF;
    RETURN doc;
END
$$;
COMMENT ON FUNCTION wval._policy_doc(text, integer) IS 'the document of a published policy version; WV010 when it does not exist';

------------------------------------------------------------------------------
-- wval_policy_diff
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_policy_diff(world_id text, old_version integer, new_version integer,
                                        stage text DEFAULT 'backtest',
                                        since timestamptz DEFAULT now() - interval '12 months',
                                        until timestamptz DEFAULT now(),
                                        dedupe text DEFAULT 'strategy')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
BEGIN
    RETURN wval._policy_diff_history(w.world_id, wval._policy_doc(w.world_id, old_version),
                             wval._policy_doc(w.world_id, new_version), stage, since, until, dedupe,
                             wval._fail_closed(w), old_version, new_version);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff(text, integer, integer, text, timestamptz, timestamptz, text) IS 'replays the world''s stored runs of a stage under two published policy versions with the C engine: {old_policy_version, new_policy_version, old_ruleset_hash, new_ruleset_hash, total_strategies, strategies_affected, selection_changes, stage_changes, status_changes, rule_status_changes, impact_ratio, diffs, top_offenders} (docs/policy-change.md)';

CREATE FUNCTION public.wval_policy_diff(world_id text, old_version integer, new_policy jsonb,
                                        stage text DEFAULT 'backtest',
                                        since timestamptz DEFAULT now() - interval '12 months',
                                        until timestamptz DEFAULT now(),
                                        dedupe text DEFAULT 'strategy')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
BEGIN
    RETURN wval._policy_diff_history(w.world_id, wval._policy_doc(w.world_id, old_version), new_policy, stage,
                             since, until, dedupe, wval._fail_closed(w), old_version, NULL);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff(text, integer, jsonb, text, timestamptz, timestamptz, text) IS 'the policy diff of a published version against a candidate policy document (validated like wval_policy_publish, WV002); new_policy_version is null';

CREATE FUNCTION public.wval_policy_diff(old_policy jsonb, new_policy jsonb, runs jsonb, stage text DEFAULT 'backtest')
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_diff' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_policy_diff(jsonb, jsonb, jsonb, text) IS 'the policy diff of two policy documents over runs given as JSON, in the scenario files'' shape [{world_id, strategy_id, run_id, metrics}] (optionally context.data_as_of, context.baseline_metrics)';

------------------------------------------------------------------------------
-- The impact gate
------------------------------------------------------------------------------

-- wval._check_impact_ratio(x): the gate threshold, 22023 unless 0 < x <= 1.
CREATE FUNCTION wval._check_impact_ratio(p_ratio float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_ratio IS NULL OR NOT (p_ratio > 0 AND p_ratio <= 1) THEN
        RAISE EXCEPTION 'invalid value for "fail_impact_ratio"' USING ERRCODE = '22023',
            DETAIL = format('fail_impact_ratio is %s.', coalesce(p_ratio::text, 'null')),
            HINT = 'Pass a share of strategies greater than 0 and at most 1, e.g. 0.05.';
    END IF;
    RETURN p_ratio;
END
$$;
COMMENT ON FUNCTION wval._check_impact_ratio(float8) IS 'checks an impact gate threshold (0 < x <= 1; 22023 otherwise)';

-- wval._impact_threshold(world): the world's gate threshold,
-- settings.fail_impact_ratio when it is a valid share, else 0.05.
CREATE FUNCTION wval._impact_threshold(w wval.worlds) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(w.settings -> 'fail_impact_ratio') = 'number'
                     AND (w.settings ->> 'fail_impact_ratio')::float8 > 0
                     AND (w.settings ->> 'fail_impact_ratio')::float8 <= 1
                THEN (w.settings ->> 'fail_impact_ratio')::float8 ELSE 0.05 END
$$;
COMMENT ON FUNCTION wval._impact_threshold(wval.worlds) IS 'the impact gate threshold of a world: settings.fail_impact_ratio (0 < x <= 1), default 0.05';

-- wval._impact_event(world, data, discriminator): emits
-- impact_threshold_exceeded (docs/bus.md, "Event catalogue": world, versions, impact ratio).
CREATE FUNCTION wval._impact_event(p_world_id text, p_data jsonb, p_discriminator text) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._emit('impact_threshold_exceeded', p_world_id,
                      format('v%s..%s', coalesce(p_data ->> 'old_policy_version', '?'),
                             coalesce('v' || (p_data ->> 'new_policy_version'), 'candidate')),
                      format('impact_threshold_exceeded:%s:v%s..%s:%s', coalesce(p_world_id, '-'),
                             coalesce(p_data ->> 'old_policy_version', '?'),
                             coalesce('v' || (p_data ->> 'new_policy_version'), 'candidate'), p_discriminator),
                      p_data);
$$;
COMMENT ON FUNCTION wval._impact_event(text, jsonb, text) IS 'emits impact_threshold_exceeded for a gate breach (subject v<old>..v<new> or v<old>..candidate)';

-- wval._gate(report, world, threshold, raise, stage): decides the gate on a
-- diff report.  At or above the threshold it raises WV008 (raise => true;
-- the aborted transaction keeps no event) or emits
-- impact_threshold_exceeded and returns the report (raise => false).
CREATE FUNCTION wval._gate(p_report jsonb, p_world_id text, p_threshold float8, p_raise boolean, p_stage text)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    ratio float8 := (p_report ->> 'impact_ratio')::float8;
    breached boolean;
    offenders text;
BEGIN
    PERFORM wval._check_impact_ratio(p_threshold);
    breached := ratio >= p_threshold;
    IF breached AND coalesce(p_raise, true) THEN
        SELECT string_agg(format('%s (%s, %s -> %s)', o ->> 'strategy_id', o ->> 'label', o ->> 'old_status',
                                 o ->> 'new_status'), ', ' ORDER BY (o ->> 'rank')::int)
        INTO offenders
        FROM jsonb_array_elements(p_report -> 'top_offenders') o
        WHERE (o ->> 'rank')::int <= 3;
        RAISE EXCEPTION 'policy change has an impact ratio of %, at or above the gate %', ratio, p_threshold
            USING ERRCODE = 'WV008',
                  DETAIL = format('world %s, stage %s, version %s -> %s: %s of %s strategies affected (%s status, %s stage, %s selection changes, %s rule flips); top offenders: %s.',
                                  coalesce(quote_literal(p_world_id), 'none'), p_stage,
                                  coalesce(p_report ->> 'old_policy_version', 'document'),
                                  coalesce(p_report ->> 'new_policy_version', 'candidate'),
                                  p_report ->> 'strategies_affected', p_report ->> 'total_strategies',
                                  p_report ->> 'status_changes', p_report ->> 'stage_changes',
                                  p_report ->> 'selection_changes', p_report ->> 'rule_status_changes',
                                  coalesce(offenders, 'none')),
                  HINT = 'Review the report of wval_policy_diff(), roll new checks out with "mode": "warn" first, or activate with force => true and a reason (recorded). Call the gate with raise_on_breach => false to get the report and the impact_threshold_exceeded event instead of this error.';
    END IF;
    IF breached THEN
        IF p_world_id IS NOT NULL THEN
            PERFORM wval._require_world_access(p_world_id, 'write');   -- the event is a write
        END IF;
        PERFORM wval._impact_event(p_world_id,
                                   jsonb_build_object('world_id', p_world_id, 'source', 'gate', 'stage', p_stage,
                                                      'old_policy_version', p_report -> 'old_policy_version',
                                                      'new_policy_version', p_report -> 'new_policy_version',
                                                      'old_ruleset_hash', p_report -> 'old_ruleset_hash',
                                                      'new_ruleset_hash', p_report -> 'new_ruleset_hash',
                                                      'impact_ratio', p_report -> 'impact_ratio',
                                                      'fail_impact_ratio', p_threshold,
                                                      'strategies_affected', p_report -> 'strategies_affected',
                                                      'total_strategies', p_report -> 'total_strategies'),
                                   'gate-' || gen_random_uuid());
    END IF;
    RETURN p_report || jsonb_build_object('gate', jsonb_build_object('fail_impact_ratio', p_threshold,
                                                                     'breached', breached));
END
$$;
COMMENT ON FUNCTION wval._gate(jsonb, text, float8, boolean, text) IS 'decides the impact gate on a diff report: WV008 at or above the threshold, or (raise => false) the impact_threshold_exceeded event and the report with gate.breached';

CREATE FUNCTION public.wval_policy_diff_gate(world_id text, old_version integer, new_version integer,
                                             stage text DEFAULT 'backtest',
                                             since timestamptz DEFAULT now() - interval '12 months',
                                             until timestamptz DEFAULT now(),
                                             dedupe text DEFAULT 'strategy',
                                             fail_impact_ratio float8 DEFAULT 0.05,
                                             raise_on_breach boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._check_impact_ratio(fail_impact_ratio);
    RETURN wval._gate(public.wval_policy_diff(world_id, old_version, new_version, stage, since, until, dedupe),
                      world_id, fail_impact_ratio, raise_on_breach, stage);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff_gate(text, integer, integer, text, timestamptz, timestamptz, text, float8, boolean) IS 'the policy diff with the impact gate: WV008 when impact_ratio >= fail_impact_ratio; with raise_on_breach => false it emits impact_threshold_exceeded instead and returns the report with gate.breached (for jobs and CI)';

CREATE FUNCTION public.wval_policy_diff_gate(world_id text, old_version integer, new_policy jsonb,
                                             stage text DEFAULT 'backtest',
                                             since timestamptz DEFAULT now() - interval '12 months',
                                             until timestamptz DEFAULT now(),
                                             dedupe text DEFAULT 'strategy',
                                             fail_impact_ratio float8 DEFAULT 0.05,
                                             raise_on_breach boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._check_impact_ratio(fail_impact_ratio);
    RETURN wval._gate(public.wval_policy_diff(world_id, old_version, new_policy, stage, since, until, dedupe),
                      world_id, fail_impact_ratio, raise_on_breach, stage);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff_gate(text, integer, jsonb, text, timestamptz, timestamptz, text, float8, boolean) IS 'the impact gate for a candidate policy document against a published version (see the version overload)';

CREATE FUNCTION public.wval_policy_diff_gate(old_policy jsonb, new_policy jsonb, runs jsonb,
                                             stage text DEFAULT 'backtest',
                                             fail_impact_ratio float8 DEFAULT 0.05,
                                             raise_on_breach boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._check_impact_ratio(fail_impact_ratio);
    RETURN wval._gate(public.wval_policy_diff(old_policy, new_policy, runs, stage),
                      NULL, fail_impact_ratio, raise_on_breach, stage);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff_gate(jsonb, jsonb, jsonb, text, float8, boolean) IS 'the impact gate over runs given as JSON (CI): WV008 at or above fail_impact_ratio, or the event and the report with raise_on_breach => false';

-- wval._activation_impact(world, old_version, new_version): the diff of a
-- version change over every stage with the defaults of wval_policy_diff
-- (12 months, latest run per strategy), and whether the world's gate holds.
CREATE FUNCTION wval._activation_impact(w wval.worlds, p_old integer, p_new integer) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    old_doc jsonb := wval._policy_doc(w.world_id, p_old);
    new_doc jsonb := wval._policy_doc(w.world_id, p_new);
    threshold float8 := wval._impact_threshold(w);
    stages jsonb := '{}';
    st text;
    rep jsonb;
    worst float8 := 0;
    worst_stage text;
BEGIN
    FOREACH st IN ARRAY wval._stages() LOOP
        rep := wval._policy_diff_history(w.world_id, old_doc, new_doc, st, now() - interval '12 months', now(),
                                 'strategy', wval._fail_closed(w), p_old, p_new);
        stages := stages || jsonb_build_object(st, jsonb_build_object(
            'impact_ratio', rep -> 'impact_ratio', 'total_strategies', rep -> 'total_strategies',
            'strategies_affected', rep -> 'strategies_affected', 'status_changes', rep -> 'status_changes',
            'stage_changes', rep -> 'stage_changes', 'selection_changes', rep -> 'selection_changes',
            'rule_status_changes', rep -> 'rule_status_changes',
            'old_ruleset_hash', rep -> 'old_ruleset_hash', 'new_ruleset_hash', rep -> 'new_ruleset_hash',
            'top_offenders', rep -> 'top_offenders'));
        IF (rep ->> 'impact_ratio')::float8 > worst OR worst_stage IS NULL THEN
            worst := (rep ->> 'impact_ratio')::float8;
            worst_stage := st;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('old_policy_version', p_old, 'new_policy_version', p_new,
                              'fail_impact_ratio', threshold, 'impact_ratio', worst, 'stage', worst_stage,
                              'breached', worst >= threshold, 'stages', stages);
END
$$;
COMMENT ON FUNCTION wval._activation_impact(wval.worlds, integer, integer) IS 'the impact of a version change in a world over every stage (12 months, latest run per strategy) against the world''s gate threshold';

GRANT EXECUTE ON FUNCTION public.wval_policy_diff(text, integer, integer, text, timestamptz, timestamptz, text),
      public.wval_policy_diff(text, integer, jsonb, text, timestamptz, timestamptz, text),
      public.wval_policy_diff(jsonb, jsonb, jsonb, text)
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_policy_diff_gate(text, integer, integer, text, timestamptz, timestamptz, text, float8, boolean),
      public.wval_policy_diff_gate(text, integer, jsonb, text, timestamptz, timestamptz, text, float8, boolean),
      public.wval_policy_diff_gate(jsonb, jsonb, jsonb, text, float8, boolean)
   TO wval_validator;
