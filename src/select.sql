-- select.sql: selection after validation (docs/policy.md, "Selection").
-- Validation decides who is eligible; selection decides who is used.
--
-- requires: store

CREATE SEQUENCE wval.selections_id_seq;
CREATE TABLE wval.selections (
    selection_id   bigint NOT NULL DEFAULT nextval('wval.selections_id_seq'),
    world_id       text NOT NULL,
    stage          wval.stage NOT NULL,
    policy_version integer,
    selected       text[] NOT NULL,
    entered        text[] NOT NULL,
    left_          text[] NOT NULL,
    decisions      jsonb NOT NULL,
    actor          text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    chain_seq      bigint NOT NULL,
    prev_hash      text NOT NULL,
    row_hash       text NOT NULL,
    PRIMARY KEY (world_id, selection_id)
);
SELECT wval._secure('wval.selections');
ALTER SEQUENCE wval.selections_id_seq OWNED BY wval.selections.selection_id;
CREATE INDEX ON wval.selections (world_id, stage, selection_id DESC);
COMMENT ON TABLE wval.selections IS 'every call of wval_select: the selected strategies, who entered and who left, and the decision for each candidate';
COMMENT ON COLUMN wval.selections.left_ IS 'strategies selected by the previous call that are no longer selected';
COMMENT ON COLUMN wval.selections.decisions IS 'strategy_id -> {selected, rank, reason_code, value}';
COMMENT ON COLUMN wval.selections.selection_id IS 'number of the selection (sequence wval.selections_id_seq)';
COMMENT ON COLUMN wval.selections.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.selections.stage IS 'the stage selected for';
COMMENT ON COLUMN wval.selections.policy_version IS 'the active policy version whose selection rules were applied';
COMMENT ON COLUMN wval.selections.selected IS 'strategies selected, by rank';
COMMENT ON COLUMN wval.selections.entered IS 'strategies selected now and not by the previous call';
COMMENT ON COLUMN wval.selections.actor IS 'who ran the selection';
COMMENT ON COLUMN wval.selections.created_at IS 'when the selection ran';
COMMENT ON COLUMN wval.selections.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.selections.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.selections.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.selections', 'selections');
SELECT pg_catalog.pg_extension_config_dump('wval.selections', '');
SELECT pg_catalog.pg_extension_config_dump('wval.selections_id_seq', '');

