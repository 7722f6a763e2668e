#!/usr/bin/env bash
# Crash under load: SIGKILLs of client backends and of the postmaster while
# sessions evaluate, record live returns and consume the bus lose nothing
# acknowledged and duplicate nothing (crash_load.py does the load and the
# checks).  Killing the suite's shared cluster would disturb the other tests,
# so this starts a cluster of its own under $WVAL_WORK with the suite's
# binaries ($WVAL_BINDIR, wval installed) and pg_cron preloaded.
#
# fsync = off is sound here: SIGKILL ends processes, not the kernel, so what
# was written reaches the files; synchronous_commit stays on (an
# acknowledged commit must be in the WAL the server wrote before answering).
#
# Longer runs: CRASH_SECONDS (load, default 30), CRASH_KILLS (default 6),
# CRASH_EVALUATORS (default 4), CRASH_SEED (default 1), e.g.
#   CRASH_SECONDS=600 CRASH_KILLS=40 scripts/test.sh --only crash_load
set -euo pipefail
: "${WVAL_BINDIR:?run through scripts/test.sh (--only crash_load)}" "${WVAL_WORK:?}" "${WVAL_REPO:?}"
source "$WVAL_REPO/scripts/lib.sh"

DIR=$WVAL_WORK/crash_load
DB=crash
ROLE=crash_producer
rm -rf "$DIR"
unset PGDATABASE
cleanup() {
	stop_cluster "$WVAL_BINDIR" "$DIR"
	if [ "${ok:-no}" = yes ]; then rm -rf "$DIR/pgdata"; fi
}
trap cleanup EXIT

start_cluster "$WVAL_BINDIR" "$DIR" "$DB" "fsync = off
log_min_messages = log
log_line_prefix = '%m [%p] '
max_connections = 40"
export PGHOST=$DIR/sock PGPORT=5432 PGUSER=postgres
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

psql -d postgres -c "CREATE DATABASE $DB"
psql -d "$DB" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION wval CASCADE;
CREATE EXTENSION amcheck;
SELECT wval_maintain();
CREATE ROLE $ROLE LOGIN IN ROLE wval_producer;
SELECT wval_world_upsert(w, actor => 'dba') FROM unnest(ARRAY['crash-w1', 'crash-w2', 'crash-w3', 'crash-w4']) w;
SELECT wval_policy_publish(w, (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice')
FROM unnest(ARRAY['crash-w1', 'crash-w2', 'crash-w3', 'crash-w4']) w;
SELECT wval_policy_activate(w, 1, 'bob', 'crash test') FROM unnest(ARRAY['crash-w1', 'crash-w2', 'crash-w3', 'crash-w4']) w;
SQL

py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
PGDATABASE=$DB $py "$WVAL_REPO/test/sessions/crash_load.py" \
	--pgdata "$DIR/pgdata" --bindir "$WVAL_BINDIR" --log "$DIR/server.log" --user "$ROLE" \
	--seconds "${CRASH_SECONDS:-30}" --kills "${CRASH_KILLS:-6}" \
	--evaluators "${CRASH_EVALUATORS:-4}" --seed "${CRASH_SEED:-1}"
ok=yes
