#!/usr/bin/env bash
# Read replicas and failover (docs/scale-out.md), on two clusters of its own:
#   1. a streaming standby (pg_basebackup -R) of a wval primary answers every
#      read entry point the docs list under "read on a standby" (the test
#      fails when the docs name a function this script does not call);
#   2. with synchronous replication (synchronous_commit = on,
#      synchronous_standby_names = the standby), sessions evaluate on the
#      primary while it is killed with SIGKILL (the postmaster and all its
#      children at once); the standby is promoted, and every run whose
#      COMMIT the client saw is on the new primary, with its
#      evaluation_run_created event, and every chain verifies.
# fsync = off is sound here: SIGKILL ends processes, not the kernel, so what
# was written reaches the files (as in crash_load.sh); what is under test is
# that an acknowledged commit reached the standby, which synchronous
# replication guarantees before the client hears of it.
set -euo pipefail
: "${WVAL_BINDIR:?run through scripts/test.sh (--only replica)}" "${WVAL_WORK:?}" "${WVAL_REPO:?}"
source "$WVAL_REPO/scripts/lib.sh"

DIR=$WVAL_WORK/replica_sh
rm -rf "$DIR"
mkdir -p "$DIR/sock"
owner=$([ "$(id -u)" -eq 0 ] && echo postgres || id -un)
chown "$owner" "$DIR" "$DIR/sock"
unset PGDATABASE PGHOST PGPORT
export PGUSER=postgres
DB=wval_rep
PPORT=6560 SPORT=6561
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "== [${SECONDS}s] $*"; }
cleanup() {
	local d
	for d in primary standby; do
		if [ -f "$DIR/$d/postmaster.pid" ]; then
			as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/$d" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	if [ "${ok:-no}" = yes ]; then rm -rf "$DIR"; fi
	return 0
}
trap cleanup EXIT
p() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$DIR/sock" -p "$PPORT" -d $DB "$@"; }
s() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$DIR/sock" -p "$SPORT" -d $DB "$@"; }

step "primary with synchronous replication to standby1"
as_pg "$WVAL_BINDIR/initdb" -N -D "$DIR/primary" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$DIR/primary/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$DIR/sock'
port = $PPORT
fsync = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 30
synchronous_commit = on
log_min_messages = warning
EOF
as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null ||
	{ cat "$DIR/primary.log"; fail "the primary did not start"; }
