-- policy.sql: the policy DSL (docs/policy.md), next to policy.c and rules.c.
--
-- requires: store

CREATE FUNCTION wval._policy_validate(policy jsonb, fail_closed boolean DEFAULT false) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_validate' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._policy_validate(jsonb, boolean) IS 'validates a policy document (WV002) and returns {profile: ruleset_hash}';

CREATE FUNCTION wval._policy_ruleset(policy jsonb, stage text, fail_closed boolean) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_ruleset' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._policy_ruleset(jsonb, text, boolean) IS 'the materialised ruleset of the profile applied at a stage, with its ruleset_hash';

CREATE FUNCTION wval._reason_codes() RETURNS TABLE (code text, layer text, meaning text)
    AS 'MODULE_PATHNAME', 'wval_reason_codes' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._reason_codes() IS 'every reason code a RuleResult can carry (from the check catalogue)';

CREATE VIEW wval.reason_codes AS SELECT * FROM wval._reason_codes();
COMMENT ON VIEW wval.reason_codes IS 'stable reason codes of RuleResults: code, layer (* = any), meaning';
COMMENT ON COLUMN wval.reason_codes.code IS 'the reason code a RuleResult carries (rule_results.reason_code), e.g. ok, missing_metric, data_lag_above_max';
COMMENT ON COLUMN wval.reason_codes.layer IS 'the policy layer whose checks use it; * for codes of any layer';
COMMENT ON COLUMN wval.reason_codes.meaning IS 'what the code means';

-- wval._fail_closed(world): high-tier, client-critical worlds are always fail-closed.
CREATE FUNCTION wval._fail_closed(w wval.worlds) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT w.risk_tier = 'high' AND w.client_critical $$;
COMMENT ON FUNCTION wval._fail_closed(wval.worlds) IS 'true for worlds whose validation is forced fail-closed (risk tier high and client critical)';

CREATE FUNCTION public.wval_ruleset(world_id text, stage text DEFAULT 'backtest', version integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
    v integer := coalesce(version, public.wval_active_policy_version(world_id));
    doc jsonb;
BEGIN
    PERFORM wval._one_of('stage', stage, wval._stages());
    IF v IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', world_id
            USING ERRCODE = 'WV010',
                  HINT = 'Pass a version, or activate one with wval_policy_activate().';
    END IF;
    SELECT pv.policy INTO doc FROM wval.policy_versions pv
    WHERE pv.world_id = wval_ruleset.world_id AND pv.version = v;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy version % of world "%" does not exist', v, world_id
            USING ERRCODE = 'WV010', HINT = 'See wval.policy_versions for the published versions.';
    END IF;
    RETURN wval._policy_ruleset(doc, stage, wval._fail_closed(w));
END
$$;
COMMENT ON FUNCTION public.wval_ruleset(text, text, integer) IS 'the materialised ruleset (checks with metric, operator, threshold, severity, owner, mode; on_error, on_missing_metric, profile) applied at a stage, and its ruleset_hash';

GRANT SELECT ON wval.reason_codes TO wval_analyst;
GRANT EXECUTE ON FUNCTION wval._reason_codes() TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_ruleset(text, text, integer) TO wval_analyst;

CREATE FUNCTION wval._policy_settings(policy jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'windows_days', coalesce(policy #> '{live_monitoring,windows_days}', '[30, 60, 90]'),
        'demote_after', coalesce(policy #> '{live_monitoring,demote_after}', '2'))
$$;
COMMENT ON FUNCTION wval._policy_settings(jsonb) IS 'settings of a (validated) policy that are not checks: live_monitoring.windows_days (default [30, 60, 90]) and demote_after (default 2)';

-- wval._metric_coverage(metrics): validation_health.metric_coverage_ratio (rules.c)
CREATE FUNCTION wval._metric_coverage(metrics jsonb) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_metric_coverage' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._metric_coverage(jsonb) IS 'share of the 12 v1 core metrics present in a metrics document (validation_health.metric_coverage_ratio)';
GRANT EXECUTE ON FUNCTION wval._metric_coverage(jsonb) TO wval_analyst;
