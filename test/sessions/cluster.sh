#!/usr/bin/env bash
# A sharded wval on one machine: one proxy cluster with wval_proxy and four
# shard clusters with wval (docs/scale-out.md), each a server of its own
# (own port, own socket in a temp dir).  Through the proxy, as the logins a
# site would use: worlds created and spread over the shards, policies
# published by one login and activated by another (the two-person rule sees
# the real logins on the shards), evaluations, an override found by run id,
# live returns, risk snapshots, a per-world read grant, and the bus consumed
# through the proxy (acked on the shard that delivered each event).  Checks:
#   - proxy/generated.sql is what gen.py makes of the current catalogue, and
#     every public wval function is proxied or deliberately not (by name and
#     arguments, against the proxy's catalogue);
#   - each world's rows live on exactly one shard, the one the proxy names;
#   - the chains verify on every shard (per world and globally);
#   - every cross-world read of the proxy (its views, the statistics,
#     invariants, snapshot stats) equals the union of the shards' answers;
#   - errors keep their SQLSTATE through the proxy (WV009, WV010, 22023);
#   - a world moved to another shard (export, import, placement) keeps its
#     chain and is served from there.
# Durability is not under test here: fsync off.
set -euo pipefail
: "${WVAL_BINDIR:?run through scripts/test.sh (--only cluster)}" "${WVAL_WORK:?}" "${WVAL_REPO:?}"
source "$WVAL_REPO/scripts/lib.sh"

DIR=$WVAL_WORK/cluster_sh
rm -rf "$DIR"
mkdir -p "$DIR"
unset PGDATABASE PGHOST PGPORT
export PGUSER=postgres
owner=$([ "$(id -u)" -eq 0 ] && echo postgres || id -un)
chown "$owner" "$DIR"
NODES=(proxy s0 s1 s2 s3)
SHARDDB=wval_shard
PROXYDB=wval_front
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "== [${SECONDS}s] $*"; }
cleanup() {
	local n
	for n in template "${NODES[@]/%//pgdata}"; do
		if [ -f "$DIR/$n/postmaster.pid" ]; then
			as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/$n" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	if [ "${ok:-no}" = yes ]; then rm -rf "$DIR"; fi
	return 0
}
trap cleanup EXIT

# One cluster made once and copied five times (initdb and CREATE EXTENSION
# four times over would cost more than the test): roles, a shard database
# with wval, a proxy database with wval_proxy.
ROLES="CREATE ROLE cl_gw LOGIN; CREATE ROLE cl_alice LOGIN; CREATE ROLE cl_bob LOGIN; CREATE ROLE cl_ana LOGIN; CREATE ROLE cl_admin LOGIN;"
GRANTS="GRANT wval_producer TO cl_gw; GRANT wval_validator TO cl_alice, cl_bob; GRANT wval_analyst TO cl_ana; GRANT wval_admin TO cl_admin;"
step "one cluster with wval and wval_proxy, copied five times"
as_pg "$WVAL_BINDIR/initdb" -N -D "$DIR/template" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
mkdir -p "$DIR/tsock"; chown "$owner" "$DIR/tsock"
as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/template" -l "$DIR/template.log" -w \
	-o "-c listen_addresses= -c unix_socket_directories=$DIR/tsock -c port=6539 -c fsync=off" start >/dev/null ||
	{ cat "$DIR/template.log"; fail "the template cluster did not start"; }
tpsql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$DIR/tsock" -p 6539 "$@"; }
tpsql -d postgres -c "CREATE DATABASE $SHARDDB" -c "CREATE DATABASE $PROXYDB"
tpsql -d $SHARDDB -c "SET client_min_messages = warning" -c "CREATE EXTENSION wval CASCADE" -c "SELECT wval_maintain()" \
	-c "$ROLES" -c "$GRANTS" >/dev/null
