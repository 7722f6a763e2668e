#!/usr/bin/env bash
# scripts/sanitize.sh: wval's C under UndefinedBehaviorSanitizer or valgrind
# memcheck (issue 11).  AddressSanitizer is not offered: a libasan preloaded
# into Debian's postgres hangs at start-up.
#
# Usage:
#   scripts/sanitize.sh ubsan    [--fuzz-seconds N] [--seed S] [--only REGEX] [--keep]
#   scripts/sanitize.sh valgrind [--fuzz-seconds N] [--seed S] [--keep] [regress file ...]
#
# ubsan: builds wval with -fsanitize=undefined,float-cast-overflow
#   -fno-sanitize-recover=all -g (in a copy of this tree: make does not track
#   flags) and runs that copy's scripts/test.sh, i.e. the whole suite
#   (--only REGEX as there), then a fuzz pass on a cluster of its own.  The
#   postgres binary is not instrumented; wval.so needs libubsan, which the
#   dynamic loader brings in with wval.so (no LD_PRELOAD: the script checks
#   that a backend that loaded wval has libubsan mapped).  Any "runtime
#   error:" report fails the run: UBSAN_OPTIONS sends the reports of every
#   server process (also of the clusters the session scripts start) to
#   WORK/ubsan/report.<pid>, with their stack.
# valgrind: builds wval -O0 -g, starts a cluster whose postmaster runs under
#   valgrind --tool=memcheck --trace-children=yes (every backend is checked),
#   runs the pg_regress files (default: all of sql/) and a fuzz pass, stops
#   the cluster and counts the memcheck reports; it fails on any report with
#   a frame in wval (wval.so or one of src/*.c).  PostgreSQL's own valgrind
#   suppressions (src/tools/valgrind.supp) are not in Debian's packages and
#   Debian's postgres is not built with USE_VALGRIND, so reports without a
#   wval frame are counted and listed by kind, not failed; scripts/valgrind.supp
#   suppresses the server's own reports that a wval call leads to (the
#   uninitialised tail of a WAL buffer written by a flush wval asks for, the
#   relation cache init file the notifier worker writes).  Slow: expect
#   20-40 minutes for all the regression files on two cores.
#
# The fuzz pass runs test/fuzz/fuzz.py when the file exists (WVAL_FUZZ names
# another copy), --fuzz-seconds long (default 60 for ubsan, 120 for
# valgrind; 0 skips it), with --seed (default 1).
#
# The work directory /tmp/wval-sanitize.* is removed unless --keep is given
# or something failed.  Exit status: non-zero on any sanitizer report in
# wval, a failed test or a failed fuzz pass.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=${1:-}
case $mode in
ubsan | valgrind) shift ;;
*) die "usage: scripts/sanitize.sh ubsan|valgrind [--fuzz-seconds N] [--seed S] [--only REGEX] [--keep] [regress file ...]" ;;
esac
keep=no
only=.
seed=1
fuzz_seconds=
files=()
while [ $# -gt 0 ]; do
	case $1 in
	--keep) keep=yes ;;
	--only) only=$2; shift ;;
	--seed) seed=$2; shift ;;
	--fuzz-seconds) fuzz_seconds=$2; shift ;;
	-*) die "unknown option $1" ;;
	*) files+=("$1") ;;
	esac
	shift
done
[ -n "$fuzz_seconds" ] || fuzz_seconds=$([ "$mode" = ubsan ] && echo 60 || echo 120)

ensure_packages
if [ "$mode" = valgrind ] && ! command -v valgrind >/dev/null; then
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
owner=$([ "$(id -u)" -eq 0 ] && echo postgres || id -un)

