-- test/bench/metrics_plpgsql.sql: the PL/pgSQL baseline of the metrics
-- benchmark (test/bench/metrics.sh): Sharpe, max drawdown and 1 % VaR of
-- one return series, written the way a careful PL/pgSQL author would
-- (two-pass mean / deviation, one pass over the wealth path, the quantile
-- by sorting).  Not part of the extension.

CREATE SCHEMA IF NOT EXISTS wval_bench;

CREATE OR REPLACE FUNCTION wval_bench.plpgsql_metrics(returns float8[], periods_per_year integer DEFAULT 252)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    n       integer := coalesce(array_length(returns, 1), 0);
    r       float8;
    s       float8 := 0;
    mu      float8;
    ss      float8 := 0;
    sd      float8;
    sharpe  float8;
    wealth  float8 := 1;
    peak    float8 := 1;
    dd      float8;
    mdd     float8;
    sorted  float8[];
    h       float8;
    lo      integer;
    q       float8;
    var_p01 float8;
BEGIN
    IF n >= 2 THEN
        FOREACH r IN ARRAY returns LOOP
            s := s + r;
        END LOOP;
        mu := s / n;
        FOREACH r IN ARRAY returns LOOP
            ss := ss + (r - mu) * (r - mu);
        END LOOP;
        sd := sqrt(ss / (n - 1));
        IF sd > 0 THEN
            sharpe := mu / sd * sqrt(periods_per_year);
        END IF;
    END IF;

    IF n >= 1 THEN
        mdd := 0;
        FOREACH r IN ARRAY returns LOOP
            wealth := wealth * (1 + r);
            IF wealth > peak THEN
                peak := wealth;
            ELSE
                dd := 1 - wealth / peak;
                IF dd > mdd THEN
                    mdd := dd;
                END IF;
            END IF;
        END LOOP;
    END IF;

    IF n >= 2 THEN
        SELECT array_agg(x ORDER BY x) INTO sorted FROM unnest(returns) AS x;
        h := (n - 1) * 0.01;
        lo := floor(h);
        q := sorted[lo + 1] + (h - lo) * (sorted[lo + 2] - sorted[lo + 1]);
        var_p01 := greatest(0, -q);
    END IF;

    RETURN jsonb_build_object('sharpe', sharpe, 'max_drawdown', mdd, 'var_p01', var_p01);
END
$$;
