-- routing.sql: prelude of wval_proxy (roles, schemas, where a world lives).
--
-- wval_proxy runs on a proxy database in front of 2^k shards, each a normal
-- database with wval.  The shards are the partitions p0, p1, ... of the
-- PL/Proxy cluster 'wval_cluster' (a SERVER of the plproxy foreign data
-- wrapper, set by wval_proxy_set_shards).  A world lives on the shard
-- hashtext(world_id) & (shards - 1), unless wval_proxy.placements names
-- another one (a world moved between shards, docs/scale-out.md).

\echo Use "CREATE EXTENSION wval_proxy CASCADE" to load this file. \quit

-- The same four roles as wval (cluster-wide, created when missing): logins
-- on the proxy and on the shards must have the same names and memberships,
-- since PL/Proxy connects to the shards as the calling login.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['wval_analyst', 'wval_producer', 'wval_validator', 'wval_admin']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;
GRANT wval_analyst TO wval_producer, wval_validator;
GRANT wval_producer, wval_validator TO wval_admin;

CREATE SCHEMA wval;
COMMENT ON SCHEMA wval IS 'wval_proxy: the result types of the shards'' wval functions and the cross-world views, under wval''s names';
CREATE SCHEMA wval_proxy;
COMMENT ON SCHEMA wval_proxy IS 'wval_proxy: routing (where a world lives), placements, per-shard helpers';
REVOKE ALL ON SCHEMA wval, wval_proxy FROM PUBLIC;
GRANT USAGE ON SCHEMA wval, wval_proxy TO wval_analyst;

-- Worlds that do not live on their hash shard (moved, docs/scale-out.md).
CREATE TABLE wval_proxy.placements (
    world_id  text PRIMARY KEY,
    shard     integer NOT NULL CHECK (shard >= 0),
    placed_by text NOT NULL DEFAULT current_user,
    placed_at timestamptz NOT NULL DEFAULT now(),
    note      text
);
COMMENT ON TABLE wval_proxy.placements IS 'wval_proxy: worlds placed on a shard other than their hash shard (after a move)';
COMMENT ON COLUMN wval_proxy.placements.world_id IS 'the world';
COMMENT ON COLUMN wval_proxy.placements.shard IS 'the shard (partition number of wval_cluster) the world lives on';
COMMENT ON COLUMN wval_proxy.placements.placed_by IS 'the login that placed it';
COMMENT ON COLUMN wval_proxy.placements.placed_at IS 'when';
COMMENT ON COLUMN wval_proxy.placements.note IS 'why (free text)';
SELECT pg_catalog.pg_extension_config_dump('wval_proxy.placements', '');
GRANT SELECT ON wval_proxy.placements TO wval_analyst;

-- wval_proxy.shard_count(): how many shards wval_cluster has (its p<N> options).
CREATE FUNCTION wval_proxy.shard_count()
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer
    FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
    WHERE s.srvname = 'wval_cluster' AND o ~ '^p[0-9]+='
$$;
COMMENT ON FUNCTION wval_proxy.shard_count() IS 'wval_proxy: the number of shards of wval_cluster (0 before wval_proxy_set_shards)';

-- wval_proxy.all_shards(): 0 .. shards - 1.
CREATE FUNCTION wval_proxy.all_shards()
RETURNS integer[]
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.array_agg(s ORDER BY s) FROM pg_catalog.generate_series(0, wval_proxy.shard_count() - 1) s
$$;
COMMENT ON FUNCTION wval_proxy.all_shards() IS 'wval_proxy: every shard number, 0 .. shards - 1';

-- wval_proxy.world_shard(world_id): the shard a world lives on.  NULL and
-- '' go to shard 0, whose wval raises the proper error for them.
CREATE FUNCTION wval_proxy.world_shard(world_id text)
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT p.shard FROM wval_proxy.placements p WHERE p.world_id = $1),
                    pg_catalog.hashtext(coalesce($1, '')) & (wval_proxy.shard_count() - 1))
$$;
COMMENT ON FUNCTION wval_proxy.world_shard(text) IS 'wval_proxy: the shard of a world (its placement, else hashtext(world_id) & (shards - 1))';

-- wval_proxy.world_shards(world_id): the world's shard, or every shard for
-- NULL (every world) and '*' (the world of grants to every world).
CREATE FUNCTION wval_proxy.world_shards(world_id text)
RETURNS SETOF integer
LANGUAGE sql STABLE AS $$
    SELECT s FROM pg_catalog.generate_series(0, wval_proxy.shard_count() - 1) s
    WHERE $1 IS NULL OR $1 = '*' OR s = wval_proxy.world_shard($1)
$$;
COMMENT ON FUNCTION wval_proxy.world_shards(text) IS 'wval_proxy: the shard of a world; every shard for NULL and * (every world)';

-- wval_proxy.check_shard(shard): the shard number, or 22023 when there is
-- no such shard (PL/Proxy would map it onto another one by its bit mask).
CREATE FUNCTION wval_proxy.check_shard(shard integer)
RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n integer := wval_proxy.shard_count();
BEGIN
    IF shard IS NULL OR shard < 0 OR shard >= n THEN
        RAISE EXCEPTION 'shard % does not exist', coalesce(shard::text, 'NULL')
            USING ERRCODE = '22023', DETAIL = format('wval_cluster has %s shards (0 .. %s).', n, n - 1),
                  HINT = 'Pass the shard column of the row wval_consume returned.';
    END IF;
    RETURN shard;
