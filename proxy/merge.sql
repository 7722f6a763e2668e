-- merge.sql: the functions of wval_proxy written by hand (gen.py's HAND):
-- the bus through the proxy, and results merged over several shards.

-- The bus.  A consumer of the proxy receives the events of every shard; each
-- row carries the shard that delivered it, and the ack goes to that shard
-- (event ids are per shard).  A consumer group exists on every shard.

-- wval_proxy.consume_on(shard, group, max): wval_consume on one shard.
CREATE FUNCTION wval_proxy.consume_on(shard integer, group_name text, max integer)
RETURNS SETOF wval.events
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON shard;
    SELECT * FROM public.wval_consume(group_name, max);
$$;
COMMENT ON FUNCTION wval_proxy.consume_on(integer, text, integer) IS 'wval_proxy: wval_consume on one shard';

-- wval_consume(group, max): up to max events of every shard, the shards
-- asked in turn from a random one (so that a busy shard starves none).
CREATE FUNCTION public.wval_consume(group_name text, max integer DEFAULT 100)
RETURNS SETOF wval_proxy.shard_event
LANGUAGE plpgsql AS $$
DECLARE
    n integer := wval_proxy.shard_count();
    first integer := floor(random() * n)::integer;
    got integer := 0;
    k integer;
    s integer;
BEGIN
    FOR i IN 0 .. n - 1 LOOP
        EXIT WHEN i > 0 AND got >= max;
        s := (first + i) % n;
        RETURN QUERY SELECT s, e.* FROM wval_proxy.consume_on(s, group_name, greatest(max - got, 1)) e;
        GET DIAGNOSTICS k = ROW_COUNT;
        got := got + k;
    END LOOP;
END
$$;
COMMENT ON FUNCTION public.wval_consume(text, integer) IS 'wval_proxy: up to max events of every shard for the group, each with the shard that delivered it (ack there)';

CREATE FUNCTION wval_proxy.ack_on(shard integer, group_name text, event_id bigint)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON shard;
    SELECT public.wval_ack(group_name, event_id);
$$;
COMMENT ON FUNCTION wval_proxy.ack_on(integer, text, bigint) IS 'wval_proxy: wval_ack on one shard';

CREATE FUNCTION wval_proxy.ack_on(shard integer, group_name text, event_ids bigint[])
RETURNS integer
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON shard;
    SELECT public.wval_ack(group_name, event_ids);
$$;
COMMENT ON FUNCTION wval_proxy.ack_on(integer, text, bigint[]) IS 'wval_proxy: wval_ack of several events on one shard';

CREATE FUNCTION wval_proxy.nack_on(shard integer, group_name text, event_id bigint, error text)
RETURNS text
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON shard;
    SELECT public.wval_nack(group_name, event_id, error);
$$;
COMMENT ON FUNCTION wval_proxy.nack_on(integer, text, bigint, text) IS 'wval_proxy: wval_nack on one shard';

-- wval_ack(group, shard, event_id): acks an event on the shard that delivered it.
CREATE FUNCTION public.wval_ack(group_name text, shard integer, event_id bigint)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT wval_proxy.ack_on(wval_proxy.check_shard(shard), group_name, event_id)
$$;
COMMENT ON FUNCTION public.wval_ack(text, integer, bigint) IS 'wval_proxy: wval_ack on the shard that delivered the event (the shard column of wval_consume)';

CREATE FUNCTION public.wval_ack(group_name text, shard integer, event_ids bigint[])
RETURNS integer
LANGUAGE sql AS $$
    SELECT wval_proxy.ack_on(wval_proxy.check_shard(shard), group_name, event_ids)
$$;
COMMENT ON FUNCTION public.wval_ack(text, integer, bigint[]) IS 'wval_proxy: wval_ack of events of one shard';

CREATE FUNCTION public.wval_nack(group_name text, shard integer, event_id bigint, error text)
RETURNS text
LANGUAGE sql AS $$
    SELECT wval_proxy.nack_on(wval_proxy.check_shard(shard), group_name, event_id, error)
$$;
COMMENT ON FUNCTION public.wval_nack(text, integer, bigint, text) IS 'wval_proxy: wval_nack on the shard that delivered the event';

CREATE FUNCTION wval_proxy.subscribe_all(group_name text, types text[], max_attempts integer, backoff text, visibility text)
RETURNS SETOF wval.consumer_groups
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON ALL;
    SELECT * FROM public.wval_subscribe(group_name, types, max_attempts, backoff, visibility);
$$;
COMMENT ON FUNCTION wval_proxy.subscribe_all(text, text[], integer, text, text) IS 'wval_proxy: wval_subscribe on every shard';

-- wval_subscribe(...): the group on every shard (the same definition); one
-- shard's row is returned.  (An aggregate reads every shard's answer: a
-- LIMIT could stop reading before every shard has answered.)
CREATE FUNCTION public.wval_subscribe(group_name text, types text[], max_attempts integer DEFAULT 3,
                                      backoff text DEFAULT '500ms', visibility text DEFAULT '30s')