tpsql -d $PROXYDB -c "SET client_min_messages = warning" -c "CREATE EXTENSION wval_proxy CASCADE" >/dev/null
as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/template" -m fast -w stop >/dev/null
port=6540
for n in "${NODES[@]}"; do
	mkdir -p "$DIR/$n/sock"
	cp -a "$DIR/template" "$DIR/$n/pgdata"
	chown -R "$owner" "$DIR/$n"
	cat >>"$DIR/$n/pgdata/postgresql.conf" <<-EOF
		listen_addresses = ''
		unix_socket_directories = '$DIR/$n/sock'
		port = $port
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		shared_buffers = 16MB
		max_connections = 30
		log_min_messages = warning
	EOF
	echo "$port" >"$DIR/$n/port"
	as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/$n/pgdata" -l "$DIR/$n/server.log" -w start >/dev/null ||
		{ cat "$DIR/$n/server.log"; fail "cluster $n did not start"; }
	port=$((port + 1))
done
rm -rf "$DIR/template"
# on NODE [psql args...]: psql as postgres in the node's database
on() {
	local n=$1; shift
	local db=$SHARDDB; [ "$n" = proxy ] && db=$PROXYDB
	"$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$DIR/$n/sock" -p "$(cat "$DIR/$n/port")" -d "$db" "$@"
}
# as LOGIN [psql args...]: psql as LOGIN in the proxy database
as() {
	local u=$1; shift
	"$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$DIR/proxy/sock" -p "$(cat "$DIR/proxy/port")" -U "$u" -d $PROXYDB "$@"
}
shards() { echo s0 s1 s2 s3; }
# state LOGIN SQL: the SQLSTATE of the error SQL raises through the proxy ("ok" if none)
state() {
	local out
	out=$(as "$1" -v VERBOSITY=verbose -c "$2" 2>&1) && { echo ok; return; }
	sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -1
}

step "the proxy in front of the four shards"
conninfos=$(for n in $(shards); do printf "'host=%s port=%s dbname=%s'," "$DIR/$n/sock" "$(cat "$DIR/$n/port")" $SHARDDB; done)
on proxy -c "SELECT wval_proxy_set_shards(ARRAY[${conninfos%,}])" >/dev/null
[ "$(on proxy -c "SELECT extversion FROM pg_extension WHERE extname = 'wval_proxy'")" = \
  "$(on s0 -c "SELECT extversion FROM pg_extension WHERE extname = 'wval'")" ] || fail "wval_proxy and wval have different versions"

step "the proxy covers wval's API (proxy/gen.py --check)"
PGHOST=$DIR/s0/sock PGPORT=$(cat "$DIR/s0/port") PGUSER=postgres PGDATABASE=$SHARDDB \
	/usr/bin/python3 "$WVAL_REPO/proxy/gen.py" --check
# by name and arguments: what the shard has and the proxy lacks is exactly
# the list of functions not proxied (and the bus calls that gain a shard)
sigs="SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.proname LIKE 'wval\\_%' ORDER BY 1"
on s0 -c "$sigs" >"$DIR/shard.sigs"
on proxy -c "$sigs" >"$DIR/proxy.sigs"
comm -23 "$DIR/shard.sigs" "$DIR/proxy.sigs" | sed 's/(.*//' | sort -u >"$DIR/missing"
PGHOST=$DIR/s0/sock PGPORT=$(cat "$DIR/s0/port") PGUSER=postgres PGDATABASE=$SHARDDB \
	/usr/bin/python3 "$WVAL_REPO/proxy/gen.py" --not-proxied | sort -u >"$DIR/listed"
diff "$DIR/listed" "$DIR/missing" || fail "public wval functions missing on the proxy differ from gen.py's NOT_PROXIED (+ wval_ack, wval_nack)"
echo "not proxied: $(wc -l <"$DIR/missing") names; proxy functions: $(wc -l <"$DIR/proxy.sigs"), shard functions: $(wc -l <"$DIR/shard.sigs")"

