-- returns.sql: the stored return series of runs and the reproduction of a
-- run's metrics from them (docs/reports.md, "Reproducible runs"), next to
-- returns.c.
--
-- requires: store

CREATE FUNCTION wval._returns_array(returns bytea) RETURNS float8[]
    AS 'MODULE_PATHNAME', 'wval_returns_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._returns_array(bytea) IS 'a stored series (wval.run_returns.returns: big-endian float8 bytes) as a float8[]; 22023 when the length is not a multiple of 8';

------------------------------------------------------------------------------
-- wval.run_returns: content-addressed, append-only, chained per world
------------------------------------------------------------------------------

CREATE TABLE wval.run_returns (
    world_id     text NOT NULL,
    returns_hash text NOT NULL,
    n_periods    integer NOT NULL CHECK (n_periods >= 0),
    returns      bytea NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (world_id, returns_hash),
    CONSTRAINT run_returns_content CHECK (pg_catalog.length(returns) = 8 * n_periods
                                          AND 'sha256:' || pg_catalog.encode(pg_catalog.sha256(returns), 'hex') = returns_hash)
);
SELECT wval._secure('wval.run_returns');
COMMENT ON TABLE wval.run_returns IS 'the return series runs were evaluated from, stored once per world and series (content-addressed by the runs'' returns_hash) when the world''s settings say store_returns = true; append-only and hash-chained; purged with the last run of the world that references it';
COMMENT ON COLUMN wval.run_returns.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.run_returns.returns_hash IS 'sha256 of the series (wval.evaluation_runs.returns_hash of every run evaluated from it); the check constraint recomputes it from returns';
COMMENT ON COLUMN wval.run_returns.n_periods IS 'number of returns in the series';
COMMENT ON COLUMN wval.run_returns.returns IS 'the simple periodic returns, oldest first, exactly as evaluated: float8send(r_1) || ... || float8send(r_n) (8 bytes each, big-endian), the bytes returns_hash is the sha256 of; wval._returns_array() makes them a float8[]';
COMMENT ON COLUMN wval.run_returns.stored_at IS 'when the series was first stored (the transaction of the first run evaluated from it)';
COMMENT ON COLUMN wval.run_returns.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.run_returns.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.run_returns.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.run_returns', 'run_returns');
SELECT pg_catalog.pg_extension_config_dump('wval.run_returns', '');

------------------------------------------------------------------------------
-- Writing (C) and reading
------------------------------------------------------------------------------

CREATE FUNCTION wval._store_returns(world_id text, returns_hash text, returns float8[]) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wval_store_returns' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wval._store_returns(text, text, float8[]) IS 'stores a run''s returns in wval.run_returns when the world''s settings say store_returns = true and the series is not stored yet; true when a row was written; for wval''s SQL writers (live runs) only';

