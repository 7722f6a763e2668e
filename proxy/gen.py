#!/usr/bin/env python3
"""proxy/gen.py: writes proxy/generated.sql, the routed part of wval_proxy.

wval_proxy exposes wval's public API on a proxy database as PL/Proxy
functions.  Most of them follow from the function's signature, so they are
generated from the catalogue of a database where wval is installed, which
keeps names, argument names, defaults, result types and grants exact:

  - a function with an argument world_id that returns one row or value:
        RUN ON wval_proxy.world_shard(world_id)      (the world's shard)
  - a set-returning function with an argument world_id:
        RUN ON wval_proxy.world_shards(world_id)     (NULL: every shard)
  - a function whose first argument is run_id uuid: the proxy finds the
    run's world on all shards (wval_proxy.run_shard), then calls that shard
  - a pure function (ANY below): RUN ON ANY
  - a set-returning function of every world (ALL below): RUN ON ALL
  - the result types (wval.<table> row types) become composite types of the
    same name on the proxy; the views of schema wval that wval_analyst reads
    become views of the same name on the proxy over RUN ON ALL, with the
    shard number as first column.

Everything else is either written by hand in proxy/wval_proxy.sql (HAND) or
deliberately not proxied (NOT_PROXIED, with the reason).  A public wval_*
function that none of these rules covers stops the generator, and
`gen.py --check` (run by test/sessions/cluster.sh) fails when the committed
generated.sql differs from what the current catalogue gives, so the proxy
cannot drift from wval.

Usage: PGHOST=... PGDATABASE=db_with_wval python3 proxy/gen.py [--check]
       python3 proxy/gen.py --not-proxied     (the names test/sessions/cluster.sh expects missing)
"""
import os
import sys

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "generated.sql")
CLUSTER = "wval_cluster"

# Written by hand in proxy/wval_proxy.sql: the bus (events of all shards,
# acked on the shard that delivered them) and results merged over shards.
HAND = {
    "wval_consume": "events of every shard, each with the shard that delivered it",
    "wval_ack": "acks on the shard named by the caller (the shard column of wval_consume)",
    "wval_nack": "nacks on the shard named by the caller",
    "wval_subscribe": "the consumer group is created on every shard",
    "wval_unsubscribe": "removed on every shard; sum of the counts",
    "wval_import_runs": "routed by the world of the runs (one world per call)",
    "wval_rule_failure_stats": "every shard, counts summed per rule and reason code",
    "wval_failure_rate": "every shard, counts summed per month and risk tier, rate recomputed",
}

# One value from one shard or several: RUN ON wval_proxy.world_shards(world_id)
# (the world's shard; every shard for NULL and for '*', the grant of every
# world) into a set-returning wval_proxy.<name>_on, merged by an aggregate:
# "first" (the rows are the same on every shard) or an aggregate's name.
MERGE = {
    "wval_verify_chain": "bool_and",     # NULL: the global chain of every shard
    "wval_world_grant": "first",         # '*': the grant on every shard
    "wval_world_revoke": "bool_and",
}

# Pure functions (no table read, or only tables equal on every shard).
ANY = {
    "wval_metrics", "wval_psr", "wval_dsr", "wval_norm_cdf", "wval_norm_ppf",
    "wval_strategy_complexity", "wval_check", "wval_policy_diff", "wval_policy_diff_gate",
    "wval_scenario_check", "wval_policy_diff_render",
}

# Set-returning functions over every world.
ALL = {"wval_live_run_all", "wval_validation_slo"}

