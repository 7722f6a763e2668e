-- compare.sql: comparisons for analysts (docs/reports.md, "Comparisons"),
-- next to compare.c: what changed between two policy versions check by check,
-- the policy diff report as markdown or HTML, and trends of a metric or a check.
--
-- requires: store

CREATE FUNCTION wval._policy_rulesets(policy jsonb, fail_closed boolean) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_rulesets' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._policy_rulesets(jsonb, boolean) IS 'every materialised ruleset of a policy document by name (each validation profile; live_monitoring and cohort when they have checks); WV002 for an invalid document';

-- wval._policy_changes(old, new): the rows of wval_policy_compare for two
-- documents (pure).
CREATE FUNCTION wval._policy_changes(old_policy jsonb, new_policy jsonb, fail_closed boolean)
RETURNS TABLE (profile text, rule text, change text, attribute text, old_value jsonb, new_value jsonb)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, wval, pg_temp SET jit = off AS $$
-- jit off: the planner's guess for nested jsonb_each (100 rows each) passes
-- jit_above_cost, and compiling costs a second for a query that runs in ms
DECLARE
    o_rs jsonb := wval._policy_rulesets(old_policy, fail_closed);
    n_rs jsonb := wval._policy_rulesets(new_policy, fail_closed);
BEGIN
    RETURN QUERY
    WITH o AS (SELECT o_rs AS rs),
         n AS (SELECT n_rs AS rs),
         oc AS (SELECT p.key AS profile, c.key AS rule, c.value AS v
                FROM o, pg_catalog.jsonb_each(o.rs) p, pg_catalog.jsonb_each(p.value -> 'checks') c),
         nc AS (SELECT p.key AS profile, c.key AS rule, c.value AS v
                FROM n, pg_catalog.jsonb_each(n.rs) p, pg_catalog.jsonb_each(p.value -> 'checks') c),
         pairs AS (SELECT coalesce(oc.profile, nc.profile) AS profile, coalesce(oc.rule, nc.rule) AS rule,
                          oc.v AS ov, nc.v AS nv
                   FROM oc FULL JOIN nc ON nc.profile = oc.profile AND nc.rule = oc.rule),
         profiles AS (SELECT coalesce(op.key, np.key) AS profile, op.value AS ov, np.value AS nv
                      FROM (SELECT p.key, p.value FROM o, pg_catalog.jsonb_each(o.rs) p) op
                      FULL JOIN (SELECT p.key, p.value FROM n, pg_catalog.jsonb_each(n.rs) p) np ON np.key = op.key),
         stages AS (SELECT s AS stage_key, old_policy #> ARRAY['default_profile_by_stage', s] AS ov,
                           new_policy #> ARRAY['default_profile_by_stage', s] AS nv
                    FROM pg_catalog.unnest(ARRAY['backtest_only', 'paper_only', 'paper_ok_live_candidate']) s)
    -- which profile each stage applies
    SELECT NULL::text, 'default_profile_by_stage.' || s.stage_key, 'changed', 'profile', s.ov, s.nv
    FROM stages s WHERE s.ov IS DISTINCT FROM s.nv
    UNION ALL
    -- profiles that appear or go (their checks follow, one row each)
    SELECT p.profile, NULL, CASE WHEN p.ov IS NULL THEN 'added' ELSE 'removed' END, NULL,
           p.ov - 'checks', p.nv - 'checks'
    FROM profiles p WHERE p.ov IS NULL OR p.nv IS NULL
    UNION ALL
    -- on_error / on_missing_metric of a profile
    SELECT p.profile, NULL, 'changed', a, p.ov -> a, p.nv -> a
    FROM profiles p, pg_catalog.unnest(ARRAY['on_error', 'on_missing_metric']) a
    WHERE p.ov IS NOT NULL AND p.nv IS NOT NULL AND (p.ov -> a) IS DISTINCT FROM (p.nv -> a)
    UNION ALL
    SELECT x.profile, x.rule, CASE WHEN x.ov IS NULL THEN 'added' ELSE 'removed' END, NULL, x.ov, x.nv
    FROM pairs x WHERE x.ov IS NULL OR x.nv IS NULL
    UNION ALL
    -- one row per changed attribute of a check: threshold, op, severity, owner, mode, metric ...
    SELECT x.profile, x.rule, 'changed', a.k, x.ov -> a.k, x.nv -> a.k
    FROM pairs x, LATERAL (SELECT pg_catalog.jsonb_object_keys(x.ov) AS k
                           UNION SELECT pg_catalog.jsonb_object_keys(x.nv)) a
    WHERE x.ov IS NOT NULL AND x.nv IS NOT NULL AND (x.ov -> a.k) IS DISTINCT FROM (x.nv -> a.k)
    ORDER BY 1 NULLS FIRST, 2 NULLS FIRST, 4 NULLS FIRST;