step "worlds, policies, evaluations, overrides, live returns, snapshots through the proxy"
WORLDS=$(seq -f 'cw-%02g' 1 12)
wlist="ARRAY['$(echo $WORLDS | sed "s/ /','/g")']"
as cl_admin >/dev/null <<SQL
SELECT wval_world_upsert(w, 'medium', actor => 'dba') FROM unnest($wlist) w;
SELECT wval_world_grant('wval_producer', '*', 'write', 'dba');
SELECT wval_world_grant('wval_validator', '*', 'write', 'dba');
SELECT wval_world_grant('cl_ana', 'cw-01', 'read', 'dba');
SELECT wval_producer_register(w, 'risk-engine') FROM unnest($wlist) w;
SQL
as cl_alice -c "SELECT wval_policy_publish(w, (SELECT '{\"validation_profiles\": {\"backtest\": {\"performance\": {\"sharpe_min\": 0.5}}}}'::jsonb), 'alice', 'v1') FROM unnest($wlist) w" >/dev/null
# the two-person rule sees the logins on the shards: alice may not activate her own version
[ "$(state cl_alice "SELECT wval_policy_activate('cw-01', 1, 'alice', 'self')")" = WV009 ] || fail "self-activation: not WV009"
as cl_bob -c "SELECT wval_policy_activate(w, 1, 'bob', 'rollout') FROM unnest($wlist) w" >/dev/null
as cl_gw >/dev/null <<SQL
SELECT wval_subscribe('cl-consumer', ARRAY['evaluation_run_created', 'risk_snapshot_updated']);
SELECT wval_evaluate(w, 'strat-' || i, 'backtest',
       returns => ARRAY(SELECT CASE WHEN i = 3 THEN -0.006 ELSE 0.004 END + 0.01 * sin(k * i + length(w)) FROM generate_series(1, 36) k),
       context => jsonb_build_object('periods_per_year', 12))
FROM unnest($wlist) w, generate_series(1, 3) i;
SELECT wval_record_live_returns(w, 'strat-1', ARRAY[current_date - 2, current_date - 1], ARRAY[0.001, -0.002], 'gateway')
FROM unnest($wlist) w;
SELECT wval_snapshot_publish(w, jsonb_build_object('as_of', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       'version', 'v1', 'ttl_sec', 86400, 'weights', jsonb_build_object('strat-1', 0.5, 'strat-2', 0.5)), 'risk-engine', 'live')
FROM unnest($wlist) w;
SQL
[ "$(as cl_alice -c "SELECT status FROM wval_override((SELECT run_id FROM wval.latest_runs WHERE world_id = 'cw-05' AND strategy_id = 'strat-2'), 'approved', 'reviewed', 'alice')")" = approved ] ||
	fail "override through the proxy"
# a run id that no shard has: the shard's own WV010
[ "$(state cl_alice "SELECT wval_run_explain('00000000-0000-0000-0000-000000000000')")" = WV010 ] || fail "unknown run id: not WV010"
[ "$(state cl_gw "SELECT wval_ack('cl-consumer', 4, 1)")" = 22023 ] || fail "ack on shard 4 of 4: not 22023"
# wval_warm through the proxy: on the world's shard, which keeps nothing of it
warm_shard="s$(as cl_admin -c "SELECT wval_proxy_world_shard('cw-02')")"
runs_before=$(on "$warm_shard" -c "SELECT count(*) || '/' || (SELECT count(*) FROM wval.events) FROM wval.evaluation_runs")
[ "$(state cl_gw "SELECT wval_warm('cw-02', 64)")" = ok ] || fail "wval_warm through the proxy"
[ "$(state cl_gw "SELECT wval_warm('cw-no-such-world')")" = WV010 ] || fail "wval_warm of an unknown world: not WV010"
[ "$(on "$warm_shard" -c "SELECT count(*) || '/' || (SELECT count(*) FROM wval.events) FROM wval.evaluation_runs")" = "$runs_before" ] ||
	fail "wval_warm left runs or events on $warm_shard"

