#!/usr/bin/env bash
# Docs that run: executes every ```sql, ```python and ```sh block of README.md
# and docs/*.md (test/docs/run.py says how) on a throw-away cluster of its
# own, so that pages which create pg_cron can be given pg_cron's database
# (cron.database_name is set per page and the server restarted).
#
# Under scripts/test.sh it uses the suite's private PostgreSQL copy
# ($WVAL_BINDIR); run by hand it builds and stages its own:
#   test/sessions/docs.sh [PAGE...]      e.g. test/sessions/docs.sh docs/live.md
# A page that ran the test suite would run this script again, and so on.
[ -z "${WVAL_DOCS_RUNNING:-}" ] || { echo "docs.sh: called from a doc snippet" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

if [ -n "${WVAL_BINDIR:-}" ]; then
	BIN=$WVAL_BINDIR
	WORK=$(mktemp -d "${WVAL_WORK:-/tmp}/docs.XXXXXX")
	chmod 755 "$WORK"
	trap 'stop_cluster "$BIN" "$WORK/cluster"' EXIT
	start_cluster "$BIN" "$WORK/cluster" postgres
else
	bench_cluster postgres
fi
export PGHOST=$WORK/cluster/sock PGPORT=5432 PGUSER=postgres
unset PGDATABASE
/usr/bin/python3 "$REPO/test/docs/run.py" --bindir "$BIN" --datadir "$WORK/cluster" --repo "$REPO" "$@"