END
$$;
COMMENT ON FUNCTION wval._policy_changes(jsonb, jsonb, boolean) IS 'the check-by-check changes between two policy documents, as wval_policy_compare lists them';

------------------------------------------------------------------------------
-- wval_policy_compare
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_policy_compare(world_id text, old_version integer, new_version integer)
RETURNS TABLE (profile text, rule text, change text, attribute text, old_value jsonb, new_value jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
BEGIN
    RETURN QUERY SELECT * FROM wval._policy_changes(wval._policy_doc(w.world_id, old_version),
                                                    wval._policy_doc(w.world_id, new_version), wval._fail_closed(w));
END
$$;
COMMENT ON FUNCTION public.wval_policy_compare(text, integer, integer) IS 'what changed between two published policy versions of a world, as the engine materialises them (the world''s fail-closed rule applied): one row per check added or removed, per changed attribute of a check (threshold, op, severity, owner, mode, metric), per changed on_error / on_missing_metric of a profile, per profile added or removed and per stage mapped to another profile; no row when nothing changed';

------------------------------------------------------------------------------
-- wval_policy_diff_render
------------------------------------------------------------------------------

-- wval._md_text(t): text for markdown outside tables: no markup, no raw HTML
CREATE FUNCTION wval._md_text(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT pg_catalog.regexp_replace(replace(replace(replace(replace(coalesce(t, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), E'\n', ' '),
                                    '([\\`*_\[\]|#])', '\\\1', 'g') $$;
COMMENT ON FUNCTION wval._md_text(text) IS 'escapes text for markdown: markup characters backslash-escaped, HTML special characters as entities, newlines as spaces';

-- (SECURITY DEFINER only for the escaping helpers of schema wval; it reads no table)
CREATE FUNCTION public.wval_policy_diff_render(diff jsonb, format text DEFAULT 'markdown') RETURNS text
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET jit = off AS $$
DECLARE
    html boolean;
    out text[] := '{}';
    -- one table: title, header cells, rows of cells (user text, escaped here)
    sections jsonb := '[]';
    v text;
    s jsonb;
    r_ jsonb;
BEGIN
    PERFORM wval._one_of('format', format, ARRAY['markdown', 'html']);
    IF diff IS NULL OR jsonb_typeof(diff) <> 'object' OR NOT diff ? 'impact_ratio' THEN
        RAISE EXCEPTION 'invalid value for "diff"' USING ERRCODE = '22023',
            DETAIL = format('diff is %s.', coalesce(left(diff::text, 80), 'null')),
            HINT = 'Pass the report of wval_policy_diff() (optionally with a "policy_changes" array from wval_policy_compare()).';
    END IF;
    html := format = 'html';
    v := CASE WHEN diff ? 'new_policy_version' AND jsonb_typeof(diff -> 'new_policy_version') = 'number'
              THEN 'v' || (diff ->> 'new_policy_version') ELSE 'candidate' END;
    v := coalesce('v' || (diff ->> 'old_policy_version'), 'old document') || ' → ' || v;

    sections := sections || jsonb_build_array(jsonb_build_object(
        'title', 'Summary', 'header', jsonb_build_array('item', 'value'),
        'rows', (SELECT coalesce(jsonb_agg(jsonb_build_array(k, coalesce(diff ->> k, '')) ORDER BY i), '[]')
                 FROM unnest(ARRAY['old_policy_version', 'new_policy_version', 'old_ruleset_hash', 'new_ruleset_hash',
                                   'total_strategies', 'strategies_affected', 'impact_ratio', 'status_changes',
                                   'stage_changes', 'selection_changes', 'rule_status_changes']) WITH ORDINALITY u(k, i)
                 WHERE diff ? k)));
    IF jsonb_typeof(diff -> 'policy_changes') = 'array' THEN
        sections := sections || jsonb_build_array(jsonb_build_object(
            'title', 'Policy changes', 'header', jsonb_build_array('profile', 'check', 'change', 'attribute', 'old', 'new'),
            'rows', (SELECT coalesce(jsonb_agg(jsonb_build_array(coalesce(c ->> 'profile', ''), coalesce(c ->> 'rule', ''),
                                                                 coalesce(c ->> 'change', ''), coalesce(c ->> 'attribute', ''),
                                                                 coalesce(nullif(c -> 'old_value', 'null')::text, ''),
                                                                 coalesce(nullif(c -> 'new_value', 'null')::text, ''))
                                               ORDER BY i), '[]')
                     FROM jsonb_array_elements(diff -> 'policy_changes') WITH ORDINALITY u(c, i))));
    END IF;
    sections := sections || jsonb_build_array(jsonb_build_object(
        'title', 'Top offenders', 'header', jsonb_build_array('rank', 'strategy', 'run', 'label', 'status', 'recommended stage', 'checks flipped'),
        'rows', (SELECT coalesce(jsonb_agg(jsonb_build_array(coalesce(o ->> 'rank', ''), coalesce(o ->> 'strategy_id', ''),
                                                             coalesce(o ->> 'run_id', ''), coalesce(o ->> 'label', ''),
                                                             coalesce(o ->> 'old_status', '') || ' → ' || coalesce(o ->> 'new_status', ''),
                                                             coalesce(o ->> 'old_recommended_stage', '') || ' → ' || coalesce(o ->> 'new_recommended_stage', ''),
                                                             coalesce(o ->> 'rule_flips', '')) ORDER BY i), '[]')
                 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(diff -> 'top_offenders') = 'array' THEN diff -> 'top_offenders' ELSE '[]' END)
                      WITH ORDINALITY u(o, i))));
    sections := sections || jsonb_build_array(jsonb_build_object(
        'title', 'Changed checks', 'header', jsonb_build_array('strategy', 'run', 'direction', 'check', 'status', 'reason code'),
        'rows', (SELECT coalesce(jsonb_agg(jsonb_build_array(coalesce(d ->> 'strategy_id', ''), coalesce(d ->> 'run_id', ''),
                                                             coalesce(d ->> 'direction', ''), coalesce(r ->> 'rule', ''),
                                                             coalesce(r ->> 'old_status', '–') || ' → ' || coalesce(r ->> 'new_status', '–'),
                                                             coalesce(r ->> 'old_reason_code', '–') || ' → ' || coalesce(r ->> 'new_reason_code', '–'))
                                           ORDER BY i, j), '[]')
                 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(diff -> 'diffs') = 'array' THEN diff -> 'diffs' ELSE '[]' END)
                      WITH ORDINALITY u(d, i),
                      jsonb_array_elements(CASE WHEN jsonb_typeof(d -> 'rules') = 'array' THEN d -> 'rules' ELSE '[]' END)
                      WITH ORDINALITY x(r, j))));

    IF html THEN
        out := out || ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>wval policy diff ' || wval._html(v) || '</title>'
                       '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}'
                       'td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>'
                       '<h1>Policy diff ' || wval._html(v) || '</h1>');
    ELSE
        out := out || ('# Policy diff ' || wval._md_text(v));
    END IF;
    FOR s IN SELECT x FROM jsonb_array_elements(sections) x LOOP
        IF html THEN
            out := out || ('<h2>' || wval._html(s ->> 'title') || '</h2>');
        ELSE
            out := out || ''::text || ('## ' || (s ->> 'title')) || ''::text;
        END IF;
        IF jsonb_array_length(s -> 'rows') = 0 THEN
            out := out || CASE WHEN html THEN '<p>none</p>' ELSE 'none' END;
            CONTINUE;
        END IF;
        IF html THEN
            out := out || ('<table><tr>' || (SELECT string_agg('<th>' || wval._html(h) || '</th>', '' ORDER BY i)
                                            FROM jsonb_array_elements_text(s -> 'header') WITH ORDINALITY u(h, i)) || '</tr>');
        ELSE
            out := out || ('| ' || (SELECT string_agg(h, ' | ' ORDER BY i) FROM jsonb_array_elements_text(s -> 'header') WITH ORDINALITY u(h, i)) || ' |')
                       || ('|' || repeat(' --- |', jsonb_array_length(s -> 'header')));
        END IF;
        FOR r_ IN SELECT x FROM jsonb_array_elements(s -> 'rows') x LOOP
            IF html THEN
                out := out || ('<tr>' || (SELECT string_agg('<td>' || wval._html(c) || '</td>', '' ORDER BY i)
                                          FROM jsonb_array_elements_text(r_) WITH ORDINALITY u(c, i)) || '</tr>');
            ELSE
                out := out || ('| ' || (SELECT string_agg(wval._md_text(c), ' | ' ORDER BY i)
                                        FROM jsonb_array_elements_text(r_) WITH ORDINALITY u(c, i)) || ' |');
            END IF;
        END LOOP;
        IF html THEN
            out := out || '</table>'::text;
        END IF;
    END LOOP;
    IF html THEN
        out := out || '</body></html>'::text;
    END IF;
    RETURN array_to_string(out, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff_render(jsonb, text) IS 'renders a wval_policy_diff report as markdown or self-contained HTML (no scripts, no external assets; every string of the report escaped): summary, policy changes (when the report carries a "policy_changes" array of wval_policy_compare rows), top offenders, changed checks';

------------------------------------------------------------------------------
-- wval_trend
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_trend(world_id text, metric_or_check text, bucket text DEFAULT 'month',
                                  since timestamptz DEFAULT now() - interval '12 months',
                                  until timestamptz DEFAULT now(), stat text DEFAULT NULL, stage text DEFAULT NULL)
RETURNS TABLE (bucket_start timestamptz, n bigint, value double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET jit = off AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
    is_check boolean;
    step interval;
    path text[];
BEGIN
    PERFORM wval._one_of('bucket', bucket, ARRAY['day', 'week', 'month', 'quarter', 'year']);
    IF metric_or_check IS NULL OR btrim(metric_or_check) = '' THEN
        RAISE EXCEPTION '"metric_or_check" must not be blank' USING ERRCODE = '22023',
            HINT = 'Pass a metric path such as returns.sharpe or a check such as performance.sharpe_min.';
    END IF;
    IF since IS NULL OR until IS NULL OR NOT isfinite(since) OR NOT isfinite(until) OR since > until THEN
        RAISE EXCEPTION 'invalid period' USING ERRCODE = '22023',
            DETAIL = format('since is %s, until is %s.', coalesce(since::text, 'null'), coalesce(until::text, 'null')),
            HINT = 'Pass finite bounds with since <= until.';
    END IF;
    IF stage IS NOT NULL THEN
        PERFORM wval._one_of('stage', stage, wval._stages());
    END IF;
    step := CASE bucket WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || bucket)::interval END;
    -- (shortest length of a bucket: a bound that needs no series)
    IF (extract(epoch FROM until - since) / (CASE bucket WHEN 'day' THEN 86400 WHEN 'week' THEN 604800 WHEN 'month' THEN 28 * 86400
                                                         WHEN 'quarter' THEN 89 * 86400 ELSE 365 * 86400 END)) > 10000 THEN
        RAISE EXCEPTION 'the period has more than 10000 buckets' USING ERRCODE = '22023',
            DETAIL = format('from %s to %s by %s.', since, until, bucket),
            HINT = 'Pass a larger bucket or a shorter period.';
    END IF;
    -- a check when the stat says so, or when the path is no number in the
    -- metrics of the period's runs and those runs have results of that check
    -- (wval.rule_results unpacks every run's results: each EXISTS stops at the
    -- first run that answers it); else a metric path.  A check without
    -- results in the period and a metric path without values give the same
    -- empty buckets.
    is_check := coalesce(stat IN ('pass_rate', 'fail_rate', 'warn_rate'), false)
                OR (stat IS NULL
                    AND NOT EXISTS (SELECT 1 FROM wval.evaluation_runs e
                                    WHERE e.world_id = w.world_id AND e.created_at >= since AND e.created_at <= until
                                      AND jsonb_typeof(e.metrics #> string_to_array(metric_or_check, '.')) = 'number')
                    AND EXISTS (SELECT 1 FROM wval.evaluation_runs e
                                WHERE e.world_id = w.world_id AND e.created_at >= since AND e.created_at <= until
                                  AND e.results ? metric_or_check));
    IF is_check THEN
        stat := coalesce(stat, 'pass_rate');
    ELSE
        stat := coalesce(stat, 'mean');
        PERFORM wval._one_of('stat', stat, ARRAY['mean', 'median', 'min', 'max', 'pass_rate', 'fail_rate', 'warn_rate']);
        path := string_to_array(metric_or_check, '.');
    END IF;

    RETURN QUERY
    WITH buckets AS (
        SELECT b AS b FROM generate_series(date_trunc(bucket, since AT TIME ZONE 'UTC'), until AT TIME ZONE 'UTC', step) b),
    checks AS (
        SELECT date_trunc(bucket, rr.created_at AT TIME ZONE 'UTC') AS b, count(*) AS n,
               count(*) FILTER (WHERE rr.status = CASE stat WHEN 'pass_rate' THEN 'pass' WHEN 'fail_rate' THEN 'fail' ELSE 'warn' END)::float8
                   / count(*) AS v
        FROM wval.rule_results rr
        WHERE is_check AND rr.world_id = w.world_id AND rr.rule = metric_or_check
          AND rr.created_at >= since AND rr.created_at <= until
          AND (wval_trend.stage IS NULL OR rr.stage = wval_trend.stage)
        GROUP BY 1),
    metrics AS (
        SELECT date_trunc(bucket, e.created_at AT TIME ZONE 'UTC') AS b, count(*) AS n,
               CASE stat WHEN 'mean' THEN avg(x) WHEN 'min' THEN min(x) WHEN 'max' THEN max(x)
                         ELSE percentile_cont(0.5) WITHIN GROUP (ORDER BY x) END AS v
        FROM wval.evaluation_runs e, LATERAL (SELECT (e.metrics #>> path)::float8 AS x) m
        WHERE NOT is_check AND e.world_id = w.world_id AND e.created_at >= since AND e.created_at <= until
          AND (wval_trend.stage IS NULL OR e.stage = wval_trend.stage)
          AND jsonb_typeof(e.metrics #> path) = 'number'
        GROUP BY 1)
    SELECT bk.b AT TIME ZONE 'UTC', coalesce(c.n, m.n, 0), coalesce(c.v, m.v)
    FROM buckets bk LEFT JOIN checks c ON c.b = bk.b LEFT JOIN metrics m ON m.b = bk.b
    ORDER BY bk.b;
END
$$;
COMMENT ON FUNCTION public.wval_trend(text, text, text, timestamptz, timestamptz, text, text) IS 'a tidy series for dashboards: one row per UTC bucket (day, week, month, quarter, year) of [since, until], empty buckets included: bucket_start, n (runs with the metric / results of the check) and value: for a metric path (e.g. returns.sharpe) its mean (stat mean | median | min | max) over the world''s runs; for a check (e.g. performance.sharpe_min) its pass rate (stat pass_rate | fail_rate | warn_rate) over its results; stage narrows both';

GRANT EXECUTE ON FUNCTION public.wval_policy_compare(text, integer, integer),
    public.wval_policy_diff_render(jsonb, text),
    public.wval_trend(text, text, text, timestamptz, timestamptz, text, text) TO wval_analyst;
