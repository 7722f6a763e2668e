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
        cells := ARRAY[format('%s check(s) failed: fix them or record an override with a reason before the strategy climbs.', fails)];
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
CREATE FUNCTION wval._md_cell(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT replace(replace(coalesce(t, ''), '|', '\|'), E'\n', ' ') $$;
CREATE FUNCTION wval._html(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT replace(replace(replace(replace(coalesce(t, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;') $$;
COMMENT ON FUNCTION wval._md_cell(text) IS 'escapes a markdown table cell';
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
                             'td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}'
                             '.fail{color:#b00020;font-weight:bold}.warn{color:#a06000}.pass{color:#2e7d32}</style></head><body>'
                             '<h1>Validation report: %s / %s</h1>', r.run_id, wval._html(r.strategy_id), wval._html(r.world_id));
    ELSE
        out := out || format('# Validation report: %s / %s', r.strategy_id, r.world_id);
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
                out := out || CASE WHEN html THEN '<p>' || wval._html(rec.cells[1]) || '</p>' ELSE '- ' || rec.cells[1] END;
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
    END LOOP;
    IF html THEN
        out := out || '</body></html>'::text;
    END IF;
    RETURN array_to_string(out, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_report(uuid, text) IS 'the validation report of a run (markdown or html): summary, scope, rules (failures first), metrics, overrides, benchmark comparison, limitations and recommendations';

GRANT EXECUTE ON FUNCTION public.wval_report(uuid, text) TO wval_analyst;
