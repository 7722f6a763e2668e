#!/usr/bin/env bash
# test/fuzz/run.sh [seconds] [seed]: the fuzz harness's long pass on a
# throw-away cluster of its own (the benchmarks' set-up: packages, -Werror
# build, private PostgreSQL copy, pg_cron preloaded; removed on exit).
# Unlike the short pass in the default suite it tolerates nothing: no
# known.txt, every outcome counts.  Exit status 1 on a crash, an XX000 or
# an undocumented SQLSTATE.  FUZZ_ARGS adds options (e.g. --only wval_evaluate).
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

seconds=${1:-600}
seed=${2:-$RANDOM}
bench_cluster wval_fuzz
"${PSQL[@]}" -d postgres -c 'CREATE DATABASE wval_fuzz' >/dev/null
"${PSQL[@]}" -d wval_fuzz -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION pg_cron' \
	-c 'CREATE EXTENSION wval CASCADE' >/dev/null
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
log "fuzzing for $seconds s, seed $seed"
PGDATABASE=wval_fuzz "$py" "$REPO/test/fuzz/fuzz.py" --seconds "$seconds" --seed "$seed" \
	--server-log "$WORK/cluster/server.log" ${FUZZ_ARGS:-}