step "each world lives on exactly one shard, the one the proxy names"
as cl_admin -c "SELECT w || ' ' || wval_proxy_world_shard(w) FROM unnest($wlist) w" | sort >"$DIR/placement"
: >"$DIR/found"
i=0
for n in $(shards); do
	on "$n" -c "
	SELECT DISTINCT world_id || ' $i' FROM (
	    SELECT world_id FROM wval.worlds UNION ALL SELECT world_id FROM wval.policy_versions
	    UNION ALL SELECT world_id FROM wval.evaluation_runs UNION ALL SELECT world_id FROM wval.rule_results
	    UNION ALL SELECT world_id FROM wval.overrides UNION ALL SELECT world_id FROM wval.risk_snapshots
	    UNION ALL SELECT world_id FROM wval.live_returns UNION ALL SELECT world_id FROM wval.world_grants WHERE world_id <> '*'
	    UNION ALL SELECT world_id FROM wval.events WHERE world_id IS NOT NULL) x" >>"$DIR/found"
	i=$((i + 1))
done
sort -o "$DIR/found" "$DIR/found"
diff "$DIR/placement" "$DIR/found" || fail "rows of a world on another shard than the proxy's, or on several"
used=$(cut -d' ' -f2 "$DIR/placement" | sort -u | wc -l)
echo "12 worlds on $used shards: $(cut -d' ' -f2 "$DIR/placement" | sort | uniq -c | tr -s ' ' | paste -sd,)"
[ "$used" -eq 4 ] || fail "the worlds do not spread over all four shards"
runs=0
for n in $(shards); do runs=$((runs + $(on "$n" -c "SELECT count(*) FROM wval.evaluation_runs"))); done
[ "$runs" -eq 36 ] || fail "expected 36 runs on the shards, found $runs"

step "chains verify on every shard, and through the proxy"
for n in $(shards); do
	[ "$(on "$n" -c "SELECT bool_and(wval_verify_chain(w)) AND wval_verify_chain(NULL) FROM (SELECT world_id FROM wval.worlds) x(w)")" = t ] ||
		fail "a chain of $n does not verify"
done
[ "$(as cl_ana -c "SELECT wval_verify_chain(NULL)")" = t ] || fail "wval_verify_chain(NULL) through the proxy"
[ "$(as cl_ana -c "SELECT wval_verify_chain('cw-01')")" = t ] || fail "wval_verify_chain('cw-01') through the proxy"

step "the bus through the proxy: events of every shard, acked where delivered"
as cl_gw >"$DIR/consumed" <<'SQL'
CREATE TEMP TABLE got (shard int, event_id bigint, type text, world_id text);
DO $$
DECLARE k int;
BEGIN
    LOOP
        WITH e AS (SELECT shard, event_id, type, world_id FROM wval_consume('cl-consumer', 7)),
             i AS (INSERT INTO got SELECT * FROM e RETURNING *)
        SELECT count(*) INTO k FROM i;
        EXIT WHEN k = 0;
        PERFORM wval_ack('cl-consumer', g.shard, array_agg(g.event_id)) FROM got g GROUP BY g.shard;
    END LOOP;
END $$;
SELECT type || ' ' || count(*) || ' ' || count(DISTINCT (shard, event_id)) FROM got GROUP BY type ORDER BY type;
SELECT 'shards ' || count(DISTINCT shard) FROM got;
SQL
cat "$DIR/consumed"
grep -qx 'evaluation_run_created 36 36' "$DIR/consumed" || fail "not every evaluation event consumed once through the proxy"
grep -qx 'risk_snapshot_updated 12 12' "$DIR/consumed" || fail "not every snapshot event consumed once through the proxy"
grep -qx 'shards 4' "$DIR/consumed" || fail "events did not come from all four shards"
for n in $(shards); do
	[ "$(on "$n" -c "SELECT count(*) FROM wval.deliveries WHERE group_name = 'cl-consumer' AND done_at IS NULL")" = 0 ] ||
		fail "deliveries of $n left unacked"
done