# synchronous_standby_names is set once the standby runs (commits would wait for it)
"$WVAL_BINDIR/psql" -X -q -At -h "$DIR/sock" -p $PPORT -d postgres -c "CREATE DATABASE $DB"
p >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wval CASCADE;
SELECT wval_maintain();
CREATE ROLE rep_ana LOGIN IN ROLE wval_analyst;
CREATE ROLE rep_gw LOGIN IN ROLE wval_producer;
SELECT wval_world_upsert(w, 'medium', actor => 'dba') FROM unnest(ARRAY['rep-w1', 'rep-w2', 'rep-w3']) w;
SELECT wval_policy_publish(w, (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice') FROM unnest(ARRAY['rep-w1', 'rep-w2', 'rep-w3']) w;
SELECT wval_producer_register('rep-w1', 'risk-engine');
SELECT wval_snapshot_publish('rep-w1', jsonb_build_object('as_of', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       'version', 'v1', 'ttl_sec', 86400, 'weights', '{"carry-1": 0.6, "trend-2": 0.4}'::jsonb,
       'covariance', '{"carry-1,carry-1": 0.0004, "trend-2,trend-2": 0.0009, "carry-1,trend-2": 0.0001}'::jsonb), 'risk-engine', 'live');
SQL
# activation by a second login (the two-person rule), then some history
p -c "CREATE ROLE rep_bob LOGIN IN ROLE wval_validator" \
	-c "SET SESSION AUTHORIZATION rep_bob" \
	-c "SELECT wval_policy_activate(w, 1, 'bob', 'rollout') FROM unnest(ARRAY['rep-w1', 'rep-w2', 'rep-w3']) w" >/dev/null
p >/dev/null <<'SQL'
SELECT wval_evaluate('rep-w1', s, 'backtest',
       returns => ARRAY(SELECT 0.004 + 0.01 * sin(k * length(s)) FROM generate_series(1, 36) k)::float8[],
       metrics => '{"sample": {"n_trades_total": 1400}, "risk": {"adv_utilization_p95": 0.08, "participation_rate_p95": 0.04}}',
       context => jsonb_build_object('periods_per_year', 12, 'run_id', s || '-1'))
FROM unnest(ARRAY['carry-1', 'trend-2', 'mr-3']) s;
SELECT wval_record_live_returns('rep-w1', 'carry-1', ARRAY[current_date - 2, current_date - 1], ARRAY[0.001, -0.002], 'gateway');
SQL

step "streaming standby (pg_basebackup -R)"
as_pg "$WVAL_BINDIR/pg_basebackup" -h "$DIR/sock" -p $PPORT -U postgres -D "$DIR/standby" -R -X stream -c fast \
	-d "application_name=standby1" >/dev/null
sed -i "s/^port = $PPORT/port = $SPORT/" "$DIR/standby/postgresql.conf"
as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w start >/dev/null ||
	{ cat "$DIR/standby.log"; fail "the standby did not start"; }
p -c "ALTER SYSTEM SET synchronous_standby_names = 'standby1'" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 100); do
	[ "$(p -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")" = sync ] && break
	sleep 0.2
done
[ "$(p -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")" = sync ] ||
	fail "standby1 is not a synchronous standby"
[ "$(s -c "SELECT pg_is_in_recovery()")" = t ] || fail "the standby is not in recovery"
# a synchronous commit is visible on the standby once it is replayed
p -c "SELECT wval_override(run_id, 'approved', 'reviewed', 'carol') FROM wval.evaluation_runs WHERE strategy_id = 'mr-3'" >/dev/null
lsn=$(p -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 100); do
	[ "$(s -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
	sleep 0.1
done

step "every read entry point of docs/scale-out.md answers on the standby"
# the read list of the docs: every wval name in the table under
# "read on a standby" must be called below
names=$(sed -n '/^| read on a standby/,/^$/p' "$WVAL_REPO/docs/scale-out.md" | grep -o '`wval[_.][a-z_]*' | tr -d '`' | sort -u)
[ -n "$names" ] || fail "docs/scale-out.md has no table \"read on a standby\""
for n in $names; do
	# tables and views are all read below, from the catalogue
	[[ $n == wval.* ]] && [ "$(s -c "SELECT to_regclass('$n') IS NOT NULL")" = t ] && continue
	grep -q "$n(" "$0" || fail "docs/scale-out.md lists $n as a standby read, but replica.sh does not call it"
done
echo "docs list $(echo $names | wc -w) read functions; tables and views of schema wval are read from the catalogue"
# every table and view of schema wval an analyst may read, as the analyst
s -c "SELECT format('SELECT %L || '' '' || count(*) FROM wval.%I;', c.relname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'wval' AND c.relkind IN ('r', 'v', 'p') AND NOT c.relispartition
        AND has_table_privilege('wval_analyst', c.oid, 'SELECT') ORDER BY 1" >"$DIR/relations.sql"
s -U rep_ana -f "$DIR/relations.sql" >"$DIR/relations.out" || fail "reading the relations of schema wval on the standby"
echo "$(wc -l <"$DIR/relations.out") tables and views read on the standby"
grep -qx 'latest_runs 3' "$DIR/relations.out" || fail "wval.latest_runs on the standby: $(grep latest_runs "$DIR/relations.out")"
run=$(s -c "SELECT run_id FROM wval.evaluation_runs WHERE strategy_id = 'carry-1'")
s -U rep_ana >"$DIR/reads.out" <<SQL
SELECT 'verify ' || wval_verify_chain('rep-w1') || wval_verify_chain(NULL);
SELECT 'problems ' || count(*) FROM wval_chain_problems('rep-w1');
SELECT 'explain ' || (length(wval_run_explain('$run')) > 0);
SELECT 'report ' || (length(wval_report('$run')) > 0) || (length(wval_report('$run', 'html')) > 0);
SELECT 'ruleset ' || (wval_ruleset('rep-w1') IS NOT NULL);
SELECT 'active ' || wval_active_policy_version('rep-w1');
SELECT 'check ' || (wval_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), '{"returns": {"sharpe": 1.2}}')->>'status' IS NOT NULL);
SELECT 'metrics ' || (wval_metrics(ARRAY[0.01, -0.02, 0.015, 0.003]::float8[]) ? 'returns');
SELECT 'aggregates ' || (wval_metrics_agg(r) IS NOT NULL) || (wval_sharpe(r) IS NOT NULL) || (wval_max_drawdown(r) IS NOT NULL)
       FROM unnest(ARRAY[0.01, -0.02, 0.015, 0.003]::float8[]) r;
SELECT 'psr ' || (wval_psr(1.0, 60, 0, 3) BETWEEN 0 AND 1) || (wval_dsr(1.0, 60, 0, 3, 10, 0.1) BETWEEN 0 AND 1);
SELECT 'rule_failure_stats ' || (count(*) >= 0) FROM wval_rule_failure_stats();
SELECT 'validation_slo ' || count(*) FROM wval_validation_slo();
SELECT 'failure_rate ' || (count(*) >= 0) FROM wval_failure_rate();
SELECT 'run_history ' || count(*) FROM wval_run_history('rep-w1', 'carry-1');
SELECT 'snapshot ' || (wval_snapshot_latest('rep-w1')->>'version') || (wval_snapshot_as_of('rep-w1', now())->>'version')
       || (wval_snapshot('rep-w1', 'v1')->>'version');