CREATE FUNCTION wval._recompute_metrics(returns float8[], context jsonb, stored jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_recompute_metrics' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._recompute_metrics(float8[], jsonb, jsonb) IS 'the metrics pack of a single run recomputed from its returns with the metric options of its stored context and the strategy complexity over its stored diagnostics.extra_metrics (no benchmark: it is not stored)';

-- wval._run_returns(run_id): the returns of a run the caller may read; null
-- when the run has none stored.  wval._run() answers a run of a world the
-- caller may not read as nonexistent (WV010).
CREATE FUNCTION wval._run_returns(run_id uuid) RETURNS float8[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    x float8[];
BEGIN
    IF r.returns_hash IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT wval._returns_array(rr.returns) INTO x FROM wval.run_returns rr
    WHERE rr.world_id = r.world_id AND rr.returns_hash = r.returns_hash;
    RETURN x;
END
$$;
COMMENT ON FUNCTION wval._run_returns(uuid) IS 'the returns a run was evaluated from (wval.run_returns), null when they are not stored; WV010 when the run does not exist or its world is not readable';

-- wval._jsonb_leaves(doc): every scalar, array or null of a document with its
-- path; empty objects have none.
CREATE FUNCTION wval._jsonb_leaves(doc jsonb) RETURNS TABLE (path text[], value jsonb)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH RECURSIVE t(path, value) AS (
        SELECT ARRAY[e.key], e.value FROM pg_catalog.jsonb_each(CASE WHEN pg_catalog.jsonb_typeof(doc) = 'object' THEN doc ELSE '{}' END) e
        UNION ALL
        SELECT t.path || e.key, e.value FROM t, pg_catalog.jsonb_each(t.value) e
        WHERE pg_catalog.jsonb_typeof(t.value) = 'object')
    SELECT t.path, t.value FROM t WHERE pg_catalog.jsonb_typeof(t.value) <> 'object'
$$;
COMMENT ON FUNCTION wval._jsonb_leaves(jsonb) IS 'the leaves (non-object values) of a jsonb document with their key paths';

------------------------------------------------------------------------------
-- wval_run_reproduce
------------------------------------------------------------------------------

-- (SECURITY DEFINER: wval._run() checks that the caller may read the run's world)
CREATE FUNCTION public.wval_run_reproduce(run_id uuid)
RETURNS TABLE (field text, stored jsonb, recomputed jsonb, equal boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET jit = off AS $$
-- jit off: the set-returning jsonb functions make the planner guess a cost
-- above jit_above_cost; compiling took 50x the query (1.9 ms -> 106 ms)
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    x float8[];
    re jsonb;
    -- fields computed from the benchmark, which a run does not keep
    bench_fields text[] := ARRAY['returns.beta', 'returns.alpha', 'returns.tracking_error',
                                 'returns.information_ratio', 'benchmark.sharpe', 'benchmark.volatility',
                                 'benchmark.max_drawdown', 'diagnostics.extra_metrics.vs_benchmark_sharpe'];
BEGIN
    IF r.returns_hash IS NULL THEN
        RAISE EXCEPTION 'run % has no returns to reproduce its metrics from', r.run_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('The run (kind %s) was evaluated from supplied metrics only: its returns_hash is null.', r.kind),
                  HINT = 'Only runs evaluated from returns can be reproduced.';
    END IF;
    IF r.kind IN ('portfolio', 'cohort', 'stress') THEN
        RAISE EXCEPTION 'runs of kind % cannot be reproduced from their returns', r.kind
            USING ERRCODE = '22023',
                  DETAIL = format('run %s is a %s run: its metrics come from the risk snapshot %s, not only from its returns.',
                                  r.run_id, r.kind, coalesce(r.data_snapshot #>> '{risk_snapshot,version}', '(none)')),
                  HINT = 'Reproduce the candidate''s own run (linked_run_id); wval._run_returns() gives the returns that were used.';
    END IF;
    SELECT wval._returns_array(rr.returns) INTO x FROM wval.run_returns rr
    WHERE rr.world_id = r.world_id AND rr.returns_hash = r.returns_hash;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the returns of run % are not stored', r.run_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('World %s did not store returns (settings.store_returns) when run %s was evaluated, or they were purged; returns_hash is %s.',
                                  r.world_id, r.run_id, r.returns_hash),
                  HINT = 'Turn on the world setting store_returns (wval_world_upsert(world_id, settings => ... || ''{"store_returns": true}'')); runs evaluated from then on can be reproduced.';
    END IF;

    IF r.kind = 'live' THEN
        -- a live run keeps wval_metrics(returns)->'returns' of its longest window
        re := jsonb_build_object('returns', wval._recompute_metrics(x, '{}', NULL) -> 'returns');
    ELSE
        re := wval._recompute_metrics(x, r.context, r.metrics);
    END IF;

    RETURN QUERY
    SELECT array_to_string(l.path, '.'), r.metrics #> l.path, l.value, (r.metrics #> l.path) = l.value
    FROM wval._jsonb_leaves(re) l
    -- a computed null keeps a supplied fact (evaluate.c, merge_leaf): not a metric of the returns
    WHERE NOT (l.value = 'null'::jsonb AND coalesce(r.metrics #> l.path, 'null'::jsonb) <> 'null'::jsonb
               AND (array_to_string(l.path, '.') IN ('sample.n_trades_total', 'sample.n_trades_per_year')
                    OR l.path[1] IN ('diagnostics', 'risk')))
    UNION ALL
    SELECT f, r.metrics #> string_to_array(f, '.'), NULL::jsonb, NULL::boolean
    FROM unnest(bench_fields) f
    WHERE r.kind = 'single' AND r.metrics #> string_to_array(f, '.') IS NOT NULL
      AND r.metrics #> string_to_array(f, '.') <> 'null'::jsonb
    ORDER BY 1;
END
$$;
COMMENT ON FUNCTION public.wval_run_reproduce(uuid) IS 'recomputes a run''s metrics from its stored returns (wval.run_returns) and its stored context, one row per metric field: stored value, recomputed value, equal (exact: the same C code gives the same bits; null for benchmark-relative fields, whose benchmark is not stored); WV010 when the run does not exist or its returns are not stored; 22023 for portfolio, cohort and stress runs';

GRANT EXECUTE ON FUNCTION public.wval_run_reproduce(uuid), wval._run_returns(uuid), wval._returns_array(bytea) TO wval_analyst;
GRANT SELECT ON wval.run_returns TO wval_analyst;