# Deliberately not proxied: run them on each shard (docs/scale-out.md).
NOT_PROXIED = {
    # aggregates: PL/Proxy proxies functions, not aggregates; aggregate on a
    # shard, or on the proxy over rows read through it (wval_metrics is proxied)
    "wval_metrics_agg": "an aggregate", "wval_sharpe": "an aggregate",
    "wval_sortino": "an aggregate", "wval_max_drawdown": "an aggregate",
    "wval_var": "an aggregate", "wval_es": "an aggregate",
    "wval_maintain": "per-shard maintenance (partitions), scheduled on each shard",
    "wval_schedule_maintenance": "pg_cron jobs live on each shard",
    "wval_schedule_bus_worker": "pg_cron jobs live on each shard",
    "wval_unschedule_bus_worker": "pg_cron jobs live on each shard",
    "wval_schedule_invariants": "pg_cron jobs live on each shard",
    "wval_schedule_live_monitoring": "pg_cron jobs live on each shard",
    "wval_schedule_regression": "pg_cron jobs live on each shard",
    "wval_schedule_watchdog": "pg_cron jobs live on each shard",
    "wval_unschedule": "pg_cron jobs live on each shard",
    "wval_watchdog": "checks the pg_cron jobs of the shard it runs on",
    "wval_work": "the bus worker of one shard (the notifier and pg_cron run it there)",
    "wval_bus_prune": "per-shard storage housekeeping",
    "wval_storage_prune": "per-shard storage housekeeping",
    "wval_purge": "per-shard retention; a NULL world means every world of that shard",
    "wval_run_regression": "a NULL world means every world of the shard; scheduled on each shard",
    "wval_run_invariants": "records a report in the shard it runs on; read wval_check_invariants through the proxy",
    "wval_redrive": "dead letters are handled on the shard that holds them",
    "wval_metrics_prometheus": "each shard is scraped on its own (its own counters)",
    "wval_scenario_add": "scenario sets are per shard; add the case on every shard with the same call",
    "wval_revalidate": "the re-validation job of one shard (its queue), scheduled on each shard",
    "wval_schedule_revalidation": "pg_cron jobs live on each shard",
    "wval_override_approve": "a request id is not routed yet: decide on the shard of the request's world",
    "wval_override_reject": "a request id is not routed yet: decide on the shard of the request's world",
}

def q(conn, sql, args=()):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def composite(conn, typ):
    """Column list of a wval composite type: [(name, type)].  A column of one
    of wval's domains (wval.stage, ...) gets the domain's base type: the
    domain's check calls wval functions the proxy does not have, and the
    shard has already checked the value."""
    return q(conn, """
        SELECT a.attname,
               CASE WHEN ct.typtype = 'd' AND ct.typnamespace = 'wval'::regnamespace
                    THEN format_type(ct.typbasetype, ct.typtypmod)
                    ELSE format_type(a.atttypid, a.atttypmod) END
        FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
        JOIN pg_type ct ON ct.oid = a.atttypid
        WHERE t.oid = %s::regtype AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum""", (typ,))


def functions(conn, schema, pattern):
    return q(conn, """
        SELECT p.oid, p.proname, pg_get_function_arguments(p.oid),
               pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
               p.proretset, p.prokind, p.provolatile,
               coalesce(p.proargnames, '{}'), p.proargtypes::regtype[]::text[],
               p.pronargdefaults, p.prorettype::regtype::text,
               (SELECT coalesce(array_agg(DISTINCT a.grantee::regrole::text ORDER BY a.grantee::regrole::text), '{}')
                FROM aclexplode(p.proacl) a WHERE a.grantee <> 0 AND a.grantee::regrole::text LIKE 'wval\\_%%'
                  AND a.privilege_type = 'EXECUTE')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %s AND p.proname ~ %s
        ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)""", (schema, pattern))


def plproxy(name, args, result, body, comment=None):
    out = [f"CREATE FUNCTION {name}({args})\nRETURNS {result}\nLANGUAGE plproxy AS $$\n"
           f"    CLUSTER '{CLUSTER}';\n"]
    out += [f"    {line}\n" for line in body]
    out.append("$$;\n")
    return "".join(out)