step "cross-world reads through the proxy equal the union of the shards' answers"
# union QUERY_ON_SHARD QUERY_ON_PROXY: the same rows (as sorted jsonb), as the superuser
union() {
	local n
	for n in $(shards); do on "$n" -c "$1"; done | sort >"$DIR/u.shards"
	on proxy -c "$2" | sort >"$DIR/u.proxy"
	cmp -s "$DIR/u.shards" "$DIR/u.proxy" || { diff "$DIR/u.shards" "$DIR/u.proxy" | head; return 1; }
	echo "  $(wc -l <"$DIR/u.proxy") rows: $3"
}
for v in $(on s0 -c "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'wval' AND c.relkind = 'v' AND has_table_privilege('wval_analyst', c.oid, 'SELECT') ORDER BY 1"); do
	# values that move with the clock between the two reads are left out
	# (ages, lags and their gauges); all else compared
	norm="to_jsonb(v) - '{shard,lag,oldest_unacked_age}'::text[]
	      - CASE WHEN to_jsonb(v)->>'name' IN ('wval_bus_oldest_unacked_seconds', 'wval_snapshot_lag_seconds') THEN 'value' ELSE '' END"
	union "SELECT ($norm)::text FROM wval.$v v" "SELECT ($norm)::text FROM wval.$v v" "wval.$v" ||
		fail "wval.$v through the proxy differs from the union of the shards"
done
union "SELECT to_jsonb(s)::text FROM wval_check_invariants(NULL) s" "SELECT to_jsonb(s)::text FROM wval_check_invariants(NULL) s" wval_check_invariants ||
	fail "wval_check_invariants"
union "SELECT to_jsonb(s)::text FROM wval_snapshot_stats(NULL) s" "SELECT to_jsonb(s)::text FROM wval_snapshot_stats(NULL) s" wval_snapshot_stats ||
	fail "wval_snapshot_stats"
union "SELECT to_jsonb(s)::text FROM wval_validation_slo() s" "SELECT to_jsonb(s)::text FROM wval_validation_slo() s" wval_validation_slo ||
	fail "wval_validation_slo"
# statistics: the shards' counts summed per rule and reason code
for n in $(shards); do on "$n" -F' ' -c "SELECT rule, reason_code, results, failed, warned, missing, errored FROM wval_rule_failure_stats()"; done |
	awk '{k = $1 " " $2; for (i = 3; i <= 7; i++) s[k, i] += $i; keys[k] = 1}
	     END {for (k in keys) print k, s[k, 3], s[k, 4], s[k, 5], s[k, 6], s[k, 7]}' | sort >"$DIR/rfs.shards"
on proxy -F' ' -c "SELECT rule, reason_code, results, failed, warned, missing, errored FROM wval_rule_failure_stats()" | sort >"$DIR/rfs.proxy"
[ -s "$DIR/rfs.proxy" ] || fail "wval_rule_failure_stats through the proxy is empty"
cmp -s "$DIR/rfs.proxy" "$DIR/rfs.shards" || { diff "$DIR/rfs.shards" "$DIR/rfs.proxy" | head; fail "wval_rule_failure_stats through the proxy is not the shards' sum"; }
echo "  $(wc -l <"$DIR/rfs.proxy") rules: wval_rule_failure_stats (summed)"
step "moving a world to another shard: export, import, placement"
from=$(as cl_admin -c "SELECT wval_proxy_world_shard('cw-03')")
to=$(( (from + 1) % 4 ))
src=s$from dst=s$to
# (the runs carry their rule results: wval.rule_results derives its rows from results)
on "$src" -c "SELECT jsonb_agg(to_jsonb(r) - 'chain_seq' - 'prev_hash' - 'row_hash' ORDER BY r.created_at, r.chain_seq)
              FROM wval.evaluation_runs r WHERE r.world_id = 'cw-03'" >"$DIR/export.json"