SW=$(mktemp -d /tmp/wval-sanitize.XXXXXX)
chmod 755 "$SW"
STAGE=$SW/stage
BIN=$STAGE$PG_BINDIR
CLUSTER=$SW/cluster
failed=()
cleanup() {
	stop_cluster "$BIN" "$CLUSTER"
	if [ "$keep" = no ] && [ ${#failed[@]} -eq 0 ]; then rm -rf "$SW"; else log "kept $SW"; fi
}
trap cleanup EXIT

# The copy of the tree that gets the instrumented build; the scripts of the
# copy then work on it (lib.sh's REPO is where they are).
ORIG=$REPO
mkdir -p "$SW/src"
tar -C "$ORIG" --exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - . | tar -C "$SW/src" -xf -
REPO=$SW/src
# the copy has no history: test/sessions/upgrade.sh reads release 0.1.0 from the original's
export WVAL_GIT_DIR=$ORIG
FUZZ=${WVAL_FUZZ:-$REPO/test/fuzz/fuzz.py}
# pg_cron's database, as in scripts/test.sh (expected/bus.out names it)
FUZZDB=wval_tap
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
psql() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# fuzz_pass DB LOG [statement timeout]: test/fuzz/fuzz.py against DB, if present.
fuzz_pass() {
	local db=$1 serverlog=$2 timeout=${3:-10s} known=()
	if [ ! -f "$FUZZ" ] || [ "$fuzz_seconds" = 0 ]; then
		log "fuzz pass skipped (${FUZZ#$SW/src/} not present or --fuzz-seconds 0)"
		return 0
	fi
	[ -f "$(dirname "$FUZZ")/known.txt" ] && known=(--known "$(dirname "$FUZZ")/known.txt")
	log "fuzz pass: $fuzz_seconds s, seed $seed"
	if PGDATABASE=$db "$py" "$FUZZ" --seconds "$fuzz_seconds" --seed "$seed" --server-log "$serverlog" \
		--statement-timeout "$timeout" "${known[@]}" >"$SW/fuzz.out" 2>&1; then
		echo "fuzz pass: passed"
	else
		echo "fuzz pass: FAILED"
		failed+=(fuzz)
	fi
	tail -25 "$SW/fuzz.out"
}

# fresh_db DB: a database with wval (and pg_cron, which is preloaded for DB).
fresh_db() {
	psql -d postgres -c "CREATE DATABASE $1" >/dev/null
	psql -d "$1" >/dev/null <<-'SQL'
		SET client_min_messages = warning;
		CREATE EXTENSION pg_cron;
		CREATE EXTENSION wval CASCADE;
	SQL
}

run_ubsan() {
	local flags="-fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
	mkdir -p "$SW/ubsan"
	chown "$owner" "$SW/ubsan"
	# inherited by every server the suite starts (pg_ctl runs as postgres
	# through runuser, which keeps the environment)
	export UBSAN_OPTIONS="print_stacktrace=1:log_path=$SW/ubsan/report"

	log "the whole suite with wval built $flags"
	local out=$SW/suite.log
	if WVAL_CFLAGS=$flags bash "$REPO/scripts/test.sh" --only "$only" 2>&1 | tee "$out"; then
		echo "suite: passed"
	else
		echo "suite: FAILED"
		failed+=(suite)
	fi
	nm -D "$REPO/wval.so" | grep __ubsan_handle >/dev/null || die "wval.so is not instrumented"

	# a cluster of our own for the liveness check and the fuzz pass
	stage "$STAGE"
	start_cluster "$BIN" "$CLUSTER" "$FUZZDB" "fsync = off
synchronous_commit = off
log_line_prefix = '%m [%p] '"
	export PGHOST=$CLUSTER/sock PGPORT=5432 PGUSER=postgres
	local mapped
	# (a backend's /proc/self/environ holds its ps title; the postmaster's
	# still shows the environment it started with)
	mapped=$(psql -d postgres -At -c "LOAD 'wval'" -c "SELECT pg_read_file('/proc/self/maps') ~ 'libubsan'")
	[ "$mapped" = t ] || die "a backend that loaded wval has no libubsan mapped: the sanitizer is not live"
	tr '\0' '\n' <"/proc/$(head -1 "$CLUSTER/pgdata/postmaster.pid")/environ" | grep '^UBSAN_OPTIONS=' >/dev/null ||
		die "the postmaster runs without UBSAN_OPTIONS: reports would not be collected"
	echo "sanitizer live: a backend that loaded wval.so has libubsan mapped; the postmaster has UBSAN_OPTIONS"
	fresh_db "$FUZZDB"
	fuzz_pass "$FUZZDB" "$CLUSTER/server.log"
	stop_cluster "$BIN" "$CLUSTER"

	local reports
	reports=$(cat "$SW"/ubsan/report.* "$CLUSTER/server.log" 2>/dev/null | grep -c 'runtime error:' || true)
	echo "UBSan reports (runtime error:): $reports"
	if [ "$reports" -gt 0 ]; then
		failed+=(ubsan)
		cat "$SW"/ubsan/report.* 2>/dev/null | grep -A14 'runtime error:' | head -120
	fi
	echo "backend crashes in the fuzz cluster's log: $(grep -c 'terminated by signal' "$CLUSTER/server.log" || true)"
}

run_valgrind() {
	local flags="-O0 -g -fno-omit-frame-pointer"
	WVAL_CFLAGS=$flags build
	stage "$STAGE"
	start_cluster "$BIN" "$CLUSTER" "$FUZZDB" "fsync = off
synchronous_commit = off
max_connections = 20
log_line_prefix = '%m [%p] '"
	stop_cluster "$BIN" "$CLUSTER"

	# the postmaster under memcheck: pg_ctl starts the wrapper, which execs
	# valgrind, which runs postgres in the same process (pg_ctl -w still
	# finds its pid in postmaster.pid)
	mkdir -p "$SW/vg"
	chown "$owner" "$SW/vg"
	cat >"$SW/vg-postgres" <<-EOF
		#!/bin/sh
		exec valgrind --tool=memcheck --trace-children=yes --error-limit=no --leak-check=no \\
		  --suppressions='$REPO/scripts/valgrind.supp' \\
		  --num-callers=30 --read-var-info=no --log-file='$SW/vg/vg.%p.log' '$BIN/postgres' "\$@"
	EOF
	chmod 755 "$SW/vg-postgres"
	log "starting the postmaster under valgrind memcheck"
	as_pg "$BIN/pg_ctl" -D "$CLUSTER/pgdata" -p "$SW/vg-postgres" -l "$CLUSTER/server.log" -w -t 600 start >/dev/null ||
		{ tail -20 "$CLUSTER/server.log" >&2; die "the cluster did not start under valgrind"; }
	export PGHOST=$CLUSTER/sock PGPORT=5432 PGUSER=postgres

	log "pg_regress under valgrind"
	mkdir -p "$SW/regress"
	cp -r "$REPO/sql" "$REPO/expected" "$SW/regress/"
	[ -d "$REPO/test/data" ] && cp -r "$REPO/test/data" "$SW/regress/"
	chown -R "$owner" "$SW/regress"
	local tests
	if [ ${#files[@]} -gt 0 ]; then tests=${files[*]}; else tests=$(cd "$REPO/sql" && ls *.sql | sed 's/\.sql$//'); fi
	psql -d postgres >/dev/null <<-'SQL'
		CREATE DATABASE contrib_regression TEMPLATE template0;
		\c contrib_regression
		SET client_min_messages = warning;
		CREATE EXTENSION pgcrypto;   -- sql/hub.sql computes expected HMACs with it (REGRESS_OPTS)
		CREATE EXTENSION wval;
	SQL
	# shellcheck disable=SC2086
	if as_pg env PGHOST="$PGHOST" PGPORT=$PGPORT PGUSER=postgres \
		"$STAGE/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/test/regress/pg_regress" \
		--use-existing --bindir="$BIN" --inputdir="$SW/regress" --outputdir="$SW/regress" \
		--dbname=contrib_regression $tests; then
		echo "pg_regress: passed"
	else
		echo "pg_regress: FAILED (diffs in $SW/regress/regression.diffs)"
		failed+=(pg_regress)
	fi
	fresh_db "$FUZZDB"
	fuzz_pass "$FUZZDB" "$CLUSTER/server.log" 120s
	log "stopping the cluster (valgrind writes its reports)"
	as_pg "$BIN/pg_ctl" -D "$CLUSTER/pgdata" -m fast -w -t 600 stop >/dev/null || true

	# one block per report: its header line and the frames that follow; a
	# report is wval's when a frame is in wval.so or names one of src/*.c
	# (Debian's postgres and libc have no debug information: their frames
	# name the binary, not a source file)
	local kinds='Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination overlap|Argument .* of function'
	local sources mine
	sources=$(cd "$REPO/src" && ls *.c | sed 's/[.]c$//' | paste -sd'|')
	mine=$(awk -v K="^==[0-9]+== ($kinds)" -v W="wval[.]so|[(]($sources)[.]c:[0-9]+[)]" -v OUT="$SW/vg/wval-reports.txt" '
		function flush() {
			if (blk != "") { total++; kind[head]++; if (wv) { n++; print blk "\n" > OUT } }
			blk = ""; wv = 0
		}
		$0 ~ K { flush(); blk = $0; head = $2 " " $3 " " $4; next }
		blk != "" && /^==[0-9]+== +(at|by|Address|Block|Uninitialised) / { blk = blk "\n" $0; if ($0 ~ W) wv = 1; next }
		{ flush() }
		END {
			flush()
			printf "memcheck reports in all processes: %d\n", total > "/dev/stderr"
			for (k in kind) printf "  %-48s %d\n", k, kind[k] > "/dev/stderr"
			print n + 0
		}
	' /dev/null "$SW"/vg/vg.*.log)
	echo "memcheck reports with a frame in wval.so: $mine"
	if [ "$mine" -gt 0 ]; then
		failed+=(valgrind)
		head -150 "$SW/vg/wval-reports.txt"
	fi
	echo "backend crashes in the server log: $(grep -c 'terminated by signal' "$CLUSTER/server.log" || true)"
}

"run_$mode"
if [ ${#failed[@]} -gt 0 ]; then
	log "FAILED: ${failed[*]}"
	exit 1
fi
log "$mode: no reports"