END
$$;
COMMENT ON FUNCTION wval_proxy.check_shard(integer) IS 'wval_proxy: returns the shard number, 22023 unless 0 <= shard < shards';

-- wval_proxy.run_worlds(run_id): the world of a run, asked of every shard
-- (what the caller may not see is not found, as on a shard).
CREATE FUNCTION wval_proxy.run_worlds(p_run uuid)
RETURNS SETOF text
LANGUAGE plproxy AS $$
    CLUSTER 'wval_cluster';
    RUN ON ALL;
    SELECT r.world_id FROM wval.evaluation_runs r WHERE r.run_id = p_run;
$$;
COMMENT ON FUNCTION wval_proxy.run_worlds(uuid) IS 'wval_proxy: the world of a run, from every shard';

-- wval_proxy.run_shard(run_id): the shard of the run's world; a run found
-- nowhere goes to shard 0, whose wval raises its own "not found" error.
CREATE FUNCTION wval_proxy.run_shard(run_id uuid)
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT wval_proxy.world_shard(w) FROM wval_proxy.run_worlds($1) w LIMIT 1), 0)
$$;
COMMENT ON FUNCTION wval_proxy.run_shard(uuid) IS 'wval_proxy: the shard of a run (found on every shard), 0 when no shard has it';

-- wval_proxy_world_shard(world_id): where a world lives.
CREATE FUNCTION public.wval_proxy_world_shard(world_id text)
RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT wval_proxy.world_shard($1)
$$;
COMMENT ON FUNCTION public.wval_proxy_world_shard(text) IS 'wval_proxy: the shard (partition number of wval_cluster) a world lives on, or would be created on';

-- wval_proxy_set_shards(conninfos): (re)defines wval_cluster with these
-- shards (2^k libpq connection strings, without user: PL/Proxy connects as
-- the calling login), a user mapping for every login, usage for the wval
-- roles.  Superuser only (it creates a foreign server).
CREATE FUNCTION public.wval_proxy_set_shards(conninfos text[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(pg_catalog.cardinality(conninfos), 0);
    opts text;
BEGIN
    IF n = 0 OR n & (n - 1) <> 0 THEN
        RAISE EXCEPTION 'the number of shards must be a power of two'
            USING ERRCODE = '22023', DETAIL = format('%s connection strings given.', n),
                  HINT = 'PL/Proxy maps hashtext(world_id) onto the shards with a bit mask: pass 1, 2, 4, 8 ... shards.';
    END IF;
    IF pg_catalog.array_position(conninfos, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'a shard connection string is NULL' USING ERRCODE = '22023';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('p%s %L', i - 1, conninfos[i]), ', ' ORDER BY i)
    INTO opts FROM pg_catalog.generate_subscripts(conninfos, 1) i;
    EXECUTE 'DROP SERVER IF EXISTS wval_cluster CASCADE';
    EXECUTE 'CREATE SERVER wval_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (' || opts || ')';
    EXECUTE 'CREATE USER MAPPING FOR PUBLIC SERVER wval_cluster';
    EXECUTE 'GRANT USAGE ON FOREIGN SERVER wval_cluster TO wval_analyst';
    RETURN n;
END
$$;
COMMENT ON FUNCTION public.wval_proxy_set_shards(text[]) IS 'wval_proxy: defines the PL/Proxy cluster wval_cluster: shard i is conninfos[i + 1] (a power of two of them)';
REVOKE ALL ON FUNCTION public.wval_proxy_set_shards(text[]) FROM PUBLIC;

-- wval_proxy_place(world_id, shard, note): routes a world to a shard other
-- than its hash shard (after its history was copied there); NULL shard
-- removes the placement.
CREATE FUNCTION public.wval_proxy_place(world_id text, shard integer, note text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    IF shard IS NULL THEN
        DELETE FROM wval_proxy.placements p WHERE p.world_id = wval_proxy_place.world_id;
    ELSE
        INSERT INTO wval_proxy.placements AS p (world_id, shard, note)
        VALUES (wval_proxy_place.world_id, wval_proxy.check_shard(wval_proxy_place.shard), wval_proxy_place.note)
        ON CONFLICT ON CONSTRAINT placements_pkey DO UPDATE
            SET shard = EXCLUDED.shard, note = EXCLUDED.note, placed_by = current_user, placed_at = now();
    END IF;
    RETURN wval_proxy.world_shard(world_id);
END
$$;
COMMENT ON FUNCTION public.wval_proxy_place(text, integer, text) IS 'wval_proxy: routes a world to a shard (after moving its history there); NULL shard: back to its hash shard';
REVOKE ALL ON FUNCTION public.wval_proxy_place(text, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.wval_proxy_place(text, integer, text) TO wval_admin;
GRANT INSERT, UPDATE, DELETE ON wval_proxy.placements TO wval_admin;

GRANT EXECUTE ON FUNCTION wval_proxy.shard_count(), wval_proxy.all_shards(), wval_proxy.world_shard(text),
      wval_proxy.world_shards(text), wval_proxy.check_shard(integer), wval_proxy.run_worlds(uuid),
      wval_proxy.run_shard(uuid), public.wval_proxy_world_shard(text) TO wval_analyst;