on "$dst" >/dev/null <<SQL
SELECT wval_world_upsert('cw-03', 'medium', actor => 'dba');
SELECT wval_policy_publish('cw-03', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}', 'alice', 'moved');
SET SESSION AUTHORIZATION cl_bob;
SELECT wval_policy_activate('cw-03', 1, 'bob', 'moved');
SQL
[ "$(as cl_admin -c "SELECT wval_proxy_place('cw-03', $to, 'moved from shard $from')")" = "$to" ] || fail "placement"
imported=$(as cl_admin -c "SELECT wval_import_runs(\$j\$$(cat "$DIR/export.json")\$j\$::jsonb)")
[ "$imported" = 3 ] || fail "import of cw-03 through the proxy imported $imported runs, not 3"
as cl_gw -c "SELECT wval_evaluate('cw-03', 'strat-9', returns => ARRAY[0.01, 0.02, -0.01, 0.015, 0.007, 0.012])" >/dev/null
[ "$(on "$dst" -c "SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'cw-03'")" = 4 ] || fail "cw-03 on $dst: not 3 imported + 1 new run"
[ "$(on "$dst" -c "SELECT wval_verify_chain('cw-03')")" = t ] || fail "chain of cw-03 on $dst after the move"
[ "$(as cl_ana -c "SELECT wval_verify_chain('cw-03')")" = t ] || fail "chain of cw-03 through the proxy after the move"
[ "$(on "$dst" -c "SELECT string_agg(md5(metrics::text) || status, ',' ORDER BY chain_seq) FROM wval.evaluation_runs WHERE world_id = 'cw-03' AND strategy_id <> 'strat-9'")" = \
  "$(on "$src" -c "SELECT string_agg(md5(metrics::text) || status, ',' ORDER BY chain_seq) FROM wval.evaluation_runs WHERE world_id = 'cw-03'")" ] ||
	fail "the moved runs differ (metrics, status, order)"
rr="SELECT count(*) || ':' || md5(string_agg(concat_ws('|', rr.strategy_id, rr.stage, rr.rule, rr.layer, rr.status, rr.severity,
                     rr.owner, rr.reason_code, rr.reason, rr.tags::text, rr.details::text, rr.created_at), ',' ORDER BY e.chain_seq, rr.rule))
    FROM wval.rule_results rr JOIN wval.evaluation_runs e ON e.run_id = rr.run_id WHERE rr.world_id = 'cw-03'"
[ "$(on "$dst" -c "$rr AND rr.strategy_id <> 'strat-9'")" = "$(on "$src" -c "$rr")" ] &&
	[ "$(on "$src" -c "SELECT count(*) FROM wval.rule_results WHERE world_id = 'cw-03'")" -gt 0 ] ||
	fail "the moved runs' rule results differ"
# a mixed import is refused by the proxy (one world per call)
[ "$(state cl_admin "SELECT wval_import_runs('[{\"world_id\": \"cw-01\"}, {\"world_id\": \"cw-02\"}]')")" = 22023 ] ||
	fail "an import of two worlds through the proxy: not 22023"
echo "cw-03 moved from shard $from to shard $to: 3 runs imported in chain order, a new run chained after them"
step "row-level security per world through the proxy"
# analysts read every world by default (wval_analyst's grant of '*'); the
# revoke of '*' goes to every shard, and then cl_ana reads only cw-01
[ "$(as cl_admin -c "SELECT wval_world_revoke('wval_analyst', '*', 'dba')")" = t ] || fail "revoke of * through the proxy"
for n in $(shards); do
	[ "$(on "$n" -c "SELECT count(*) FROM wval.current_world_grants WHERE role_name = 'wval_analyst' AND world_id = '*' AND privilege <> 'none'")" = 0 ] ||
		fail "the revoke of * did not reach $n"
done
seen=$(as cl_ana -c "SELECT string_agg(DISTINCT world_id, ',') FROM wval.latest_runs")
[ "$seen" = cw-01 ] || fail "an analyst granted cw-01 reads through the proxy the runs of '$seen', not of cw-01"
st=$(state cl_ana "SELECT wval_live_report('cw-02')")
[ "$st" = WV010 ] || [ "$st" = 42501 ] || fail "an analyst granted cw-01 reads cw-02's live report ($st)"

[ -n "${CLUSTER_KEEP:-}" ] && { echo "kept: $DIR"; sleep "$CLUSTER_KEEP"; }
ok=yes
echo "ok: 12 worlds on 4 shards through wval_proxy (${SECONDS}s)"