RETURNS wval.consumer_groups
LANGUAGE sql AS $$
    SELECT (g).* FROM (SELECT (array_agg(a))[1] AS g
                       FROM wval_proxy.subscribe_all(group_name, types, max_attempts, backoff, visibility) a) s
$$;
COMMENT ON FUNCTION public.wval_subscribe(text, text[], integer, text, text) IS 'wval_proxy: wval_subscribe on every shard';

CREATE FUNCTION public.wval_subscribe(group_name text, types text[], max_attempts integer, backoff interval,
                                      visibility interval DEFAULT '30 seconds')
RETURNS wval.consumer_groups
LANGUAGE sql AS $$
    SELECT (g).* FROM (SELECT (array_agg(a))[1] AS g
                       FROM wval_proxy.subscribe_all(group_name, types, max_attempts, backoff::text, visibility::text) a) s
$$;
COMMENT ON FUNCTION public.wval_subscribe(text, text[], integer, interval, interval) IS 'wval_proxy: wval_subscribe with interval values, on every shard';

CREATE FUNCTION wval_proxy.unsubscribe_all(group_name text)
RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON ALL;
    SELECT public.wval_unsubscribe(group_name);
$$;
COMMENT ON FUNCTION wval_proxy.unsubscribe_all(text) IS 'wval_proxy: wval_unsubscribe on every shard';

CREATE FUNCTION public.wval_unsubscribe(group_name text)
RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(n)::bigint FROM wval_proxy.unsubscribe_all(group_name) n
$$;
COMMENT ON FUNCTION public.wval_unsubscribe(text) IS 'wval_proxy: wval_unsubscribe on every shard; the sum of what they removed';

-- Import: one world per call, on its shard.
CREATE FUNCTION wval_proxy.import_shard(runs jsonb)
RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    worlds text[];
BEGIN
    IF jsonb_typeof(runs) IS DISTINCT FROM 'array' THEN
        RETURN 0;      -- shard 0's wval_import_runs raises its own error
    END IF;
    SELECT array_agg(DISTINCT e->>'world_id') INTO worlds FROM jsonb_array_elements(runs) e;
    IF cardinality(worlds) > 1 THEN
        RAISE EXCEPTION 'runs of several worlds in one import through the proxy'
            USING ERRCODE = '22023', DETAIL = format('worlds: %s', array_to_string(worlds, ', ', 'NULL')),
                  HINT = 'Call wval_import_runs once per world.';
    END IF;
    RETURN wval_proxy.world_shard(worlds[1]);
END
$$;
COMMENT ON FUNCTION wval_proxy.import_shard(jsonb) IS 'wval_proxy: the shard of the one world of an import; 22023 for several';

CREATE FUNCTION public.wval_import_runs(runs jsonb)
RETURNS integer
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON wval_proxy.import_shard(runs);
$$;
COMMENT ON FUNCTION public.wval_import_runs(jsonb) IS 'wval_proxy: wval_import_runs on the shard of the runs'' world (one world per call)';

-- Statistics over every world: the shards' counts, summed.
CREATE FUNCTION wval_proxy.rule_failure_stats_all(since timestamptz, until timestamptz)
RETURNS TABLE (rule text, reason_code text, results bigint, failed bigint, warned bigint, missing bigint, errored bigint)
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON ALL;
    SELECT * FROM public.wval_rule_failure_stats(since, until);
