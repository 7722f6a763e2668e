#!/usr/bin/env bash
# scripts/demo.sh: sets everything up and runs the demo.
#
#   1. installs the Debian packages it needs (apt-get),
#   2. builds wval and installs it into the system's PostgreSQL 15 (make install),
#   3. starts a throw-away cluster in /tmp/wval-demo (pg_cron preloaded),
#   4. creates the extension, a world, publishes and activates a policy,
#      evaluates sample strategies and prints the outcome (scripts/demo.sql).
#
# Running it again replaces the previous demo cluster.  The cluster keeps
# running afterwards so that you can look around; the last lines say how to
# connect and how to stop it.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO=${WVAL_DEMO_DIR:-/tmp/wval-demo}
DB=wval_demo

ensure_packages
build
log "installing wval into PostgreSQL $PG_MAJOR (make install)"
as_root make -C "$REPO" -s PG_CONFIG="$PG_CONFIG" install >/dev/null

if [ -d "$DEMO" ]; then
	log "removing the previous demo cluster in $DEMO"
	stop_cluster "$PG_BINDIR" "$DEMO"
	rm -rf "$DEMO"
fi
log "starting a throw-away cluster in $DEMO"
start_cluster "$PG_BINDIR" "$DEMO" "$DB"

export PGHOST=$DEMO/sock PGPORT=5432 PGUSER=postgres
"$PG_BINDIR/psql" -q -X -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB" >/dev/null
log "running scripts/demo.sql"
"$PG_BINDIR/psql" -X -v ON_ERROR_STOP=1 -d $DB -f "$REPO/scripts/demo.sql"

cat <<EOM

The demo cluster is still running:
  connect:  $PG_BINDIR/psql -h $DEMO/sock -U postgres $DB
  stop:     runuser -u postgres -- $PG_BINDIR/pg_ctl -D $DEMO/pgdata stop
EOM