-- wval._selection_metric(metrics, name): a metric by path ("returns.sharpe")
-- or by short name, searched in returns, robustness, sample, risk, portfolio
-- ("sharpe" -> returns.sharpe, "deflated_sharpe_ratio" -> robustness...).
CREATE FUNCTION wval._selection_metric(metrics jsonb, name text) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) NOT IN ('number', 'string') THEN NULL
                WHEN v #>> '{}' IN ('Infinity', '-Infinity') THEN (v #>> '{}')::float8
                WHEN jsonb_typeof(v) = 'number' THEN (v #>> '{}')::float8 END
    FROM (SELECT CASE WHEN strpos(name, '.') > 0 THEN metrics #> string_to_array(name, '.')
                      ELSE coalesce(metrics #> ARRAY['returns', name], metrics #> ARRAY['robustness', name],
                                    metrics #> ARRAY['sample', name], metrics #> ARRAY['risk', name],
                                    metrics #> ARRAY['portfolio', name],
                                    CASE name WHEN 'dsr' THEN metrics #> '{robustness,deflated_sharpe_ratio}'
                                              WHEN 'psr' THEN metrics #> '{robustness,probabilistic_sharpe_ratio}'
                                              WHEN 'sortino' THEN metrics #> '{returns,sortino_ratio}'
                                              WHEN 'gain_to_pain' THEN metrics #> '{returns,gain_to_pain_ratio}' END)
                 END AS v) x
$$;
COMMENT ON FUNCTION wval._selection_metric(jsonb, text) IS 'a metric of a run for selection: a dotted path or a short name (sharpe, dsr, max_drawdown, ...)';

-- wval._correlations(world_id): |correlation| of strategy pairs from the
-- latest snapshot: its covariance, else its realized returns (aligned at
-- their ends); pairs without data are absent.
CREATE FUNCTION wval._correlations(p_world_id text)
RETURNS TABLE (a text, b text, corr float8, source text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    snap jsonb;
BEGIN
    BEGIN
        snap := public.wval_snapshot_latest(p_world_id, expand => true, include_stale => true) -> 'snapshot';
    EXCEPTION WHEN sqlstate 'WV010' OR sqlstate 'WV005' THEN
        RETURN;
    END;
    IF snap IS NULL THEN
        RETURN;
    END IF;
    IF jsonb_typeof(snap -> 'covariance') = 'object' THEN
        RETURN QUERY
        WITH c AS (
            SELECT (regexp_split_to_array(k, '[,:]'))[1] AS x, (regexp_split_to_array(k, '[,:]'))[2] AS y, v::text::float8 AS cov
            FROM jsonb_each(snap -> 'covariance') e(k, v)
        ), d AS (SELECT x, cov FROM c WHERE x = y)
        SELECT least(c.x, c.y), greatest(c.x, c.y), c.cov / sqrt(dx.cov * dy.cov), 'snapshot_covariance'
        FROM c JOIN d dx ON dx.x = c.x JOIN d dy ON dy.x = c.y
        WHERE c.x <> c.y AND dx.cov > 0 AND dy.cov > 0;
    ELSIF jsonb_typeof(snap -> 'realized_returns') = 'object' THEN
        RETURN QUERY
        WITH r AS (
            SELECT e.key AS s, x.v::text::float8 AS ret,
                   jsonb_array_length(e.value) - x.o AS back
            FROM jsonb_each(snap -> 'realized_returns') e, jsonb_array_elements(e.value) WITH ORDINALITY x(v, o)
        )
        SELECT r1.s, r2.s, corr(r1.ret, r2.ret), 'snapshot_realized_returns'
        FROM r r1 JOIN r r2 ON r1.back = r2.back AND r1.s < r2.s
        GROUP BY r1.s, r2.s HAVING count(*) >= 3 AND corr(r1.ret, r2.ret) IS NOT NULL;
    END IF;
END
$$;
COMMENT ON FUNCTION wval._correlations(text) IS 'correlations of strategy pairs from the world''s latest snapshot (covariance, else realized returns)';

-- wval.select_candidate: one strategy during a selection.  wval_select keeps
-- its candidates in an array of these (never in a table a caller could
-- create or shadow: see docs/development.md, "Definer code").
CREATE TYPE wval.select_candidate AS (
    strategy_id text,
    metrics     jsonb,
    value       float8,
    ok          boolean,
    rank        integer,
    reason      text
);
COMMENT ON TYPE wval.select_candidate IS 'a candidate of wval_select while the selection block is applied: its metrics, the ranking value, whether it is still in, its rank and the reason code';

CREATE FUNCTION public.wval_select(world_id text, stage text DEFAULT 'paper', actor text DEFAULT NULL)
RETURNS TABLE (strategy_id text, selected boolean, rank integer, reason_code text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    p_world text := wval._ident('world_id', wval_select.world_id);
    p_actor text := wval._ident('actor', coalesce(wval_select.actor, wval._invoker()));
    v_version integer;
    doc jsonb;
    sel jsonb;
    prev text[];
    now_selected text[];
    decisions jsonb;
    cands wval.select_candidate[];
    kept text[] := '{}';
    dropped text[] := '{}';
    cand record;
    k record;
    too_close text;
    entered text[];
    left_set text[];
BEGIN
    PERFORM wval._one_of('stage', stage, wval._stages());
    PERFORM wval._world(p_world, true);		-- one selection at a time per world
    v_version := public.wval_active_policy_version(p_world, stage);
    IF v_version IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', p_world
            USING ERRCODE = 'WV010', HINT = 'Activate a policy with wval_policy_activate() first.';
    END IF;
    SELECT pv.policy INTO doc FROM wval.policy_versions pv WHERE pv.world_id = p_world AND pv.version = v_version;
    -- the selection block, with the QMTL top-level aliases folded in
    sel := coalesce(doc -> 'selection', '{}') || jsonb_strip_nulls(jsonb_build_object(
               'thresholds', doc -> 'thresholds', 'top_k', doc -> 'top_k',
               'correlation', doc -> 'correlation', 'hysteresis', doc -> 'hysteresis'));
    SELECT s.selected INTO prev FROM wval.selections s
    WHERE s.world_id = p_world AND s.stage = wval_select.stage ORDER BY s.selection_id DESC LIMIT 1;
    prev := coalesce(prev, '{}');

    -- candidates: the latest run per strategy at this stage that did not
    -- fail.  They live in the array cands (ordered by strategy_id); each step
    -- below rebuilds it.
    SELECT coalesce(array_agg(ROW(r.strategy_id, r.metrics, NULL, r.status <> 'fail', NULL,
                                  CASE WHEN r.status = 'fail' THEN 'not_eligible' END)::wval.select_candidate
                              ORDER BY r.strategy_id), '{}')
    INTO cands
    FROM (SELECT DISTINCT ON (e.strategy_id) e.strategy_id, e.metrics, e.status
          FROM wval.evaluation_runs e
          WHERE e.world_id = p_world AND e.stage = wval_select.stage AND e.kind = 'single' AND e.status <> 'unvalidated'
            AND NOT wval._imported(e.context)
          ORDER BY e.strategy_id, e.created_at DESC, e.chain_seq DESC) r;

    -- 1. thresholds: metric -> number (minimum) or {min, max, metric}
    FOR k IN SELECT t.key, t.value FROM jsonb_each(coalesce(sel -> 'thresholds', '{}')) t LOOP
        cands := ARRAY(
            SELECT CASE WHEN c.ok AND NOT coalesce(
                            CASE WHEN jsonb_typeof(k.value) = 'number'
                                 THEN wval._selection_metric(c.metrics, k.key) >= (k.value #>> '{}')::float8
                                 ELSE (k.value -> 'min' IS NULL OR wval._selection_metric(c.metrics, coalesce(k.value ->> 'metric', k.key)) >= (k.value ->> 'min')::float8)
                                  AND (k.value -> 'max' IS NULL OR wval._selection_metric(c.metrics, coalesce(k.value ->> 'metric', k.key)) <= (k.value ->> 'max')::float8) END,
                            false)
                        THEN ROW(c.strategy_id, c.metrics, c.value, false, c.rank, 'threshold_not_met')::wval.select_candidate
                        ELSE ROW(c.strategy_id, c.metrics, c.value, c.ok, c.rank, c.reason)::wval.select_candidate END
            FROM unnest(cands) c ORDER BY c.strategy_id);
    END LOOP;

    -- 2. top_k by a metric (descending, stable ties by strategy_id, missing last)
    cands := ARRAY(
        SELECT ROW(c.strategy_id, c.metrics, c.v, c.ok,
                   CASE WHEN c.ok THEN row_number() OVER (PARTITION BY c.ok ORDER BY c.v DESC NULLS LAST, c.strategy_id)::integer END,
                   c.reason)::wval.select_candidate
        FROM (SELECT x.strategy_id, x.metrics, x.ok, x.reason,
                     wval._selection_metric(x.metrics, coalesce(sel #>> '{top_k,metric}', sel #>> '{hysteresis,metric}', 'sharpe')) AS v
              FROM unnest(cands) x) c
        ORDER BY c.strategy_id);
    IF sel -> 'top_k' IS NOT NULL THEN
        cands := ARRAY(
            SELECT CASE WHEN c.ok AND c.rank > coalesce((sel #>> '{top_k,k}')::int, (sel #>> '{top_k}')::int)
                        THEN ROW(c.strategy_id, c.metrics, c.value, false, c.rank, 'top_k_exceeded')::wval.select_candidate
                        ELSE ROW(c.strategy_id, c.metrics, c.value, c.ok, c.rank, c.reason)::wval.select_candidate END
            FROM unnest(cands) c ORDER BY c.strategy_id);
    END IF;

    -- 3. correlation: greedy in rank order, drop one too correlated with a kept one
    FOR cand IN SELECT c.strategy_id FROM unnest(cands) c WHERE c.ok ORDER BY c.rank LOOP
        too_close := NULL;
        IF sel -> 'correlation' IS NOT NULL THEN
            SELECT CASE WHEN x.a = cand.strategy_id THEN x.b ELSE x.a END INTO too_close
            FROM wval._correlations(p_world) x
            WHERE (x.a = cand.strategy_id AND x.b = ANY (kept) OR x.b = cand.strategy_id AND x.a = ANY (kept))
              AND abs(x.corr) > coalesce((sel #>> '{correlation,max}')::float8, (sel #>> '{correlation}')::float8)
            LIMIT 1;
        END IF;
        IF too_close IS NOT NULL THEN
            dropped := dropped || cand.strategy_id;
        ELSE
            kept := kept || cand.strategy_id;
        END IF;
    END LOOP;
    IF cardinality(dropped) > 0 THEN
        cands := ARRAY(
            SELECT CASE WHEN c.strategy_id = ANY (dropped)
                        THEN ROW(c.strategy_id, c.metrics, c.value, false, c.rank, 'correlation_above_max')::wval.select_candidate
                        ELSE ROW(c.strategy_id, c.metrics, c.value, c.ok, c.rank, c.reason)::wval.select_candidate END
            FROM unnest(cands) c ORDER BY c.strategy_id);
    END IF;

    -- 4. hysteresis: a selected strategy stays while value >= exit, a new one enters at >= enter
    IF sel -> 'hysteresis' IS NOT NULL THEN
        cands := ARRAY(
            SELECT CASE WHEN c.ok AND NOT coalesce(c.v >= CASE WHEN c.strategy_id = ANY (prev) THEN (sel #>> '{hysteresis,exit}')::float8
                                                                ELSE (sel #>> '{hysteresis,enter}')::float8 END, false)
                        THEN ROW(c.strategy_id, c.metrics, c.v, false, c.rank,
                                 CASE WHEN c.strategy_id = ANY (prev) THEN 'hysteresis_below_exit'
                                      ELSE 'hysteresis_below_enter' END)::wval.select_candidate
                        ELSE ROW(c.strategy_id, c.metrics, c.v, c.ok, c.rank, c.reason)::wval.select_candidate END
            FROM (SELECT x.strategy_id, x.metrics, x.ok, x.rank, x.reason,
                         wval._selection_metric(x.metrics, coalesce(sel #>> '{hysteresis,metric}', 'sharpe')) AS v
                  FROM unnest(cands) x) c
            ORDER BY c.strategy_id);
    END IF;

    cands := ARRAY(
        SELECT ROW(c.strategy_id, c.metrics, c.value, c.ok, c.rank,
                   CASE WHEN c.ok THEN 'selected' ELSE c.reason END)::wval.select_candidate
        FROM unnest(cands) c ORDER BY c.strategy_id);
    SELECT coalesce(jsonb_object_agg(x.strategy_id, jsonb_build_object('selected', x.ok, 'rank', x.rank,
                                                                        'reason_code', x.reason, 'value', x.value)), '{}')
    INTO decisions FROM unnest(cands) x;
    SELECT coalesce(array_agg(x.strategy_id ORDER BY x.rank), '{}') INTO now_selected FROM unnest(cands) x WHERE x.ok;
    SELECT coalesce(array_agg(s ORDER BY s), '{}') INTO entered FROM unnest(now_selected) s WHERE NOT s = ANY (prev);
    SELECT coalesce(array_agg(s ORDER BY s), '{}') INTO left_set FROM unnest(prev) s WHERE NOT s = ANY (now_selected);

    INSERT INTO wval.selections (world_id, stage, policy_version, selected, entered, left_, decisions, actor)
    VALUES (p_world, wval_select.stage, v_version, now_selected, entered, left_set, decisions, p_actor);
    IF cardinality(entered) > 0 OR cardinality(left_set) > 0 THEN
        PERFORM wval._emit('selection_changed', p_world, wval_select.stage,
                           format('selection_changed:%s:%s:%s', p_world, wval_select.stage, currval('wval.selections_id_seq')),
                           jsonb_build_object('world_id', p_world, 'stage', wval_select.stage, 'entered', to_jsonb(entered),
                                              'left', to_jsonb(left_set), 'selected', to_jsonb(now_selected),
                                              'policy_version', v_version));
    END IF;

    RETURN QUERY SELECT x.strategy_id, x.ok, x.rank, x.reason FROM unnest(cands) x
                 ORDER BY x.ok DESC, x.rank NULLS LAST, x.strategy_id;
END
$$;
COMMENT ON FUNCTION public.wval_select(text, text, text) IS 'selection after validation: the latest non-failing run per strategy at the stage, then the policy''s selection block in order (thresholds, top_k, correlation, hysteresis); recorded in wval.selections, selection_changed when the set changed';

GRANT SELECT ON wval.selections TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_select(text, text, text) TO wval_validator;
