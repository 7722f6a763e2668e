#!/usr/bin/env bash
# scripts/test.sh: sets everything up and runs the whole test suite.
#
#   1. installs the Debian packages it needs (apt-get),
#   2. builds wval with -Wall -Wextra -Werror,
#   3. installs it into a private copy of PostgreSQL 15 (make install DESTDIR),
#   4. starts a throw-away cluster with pg_cron preloaded,
#   5. runs every pg_regress file (sql/ -> expected/), every pgTAP file
#      (test/*.sql, pg_prove) and every multi-session script (test/sessions/),
#   6. exits non-zero when anything failed.
#
# Usage: scripts/test.sh [--keep] [--only REGEX]
#   --keep        leaves the work directory
#   --only REGEX  runs only the files whose name (without extension) matches
#                 REGEX (grep -E), e.g. --only 'security|evaluate'

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep=no
only=.
while [ $# -gt 0 ]; do
	case $1 in
	--keep) keep=yes ;;
	--only) only=$2; shift ;;
	*) die "usage: scripts/test.sh [--keep] [--only REGEX]" ;;
	esac
	shift
done
# pick FILE...: the files whose base name (without extension) matches --only.
pick() {
	local f
	for f in "$@"; do
		[ -e "$f" ] || continue
		basename "$f" | sed 's/\.[a-z]*$//' | grep -Eq -- "$only" && echo "$f"
	done
	return 0
}

ensure_packages
build

WORK=$(mktemp -d /tmp/wval-test.XXXXXX)
chmod 755 "$WORK"
STAGE=$WORK/stage
BIN=$STAGE$PG_BINDIR
DATA=$WORK/cluster
TAPDB=wval_tap

cleanup() {
	stop_cluster "$BIN" "$DATA"
	if [ "$keep" = no ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

stage "$STAGE"
start_cluster "$BIN" "$DATA" "$TAPDB" "fsync = off
synchronous_commit = off
full_page_writes = off"

export PGHOST=$DATA/sock PGPORT=5432 PGUSER=postgres
export WVAL_BINDIR=$BIN WVAL_REPO=$REPO WVAL_WORK=$WORK
failed=()

# pg_regress and the isolation specs run through the Makefile's own
# installcheck target (REGRESS / ISOLATION), against this cluster and the
# private copy's psql, with the --only selection passed as REGRESS and
# ISOLATION; results go to the work directory, not the checkout.
# installcheck NAME REGRESS ISOLATION: one make installcheck, output in $WORK/NAME.
installcheck() {
	local name=$1 regress=$2 isolation=$3
	mkdir -p "$WORK/$name"
	make -C "$REPO" -s installcheck PG_CONFIG="$PG_CONFIG" bindir="$BIN" \
		REGRESS="$regress" ISOLATION="$isolation" \
		EXTRA_REGRESS_OPTS="--outputdir=$WORK/$name"
}
tests=$(cd "$REPO/sql" && pick *.sql | sed 's/\.sql$//')
if [ -n "$tests" ]; then
	log "pg_regress (make installcheck REGRESS=...)"
	if ! installcheck regress "$(echo $tests)" ""; then
		cat "$WORK/regress/regression.diffs" >&2 || true
		failed+=(pg_regress)
	fi
fi

# Isolation specs (test/isolation/specs/*.spec -> test/isolation/expected/):
# interleavings of concurrent sessions, run by PostgreSQL's own
# pg_isolation_regress in a database of their own (isolation_regression).
specs=$(cd "$REPO/test/isolation/specs" 2>/dev/null && pick *.spec | sed 's/\.spec$//')
if [ -n "$specs" ]; then
	log "isolation specs (make installcheck ISOLATION=...)"
	if ! installcheck isolation "" "$(echo $specs)"; then
		cat "$WORK/isolation/regression.diffs" >&2 || true
		failed+=(isolation)
	fi
fi

log "pgTAP (pg_prove)"
"$BIN/psql" -q -X -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $TAPDB" >/dev/null
"$BIN/psql" -q -X -v ON_ERROR_STOP=1 -d $TAPDB >/dev/null <<-'SQL'
	SET client_min_messages = warning;
	CREATE EXTENSION pgtap;
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION pgcrypto;
	CREATE EXTENSION wval;
SQL
tapfiles=$(pick "$REPO"/test/*.sql "$REPO"/test/security/*.sql)
if [ -n "$tapfiles" ] && ! pg_prove --failures -d $TAPDB $tapfiles; then
	failed+=(pgTAP)
fi

log "multi-session scripts"
export PGDATABASE=$TAPDB
for s in $(pick "$REPO"/test/sessions/*.sh); do
	name=$(basename "$s")
	if bash "$s" >"$WORK/$name.log" 2>&1; then
		echo "ok - $name"
	else
		echo "not ok - $name"
		sed 's/^/    /' "$WORK/$name.log"
		failed+=("$name")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	log "FAILED: ${failed[*]}"
	keep=yes
	exit 1
fi
log "all tests passed"