SELECT 'portfolio ' || (wval_portfolio_risk('rep-w1') IS NOT NULL);
SELECT 'snapshot_stats ' || (count(*) > 0) FROM wval_snapshot_stats('rep-w1');
SELECT 'live_report ' || (length(wval_live_report('rep-w1')) > 0);
SELECT 'invariants ' || count(*) FROM wval_check_invariants();
SELECT 'policy_diff ' || (wval_policy_diff('rep-w1', 1, (SELECT policy FROM wval.sample_policies WHERE name = 'sample')) IS NOT NULL);
SELECT 'scenario_check ' || (wval_scenario_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'good') IS NOT NULL);
SELECT 'prometheus ' || (wval_metrics_prometheus() LIKE '%wval_evaluations_total%');
SQL
cat "$DIR/reads.out"
cat >"$DIR/reads.expected" <<'EOF'
verify truetrue
problems 0
explain true
report truetrue
ruleset true
active 1
check true
metrics true
aggregates truetruetrue
psr truetrue
rule_failure_stats true
validation_slo 1
failure_rate true
run_history 1
snapshot v1v1v1
portfolio true
snapshot_stats true
live_report true
invariants 0
policy_diff true
scenario_check true
prometheus true
EOF
diff "$DIR/reads.expected" "$DIR/reads.out" || fail "a read entry point answers differently on the standby"
# and the standby refuses writes, with PostgreSQL's read-only error
out=$(s -v VERBOSITY=verbose -c "SELECT wval_evaluate('rep-w1', 'x', returns => ARRAY[0.01, 0.02]::float8[])" 2>&1) && fail "a write succeeded on the standby"
grep -q '25006' <<<"$out" || fail "a write on the standby: not 25006: $out"

step "failover: SIGKILL of the primary under evaluate load, promotion"
PGHOST=$DIR/sock PGPORT=$PPORT PGDATABASE=$DB PGUSER=rep_gw /usr/bin/python3 "$WVAL_REPO/test/sessions/replica_load.py" \
	--log "$DIR/acked.log" --seconds 60 --sessions 3 --worlds rep-w1,rep-w2,rep-w3 >"$DIR/load.out" 2>&1 &
load=$!
touch "$DIR/acked.log"
for _ in $(seq 1 200); do
	[ "$(wc -l <"$DIR/acked.log")" -ge 30 ] && break
	kill -0 $load 2>/dev/null || break
	sleep 0.1
done
pm=$(head -1 "$DIR/primary/postmaster.pid")
# the postmaster and every child at once (by process id, not by name)
kill -9 "$pm" $(pgrep -P "$pm") 2>/dev/null || true
wait $load || true
cat "$DIR/load.out"
n=$(wc -l <"$DIR/acked.log")
[ "$n" -ge 30 ] || fail "only $n runs acknowledged before the kill: the load did not run"
as_pg "$WVAL_BINDIR/pg_ctl" -D "$DIR/standby" -w promote >/dev/null || fail "promotion failed"
[ "$(s -c "SELECT pg_is_in_recovery()")" = f ] || fail "the promoted standby is still in recovery"

step "every acknowledged run is on the new primary, with its event; chains verify"
s >"$DIR/failover.out" <<SQL
CREATE TEMP TABLE acked (run_id uuid, world_id text);
\copy acked FROM '$DIR/acked.log' WITH (DELIMITER ' ')
SELECT 'acknowledged ' || count(*) FROM acked;
SELECT 'missing runs ' || count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM wval.evaluation_runs r WHERE r.run_id = a.run_id AND r.world_id = a.world_id);
SELECT 'missing events ' || count(*) FROM acked a
WHERE NOT EXISTS (SELECT 1 FROM wval.events e WHERE e.type = 'evaluation_run_created' AND e.world_id = a.world_id
                    AND e.payload->'data'->>'run_id' = a.run_id::text);
SELECT 'runs of the load on the new primary ' || count(*) FROM wval.evaluation_runs WHERE strategy_id LIKE 'load-%';
SELECT 'chains ' || bool_and(wval_verify_chain(w.world_id)) || wval_verify_chain(NULL) FROM wval.worlds w;
SQL
cat "$DIR/failover.out"
grep -qx 'missing runs 0' "$DIR/failover.out" || fail "acknowledged runs lost in the failover"
grep -qx 'missing events 0' "$DIR/failover.out" || fail "acknowledged runs without their event after the failover"
grep -qx 'chains truetrue' "$DIR/failover.out" || fail "a chain does not verify on the new primary"
# the new primary takes writes, and the chain goes on
s -c "ALTER SYSTEM SET synchronous_standby_names = ''" -c "SELECT pg_reload_conf()" >/dev/null
s -c "SELECT wval_evaluate('rep-w2', 'after-failover', returns => ARRAY[0.01, 0.02, -0.005, 0.012]::float8[])" >/dev/null
[ "$(s -c "SELECT wval_verify_chain('rep-w2')")" = t ] || fail "chain of rep-w2 after a write on the new primary"
ok=yes
echo "ok: reads answer on the standby; $n acknowledged runs survived the failover (${SECONDS}s)"
