-- report.sql: the validation report of one run (spec operations.md, "Reports").

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
                       || wval._report_charts(r, wval._report_returns(r.run_id), html);
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
END
$$;
COMMENT ON FUNCTION wval._report_charts(wval.evaluation_runs, float8[], boolean) IS 'the charts of a validation report from the run''s returns: equity, drawdown with dd_max, rolling Sharpe with zero and sharpe_min, return distribution with VaR / ES 99% (HTML: inline SVG; markdown: a table of what each chart shows; a note when the returns are not stored)';

-- wval._report_returns(run_id): the stored returns of a run, null when the
-- run's world does not store them
CREATE FUNCTION wval._report_returns(p_run_id uuid) RETURNS float8[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    ret float8[];
BEGIN
    IF pg_catalog.to_regprocedure('wval._run_returns(uuid)') IS NOT NULL THEN
        EXECUTE 'SELECT wval._run_returns($1)' INTO ret USING p_run_id;
    END IF;
    RETURN ret;
END
$$;
COMMENT ON FUNCTION wval._report_returns(uuid) IS 'the stored returns of a run for its report (null when not stored)';
