-- report.sql: the validation report of one run (docs/evaluate.md,
-- "Reading the outcome").
--
-- requires: store

-- wval._report_sections(run): the report as (section, heading, rows of cells)
-- so that markdown and HTML render the same content.
CREATE FUNCTION wval._report_rows(r wval.evaluation_runs)
RETURNS TABLE (section int, heading text, cells text[])
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    o record;
    rec record;
    fails int := 0;
    warns int := 0;
BEGIN
    -- 1. summary
    section := 1; heading := 'Summary';
    FOR cells IN SELECT ARRAY[k, v] FROM (VALUES
        ('status', upper(r.status)), ('recommended stage', coalesce(r.recommended_stage, 'none')),
        ('world', r.world_id), ('strategy', r.strategy_id), ('run', r.run_id::text), ('stage', r.stage),
        ('kind', r.kind), ('risk tier', coalesce(r.risk_tier, 'n/a')),
        ('model card version', coalesce(r.model_card_version, 'not given')),
        ('profile', coalesce(r.profile, 'none')), ('policy version', coalesce(r.policy_version::text, 'none')),
        ('ruleset hash', coalesce(r.ruleset_hash, 'none')),
        ('evaluated', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"') || ' by ' || r.created_by)) t(k, v)
    LOOP RETURN NEXT; END LOOP;

    -- 2. scope from the model card
    section := 2; heading := 'Scope';
    FOR cells IN SELECT ARRAY[k, v] FROM (VALUES
        ('model card version', coalesce(r.model_card_version, 'not given')),
        ('code hash', coalesce(r.code_hash, 'not given')),
        ('data snapshot', coalesce(r.data_snapshot::text, 'not given')),
        ('returns', CASE WHEN r.returns_hash IS NULL THEN 'not given (supplied metrics only)'
                         ELSE format('%s periods, %s', r.metrics #>> '{diagnostics,n_periods}', r.returns_hash) END),
        ('campaign', coalesce(r.campaign_id, 'none'))) t(k, v)
    LOOP RETURN NEXT; END LOOP;

    -- 3. rules, failures first
    section := 3; heading := 'Rules';
    FOR rec IN
        SELECT e.key, e.value AS v FROM jsonb_each(r.results) e
        ORDER BY CASE e.value->>'status' WHEN 'fail' THEN 0 WHEN 'warn' THEN 1 ELSE 2 END,
                 CASE e.value->>'severity' WHEN 'blocking' THEN 0 WHEN 'soft' THEN 1 ELSE 2 END, e.key
    LOOP
        cells := ARRAY[rec.key, rec.v->>'status', rec.v->>'severity', rec.v->>'owner',
                       wval._fmt(rec.v->'details'->'value'), wval._threshold(rec.v->'details'),
                       rec.v->>'reason_code', rec.v->>'reason'];
        fails := fails + (rec.v->>'status' = 'fail')::int;
        warns := warns + (rec.v->>'status' = 'warn')::int;
        RETURN NEXT;
    END LOOP;

    -- 4. metric snapshot
    section := 4; heading := 'Metrics';
    FOR cells IN
        SELECT ARRAY[b.key || '.' || m.key, wval._fmt(m.value)]
        FROM jsonb_each(r.metrics) b,
             jsonb_each(CASE WHEN jsonb_typeof(b.value) = 'object' THEN b.value ELSE '{}' END) m
        WHERE b.key IN ('returns', 'sample', 'robustness', 'risk', 'portfolio')
          AND jsonb_typeof(m.value) IN ('number', 'string', 'null')
        ORDER BY b.key, m.key
    LOOP RETURN NEXT; END LOOP;

    -- 5. overrides
    section := 5; heading := 'Overrides';
    FOR o IN SELECT * FROM wval.overrides ov WHERE ov.run_id = r.run_id ORDER BY ov.recorded_at, ov.override_id LOOP
        cells := ARRAY[o.status, coalesce(o.actor, '?'), to_char(o.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                       coalesce(to_char(o.review_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), ''), coalesce(o.reason, '')];
        RETURN NEXT;
    END LOOP;

    -- 6. benchmark comparison
    section := 6; heading := 'Benchmark';
    IF r.metrics ? 'benchmark' THEN
        FOR cells IN SELECT ARRAY[k, s, b] FROM (VALUES
            ('sharpe', wval._fmt(r.metrics #> '{returns,sharpe}'), wval._fmt(r.metrics #> '{benchmark,sharpe}')),
            ('volatility', wval._fmt(r.metrics #> '{returns,volatility}'), wval._fmt(r.metrics #> '{benchmark,volatility}')),
            ('max_drawdown', wval._fmt(r.metrics #> '{returns,max_drawdown}'), wval._fmt(r.metrics #> '{benchmark,max_drawdown}')),
            ('beta', wval._fmt(r.metrics #> '{returns,beta}'), ''),
            ('alpha', wval._fmt(r.metrics #> '{returns,alpha}'), ''),
            ('information_ratio', wval._fmt(r.metrics #> '{returns,information_ratio}'), ''),
            ('tracking_error', wval._fmt(r.metrics #> '{returns,tracking_error}'), '')) t(k, s, b)
        LOOP RETURN NEXT; END LOOP;
    END IF;

    -- 7. limitations and recommendations
    section := 7; heading := 'Limitations and recommendations';
    IF r.status = 'unvalidated' THEN
        cells := ARRAY['This run was recorded through the emergency bypass without validation: ' ||
                       coalesce(r.context->>'bypass_reason', 'no reason given') || '.']; RETURN NEXT;
    END IF;
    IF r.returns_hash IS NULL AND r.status <> 'unvalidated' THEN
        cells := ARRAY['Metrics were supplied by the caller, not computed from returns: wval did not verify them.']; RETURN NEXT;
    END IF;
    IF (r.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}')::float8 < 1 THEN
        cells := ARRAY[format('Only %s%% of the core metrics were present.',
                              round(100 * (r.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}')::numeric))];
        RETURN NEXT;
    END IF;
    IF fails > 0 THEN
        SELECT ov.* INTO o FROM wval.current_overrides ov WHERE ov.run_id = r.run_id;
        IF FOUND AND o.status = 'approved' AND (o.review_due_at IS NULL OR o.review_due_at > now()) THEN
            cells := ARRAY[format('%s check(s) failed; an approved override (%s, recorded %s, review due %s) lets the run be used despite them: review it by then.',
                                  fails, coalesce(o.actor, 'no actor named'), to_char(o.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                  coalesce(to_char(o.review_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'not set'))];
        ELSIF o.status = 'approved' THEN
            cells := ARRAY[format('%s check(s) failed; the approved override (%s) was due for review on %s: review it or record a new decision before the strategy climbs.',
                                  fails, coalesce(o.actor, 'no actor named'), to_char(o.review_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'))];
        ELSE
            cells := ARRAY[format('%s check(s) failed: fix them or record an override with a reason before the strategy climbs.', fails)];
        END IF;
        RETURN NEXT;
    END IF;
    IF warns > 0 THEN
        cells := ARRAY[format('%s check(s) warned; warn-mode checks will fail once enforced.', warns)]; RETURN NEXT;
    END IF;
    IF r.recommendation IS NOT NULL THEN
        cells := ARRAY[format('Recommended stage: %s%s.', r.recommended_stage,
                              CASE WHEN r.recommendation->>'stopped_at' IS NOT NULL
                                   THEN format(' (the climb stopped at %s)', r.recommendation->>'stopped_at') ELSE '' END)];
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION wval._report_rows(wval.evaluation_runs) IS 'the content of a run''s validation report, section by section';

-- wval._md_cell / wval._html: escaping for the two formats
-- (markdown: backslash, pipe, backtick and brackets are escaped, and a '<'
-- that would open an HTML tag, so that neither a table nor the page can be
-- broken by a name; line breaks become spaces)
CREATE FUNCTION wval._md_cell(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT regexp_replace(regexp_replace(replace(replace(replace(replace(replace(coalesce(t, ''), '\', '\\'), '|', '\|'),
                                                                '`', '\`'), '[', '\['), ']', '\]'),
                                        '<([A-Za-z/!?])', '\\<\1', 'g'),
                         '[\r\n]+', ' ', 'g') $$;
CREATE FUNCTION wval._html(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT replace(replace(replace(replace(coalesce(t, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;') $$;
COMMENT ON FUNCTION wval._md_cell(text) IS 'escapes text for a markdown table cell or line: backslash, pipe, backtick, brackets, a tag-opening <; line breaks become spaces';
COMMENT ON FUNCTION wval._html(text) IS 'escapes text for HTML';

CREATE FUNCTION public.wval_report(run_id uuid, format text DEFAULT 'markdown') RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    out text[] := '{}';
    rec record;
    prev int := 0;
    headers text[] := ARRAY[NULL, 'item|value', 'item|value', 'check|status|severity|owner|value|threshold|reason code|reason',
                            'metric|value', 'status|actor|recorded|review due|reason', 'metric|strategy|benchmark', NULL];
    titles text[] := ARRAY['Summary', 'Scope', 'Rules', 'Metrics', 'Overrides', 'Benchmark', 'Limitations and recommendations'];
    s int;
    html boolean;
BEGIN
    PERFORM wval._one_of('format', format, ARRAY['markdown', 'html']);
    html := format = 'html';
    IF html THEN
        out := out || format('<!DOCTYPE html><html><head><meta charset="utf-8"><title>wval validation report %s</title>'
                             '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}'
                             'td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}figure{margin:0.5em 0}'
                             '.fail{color:#b00020;font-weight:bold}.warn{color:#a06000}.pass{color:#2e7d32}</style></head><body>'
                             '<h1>Validation report: %s / %s</h1>', r.run_id, wval._html(r.strategy_id), wval._html(r.world_id));
    ELSE
        out := out || format('# Validation report: %s / %s', wval._md_cell(r.strategy_id), wval._md_cell(r.world_id));
    END IF;
    FOR s IN 1 .. 7 LOOP
        IF html THEN
            out := out || format('<h2>%s</h2>', titles[s]);
        ELSE
            out := out || ''::text || ('## ' || titles[s]) || ''::text;
        END IF;
        prev := 0;
        FOR rec IN SELECT * FROM wval._report_rows(r) x WHERE x.section = s LOOP
            IF prev = 0 AND headers[s + 1] IS NOT NULL THEN
                IF html THEN
                    out := out || ('<table><tr><th>' || replace(headers[s + 1], '|', '</th><th>') || '</th></tr>');
                ELSE
                    out := out || ('| ' || replace(headers[s + 1], '|', ' | ') || ' |')
                               || ('|' || repeat(' --- |', array_length(string_to_array(headers[s + 1], '|'), 1)));
                END IF;
            END IF;
            prev := prev + 1;
            IF headers[s + 1] IS NULL THEN
                out := out || CASE WHEN html THEN '<p>' || wval._html(rec.cells[1]) || '</p>' ELSE '- ' || wval._md_cell(rec.cells[1]) END;
            ELSIF html THEN
                out := out || ('<tr>' || (SELECT string_agg(
                    CASE WHEN c IN ('fail', 'warn', 'pass') AND s = 3 THEN format('<td class="%s">%s</td>', c, c)
                         ELSE '<td>' || wval._html(c) || '</td>' END, '' ORDER BY i)
                    FROM unnest(rec.cells) WITH ORDINALITY u(c, i)) || '</tr>');
            ELSE
                out := out || ('| ' || (SELECT string_agg(wval._md_cell(c), ' | ' ORDER BY i)
                                        FROM unnest(rec.cells) WITH ORDINALITY u(c, i)) || ' |');
            END IF;
        END LOOP;
        IF prev > 0 AND headers[s + 1] IS NOT NULL AND html THEN
            out := out || '</table>'::text;
        ELSIF prev = 0 THEN
            out := out || CASE WHEN html THEN '<p>none</p>' ELSE 'none' END;
        END IF;
        IF s = 1 THEN
            -- the charts, from the run's stored returns
            out := out || CASE WHEN html THEN '<h2>Charts</h2>' ELSE E'\n## Charts\n' END
                       || wval._report_charts(r, wval._run_returns(r.run_id), html);
        END IF;
    END LOOP;
    IF html THEN
        out := out || '</body></html>'::text;
    END IF;
    RETURN array_to_string(out, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_report(uuid, text) IS 'the validation report of a run (markdown or html): summary, charts from the stored returns (html: inline SVG equity, drawdown with dd_max, rolling Sharpe with zero and sharpe_min, return distribution with VaR / ES; markdown: a table of them), scope, rules (failures first), metrics, overrides, benchmark comparison, limitations and recommendations';

GRANT EXECUTE ON FUNCTION public.wval_report(uuid, text) TO wval_analyst;

-- wval._report_threshold(r, metric, op): the threshold the run's rules applied
-- to a metric with an operator (the first such rule by name), or null.
CREATE FUNCTION wval._report_threshold(r wval.evaluation_runs, p_metric text, p_op text) RETURNS float8
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT (e.value #>> '{details,threshold}')::float8
    FROM jsonb_each(r.results) e
    WHERE e.value #>> '{details,metric}' = p_metric AND e.value #>> '{details,op}' = p_op
      AND jsonb_typeof(e.value #> '{details,threshold}') = 'number'
    ORDER BY e.key LIMIT 1
$$;
COMMENT ON FUNCTION wval._report_threshold(wval.evaluation_runs, text, text) IS 'the threshold a run''s rules applied to a metric with an operator (first rule by name), null when no rule did';

-- wval._report_series(ret, ppy): the series the validation report charts,
-- one row per period: equity (growth of 1), drawdown (equity / peak - 1) and
-- the rolling annualised Sharpe over `window` periods (null until the window
-- is full). window = periods_per_year, or half the series when that is
-- shorter, at least 3.
CREATE FUNCTION wval._report_series(ret float8[], ppy float8)
RETURNS TABLE (period integer, equity float8, drawdown float8, rolling_sharpe float8, window_periods integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH w AS (SELECT greatest(3, least(coalesce(ppy, 252)::integer, cardinality(ret) / 2)) AS n),
         r AS (SELECT i::integer AS i, v FROM unnest(ret) WITH ORDINALITY u(v, i)),
         e AS (SELECT r.i, r.v,
                      exp(sum(ln(greatest(1 + r.v, 1e-12))) OVER (ORDER BY r.i)) AS eq,
                      CASE WHEN count(*) OVER win = (SELECT n FROM w)
                           THEN avg(r.v) OVER win / nullif(stddev_samp(r.v) OVER win, 0) * sqrt(coalesce(ppy, 252)) END AS rs
               FROM r
               WINDOW win AS (ORDER BY r.i ROWS BETWEEN (SELECT n - 1 FROM w) PRECEDING AND CURRENT ROW))
    SELECT e.i, e.eq, e.eq / greatest(max(e.eq) OVER (ORDER BY e.i), 1) - 1, e.rs, (SELECT n FROM w)
    FROM e ORDER BY e.i
$$;
COMMENT ON FUNCTION wval._report_series(float8[], float8) IS 'per period of a return series: equity (growth of 1), drawdown from the running peak (the start counts as a peak of 1), rolling annualised Sharpe over one year of periods (half the series when shorter, at least 3)';

-- wval._report_charts(r, ret, html): the charts section of a validation
-- report from the run's returns (null: not stored): HTML inline SVG charts,
-- markdown a table of what each chart shows.
CREATE FUNCTION wval._report_charts(r wval.evaluation_runs, ret float8[], html boolean) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    ppy float8 := coalesce((r.metrics #>> '{diagnostics,periods_per_year}')::float8, 252);
    dd_max float8 := wval._report_threshold(r, 'returns.max_drawdown', '<=');
    sharpe_min float8 := wval._report_threshold(r, 'returns.sharpe', '>=');
    var_p01 float8 := (r.metrics #>> '{returns,var_p01}')::float8;
    es_p01 float8 := (r.metrics #>> '{returns,es_p01}')::float8;
    labels text[];
    eq float8[];
    dd float8[];
    rs float8[];
    win integer;
    marks jsonb := '[]';
    refs jsonb;
BEGIN
    IF ret IS NULL OR cardinality(wval._chart_finite(ret)) < 2 THEN
        RETURN CASE WHEN html
                    THEN '<p class="wval-no-returns">The returns of this run are not stored (the world does not keep them, or the run was evaluated from metrics only): no charts; the rule outcomes below are what the run recorded.</p>'
                    ELSE 'The returns of this run are not stored (the world does not keep them, or the run was evaluated from metrics only): no charts; the rule outcomes below are what the run recorded.' END;
    END IF;
    ret := wval._chart_finite(ret);
    -- period 0 is the start (equity 1, no drawdown)
    SELECT array_agg(s.period::text ORDER BY s.period), array_agg(s.equity ORDER BY s.period),
           array_agg(s.drawdown ORDER BY s.period), array_agg(s.rolling_sharpe ORDER BY s.period), max(s.window_periods)
      INTO labels, eq, dd, rs, win
    FROM wval._report_series(ret, ppy) s;
    labels := '0'::text || labels;
    eq := 1::float8 || eq;
    dd := 0::float8 || dd;
    rs := NULL::float8 || rs;
    IF var_p01 IS NOT NULL THEN
        marks := marks || jsonb_build_object('x', -var_p01, 'label', 'VaR 99%', 'color', '#a06000');
    END IF;
    IF es_p01 IS NOT NULL THEN
        marks := marks || jsonb_build_object('x', -es_p01, 'label', 'ES 99%', 'color', '#b00020');
    END IF;
    refs := jsonb_build_array(jsonb_build_object('y', 0, 'label', 'zero', 'color', '#666'))
            || CASE WHEN sharpe_min IS NULL THEN '[]'::jsonb
                    ELSE jsonb_build_array(jsonb_build_object('y', sharpe_min, 'label', 'sharpe_min', 'color', '#b00020')) END;
    IF html THEN
        RETURN wval._chart_line('equity', format('Equity curve (growth of 1 over %s periods)', cardinality(ret)), labels, eq,
                                jsonb_build_array(jsonb_build_object('y', 1, 'label', 'start', 'color', '#666')))
            || wval._chart_line('drawdown', 'Drawdown from the running peak', labels, dd,
                                CASE WHEN dd_max IS NULL THEN '[]'::jsonb
                                     ELSE jsonb_build_array(jsonb_build_object('y', -dd_max, 'label', 'dd_max', 'color', '#b00020')) END,
                                '#b00020', true)
            || wval._chart_line('rolling-sharpe', format('Rolling Sharpe (%s periods, annualised)', win), labels, rs, refs, '#2e7d32')
            || wval._chart_hist('distribution', 'Return distribution', ret, marks);
    END IF;
    RETURN 'Markdown cannot inline the charts portably; the HTML report (format => ''html'') draws them. What they show:'
        || E'\n\n| chart | points | first | min | max | last | reference lines |\n| --- | --- | --- | --- | --- | --- | --- |'
        || format(E'\n| equity curve (growth of 1) | %s | %s | %s | %s | %s | start 1 |', cardinality(eq), wval._fmt(to_jsonb(eq[1])),
                  wval._fmt(to_jsonb((SELECT min(v) FROM unnest(eq) v))), wval._fmt(to_jsonb((SELECT max(v) FROM unnest(eq) v))),
                  wval._fmt(to_jsonb(eq[cardinality(eq)])))
        || format(E'\n| drawdown | %s | %s | %s | %s | %s | %s |', cardinality(dd), wval._fmt(to_jsonb(dd[1])),
                  wval._fmt(to_jsonb((SELECT min(v) FROM unnest(dd) v))), wval._fmt(to_jsonb((SELECT max(v) FROM unnest(dd) v))),
                  wval._fmt(to_jsonb(dd[cardinality(dd)])), coalesce('dd_max ' || wval._fmt(to_jsonb(-dd_max)), 'none'))
        || format(E'\n| rolling Sharpe (%s periods) | %s | %s | %s | %s | %s | zero%s |', win,
                  (SELECT count(v) FROM unnest(rs) v),
                  wval._fmt(to_jsonb((SELECT v FROM unnest(rs) WITH ORDINALITY u(v, i) WHERE v IS NOT NULL ORDER BY i LIMIT 1))),
                  wval._fmt(to_jsonb((SELECT min(v) FROM unnest(rs) v))), wval._fmt(to_jsonb((SELECT max(v) FROM unnest(rs) v))),
                  wval._fmt(to_jsonb(rs[cardinality(rs)])), coalesce(', sharpe_min ' || wval._fmt(to_jsonb(sharpe_min)), ''))
        || format(E'\n| return distribution | %s | %s | %s | %s | %s | %s |', cardinality(ret), wval._fmt(to_jsonb(ret[1])),
                  wval._fmt(to_jsonb((SELECT min(v) FROM unnest(ret) v))), wval._fmt(to_jsonb((SELECT max(v) FROM unnest(ret) v))),
                  wval._fmt(to_jsonb(ret[cardinality(ret)])),
                  coalesce(nullif(array_to_string(ARRAY['VaR 99% ' || wval._fmt(to_jsonb(-var_p01)), 'ES 99% ' || wval._fmt(to_jsonb(-es_p01))], ', '), ''), 'none'));
EXCEPTION WHEN numeric_value_out_of_range OR division_by_zero OR invalid_argument_for_logarithm THEN
    -- returns near the limits of a double (accepted by wval_evaluate up to
    -- DBL_MAX) overflow the equity, variance or axis arithmetic
    RETURN CASE WHEN html THEN '<p class="wval-no-returns">The returns of this run are too large to chart (the arithmetic of the charts overflows a double); the rule outcomes below are what the run recorded.</p>'
                ELSE 'The returns of this run are too large to chart (the arithmetic of the charts overflows a double); the rule outcomes below are what the run recorded.' END;
END
$$;
COMMENT ON FUNCTION wval._report_charts(wval.evaluation_runs, float8[], boolean) IS 'the charts of a validation report from the run''s returns: equity, drawdown with dd_max, rolling Sharpe with zero and sharpe_min, return distribution with VaR / ES 99% (HTML: inline SVG; markdown: a table of what each chart shows; a note when the returns are not stored)';

------------------------------------------------------------------------------
-- the world report: what a world validated over a period (docs/reports.md)
------------------------------------------------------------------------------

-- wval._world_report_sections(world, from, to, bucket): the content of a world
-- report as (section, title, headers, rows) so that markdown and HTML render
-- the same; the caller has checked the world. Runs count by created_at (UTC)
-- in [from, to]; the pass rate is pass / (pass + warn + fail).
CREATE FUNCTION wval._world_report_sections(p_world text, p_from date, p_to date, p_bucket text)
RETURNS TABLE (section integer, title text, headers text[], rows jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp SET TimeZone = 'UTC' SET jit = off AS $$
DECLARE
    t0 timestamptz := p_from::timestamp AT TIME ZONE 'UTC';
    t1 timestamptz := (p_to + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    -- 1. summary
    section := 1; title := 'Summary'; headers := ARRAY['item', 'value'];
    SELECT jsonb_build_array(
               jsonb_build_array('world', p_world),
               jsonb_build_array('period', format('%s to %s (UTC), by %s', p_from, p_to, p_bucket)),
               jsonb_build_array('runs evaluated', count(*)::text),
               jsonb_build_array('strategies evaluated', count(DISTINCT e.strategy_id)::text),
               jsonb_build_array('status mix', format('%s pass, %s warn, %s fail, %s unvalidated',
                                                      count(*) FILTER (WHERE e.status = 'pass'), count(*) FILTER (WHERE e.status = 'warn'),
                                                      count(*) FILTER (WHERE e.status = 'fail'), count(*) FILTER (WHERE e.status = 'unvalidated'))),
               jsonb_build_array('pass rate', coalesce(to_char(100.0 * count(*) FILTER (WHERE e.status = 'pass')
                                                               / nullif(count(*) FILTER (WHERE e.status <> 'unvalidated'), 0), 'FM990.0') || '%', 'n/a')),
               jsonb_build_array('active policy version at the end',
                                 coalesce((SELECT a.version::text FROM wval.policy_activations a
                                           WHERE a.world_id = p_world AND a.activated_at < t1
                                           ORDER BY a.activated_at DESC, a.activation_id DESC LIMIT 1), 'none')))
      INTO rows
    FROM wval.evaluation_runs e
    WHERE e.world_id = p_world AND e.created_at >= t0 AND e.created_at < t1;
    RETURN NEXT;

    -- 2. trend per bucket (every bucket of the period, also the empty ones)
    section := 2; title := 'Trend'; headers := ARRAY[p_bucket, 'runs', 'pass', 'warn', 'fail', 'unvalidated', 'pass rate'];
    SELECT coalesce(jsonb_agg(jsonb_build_array(
               to_char(q.b, 'YYYY-MM-DD'), q.n::text, q.pass::text, q.warn::text, q.fail::text, q.unval::text,
               coalesce(to_char(100.0 * q.pass / nullif(q.pass + q.warn + q.fail, 0), 'FM990.0') || '%', 'n/a'))
               ORDER BY q.b), '[]')
      INTO rows
    FROM (SELECT b.b, coalesce(r.n, 0) AS n, coalesce(r.pass, 0) AS pass, coalesce(r.warn, 0) AS warn,
                 coalesce(r.fail, 0) AS fail, coalesce(r.unval, 0) AS unval
          FROM (SELECT g::date AS b FROM generate_series(date_trunc(p_bucket, p_from::timestamp), p_to::timestamp,
                                                         ('1 ' || p_bucket)::interval) g) b
          LEFT JOIN (SELECT date_trunc(p_bucket, e.created_at)::date AS b, count(*) AS n,
                            count(*) FILTER (WHERE e.status = 'pass') AS pass, count(*) FILTER (WHERE e.status = 'warn') AS warn,
                            count(*) FILTER (WHERE e.status = 'fail') AS fail,
                            count(*) FILTER (WHERE e.status = 'unvalidated') AS unval
                     FROM wval.evaluation_runs e
                     WHERE e.world_id = p_world AND e.created_at >= t0 AND e.created_at < t1
                     GROUP BY 1) r ON r.b = b.b) q;
    rows := coalesce(rows, '[]');
    RETURN NEXT;

    -- 3. the checks that failed most
    section := 3; title := 'Checks that failed most';
    headers := ARRAY['check', 'reason code', 'failures', 'strategies', 'severity', 'owner', 'last failed'];
    SELECT coalesce(jsonb_agg(jsonb_build_array(q.rule, q.reason_code, q.n::text, q.s::text, q.severity, q.owner,
                                                to_char(q.last_at, 'YYYY-MM-DD')) ORDER BY q.n DESC, q.rule, q.reason_code), '[]')
      INTO rows
    FROM (SELECT rr.rule, rr.reason_code, count(*) AS n, count(DISTINCT rr.strategy_id) AS s,
                 string_agg(DISTINCT rr.severity, ', ') AS severity, string_agg(DISTINCT rr.owner, ', ') AS owner,
                 max(rr.created_at) AS last_at
          FROM wval.rule_results rr
          WHERE rr.world_id = p_world AND rr.created_at >= t0 AND rr.created_at < t1 AND rr.status = 'fail'
          GROUP BY rr.rule, rr.reason_code
          ORDER BY count(*) DESC, rr.rule, rr.reason_code LIMIT 10) q;
    RETURN NEXT;

    -- 4. strategies whose status changed: the latest run before the period
    -- against the latest run in it, per strategy and stage
    section := 4; title := 'Strategies that changed status';
    headers := ARRAY['strategy', 'stage', 'before the period', 'at the end', 'runs in the period', 'last run'];
    SELECT coalesce(jsonb_agg(jsonb_build_array(c.strategy_id, c.stage, c.before, c.after, c.n::text, c.last_run)
                              ORDER BY c.strategy_id, c.stage), '[]')
      INTO rows
    FROM (SELECT k.strategy_id, k.stage, coalesce(upper(pb.status), 'no run') AS before, upper(pe.status) AS after, k.n,
                 pe.run_id::text || ' (' || to_char(pe.created_at, 'YYYY-MM-DD') || ')' AS last_run
          FROM (SELECT e.strategy_id, e.stage, count(*) AS n FROM wval.evaluation_runs e
                WHERE e.world_id = p_world AND e.created_at >= t0 AND e.created_at < t1
                GROUP BY e.strategy_id, e.stage) k
          CROSS JOIN LATERAL (SELECT e.status, e.run_id, e.created_at FROM wval.evaluation_runs e
                              WHERE e.world_id = p_world AND e.strategy_id = k.strategy_id AND e.stage = k.stage
                                AND e.created_at >= t0 AND e.created_at < t1
                              ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1) pe
          LEFT JOIN LATERAL (SELECT e.status FROM wval.evaluation_runs e
                             WHERE e.world_id = p_world AND e.strategy_id = k.strategy_id AND e.stage = k.stage
                               AND e.created_at < t0
                             ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1) pb ON true
          WHERE pb.status IS DISTINCT FROM pe.status AND pb.status IS NOT NULL) c;
    RETURN NEXT;

    -- 5. policy versions activated in the period, with their measured impact:
    -- the gate's predicted impact ratio, and the pass rate of the period's
    -- runs under the version against those under the version it replaced
    section := 5; title := 'Policy versions activated';
    headers := ARRAY['version', 'previous', 'activated', 'by', 'reason', 'forced', 'predicted impact ratio',
                     'pass rate under it', 'pass rate under the previous'];
    SELECT coalesce(jsonb_agg(jsonb_build_array(
               a.version::text, coalesce(a.previous_version::text, 'none'), to_char(a.activated_at, 'YYYY-MM-DD HH24:MI'),
               a.activated_by, a.reason, CASE WHEN a.forced THEN 'yes' ELSE 'no' END,
               coalesce(wval._fmt(a.details #> '{impact_gate,impact_ratio}'), 'n/a'),
               wval._world_report_rate(p_world, a.version, a.activated_at, t1),
               CASE WHEN a.previous_version IS NULL THEN 'n/a'
                    ELSE wval._world_report_rate(p_world, a.previous_version, t0, a.activated_at) END)
               ORDER BY a.activated_at, a.activation_id), '[]')
      INTO rows
    FROM wval.policy_activations a
    WHERE a.world_id = p_world AND a.activated_at >= t0 AND a.activated_at < t1;
    RETURN NEXT;

    -- 6. overrides recorded in the period
    section := 6; title := 'Overrides recorded';
    headers := ARRAY['recorded', 'strategy', 'run', 'decision', 'by', 'review due', 'reason'];
    SELECT coalesce(jsonb_agg(jsonb_build_array(to_char(o.recorded_at, 'YYYY-MM-DD'), o.strategy_id, o.run_id::text, o.status,
                                                coalesce(o.actor, ''), coalesce(to_char(o.review_due_at, 'YYYY-MM-DD'), ''),
                                                coalesce(o.reason, '')) ORDER BY o.recorded_at, o.override_id), '[]')
      INTO rows
    FROM wval.overrides o
    WHERE o.world_id = p_world AND o.recorded_at >= t0 AND o.recorded_at < t1;
    RETURN NEXT;

    -- 7. approved overrides due for review by 30 days after the period (or overdue)
    section := 7; title := 'Overrides expiring';
    headers := ARRAY['review due', 'strategy', 'run', 'by', 'state', 'reason'];
    SELECT coalesce(jsonb_agg(jsonb_build_array(to_char(o.review_due_at, 'YYYY-MM-DD'), o.strategy_id, o.run_id::text,
                                                coalesce(o.actor, ''),
                                                CASE WHEN o.review_due_at < t1 THEN 'overdue at the end of the period' ELSE 'due soon' END,
                                                coalesce(o.reason, '')) ORDER BY o.review_due_at, o.override_id), '[]')
      INTO rows
    FROM wval.current_overrides o
    WHERE o.world_id = p_world AND o.status = 'approved' AND o.recorded_at < t1
      AND o.review_due_at < t1 + interval '30 days';
    RETURN NEXT;

    -- 8. live demotions: candidates flagged and demotions recorded
    section := 8; title := 'Live demotions';
    headers := ARRAY['day', 'strategy', 'event', 'detail'];
    SELECT coalesce(jsonb_agg(x.r ORDER BY x.at, x.k), '[]')
      INTO rows
    FROM (SELECT c.flagged_at AS at, c.candidate_id AS k,
                 jsonb_build_array(to_char(c.flagged_at, 'YYYY-MM-DD'), c.strategy_id, 'demotion candidate (' || c.trigger || ')',
                                   format('live run as of %s at stage %s, breached: %s', c.as_of, c.stage,
                                          coalesce((SELECT string_agg(b->>'check', ', ') FROM jsonb_array_elements(c.breached) b), 'n/a'))) AS r
          FROM wval.demotion_candidates c
          WHERE c.world_id = p_world AND c.flagged_at >= t0 AND c.flagged_at < t1
          UNION ALL
          SELECT d.recorded_at, d.deployment_id,
                 jsonb_build_array(to_char(d.recorded_at, 'YYYY-MM-DD'), d.strategy_id,
                                   format('demoted %s -> %s', d.previous_stage, d.stage),
                                   format('by %s: %s', d.actor, d.reason))
          FROM wval.deployments d
          WHERE d.world_id = p_world AND d.change = 'demotion' AND d.recorded_at >= t0 AND d.recorded_at < t1) x;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION wval._world_report_sections(text, date, date, text) IS 'the content of a world report (summary, trend, checks that failed most, status changes, policy activations, overrides recorded and expiring, live demotions) as rows of cells';

-- wval._world_report_rate(world, version, from, to): "pass rate (n runs)" of
-- the runs evaluated under a policy version in [from, to)
CREATE FUNCTION wval._world_report_rate(p_world text, p_version integer, p_from timestamptz, p_to timestamptz) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT coalesce(to_char(100.0 * count(*) FILTER (WHERE e.status = 'pass') / nullif(count(*), 0), 'FM990.0') || '%', 'n/a')
           || format(' (%s runs)', count(*))
    FROM wval.evaluation_runs e
    WHERE e.world_id = p_world AND e.policy_version = p_version AND e.status IN ('pass', 'warn', 'fail')
      AND e.created_at >= p_from AND e.created_at < p_to
$$;
COMMENT ON FUNCTION wval._world_report_rate(text, integer, timestamptz, timestamptz) IS 'pass rate and number of the runs evaluated under a policy version in a time range (world report)';

CREATE FUNCTION public.wval_world_report(world_id text, since date DEFAULT NULL, until date DEFAULT NULL,
                                         format text DEFAULT 'markdown', bucket text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_to date := coalesce(until, current_date);
    p_from date := since;
    p_bucket text := bucket;
    html boolean;
    out text[] := '{}';
    sec record;
    trend jsonb;
    overall float8;
BEGIN
    PERFORM wval._one_of('format', format, ARRAY['markdown', 'html']);
    IF p_bucket IS NOT NULL THEN
        PERFORM wval._one_of('bucket', p_bucket, ARRAY['week', 'month']);
    END IF;
    IF isfinite(p_to) AND p_to BETWEEN date '1900-01-01' AND date '9999-12-01' THEN
        p_from := coalesce(p_from, p_to - 89);
    END IF;
    IF p_from IS NULL OR NOT isfinite(p_from) OR NOT isfinite(p_to) OR p_from NOT BETWEEN date '1900-01-01' AND date '9999-12-01'
       OR p_to NOT BETWEEN date '1900-01-01' AND date '9999-12-01' OR p_from > p_to OR p_to - p_from > 3660 THEN
        RAISE EXCEPTION 'invalid period for "since" and "until"' USING ERRCODE = '22023',
            DETAIL = format('since is %s, until is %s.', coalesce(p_from::text, 'null'), p_to),
            HINT = 'Pass since <= until (days, both included), at most ten years apart (defaults: the 90 days up to today).';
    END IF;
    PERFORM wval._world(p_world);
    p_bucket := coalesce(p_bucket, CASE WHEN p_to - p_from <= 120 THEN 'week' ELSE 'month' END);
    html := format = 'html';

    IF html THEN
        out := out || format('<!DOCTYPE html><html><head><meta charset="utf-8"><title>wval world report %s</title>'
                             '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:0.5em 0}'
                             'td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}figure{margin:0.5em 0}</style></head><body>'
                             '<h1>World report: %s, %s to %s</h1>', wval._html(p_world), wval._html(p_world), p_from, p_to);
    ELSE
        out := out || format('# World report: %s, %s to %s', wval._md_cell(p_world), p_from, p_to);
    END IF;
    FOR sec IN SELECT * FROM wval._world_report_sections(p_world, p_from, p_to, p_bucket) ORDER BY 1 LOOP
        out := out || CASE WHEN html THEN '<h2>' || wval._html(sec.title) || '</h2>' ELSE E'\n## ' || sec.title || E'\n' END;
        IF jsonb_array_length(sec.rows) = 0 THEN
            out := out || CASE WHEN html THEN '<p>none</p>' ELSE 'none' END;
        ELSE
            out := out || wval._live_table(html, sec.headers, sec.rows);
        END IF;
        IF sec.section = 1 THEN
            overall := (SELECT nullif(rtrim(x->>1, '%'), 'n/a')::float8 FROM jsonb_array_elements(sec.rows) x WHERE x->>0 = 'pass rate');
        END IF;
        IF sec.section = 2 AND html THEN
            trend := sec.rows;
            out := out
                || wval._chart_bars('status-mix', format('Status mix by %s', p_bucket),
                                    ARRAY(SELECT x->>0 FROM jsonb_array_elements(trend) x),
                                    ARRAY[ARRAY(SELECT (x->>2)::float8 FROM jsonb_array_elements(trend) x),
                                          ARRAY(SELECT (x->>3)::float8 FROM jsonb_array_elements(trend) x),
                                          ARRAY(SELECT (x->>4)::float8 FROM jsonb_array_elements(trend) x),
                                          ARRAY(SELECT (x->>5)::float8 FROM jsonb_array_elements(trend) x)],
                                    ARRAY['pass', 'warn', 'fail', 'unvalidated'], ARRAY['#2e7d32', '#e0a000', '#b00020', '#888888'])
                || wval._chart_line('pass-rate', format('Pass rate by %s (%%)', p_bucket),
                                    ARRAY(SELECT x->>0 FROM jsonb_array_elements(trend) x),
                                    ARRAY(SELECT CASE WHEN x->>6 = 'n/a' THEN NULL ELSE rtrim(x->>6, '%')::float8 END
                                          FROM jsonb_array_elements(trend) x),
                                    CASE WHEN overall IS NULL THEN '[]'::jsonb
                                         ELSE jsonb_build_array(jsonb_build_object('y', overall, 'label', 'period', 'color', '#666')) END,
                                    '#1f5fa8');
        END IF;
    END LOOP;
    IF html THEN
        out := out || '</body></html>'::text;
    END IF;
    RETURN array_to_string(out, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_world_report(text, date, date, text, text) IS 'the report of a world over a period (default the 90 days up to today; markdown or html): runs and strategies evaluated, status mix and pass-rate trend by week or month (html: charts), the checks that failed most with reason codes, strategies that changed status, policy versions activated with their measured impact, overrides recorded and expiring, live demotions';

GRANT EXECUTE ON FUNCTION public.wval_world_report(text, date, date, text, text) TO wval_analyst;