def main():
    if "--not-proxied" in sys.argv[1:]:
        # what a shard has and the proxy lacks by name and arguments: the
        # functions not proxied, and wval_ack / wval_nack, which gain a shard
        print("\n".join(sorted(set(NOT_PROXIED) | {"wval_ack", "wval_nack"})))
        return
    check = "--check" in sys.argv[1:]
    conn = psycopg2.connect("")
    version = q(conn, "SELECT extversion FROM pg_extension WHERE extname = 'wval'")
    if not version:
        sys.exit("gen.py: wval is not installed in this database")
    funcs = functions(conn, "public", r"^wval_")
    types = {}          # wval.<table> -> columns
    parts = []          # (sort key, sql)
    unrouted = []
    for (oid, name, args, ident, result, retset, kind, volat, argnames, argtypes,
         ndefaults, rettype, grants) in funcs:
        if name in HAND:
            if rettype.startswith("wval."):
                types[rettype] = composite(conn, rettype)
            continue
        if name in NOT_PROXIED:
            continue
        if kind == "a":
            unrouted.append(f"{name}({ident}): an aggregate; list it in NOT_PROXIED")
            continue
        nargs = len(argtypes)
        names = list(argnames)[:nargs]
        sig = f"public.{name}({ident})"
        if rettype.startswith("wval."):
            types[rettype] = composite(conn, rettype)
        if "wval." in args or ("wval." in result and not result.lstrip("SETOF ").startswith("wval.")):
            unrouted.append(f"{sig}: an argument or a TABLE column of one of wval's types; teach gen.py to map it")
            continue
        world = "world_id" in names and argtypes[names.index("world_id")] == "text"
        if name in MERGE:
            route = None
        elif world and retset:
            route = [f"RUN ON wval_proxy.world_shards(world_id);"]
        elif world:
            # a world's default of NULL means "every world": not one shard
            idx = names.index("world_id")
            if idx >= nargs - ndefaults:
                unrouted.append(f"{sig}: world_id defaults to NULL but the result is one value; "
                                "merge it by hand (HAND) or list it in NOT_PROXIED")
                continue
            route = ["RUN ON wval_proxy.world_shard(world_id);"]
        elif names and names[0] == "run_id" and argtypes[0] == "uuid":
            route = None
        elif name in ANY:
            route = ["RUN ON ANY;"]
        elif name in ALL:
            if not retset:
                unrouted.append(f"{sig}: RUN ON ALL needs a set-returning function")
                continue
            route = ["RUN ON ALL;"]
        else:
            unrouted.append(f"{sig}: no routing rule (no world_id, no run_id); add it to ANY, ALL, HAND or NOT_PROXIED")
            continue
        grant = (f"GRANT EXECUTE ON FUNCTION {sig} TO {', '.join(grants)};\n" if grants else "")
        if name in MERGE:
            plain = ", ".join(f"{n} {t}" for n, t in zip(names, argtypes))
            inner = f"wval_proxy.{name}_on"
            sel = ", ".join(names)
            composite_result = rettype.startswith("wval.")
            sql = plproxy(inner, plain, f"SETOF {result}",
                          ["RUN ON wval_proxy.world_shards(world_id);",
                           f"SELECT {'* FROM ' if composite_result else ''}public.{name}({sel});"])
            sql += (f"COMMENT ON FUNCTION {inner}({', '.join(argtypes)}) IS "
                    f"'wval_proxy: {name} on the world''s shard, on every shard for NULL or *';\n")
            sql += f"GRANT EXECUTE ON FUNCTION {inner}({', '.join(argtypes)}) TO {', '.join(grants) or 'wval_admin'};\n"
            if MERGE[name] == "first":
                # an aggregate reads every shard's answer (a LIMIT could stop early)
                body = f"SELECT (g).* FROM (SELECT (array_agg(a))[1] AS g FROM {inner}({sel}) a) s"
            else:
                body = f"SELECT {MERGE[name]}(a) FROM {inner}({sel}) a"
            sql += (f"CREATE FUNCTION public.{name}({args})\nRETURNS {result}\nLANGUAGE sql AS $$\n"
                    f"    {body}\n$$;\n")
            how = f"on the world's shard, on every shard for NULL or * ({MERGE[name]})".replace("'", "''")
        elif route is not None:
            sql = plproxy(f"public.{name}", args, result, route)
            how = route[0].rstrip(";").lower()
        else:
            # by run: find the run's world on every shard, then call its shard
            plain = ", ".join(f"{n} {t}" for n, t in zip(names, argtypes))
            inner = f"wval_proxy.{name}_on"
            sel = ", ".join(names)
            star = "* FROM " if rettype.startswith("wval.") or retset else ""
            sql = plproxy(f"{inner}", f"shard integer, {plain}", result,
                          ["RUN ON shard;", f"SELECT {star}public.{name}({sel});"])
            sql += (f"COMMENT ON FUNCTION {inner}(integer, {', '.join(argtypes)}) IS "
                    f"'wval_proxy: calls {name} on the given shard';\n")
            sql += f"GRANT EXECUTE ON FUNCTION {inner}(integer, {', '.join(argtypes)}) TO {', '.join(grants) or 'wval_admin'};\n"
            body = f"SELECT {'* FROM ' if star else ''}{inner}(wval_proxy.run_shard(run_id), {sel})"
            sql += (f"CREATE FUNCTION public.{name}({args})\nRETURNS {result}\nLANGUAGE sql AS $$\n"
                    f"    {body}\n$$;\n")
            how = "on the shard of the world of the run"
        sql += (f"COMMENT ON FUNCTION {sig} IS "
                f"'wval_proxy: {name} of wval, {how}';\n") + grant
        parts.append(((name, ident), sql))

    missing_hand = (set(HAND) | set(MERGE)) - {f[1] for f in funcs}
    if missing_hand:
        unrouted.append(f"HAND or MERGE list functions wval no longer has: {sorted(missing_hand)}")
    gone = {n for n in NOT_PROXIED if n not in {f[1] for f in funcs}}
    if gone:
        unrouted.append(f"NOT_PROXIED lists functions wval no longer has: {sorted(gone)}")
    if unrouted:
        sys.exit("gen.py: public wval functions without a proxy rule:\n  " + "\n  ".join(unrouted))

    # the views analysts read: the union of every shard's rows
    views = q(conn, """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'wval' AND c.relkind = 'v' AND has_table_privilege('wval_analyst', c.oid, 'SELECT')
        ORDER BY 1""")
    vparts = []
    for (view,) in views:
        cols = composite(conn, f"wval.{view}")
        collist = ",\n    ".join(f"{c} {t}" for c, t in cols)
        vparts.append(
            f"CREATE TYPE wval_proxy.{view} AS (\n    shard integer,\n    {collist}\n);\n"
            f"COMMENT ON TYPE wval_proxy.{view} IS 'wval_proxy: a row of wval.{view} with its shard';\n"
            + plproxy(f"wval_proxy.{view}", "shards integer[] DEFAULT wval_proxy.all_shards()",
                      f"SETOF wval_proxy.{view}",
                      ["SPLIT shards;", "RUN ON shards;",
                       f"SELECT (shards)[1] AS shard, v.* FROM wval.{view} v;"])
            + f"COMMENT ON FUNCTION wval_proxy.{view}(integer[]) IS "
              f"'wval_proxy: the rows of wval.{view} on the given shards (default all), with the shard number';\n"
            f"GRANT EXECUTE ON FUNCTION wval_proxy.{view}(integer[]) TO wval_analyst;\n"
            f"CREATE VIEW wval.{view} AS SELECT * FROM wval_proxy.{view}();\n"
            f"COMMENT ON VIEW wval.{view} IS 'wval_proxy: wval.{view} of every shard (RUN ON ALL), with the shard number';\n"
            f"GRANT SELECT ON wval.{view} TO wval_analyst;\n")

    out = ["-- generated by proxy/gen.py from the catalogue of wval " + version[0][0] + "; do not edit\n",
           "-- (edit gen.py or wval_proxy.sql; see docs/scale-out.md)\n\n",
           "-- result types: the row types of wval's tables, by name\n"]
    for typ in sorted(types):
        cols = ",\n    ".join(f"{c} {t}" for c, t in types[typ])
        out.append(f"CREATE TYPE {typ} AS (\n    {cols}\n);\n"
                   f"COMMENT ON TYPE {typ} IS 'wval_proxy: the row type of {typ} on the shards';\n")
    # what the proxy's wval_consume returns: an event and the shard that delivered it
    cols = ",\n    ".join(f"{c} {t}" for c, t in types["wval.events"])
    out.append(f"CREATE TYPE wval_proxy.shard_event AS (\n    shard integer,\n    {cols}\n);\n"
               "COMMENT ON TYPE wval_proxy.shard_event IS 'wval_proxy: an event of wval.events and the shard that delivered it';\n")
    out.append("\n-- the API, routed\n")
    for _, sql in sorted(parts):
        out.append("\n" + sql)
    out.append("\n-- cross-world views\n")
    for sql in vparts:
        out.append("\n" + sql)
    text = "".join(out)
    if check:
        with open(OUT) as f:
            old = f.read()
        if old != text:
            import difflib
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                       "proxy/generated.sql (committed)", "from the catalogue"))
            sys.exit("gen.py --check: proxy/generated.sql is out of date; run proxy/gen.py and commit it")
        print(f"gen.py --check: proxy/generated.sql matches wval {version[0][0]} "
              f"({len(parts)} routed functions, {len(views)} views, {len(HAND)} by hand, "
              f"{len(NOT_PROXIED)} not proxied)")
        return
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(parts)} routed functions, {len(views)} views")


if __name__ == "__main__":
    main()