$$;
COMMENT ON FUNCTION wval_proxy.rule_failure_stats_all(timestamptz, timestamptz) IS 'wval_proxy: wval_rule_failure_stats of every shard';

CREATE FUNCTION public.wval_rule_failure_stats(since timestamptz DEFAULT now() - interval '30 days',
                                        until timestamptz DEFAULT now())
RETURNS TABLE (rule text, reason_code text, results bigint, failed bigint, warned bigint, missing bigint, errored bigint)
LANGUAGE sql AS $$
    SELECT s.rule, s.reason_code, sum(s.results)::bigint, sum(s.failed)::bigint, sum(s.warned)::bigint,
           sum(s.missing)::bigint, sum(s.errored)::bigint
    FROM wval_proxy.rule_failure_stats_all(since, until) s
    GROUP BY s.rule, s.reason_code
    ORDER BY sum(s.failed) DESC, s.rule, s.reason_code
$$;
COMMENT ON FUNCTION public.wval_rule_failure_stats(timestamptz, timestamptz) IS 'wval_proxy: wval_rule_failure_stats over every shard (counts summed per rule and reason code)';

CREATE FUNCTION wval_proxy.failure_rate_all(since timestamptz, until timestamptz)
RETURNS TABLE (month date, risk_tier text, strategies_passed_live bigint, strategies_failed_ex_post bigint, failure_rate float8)
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON ALL;
    SELECT * FROM public.wval_failure_rate(since, until);
$$;
COMMENT ON FUNCTION wval_proxy.failure_rate_all(timestamptz, timestamptz) IS 'wval_proxy: wval_failure_rate of every shard';

-- a strategy belongs to one world, a world to one shard: the counts add up
CREATE FUNCTION public.wval_failure_rate(since timestamptz DEFAULT now() - interval '12 months',
                                  until timestamptz DEFAULT now())
RETURNS TABLE (month date, risk_tier text, strategies_passed_live bigint, strategies_failed_ex_post bigint, failure_rate float8)
LANGUAGE sql AS $$
    SELECT f.month, f.risk_tier, sum(f.strategies_passed_live)::bigint, sum(f.strategies_failed_ex_post)::bigint,
           sum(f.strategies_failed_ex_post)::float8 / sum(f.strategies_passed_live)
    FROM wval_proxy.failure_rate_all(since, until) f
    GROUP BY f.month, f.risk_tier ORDER BY f.month, f.risk_tier
$$;
COMMENT ON FUNCTION public.wval_failure_rate(timestamptz, timestamptz) IS 'wval_proxy: wval_failure_rate over every shard (counts summed per month and risk tier)';

GRANT EXECUTE ON FUNCTION public.wval_consume(text, integer), public.wval_ack(text, integer, bigint),
      public.wval_ack(text, integer, bigint[]), public.wval_nack(text, integer, bigint, text),
      public.wval_subscribe(text, text[], integer, text, text),
      public.wval_subscribe(text, text[], integer, interval, interval),
      wval_proxy.consume_on(integer, text, integer), wval_proxy.ack_on(integer, text, bigint),
      wval_proxy.ack_on(integer, text, bigint[]), wval_proxy.nack_on(integer, text, bigint, text),
      wval_proxy.subscribe_all(text, text[], integer, text, text) TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_unsubscribe(text), wval_proxy.unsubscribe_all(text) TO wval_admin;
GRANT EXECUTE ON FUNCTION public.wval_import_runs(jsonb), wval_proxy.import_shard(jsonb) TO wval_admin;
GRANT EXECUTE ON FUNCTION public.wval_rule_failure_stats(timestamptz, timestamptz), wval_proxy.rule_failure_stats_all(timestamptz, timestamptz),
      public.wval_failure_rate(timestamptz, timestamptz), wval_proxy.failure_rate_all(timestamptz, timestamptz)
      TO wval_analyst;

-- as in wval: nothing of the extension is executable by PUBLIC; the grants
-- above and in the generated part give each role what wval gives it
DO $revoke$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::regprocedure FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.refclassid = 'pg_catalog.pg_extension'::regclass
          AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'wval_proxy')
          AND d.deptype = 'e'
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$revoke$;
